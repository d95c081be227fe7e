"""The shape of a plan as the simulator reads it, and a simple planner for tests.

The simulator drives any value with the shape of `routing.plan.Plan`:
`plan.routes[*].truck_id`, `plan.routes[*].stops[*].kind` ('start', 'point',
'station', 'break', 'end'), `.ref_id`, `.arrival_s`, `.departure_s`,
`.load_after_kg` (seconds since local midnight of the service date). `load_plan`
reads the JSON form (`Plan.to_dict()`); `greedy_plan` makes a nearest-neighbour plan
of that shape so the simulator can run before, or without, the real planner.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from simulator.city import City, Point, Station, Truck
from simulator.roads import RoadNetwork

STOP_KINDS = frozenset({"start", "point", "station", "break", "end"})


class StopLike(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def ref_id(self) -> str | None: ...
    @property
    def arrival_s(self) -> float: ...
    @property
    def departure_s(self) -> float: ...
    @property
    def load_after_kg(self) -> float: ...


class RouteLike(Protocol):
    @property
    def truck_id(self) -> str: ...
    @property
    def stops(self) -> Sequence[StopLike]: ...


class PlanLike(Protocol):
    @property
    def routes(self) -> Sequence[RouteLike]: ...


@dataclass(frozen=True, slots=True)
class SimStop:
    kind: str
    ref_id: str | None
    arrival_s: float
    departure_s: float
    load_after_kg: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in STOP_KINDS:
            raise ValueError(f"unknown stop kind {self.kind!r}")
        if self.kind != "break" and not self.ref_id:
            raise ValueError(f"a {self.kind} stop needs a ref_id")
        if self.departure_s < self.arrival_s:
            raise ValueError(f"stop {self.ref_id!r}: departure before arrival")


@dataclass(frozen=True, slots=True)
class SimRoute:
    truck_id: str
    stops: tuple[SimStop, ...]

    def __post_init__(self) -> None:
        if len(self.stops) < 2 or self.stops[0].kind != "start" or self.stops[-1].kind != "end":
            raise ValueError(f"route of {self.truck_id}: must begin with start and end with end")


@dataclass(frozen=True, slots=True)
class SimPlan:
    routes: tuple[SimRoute, ...]
    unassigned: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "routes": [
                {
                    "truck_id": r.truck_id,
                    "stops": [
                        {
                            "kind": s.kind,
                            "ref_id": s.ref_id,
                            "arrival_s": s.arrival_s,
                            "departure_s": s.departure_s,
                            "load_after_kg": s.load_after_kg,
                        }
                        for s in r.stops
                    ],
                }
                for r in self.routes
            ],
            "unassigned": [{"point_id": p, "reason": "greedy"} for p in self.unassigned],
        }


def plan_from_dict(data: Mapping[str, Any]) -> SimPlan:
    """Read the JSON form of a plan (`routing.plan.Plan.to_dict()`); extra keys are
    ignored, missing ones are a ValueError naming the route and stop."""
    try:
        routes = []
        for i, r in enumerate(data["routes"]):
            stops = []
            for j, s in enumerate(r["stops"]):
                try:
                    stops.append(
                        SimStop(
                            kind=str(s["kind"]),
                            ref_id=None if s.get("ref_id") is None else str(s["ref_id"]),
                            arrival_s=float(s["arrival_s"]),
                            departure_s=float(s["departure_s"]),
                            load_after_kg=float(s.get("load_after_kg") or 0.0),
                        )
                    )
                except (KeyError, TypeError, ValueError) as exc:
                    raise ValueError(f"route {i} stop {j}: {exc}") from exc
            if not stops:
                continue  # an idle truck
            routes.append(SimRoute(truck_id=str(r["truck_id"]), stops=tuple(stops)))
    except KeyError as exc:
        raise ValueError(f"plan: missing field {exc}") from exc
    return SimPlan(routes=tuple(routes))


def load_plan(path: str | Path) -> SimPlan:
    return plan_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def check_plan(plan: PlanLike, city: City) -> None:
    """Raise ValueError if the plan names trucks or places the city does not have."""
    for route in plan.routes:
        city.truck(route.truck_id)
        for stop in route.stops:
            if stop.kind == "break":
                continue
            if stop.ref_id is None:
                raise ValueError(f"{route.truck_id}: a {stop.kind} stop without ref_id")
            if stop.kind == "point":
                city.point(stop.ref_id)
            elif stop.kind == "station":
                city.station(stop.ref_id)
            else:
                city.depot(stop.ref_id)


# ---- a greedy nearest-neighbour planner --------------------------------------------------
@dataclass(slots=True)
class _State:
    truck: Truck
    node: int
    t: float
    load_kg: float = 0.0
    streams: set[str] = field(default_factory=set)
    stops: list[SimStop] = field(default_factory=list)
    had_break: bool = False
    done: bool = False


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
) -> SimPlan:
    """Nearest-neighbour routes: trucks take turns picking the nearest unserved point
    they may serve (stream, access, time window), unload when full and at the end,
    take their break after `break_earliest`. Points no truck can reach in time are
    left unassigned. Deterministic; good enough to drive the simulator in tests."""
    net = net or RoadNetwork(city)
    wanted = set(point_ids) if point_ids is not None else None
    points = [p for p in city.points if wanted is None or p.id in wanted]
    xy = np.array([net.xy(p.node) for p in points]) if points else np.zeros((0, 2))
    open_ = np.ones(len(points), dtype=bool)
    states = []
    for truck in city.trucks:
        depot = city.depot(truck.depot_id)
        st = _State(truck=truck, node=depot.node, t=float(truck.shift_start_s))
        st.stops.append(SimStop("start", depot.id, st.t, st.t, 0.0))
        states.append(st)

    def finish_cost(st: _State, from_node: int, load: float) -> float:
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

    def unload(st: _State) -> None:
        station = _station_for(city, net, st)
        narrow_ok = st.truck.can_enter_narrow
        arrive = st.t + net.travel_time_s(st.node, station.node, narrow_ok=narrow_ok)
        start = max(arrive, station.opens_s)
        st.t = start + station.tipping_time_s
        st.stops.append(SimStop("station", station.id, arrive, st.t, 0.0))
        st.node, st.load_kg = station.node, 0.0
        st.streams.clear()

    def take_break(st: _State) -> None:
        start = max(st.t, st.truck.break_earliest_s)
        st.t = start + st.truck.break_duration_s
        st.stops.append(SimStop("break", None, start, st.t, st.load_kg))
        st.had_break = True

    counts = dict.fromkeys(range(len(states)), 0)
    while any(not s.done for s in states):
        for k, st in enumerate(states):
            if st.done:
                continue
            truck = st.truck
            narrow_ok = truck.can_enter_narrow
            if not st.had_break and st.t >= truck.break_earliest_s:
                take_break(st)
            cand = [int(i) for i in np.flatnonzero(open_) if truck.can_serve(points[i])]
            if max_points_per_truck is not None and counts[k] >= max_points_per_truck:
                cand = []
            picked: Point | None = None
            here = np.array(net.xy(st.node))
            if cand:
                order = np.argsort(np.hypot(*(xy[cand] - here).T), kind="stable")
                # the nearest that fits with a short wait; failing that, whichever
                # can start soonest (the truck waits for its window)
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
                    if leave + finish_cost(st, p.node, load) > truck.shift_end_s:
                        continue
                    picked = p
                    open_[i] = False
                    counts[k] += 1
                    st.t = leave
                    st.node = p.node
                    st.load_kg = load
                    st.streams.add(p.stream)
                    st.stops.append(SimStop("point", p.id, arrive, leave, load))
                    break
            if picked is None:
                # Full, or nothing feasible nearby: unload if it helps, else go home.
                if st.load_kg > 0 and cand:
                    unload(st)
                    if st.t + 600 < truck.shift_end_s:
                        continue
                if st.load_kg > 0:
                    unload(st)
                if (
                    not st.had_break
                    and truck.break_earliest_s <= st.t
                    and st.t + truck.break_duration_s < truck.shift_end_s - 3600
                ):
                    take_break(st)
                depot = city.depot(truck.depot_id)
                arrive = st.t + net.travel_time_s(st.node, depot.node, narrow_ok=narrow_ok)
                st.stops.append(SimStop("end", depot.id, arrive, arrive, 0.0))
                st.done = True
    routes = tuple(
        SimRoute(truck_id=st.truck.id, stops=tuple(st.stops))
        for st in states
        if any(s.kind == "point" for s in st.stops)
    )
    unassigned = tuple(points[i].id for i in np.flatnonzero(open_))
    return SimPlan(routes=routes, unassigned=unassigned)


def routing_problem(city: City) -> Any:
    """The city as a `routing.problem.Problem` (travel on the city's own road graph)."""
    from routing import problem as rp

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
) -> Any:
    """A `routing.plan.Plan` for the city from the real planner (OR-Tools); with
    ``solution_limit`` the same plan for the same seed on any machine."""
    import routing

    options = routing.SolverOptions(solution_limit=solution_limit)
    return routing.solve(
        routing_problem(city), time_limit_s=time_limit_s, seed=seed, options=options
    )
