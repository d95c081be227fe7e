"""Finishing: every route timed exactly, repaired where it does not hold, the points
left out re-inserted where they fit, each point still left out given its reason."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from routing.budget import Clock
from routing.options import SOLVER_NAME
from routing.plan import Plan, Route, SolveStats, Unassigned
from routing.problem import (
    Point,
    Problem,
    Station,
    Truck,
    depot_key,
    point_key,
    station_key,
)
from routing.schedule import Schedule, Start, Visit, route_fault, schedule_route
from routing.screen import pick_reason, unload_first


def route_visits(route: Route) -> list[Visit]:
    """A planned route's points and unloads as the visits it was timed from."""
    return [
        Visit(s.kind, s.ref_id)
        for s in route.stops
        if s.kind in ("point", "station") and s.ref_id is not None
    ]


def finish_plan(
    problem: Problem,
    visits_by_truck: dict[str, list[Visit]],
    unassigned: Sequence[Unassigned],
    *,
    starts: dict[str, Start] | None = None,
    breaks_done: frozenset[str] = frozenset(),
    repair: bool = True,
    time_budget_s: float = 10.0,
    clock: Clock = time.monotonic,
) -> tuple[list[Route], list[Unassigned]]:
    """Time every route exactly; repair what does not hold (unload where a trip is
    over capacity, else drop points); try to re-insert dropped and unserved points;
    give every point left out its reason. Re-insertion and the search for each
    point's blocking reason stop at ``time_budget_s`` on ``clock``."""
    starts = starts or {}
    deadline = clock() + time_budget_s
    out_unassigned = list(unassigned)
    explained = {u.point_id for u in out_unassigned}
    schedules: dict[str, tuple[list[Visit], Schedule]] = {}
    dropped: list[str] = []
    for truck_id, visits in visits_by_truck.items():
        truck = problem.truck(truck_id)
        start = starts.get(truck_id)
        bd = truck_id in breaks_done
        visits = normalise(problem, truck, visits, start)
        sched = schedule_route(problem, truck, visits, start=start, break_done=bd)
        if not sched.feasible and repair:
            visits, sched, removed = _repair(problem, truck, visits, start, bd)
            dropped.extend(removed)
        if not sched.feasible:
            dropped.extend(v.ref_id for v in visits if v.kind == "point")
            continue
        schedules[truck_id] = (visits, sched)
    served = {v.ref_id for visits, _ in schedules.values() for v in visits if v.kind == "point"}
    missing = [
        p.point_id
        for p in problem.points
        if p.point_id not in served and p.point_id not in explained
    ]
    if repair and missing:
        missing = reinsert(problem, schedules, missing, starts, breaks_done, deadline, clock)
    quick: _QuickReasons | None = None
    for pid in missing:
        if clock() < deadline:
            reason = _blocking_reason(problem, schedules, pid, starts, breaks_done)
        else:
            quick = quick or _QuickReasons(problem, schedules, starts, breaks_done)
            reason = quick.reason(pid)
        out_unassigned.append(Unassigned(point_id=pid, reason=reason))  # type: ignore[arg-type]
    routes = [
        sched.to_route(truck_id)
        for truck_id, (_, sched) in sorted(
            schedules.items(), key=lambda kv: problem.truck_index[kv[0]]
        )
    ]
    order = {p.point_id: i for i, p in enumerate(problem.points)}
    out_unassigned.sort(key=lambda u: order.get(u.point_id, 0))
    return routes, out_unassigned


def normalise(
    problem: Problem, truck: Truck, visits: list[Visit], start: Start | None = None
) -> list[Visit]:
    """Drop unloads that carry nothing (back-to-back, or before any pickup unless the
    truck starts loaded) and make sure a station-mode route ends with an unload."""
    out: list[Visit] = []
    loaded = start is not None and start.load_kg > 0
    for v in visits:
        if v.kind == "station":
            if not loaded:
                continue
            loaded = False
        else:
            loaded = True
        out.append(v)
    if problem.stations and loaded:
        out.append(Visit("station", best_station(problem, truck, out).station_id))
    return out


def best_station(problem: Problem, truck: Truck, visits: Sequence[Visit]) -> Station:
    matrix = problem.matrix_for(truck)
    last = next(
        (point_key(v.ref_id) for v in reversed(visits) if v.kind == "point"),
        depot_key(truck.start_depot_id),
    )
    end = depot_key(truck.end_depot_id)
    options = problem.stations_for(truck) or list(problem.stations)
    return min(
        options,
        key=lambda s: (
            matrix.distance(last, station_key(s.station_id))
            + matrix.distance(station_key(s.station_id), end)
        ),
    )


def _repair(
    problem: Problem,
    truck: Truck,
    visits: list[Visit],
    start: Start | None,
    break_done: bool,
) -> tuple[list[Visit], Schedule, list[str]]:
    """Make one route feasible: add unloads where a trip is over capacity, then drop
    points (last first) until it holds."""
    removed: list[str] = []
    sched = schedule_route(problem, truck, visits, start=start, break_done=break_done)
    if problem.stations and sched.reason == "capacity":
        visits = _split_overloaded_trips(problem, truck, visits, start)
        sched = schedule_route(problem, truck, visits, start=start, break_done=break_done)
    while not sched.feasible and any(v.kind == "point" for v in visits):
        # Remove the point whose removal shortens the route the most.
        best: tuple[float, int] | None = None
        for i, v in enumerate(visits):
            if v.kind != "point":
                continue
            trial = normalise(problem, truck, visits[:i] + visits[i + 1 :], start)
            s = schedule_route(problem, truck, trial, start=start, break_done=break_done)
            score = (0.0 if s.feasible else 1e12) + s.duration_s
            if best is None or score < best[0]:
                best = (score, i)
        assert best is not None
        removed.append(visits[best[1]].ref_id)
        visits = normalise(problem, truck, visits[: best[1]] + visits[best[1] + 1 :], start)
        sched = schedule_route(problem, truck, visits, start=start, break_done=break_done)
    return visits, sched, removed


def _split_overloaded_trips(
    problem: Problem, truck: Truck, visits: list[Visit], start: Start | None
) -> list[Visit]:
    out: list[Visit] = []
    load = start.load_kg if start else 0.0
    for v in visits:
        if v.kind == "point":
            amount = problem.point(v.ref_id).amount_kg
            if load + amount > truck.capacity_kg + 1e-9 and load > 0:
                out.append(Visit("station", best_station(problem, truck, out).station_id))
                load = 0.0
            load += amount
        else:
            load = 0.0
        out.append(v)
    return out


def _visit_key(v: Visit) -> str:
    return point_key(v.ref_id) if v.kind == "point" else station_key(v.ref_id)


def _insertions(
    problem: Problem, truck: Truck, visits: list[Visit], p: Point, start: Start | None
) -> list[tuple[float, list[Visit]]]:
    """Every way to add ``p`` to the truck's route, with the distance it adds on its
    own (the legs around it), cheapest first: the first that holds is (nearly) the
    cheapest feasible insertion, found without timing every position."""
    matrix = problem.matrix_for(truck)
    pk = point_key(p.point_id)
    new = Visit("point", p.point_id)
    first = start.key if start is not None else depot_key(truck.start_depot_id)
    end = depot_key(truck.end_depot_id)
    out: list[tuple[float, list[Visit]]] = []
    if problem.stations and not visits:
        before = unload_first(problem, truck, p, start)
        for s in problem.stations_for(truck):
            if p.stream in s.streams:
                sk = station_key(s.station_id)
                added = matrix.distance(first, pk) + matrix.distance(pk, sk)
                out.append(
                    (
                        added + matrix.distance(sk, end),
                        [*before, new, Visit("station", s.station_id)],
                    )
                )
    else:
        keys = [first, *(_visit_key(v) for v in visits), end]
        for i in range(len(visits) + 1):
            a, b = keys[i], keys[i + 1]
            added = matrix.distance(a, pk) + matrix.distance(pk, b) - matrix.distance(a, b)
            trial = normalise(problem, truck, [*visits[:i], new, *visits[i:]], start)
            out.append((added, trial))
    out.sort(key=lambda x: x[0])
    return out


def reinsert(
    problem: Problem,
    schedules: dict[str, tuple[list[Visit], Schedule]],
    missing: list[str],
    starts: dict[str, Start],
    breaks_done: frozenset[str],
    deadline: float,
    clock: Clock = time.monotonic,
) -> list[str]:
    """Cheapest feasible insertion of each missing point into any route (or a new
    route for an idle truck), the positions of all trucks tried cheapest first;
    returns the points still left out."""
    left: list[str] = []
    for pid in missing:
        if clock() >= deadline:
            left.append(pid)
            continue
        p = problem.point(pid)
        options: list[tuple[float, int, Truck, list[Visit]]] = []
        for k, truck in enumerate(problem.trucks):
            if p.stream not in truck.streams:
                continue
            if p.access_class == "narrow" and not truck.can_enter_narrow:
                continue
            visits, _ = schedules.get(truck.truck_id, ([], None))
            start = starts.get(truck.truck_id)
            options.extend(
                (added, k, truck, trial)
                for added, trial in _insertions(problem, truck, list(visits), p, start)
            )
        options.sort(key=lambda x: (x[0], x[1]))
        placed = False
        for _, _, truck, trial in options:
            start = starts.get(truck.truck_id)
            bd = truck.truck_id in breaks_done
            fault = route_fault(problem, truck, trial, start=start, break_done=bd)
            if fault == "capacity" and problem.stations:
                # A full trip takes the point with one more unload.
                trial = _split_overloaded_trips(problem, truck, trial, start)
                fault = route_fault(problem, truck, trial, start=start, break_done=bd)
            if fault is None:
                sched = schedule_route(problem, truck, trial, start=start, break_done=bd)
                schedules[truck.truck_id] = (trial, sched)
                placed = True
                break
            if clock() >= deadline:
                break
        if not placed:
            left.append(pid)
    return left


def _blocking_reason(
    problem: Problem,
    schedules: dict[str, tuple[list[Visit], Schedule]],
    pid: str,
    starts: dict[str, Start],
    breaks_done: frozenset[str],
) -> str:
    """Why a servable point still found no place: the constraint that most often
    blocks its insertion into the trucks' routes."""
    p = problem.point(pid)
    reasons: Counter[str] = Counter()
    for truck in problem.trucks:
        if p.stream not in truck.streams:
            continue
        if p.access_class == "narrow" and not truck.can_enter_narrow:
            continue
        visits, _ = schedules.get(truck.truck_id, ([], None))
        best_reason: str | None = None
        start = starts.get(truck.truck_id)
        for _, trial in _insertions(problem, truck, list(visits), p, start)[:60]:
            fault = route_fault(
                problem, truck, trial, start=start, break_done=truck.truck_id in breaks_done
            )
            if fault is None:
                best_reason = None
                break
            best_reason = best_reason or fault
        if best_reason:
            reasons[best_reason] += 1
    return pick_reason(reasons) if reasons else "shift"


class _QuickReasons:
    """A point's reason when there is no time left to try every insertion: what
    blocks it on a day of its own, if no truck could serve it alone (its window, the
    shift, the stations' hours); else what the trucks that could are short of, load
    (``capacity``) or time (``shift``). Trucks alike (all but their id) are timed
    once per point, so it stays quick on a district of thousands of points."""

    def __init__(
        self,
        problem: Problem,
        schedules: dict[str, tuple[list[Visit], Schedule]],
        starts: dict[str, Start],
        breaks_done: frozenset[str],
    ) -> None:
        self.problem = problem
        self.starts = starts
        self.breaks_done = breaks_done
        self.day_kg = {
            truck_id: sum(problem.point(v.ref_id).amount_kg for v in visits if v.kind == "point")
            for truck_id, (visits, _) in schedules.items()
        }

    def _alone(self, truck: Truck, p: Point, cache: dict[object, str | None]) -> str | None:
        """None if the truck could serve the point on a day of its own, else why not."""
        start = self.starts.get(truck.truck_id)
        bd = truck.truck_id in self.breaks_done
        key = (replace(truck, truck_id=""), start, bd)
        if key not in cache:
            trials = _insertions(self.problem, truck, [], p, start)[:1]
            if not trials:
                cache[key] = "station_hours"
            else:
                fault = route_fault(self.problem, truck, trials[0][1], start=start, break_done=bd)
                cache[key] = fault
        return cache[key]

    def reason(self, pid: str) -> str:
        p = self.problem.point(pid)
        alone: Counter[str] = Counter()
        cache: dict[object, str | None] = {}
        could = short_of_load = 0
        for truck in self.problem.trucks:
            if p.stream not in truck.streams:
                continue
            if p.access_class == "narrow" and not truck.can_enter_narrow:
                continue
            why = self._alone(truck, p, cache)
            if why is not None:
                alone[why] += 1
                continue
            could += 1
            start = self.starts.get(truck.truck_id)
            day_kg = self.day_kg.get(truck.truck_id, 0.0) + (start.day_load_kg if start else 0.0)
            if day_kg + p.amount_kg > truck.day_load_limit_kg + 1e-9:
                short_of_load += 1
        if could:
            return "capacity" if short_of_load == could else "shift"
        return pick_reason(alone)


def make_plan(
    problem: Problem,
    routes: Sequence[Route],
    unassigned: Sequence[Unassigned],
    *,
    solve_time_s: float,
    seed: int,
    status: str,
    solver: str = SOLVER_NAME,
    pieces: int = 1,
    notes: tuple[str, ...] = (),
) -> Plan:
    distance = sum(r.distance_m for r in routes)
    duration = sum(r.duration_s for r in routes)
    assigned = sum(len(r.point_ids) for r in routes)
    return Plan(
        routes=tuple(routes),
        unassigned=tuple(unassigned),
        stats=SolveStats(
            objective=round(distance, 3),
            distance_m=round(distance, 3),
            duration_s=round(duration, 3),
            solve_time_s=round(solve_time_s, 3),
            solver=solver,
            seed=seed,
            status=status,
            num_points=len(problem.points),
            num_assigned=assigned,
            num_routes=len(routes),
            pieces=pieces,
            notes=notes,
        ),
    )
