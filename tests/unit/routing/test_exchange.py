"""Moves between routes and within a route (routing.exchange) on tiny lines, kept
only when the routes hold, bounded by passes (never by the clock)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from routing import SolverOptions, solve
from routing.check import check_plan
from routing.exchange import BETWEEN, DEFAULT_MOVES, improve_routes, neighbour_lists
from routing.finish import finish_plan, make_plan
from routing.instances import synthetic_district
from routing.plan import Plan, Route
from routing.problem import Problem
from routing.schedule import Visit, route_fault, schedule_route

from .tiny import line_problem, point, truck


def _p(pid: str) -> Visit:
    return Visit("point", pid)


S = Visit("station", "S")


def _visits(route: Route) -> list[Visit]:
    return [
        Visit(s.kind, s.ref_id)
        for s in route.stops
        if s.kind in ("point", "station") and s.ref_id is not None
    ]


def _plan(problem: Problem, visits: dict[str, list[Visit]]) -> Plan:
    routes, unassigned = finish_plan(problem, {t: v for t, v in visits.items() if v}, [])
    return make_plan(problem, routes, unassigned, solve_time_s=0.0, seed=0, status="test")


def test_a_point_riding_across_the_depot_moves_next_to_its_neighbour() -> None:
    """Relocate: P2 sits beside P3 but rides on T1's route across the depot (6.2 km
    in all); after the moves the east side is driven once (4.2 km, the best on this
    line) and the plan checks."""
    pb = line_problem(
        {"P1": (-1000.0, point("P1")), "P2": (1000.0, point("P2")), "P3": (1100.0, point("P3"))},
        trucks=[truck("T1"), truck("T2")],
    )
    before = {"T1": [_p("P1"), _p("P2"), S], "T2": [_p("P3"), S]}
    assert _plan(pb, before).stats.distance_m == 6200.0
    result = improve_routes(pb, before)
    assert result.moves == 1 and result.saved_m == 2000.0
    plan = _plan(pb, {**before, **result.changed})
    assert check_plan(pb, plan) == []
    assert plan.stats.distance_m == 4200.0


def test_full_trucks_swap_tails() -> None:
    """2-opt*: each truck holds two points a day (capacity and day load), one on each
    side of the depot; relocating is blocked by the load, swapping the tails is not."""
    full = {"capacity_kg": 200.0, "max_day_load_kg": 200.0}
    pb = line_problem(
        {
            "A1": (100.0, point("A1")),
            "A2": (-1000.0, point("A2")),
            "B1": (-100.0, point("B1")),
            "B2": (1000.0, point("B2")),
        },
        trucks=[truck("T1", **full), truck("T2", **full)],
    )
    before = {"T1": [_p("A1"), _p("A2"), S], "T2": [_p("B1"), _p("B2"), S]}
    after = {**before, **improve_routes(pb, before).changed}
    sides = {
        t: {pb.point(v.ref_id).point_id for v in vs if v.kind == "point"} for t, vs in after.items()
    }
    assert sorted(map(sorted, sides.values())) == [["A1", "B2"], ["A2", "B1"]]
    plan = _plan(pb, after)
    assert check_plan(pb, plan) == []
    assert plan.stats.distance_m < _plan(pb, before).stats.distance_m


def test_full_trucks_swap_points_where_tails_cannot_move() -> None:
    """Swap: two points a day per truck, T1's kitchen point K east and A west, T2's B
    east and C west; only T1 carries kitchen waste, so no tail can move (every
    exchange of tails overloads a truck or hands K to T2): swapping A and B puts each
    truck on one side (8.4 km down to 4.4 km)."""
    full = {"capacity_kg": 200.0, "max_day_load_kg": 200.0}
    pb = line_problem(
        {
            "K": (1000.0, point("K", stream="kitchen")),
            "A": (-1000.0, point("A")),
            "B": (1100.0, point("B")),
            "C": (-1100.0, point("C")),
        },
        trucks=[truck("T1", streams=frozenset({"other", "kitchen"}), **full), truck("T2", **full)],
    )
    before = {"T1": [_p("K"), _p("A"), S], "T2": [_p("B"), _p("C"), S]}
    assert _plan(pb, before).stats.distance_m == 8400.0
    after = {**before, **improve_routes(pb, before).changed}
    sides = {t: sorted(v.ref_id for v in vs if v.kind == "point") for t, vs in after.items()}
    assert sides == {"T1": ["B", "K"], "T2": ["A", "C"]}
    plan = _plan(pb, after)
    assert check_plan(pb, plan) == []
    assert plan.stats.distance_m == 4400.0


@pytest.mark.parametrize(
    ("rule", "w", "t2"),
    [
        ("none", {}, {}),
        ("window", {"window_end_s": 150.0}, {"shift_start_s": 200.0}),
        ("stream", {"stream": "kitchen"}, {}),
        ("shift", {}, {"shift_end_s": 600.0}),
    ],
)
def test_a_saving_move_is_made_only_if_it_keeps_the_rules(
    rule: str, w: dict[str, object], t2: dict[str, object]
) -> None:
    """T1 (one load a day) drives out to W, T2 to Q just beyond it: handing W to T2
    saves T1's whole route, and is made unless it breaks a rule (T2 reaches W too
    late, does not carry its stream, or would end its shift late at 640 s)."""
    one_load = {"capacity_kg": 100.0, "max_day_load_kg": 100.0}
    pb = line_problem(
        {"W": (1050.0, point("W", **w)), "Q": (1100.0, point("Q"))},
        trucks=[
            truck("T1", streams=frozenset({"other", "kitchen"}), **one_load),
            truck("T2", **t2),
        ],
    )
    before = {"T1": [_p("W"), S], "T2": [_p("Q"), S]}
    assert check_plan(pb, _plan(pb, before)) == []
    result = improve_routes(pb, before)
    if rule == "none":
        assert result.changed == {"T1": [], "T2": [_p("W"), _p("Q"), S]}
    else:
        assert result.changed == {} and result.moves == 0


def _zigzag(window_end_s: dict[str, float] | None = None) -> Problem:
    """One truck; P1..P4 at 100..400 m east of the depot and station."""
    ends = window_end_s or {}
    return line_problem(
        {
            f"P{i}": (100.0 * i, point(f"P{i}", window_end_s=ends.get(f"P{i}", 20_000.0)))
            for i in range(1, 5)
        }
    )


ZIGZAG = {"T1": [_p("P1"), _p("P3"), _p("P2"), _p("P4"), S]}


@pytest.mark.parametrize("kind", ["2-opt within", "or-opt within"])
def test_a_route_that_zigzags_is_straightened_by_moves_within_it(kind: str) -> None:
    """P1, P3, P2, P4 out and back is 1.0 km; an order that drives out and back once
    (P1..P4, or P1, P3, P4, P2) 0.8 km. One truck, so no move between routes helps;
    turning a stretch round (2-opt) or moving a point (or-opt) does, and the plan
    checks."""
    pb = _zigzag()
    assert _plan(pb, ZIGZAG).stats.distance_m == 1000.0
    assert improve_routes(pb, ZIGZAG, kinds=BETWEEN).changed == {}
    result = improve_routes(pb, ZIGZAG, kinds=frozenset({kind}))
    assert result.moves >= 1 and result.saved_m == 200.0
    plan = _plan(pb, result.changed)
    assert check_plan(pb, plan) == []
    assert plan.stats.distance_m == 800.0


def test_a_move_within_a_route_is_made_only_if_the_route_still_holds() -> None:
    """P3 must be served by 100 s, P1 and P2 by 200 s: the zigzag reaches them at 90,
    10 and 160 s. A shorter route drives out to P4 and back once (0.8 km), and each
    such order is too late somewhere (P1, P2, P3, P4: P3 at 150 s; P1, P3, P4, P2: P2
    at 240 s; P2, P3, P4, P1: P1 at 250 s; ...), so nothing changes."""
    pb = _zigzag({"P1": 200.0, "P2": 200.0, "P3": 100.0})
    assert check_plan(pb, _plan(pb, ZIGZAG)) == []
    result = improve_routes(pb, ZIGZAG, kinds=DEFAULT_MOVES)
    assert result.changed == {} and result.moves == 0


def test_a_string_of_points_moves_to_another_route_as_one() -> None:
    """Or-opt: T1 drives west to P0 and P1, then east to A and B beside T2's Q. The
    string A, B moves to T2 in one move (turned so that the point that moves it lies
    next to Q) and T1 drives west only (6.26 km down to 4.24 or 4.26 km); the plan
    checks."""
    pb = line_problem(
        {
            "P0": (-1100.0, point("P0")),
            "P1": (-1000.0, point("P1")),
            "A": (1000.0, point("A")),
            "B": (1010.0, point("B")),
            "Q": (1020.0, point("Q")),
        },
        trucks=[truck("T1"), truck("T2")],
    )
    before = {"T1": [_p("P0"), _p("P1"), _p("A"), _p("B"), S], "T2": [_p("Q"), S]}
    assert _plan(pb, before).stats.distance_m == 6260.0
    result = improve_routes(pb, before, kinds=frozenset({"or-opt"}))
    assert result.moves == 1
    assert result.changed["T1"] == [_p("P0"), _p("P1"), S]
    assert result.changed["T2"] in (
        [_p("A"), _p("B"), _p("Q"), S],
        [_p("B"), _p("A"), _p("Q"), S],
    )
    plan = _plan(pb, {**before, **result.changed})
    assert check_plan(pb, plan) == []
    assert plan.stats.distance_m in (4240.0, 4260.0)


def test_a_district_improves_checks_and_depends_only_on_the_seed() -> None:
    """On a generated district with stations, windows, the break, kitchen waste and
    narrow lanes, planned by small territories (routes cut at their borders): the
    moves shorten the plan in a bounded number of passes, serve the same points, the
    plan checks, and the same seed gives the same routes."""
    pb, _ = synthetic_district(n_points=60, n_trucks=6, seed=3, kitchen_share=0.2)
    options = SolverOptions(max_points_per_solve=15, workers=1, solution_limit=20, improve_rounds=0)
    start = solve(pb, time_limit_s=300, seed=1, options=options)
    assert check_plan(pb, start) == []
    before = {r.truck_id: _visits(r) for r in start.routes}
    near = neighbour_lists(pb, 8)
    first = improve_routes(pb, before, neighbours=near, max_passes=2, seed=5)
    again = improve_routes(pb, before, neighbours=near, max_passes=2, seed=5)
    assert first.passes <= 2 and first.moves > 0
    assert first.changed == again.changed
    plan = _plan(pb, {**before, **first.changed})
    assert check_plan(pb, plan) == []
    assert len(plan.unassigned) == len(start.unassigned)
    assert plan.stats.distance_m < start.stats.distance_m


def test_neighbour_lists_are_the_nearest_points_without_the_point_itself() -> None:
    """On a line the nearest points of P2 are P1 and P3, then P4."""
    pb = line_problem({f"P{i}": (100.0 * i, point(f"P{i}")) for i in range(1, 6)})
    near = neighbour_lists(pb, 3)
    assert near["P2"][:2] in (["P1", "P3"], ["P3", "P1"])
    assert near["P2"][2] == "P4"
    assert all(pid not in lst for pid, lst in near.items())


def test_a_deadline_already_past_changes_nothing() -> None:
    """With the deadline behind the clock no route is even timed: nothing changes."""
    pb = line_problem(
        {"P1": (-1000.0, point("P1")), "P2": (1000.0, point("P2")), "P3": (1100.0, point("P3"))},
        trucks=[truck("T1"), truck("T2")],
    )
    before = {"T1": [_p("P1"), _p("P2"), S], "T2": [_p("P3"), S]}
    result = improve_routes(pb, before, deadline=10.0, clock=lambda: 10.0)
    assert result.changed == {} and result.passes == 0 and result.moves == 0


def test_a_focus_limits_the_points_that_look_for_moves() -> None:
    """With a focus, only the points of the focused routes look for moves: none when
    the focus is empty, the 2 km saving when it holds T1 (P2's route)."""
    pb = line_problem(
        {"P1": (-1000.0, point("P1")), "P2": (1000.0, point("P2")), "P3": (1100.0, point("P3"))},
        trucks=[truck("T1"), truck("T2")],
    )
    before = {"T1": [_p("P1"), _p("P2"), S], "T2": [_p("P3"), S]}
    assert improve_routes(pb, before, focus=set()).moves == 0
    moved = improve_routes(pb, before, focus={"T1"})
    assert moved.moves == 1 and moved.saved_m == 2000.0


def test_a_fresh_solve_is_polished_by_the_moves_and_depends_only_on_the_seed() -> None:
    """A district solved whole by a short search (20 solutions): the moves between
    routes that follow it (the default) shorten the plan, which serves as many points,
    checks, and comes back the same for the same seed."""
    pb, _ = synthetic_district(n_points=60, n_trucks=6, seed=3, kitchen_share=0.2)
    short = SolverOptions(solution_limit=20)
    without = solve(pb, time_limit_s=300, seed=1, options=replace(short, exchange_passes=0))
    polished = solve(pb, time_limit_s=300, seed=1, options=short)
    again = solve(pb, time_limit_s=300, seed=1, options=short)
    assert check_plan(pb, polished) == []
    assert len(polished.unassigned) == len(without.unassigned)
    assert polished.stats.distance_m < without.stats.distance_m
    assert [r.stops for r in polished.routes] == [r.stops for r in again.routes]


def test_route_fault_agrees_with_the_full_schedule() -> None:
    """route_fault (the quick test of trial routes) gives schedule_route's reason on
    routes that hold and routes that break (windows, loads, the shift, the break),
    drawn from a planned district by moving points between routes at random."""
    pb, _ = synthetic_district(n_points=60, n_trucks=6, seed=3, kitchen_share=0.2)
    plan = solve(pb, time_limit_s=300, seed=1, options=SolverOptions(solution_limit=20))
    routes = {r.truck_id: _visits(r) for r in plan.routes}
    rng = np.random.default_rng(0)
    outcomes = []
    for _ in range(300):
        a, b = rng.choice(sorted(routes), size=2, replace=False)
        points = [i for i, v in enumerate(routes[a]) if v.kind == "point"]
        taken = routes[a][int(rng.choice(points))]
        at = int(rng.integers(len(routes[b]) + 1))
        trial = [*routes[b][:at], taken, *routes[b][at:]]
        truck = pb.truck(str(b))
        reason = schedule_route(pb, truck, trial).reason
        assert route_fault(pb, truck, trial) == reason
        outcomes.append(reason)
    assert None in outcomes and len(set(outcomes)) > 1


@pytest.mark.parametrize(("window_end_s", "holds"), [(150.0, False), (5000.0, True)])
def test_route_fault_when_the_break_fits_on_no_leg(window_end_s: float, holds: bool) -> None:
    """The break (30 min from 100 s to 200 s) fits only on the first leg, and there it
    delays P1 past 150 s: the route breaks; with a later window it holds."""
    lunch = {"break_duration_s": 1800.0, "break_earliest_s": 100.0, "break_latest_s": 200.0}
    pb = line_problem(
        {"P1": (1000.0, point("P1", window_end_s=window_end_s, service_time_s=300.0))},
        trucks=[truck("T1", **lunch)],
    )
    route = [_p("P1"), S]
    assert schedule_route(pb, pb.truck("T1"), route).feasible is holds
    assert route_fault(pb, pb.truck("T1"), route) == (None if holds else "shift")
