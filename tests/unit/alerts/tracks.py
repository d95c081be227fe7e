"""Hand-made tracks for the alert tests: metres on a local grid, fixes every few seconds."""

from __future__ import annotations

import itertools
import math
import random
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from fleet.alerts.visits import Fix, Site

TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 3, 2)
LAT0, LON0 = 31.82, 117.23
M_PER_DEG_LAT = 111_320.0
M_PER_DEG_LON = M_PER_DEG_LAT * math.cos(math.radians(LAT0))


def at(hhmm: str, seconds: float = 0.0) -> datetime:
    h, m = (int(x) for x in hhmm.split(":"))
    return datetime(DAY.year, DAY.month, DAY.day, h, m, tzinfo=TZ) + timedelta(seconds=seconds)


def latlon(x_m: float, y_m: float) -> tuple[float, float]:
    return LAT0 + y_m / M_PER_DEG_LAT, LON0 + x_m / M_PER_DEG_LON


def site(
    kind: str,
    site_id: str,
    x_m: float,
    y_m: float,
    *,
    radius_m: float = 30.0,
    min_dwell_s: float = 120.0,
) -> Site:
    lat, lon = latlon(x_m, y_m)
    return Site(kind, site_id, lat, lon, radius_m, min_dwell_s)  # type: ignore[arg-type]


class Track:
    """Builds a truck's fixes piece by piece; `noise_m` is σ per axis."""

    def __init__(
        self,
        start: datetime,
        *,
        x: float = 0.0,
        y: float = 0.0,
        interval_s: float = 10.0,
        noise_m: float = 0.0,
        seed: int = 1,
        accuracy_m: float = 10.0,
    ) -> None:
        self.t = start
        self.x, self.y = x, y
        self.interval_s = interval_s
        self.rng = random.Random(seed)
        self.noise_m = noise_m
        self.accuracy_m = accuracy_m
        self.fixes: list[Fix] = []

    def _emit(self, x: float, y: float, speed: float) -> None:
        nx = x + self.rng.gauss(0, self.noise_m) if self.noise_m else x
        ny = y + self.rng.gauss(0, self.noise_m) if self.noise_m else y
        lat, lon = latlon(nx, ny)
        self.fixes.append(Fix(self.t, lat, lon, speed, self.accuracy_m))

    def stay(self, duration_s: float, *, off: tuple[float, float] = (0.0, 0.0)) -> Track:
        """Stand still; `off` displaces every fix (urban-canyon drift) from where the truck is."""
        end = self.t + timedelta(seconds=duration_s)
        while self.t < end:
            self._emit(self.x + off[0], self.y + off[1], 0.0)
            self.t += timedelta(seconds=self.interval_s)
        return self

    def drive(self, x: float, y: float, speed_kmh: float) -> Track:
        dist = math.hypot(x - self.x, y - self.y)
        duration = dist / (speed_kmh / 3.6)
        steps = max(1, int(duration // self.interval_s))
        x0, y0 = self.x, self.y
        for k in range(steps):
            frac = k / steps
            self._emit(x0 + frac * (x - x0), y0 + frac * (y - y0), speed_kmh)
            self.t += timedelta(seconds=duration / steps)
        self.x, self.y = x, y
        return self

    def silence(self, duration_s: float) -> Track:
        self.t += timedelta(seconds=duration_s)
        return self

    def jump(self, x: float, y: float) -> Track:
        self.x, self.y = x, y
        return self

    def between(self, start: datetime, end: datetime) -> list[Fix]:
        return [f for f in self.fixes if start <= f.at < end]


def fence_flips(fixes: list[Fix], s: Site) -> int:
    """How often a naive per-fix fence test changes its mind."""
    inside = [
        math.hypot((f.lat - s.lat) * M_PER_DEG_LAT, (f.lon - s.lon) * M_PER_DEG_LON) <= s.radius_m
        for f in fixes
    ]
    return sum(1 for a, b in itertools.pairwise(inside) if a != b)


def displaced(fixes: list[Fix], index: int, dx_m: float, dy_m: float) -> list[Fix]:
    """The track with one fix thrown `dx_m`, `dy_m` off (a multipath jump), all else kept."""
    f = fixes[index]
    lat, lon = f.lat + dy_m / M_PER_DEG_LAT, f.lon + dx_m / M_PER_DEG_LON
    return [*fixes[:index], Fix(f.at, lat, lon, f.speed_kmh, f.accuracy_m), *fixes[index + 1 :]]
