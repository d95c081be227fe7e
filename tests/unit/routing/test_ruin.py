"""Ruin and recreate (routing.ruin) bounded by iterations: plans that check, shorter
where they should be, the same for a seed."""

from __future__ import annotations

from routing import SolverOptions, solve
from routing.check import check_plan
from routing.exchange import neighbour_lists
from routing.finish import finish_plan, make_plan, route_visits
from routing.instances import synthetic_district
from routing.plan import Plan
from routing.problem import Problem
from routing.ruin import ruin_and_recreate
from routing.schedule import Visit

from .tiny import line_problem, point, truck


def _p(pid: str) -> Visit:
    return Visit("point", pid)


S = Visit("station", "S")


def _plan(problem: Problem, visits: dict[str, list[Visit]]) -> Plan:
    routes, unassigned = finish_plan(problem, {t: v for t, v in visits.items() if v}, [])
    return make_plan(problem, routes, unassigned, solve_time_s=0.0, seed=0, status="test")


def test_points_split_between_two_routes_are_rebuilt_on_one_side_each() -> None:
    """T1 serves W1 (west) and E1 (east), T2 serves E2 (east) and W2 (west): each
    crosses the depot (8.4 km). Removing strings and putting the points back next to
    their nearest neighbours gives each truck one side (4.4 km), and the plan checks."""
    pb = line_problem(
        {
            "W1": (-1000.0, point("W1")),
            "W2": (-1100.0, point("W2")),
            "E1": (1000.0, point("E1")),
            "E2": (1100.0, point("E2")),
        },
        trucks=[truck("T1"), truck("T2")],
    )
    before = {"T1": [_p("W1"), S, _p("E1"), S], "T2": [_p("E2"), S, _p("W2"), S]}
    assert _plan(pb, before).stats.distance_m == 8400.0
    result = ruin_and_recreate(pb, before, iterations=50, seed=1)
    after = _plan(pb, {**before, **result.changed})
    assert check_plan(pb, after) == []
    assert after.stats.distance_m == 4400.0
    assert result.saved_m == 4000.0


def test_a_rebuilt_plan_keeps_a_tight_window() -> None:
    """W2 must be served by 150 s: a truck reaches it at 110 s straight from the
    depot, at 170 s by way of W1. Whatever is ruined and rebuilt, the plan keeps the
    window and serves every point."""
    pb = line_problem(
        {
            "W1": (-1000.0, point("W1")),
            "W2": (-1100.0, point("W2", window_end_s=150.0)),
            "E1": (1000.0, point("E1")),
        },
        trucks=[truck("T1"), truck("T2")],
    )
    before = {"T1": [_p("W1"), _p("E1"), S], "T2": [_p("W2"), S]}
    assert check_plan(pb, _plan(pb, before)) == []
    result = ruin_and_recreate(pb, before, iterations=50, seed=2)
    after = _plan(pb, {**before, **result.changed})
    assert check_plan(pb, after) == [] and after.unassigned == ()


def test_a_district_plan_gets_shorter_checks_and_depends_only_on_the_seed() -> None:
    """A generated district (stations, windows, the break, kitchen waste, narrow
    lanes) planned by small territories: 200 iterations shorten it, every point
    stays served, the plan checks, and a seed gives the same routes."""
    pb, _ = synthetic_district(n_points=60, n_trucks=6, seed=3, kitchen_share=0.2)
    options = SolverOptions(
        max_points_per_solve=15, workers=1, solution_limit=20, improve_rounds=0, exchange_passes=0
    )
    start = solve(pb, time_limit_s=300, seed=1, options=options)
    assert check_plan(pb, start) == []
    before = {r.truck_id: route_visits(r) for r in start.routes}
    near = neighbour_lists(pb, 30)
    first = ruin_and_recreate(pb, before, iterations=200, neighbours=near, seed=5)
    again = ruin_and_recreate(pb, before, iterations=200, neighbours=near, seed=5)
    assert first.iterations == 200 and first.changed == again.changed
    plan = _plan(pb, {**before, **first.changed})
    assert check_plan(pb, plan) == []
    assert len(plan.unassigned) == len(start.unassigned)
    assert plan.stats.distance_m < start.stats.distance_m - 1.0
    assert abs(start.stats.distance_m - plan.stats.distance_m - first.saved_m) < 1.0
