"""A truck's display status from its latest fix: pure functions, `now` passed in.

Sites (points, stations, depots) sit in a coarse grid so that each lookup checks a
handful of candidates. The ledger (fleet/alerts) decides visits with dwell times and
evidence; this is only what the live map shows at a glance.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from fleet.positions.models import TruckStatus

SiteKind = Literal["point", "station", "depot"]
CELL_DEG = 0.002  # about 220 m north-south
MOVING_KMH = 5.0  # below this a truck counts as stopped
STATION_RADIUS_M = 80.0
DEPOT_RADIUS_M = 120.0
_M_PER_DEG_LAT = 111_320.0


@dataclass(frozen=True)
class Site:
    kind: SiteKind
    site_id: str
    district_id: str
    lat: float
    lon: float
    radius_m: float


def _distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Equirectangular distance: exact enough within a few hundred metres."""
    x = (lon2 - lon1) * math.cos(math.radians((lat1 + lat2) / 2)) * _M_PER_DEG_LAT
    y = (lat2 - lat1) * _M_PER_DEG_LAT
    return math.hypot(x, y)


class SiteIndex:
    def __init__(self, sites: Iterable[Site]) -> None:
        self._cells: dict[tuple[int, int], list[Site]] = defaultdict(list)
        self._reach = 1
        for site in sites:
            self._cells[self._cell(site.lat, site.lon)].append(site)
            cells = math.ceil(site.radius_m / (_M_PER_DEG_LAT * CELL_DEG * 0.5))
            self._reach = max(self._reach, min(cells, 10))
        self.size = sum(len(v) for v in self._cells.values())

    @staticmethod
    def _cell(lat: float, lon: float) -> tuple[int, int]:
        return (math.floor(lat / CELL_DEG), math.floor(lon / CELL_DEG))

    def at(self, lat: float, lon: float, *, accuracy_m: float = 0.0) -> Site | None:
        """The site whose fence contains the fix (nearest centre wins; stations and
        depots before points when both contain it)."""
        ci, cj = self._cell(lat, lon)
        best: tuple[int, float, Site] | None = None
        rank = {"station": 0, "depot": 1, "point": 2}
        for di in range(-self._reach, self._reach + 1):
            for dj in range(-self._reach, self._reach + 1):
                for site in self._cells.get((ci + di, cj + dj), ()):
                    distance = _distance_m(lat, lon, site.lat, site.lon)
                    if distance > site.radius_m + min(accuracy_m, site.radius_m):
                        continue
                    key = (rank[site.kind], distance, site)
                    if best is None or key[:2] < best[:2]:
                        best = key
        return best[2] if best else None


def classify(
    *,
    recorded_at: datetime | None,
    lat: float | None,
    lon: float | None,
    speed_kmh: float | None,
    accuracy_m: float | None,
    now: datetime,
    offline_after_s: float,
    sites: SiteIndex,
) -> tuple[TruckStatus, str | None]:
    """(status, site id) for one truck's latest fix."""
    if recorded_at is None or lat is None or lon is None:
        return TruckStatus.no_data, None
    if (now - recorded_at).total_seconds() > offline_after_s:
        return TruckStatus.offline, None
    if speed_kmh is not None and speed_kmh >= MOVING_KMH:
        return TruckStatus.moving, None
    site = sites.at(lat, lon, accuracy_m=accuracy_m or 0.0)
    if site is None:
        return TruckStatus.stopped, None
    status = {
        "point": TruckStatus.at_point,
        "station": TruckStatus.unloading,
        "depot": TruckStatus.parked,
    }[site.kind]
    return status, site.site_id
