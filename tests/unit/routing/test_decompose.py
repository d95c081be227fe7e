"""Large districts: the first plan by territories, improved by neighbourhoods of
nearby routes (searches bounded by solutions and rounds, so the plan depends only on
the seed)."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from routing import SolverOptions, solve
from routing.budget import Budget
from routing.check import check_plan
from routing.decompose import (
    _Current,
    _cut_routes,
    _mapper,
    _Moves,
    _neighbourhood_problem,
    neighbourhoods,
    route_groups,
)
from routing.exchange import NEIGHBOURS, neighbour_lists
from routing.finish import finish_plan, make_plan, route_visits
from routing.instances import synthetic_district
from routing.plan import Plan
from routing.problem import Problem
from routing.schedule import Visit

from .tiny import line_problem, point, truck


def _key(plan: Plan) -> tuple[int, float]:
    return (len(plan.unassigned), plan.stats.distance_m)


def test_neighbourhoods_are_disjoint_near_and_about_the_size_asked() -> None:
    """Each neighbourhood starts from an untried seed, takes the routes nearest to it
    until about ``size`` points, and shares no route with another; points left out go
    to the nearest neighbourhood."""
    pb, _ = synthetic_district(n_points=80, n_trucks=8, seed=1)
    ids = [p.point_id for p in pb.points]
    trucks = [t.truck_id for t in pb.trucks]
    # Routes of 10 points each, in the order of the points' x coordinate (strips).
    order = sorted(ids, key=lambda pid: pb.point(pid).lon)
    visits = {
        t: [Visit("point", pid) for pid in order[10 * k : 10 * k + 10]]
        for k, t in enumerate(trucks)
    }
    visits[trucks[-1]] = visits[trucks[-1]][:-1]
    current = _Current(visits, {t: 1.0 for t in trucks}, [order[-1]])
    groups = neighbourhoods(pb, current, 25, 2, {trucks[0]}, np.random.default_rng(0))
    assert len(groups) == 2
    seen: set[str] = set()
    for seed_truck, group, _ in groups:
        assert seed_truck != trucks[0]
        assert seed_truck == group[0]
        assert not seen & set(group)
        seen |= set(group)
        assert 25 <= current.served(group) < 25 + 10
    assert sum(len(extra) for _, _, extra in groups) == 1


def test_improvement_never_makes_the_plan_worse_and_depends_only_on_the_seed() -> None:
    """Rounds of neighbourhood re-optimisation keep only improvements: the plan is at
    least as good as the territories' plan, valid, and the same for the same seed."""
    pb, _ = synthetic_district(n_points=90, n_trucks=6, seed=7)
    base = SolverOptions(max_points_per_solve=30, workers=1, solution_limit=150)
    territories = solve(pb, time_limit_s=300, seed=3, options=replace(base, improve_rounds=0))
    options = replace(base, improve_rounds=3, neighbourhood_points=40)
    improved = solve(pb, time_limit_s=300, seed=3, options=options)
    again = solve(pb, time_limit_s=300, seed=3, options=options)
    assert check_plan(pb, improved) == []
    assert _key(improved) <= _key(territories)
    assert [r.stops for r in improved.routes] == [r.stops for r in again.routes]
    assert "3 rounds" in improved.stats.notes[0]


def test_improvement_runs_in_parallel_processes() -> None:
    """Two workers: disjoint neighbourhoods solved in two processes, the plan valid
    and every point served."""
    pb, _ = synthetic_district(n_points=90, n_trucks=6, seed=7)
    options = SolverOptions(
        max_points_per_solve=30,
        workers=2,
        solution_limit=150,
        improve_rounds=2,
        neighbourhood_points=30,
    )
    plan = solve(pb, time_limit_s=300, seed=1, options=options)
    assert check_plan(pb, plan) == []
    assert not plan.unassigned
    assert "2 rounds of 2 workers" in plan.stats.notes[0]


def test_moves_between_routes_run_between_rounds_and_keep_the_plan_valid() -> None:
    """The first plan by small territories leaves moves between routes to make: with
    them the notes count the moves and the distance they saved, the
    plan checks, serves as many points, and is no longer than the territories'."""
    pb, _ = synthetic_district(n_points=90, n_trucks=6, seed=7)
    base = SolverOptions(max_points_per_solve=30, workers=1, solution_limit=100)
    territories = solve(pb, time_limit_s=300, seed=2, options=replace(base, improve_rounds=0))
    with_moves = replace(base, improve_rounds=1, exchange_passes=10)
    plan = solve(pb, time_limit_s=300, seed=2, options=with_moves)
    moves = re.search(r"(\d+) moves between routes saved ([\d.]+) km", plan.stats.notes[0])
    assert moves is not None and int(moves[1]) > 0 and float(moves[2]) > 0
    assert check_plan(pb, plan) == []
    assert _key(plan) <= _key(territories)


def test_routes_cut_apart_by_a_territory_border_are_joined_by_the_improvement() -> None:
    """Two territories, a truck each, far from the depot: the first plan drives out
    and home twice; the neighbourhood of both routes serves the four points with one
    truck's day, and is kept."""
    pb = line_problem(
        {pid: (10_000.0 + 100 * k, point(pid)) for k, pid in enumerate("ABCD")},
        trucks=[truck("T1"), truck("T2")],
    )
    base = SolverOptions(max_points_per_solve=2, workers=1, solution_limit=100)
    territories = solve(pb, time_limit_s=300, options=replace(base, improve_rounds=0))
    assert len(territories.routes) == 2
    improved = solve(pb, time_limit_s=300, options=replace(base, improve_rounds=2))
    assert check_plan(pb, improved) == []
    assert not improved.unassigned
    assert len(improved.routes) == 1
    # Out 10 km, along the four points, back 10.3 km to the station at the depot.
    assert improved.stats.distance_m == pytest.approx(20_600.0)


def test_a_neighbourhood_offered_a_truck_fewer_keeps_every_point() -> None:
    """The sub-problem without a truck still holds every point of the neighbourhood's
    routes and the points left out nearby."""
    pb, _ = synthetic_district(n_points=40, n_trucks=4, seed=1)
    ids = [p.point_id for p in pb.points]
    trucks = [t.truck_id for t in pb.trucks]
    visits = {
        t: [Visit("point", pid) for pid in ids[10 * k : 10 * k + 9]] for k, t in enumerate(trucks)
    }
    current = _Current(visits, {t: 1.0 for t in trucks}, [ids[9]])
    sub = _neighbourhood_problem(pb, current, trucks[:3], [ids[9]], 0, trucks[1])
    assert [t.truck_id for t in sub.trucks] == [trucks[0], trucks[2]]
    assert len(sub.points) == 3 * 9 + 1


def test_problems_without_stations_are_decomposed_further_up() -> None:
    """The decomposition threshold: 450 points with stations, 600 without (one model
    node a point); a value given explicitly holds for both."""
    assert SolverOptions().points_per_solve(with_stations=True) == 450
    assert SolverOptions().points_per_solve(with_stations=False) == 600
    given = SolverOptions(max_points_per_solve=30)
    assert given.points_per_solve(with_stations=True) == 30
    assert given.points_per_solve(with_stations=False) == 30


def _strips_plan(n_points: int, n_trucks: int, seed: int) -> tuple[Problem, _Current]:
    """A generated district's points in routes of consecutive west-to-east strips."""
    pb, _ = synthetic_district(n_points=n_points, n_trucks=n_trucks, seed=seed)
    order = sorted((p.point_id for p in pb.points), key=lambda pid: pb.point(pid).lon)
    per = n_points // n_trucks
    visits = {
        t.truck_id: [Visit("point", pid) for pid in order[per * k : per * (k + 1)]]
        for k, t in enumerate(pb.trucks)
    }
    return pb, _Current(visits, {t: 1.0 for t in visits}, [])


def test_route_groups_are_balanced_strips_from_west_to_east() -> None:
    """Every route lands in exactly one group, the groups hold about as many points
    each, and the strips keep the west and the east apart."""
    pb, current = _strips_plan(80, 8, 1)
    groups = route_groups(pb, current, 2)
    assert sorted(t for g in groups for t in g) == sorted(current.visits)
    assert [current.served(g) for g in groups] == [40, 40]
    centroid = current.centroids(pb)
    west, east = groups
    assert max(centroid[t][0] for t in west) <= min(centroid[t][0] for t in east)


def test_a_route_whose_near_points_lie_in_another_group_is_cut() -> None:
    """On a line: routes T1 (P1, P2) and T2 (P3, P4), T3 (P5, P6) far east; each
    point's two nearest are its neighbours; with T1 alone in a group, T1 and T2 are
    cut (P2 and P3 are neighbours), T3 is not (its neighbour P4 is in its group)."""
    pb = line_problem(
        {f"P{i}": (100.0 * i + (5000.0 if i > 4 else 0.0), point(f"P{i}")) for i in range(1, 7)},
        trucks=[truck("T1"), truck("T2"), truck("T3")],
    )
    near = neighbour_lists(pb, 2)
    visits = {
        "T1": [Visit("point", "P1"), Visit("point", "P2")],
        "T2": [Visit("point", "P3"), Visit("point", "P4")],
        "T3": [Visit("point", "P5"), Visit("point", "P6")],
    }
    current = _Current(visits, {t: 1.0 for t in visits}, [])
    assert _cut_routes(current, [["T1"], ["T2", "T3"]], near) == {"T1", "T2"}
    assert _cut_routes(current, [["T1", "T2", "T3"]], near) == set()


def _moved(pb: Problem, first: Plan, seed: int, calls: int, ruin_iterations: int = 0) -> _Current:
    """The first plan after ``calls`` calls of the moves in two processes."""
    current = _Current(
        {r.truck_id: route_visits(r) for r in first.routes},
        {r.truck_id: r.distance_m for r in first.routes},
        [u.point_id for u in first.unassigned],
    )
    counted = SolverOptions(solution_limit=1, exchange_passes=10, ruin_iterations=ruin_iterations)
    near = neighbour_lists(pb, NEIGHBOURS)
    with _mapper(2) as run_all:
        moves = _Moves(pb, current, Budget.of(300), seed, counted, near, set(), 2, run_all)
        for _ in range(calls):
            moves.call()
    return current


def test_moves_in_parallel_groups_shorten_the_plan_and_depend_only_on_the_seed() -> None:
    """Small territories with no moves of their own leave routes cut at their borders;
    a call of the moves in groups of routes (two processes), then one from the routes
    the split kept apart, shorten the plan, which serves the same points, checks, and
    is the same for the same seed (passes bound the moves)."""
    pb, _ = synthetic_district(n_points=120, n_trucks=8, seed=7)
    options = SolverOptions(
        max_points_per_solve=30,
        workers=1,
        solution_limit=60,
        improve_rounds=0,
        exchange_passes=0,
    )
    first = solve(pb, time_limit_s=300, seed=4, options=options)
    moved = _moved(pb, first, 5, 2)
    assert moved.exchange_calls == 2 and moved.exchange_moves > 0
    assert sum(moved.distance_m.values()) < first.stats.distance_m
    routes, unassigned = finish_plan(pb, moved.visits, list(first.unassigned))
    plan = make_plan(pb, routes, unassigned, solve_time_s=0.0, seed=5, status="test")
    assert check_plan(pb, plan) == []
    assert sorted(u.point_id for u in plan.unassigned) == sorted(
        u.point_id for u in first.unassigned
    )
    assert plan.stats.distance_m == pytest.approx(sum(moved.distance_m.values()))
    assert _moved(pb, first, 5, 2).visits == moved.visits


def test_a_decomposed_solve_runs_the_moves_in_groups_of_routes() -> None:
    """With two workers the decomposition runs its moves between routes in groups
    (the notes count the calls: the first plan's in groups, the later ones from the
    routes pending); the plan checks."""
    pb, _ = synthetic_district(n_points=120, n_trucks=8, seed=7)
    options = SolverOptions(max_points_per_solve=30, workers=2, solution_limit=60, improve_rounds=1)
    plan = solve(pb, time_limit_s=300, seed=4, options=options)
    calls = re.search(r"moves between routes saved [\d.]+ km \((\d+) calls", plan.stats.notes[0])
    assert calls is not None and int(calls[1]) >= 2
    assert check_plan(pb, plan) == []


def test_ruin_and_recreate_in_the_groups_keeps_the_plan_valid_and_seeded() -> None:
    """With ruin and recreate in each group of the first call (100 iterations), the
    plan is shorter than the first plan, serves the same points, checks, agrees with
    its own distances, and is the same for the same seed."""
    pb, _ = synthetic_district(n_points=120, n_trucks=8, seed=7)
    options = SolverOptions(
        max_points_per_solve=30, workers=1, solution_limit=60, improve_rounds=0, exchange_passes=0
    )
    first = solve(pb, time_limit_s=300, seed=4, options=options)
    ruined = _moved(pb, first, 5, 1, ruin_iterations=100)
    assert sum(ruined.distance_m.values()) < first.stats.distance_m
    routes, unassigned = finish_plan(pb, ruined.visits, list(first.unassigned))
    plan = make_plan(pb, routes, unassigned, solve_time_s=0.0, seed=5, status="test")
    assert check_plan(pb, plan) == []
    assert len(plan.unassigned) == len(first.unassigned)
    assert plan.stats.distance_m == pytest.approx(sum(ruined.distance_m.values()))
    assert _moved(pb, first, 5, 1, ruin_iterations=100).visits == ruined.visits


def test_a_first_plan_bounded_by_solutions_is_the_counted_solve_s() -> None:
    """With the territories' searches bounded by 60 solutions (the rest of the solve
    on the clock) and no rounds, the plan is the one a solve bounded by counts
    throughout makes: the first plan depends only on the seed."""
    pb, _ = synthetic_district(n_points=90, n_trucks=6, seed=7)
    base = SolverOptions(max_points_per_solve=30, workers=1, improve_rounds=0)
    counted = solve(pb, time_limit_s=300, seed=2, options=replace(base, solution_limit=60))
    first = solve(pb, time_limit_s=300, seed=2, options=replace(base, first_plan_solution_limit=60))
    assert [r.stops for r in first.routes] == [r.stops for r in counted.routes]
    assert first.stats.notes[1] == counted.stats.notes[1]
