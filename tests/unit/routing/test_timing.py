"""The fast timing verdict (routing.timing) against the reference, route_fault, on
random trial routes: where the fast test decides, the two never disagree."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from routing import SolverOptions, solve
from routing.finish import route_visits
from routing.instances import synthetic_district
from routing.matrix import TravelMatrix
from routing.problem import Problem, point_key
from routing.schedule import Start, Visit, route_fault
from routing.timing import RouteTiming

from .tiny import line_problem, point, truck

H = 3600.0


def _trial(rng: np.random.Generator, routes: dict[str, list[Visit]], stations: list[str]):
    """A random trial route for a random truck: a point moved in from another route,
    a point or a stretch removed, two visits swapped, a stretch turned round, an
    unload added, or two routes' tails exchanged (the moves' and ruin's trials, and
    worse ones)."""
    a, b = (str(t) for t in rng.choice(sorted(routes), size=2, replace=False))
    va, vb = list(routes[a]), routes[b]
    kind = int(rng.integers(6))
    i = int(rng.integers(len(va) + 1))
    if kind == 0:
        points = [v for v in vb if v.kind == "point"]
        va.insert(i, points[int(rng.integers(len(points)))])
    elif kind == 1 and va:
        del va[min(i, len(va) - 1) : i + int(rng.integers(1, 8))]
    elif kind == 2 and len(va) > 1:
        j = int(rng.integers(len(va)))
        i = min(i, len(va) - 1)
        va[i], va[j] = va[j], va[i]
    elif kind == 3:
        j = int(rng.integers(len(va) + 1))
        lo, hi = sorted((i, j))
        va[lo:hi] = va[lo:hi][::-1]
    elif kind == 4:
        va.insert(i, Visit("station", stations[int(rng.integers(len(stations)))]))
    else:
        j = int(rng.integers(len(vb) + 1))
        va = va[:i] + vb[j:]
    return a, va


def _planned() -> tuple[Problem, dict[str, list[Visit]]]:
    pb, _ = synthetic_district(n_points=60, n_trucks=6, seed=3, kitchen_share=0.2)
    plan = solve(pb, time_limit_s=300, seed=1, options=SolverOptions(solution_limit=20))
    return pb, {r.truck_id: route_visits(r) for r in plan.routes}


@pytest.mark.parametrize("lunch", ["as planned", "short shift", "long break"])
def test_the_fast_verdict_never_disagrees_with_route_fault(lunch: str) -> None:
    """2,000 seeded trial routes on a planned district and two variants where the
    break's place decides many routes (a 2-hour break due 07:00–07:15 and the shift
    ending at 14:00; a 4-hour break due 07:00–09:00),
    some from a live start (loaded, the time fixed): every verdict the fast test gives
    is route_fault's, it gives one for nearly all, and both outcomes occur, with and
    without the break deciding."""
    pb, routes = _planned()
    if lunch != "as planned":
        pb = replace(
            pb,
            trucks=tuple(
                replace(
                    t,
                    break_earliest_s=7 * H,
                    break_latest_s=7.25 * H,
                    break_duration_s=2 * H,
                    shift_end_s=14 * H,
                )
                if lunch == "short shift"
                else replace(
                    t, break_earliest_s=7 * H, break_latest_s=9 * H, break_duration_s=4 * H
                )
                for t in pb.trucks
            ),
        )
    timing = RouteTiming(pb)
    stations = [s.station_id for s in pb.stations]
    rng = np.random.default_rng(7)
    seen: Counter[tuple[bool | None, bool]] = Counter()
    break_decided = 0
    for n in range(2000):
        truck_id, trial = _trial(rng, routes, stations)
        tr = pb.truck(truck_id)
        start = None
        if n % 4 == 0 and trial and trial[0].kind == "point":
            # A live start at the first point, loaded, at a time within the day.
            first = pb.point(trial[0].ref_id)
            start = Start(
                key=point_key(first.point_id),
                ref_id=first.point_id,
                earliest_s=float(rng.uniform(tr.shift_start_s, tr.break_latest_s)),
                load_kg=float(rng.uniform(0.0, tr.capacity_kg)),
                fixed_time=True,
            )
            trial = trial[1:]
        done = bool(rng.random() < 0.2)
        fast = timing.holds(tr, trial, start=start, break_done=done)
        holds = route_fault(pb, tr, trial, start=start, break_done=done) is None
        if fast is not None:
            assert fast is holds, (truck_id, trial, start, done)
        seen[(fast, holds)] += 1
        if not done and fast is not None:
            without = route_fault(pb, replace(tr, break_duration_s=0.0), trial, start=start)
            break_decided += (without is None) and not holds
    assert seen[(True, True)] > 100 and seen[(False, False)] > 100
    assert seen[(None, True)] + seen[(None, False)] < 20
    if lunch != "as planned":
        assert break_decided > 10  # routes that hold without the break and fail with it


@pytest.mark.parametrize(("window_end_s", "holds"), [(150.0, False), (5000.0, True)])
def test_the_break_on_its_only_leg(window_end_s: float, holds: bool) -> None:
    """The break (30 min from 100 s to 200 s) fits only on the first leg, and there it
    delays P1 past 150 s: the route breaks; with a later window it holds."""
    lunch = {"break_duration_s": 1800.0, "break_earliest_s": 100.0, "break_latest_s": 200.0}
    pb = line_problem(
        {"P1": (1000.0, point("P1", window_end_s=window_end_s, service_time_s=300.0))},
        trucks=[truck("T1", **lunch)],
    )
    route = [Visit("point", "P1"), Visit("station", "S")]
    assert RouteTiming(pb).holds(pb.truck("T1"), route) is holds


def test_a_bound_met_to_rounding_is_left_to_route_fault() -> None:
    """The break (1,000 s, to start by 50 s) fits only on the first leg, and there
    P1's window closes exactly when the truck can start (1,100 s): the fast test
    leaves that comparison to route_fault, which says the route holds."""
    lunch = {"break_duration_s": 1000.0, "break_earliest_s": 0.0, "break_latest_s": 50.0}
    pb = line_problem(
        {"P1": (1000.0, point("P1", window_end_s=1100.0))}, trucks=[truck("T1", **lunch)]
    )
    route = [Visit("point", "P1"), Visit("station", "S")]
    assert RouteTiming(pb).holds(pb.truck("T1"), route) is None
    assert route_fault(pb, pb.truck("T1"), route) is None


def test_a_leg_without_a_finite_distance_is_left_to_route_fault() -> None:
    """The depot-to-P1 leg has a duration but no finite distance: the scheduler calls
    it unreachable, and the fast test does not judge the route."""
    pb = line_problem({"P1": (1000.0, point("P1"))}, trucks=[truck("T1")])
    distance = pb.matrix.distance_m.copy()
    i, j = pb.matrix.index["depot/D"], pb.matrix.index["point/P1"]
    distance[i, j] = np.inf
    odd = replace(pb, matrix=TravelMatrix(pb.matrix.location_ids, distance, pb.matrix.duration_s))
    route = [Visit("point", "P1"), Visit("station", "S")]
    assert RouteTiming(pb).holds(pb.truck("T1"), route) is True
    assert RouteTiming(odd).holds(odd.truck("T1"), route) is None
    assert route_fault(odd, odd.truck("T1"), route) == "unreachable"
