"""Tracks of real streets, written by hand: drift, multipath jumps, trucks beside a point.

Each case is one the ledger got wrong on tracks the project did not generate (issue 16):
a truck serving a point while its fixes drift 50 m off, a single fix thrown 250 m
beside a point, a truck idling across the street from a point, and a street 50 m from
a point. Geometry: a street running east along y = 0 through P1 (x = 0), P2 (400) and
P3 (800), a station at 1600 and the depot at -500 (see test_rules).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from fleet.alerts.visits import DeviceEvent, SiteIndex, detect

from .test_rules import D1, P1, P2, P3, S1, due, evaluate, truck_day
from .test_visits import road
from .tracks import M_PER_DEG_LON, Track, at, displaced, site

# Q lies 250 m north of the street, R 50 m north of it (on a parallel street's side).
Q = site("point", "Q", 200, 250, min_dwell_s=120)
R = site("point", "R", 200, 50, min_dwell_s=120)
SITES_QR = SiteIndex([D1, P1, Q, R, P2, P3, S1])
PLAN_Q = [("start", "D1"), ("point", "P1"), ("point", "Q"), ("point", "P2"),
          ("point", "P3"), ("station", "S1"), ("end", "D1")]  # fmt: skip
PLAN_R = [(k, "R" if x == "Q" else x) for k, x in PLAN_Q]


def straight_day(*, noise_m: float = 0.0, seed: int = 1) -> Track:
    """Depot → P1 → P2 → P3 → station → depot along the street, serving each point 5 min."""
    t = Track(at("06:00"), x=-500, noise_m=noise_m, seed=seed).stay(120)
    for x in (0.0, 400.0, 800.0):
        t.drive(x, 0, 30).stay(300)
    return t.drive(1600, 0, 30).stay(900).drive(-500, 0, 40).stay(600)


@pytest.mark.parametrize("noise_m", [0.0, 10.0])
def test_drifted_stop_at_its_turn_is_cleared_with_lower_confidence_never_a_drive_by(
    noise_m: float,
) -> None:
    """A 130 s stop at P2 whose fixes all sit 50 m off: cleared (less sure) or unverifiable, no alert."""
    t = Track(at("06:00"), x=-500, noise_m=noise_m, seed=4).stay(120)
    t.drive(0, 0, 30).stay(300).drive(400, 0, 30)
    t.stay(130, off=(0, 50))
    t.drive(800, 0, 30).stay(300).drive(1600, 0, 30).stay(900).drive(-500, 0, 40).stay(600)
    verdicts, alerts = evaluate(
        [truck_day("T1", t.fixes)], [due(P1), due(P2), due(P3)], at("21:00")
    )
    v = verdicts["P2"]
    assert v.status in ("cleared", "unverifiable"), (v.status, v.reason, v.evidence)
    if v.status == "cleared":
        assert v.confidence < verdicts["P1"].confidence == 1.0
        assert v.evidence["basis"] == "drifted_stay"
    assert [a for a in alerts if a.point_id == "P2"] == []


def test_drift_that_ends_while_the_truck_still_stands_there_clears_at_its_turn() -> None:
    """Fixes 50 m off for 130 s, then 60 s in the fence: one stay, cleared, less sure."""
    t = Track(at("06:00"), x=-500, noise_m=10, seed=8).stay(120)
    t.drive(0, 0, 30).stay(300).drive(400, 0, 30).stay(130, off=(0, 50)).stay(60)
    t.drive(800, 0, 30).stay(300).drive(1600, 0, 30).stay(900).drive(-500, 0, 40).stay(600)
    verdicts, alerts = evaluate(
        [truck_day("T1", t.fixes)], [due(P1), due(P2), due(P3)], at("21:00")
    )
    v = verdicts["P2"]
    assert (v.status, v.evidence["basis"], v.confidence) == ("cleared", "drifted_stay", 0.6), v
    assert [a for a in alerts if a.point_id == "P2"] == []


def test_drifted_stop_out_of_turn_is_not_cleared_by_drift_alone() -> None:
    """The same drifted stop by a truck P2 is not planned for is unverifiable, not cleared."""
    t = Track(at("06:00"), x=-500, seed=4).stay(120)
    t.drive(400, 0, 30).stay(130, off=(0, 50)).drive(1600, 0, 30).stay(900)
    other = truck_day("T2", t.fixes, planned=False)
    # T1, whose point it is, works elsewhere all day: seen throughout, never near P2.
    t1 = Track(at("06:00"), x=-500, seed=5).stay(120).drive(-500, -300, 20)
    t1.drive(1600, -300, 20).drive(1600, 0, 20).stay(600)
    t1.drive(1600, -300, 40).drive(-500, -300, 40).drive(-500, 0, 40).stay(600)
    verdicts, alerts = evaluate([other, truck_day("T1", t1.fixes)], [due(P2)], at("21:00"))
    v = verdicts["P2"]
    assert (v.status, v.reason) == ("unverifiable", "drifted_stay"), v
    assert v.evidence["attempts"][0]["truck_id"] == "T2"
    assert [a for a in alerts if a.point_id == "P2"] == []


@pytest.mark.parametrize("noise_m", [0.0, 10.0])
def test_single_250_m_jump_beside_a_point_is_no_pass_and_no_drive_by(noise_m: float) -> None:
    """The truck skips Q (250 m off its street); one fix thrown next to Q: Q is missed, not driven past."""
    t = straight_day(noise_m=noise_m, seed=9)
    i = min(
        (k for k, f in enumerate(t.fixes) if at("06:07") <= f.at <= at("06:12")),
        key=lambda k: abs((t.fixes[k].lon - Q.lon) * M_PER_DEG_LON),
    )
    fixes = displaced(t.fixes, i, 0, 250)
    found = detect("T1", fixes, [], SITES_QR)
    assert [v for v in found.visits if v.site_id == "Q"] == []
    day = truck_day("T1", fixes, sites=SITES_QR, plan=PLAN_Q)
    points = [due(P1, seq=1), due(Q, seq=2), due(P2, seq=3), due(P3, seq=4)]
    verdicts, alerts = evaluate([day], points, at("21:00"))
    assert (verdicts["Q"].status, verdicts["Q"].reason) == ("missed", "not_visited")
    assert [a for a in alerts if a.kind == "drive_by"] == []


def test_truck_idling_across_the_street_for_8_minutes_does_not_clear_the_point() -> None:
    """At P2's turn the truck stands 50 m from it on the street opposite for 8 min, then turns
    away: its track never entered the fence, so P2 is not cleared, and it was not driven past."""
    t = Track(at("06:00"), x=-500, seed=6).stay(120)
    t.drive(0, 0, 30).stay(300).drive(0, 50, 20).drive(400, 50, 30).stay(480)
    t.drive(400, 400, 30).drive(800, 400, 30).drive(800, 0, 30).stay(300)
    t.drive(1600, 0, 30).stay(900)
    t.drive(1600, -300, 40).drive(-500, -300, 40).drive(-500, 0, 40).stay(600)  # home, not by P2
    verdicts, alerts = evaluate(
        [truck_day("T1", t.fixes)], [due(P1), due(P2), due(P3)], at("21:00")
    )
    v = verdicts["P2"]
    assert v.status == "missed" and v.reason == "not_visited", v
    assert [a.kind for a in alerts if a.point_id == "P2" and a.kind == "drive_by"] == []
    assert verdicts["P3"].status == "cleared"


@pytest.mark.parametrize("seed", range(1, 9))
def test_street_50_m_from_a_point_driven_past_is_no_pass(seed: int) -> None:
    """The truck keeps to the street; R stands 50 m from it: no pass at R, so no drive-by (σ = 8 m)."""
    t = straight_day(noise_m=8.0, seed=seed)
    found = detect("T1", t.fixes, [], SITES_QR)
    assert [v for v in found.visits if v.site_id == "R"] == []
    day = truck_day("T1", t.fixes, sites=SITES_QR, plan=PLAN_R)
    points = [due(P1, seq=1), due(R, seq=2), due(P2, seq=3), due(P3, seq=4)]
    verdicts, alerts = evaluate([day], points, at("21:00"))
    assert verdicts["R"].reason == "not_visited"
    assert [a for a in alerts if a.kind == "drive_by"] == []


# The street through the depot, P1, P2, P3 and the station (y = 0), and a parallel
# street 50 m north of it (y = 50), joined at x = -500 and x = 1600.
STREETS = [
    road(1, 2, (-500, 0), (1600, 0)),
    road(3, 4, (-500, 50), (1600, 50)),
    road(1, 3, (-500, 0), (-500, 50)),
    road(2, 4, (1600, 0), (1600, 50)),
]
SITES_ROADS = SiteIndex([D1, P1, P2, P3, S1], roads=STREETS)


def drifted_service_at_p2(off: tuple[float, float]) -> Track:
    """P2 served 130 s while every fix, up to the second one driving away, sits `off`
    from the truck (the drift outlasts the stop); the track never enters P2's fence."""
    t = Track(at("06:00"), x=-500, seed=4).stay(120)
    t.drive(0, 0, 30).stay(300).drive(400, 0, 30)
    t.stay(130, off=off)
    first_away = len(t.fixes)
    t.drive(800, 0, 30).stay(300).drive(1600, 0, 30).stay(900)
    t.drive(1600, 50, 30).drive(-500, 50, 40).drive(-500, 0, 30).stay(600)  # home, not by P2
    for k in (first_away, first_away + 1):
        t.fixes[:] = displaced(t.fixes, k, *off)
    return t


def test_stop_whose_fixes_drifted_off_every_road_is_unverifiable_not_missed() -> None:
    """A 2-minute stop at P2's turn whose fixes (and its way out) sit 50 m south-east, off
    every road: no truck stands there, so P2 is unverifiable (drifted), never missed."""
    t = drifted_service_at_p2((50, -50))
    day = truck_day("T1", t.fixes, sites=SITES_ROADS)
    verdicts, alerts = evaluate([day], [due(P1), due(P2), due(P3)], at("21:00"))
    v = verdicts["P2"]
    assert (v.status, v.reason, v.evidence["basis"]) == ("unverifiable",) + ("drifted_stay",) * 2, v
    assert [a for a in alerts if a.point_id == "P2"] == []
    assert verdicts["P3"].status == "cleared"


def test_stop_on_the_street_across_from_the_point_is_not_a_drifted_stay() -> None:
    """The same stop with its fixes 50 m north, on the parallel street, where a truck can
    stand: nothing puts it at P2, so P2 is missed (not visited), and not driven past."""
    t = drifted_service_at_p2((0, 50))
    day = truck_day("T1", t.fixes, sites=SITES_ROADS)
    verdicts, alerts = evaluate([day], [due(P1), due(P2), due(P3)], at("21:00"))
    assert (verdicts["P2"].status, verdicts["P2"].reason) == ("missed", "not_visited")
    assert [a.kind for a in alerts if a.point_id == "P2" and a.kind == "drive_by"] == []


def test_drifted_stop_then_the_next_point_80_m_on_stay_apart() -> None:
    """P2 served 130 s with its fixes 58 m south (off the roads), then the truck drives on
    to N, 80 m east: the drifted stop is P2's (unverifiable), not merged into N's stay."""
    n = site("point", "N", 480, 0, min_dwell_s=120)
    sites = SiteIndex([D1, P1, P2, n, P3, S1], roads=STREETS)
    plan = [("start", "D1"), ("point", "P1"), ("point", "P2"), ("point", "N"),
            ("point", "P3"), ("station", "S1"), ("end", "D1")]  # fmt: skip
    off = (20.0, -55.0)
    t = Track(at("06:00"), x=-500, seed=4).stay(120)
    t.drive(0, 0, 30).stay(300).drive(400, 0, 30).stay(130, off=off)
    driving_on = len(t.fixes)
    t.drive(480, 0, 20).stay(300).drive(800, 0, 30).stay(300).drive(1600, 0, 30).stay(900)
    t.drive(1600, 50, 30).drive(-500, 50, 40).drive(-500, 0, 30).stay(600)
    fixes = displaced(t.fixes, driving_on, *off)  # the drift lasts into the drive
    day = truck_day("T1", fixes, sites=sites, plan=plan)
    (at_n,) = [v for v in day.visits if v.site_id == "N"]
    assert (at_n.confidence, at_n.dwell_s < 320) == (1.0, True), at_n
    points = [due(P1, seq=1), due(P2, seq=2), due(n, seq=3), due(P3, seq=4)]
    verdicts, alerts = evaluate([day], points, at("21:00"))
    assert (verdicts["P2"].status, verdicts["P2"].reason) == ("unverifiable", "drifted_stay")
    assert (verdicts["N"].status, verdicts["N"].confidence) == ("cleared", 1.0)
    assert [a for a in alerts if a.point_id in ("P2", "N")] == []


def _bin_lifts(point_id: str, start: datetime, count: int = 2) -> list[DeviceEvent]:
    """The truck's lift sensor: one lift every 40 s from `start`, naming the point's bins."""
    return [
        DeviceEvent(start + timedelta(seconds=40 * k), "bin_lift", point_id=point_id)
        for k in range(count)
    ]


@pytest.mark.parametrize("off", [(0.0, 71.0), (40.0, 60.0)])
def test_drifted_stop_whose_bin_lifts_name_the_point_is_cleared_at_its_turn(
    off: tuple[float, float],
) -> None:
    """A 2-minute stop at P2 whose fixes sit 71 m off (no crossing of the fence, on a
    road), with the lift sensor naming P2's bins: the device says where the truck
    stood. Cleared at its turn, less sure than a stay in the fence; no alert."""
    t = Track(at("06:00"), x=-500, noise_m=10, seed=3).stay(120)
    t.drive(0, 0, 30).stay(300).drive(400 + off[0], off[1], 30)
    arrived = t.t
    t.stay(130)
    t.drive(800, 0, 30).stay(300).drive(1600, 0, 30).stay(900).drive(-500, 0, 40).stay(600)
    day = truck_day("T1", t.fixes, _bin_lifts("P2", arrived + timedelta(seconds=20)))
    verdicts, alerts = evaluate([day], [due(P1), due(P2), due(P3)], at("21:00"))
    v = verdicts["P2"]
    assert (v.status, v.evidence["basis"]) == ("cleared", "drifted_stay"), v
    assert 0.5 < v.confidence < 1.0
    assert [a for a in alerts if a.point_id == "P2"] == []


def test_drifted_stop_inside_a_neighbours_fence_goes_to_the_point_its_lifts_name() -> None:
    """P2 served 150 s with its fixes drifted 32 m from N, a point 70 m on (inside N's
    fence): the lifts name P2, so the stay is P2's (cleared), and N, served later in
    its own fence, is cleared by its own stay."""
    n = site("point", "N", 470, 0, min_dwell_s=120)
    sites = SiteIndex([D1, P1, P2, n, P3, S1])
    plan = [("start", "D1"), ("point", "P1"), ("point", "P2"), ("point", "N"),
            ("point", "P3"), ("station", "S1"), ("end", "D1")]  # fmt: skip
    t = Track(at("06:00"), x=-500, seed=6).stay(120)
    t.drive(0, 0, 30).stay(300).drive(400, 0, 30)
    arrived = t.t
    t.stay(150, off=(70, 32))
    t.drive(470, 0, 20).stay(200).drive(800, 0, 30).stay(300).drive(1600, 0, 30).stay(900)
    t.drive(-500, 0, 40).stay(600)
    day = truck_day("T1", t.fixes, _bin_lifts("P2", arrived + timedelta(seconds=30)),
                    sites=sites, plan=plan)  # fmt: skip
    points = [due(P1, seq=1), due(P2, seq=2), due(n, seq=3), due(P3, seq=4)]
    verdicts, alerts = evaluate([day], points, at("21:00"))
    assert (verdicts["P2"].status, verdicts["P2"].evidence["basis"]) == ("cleared", "drifted_stay")
    assert (verdicts["N"].status, verdicts["N"].confidence) == ("cleared", 1.0)
    assert [a for a in alerts if a.point_id in ("P2", "N")] == []


def test_a_lift_at_the_stop_before_does_not_move_the_next_stay() -> None:
    """Lifts at P2 until it leaves, then a stop 60 s later at N, 70 m on: N's stay stays N's."""
    n = site("point", "N", 470, 0, min_dwell_s=120)
    sites = SiteIndex([D1, P1, P2, n, P3, S1])
    t = Track(at("06:00"), x=-500, seed=6).stay(120).drive(400, 0, 30)
    arrived = t.t
    t.stay(150).drive(470, 0, 5).stay(200).drive(1600, 0, 30).stay(900)
    found = detect("T1", t.fixes, _bin_lifts("P2", arrived + timedelta(seconds=60), 3), sites)
    stays = [(v.site_id, v.confidence) for v in found.visits if v.kind == "stay"]
    assert stays[1:3] == [("P2", 1.0), ("N", 1.0)], stays
