"""Plans for the simulator: a greedy planner for tests, and the city as a routing problem.

The simulator drives a `routing.plan.Plan` (read a stored one with `Plan.from_dict`
or `load_plan`). `greedy_plan` makes a nearest-neighbour `Plan` on the city's roads so
the simulator can run before, or without, the real planner; `solved_plan` asks the
real planner. `refuse_unknown_places` runs `routing.check.check_references` against
the city before a day is driven.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np
import numpy.typing as npt

import routing
from routing import problem as rp
from routing.check import check_references
from routing.plan import Plan, Reason, Route, SolveStats, Stop, StopKind, Unassigned
from simulator.city import City, Point, Station, Truck
from simulator.roads import RoadNetwork


def load_plan(path: str | Path) -> Plan:
    """A plan stored as JSON (`Plan.to_json()`); ValueError naming what is wrong."""
    try:
        return Plan.from_json(Path(path).read_bytes())
    except msgspec.DecodeError as exc:
        raise ValueError(f"{path}: not a plan: {exc}") from None


def refuse_unknown_places(plan: Plan, city: City) -> None:
    """Raise ValueError if a route is malformed or names a truck or place the city
    does not have."""
    violations = check_references(
        plan,
        truck_ids={t.id for t in city.trucks},
        depot_ids={d.id for d in city.depots},
        station_ids={s.id for s in city.stations},
        point_ids={p.id for p in city.points},
    )
    if violations:
        raise ValueError("the plan does not fit the city: " + "; ".join(map(str, violations)))


# ---- a greedy nearest-neighbour planner --------------------------------------------------
@dataclass(slots=True)
class _State:
    truck: Truck
    node: int
    t: float
    load_kg: float = 0.0
    streams: set[str] = field(default_factory=set)
    stops: list[Stop] = field(default_factory=list)
    had_break: bool = False
    done: bool = False

    def add_stop(
        self,
        net: RoadNetwork,
        kind: StopKind,
        ref_id: str | None,
        node: int,
        arrival_s: float,
        departure_s: float,
    ) -> None:
        """Append a stop reached from the truck's node (a break stays where it is)."""
        path = net.path(self.node, node, narrow_ok=self.truck.can_enter_narrow)
        self.stops.append(
            Stop(
                kind=kind,
                ref_id=ref_id,
                arrival_s=arrival_s,
                departure_s=departure_s,
                load_after_kg=self.load_kg,
                distance_from_prev_m=net.path_length_m(path),
            )
        )
        self.node = node


def _station_for(city: City, net: RoadNetwork, st: _State, opens_ok: bool = True) -> Station:
    streams = st.streams or set(st.truck.streams[:1])
    ok = [s for s in city.stations if s.accepts(streams)]
    if not ok:
        raise ValueError(f"no station accepts {sorted(streams)}")
    narrow_ok = st.truck.can_enter_narrow
    return min(ok, key=lambda s: net.travel_time_s(st.node, s.node, narrow_ok=narrow_ok))


def greedy_plan(
    city: City,
    *,
    net: RoadNetwork | None = None,
    max_points_per_truck: int | None = None,
    point_ids: Sequence[str] | None = None,
) -> Plan:
    """Nearest-neighbour routes: trucks take turns picking the nearest unserved point
    they may serve (stream, access, time window), unload when full and at the end,
    take their break after `break_earliest`. Points no truck can reach in time are
    left unassigned (reason `stream` or `access` when no truck may serve them at all,
    else `shift`). Deterministic; good enough to drive the simulator in tests."""
    started = time.perf_counter()
    net = net or RoadNetwork(city)
    wanted = set(point_ids) if point_ids is not None else None
    points = [p for p in city.points if wanted is None or p.id in wanted]
    xy = np.array([net.xy(p.node) for p in points]) if points else np.zeros((0, 2))
    open_ = np.ones(len(points), dtype=bool)
    states = []
    for truck in city.trucks:
        depot = city.depot(truck.depot_id)
        st = _State(truck=truck, node=depot.node, t=float(truck.shift_start_s))
        st.add_stop(net, "start", depot.id, depot.node, st.t, st.t)
        states.append(st)
    counts = dict.fromkeys(range(len(states)), 0)
    while any(not s.done for s in states):
        for k, st in enumerate(states):
            if st.done:
                continue
            truck = st.truck
            if not st.had_break and st.t >= truck.break_earliest_s:
                _take_break(net, st)
            cand = [int(i) for i in np.flatnonzero(open_) if truck.can_serve(points[i])]
            if max_points_per_truck is not None and counts[k] >= max_points_per_truck:
                cand = []
            i = _visit_next(city, net, st, points, xy, cand)
            if i is not None:
                open_[i] = False
                counts[k] += 1
                continue
            # Full, or nothing feasible nearby: unload if it helps, else go home.
            if st.load_kg > 0 and cand:
                _unload(city, net, st)
                if st.t + 600 < truck.shift_end_s:
                    continue
            _go_home(city, net, st)
    unassigned = [points[i] for i in np.flatnonzero(open_)]
    return _plan(states, len(points), unassigned, city, time.perf_counter() - started)


def _visit_next(
    city: City,
    net: RoadNetwork,
    st: _State,
    points: Sequence[Point],
    xy: npt.NDArray[np.float64],
    cand: list[int],
) -> int | None:
    """Serve the nearest candidate that fits with a short wait; failing that, whichever
    can start soonest (the truck waits for its window). The index served, or None."""
    if not cand:
        return None
    truck, narrow_ok = st.truck, st.truck.can_enter_narrow
    here = np.array(net.xy(st.node))
    order = np.argsort(np.hypot(*(xy[cand] - here).T), kind="stable")
    tries = [(cand[j], 1800.0) for j in order[:12]]
    later = sorted(cand, key=lambda i: (points[i].window_start_s, i))[:12]
    tries += [(i, math.inf) for i in later]
    for i, max_wait in tries:
        p = points[i]
        arrive = st.t + net.travel_time_s(st.node, p.node, narrow_ok=narrow_ok)
        start = max(arrive, p.window_start_s)
        leave = start + p.service_time_s
        if start - arrive > max_wait or leave > p.window_end_s:
            continue
        load = st.load_kg + p.daily_amount_kg
        if load > truck.capacity_kg:
            continue
        if leave + _finish_cost(city, net, st, p.node, load) > truck.shift_end_s:
            continue
        st.t = leave
        st.load_kg = load
        st.streams.add(p.stream)
        st.add_stop(net, "point", p.id, p.node, arrive, leave)
        return i
    return None


def _finish_cost(city: City, net: RoadNetwork, st: _State, from_node: int, load: float) -> float:
    """Time to unload (if loaded) and drive home from `from_node`."""
    narrow_ok = st.truck.can_enter_narrow
    home = city.depot(st.truck.depot_id).node
    if load <= 0:
        return net.travel_time_s(from_node, home, narrow_ok=narrow_ok)
    best = math.inf
    for s in city.stations:
        if s.accepts(st.streams or st.truck.streams[:1]):
            best = min(
                best,
                net.travel_time_s(from_node, s.node, narrow_ok=narrow_ok)
                + s.tipping_time_s
                + net.travel_time_s(s.node, home, narrow_ok=narrow_ok),
            )
    return best


def _unload(city: City, net: RoadNetwork, st: _State) -> None:
    station = _station_for(city, net, st)
    narrow_ok = st.truck.can_enter_narrow
    arrive = st.t + net.travel_time_s(st.node, station.node, narrow_ok=narrow_ok)
    start = max(arrive, station.opens_s)
    st.t = start + station.tipping_time_s
    st.load_kg = 0.0
    st.add_stop(net, "station", station.id, station.node, arrive, st.t)
    st.streams.clear()


def _take_break(net: RoadNetwork, st: _State) -> None:
    start = max(st.t, st.truck.break_earliest_s)
    st.t = start + st.truck.break_duration_s
    st.add_stop(net, "break", None, st.node, start, st.t)
    st.had_break = True


def _go_home(city: City, net: RoadNetwork, st: _State) -> None:
    """Unload if loaded, take the break if it is due and fits, end the day at the depot."""
    truck = st.truck
    if st.load_kg > 0:
        _unload(city, net, st)
    if (
        not st.had_break
        and truck.break_earliest_s <= st.t
        and st.t + truck.break_duration_s < truck.shift_end_s - 3600
    ):
        _take_break(net, st)
    depot = city.depot(truck.depot_id)
    arrive = st.t + net.travel_time_s(st.node, depot.node, narrow_ok=truck.can_enter_narrow)
    st.add_stop(net, "end", depot.id, depot.node, arrive, arrive)
    st.done = True


def _plan(
    states: Sequence[_State],
    num_points: int,
    unassigned: Sequence[Point],
    city: City,
    solve_time_s: float,
) -> Plan:
    routes = tuple(_route(st) for st in states if any(s.kind == "point" for s in st.stops))
    distance_m = sum(r.distance_m for r in routes)
    stats = SolveStats(
        objective=distance_m,
        distance_m=distance_m,
        duration_s=sum(r.duration_s for r in routes),
        solve_time_s=solve_time_s,
        solver="greedy",
        seed=0,
        num_points=num_points,
        num_assigned=num_points - len(unassigned),
        num_routes=len(routes),
    )
    left_out = tuple(
        Unassigned(point_id=p.id, reason=_left_out(p, city.trucks)) for p in unassigned
    )
    return Plan(routes=routes, unassigned=left_out, stats=stats)


def _route(st: _State) -> Route:
    stops = tuple(st.stops)
    return Route(
        truck_id=st.truck.id,
        stops=stops,
        distance_m=sum(s.distance_from_prev_m for s in stops),
        duration_s=stops[-1].arrival_s - stops[0].departure_s,
    )


def _left_out(point: Point, trucks: Sequence[Truck]) -> Reason:
    if not any(point.stream in t.streams for t in trucks):
        return "stream"
    if not any(t.can_serve(point) for t in trucks):
        return "access"
    return "shift"


def routing_problem(city: City) -> rp.Problem:
    """The city as a `routing.problem.Problem` (travel on the city's own road graph)."""
    return rp.build_problem(
        points=[
            rp.Point(
                point_id=p.id,
                lat=p.lat,
                lon=p.lon,
                stream=p.stream,
                amount_kg=float(p.daily_amount_kg),
                service_time_s=float(p.service_time_s),
                window_start_s=float(p.window_start_s),
                window_end_s=float(p.window_end_s),
                access_class=p.access_class,
            )
            for p in city.points
        ],
        stations=[
            rp.Station(
                station_id=s.id,
                lat=s.lat,
                lon=s.lon,
                streams=frozenset(s.streams),
                opens_s=float(s.opens_s),
                closes_s=float(s.closes_s),
                tipping_time_s=float(s.tipping_time_s),
            )
            for s in city.stations
        ],
        depots=[rp.Depot(depot_id=d.id, lat=d.lat, lon=d.lon) for d in city.depots],
        trucks=[
            rp.Truck(
                truck_id=t.id,
                capacity_kg=float(t.capacity_kg),
                streams=frozenset(t.streams),
                start_depot_id=t.depot_id,
                end_depot_id=t.depot_id,
                shift_start_s=float(t.shift_start_s),
                shift_end_s=float(t.shift_end_s),
                max_route_duration_s=float(t.shift_end_s - t.shift_start_s),
                break_duration_s=float(t.break_duration_s),
                break_earliest_s=float(t.break_earliest_s),
                break_latest_s=float(t.break_latest_s),
                can_enter_narrow=t.can_enter_narrow,
            )
            for t in city.trucks
        ],
        graph=city.graph,
        name=(
            f"simulated city seed {city.config.seed}"
            if city.config is not None
            else f"district {city.district or city.source}"
        ),
    )


def solved_plan(
    city: City, *, time_limit_s: float, seed: int = 0, solution_limit: int | None = None
) -> Plan:
    """A `routing.plan.Plan` for the city from the real planner (OR-Tools); with
    ``solution_limit`` the same plan for the same seed on any machine."""
    options = routing.SolverOptions(solution_limit=solution_limit)
    return routing.solve(
        routing_problem(city), time_limit_s=time_limit_s, seed=seed, options=options
    )
