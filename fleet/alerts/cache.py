"""The alert worker's one shape of cache.

Every cache the worker keeps is an optimisation only: a miss reads the database
again and gives the same answer. So all of them follow one eviction rule: an entry
is dropped ``ttl_s`` after it was stored (never, for ``None``), or when it is the
oldest stored of more than ``max_entries``. Reading an entry with another
``version`` (say, a newly published plan) counts as a miss.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_UNVERSIONED = object()


@dataclass(frozen=True, slots=True)
class _Entry(Generic[V]):
    stored_at: float
    version: object
    value: V


class Cache(Generic[K, V]):
    """Values by key, under the rule above; `clock` is monotonic seconds."""

    def __init__(
        self,
        *,
        ttl_s: float | None,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self.ttl_s, self.max_entries, self._clock = ttl_s, max_entries, clock
        self._entries: dict[K, _Entry[V]] = {}

    def __contains__(self, key: K) -> bool:
        return self._fresh(key, _UNVERSIONED) is not None

    def _fresh(self, key: K, version: object) -> _Entry[V] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expired = self.ttl_s is not None and self._clock() - entry.stored_at > self.ttl_s
        if expired or (version is not _UNVERSIONED and entry.version != version):
            del self._entries[key]
            return None
        return entry

    def get(self, key: K) -> V | None:
        entry = self._fresh(key, _UNVERSIONED)
        return None if entry is None else entry.value

    def get_or_read(self, key: K, read: Callable[[], V], *, version: object = None) -> V:
        """The value stored for `key` (and `version`), or `read()` stored now."""
        entry = self._fresh(key, version)
        if entry is not None:
            return entry.value
        value = read()
        self.put(key, value, version=version)
        return value

    def put(self, key: K, value: V, *, version: object = None) -> None:
        self._entries.pop(key, None)  # a stored entry becomes the newest
        self._entries[key] = _Entry(self._clock(), version, value)
        while len(self._entries) > self.max_entries:
            del self._entries[next(iter(self._entries))]

    def clear(self) -> None:
        self._entries.clear()
