"""Ruin and recreate (routing.ruin) bounded by iterations or by a deadline: plans that
check, shorter where they should be, the same for a seed, cooling by count or by time."""

from __future__ import annotations

from dataclasses import replace

import pytest

import routing.ruin as ruin_module
from routing import SolverOptions, solve
from routing.check import check_plan
from routing.exchange import neighbour_lists
from routing.finish import finish_plan, make_plan, route_visits
from routing.instances import synthetic_district
from routing.options import COUNTED_RUIN_ITERATIONS
from routing.plan import Plan
from routing.problem import Problem
from routing.ruin import END_T_M, START_T_M, ruin_and_recreate, threshold_m
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


def test_the_threshold_falls_from_start_to_end_over_the_search() -> None:
    """The one cooling schedule: 100 m at the start, 1 m at the end, 10 m halfway
    (geometric), held at its ends outside them."""
    assert threshold_m(0.0) == START_T_M and threshold_m(1.0) == pytest.approx(END_T_M)
    assert threshold_m(0.5) == pytest.approx(10.0)
    assert threshold_m(-1.0) == START_T_M and threshold_m(2.0) == pytest.approx(END_T_M)


def _four_points() -> tuple[Problem, dict[str, list[Visit]]]:
    pb = line_problem(
        {
            "W1": (-1000.0, point("W1")),
            "W2": (-1100.0, point("W2")),
            "E1": (1000.0, point("E1")),
            "E2": (1100.0, point("E2")),
        },
        trucks=[truck("T1"), truck("T2")],
    )
    return pb, {"T1": [_p("W1"), S, _p("E1"), S], "T2": [_p("E2"), S, _p("W2"), S]}


def test_without_a_count_it_runs_to_the_deadline_and_cools_by_the_time_elapsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With no iteration count, a clock that moves 10 s at each reading and a deadline
    100 s on: it steps until the deadline (9 iterations after the reading it starts
    from), each step's threshold set by the share of the time elapsed (0.1, 0.2, ...),
    and the plan it returns is the short one."""
    pb, before = _four_points()
    ticks = iter(range(0, 10_000, 10))
    seen: list[float] = []

    def spy(progress: float) -> float:
        seen.append(progress)
        return threshold_m(progress)

    monkeypatch.setattr(ruin_module, "threshold_m", spy)
    result = ruin_and_recreate(
        pb, before, iterations=None, seed=1, deadline=100.0, clock=lambda: float(next(ticks))
    )
    assert result.iterations == 9
    assert seen == pytest.approx([k / 10 for k in range(1, 10)])
    after = _plan(pb, {**before, **result.changed})
    assert check_plan(pb, after) == [] and after.stats.distance_m == 4400.0


def test_a_count_cools_by_the_iterations_whatever_the_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a count, the threshold follows the iterations done (0, 0.25, 0.5, 0.75),
    not the clock, and the count ends the search before a distant deadline."""
    pb, before = _four_points()
    ticks = iter(range(0, 10_000, 7))
    seen: list[float] = []

    def spy(progress: float) -> float:
        seen.append(progress)
        return threshold_m(progress)

    monkeypatch.setattr(ruin_module, "threshold_m", spy)
    result = ruin_and_recreate(
        pb, before, iterations=4, seed=1, deadline=10_000.0, clock=lambda: float(next(ticks))
    )
    assert result.iterations == 4 and seen == [0.0, 0.25, 0.5, 0.75]


def test_no_count_and_no_deadline_is_refused() -> None:
    """A search bounded by neither a count nor a deadline would never end."""
    pb, before = _four_points()
    with pytest.raises(ValueError, match="count or a deadline"):
        ruin_and_recreate(pb, before, iterations=None)


def test_the_options_choose_a_count_or_a_time_slot() -> None:
    """On the clock ruin and recreate takes a time slot (None); under a solution limit
    it counts (the default count, or the one given); 0 or a zero share turn it off."""
    assert SolverOptions().ruin_count() is None
    assert SolverOptions(solution_limit=10).ruin_count() == COUNTED_RUIN_ITERATIONS
    assert SolverOptions(ruin_iterations=300).ruin_count() == 300
    assert SolverOptions(solution_limit=10, ruin_iterations=0).ruin_count() == 0
    assert SolverOptions(ruin_share=0.0).ruin_count() == 0


def test_a_district_solved_whole_can_end_with_ruin_and_recreate() -> None:
    """A district solved whole (no decomposition) with ``ruin_whole`` runs 300
    iterations after its moves: the plan checks, serves as many points, is no longer
    than without them, and is the same for the same seed."""
    pb, _ = synthetic_district(n_points=60, n_trucks=6, seed=3, kitchen_share=0.2)
    base = SolverOptions(workers=1, solution_limit=20, ruin_iterations=300)
    without = solve(pb, time_limit_s=300, seed=1, options=base)
    ruined = solve(pb, time_limit_s=300, seed=1, options=replace(base, ruin_whole=True))
    assert ruined.stats.pieces <= 1
    assert check_plan(pb, ruined) == []
    assert len(ruined.unassigned) == len(without.unassigned)
    assert ruined.stats.distance_m < without.stats.distance_m - 1.0
    again = solve(pb, time_limit_s=300, seed=1, options=replace(base, ruin_whole=True))
    assert [r.point_ids for r in again.routes] == [r.point_ids for r in ruined.routes]
