"""The independent plan checker: a hand-timed valid plan passes, and each rule broken
on its own (one mutation of that plan) is reported with its kind, truck and point.

The base problem lies on a line (10 m/s, see ``tiny``); depot D and the stations S, R
(``other`` only) and Q (open from 10 000 s) all sit at x = 0, so swapping one station
for another keeps every time and distance.

* T1 (1000 kg, 1300 kg a day, routes of at most 4000 s): A (x=1000, 400 kg, window
  ..150 s), B (1100, 400 kg), unload at S, C (1200, 400 kg, window from 2000 s), unload
  at S, home at 2480 s after 4600 m;
* T2 (kitchen and other, narrow lanes, a 600 s break starting 300..900 s): K (2000,
  kitchen), N (2500, narrow), break, E (3000, 200 kg), unload at S, home at 1680 s;
* T3 (shift 100..3000 s): F (500), unload at S, home at 560 s;
* X (hazardous) no truck carries: unassigned.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
from msgspec.structs import replace

from routing.check import LivePosition, Violation, check_plan
from routing.matrix import TravelMatrix
from routing.plan import Plan, Route, SolveStats, Stop, Unassigned
from routing.problem import Problem, depot_key, point_key, station_key

from .tiny import line_problem, point, station, truck


def make_problem() -> Problem:
    return line_problem(
        {
            "A": (1000.0, point("A", amount_kg=400.0, window_end_s=150.0)),
            "B": (1100.0, point("B", amount_kg=400.0)),
            "C": (1200.0, point("C", amount_kg=400.0, window_start_s=2000.0)),
            "K": (2000.0, point("K", stream="kitchen")),
            "N": (2500.0, point("N", access_class="narrow")),
            "E": (3000.0, point("E", amount_kg=200.0)),
            "F": (500.0, point("F")),
            "X": (700.0, point("X", stream="hazardous")),
        },
        trucks=[
            truck("T1", max_day_load_kg=1300.0, max_route_duration_s=4000.0),
            truck(
                "T2",
                streams=frozenset({"other", "kitchen"}),
                can_enter_narrow=True,
                break_duration_s=600.0,
                break_earliest_s=300.0,
                break_latest_s=900.0,
            ),
            truck("T3", shift_start_s=100.0, shift_end_s=3000.0),
        ],
        stations={
            "S": (0.0, station("S")),
            "R": (0.0, station("R", streams=frozenset({"other"}))),
            "Q": (0.0, station("Q", opens_s=10_000.0)),
        },
    )


PB = make_problem()


def timed(pb: Problem, truck_id: str, items: list[str], depart_s: float | None = None) -> Route:
    """A route timed as early as possible: ``"@S"`` unloads at S, ``"break"`` takes the
    break right after the stop before it (waiting for its window), anything else is a
    point; service waits for the point's window or the station's opening."""
    t = pb.truck(truck_id)
    now = t.shift_start_s if depart_s is None else depart_s
    key, load = depot_key(t.start_depot_id), 0.0

    def stop(kind: str, ref: str | None, arrival: float, leg: float = 0.0) -> Stop:
        return Stop(
            kind=kind,  # type: ignore[arg-type]
            ref_id=ref,
            arrival_s=arrival,
            departure_s=now,
            load_after_kg=load,
            distance_from_prev_m=leg,
        )

    stops = [stop("start", t.start_depot_id, now)]
    for item in [*items, "end"]:
        if item == "break":
            b0 = max(now, t.break_earliest_s)
            now = b0 + t.break_duration_s
            stops.append(stop("break", None, b0))
            continue
        ready, busy = 0.0, 0.0
        if item == "end":
            kind, ref, nxt = "end", t.end_depot_id, depot_key(t.end_depot_id)
        elif item.startswith("@"):
            s = pb.station(item[1:])
            kind, ref, nxt = "station", s.station_id, station_key(s.station_id)
            ready, busy, load = s.opens_s, s.tipping_time_s, 0.0
        else:
            p = pb.point(item)
            kind, ref, nxt = "point", item, point_key(item)
            ready, busy, load = p.window_start_s, p.service_time_s, load + p.amount_kg
        arrival = now + pb.matrix.duration(key, nxt)
        now = max(arrival, ready) + busy
        stops.append(stop(kind, ref, arrival, pb.matrix.distance(key, nxt)))
        key = nxt
    return Route(
        truck_id=truck_id,
        stops=tuple(stops),
        distance_m=sum(s.distance_from_prev_m for s in stops),
        duration_s=stops[-1].arrival_s - stops[0].departure_s,
    )


BASE_ITEMS = {
    "T1": ["A", "B", "@S", "C", "@S"],
    "T2": ["K", "N", "break", "E", "@S"],
    "T3": ["F", "@S"],
}


def make_plan(**items: list[str]) -> Plan:
    """The base plan, with the routes of the trucks named in ``items`` re-timed from
    those items."""
    by_truck = {tid: timed(PB, tid, BASE_ITEMS[tid]) for tid in BASE_ITEMS}
    by_truck.update({tid: timed(PB, tid, its) for tid, its in items.items()})
    stats = SolveStats(
        objective=0.0, distance_m=0.0, duration_s=0.0, solve_time_s=0.0, solver="hand", seed=0
    )
    return Plan(
        routes=tuple(by_truck.values()),
        unassigned=(Unassigned(point_id="X", reason="stream"),),
        stats=stats,
    )


BASE = make_plan()


def route(plan: Plan, truck_id: str) -> Route:
    r = plan.route_for(truck_id)
    assert r is not None
    return r


def with_route(plan: Plan, new: Route) -> Plan:
    return replace(
        plan, routes=tuple(new if r.truck_id == new.truck_id else r for r in plan.routes)
    )


def with_stop(plan: Plan, truck_id: str, at: str | None, /, **changes: object) -> Plan:
    """The plan with some fields of one stop (the first whose ``ref_id`` is ``at``)
    changed."""
    r = route(plan, truck_id)
    i = next(i for i, s in enumerate(r.stops) if s.ref_id == at)
    stops = list(r.stops)
    stops[i] = replace(stops[i], **changes)
    return with_route(plan, replace(r, stops=tuple(stops)))


def only(violations: list[Violation], kind: str) -> list[Violation]:
    """The violations, after checking there are some and all are of ``kind``."""
    assert violations, f"no {kind} violation reported"
    assert {v.kind for v in violations} == {kind}, [str(v) for v in violations]
    return violations


# --------------------------------------------------------------------------- valid


def test_hand_timed_base_plan_is_valid() -> None:
    """The hand-timed base plan (numbers checked by hand) passes with no violation."""
    t1, t2, t3 = route(BASE, "T1"), route(BASE, "T2"), route(BASE, "T3")
    assert [(s.ref_id, s.arrival_s, s.departure_s, s.load_after_kg) for s in t1.stops] == [
        ("D", 0.0, 0.0, 0.0),
        ("A", 100.0, 160.0, 400.0),
        ("B", 170.0, 230.0, 800.0),
        ("S", 340.0, 640.0, 0.0),
        ("C", 760.0, 2060.0, 400.0),
        ("S", 2180.0, 2480.0, 0.0),
        ("D", 2480.0, 2480.0, 0.0),
    ]
    assert (t1.distance_m, t1.duration_s) == (4600.0, 2480.0)
    assert [(s.kind, s.arrival_s, s.departure_s) for s in t2.stops][2:5] == [
        ("point", 310.0, 370.0),
        ("break", 370.0, 970.0),
        ("point", 1020.0, 1080.0),
    ]
    assert (t2.distance_m, t2.duration_s) == (6000.0, 1680.0)
    assert (t3.stops[0].departure_s, t3.duration_s) == (100.0, 460.0)
    assert check_plan(PB, BASE) == []


def test_solved_plan_of_the_base_problem_is_valid() -> None:
    """The solver's own plan for the same problem passes too (X left out for its stream)."""
    from routing import SolverOptions, solve

    plan = solve(PB, time_limit_s=1.0, options=SolverOptions(solution_limit=200))
    assert check_plan(PB, plan) == []
    assert [(u.point_id, u.reason) for u in plan.unassigned] == [("X", "stream")]


# --------------------------------------------------------------------------- loads


def test_capacity_over_the_truckload() -> None:
    """Without the mid-day unload T1 carries 1200 kg > 1000 kg when it collects C."""
    (v,) = only(check_plan(PB, make_plan(T1=["A", "B", "C", "@S"])), "capacity")
    assert (v.truck_id, v.ref_id) == ("T1", "C")
    assert "capacity 1000" in v.message


def test_day_load_cap() -> None:
    """E moved onto T1: 1400 kg collected in the day > its 1300 kg cap (no trip over)."""
    plan = make_plan(T1=["A", "B", "@S", "C", "E", "@S"], T2=["K", "N", "break", "@S"])
    (v,) = only(check_plan(PB, plan), "capacity")
    assert (v.truck_id, v.ref_id) == ("T1", "E")
    assert "day load 1400" in v.message


def test_end_empty() -> None:
    """Without the last unload T1 drives home with 400 kg on board."""
    (v,) = only(check_plan(PB, make_plan(T1=["A", "B", "@S", "C"])), "end_empty")
    assert v.truck_id == "T1"


# --------------------------------------------------------------------------- times


def test_time_window_too_early() -> None:
    """C served on arrival at 760 s, before its window opens at 2000 s."""
    plan = with_stop(BASE, "T1", "C", departure_s=820.0)
    (v,) = only(check_plan(PB, plan), "time_window")
    assert (v.truck_id, v.ref_id) == ("T1", "C")


def test_time_window_too_late() -> None:
    """T1 leaving 100 s later serves A at 200 s, after its window closes at 150 s."""
    late = timed(PB, "T1", BASE_ITEMS["T1"], depart_s=100.0)
    (v,) = only(check_plan(PB, with_route(BASE, late)), "time_window")
    assert (v.truck_id, v.ref_id) == ("T1", "A")


@pytest.mark.parametrize(
    ("depart_s", "words"),
    [(2600.0, "after the shift ends"), (0.0, "before the shift starts")],
)
def test_shift(depart_s: float, words: str) -> None:
    """T3 (shift 100..3000 s) back at 3060 s, or leaving at 0 s, is outside its shift."""
    moved = timed(PB, "T3", BASE_ITEMS["T3"], depart_s=depart_s)
    (v,) = only(check_plan(PB, with_route(BASE, moved)), "shift")
    assert v.truck_id == "T3" and words in v.message


def test_max_route_duration() -> None:
    """T1 home at 4100 s (inside its shift): longer than its 4000 s route limit."""
    r = route(BASE, "T1")
    end = replace(r.stops[-1], arrival_s=4100.0, departure_s=4100.0)
    late = replace(r, stops=(*r.stops[:-1], end), duration_s=4100.0)
    (v,) = only(check_plan(PB, with_route(BASE, late)), "shift")
    assert v.truck_id == "T1" and "more than 4000" in v.message


def test_leg_driven_faster_than_the_matrix_allows() -> None:
    """Arriving at C 20 s after leaving S, when the 1200 m take 120 s."""
    plan = with_stop(BASE, "T1", "C", arrival_s=660.0)
    (v,) = only(check_plan(PB, plan), "timing")
    assert (v.truck_id, v.ref_id) == ("T1", "C")


def test_station_opening_hours() -> None:
    """T1's last unload at Q (opens at 10 000 s) at 2180 s."""
    r = route(BASE, "T1")
    stops = (*r.stops[:-2], replace(r.stops[-2], ref_id="Q"), r.stops[-1])
    (v,) = only(check_plan(PB, with_route(BASE, replace(r, stops=stops))), "station_hours")
    assert (v.truck_id, v.ref_id) == ("T1", "Q")


# --------------------------------------------------------------------------- break


@pytest.mark.parametrize(
    ("items", "changes", "words"),
    [
        # No break: the day 0..1080 s leaves no room before or after 300..900 s.
        (["K", "N", "E", "@S"], None, "no break"),
        # The break taken after the last unload, at 1080 s.
        (["K", "N", "E", "@S", "break"], None, "window 300..900"),
        # Cut to 300 s.
        (None, {"departure_s": 670.0}, "lasts 300 s"),
    ],
    ids=["missing", "outside-window", "too-short"],
)
def test_lunch_break(items: list[str] | None, changes: dict[str, float] | None, words: str) -> None:
    """T2's break missing, started outside its window, or too short."""
    plan = make_plan(T2=items) if items else with_stop(BASE, "T2", None, **(changes or {}))
    (v,) = only(check_plan(PB, plan), "break")
    assert v.truck_id == "T2" and words in v.message


# --------------------------------------------------------------------------- streams, access


def test_stream_the_truck_cannot_carry() -> None:
    """Kitchen waste K moved onto T1, which carries only ``other``."""
    plan = make_plan(T1=["A", "B", "@S", "C", "K", "@S"], T2=["N", "break", "E", "@S"])
    (v,) = only(check_plan(PB, plan), "stream")
    assert (v.truck_id, v.ref_id) == ("T1", "K")


def test_stream_the_station_does_not_accept() -> None:
    """T2 unloads kitchen waste at R, which takes only ``other``."""
    plan = with_stop(BASE, "T2", "S", ref_id="R")
    (v,) = only(check_plan(PB, plan), "stream")
    assert (v.truck_id, v.ref_id) == ("T2", "R")
    assert "kitchen" in v.message


def test_access_narrow_point_on_a_big_truck() -> None:
    """The narrow-lane point N moved onto T1, which may not enter narrow lanes."""
    plan = make_plan(T1=["A", "B", "@S", "C", "N", "@S"], T2=["K", "break", "E", "@S"])
    (v,) = only(check_plan(PB, plan), "access")
    assert (v.truck_id, v.ref_id) == ("T1", "N")


# --------------------------------------------------------------------------- served once


def test_point_neither_served_nor_unassigned() -> None:
    """X dropped from the unassigned list is unexplained."""
    (v,) = only(check_plan(PB, replace(BASE, unassigned=())), "unserved")
    assert v.ref_id == "X"


@pytest.mark.parametrize(
    "plan",
    [
        make_plan(T3=["F", "B", "@S"]),
        replace(BASE, unassigned=(*BASE.unassigned, Unassigned(point_id="B", reason="shift"))),
    ],
    ids=["two-routes", "served-and-unassigned"],
)
def test_point_served_twice(plan: Plan) -> None:
    """B served by T1 and T3, or served and also listed unassigned."""
    (v,) = only(check_plan(PB, plan), "duplicate")
    assert v.ref_id == "B"


def test_truck_with_two_routes() -> None:
    """Two routes for T3 (the second empty)."""
    empty = timed(PB, "T3", [])
    (v,) = only(check_plan(PB, replace(BASE, routes=(*BASE.routes, empty))), "duplicate")
    assert v.truck_id == "T3"


# --------------------------------------------------------------------------- references


@pytest.mark.parametrize(
    ("plan", "truck_id"),
    [
        # An unknown station in a route.
        (with_stop(BASE, "T1", "S", ref_id="ZZ"), "T1"),
        # An unknown point listed unassigned.
        (
            replace(BASE, unassigned=(*BASE.unassigned, Unassigned(point_id="ZZ", reason="shift"))),
            None,
        ),
    ],
    ids=["station", "unassigned-point"],
)
def test_unknown_id(plan: Plan, truck_id: str | None) -> None:
    """An id the problem does not know is named."""
    (v,) = only(check_plan(PB, plan), "unknown_ref")
    assert v.truck_id == truck_id and "'ZZ'" in v.message


def test_unknown_truck() -> None:
    """A route for a truck the problem does not have: named, and its points unserved."""
    renamed = tuple(replace(r, truck_id="T9") if r.truck_id == "T3" else r for r in BASE.routes)
    out = check_plan(PB, replace(BASE, routes=renamed))
    assert sorted((v.kind, v.ref_id) for v in out) == [("unknown_ref", None), ("unserved", "F")]
    assert "'T9'" in next(v.message for v in out if v.kind == "unknown_ref")


def test_unreachable_leg() -> None:
    """A point the road graph cannot reach from the depot."""
    pb = line_problem({"A": (1000.0, point("A"))})
    m = pb.matrix
    i, j = m.index[depot_key("D")], m.index[point_key("A")]
    dist, dur = m.distance_m.copy(), m.duration_s.copy()
    dist[i, j] = dur[i, j] = np.inf
    cut = dataclasses.replace(pb, matrix=TravelMatrix(m.location_ids, dist, dur))
    plan = replace(BASE, routes=(timed(pb, "T1", ["A", "@S"]),), unassigned=())
    out = check_plan(cut, plan)
    assert "unreachable" in {v.kind for v in out}
    assert [v.ref_id for v in out if v.kind == "unreachable"] == ["A"]


@pytest.mark.parametrize(
    "where",
    ["no-start", "no-end"],
)
def test_structure(where: str) -> None:
    """A route that does not begin with 'start' and finish with 'end'."""
    r = route(BASE, "T3")
    if where == "no-start":
        stops = r.stops[1:]
    else:
        stops = (*r.stops[:-1], replace(r.stops[-1], kind="station", ref_id="S"))
    (v,) = only(check_plan(PB, with_route(BASE, replace(r, stops=stops))), "structure")
    assert v.truck_id == "T3"


# --------------------------------------------------------------------------- reports


@pytest.mark.parametrize(
    ("mutate", "ref_id"),
    [
        (lambda p: with_route(p, replace(route(p, "T1"), distance_m=4700.0)), None),
        (lambda p: with_route(p, replace(route(p, "T1"), duration_s=2000.0)), None),
        (lambda p: with_stop(p, "T1", "B", distance_from_prev_m=150.0), "B"),
        (lambda p: with_stop(p, "T1", "B", load_after_kg=700.0), "B"),
    ],
    ids=["route-distance", "route-duration", "leg-distance", "load-after"],
)
def test_reported_numbers_that_do_not_add_up(
    mutate: Callable[[Plan], Plan], ref_id: str | None
) -> None:
    """A route's distance/duration or a stop's leg/load that does not add up."""
    plan = mutate(BASE)
    (v,) = only(check_plan(PB, plan), "report")
    assert (v.truck_id, v.ref_id) == ("T1", ref_id)


# --------------------------------------------------------------------------- live positions


def test_live_leg_after_a_leading_break_starts_at_the_live_position() -> None:
    """Re-planned from N with 250 kg measured on board, T2 takes its break first: the
    leg after the break, and the load, count from the live position."""
    plan = with_stop(BASE, "T2", "E", load_after_kg=450.0)
    live = {"T2": LivePosition(key="point/N", time_s=370.0, completed_stops=3, load_kg=250.0)}
    assert check_plan(PB, plan, live=live) == []
    (v,) = only(check_plan(PB, BASE, live=live), "report")  # 200 + 200 != 450
    assert (v.truck_id, v.ref_id) == ("T2", "E")


def test_live_break_taken_off_plan() -> None:
    """No break stop, but the live position says the driver has had it: valid."""
    plan = make_plan(T2=["K", "N", "E", "@S"])
    live = LivePosition(key="point/N", time_s=370.0, completed_stops=3, load_kg=200.0)
    only(check_plan(PB, plan, live={"T2": live}), "break")
    live = dataclasses.replace(live, break_taken=True)
    assert check_plan(PB, plan, live={"T2": live}) == []
