"""City-scale geometry for visit detection (WGS-84 in, metres out).

A local equirectangular projection is exact to well under 0.1 % over a district;
that is far below GNSS noise, and it keeps the hot loops to a few multiplications.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Generic, Protocol, TypeVar

M_PER_DEG_LAT = 111_320.0


def m_per_deg_lon(lat: float) -> float:
    return M_PER_DEG_LAT * math.cos(math.radians(lat))


class Projection:
    """Metres east/north of a reference latitude; good for a city."""

    __slots__ = ("kx", "ky")

    def __init__(self, ref_lat: float) -> None:
        self.kx = m_per_deg_lon(ref_lat)
        self.ky = M_PER_DEG_LAT

    def xy(self, lat: float, lon: float) -> tuple[float, float]:
        return lon * self.kx, lat * self.ky

    def dist(self, lat1: float, lon1: float, lat2: float, lon2: float) -> float:
        return math.hypot((lon2 - lon1) * self.kx, (lat2 - lat1) * self.ky)


def segment_closest(
    px: float, py: float, ax: float, ay: float, bx: float, by: float
) -> tuple[float, float]:
    """(distance, t) from point p to segment a–b, t in [0, 1] along the segment."""
    sx, sy = bx - ax, by - ay
    seg2 = sx * sx + sy * sy
    t = 0.0 if seg2 == 0 else max(0.0, min(1.0, ((px - ax) * sx + (py - ay) * sy) / seg2))
    return math.hypot(px - ax - t * sx, py - ay - t * sy), t


class HasXY(Protocol):
    @property
    def x(self) -> float: ...
    @property
    def y(self) -> float: ...


T = TypeVar("T", bound=HasXY)


class GridIndex(Generic[T]):
    """A uniform grid over projected items: 'what is within r metres of here'."""

    def __init__(self, items: Iterable[T], cell_m: float = 200.0) -> None:
        self.cell_m = cell_m
        self._cells: dict[tuple[int, int], list[T]] = defaultdict(list)
        for item in items:
            self._cells[self._key(item.x, item.y)].append(item)

    def _key(self, x: float, y: float) -> tuple[int, int]:
        return math.floor(x / self.cell_m), math.floor(y / self.cell_m)

    def in_box(self, x0: float, y0: float, x1: float, y1: float) -> Iterator[T]:
        """Items whose cell touches the box (a superset; callers check distance)."""
        i0, j0 = self._key(min(x0, x1), min(y0, y1))
        i1, j1 = self._key(max(x0, x1), max(y0, y1))
        for i in range(i0, i1 + 1):
            for j in range(j0, j1 + 1):
                yield from self._cells.get((i, j), ())

    def near(self, x: float, y: float, r: float) -> Iterator[T]:
        return self.in_box(x - r, y - r, x + r, y + r)
