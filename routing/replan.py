"""Mid-day re-planning from live truck positions and loads.

``replan(problem, plan, states, now_s=..., ...)`` keeps every stop a truck has already
made, re-plans the rest of the day from where each truck is now (with what it has on
board, and whether it has had its break), re-inserts missed points and newly reported
ones, and takes trucks that broke down out. The result is a full-day :class:`Plan`:
each route is its completed stops followed by the new remainder, whose first leg
starts at the truck's live position (``routing.check.check_plan`` verifies it with the
``live_positions`` returned alongside).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from routing import graph as graph_mod
from routing.check import LivePosition
from routing.finish import best_station, make_plan, normalise
from routing.matrix import TravelMatrix
from routing.options import SolverOptions
from routing.plan import Plan, Route, Stop
from routing.problem import Point, Problem, Truck, depot_key, point_key, truck_key
from routing.schedule import Start, Visit, schedule_route


@dataclass(frozen=True, slots=True)
class TruckState:
    """Where a truck is now.

    ``completed_stops`` counts the stops of its current route already made (the start
    included; 0 if it has not left). ``available=False``: broken down, its remaining
    points go to other trucks.
    """

    truck_id: str
    lat: float
    lon: float
    load_kg: float = 0.0
    completed_stops: int = 0
    break_taken: bool = False
    available: bool = True


@dataclass(frozen=True, slots=True)
class Replan:
    plan: Plan
    problem: Problem  # the problem the plan answers (with new points, live locations)
    live_positions: Mapping[str, LivePosition]


def replan(
    problem: Problem,
    plan: Plan,
    states: Iterable[TruckState],
    *,
    now_s: float,
    time_limit_s: float,
    new_points: Sequence[Point] = (),
    missed_point_ids: Iterable[str] = (),
    graph: Any = None,
    seed: int = 0,
    solution_limit: int | None = None,
) -> Replan:
    """Re-plan the rest of the day; see the module docstring. ``Replan.problem`` is the
    problem the new plan answers: new points added, live positions in its matrices,
    points already collected by trucks now out of service left out. With
    ``solution_limit`` the search stops after that many solutions (the same plan for
    the same seed on any machine; ``time_limit_s`` is then only a safety cap)."""
    from routing.solver import solve  # imports OR-Tools: only when re-planning

    t0 = time.monotonic()
    state_of = {s.truck_id: s for s in states}
    for tid in state_of:
        if tid not in problem.truck_index:
            raise ValueError(f"states: unknown truck {tid!r}")
    done_prefix, done_points, day_load = _done_so_far(
        problem, plan, state_of, set(missed_point_ids)
    )
    _check_new_points(problem, new_points)

    # The problem for the rest of the day: points not yet collected (missed ones and
    # new ones included), live positions as extra locations.
    all_points = [*problem.points, *new_points]
    live_keys = {
        tid: truck_key(tid)
        for tid, s in state_of.items()
        if s.available and s.completed_stops > 0 and tid in done_prefix
    }
    extra = {live_keys[tid]: (state_of[tid].lat, state_of[tid].lon) for tid in live_keys}
    full = _with_locations(problem, all_points, extra, graph)
    trucks = [
        t for t in full.trucks if state_of.get(t.truck_id, TruckState(t.truck_id, 0, 0)).available
    ]
    rest = full.replace(
        points=[p for p in all_points if p.point_id not in done_points],
        trucks=trucks,
        name=f"{problem.name}@{now_s:.0f}",
    )
    starts, breaks_done = _starts_now(trucks, state_of, live_keys, done_prefix, day_load, now_s)
    options = SolverOptions(
        starts=tuple(starts.items()),
        breaks_done=frozenset(breaks_done),
        max_points_per_solve=10**9,
        solution_limit=solution_limit,
    )
    remaining_s = max(1.0, time_limit_s - (time.monotonic() - t0))
    new_plan = solve(rest, time_limit_s=remaining_s, seed=seed, options=options)

    out_routes, live_positions = _stitch(
        full, new_plan, done_prefix, live_keys, starts, breaks_done, state_of, now_s
    )
    full = _without_history(full, state_of, done_prefix)
    result = make_plan(
        full,
        out_routes,
        list(new_plan.unassigned),
        solve_time_s=time.monotonic() - t0,
        seed=seed,
        status=new_plan.stats.status,
        notes=(f"re-planned at {now_s:.0f} s",),
    )
    return Replan(plan=result, problem=full, live_positions=live_positions)


def _done_so_far(
    problem: Problem, plan: Plan, state_of: Mapping[str, TruckState], missed: set[str]
) -> tuple[dict[str, tuple[Stop, ...]], set[str], dict[str, float]]:
    """What is done stays done: each truck's completed stops (missed points taken
    out), the points collected, and each truck's load collected so far today."""
    routes = {r.truck_id: r for r in plan.routes}
    done_prefix: dict[str, tuple[Stop, ...]] = {}
    done_points: set[str] = set()
    day_load: dict[str, float] = {}
    for tid, state in state_of.items():
        route = routes.get(tid)
        if route is None or state.completed_stops <= 0:
            continue
        prefix = route.stops[: state.completed_stops]
        if prefix and prefix[-1].kind == "end":
            prefix = prefix[:-1]
        prefix = _without_missed(problem, problem.truck(tid), prefix, missed)
        done_prefix[tid] = prefix
        pts = [s.ref_id for s in prefix if s.kind == "point" and s.ref_id is not None]
        done_points.update(p for p in pts if p not in missed)
        day_load[tid] = sum(problem.point(p).amount_kg for p in pts if p in problem.point_index)
    return done_prefix, done_points, day_load


def _check_new_points(problem: Problem, new_points: Sequence[Point]) -> None:
    """New points need ids of their own: not in the problem, not given twice."""
    known = {p.point_id for p in problem.points}
    dupes = [p.point_id for p in new_points if p.point_id in known]
    if dupes:
        raise ValueError(f"new_points: ids already in the problem: {dupes[:5]}")
    repeated = sorted(pid for pid, n in Counter(p.point_id for p in new_points).items() if n > 1)
    if repeated:
        raise ValueError(f"new_points: ids given more than once: {repeated[:5]}")


def _starts_now(
    trucks: Sequence[Truck],
    state_of: Mapping[str, TruckState],
    live_keys: Mapping[str, str],
    done_prefix: Mapping[str, tuple[Stop, ...]],
    day_load: Mapping[str, float],
    now_s: float,
) -> tuple[dict[str, Start], set[str]]:
    """Where each truck starts the rest of its day (its live position now, with its
    load; a truck still at its depot leaves now at the earliest), and the trucks that
    have had their break."""
    starts: dict[str, Start] = {}
    breaks_done: set[str] = set()
    for tid, key in live_keys.items():
        s = state_of[tid]
        starts[tid] = Start(
            key=key,
            ref_id=tid,
            earliest_s=now_s,
            load_kg=s.load_kg,
            day_load_kg=day_load.get(tid, 0.0),
            fixed_time=True,
        )
        if s.break_taken or any(x.kind == "break" for x in done_prefix.get(tid, ())):
            breaks_done.add(tid)
    for t in trucks:
        if t.truck_id not in starts and now_s > t.shift_start_s:
            starts[t.truck_id] = Start(
                key=depot_key(t.start_depot_id), ref_id=t.start_depot_id, earliest_s=now_s
            )
    return starts, breaks_done


def _stitch(
    full: Problem,
    new_plan: Plan,
    done_prefix: Mapping[str, tuple[Stop, ...]],
    live_keys: Mapping[str, str],
    starts: Mapping[str, Start],
    breaks_done: set[str],
    state_of: Mapping[str, TruckState],
    now_s: float,
) -> tuple[list[Route], dict[str, LivePosition]]:
    """Each truck's day: its completed stops, then the new remainder (its live
    'start' dropped; home if nothing is left), and the live position between them."""
    out_routes: list[Route] = []
    live_positions: dict[str, LivePosition] = {}
    new_routes = {r.truck_id: r for r in new_plan.routes}
    for t in full.trucks:
        tid = t.truck_id
        prefix = done_prefix.get(tid, ())
        new = new_routes.get(tid)
        if tid in live_keys:
            suffix = (
                new.stops[1:]
                if new is not None
                else _go_home(full, tid, starts[tid], break_done=tid in breaks_done)
            )
            stops = (*prefix, *suffix)
            live_positions[tid] = LivePosition(
                key=live_keys[tid],
                time_s=now_s,
                completed_stops=len(prefix),
                load_kg=state_of[tid].load_kg,
                break_taken=tid in breaks_done,
            )
        elif new is not None:
            stops = new.stops
        else:
            continue
        if len(stops) < 2:
            continue
        distance = sum(s.distance_from_prev_m for s in stops)
        out_routes.append(
            Route(
                truck_id=tid,
                stops=tuple(stops),
                distance_m=round(distance, 6),
                duration_s=round(stops[-1].arrival_s - stops[0].departure_s, 6),
            )
        )
    return out_routes, live_positions


def _without_history(
    full: Problem, state_of: Mapping[str, TruckState], done_prefix: Mapping[str, tuple[Stop, ...]]
) -> Problem:
    """Points collected by trucks that are now out of service are history, not part
    of the day's remaining plan."""
    gone = {
        s.ref_id
        for tid, st in state_of.items()
        if not st.available
        for s in done_prefix.get(tid, ())
        if s.kind == "point" and s.ref_id is not None
    }
    if not gone:
        return full
    return Problem(
        points=tuple(p for p in full.points if p.point_id not in gone),
        stations=full.stations,
        depots=full.depots,
        trucks=full.trucks,
        matrix=full.matrix,
        matrix_no_narrow=full.matrix_no_narrow,
        name=full.name,
    )


def _without_missed(
    problem: Problem, truck: Any, prefix: tuple[Stop, ...], missed: set[str]
) -> tuple[Stop, ...]:
    """Completed stops minus the points the truck drove past without collecting; the
    leg after each such stop is measured directly from the stop before it."""
    if not missed:
        return prefix
    matrix = problem.matrix_for(truck)
    out: list[Stop] = []
    prev_key: str | None = None
    not_collected = 0.0
    skipped = False
    for stop in prefix:
        if stop.kind == "point" and stop.ref_id in missed:
            not_collected += problem.point(stop.ref_id).amount_kg
            skipped = True
            continue
        key = _stop_key(stop)
        changes: dict[str, float] = {}
        if skipped and key is not None and prev_key is not None:
            changes["distance_from_prev_m"] = matrix.distance(prev_key, key)
            skipped = False
        if stop.kind == "station":
            not_collected = 0.0
        elif not_collected:
            changes["load_after_kg"] = max(0.0, stop.load_after_kg - not_collected)
        if changes:
            stop = msgspec.structs.replace(stop, **changes)
        out.append(stop)
        if key is not None:
            prev_key = key
    return tuple(out)


def _stop_key(stop: Stop) -> str | None:
    if stop.ref_id is None:
        return None
    if stop.kind == "point":
        return point_key(stop.ref_id)
    if stop.kind == "station":
        return f"station/{stop.ref_id}"
    return depot_key(stop.ref_id)


def _go_home(
    problem: Problem, truck_id: str, start: Start, *, break_done: bool
) -> tuple[Stop, ...]:
    """A truck with nothing left to do drives home (via a station if loaded), taking
    its break on the way if it is still due."""
    truck = problem.truck(truck_id)
    visits: list[Visit] = normalise(problem, truck, [])
    if start.load_kg > 0 and problem.stations:
        visits = [Visit("station", best_station(problem, truck, []).station_id)]
    sched = schedule_route(problem, truck, visits, start=start, break_done=break_done)
    return sched.to_route(truck_id).stops[1:]


def _with_locations(
    problem: Problem,
    points: Sequence[Point],
    extra: Mapping[str, tuple[float, float]],
    graph: Any,
) -> Problem:
    """The problem with ``points`` and extra locations (live positions) in its
    matrices: recomputed on the road graph, or straight-line if there is none."""
    keys = set(problem.matrix.location_ids)
    missing_points = [p for p in points if point_key(p.point_id) not in keys]
    if not missing_points and all(k in keys for k in extra):
        return problem.replace(points=points)
    coords: dict[str, tuple[float, float]] = {}
    for d in problem.depots:
        coords[depot_key(d.depot_id)] = (d.lat, d.lon)
    for s in problem.stations:
        coords[f"station/{s.station_id}"] = (s.lat, s.lon)
    for p in points:
        coords[point_key(p.point_id)] = (p.lat, p.lon)
    coords.update(extra)

    def build(allow_narrow: bool) -> TravelMatrix:
        if graph is None:
            return graph_mod.straight_line_matrix(coords)
        return graph_mod.travel_matrix(graph, coords, allow_narrow=allow_narrow)

    return Problem(
        points=tuple(points),
        stations=problem.stations,
        depots=problem.depots,
        trucks=problem.trucks,
        matrix=build(True),
        matrix_no_narrow=build(False) if problem.matrix_no_narrow is not None else None,
        name=problem.name,
    )
