"""Whether a true track drove through a point's fence (the benchmark's drive-by truth for
skipped points): hand-written tracks on a local grid, a 30 m fence at the origin."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from simulator.geo import M_PER_DEG_LAT, drove_through_fence, m_per_deg_lon

LAT0, LON0 = 31.82, 117.23
START = datetime(2026, 12, 4, 7, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def track(*steps: tuple[float, float, float]) -> list[tuple[datetime, float, float]]:
    """(seconds from START, x m east, y m north) -> (time, lat, lon)."""
    return [
        (
            START + timedelta(seconds=s),
            LAT0 + y / M_PER_DEG_LAT,
            LON0 + x / m_per_deg_lon(LAT0),
        )
        for s, x, y in steps
    ]


def through(t: list[tuple[datetime, float, float]]) -> bool:
    return drove_through_fence(t, LAT0, LON0, 30.0, stood_s=30.0)


def test_driving_straight_through_with_no_fix_in_the_fence_is_a_drive_by() -> None:
    """At 30 km/h, fixes 10 s (83 m) apart: 42 m before and 41 m past the point."""
    assert through(track((0, -125, 0), (10, -42, 0), (20, 41, 0), (30, 124, 0)))


def test_a_street_40_m_from_the_point_is_no_drive_by() -> None:
    assert not through(track((0, -125, 40), (10, -42, 40), (20, 41, 40), (30, 124, 40)))


def test_standing_in_the_fence_for_minutes_is_no_drive_by() -> None:
    """In, 5 minutes 25 m from the point (fixes a minute apart when parked), and out."""
    parked = [(10 + 60 * k, 0, -25) for k in range(6)]
    assert not through(track((0, -80, -25), *parked, (320, 80, -25)))


def test_a_few_seconds_in_the_fence_is_still_a_drive_by() -> None:
    """Slowing to turn at the point: two fixes 8 s apart inside, then away."""
    assert through(track((0, -90, 0), (10, -20, 0), (18, 0, 20), (28, 0, 100)))


def test_turning_off_before_the_fence_is_no_drive_by() -> None:
    assert not through(track((0, -150, 0), (10, -70, 0), (20, -70, 80), (30, -70, 160)))
