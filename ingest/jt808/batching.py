"""The gateway's batches: the fixes of many terminals in one MQTT message.

The broker and the ingestor pay mostly per message, not per fix, and a terminal
waiting for each answer sends one report per read. So the gateway gathers the fixes
handed to it during one event-loop turn, from any number of connections, into one
message on its own topic ``clearday/v1/gateways/{gateway_id}/positions`` (an array
whose items each name their ``terminal_id``, docs/wire.md). Nothing waits for a timer:
a busy gateway reads many terminals per turn and its batches grow with the load, an
idle one sends each fix at once.

Each contribution's callback gets the outcome of the message that carried it (its
PUBACK), so a terminal is still acknowledged only once the broker has its location.
"""

from __future__ import annotations

import asyncio
import logging

from ingest import wire
from ingest.jt808.broker import Done, Join, Publisher

log = logging.getLogger("clearday.jt808.batching")

# Bounds of one batch: far below the ingestor's default payload limit of 256 KiB
# (a fix is about 300 bytes of JSON; a report with many additional items more).
MAX_BATCH_FIXES = 500
MAX_BATCH_BYTES = 128 * 1024


class _Outcome:
    """Tells every contribution of one batch how its message fared."""

    __slots__ = ("waiting",)

    def __init__(self, waiting: list[Done]) -> None:
        self.waiting = waiting

    def __call__(self, ok: bool) -> None:
        for done in self.waiting:
            try:
                done(ok)
            except Exception:  # one connection's bug must not cost the others their answers
                log.exception("a batch callback failed")


class FixBatcher:
    """Collects encoded items (:func:`wire.encode_gateway_fix`) and publishes them at
    the end of the event-loop turn, or as soon as a batch is full."""

    def __init__(
        self,
        publisher: Publisher,
        topic: str,
        *,
        max_fixes: int = MAX_BATCH_FIXES,
        max_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        if max_fixes < 1 or max_bytes < 1:
            raise ValueError("a batch holds at least one fix")
        self.publisher = publisher
        self.topic = topic
        self.max_fixes = max_fixes
        self.max_bytes = max_bytes
        self.batches = 0  # messages published
        self.fixes = 0  # fixes they carried
        self._items: list[bytes] = []
        self._bytes = 0
        self._waiting: list[Done] = []
        self._scheduled = False

    def add(self, items: list[bytes], done: Done) -> None:
        """Publish ``items`` (one terminal's fixes) in the coming batch(es);
        ``done(ok)`` is called once, with whether every message carrying them was
        acknowledged."""
        if not items:
            raise ValueError("nothing to publish")
        if len(items) == 1:  # the common case: one report
            self._add(items, len(items[0]) + 1, done)
            return
        parts = self._parts(items)
        if len(parts) > 1:
            done = Join(len(parts), done)
        for part in parts:
            self._add(part, sum(map(len, part)) + len(part), done)

    def _parts(self, items: list[bytes]) -> list[list[bytes]]:
        """``items`` cut into pieces that each fit in one batch."""
        parts: list[list[bytes]] = [[]]
        size = 0
        for item in items:
            part = parts[-1]
            if part and (len(part) >= self.max_fixes or size + len(item) + 1 > self.max_bytes):
                parts.append([])
                part, size = parts[-1], 0
            part.append(item)
            size += len(item) + 1
        return parts

    def _add(self, items: list[bytes], size: int, done: Done) -> None:
        if self._items and (
            len(self._items) + len(items) > self.max_fixes or self._bytes + size > self.max_bytes
        ):
            self.flush()
        self._items += items
        self._bytes += size
        self._waiting.append(done)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Publish what was gathered (the end of the loop turn, or a full batch)."""
        self._scheduled = False
        items, waiting = self._items, self._waiting
        if not items:
            return
        self._items, self._waiting, self._bytes = [], [], 0
        self.batches += 1
        self.fixes += len(items)
        self.publisher.publish(
            self.topic,
            wire.encode_gateway_batch(items),
            waiting[0] if len(waiting) == 1 else _Outcome(waiting),
        )
        self.publisher.flush()  # now, not a loop turn later: the terminals are waiting
