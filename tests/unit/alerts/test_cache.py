"""The worker's one cache shape: expiry after ttl_s, oldest first beyond max_entries,
another version a miss."""

from fleet.alerts.cache import Cache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_is_read_again_after_its_ttl() -> None:
    clock = Clock()
    cache: Cache[str, int] = Cache(ttl_s=10.0, max_entries=4, clock=clock)
    reads = iter(range(100))
    assert cache.get_or_read("a", lambda: next(reads)) == 0
    clock.now = 10.0
    assert cache.get_or_read("a", lambda: next(reads)) == 0
    clock.now = 10.5
    assert cache.get_or_read("a", lambda: next(reads)) == 1


def test_the_oldest_stored_entry_goes_first() -> None:
    cache: Cache[str, int] = Cache(ttl_s=None, max_entries=2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 3)  # stored again: now the newest
    cache.put("c", 4)
    assert ("a" in cache, "b" in cache, "c" in cache) == (True, False, True)


def test_another_version_is_a_miss() -> None:
    cache: Cache[str, str] = Cache(ttl_s=None, max_entries=2)
    assert cache.get_or_read("day", lambda: "plan 1", version=1) == "plan 1"
    assert cache.get_or_read("day", lambda: "again", version=1) == "plan 1"
    assert cache.get_or_read("day", lambda: "plan 2", version=2) == "plan 2"
