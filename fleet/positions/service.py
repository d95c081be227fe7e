"""Latest positions with their display status, and the live feed behind the SSE stream.

One `LiveFeed` per app polls the latest fix of every truck once per interval — only
while someone is listening — and hands each subscriber the trucks that changed in
the districts it may see. One query per interval serves any number of dashboards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import psycopg
from psycopg_pool import ConnectionPool

from fleet.alerts.visits import Site, SiteIndex
from fleet.positions import repo
from fleet.positions.models import LatestPosition
from fleet.positions.status import classify

log = logging.getLogger(__name__)
SITES_MAX_AGE_S = 60.0
SUBSCRIBER_QUEUE = 100  # updates a slow client may fall behind before it is resynced


NO_SITES = SiteIndex(())


class SiteCache:
    """Each district's site index (one projection per district: districts may lie in
    different cities), rebuilt from the database at most once a minute. Stations and
    depots get the alerts' fences (``AlertSettings.station_radius_m`` and
    ``depot_radius_m``), so the map says "unloading" or "parked" where the ledger would
    count a station or depot visit."""

    def __init__(
        self,
        *,
        station_radius_m: float,
        depot_radius_m: float,
        max_age_s: float = SITES_MAX_AGE_S,
    ) -> None:
        self.station_radius_m = station_radius_m
        self.depot_radius_m = depot_radius_m
        self._index: dict[str, SiteIndex] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()
        self.max_age_s = max_age_s

    def get(self, conn: psycopg.Connection) -> dict[str, SiteIndex]:
        """District id -> its site index."""
        if time.monotonic() - self._loaded_at < self.max_age_s:
            return self._index
        with self._lock:
            if time.monotonic() - self._loaded_at >= self.max_age_s:
                rows = repo.sites(
                    conn,
                    station_radius_m=self.station_radius_m,
                    depot_radius_m=self.depot_radius_m,
                )
                points: dict[str, list[Site]] = {}
                shared: list[Site] = []  # stations and depots: trucks may cross lines
                for row in rows:
                    site = Site(row["kind"], row["site_id"], row["lat"], row["lon"],
                                row["radius_m"], min_dwell_s=0.0)  # fmt: skip
                    points.setdefault(row["district_id"], [])
                    if site.kind == "point":
                        points[row["district_id"]].append(site)
                    else:
                        shared.append(site)
                self._index = {d: SiteIndex(own + shared) for d, own in points.items()}
                self._loaded_at = time.monotonic()
        return self._index


def latest_positions(
    conn: psycopg.Connection,
    *,
    districts: list[str] | None,
    now: datetime,
    offline_after_s: float,
    sites: SiteCache,
) -> list[LatestPosition]:
    index = sites.get(conn)
    result = []
    for row in repo.latest(conn, districts=districts):
        status, site_id = classify(
            recorded_at=row["recorded_at"],
            lat=row["lat"],
            lon=row["lon"],
            speed_kmh=row["speed_kmh"],
            accuracy_m=row["accuracy_m"],
            now=now,
            offline_after_s=offline_after_s,
            sites=index.get(row["district_id"], NO_SITES),
        )
        age = (now - row["recorded_at"]).total_seconds() if row["recorded_at"] else None
        del row["depot_id"]
        result.append(LatestPosition(**row, status=status, site_id=site_id, age_s=age))
    return result


@dataclass(frozen=True)
class Snapshot:
    """Every active truck's latest position and status at one moment."""

    at: datetime
    version: int
    trucks: tuple[LatestPosition, ...]


class LatestSnapshot:
    """The latest positions of the whole fleet, at most `max_age_s` old, shared by every
    request and the live feed of this process. A fleet reports every few seconds, so a
    dashboard gains nothing from a fresher read than about a second, while a thousand
    index probes per request would cap the API at a few dozen requests per second.
    One caller refreshes at a time; the others wait for it (no stampede).
    `max_age_s=0` reads the database on every call."""

    def __init__(
        self,
        *,
        sites: SiteCache,
        offline_after_s: float,
        max_age_s: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sites = sites
        self.offline_after_s = offline_after_s
        self.max_age_s = max_age_s
        self.clock = clock
        self._snapshot: Snapshot | None = None
        self._taken = float("-inf")
        self._lock = threading.Lock()
        self._encoded: dict[tuple[int, tuple[str, ...] | None], bytes] = {}

    def get(self, pool: ConnectionPool) -> Snapshot:
        if self._snapshot is not None and time.monotonic() - self._taken < self.max_age_s:
            return self._snapshot
        with self._lock:
            if self._snapshot is not None and time.monotonic() - self._taken < self.max_age_s:
                return self._snapshot
            with pool.connection() as conn:
                now = self.clock()
                trucks = latest_positions(
                    conn,
                    districts=None,
                    now=now,
                    offline_after_s=self.offline_after_s,
                    sites=self.sites,
                )
            version = (self._snapshot.version + 1) if self._snapshot else 1
            self._snapshot = Snapshot(at=now, version=version, trucks=tuple(trucks))
            self._taken = time.monotonic()
            self._encoded = {}
            return self._snapshot

    def encoded(
        self,
        snapshot: Snapshot,
        districts: list[str] | None,
        encode: Callable[[Snapshot, list[LatestPosition]], bytes],
    ) -> bytes:
        """The response body for one district scope, encoded once per snapshot."""
        key = (snapshot.version, None if districts is None else tuple(districts))
        body = self._encoded.get(key)
        if body is None:
            wanted = None if districts is None else set(districts)
            trucks = [t for t in snapshot.trucks if wanted is None or t.district_id in wanted]
            body = encode(snapshot, trucks)
            if snapshot.version == (self._snapshot.version if self._snapshot else 0):
                self._encoded[key] = body
        return body


@dataclass(eq=False)
class Subscriber:
    districts: frozenset[str] | None
    queue: asyncio.Queue[tuple[str, list[dict[str, Any]]] | None] = field(
        default_factory=lambda: asyncio.Queue(SUBSCRIBER_QUEUE)
    )
    needs_snapshot: bool = True

    def sees(self, district_id: str) -> bool:
        return self.districts is None or district_id in self.districts


class LiveFeed:
    def __init__(
        self,
        pool: ConnectionPool,
        *,
        poll_interval_s: float,
        snapshot: LatestSnapshot,
    ) -> None:
        self.pool = pool
        self.poll_interval_s = poll_interval_s
        self.snapshot = snapshot
        self._subscribers: set[Subscriber] = set()
        self._state: dict[str, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="live-feed")

    async def stop(self) -> None:
        for sub in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.put_nowait(None)
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def subscribe(self, districts: frozenset[str] | None) -> Subscriber:
        sub = Subscriber(districts)
        self._subscribers.add(sub)
        self._wake.set()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    def _poll(self) -> dict[str, dict[str, Any]]:
        snapshot = self.snapshot.get(self.pool)
        return {p.truck_id: p.model_dump(mode="json") for p in snapshot.trucks}

    async def _run(self) -> None:
        while True:
            if not self._subscribers:
                self._wake.clear()
                await self._wake.wait()
            started = time.monotonic()
            try:
                state = await anyio.to_thread.run_sync(self._poll)
            except (psycopg.Error, OSError) as exc:  # keep going: the database may come back
                log.warning("live feed: cannot read positions: %s", str(exc).splitlines()[0])
                await asyncio.sleep(max(self.poll_interval_s, 2.0))
                continue
            self._publish(state)
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(self.poll_interval_s - elapsed, 0.05))

    def _publish(self, state: dict[str, dict[str, Any]]) -> None:
        def moved(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
            return old is None or any(
                old.get(k) != new.get(k) for k in ("recorded_at", "status", "site_id", "plate")
            )

        changed = [row for truck_id, row in state.items() if moved(self._state.get(truck_id), row)]
        removed: list[dict[str, Any]] = [
            {"truck_id": t, "removed": True} for t in self._state.keys() - state.keys()
        ]
        previous = self._state
        self._state = state
        for sub in list(self._subscribers):
            if sub.needs_snapshot:
                batch = [row for row in state.values() if sub.sees(row["district_id"])]
                kind = "snapshot"
            else:
                batch = [row for row in changed if sub.sees(row["district_id"])]
                batch += [r for r in removed if sub.sees(previous[r["truck_id"]]["district_id"])]
                kind = "update"
                if not batch:
                    continue
            try:
                sub.queue.put_nowait((kind, batch))
                sub.needs_snapshot = False
            except asyncio.QueueFull:
                # A client that stopped reading: drop its backlog and resync it.
                while not sub.queue.empty():
                    sub.queue.get_nowait()
                sub.needs_snapshot = True
