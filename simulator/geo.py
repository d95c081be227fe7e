"""Small geodesy helpers for a city-sized area (WGS-84, metres).

Distances use the haversine formula (``routing.vocab.haversine_m``); offsets and projections use a local
equirectangular approximation, which is exact to well under 0.1 % over the
~10 km of a district.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from datetime import datetime

from routing.vocab import haversine_m

__all__ = [
    "bearing_deg",
    "drove_through_fence",
    "haversine_m",
    "m_per_deg_lon",
    "offset",
    "point_segment_distance_m",
]

M_PER_DEG_LAT = 111_320.0


def m_per_deg_lon(lat: float) -> float:
    return M_PER_DEG_LAT * math.cos(math.radians(lat))


def offset(lat: float, lon: float, east_m: float, north_m: float) -> tuple[float, float]:
    """The point `east_m` east and `north_m` north of (lat, lon)."""
    return lat + north_m / M_PER_DEG_LAT, lon + east_m / m_per_deg_lon(lat)


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial bearing from 1 to 2, degrees clockwise from north in [0, 360)."""
    east = (lon2 - lon1) * m_per_deg_lon((lat1 + lat2) / 2)
    north = (lat2 - lat1) * M_PER_DEG_LAT
    if east == 0 and north == 0:
        return 0.0
    return math.degrees(math.atan2(east, north)) % 360.0


def point_segment_distance_m(
    lat: float, lon: float, lat1: float, lon1: float, lat2: float, lon2: float
) -> float:
    """Distance from a point to the segment 1–2, in metres (local projection)."""
    kx = m_per_deg_lon(lat)
    ky = M_PER_DEG_LAT
    px, py = (lon - lon1) * kx, (lat - lat1) * ky
    sx, sy = (lon2 - lon1) * kx, (lat2 - lat1) * ky
    seg2 = sx * sx + sy * sy
    t = 0.0 if seg2 == 0 else max(0.0, min(1.0, (px * sx + py * sy) / seg2))
    return math.hypot(px - t * sx, py - t * sy)


def drove_through_fence(
    track: Sequence[tuple[datetime, float, float]],
    lat: float,
    lon: float,
    radius_m: float,
    *,
    stood_s: float,
) -> bool:
    """Did a true track (time, lat, lon; sorted) cross the fence of radius `radius_m`
    round (lat, lon) — a segment between two fixes within it — without standing in it:
    less than `stood_s` between fixes that both lie in the fence? A truck that drives
    through a 30 m fence at 20-30 km/h spends under 10 s in it; one that stops there
    stood."""
    crossed = any(
        point_segment_distance_m(lat, lon, a[1], a[2], b[1], b[2]) <= radius_m
        for a, b in itertools.pairwise(track)
    )
    inside_s = sum(
        (b[0] - a[0]).total_seconds()
        for a, b in itertools.pairwise(track)
        if haversine_m(a[1], a[2], lat, lon) <= radius_m
        and haversine_m(b[1], b[2], lat, lon) <= radius_m
    )
    return crossed and inside_s < stood_s
