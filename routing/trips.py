"""Trip construction: a first solution with the trip structure right, completed so
the search starts from every point it can place."""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

import numpy as np
from ortools.constraint_solver import pywrapcp

from routing.budget import Clock
from routing.finish import normalise, reinsert
from routing.model import FSS, Model, ils
from routing.options import DIST_SCALE, LOAD_SCALE, OPERATORS_OFF
from routing.problem import (
    DAY_S,
    Point,
    Problem,
    Truck,
    depot_key,
    point_key,
    station_key,
)
from routing.schedule import Schedule, Start, Visit, schedule_route


def construct_trips(
    model: Model, time_limit_s: float, clock: Clock = time.monotonic
) -> dict[str, list[Visit]]:
    """A first solution with the trip structure right.

    The points of the trucks that unload at one station are routed as a CVRP from
    that station (truckload capacity, no time), by OR-Tools' iterated local search;
    the resulting trips are packed into those trucks' days (daily load cap, working
    time) most urgent first. Where the daily cap is not a whole number of truckloads,
    trips cut to the even share of a day are tried too, packed to fill days, and the
    shorter packing is kept (see ``_trip_sizes`` and ``_pack_trips``). The
    full model then starts from it (see ``Model.hint_successors``) and repairs what
    this ignores (windows, eligibility).
    """
    t0 = clock()
    problem = model.problem
    # Groups: trucks of one kind (streams, narrow access, capacity) unloading at one
    # station.
    groups: dict[tuple[Any, ...], list[int]] = {}
    for v, st in enumerate(model.unload_station):
        t = model.trucks[v]
        key = (st.station_id, frozenset(t.streams), t.can_enter_narrow, t.capacity_kg)
        groups.setdefault(key, []).append(v)
    # Each point goes to one group that may serve it: nearest station first, then
    # trucks that may not enter narrow lanes (the scarce small trucks are kept for
    # the narrow points), then the group with the most capacity.
    capacity = {k: sum(model.trucks[v].capacity_kg for v in vs) for k, vs in groups.items()}
    members: dict[tuple[Any, ...], list[Point]] = {k: [] for k in groups}
    mx = problem.matrix
    for p, allowed in zip(model.points, model.allowed, strict=True):
        allowed_set = set(allowed)
        options = [k for k, vs in groups.items() if allowed_set.intersection(vs)]
        if not options:
            continue
        pk = point_key(p.point_id)
        best = min(
            options,
            key=lambda k: (
                round(mx.distance(pk, station_key(k[0]))),
                k[2] and p.access_class != "narrow",
                -capacity[k],
            ),
        )
        members[best].append(p)
    total_points = sum(len(v) for v in members.values()) or 1
    out: dict[str, list[Visit]] = {}
    for key, vs in groups.items():
        pts = members[key]
        if not pts:
            continue
        share = time_limit_s * len(pts) / total_points
        sizes = _trip_sizes(model, vs)
        chosen: tuple[float, dict[str, list[Visit]]] | None = None
        for size in sizes:
            limit = max(0.2, share / len(sizes) - 0.05)
            trips = _cvrp_trips(model, key[0], vs, pts, size, limit)
            # Full loads are packed both ways (spread over the trucks, and filling
            # days), trips cut to the even share only filling days.
            for fill_days in (False, True) if size == sizes[0] else (True,):
                packed = _pack_trips(model, key[0], vs, trips, fill_days=fill_days)
                cost = _packed_cost(model, key[0], packed, pts)
                if chosen is None or cost < chosen[0]:
                    chosen = (cost, packed)
        assert chosen is not None
        out.update(chosen[1])
        if model.options.solution_limit is None and clock() - t0 > time_limit_s * 1.5:
            break
    # Completing gets a share of its own: on a busy machine the trips can use all theirs.
    return _complete(model, out, clock() + time_limit_s, clock)


def _complete(
    model: Model, visits_by_truck: dict[str, list[Visit]], deadline: float, clock: Clock
) -> dict[str, list[Visit]]:
    """Every point first: the points the trips left out (no truck's day had room for
    their trip, or a window the trip missed) inserted where they fit best, so the
    search starts from a complete assignment wherever one is easy to find."""
    problem = model.problem
    starts = {t.truck_id: model.start_of[v] for v, t in enumerate(model.trucks)}
    breaks_done = model.options.breaks_done
    schedules: dict[str, tuple[list[Visit], Schedule]] = {}
    for truck_id, visits in visits_by_truck.items():
        truck = problem.truck(truck_id)
        sched = schedule_route(
            problem, truck, visits, start=starts[truck_id], break_done=truck_id in breaks_done
        )
        if sched.feasible:
            schedules[truck_id] = (visits, sched)
    placed = {v.ref_id for visits, _ in schedules.values() for v in visits if v.kind == "point"}
    missing = [p.point_id for p in model.points if p.point_id not in placed]
    if model.options.solution_limit is not None:
        deadline = math.inf  # bounded by counts, never by the clock
    # Only the model's trucks (a point's eligible trucks are among them).
    sub = problem.replace(trucks=model.trucks)
    reinsert(sub, schedules, missing, starts, breaks_done, deadline, clock)
    return {truck_id: visits for truck_id, (visits, _) in schedules.items()}


def _trip_sizes(model: Model, vs: list[int]) -> list[float]:
    """The truckloads to cut trips to. Full loads; and, where the daily cap is not a
    whole number of loads, the even share of a day (a 400 yd day of 243 yd trucks
    holds two trips of 200 yd, but only one of 243 yd: full loads would take a truck
    per trip and drive every truck's way out and home)."""
    cap = min(model.trucks[v].capacity_kg for v in vs)
    day = min(model.trucks[v].day_load_limit_kg for v in vs)
    full = min(cap, day)
    sizes = [full]
    if math.isfinite(day) and day > cap:
        even = day / math.ceil(day / cap - 1e-9)
        if even < full * 0.98:
            sizes.append(even)
    return sizes


def _packed_cost(
    model: Model, station_id: str, packed: dict[str, list[Visit]], pts: list[Point]
) -> float:
    """Distance of constructed days (start, visits, end depot); a point left out
    counts as a trip of its own from the station."""
    problem = model.problem
    total = 0.0
    served: set[str] = set()
    for v, t in enumerate(model.trucks):
        visits = packed.get(t.truck_id)
        if not visits:
            continue
        matrix = problem.matrix_for(t)
        keys = [model.start_of[v].key]
        for x in visits:
            if x.kind == "point":
                served.add(x.ref_id)
                keys.append(point_key(x.ref_id))
            else:
                keys.append(station_key(x.ref_id))
        keys.append(depot_key(t.end_depot_id))
        total += sum(matrix.distance(a, b) for a, b in itertools.pairwise(keys))
    sk = station_key(station_id)
    mx = problem.matrix
    for p in pts:
        if p.point_id not in served:
            total += 2 * mx.distance(sk, point_key(p.point_id))
    return total


def _cvrp_trips(
    model: Model,
    station_id: str,
    vs: list[int],
    pts: list[Point],
    cap: float,
    time_limit_s: float,
) -> list[list[Point]]:
    problem = model.problem
    truck = model.trucks[vs[0]]
    matrix = problem.matrix_for(truck)
    keys = [station_key(station_id)] + [point_key(p.point_id) for p in pts]
    idx = np.array([matrix.index[k] for k in keys])
    dist = np.asarray(matrix.distance_m)[np.ix_(idx, idx)]
    dist = np.where(np.isfinite(dist), dist, model.big_cost / DIST_SCALE)
    # Keep points whose windows are far apart out of one trip: a trip is driven at
    # one time of day. The gap between two windows costs what the truck would drive
    # meanwhile.
    dur = np.asarray(matrix.duration_s)[np.ix_(idx, idx)]
    finite = np.isfinite(dur) & (dur > 0)
    speed = float(np.median(dist[finite] / dur[finite])) if finite.any() else 5.0
    ws = np.array([0.0] + [p.window_start_s for p in pts])
    we = np.array([DAY_S] + [p.window_end_s for p in pts])
    gap = np.maximum(0.0, ws[None, :] - we[:, None]) + np.maximum(0.0, ws[:, None] - we[None, :])
    gap[0, :] = 0.0
    gap[:, 0] = 0.0
    cost = np.rint((dist + speed * gap) * DIST_SCALE).astype(np.int64).tolist()
    demand = [0] + [round(p.amount_kg * LOAD_SCALE) for p in pts]
    n_vehicles = math.ceil(sum(p.amount_kg for p in pts) / cap * 1.3) + 2
    manager = pywrapcp.RoutingIndexManager(len(keys), n_vehicles, 0)
    routing = pywrapcp.RoutingModel(manager)
    routing.SetArcCostEvaluatorOfAllVehicles(routing.RegisterTransitMatrix(cost))
    routing.AddDimensionWithVehicleCapacity(
        routing.RegisterUnaryTransitVector(demand),
        0,
        [round(cap * LOAD_SCALE)] * n_vehicles,
        True,
        "load",
    )
    penalty = int(model.big_cost * 10)
    for k in range(1, len(keys)):
        routing.AddDisjunction([manager.NodeToIndex(k)], penalty)
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.time_limit.FromMilliseconds(max(100, int(time_limit_s * 1000)))
    if model.options.solution_limit is not None:
        params.solution_limit = model.options.solution_limit
    params.first_solution_strategy = FSS.SAVINGS
    for name in OPERATORS_OFF:
        setattr(params.local_search_operators, name, 2)
    ils(params, model.options)
    solution = routing.SolveWithIteratedLocalSearch(params)
    if solution is None:
        return [[p] for p in pts]
    trips: list[list[Point]] = []
    for v in range(n_vehicles):
        index = solution.Value(routing.NextVar(routing.Start(v)))
        trip = []
        while not routing.IsEnd(index):
            trip.append(pts[manager.IndexToNode(index) - 1])
            index = solution.Value(routing.NextVar(index))
        if trip:
            trips.append(trip)
    return trips


def _pack_trips(
    model: Model,
    station_id: str,
    vs: list[int],
    trips: list[list[Point]],
    *,
    fill_days: bool = False,
) -> dict[str, list[Visit]]:
    """Most urgent trips first, each to the truck with the most time left that can
    still take its load; trips within a truck in order of urgency.

    With ``fill_days`` (trips cut to the even share of a day) each goes instead to the
    truck that can drive it in time at the least extra distance: a truck already out
    drives from the station to the trip, a truck not yet out from its start and home
    from the station, so days fill up and fewer trucks go out. Full loads keep the
    spread they always had: the generated district was measured with it, and packed
    tight they have not been shown to do better there (docs/routing.md)."""
    problem = model.problem
    sk = station_key(station_id)
    left_s, left_kg = _room_left(model, vs, sk)
    assigned: dict[int, list[list[Point]]] = {v: [] for v in vs}
    for trip in sorted(trips, key=lambda trip: (min(p.window_end_s for p in trip), _centre(trip))):
        load = sum(p.amount_kg for p in trip)
        fits = [v for v in vs if left_kg[v] >= load - 1e-9]
        if not fits:
            continue  # left for the search to place
        timely = (
            [v for v in fits if _day_holds(model, v, station_id, [*assigned[v], trip])]
            if fill_days
            else []
        )
        if timely:
            v = min(
                timely,
                key=lambda x: (_extra_m(model, x, sk, trip, out=bool(assigned[x])), -left_s[x]),
            )
        else:
            v = max(fits, key=lambda x: left_s[x])
        assigned[v].append(trip)
        left_s[v] -= _trip_time(problem, station_id, trip, problem.matrix_for(model.trucks[v]))
        left_kg[v] -= load
    out: dict[str, list[Visit]] = {}
    for v, ts in assigned.items():
        if not ts:
            continue
        truck = model.trucks[v]
        start = model.start_of[v]
        out[truck.truck_id] = _drop_late(
            problem,
            truck,
            _day(station_id, ts),
            start,
            truck.truck_id in model.options.breaks_done,
        )
    return out


def _room_left(model: Model, vs: list[int], sk: str) -> tuple[dict[int, float], dict[int, float]]:
    """Working time and daily load each truck has left for trips from the station:
    its day less the break and the drives start → station → home."""
    problem = model.problem
    left_s = {}
    left_kg = {}
    for v in vs:
        t = model.trucks[v]
        matrix = problem.matrix_for(t)
        home = depot_key(t.end_depot_id)
        overhead = matrix.duration(model.start_of[v].key, sk) + matrix.duration(sk, home)
        left_s[v] = (
            min(t.shift_end_s - model.start_of[v].earliest_s, t.route_duration_limit_s)
            - t.break_duration_s
            - overhead
        )
        left_kg[v] = t.day_load_limit_kg - model.start_of[v].day_load_kg
    return left_s, left_kg


def _trip_time(problem: Problem, station_id: str, trip: list[Point], matrix: Any) -> float:
    """A trip from the station round its points and back, tipping included."""
    sk = station_key(station_id)
    keys = [sk] + [point_key(p.point_id) for p in trip] + [sk]
    travel = sum(matrix.duration(a, b) for a, b in itertools.pairwise(keys))
    return travel + sum(p.service_time_s for p in trip) + problem.station(station_id).tipping_time_s


def _centre(trip: list[Point]) -> float:
    """The median middle of the trip's windows: when it is best driven."""
    return float(np.median([(p.window_start_s + p.window_end_s) / 2 for p in trip]))


def _day(station_id: str, trips: list[list[Point]]) -> list[Visit]:
    """A truck's day: its trips in order of their window centres, each ending at the
    station."""
    visits: list[Visit] = []
    for trip in sorted(trips, key=_centre):
        visits.extend(Visit("point", p.point_id) for p in trip)
        visits.append(Visit("station", station_id))
    return visits


def _day_holds(model: Model, v: int, station_id: str, trips: list[list[Point]]) -> bool:
    """Whether truck ``v`` can drive these trips in one day, windows and shift kept."""
    truck = model.trucks[v]
    sched = schedule_route(
        model.problem,
        truck,
        _day(station_id, trips),
        start=model.start_of[v],
        break_done=truck.truck_id in model.options.breaks_done,
    )
    return sched.feasible


def _extra_m(model: Model, v: int, sk: str, trip: list[Point], *, out: bool) -> float:
    """The distance a trip adds to truck ``v``'s day: from the station to the trip if
    the truck is already ``out``, else from its start to the trip and home from the
    station."""
    matrix = model.problem.matrix_for(model.trucks[v])
    ends = [point_key(trip[0].point_id), point_key(trip[-1].point_id)]
    if out:
        return min(matrix.distance(sk, e) for e in ends)
    home = depot_key(model.trucks[v].end_depot_id)
    return min(matrix.distance(model.start_of[v].key, e) for e in ends) + matrix.distance(sk, home)


def _drop_late(
    problem: Problem, truck: Truck, visits: list[Visit], start: Start, break_done: bool
) -> list[Visit]:
    """Make a constructed route hold: drop the first point whose window (or the shift)
    it misses until it does; the search re-inserts them."""
    for _ in range(len(visits)):
        sched = schedule_route(problem, truck, visits, start=start, break_done=break_done)
        if sched.feasible:
            return visits
        bad = None
        for t in sched.stops:
            if t.kind == "point":
                p = problem.point(t.ref_id or "")
                if t.start_s > p.window_end_s + 1e-6:
                    bad = t.ref_id
                    break
        if bad is None:  # shift or capacity: drop the last point
            points = [x for x in visits if x.kind == "point"]
            if not points:
                return []
            bad = points[-1].ref_id
        visits = normalise(
            problem,
            truck,
            [x for x in visits if not (x.kind == "point" and x.ref_id == bad)],
            start,
        )
    return visits
