"""The OR-Tools model: the only module that imports OR-Tools.

``solve(problem, time_limit_s=..., seed=...)`` returns a :class:`~routing.plan.Plan`;
no OR-Tools object leaves this module. Points that cannot be served come back as
``Unassigned`` with the constraint that blocked them, never silently dropped.

The model (docs/routing.md explains the choices and what they were measured against):

* one OR-Tools vehicle per truck; nodes are the collection points, per-truck
  *unload* copies of each compatible station (optional, any number may be used) and
  per-truck *final unload* nodes, one per compatible station, of which exactly one is
  visited, always last: a point can never be followed directly by the end depot, so
  every truck ends the day empty. The arc into a final-unload node also carries the
  drive from that station home, and the arc from the start to it is free, so an
  unused truck costs nothing and every single point insertion is a one-node move;
* the load dimension resets at every unload (negative transit + slack); the truck
  capacity is a *soft* bound at unloads, heavily penalised, so that insertion
  heuristics and ruin-and-recreate can always insert a point and the local search
  then repairs the trip by activating an unload (an inactive unload is a one-node
  move). Plans leave the solver only after :func:`routing.schedule.schedule_route`
  re-times them exactly and any leftover overload is repaired;
* a second, hard, dimension caps the day's total load where trucks have one;
* time: service times, point windows, station hours, shift, maximum route duration,
  lunch break as an OR-Tools break interval;
* search: OR-Tools iterated local search (ruin-and-recreate with SISR ruins, simulated
  annealing acceptance) from a savings / cheapest-insertion start.

Without stations the depots are the disposal sites (one trip, unload at the end
depot): the classic CVRP / VRPTW.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
from ortools.constraint_solver import pywrapcp, routing_enums_pb2

from routing.plan import Plan, Route, SolveStats, Unassigned
from routing.problem import (
    DAY_S,
    Point,
    Problem,
    Station,
    Truck,
    depot_key,
    point_key,
    station_key,
)
from routing.schedule import Schedule, Start, Visit, default_start, schedule_route

DIST_SCALE: Final = 10  # decimetres
TIME_SCALE: Final = 10  # deciseconds
LOAD_SCALE: Final = 1000  # grams (and thousandths of other units)
SOLVER_NAME: Final = "ortools-ils"
# Above this many points `solve` decomposes the district (routing.decompose).
DEFAULT_MAX_POINTS_PER_SOLVE: Final = 450

FSS = routing_enums_pb2.FirstSolutionStrategy
LSM = routing_enums_pb2.LocalSearchMetaheuristic

# Operators that cost more time than they return on these models (measured on
# CVRPLIB X, see docs/routing.md); pickup-and-delivery ones never apply here.
_OPERATORS_OFF: Final = (
    "use_lin_kernighan",
    "use_relocate_expensive_chain",
    "use_global_cheapest_insertion_path_lns",
    "use_local_cheapest_insertion_path_lns",
    "use_relocate_path_global_cheapest_insertion_insert_unperformed",
    "use_global_cheapest_insertion_visit_types_lns",
    "use_local_cheapest_insertion_visit_types_lns",
)


# With stations, unserved points need more than a one-node insertion.
_STATION_MODE_KEEP: Final = frozenset(
    {"use_relocate_path_global_cheapest_insertion_insert_unperformed"}
)


@dataclass(frozen=True, slots=True)
class SolverOptions:
    """Knobs for experiments and the benchmark; the defaults are the measured best."""

    metaheuristic: Literal["ils", "gls", "greedy"] = "ils"
    first_solution: str | None = None  # an OR-Tools FirstSolutionStrategy name
    soft_capacity: bool = False
    unload_model: Literal["parked", "optional"] = "parked"
    # Start from trips: a CVRP from each station cut into truckloads, packed into the
    # trucks' days ("trips"), or let OR-Tools build the first solution ("ortools").
    construction: Literal["trips", "ortools"] = "trips"
    construction_share: float = 0.25
    unload_copies: int | None = None  # per truck and station; None = from the loads
    sisr_max_sequence: int = 10
    sisr_avg_removed: int = 10
    operators_off: tuple[str, ...] = _OPERATORS_OFF
    operators_on: tuple[str, ...] = ()
    # Stop every search after this many solutions: the plan then depends only on the
    # seed, not on the machine's speed; the time limit is only a safety cap.
    solution_limit: int | None = None
    log_search: bool = False
    max_points_per_solve: int = DEFAULT_MAX_POINTS_PER_SOLVE
    workers: int | None = None  # processes for decomposed districts; None = CPU count
    # Live state for re-planning (routing.replan): truck id -> where its day resumes.
    starts: tuple[tuple[str, Start], ...] = ()
    breaks_done: frozenset[str] = frozenset()
    repair: bool = True
    # "shift": fold the common lunch break into model time (fast, conservative);
    # "intervals": OR-Tools break intervals (exact, much slower search).
    break_model: Literal["shift", "intervals"] = "shift"


# --------------------------------------------------------------------------- screening


@dataclass(slots=True)
class _Screen:
    eligible: dict[str, list[int]] = field(default_factory=dict)  # point id -> truck idxs
    unassigned: list[Unassigned] = field(default_factory=list)
    stations_for: dict[int, list[Station]] = field(default_factory=dict)


def _truck_class(t: Truck, start: Start) -> tuple[Any, ...]:
    return (
        start.key,
        start.earliest_s,
        start.load_kg,
        t.end_depot_id,
        t.shift_start_s,
        t.shift_end_s,
        t.route_duration_limit_s,
        t.break_duration_s,
        t.break_earliest_s,
        t.break_latest_s,
        t.can_enter_narrow,
        frozenset(t.streams),
    )


def screen(
    problem: Problem,
    starts: dict[str, Start] | None = None,
    breaks_done: frozenset[str] = frozenset(),
) -> _Screen:
    """Which trucks could serve each point on a dedicated trip, and why not if none."""
    starts = starts or {}
    out = _Screen()
    trucks = list(problem.trucks)
    start_of = [starts.get(t.truck_id) or default_start(t) for t in trucks]
    for ti, t in enumerate(trucks):
        out.stations_for[ti] = _usable_stations(problem, t, start_of[ti])
    # Time feasibility is the same for trucks of one class: test one per class.
    for p in problem.points:
        by_stream = [ti for ti, t in enumerate(trucks) if p.stream in t.streams]
        if problem.stations:
            # A station must accept the stream (whether it can be reached in time is
            # a matter of hours and shift, decided below).
            by_stream = [
                ti
                for ti in by_stream
                if any(p.stream in s.streams for s in problem.stations_for(trucks[ti]))
            ]
        if not by_stream:
            out.unassigned.append(Unassigned(point_id=p.point_id, reason="stream"))
            continue
        by_access = [
            ti for ti in by_stream if p.access_class != "narrow" or trucks[ti].can_enter_narrow
        ]
        if not by_access:
            out.unassigned.append(Unassigned(point_id=p.point_id, reason="access"))
            continue
        by_capacity = [
            ti
            for ti in by_access
            if p.amount_kg <= min(trucks[ti].capacity_kg, trucks[ti].day_load_limit_kg) + 1e-9
        ]
        if not by_capacity:
            out.unassigned.append(Unassigned(point_id=p.point_id, reason="capacity"))
            continue
        ok: list[int] = []
        reasons: Counter[str] = Counter()
        tested: dict[tuple[Any, ...], str | None] = {}
        for ti in by_capacity:
            bd = trucks[ti].truck_id in breaks_done
            key = (*_truck_class(trucks[ti], start_of[ti]), bd)
            if key not in tested:
                tested[key] = _single_visit_reason(
                    problem, trucks[ti], p, out.stations_for[ti], start_of[ti], bd
                )
            reason = tested[key]
            if reason is None:
                ok.append(ti)
            else:
                reasons[reason] += 1
        if ok:
            out.eligible[p.point_id] = ok
        else:
            out.unassigned.append(
                Unassigned(point_id=p.point_id, reason=_pick_reason(reasons))  # type: ignore[arg-type]
            )
    return out


_REASON_ORDER: Final = ("unreachable", "station_hours", "time_window", "shift", "capacity")


def _pick_reason(reasons: Counter[str]) -> str:
    if not reasons:
        return "no_truck"
    top = max(reasons.values())
    for r in _REASON_ORDER:
        if reasons.get(r) == top:
            return r
    return reasons.most_common(1)[0][0]


def _usable_stations(problem: Problem, truck: Truck, start: Start) -> list[Station]:
    """Stations the truck may unload at and can reach within hours and shift."""
    matrix = problem.matrix_for(truck)
    out = []
    end = depot_key(truck.end_depot_id)
    for s in problem.stations_for(truck):
        sk = station_key(s.station_id)
        to_s = matrix.duration(start.key, sk)
        back = matrix.duration(sk, end)
        if not (math.isfinite(to_s) and math.isfinite(back)):
            continue
        arrive = max(start.earliest_s + to_s, s.opens_s)
        if arrive + s.tipping_time_s > s.closes_s + 1e-6:
            continue
        if arrive + s.tipping_time_s + back > truck.shift_end_s + 1e-6:
            continue
        out.append(s)
    return out


def _single_visit_reason(
    problem: Problem,
    truck: Truck,
    p: Point,
    stations: Sequence[Station],
    start: Start,
    break_done: bool,
) -> str | None:
    """None if the truck can serve ``p`` alone (then unload and go home)."""
    visits = [*_unload_first(problem, truck, p, start), Visit("point", p.point_id)]
    if not problem.stations:
        sched = schedule_route(problem, truck, visits, start=start, break_done=break_done)
        return None if sched.feasible else (sched.reason or "shift")
    matrix = problem.matrix_for(truck)
    pk = point_key(p.point_id)
    end = depot_key(truck.end_depot_id)
    usable = [s for s in stations if p.stream in s.streams]
    if not usable:  # every station that takes the stream is out of reach in time
        usable = [s for s in problem.stations_for(truck) if p.stream in s.streams]
    candidates = sorted(
        usable,
        key=lambda s: (
            matrix.distance(pk, station_key(s.station_id))
            + matrix.distance(station_key(s.station_id), end)
        ),
    )
    reasons: Counter[str] = Counter()
    for s in candidates[:4]:
        sched = schedule_route(
            problem,
            truck,
            [*visits, Visit("station", s.station_id)],
            start=start,
            break_done=break_done,
        )
        if sched.feasible:
            return None
        reasons[sched.reason or "shift"] += 1
    return _pick_reason(reasons)


def _unload_first(problem: Problem, truck: Truck, p: Point, start: Start | None) -> list[Visit]:
    """The unload a truck that starts the day's remainder too full for ``p`` makes
    first (at the station nearest to where it is), or nothing."""
    if (
        start is None
        or not problem.stations
        or start.load_kg + p.amount_kg <= truck.capacity_kg + 1e-9
    ):
        return []
    matrix = problem.matrix_for(truck)
    options = problem.stations_for(truck) or list(problem.stations)
    nearest = min(options, key=lambda s: matrix.duration(start.key, station_key(s.station_id)))
    return [Visit("station", nearest.station_id)]


# --------------------------------------------------------------------------- the model


@dataclass(slots=True)
class _Node:
    kind: str  # depot | point | unload | final
    loc: int  # row in the problem matrix
    ref_id: str
    truck: int = -1  # unload/final: owning vehicle
    station: Station | None = None
    point: Point | None = None


class _Model:
    """Builds and solves the OR-Tools model for the screened points."""

    def __init__(
        self,
        problem: Problem,
        screen_result: _Screen,
        options: SolverOptions,
        starts: dict[str, Start],
    ) -> None:
        self.problem = problem
        self.options = options
        self.starts = starts
        self.station_mode = bool(problem.stations)
        trucks = list(problem.trucks)
        eligible = screen_result.eligible
        usable = {
            ti
            for tis in eligible.values()
            for ti in tis
            if not self.station_mode or screen_result.stations_for[ti]
        }
        self.vehicle_trucks: list[int] = sorted(usable)
        self.trucks = [trucks[ti] for ti in self.vehicle_trucks]
        self.start_of = [starts.get(t.truck_id) or default_start(t) for t in self.trucks]
        vehicle_of_truck = {ti: v for v, ti in enumerate(self.vehicle_trucks)}
        self.points = [p for p in problem.points if p.point_id in eligible]
        self.allowed = [
            sorted(vehicle_of_truck[ti] for ti in eligible[p.point_id] if ti in vehicle_of_truck)
            for p in self.points
        ]
        self.stations_for = [screen_result.stations_for[ti] for ti in self.vehicle_trucks]
        self._layout()
        if self.trucks and self.points:
            self._scales()

    def _scales(self) -> None:
        horizon_s = max(
            [t.shift_end_s for t in self.trucks]
            + [s.closes_s for s in self.problem.stations]
            + [p.window_end_s for p in self.points]
        )
        self.horizon = math.ceil(horizon_s * TIME_SCALE) + 1
        finite = [
            m.distance_m[np.isfinite(m.distance_m)]
            for m in (self.problem.matrix, self.problem.matrix_no_narrow)
            if m is not None
        ]
        max_arc = max(float(f.max()) if f.size else 1.0 for f in finite) * DIST_SCALE
        self.max_arc = max(1.0, max_arc)
        self.big_cost = int(self.max_arc * 4 + 1)

    # ----------------------------------------------------------------- layout
    def _layout(self) -> None:
        mx = self.problem.matrix
        nodes: list[_Node] = []
        depot_node: dict[str, int] = {}
        for v, t in enumerate(self.trucks):
            for key in (self.start_of[v].key, depot_key(t.end_depot_id)):
                if key not in depot_node:
                    depot_node[key] = len(nodes)
                    nodes.append(_Node("depot", mx.index[key], key))
        self.depot_node = depot_node
        self.point_node0 = len(nodes)
        for p in self.points:
            nodes.append(_Node("point", mx.index[point_key(p.point_id)], p.point_id, point=p))
        # Each truck unloads at one station (see _assign_stations): a few mandatory
        # unload slots there and the final unload. A slot not needed waits "parked"
        # after the final unload, at no cost and taking no time; using it is one
        # relocate move (OR-Tools' local search does not swap between the nodes of a
        # disjunction, so a slot is never a choice among stations).
        self.unload_station = self._assign_stations() if self.station_mode else []
        self.unload_nodes: list[list[int]] = [[] for _ in self.trucks]
        self.final_nodes: list[list[int]] = [[] for _ in self.trucks]
        if self.station_mode:
            for v, t in enumerate(self.trucks):
                st = self.unload_station[v]
                loc = mx.index[station_key(st.station_id)]
                for _ in range(self._unload_copies(v, t)):
                    self.unload_nodes[v].append(len(nodes))
                    nodes.append(_Node("unload", loc, st.station_id, truck=v, station=st))
                self.final_nodes[v].append(len(nodes))
                nodes.append(_Node("final", loc, st.station_id, truck=v, station=st))
        self.nodes = nodes

    def _assign_stations(self) -> list[Station]:
        """The station each truck unloads at: trucks with the same choice of stations
        are shared out among them in proportion to the amount of waste (of points
        they may serve) lying nearest to each."""
        mx = self.problem.matrix
        out: list[Station | None] = [None] * len(self.trucks)
        groups: dict[tuple[str, ...], list[int]] = {}
        for v in range(len(self.trucks)):
            key = tuple(s.station_id for s in self.stations_for[v])
            groups.setdefault(key, []).append(v)
        for key, vs in groups.items():
            stations = [self.problem.station(sid) for sid in key]
            if len(stations) == 1:
                for v in vs:
                    out[v] = stations[0]
                continue
            share: dict[str, float] = defaultdict(float)
            for p, allowed in zip(self.points, self.allowed, strict=True):
                if not any(v in allowed for v in vs):
                    continue
                pk = point_key(p.point_id)
                ok = [s for s in stations if p.stream in s.streams] or stations
                near = min(ok, key=lambda s: mx.distance(pk, station_key(s.station_id)))
                share[near.station_id] += max(p.amount_kg, 1e-9)
            total = sum(share.values()) or 1.0
            quota = {sid: len(vs) * share[sid] / total for sid in key}
            counts = {sid: math.floor(q) for sid, q in quota.items()}
            rest = len(vs) - sum(counts.values())
            for sid in sorted(key, key=lambda x: quota[x] - counts[x], reverse=True)[:rest]:
                counts[sid] += 1
            if not any(counts.values()):
                counts[max(key, key=lambda x: share[x])] = len(vs)
            order = [
                sid for sid in sorted(key, key=lambda x: -share[x]) for _ in range(counts[sid])
            ]
            for v, sid in zip(vs, order, strict=False):
                out[v] = self.problem.station(sid)
        return [s if s is not None else self.stations_for[v][0] for v, s in enumerate(out)]

    def _unload_copies(self, v: int, t: Truck) -> int:
        if self.options.unload_copies is not None:
            return self.options.unload_copies
        amount = sum(
            p.amount_kg
            for p, allowed in zip(self.points, self.allowed, strict=True)
            if v in allowed
        )
        amount = min(amount, t.day_load_limit_kg) + self.start_of[v].load_kg
        trips_alone = math.ceil(amount / t.capacity_kg - 1e-9)
        total = sum(p.amount_kg for p in self.points)
        fleet = sum(x.capacity_kg for x in self.trucks)
        trips_share = math.ceil(2.0 * total / fleet) + 2
        return int(max(1, min(trips_alone, trips_share, 40)))

    # ----------------------------------------------------------------- matrices
    def _cost_and_time(self, narrow_ok: bool) -> tuple[list[list[int]], list[list[int]]]:
        """Arc costs (dm) and transit times (ds, service of the tail included) for the
        trucks of one profile."""
        problem = self.problem
        matrix = problem.matrix if narrow_ok else (problem.matrix_no_narrow or problem.matrix)
        loc = np.array([nd.loc for nd in self.nodes], dtype=np.int64)
        dist = np.asarray(matrix.distance_m)[np.ix_(loc, loc)]
        dur = np.asarray(matrix.duration_s)[np.ix_(loc, loc)]
        unreachable = ~(np.isfinite(dist) & np.isfinite(dur))
        cost = np.where(
            unreachable, self.big_cost, np.rint(np.where(unreachable, 0.0, dist) * DIST_SCALE)
        )
        travel = np.where(
            unreachable,
            self.horizon + 1,
            np.ceil(np.where(unreachable, 0.0, dur) * TIME_SCALE - 1e-6),
        )
        service = np.array([self._service_ds(nd) for nd in self.nodes], dtype=np.float64)
        timem = travel + service[:, None]
        if self.station_mode:
            # Tipping is on the arc from a point into an unload: an unload reached
            # empty (from the start or another unload) takes no time, so spare unload
            # copies can wait, chained, at no cost at all.
            is_point = np.array([nd.kind == "point" for nd in self.nodes])
            tip = np.array(
                [
                    self._tipping_ds(nd) if nd.kind in ("unload", "final") else 0
                    for nd in self.nodes
                ],
                dtype=np.float64,
            )
            timem += np.outer(is_point, tip)
            for v, t in enumerate(self.trucks):
                start_node = self.depot_node[self.start_of[v].key]
                home = matrix.index[depot_key(t.end_depot_id)]
                for f in self.final_nodes[v]:
                    nd = self.nodes[f]
                    back_m = float(matrix.distance_m[nd.loc, home])
                    back_s = float(matrix.duration_s[nd.loc, home])
                    if not (math.isfinite(back_m) and math.isfinite(back_s)):
                        back_m, back_s = self.big_cost / DIST_SCALE, self.horizon / TIME_SCALE
                    # Into the final unload: also the drive home from it.
                    cost[:, f] = np.minimum(cost[:, f] + round(back_m * DIST_SCALE), self.big_cost)
                    # Out of it: only home (already paid for) or into parked unload
                    # slots, which cost nothing and take no time.
                    cost[f, :] = 0
                    timem[f, :] = math.ceil(back_s * TIME_SCALE - 1e-6)
                    # An unused truck goes start -> final unload -> end: free, instant.
                    cost[start_node, f] = 0
                    timem[start_node, f] = 0
            # From a parked unload slot home: free (the drive home is on the arc into
            # the final unload). Only parked slots can reach the end (see "phase").
            depot_nodes = list(self.depot_node.values())
            for v in range(len(self.trucks) if self.options.unload_model == "parked" else 0):
                for u in self.unload_nodes[v]:
                    cost[u, depot_nodes] = 0
                    timem[u, depot_nodes] = 0
        np.fill_diagonal(cost, 0)
        np.fill_diagonal(timem, 0)
        return cost.astype(np.int64).tolist(), timem.astype(np.int64).tolist()

    def _service_ds(self, nd: _Node) -> int:
        """Service time at the node itself (unloads: none, tipping is on the arc)."""
        if nd.kind == "point":
            assert nd.point is not None
            return math.ceil(nd.point.service_time_s * TIME_SCALE - 1e-6)
        return 0

    def _tipping_ds(self, nd: _Node) -> int:
        assert nd.station is not None
        return math.ceil(nd.station.tipping_time_s * TIME_SCALE - 1e-6)

    # ----------------------------------------------------------------- build
    def build(self) -> None:
        problem, _opts = self.problem, self.options
        n_vehicles = len(self.trucks)
        starts = [self.depot_node[self.start_of[v].key] for v in range(n_vehicles)]
        ends = [self.depot_node[depot_key(t.end_depot_id)] for t in self.trucks]
        self.manager = pywrapcp.RoutingIndexManager(len(self.nodes), n_vehicles, starts, ends)
        self.routing = pywrapcp.RoutingModel(self.manager)
        routing, manager = self.routing, self.manager

        # Arc costs and travel times, per profile (may enter narrow lanes or not).
        self.time_np: dict[bool, np.ndarray] = {}
        self.profile: list[bool] = []
        cost_cb: dict[bool, int] = {}
        time_cb: dict[bool, int] = {}
        time_cbs: list[int] = []
        for v, t in enumerate(self.trucks):
            prof = t.can_enter_narrow or problem.matrix_no_narrow is None
            if prof not in cost_cb:
                cost, timem = self._cost_and_time(prof)
                cost_cb[prof] = routing.RegisterTransitMatrix(cost)
                time_cb[prof] = routing.RegisterTransitMatrix(timem)
                self.time_np[prof] = np.array(timem, dtype=np.int64)
            self.profile.append(prof)
            routing.SetArcCostEvaluatorOfVehicle(cost_cb[prof], v)
            time_cbs.append(time_cb[prof])

        # Time.
        routing.AddDimensionWithVehicleTransits(time_cbs, self.horizon, self.horizon, False, "time")
        time_dim = routing.GetDimensionOrDie("time")
        self.time_dim = time_dim
        self.break_shift = self._break_shift()
        d_break = self.break_shift[1] if self.break_shift else 0
        self.span_limit: list[int] = []
        for v, t in enumerate(self.trucks):
            st = self.start_of[v]
            lo = math.ceil(st.earliest_s * TIME_SCALE - 1e-6)
            hi = self.horizon if st.fixed_time else int(t.shift_end_s * TIME_SCALE)
            time_dim.CumulVar(routing.Start(v)).SetRange(lo, max(lo, hi))
            if st.fixed_time:
                time_dim.CumulVar(routing.Start(v)).SetValue(lo)
            if not self._set_window(routing.End(v), lo, int(t.shift_end_s * TIME_SCALE)):
                time_dim.CumulVar(routing.End(v)).SetRange(lo, lo)
            limit = t.route_duration_limit_s
            self.span_limit.append(
                max(0, int(limit * TIME_SCALE) - d_break) if math.isfinite(limit) else 1 << 60
            )
            if math.isfinite(limit):
                time_dim.SetSpanUpperBoundForVehicle(self.span_limit[v], v)
        for i, nd in enumerate(self.nodes):
            if nd.kind == "depot":
                continue
            index = manager.NodeToIndex(i)
            if nd.kind == "point":
                assert nd.point is not None
                lo = math.ceil(nd.point.window_start_s * TIME_SCALE - 1e-6)
                hi = math.floor(nd.point.window_end_s * TIME_SCALE + 1e-6)
            else:
                # The cumul of an unload is when tipping ends.
                assert nd.station is not None
                lo = math.ceil((nd.station.opens_s + nd.station.tipping_time_s) * TIME_SCALE - 1e-6)
                hi = math.floor(nd.station.closes_s * TIME_SCALE + 1e-6)
            if not self._set_window(index, lo, max(lo, hi)):
                if nd.kind == "point":
                    routing.VehicleVar(index).SetValue(-1)  # never servable in time
                else:
                    time_dim.CumulVar(index).SetRange(lo, max(lo, hi))
        if self.break_shift is None:
            self._add_breaks()

        # Loads.
        self._add_loads()

        # Which trucks may visit what; unserved points cost a big penalty.
        # (SetAllowedVehiclesForIndex's Python binding rejects every argument type in
        # OR-Tools 9.15, so the vehicle variables' domains are restricted instead.)
        penalty = self.point_penalty
        for k in range(len(self.points)):
            index = manager.NodeToIndex(self.point_node0 + k)
            routing.AddDisjunction([index], penalty)
            if len(self.allowed[k]) < n_vehicles:
                routing.VehicleVar(index).SetValues([-1, *self.allowed[k]])
            if self.station_mode:
                routing.NextVar(index).RemoveValues([routing.End(v) for v in range(n_vehicles)])
        if self.station_mode and self.options.unload_model == "parked":
            for v in range(n_vehicles):
                unload_idx = [manager.NodeToIndex(u) for u in self.unload_nodes[v]]
                for index in unload_idx:  # mandatory: used or parked
                    routing.VehicleVar(index).SetValues([v])
                for f in self.final_nodes[v]:
                    index = manager.NodeToIndex(f)
                    routing.VehicleVar(index).SetValues([v])
                    routing.NextVar(index).SetValues([routing.End(v), *unload_idx])
            # Phase: 0 before the final unload, 1 after it; points only in phase 0, so
            # only (parked) unload slots follow the final unload.
            phase = [1 if nd.kind == "final" else 0 for nd in self.nodes]
            routing.AddDimension(routing.RegisterUnaryTransitVector(phase), 0, 1, True, "phase")
            phase_dim = routing.GetDimensionOrDie("phase")
            for k in range(len(self.points)):
                phase_dim.CumulVar(manager.NodeToIndex(self.point_node0 + k)).SetMax(0)
        elif self.station_mode:
            ends = [routing.End(v) for v in range(n_vehicles)]
            for v in range(n_vehicles):
                for u in self.unload_nodes[v]:  # optional: active when used
                    index = manager.NodeToIndex(u)
                    routing.AddDisjunction([index], 0)
                    routing.VehicleVar(index).SetValues([-1, v])
                    routing.NextVar(index).RemoveValues(ends)
                for f in self.final_nodes[v]:
                    index = manager.NodeToIndex(f)
                    routing.VehicleVar(index).SetValues([v])
                    routing.NextVar(index).SetValues([routing.End(v)])

    def _break_shift(self) -> tuple[int, int] | None:
        """(start, duration) in ds when every truck takes the same lunch break and the
        model may fold it into time; None to use OR-Tools break intervals.

        Folding: the break is taken at its earliest start, wherever the truck is (right
        after the service in progress, if any), so model time runs ``duration`` behind
        real time from then on; each window [a, b] becomes, in model time,
        [a, min(b, e)) ∪ [max(a - d, e), b - d]. It is conservative (waiting cannot
        absorb the break in the model); the final schedule places the break exactly.
        """
        if self.options.break_model != "shift":
            return None
        keys = {
            (t.break_duration_s, t.break_earliest_s)
            for t in self.trucks
            if t.truck_id not in self.options.breaks_done
        }
        if any(t.truck_id in self.options.breaks_done for t in self.trucks):
            keys.add((0.0, 0.0))
        if len(keys) != 1:
            return None
        duration, earliest = keys.pop()
        if duration <= 0:
            return None
        return (
            math.ceil(earliest * TIME_SCALE - 1e-6),
            math.ceil(duration * TIME_SCALE - 1e-6),
        )

    def _set_window(self, index: int, lo: int, hi: int) -> bool:
        """Restrict the time cumul of ``index`` to the real window [lo, hi] (ds), in
        model time; False if no model time fits."""
        cumul = self.time_dim.CumulVar(index)
        if self.break_shift is None:
            if hi < lo:
                return False
            cumul.SetRange(lo, hi)
            return True
        e, d = self.break_shift
        parts = []
        if lo <= min(hi, e - 1):
            parts.append((lo, min(hi, e - 1)))
        if max(lo - d, e) <= hi - d:
            parts.append((max(lo - d, e), hi - d))
        if not parts:
            return False
        cumul.SetRange(parts[0][0], parts[-1][1])
        if len(parts) == 2 and parts[1][0] > parts[0][1] + 1:
            cumul.RemoveInterval(parts[0][1] + 1, parts[1][0] - 1)
        return True

    def _add_breaks(self) -> None:
        routing, manager = self.routing, self.manager
        node_visit = [0] * routing.Size()
        for index in range(routing.Size()):
            if routing.IsStart(index) or routing.IsEnd(index):
                continue
            node_visit[index] = self._service_ds(self.nodes[manager.IndexToNode(index)])
        solver = routing.solver()
        self.breaks: dict[int, Any] = {}
        for v, t in enumerate(self.trucks):
            if t.break_duration_s <= 0 or t.truck_id in self.options.breaks_done:
                continue
            interval = solver.FixedDurationIntervalVar(
                math.ceil(t.break_earliest_s * TIME_SCALE - 1e-6),
                int(t.break_latest_s * TIME_SCALE),
                math.ceil(t.break_duration_s * TIME_SCALE - 1e-6),
                False,
                f"break {t.truck_id}",
            )
            self.time_dim.SetBreakIntervalsOfVehicle([interval], v, node_visit)
            self.breaks[v] = interval

    def _add_loads(self) -> None:
        """Load in grams with one transit callback for all trucks (per-truck transit
        callbacks break OR-Tools' handling of nodes made inactive) and per-truck
        capacities; an unload subtracts the largest capacity and its slack brings the
        load back to zero."""
        routing, manager = self.routing, self.manager
        n_vehicles = len(self.trucks)
        amounts = [p.amount_kg for p in self.points]
        min_amount = min((a for a in amounts if a > 0), default=1.0)
        cap_units = [round(t.capacity_kg * LOAD_SCALE) for t in self.trucks]
        soft = self.station_mode and self.options.soft_capacity
        hard_units = [2 * c if soft else c for c in cap_units]
        reset = max(hard_units)
        # Penalty per gram of overload (soft mode): overloading by the smallest amount
        # costs more than several of the longest arcs.
        self.overload_coeff = max(
            1, math.ceil(4 * self.max_arc / max(1, round(min_amount * LOAD_SCALE)))
        )
        max_units = round(max(amounts, default=1.0) * LOAD_SCALE)
        self.point_penalty = int(
            min(2**50, 10 * self.max_arc + (2 * self.overload_coeff * max_units if soft else 0) + 1)
        )
        vec = []
        for nd in self.nodes:
            if nd.kind == "point":
                assert nd.point is not None
                vec.append(round(nd.point.amount_kg * LOAD_SCALE))
            elif nd.kind in ("unload", "final"):
                vec.append(-reset)
            else:
                vec.append(0)
        cb = routing.RegisterUnaryTransitVector(vec)
        routing.AddDimensionWithVehicleCapacity(
            cb, reset if self.station_mode else 0, hard_units, False, "load"
        )
        load = routing.GetDimensionOrDie("load")
        for v in range(n_vehicles):
            initial = min(round(self.start_of[v].load_kg * LOAD_SCALE), hard_units[v])
            load.CumulVar(routing.Start(v)).SetValue(initial)
            if self.station_mode:
                load.SlackVar(routing.Start(v)).SetValue(0)
        if self.station_mode:
            for i, nd in enumerate(self.nodes):
                if nd.kind == "depot":
                    continue
                index = manager.NodeToIndex(i)
                if nd.kind == "point":
                    load.SlackVar(index).SetValue(0)
                elif soft:
                    load.SetCumulVarSoftUpperBound(index, cap_units[nd.truck], self.overload_coeff)
                else:
                    load.CumulVar(index).SetMax(cap_units[nd.truck])
        # The day's total, where trucks have a cap (hard, never resets).
        if any(t.max_day_load_kg is not None for t in self.trucks):
            vec = [
                round(nd.point.amount_kg * LOAD_SCALE) if nd.point is not None else 0
                for nd in self.nodes
            ]
            cb = routing.RegisterUnaryTransitVector(vec)
            day_caps = [
                round(t.day_load_limit_kg * LOAD_SCALE) if t.max_day_load_kg is not None else 2**50
                for t in self.trucks
            ]
            routing.AddDimensionWithVehicleCapacity(cb, 0, day_caps, False, "day_load")
            day = routing.GetDimensionOrDie("day_load")
            for v in range(n_vehicles):
                already = round(self.start_of[v].day_load_kg * LOAD_SCALE)
                day.CumulVar(routing.Start(v)).SetValue(min(already, day_caps[v]))

    # ----------------------------------------------------------------- search
    def parameters(self, time_limit_s: float) -> Any:
        opts = self.options
        p = pywrapcp.DefaultRoutingSearchParameters()
        p.time_limit.FromMilliseconds(max(1, int(time_limit_s * 1000)))
        if opts.solution_limit is not None:
            p.solution_limit = opts.solution_limit
        p.log_search = opts.log_search
        if opts.first_solution:
            p.first_solution_strategy = getattr(FSS, opts.first_solution)
        elif self.station_mode:
            p.first_solution_strategy = FSS.LOCAL_CHEAPEST_INSERTION
        elif self._has_tight_windows():
            p.first_solution_strategy = FSS.PARALLEL_CHEAPEST_INSERTION
        else:
            p.first_solution_strategy = FSS.SAVINGS
        for name in opts.operators_off:
            if self.station_mode and name in _STATION_MODE_KEEP:
                continue
            setattr(p.local_search_operators, name, 2)  # BOOL_FALSE
        for name in opts.operators_on:
            setattr(p.local_search_operators, name, 3)  # BOOL_TRUE
        if opts.metaheuristic == "gls":
            p.local_search_metaheuristic = LSM.GUIDED_LOCAL_SEARCH
        elif opts.metaheuristic == "greedy":
            p.local_search_metaheuristic = LSM.GREEDY_DESCENT
        else:
            _ils(p, opts)
        return p

    def _has_tight_windows(self) -> bool:
        shift_start = min(t.shift_start_s for t in self.trucks)
        shift_end = max(t.shift_end_s for t in self.trucks)
        return any(
            p.window_start_s > shift_start or p.window_end_s < shift_end for p in self.points
        )

    def _hint_routes(
        self, visits_by_truck: dict[str, list[Visit]]
    ) -> list[tuple[list[int], list[int]]]:
        """Per vehicle, (body, tail) node lists for the routes ``visits_by_truck``:
        points and used unload slots in order, then the final unload and parked slots."""
        point_node = {p.point_id: self.point_node0 + k for k, p in enumerate(self.points)}
        vehicle = {t.truck_id: v for v, t in enumerate(self.trucks)}
        out: list[tuple[list[int], list[int]]] = []
        used: set[int] = set()
        per_vehicle: dict[int, list[Visit]] = {}
        for truck_id, visits in visits_by_truck.items():
            v = vehicle.get(truck_id)
            if v is not None:
                per_vehicle[v] = visits
        for v in range(len(self.trucks)):
            visits = per_vehicle.get(v, [])
            body: list[int] = []
            slots = list(self.unload_nodes[v])
            stations = [i for i, x in enumerate(visits) if x.kind == "station"]
            last_station = stations[-1] if stations else -1
            for i, x in enumerate(visits):
                if x.kind == "point":
                    node = point_node.get(x.ref_id)
                    if node is None or node in used:
                        continue
                    if v not in self.allowed[node - self.point_node0]:
                        continue
                    body.append(node)
                    used.add(node)
                elif self.station_mode and i != last_station and slots:
                    body.append(slots.pop(0))
            tail: list[int] = []
            if self.station_mode:
                tail.append(self.final_nodes[v][0])
                if self.options.unload_model == "parked":
                    tail.extend(slots)
            out.append((body, tail))
        return out

    def _fits(self, v: int, seq: list[int]) -> bool:
        """Whether truck ``v`` can drive ``seq`` (model nodes) in the model's own terms
        (folded break, rounded times, loads in grams): a hint that fits is followed by
        the first-solution heuristic without any search."""
        routing, manager = self.routing, self.manager
        time_dim = self.time_dim
        tm = self.time_np[self.profile[v]]
        load_cap = round(self.trucks[v].capacity_kg * LOAD_SCALE)
        day_cap = self.trucks[v].day_load_limit_kg * LOAD_SCALE
        start_index = routing.Start(v)
        start_node = manager.IndexToNode(start_index)
        end_index = routing.End(v)
        span = self.span_limit[v]

        def run(depart: int) -> tuple[bool, int, int]:
            t = depart
            prev = start_node
            load = round(self.start_of[v].load_kg * LOAD_SCALE)
            day = round(self.start_of[v].day_load_kg * LOAD_SCALE)
            slack = 1 << 60
            for node in [*seq, -1]:
                index = end_index if node < 0 else manager.NodeToIndex(node)
                arrive = t + int(tm[prev, manager.IndexToNode(index)])
                cumul = time_dim.CumulVar(index)
                t = max(arrive, cumul.Min())
                if t > cumul.Max():
                    return False, 0, 0
                slack = min(slack, cumul.Max() - t)
                if node >= 0:
                    nd = self.nodes[node]
                    if nd.kind == "point":
                        assert nd.point is not None
                        amount = round(nd.point.amount_kg * LOAD_SCALE)
                        load += amount
                        day += amount
                        if load > load_cap or day > day_cap:
                            return False, 0, 0
                    elif nd.kind in ("unload", "final"):
                        load = 0
                    prev = node
                else:
                    prev = manager.IndexToNode(index)
            return t - depart <= span, t - depart, slack

        depart = time_dim.CumulVar(start_index).Min()
        ok, length, slack = run(depart)
        if ok:
            return True
        if length and slack > 0:  # too long: leave later, if the windows allow
            return run(depart + slack)[0]
        return False

    def hint_successors(self, visits_by_truck: dict[str, list[Visit]]) -> dict[int, int]:
        """Successor (routing index) of each index along the routes ``visits_by_truck``
        mapped onto this model, without the points that do not fit in the model's
        terms: the first-solution heuristic then follows it without search."""
        routing, manager = self.routing, self.manager
        routes = self._hint_routes(visits_by_truck)
        accepted: list[list[int]] = [tail for _, tail in routes]
        for v, (body, tail) in enumerate(routes):
            if not body:
                continue
            if self._fits(v, body + tail):
                accepted[v] = body + tail
                continue
            kept: list[int] = []
            for node in body:
                if self._fits(v, [*kept, node, *tail]):
                    kept.append(node)
            accepted[v] = kept + tail
        nxt: dict[int, int] = {}
        for v, seq in enumerate(accepted):
            chain = [routing.Start(v), *(manager.NodeToIndex(n) for n in seq), routing.End(v)]
            for x, y in itertools.pairwise(chain):
                nxt[x] = y
        return nxt

    def solve(
        self, time_limit_s: float, hint_visits: dict[str, list[Visit]] | None = None
    ) -> tuple[list[list[int]], str]:
        t0 = time.monotonic()
        params = self.parameters(time_limit_s)
        if hint_visits:
            # Build the first solution along the hinted arcs (OR-Tools' iterated local
            # search takes no initial assignment, but follows this evaluator); where a
            # hinted arc does not fit, the cheapest one that does. The evaluator must
            # exist before the model is closed; the hint is filled in afterwards.
            hint: dict[int, int] = {}
            offset = self.big_cost
            arc_cost = self.routing.GetArcCostForVehicle

            def follow_hint(i: int, j: int) -> int:
                if hint.get(i) == j:
                    return 0
                return offset + int(arc_cost(i, j, 0))

            self._hint_evaluator = follow_hint  # keep it alive during the search
            self.routing.SetFirstSolutionEvaluator(follow_hint)
            params.first_solution_strategy = FSS.EVALUATOR_STRATEGY
            hint.update(self.hint_successors(hint_visits))
            params.time_limit.FromMilliseconds(
                max(100, int((time_limit_s - (time.monotonic() - t0)) * 1000))
            )
        if self.options.metaheuristic == "ils":
            solution = self.routing.SolveWithIteratedLocalSearch(params)
        else:
            solution = self.routing.SolveWithParameters(params)
        status = _STATUS.get(self.routing.status(), str(self.routing.status()))
        self.solution = solution
        if solution is None:
            return [[] for _ in self.trucks], status
        if status == "not_solved":
            status = "success"  # the ILS entry point does not set the status
        routes: list[list[int]] = []
        for v in range(len(self.trucks)):
            index = self.routing.Start(v)
            seq: list[int] = []
            index = solution.Value(self.routing.NextVar(index))
            while not self.routing.IsEnd(index):
                seq.append(self.manager.IndexToNode(index))
                index = solution.Value(self.routing.NextVar(index))
            routes.append(seq)
        return routes, status


def _ils(p: Any, opts: SolverOptions) -> None:
    """Iterated local search: SISR ruins, cheapest-insertion recreate, simulated
    annealing acceptance with automatic temperatures."""
    p.use_iterated_local_search = True
    ils = p.iterated_local_search_parameters
    rr = ils.ruin_recreate_parameters
    del rr.ruin_strategies[:]
    ruin = rr.ruin_strategies.add()
    ruin.sisr.max_removed_sequence_size = opts.sisr_max_sequence
    ruin.sisr.avg_num_removed_visits = opts.sisr_avg_removed
    ruin.sisr.bypass_factor = 0.01
    rr.recreate_strategy.heuristic = FSS.LOCAL_CHEAPEST_INSERTION
    sa = ils.reference_solution_acceptance_strategy.simulated_annealing
    sa.automatic_temperatures = True
    ils.improve_perturbed_solution = True


_STATUS: Final = {
    0: "not_solved",
    1: "success",
    2: "partial_success_local_optimum_not_reached",
    3: "fail",
    4: "fail_timeout",
    5: "invalid",
    6: "infeasible",
    7: "optimal",
}


# --------------------------------------------------------------------------- solve


def solve(
    problem: Problem,
    *,
    time_limit_s: float,
    seed: int = 0,
    options: SolverOptions | None = None,
) -> Plan:
    """Plan the day. Never returns OR-Tools objects; unassigned points carry their
    reason. Large districts (more than ``options.max_points_per_solve`` points) are
    decomposed and solved in parallel (see :mod:`routing.decompose`)."""
    if not isinstance(problem, Problem):
        raise ValueError(f"problem: expected a routing.problem.Problem, got {type(problem)}")
    if not (isinstance(time_limit_s, int | float) and time_limit_s > 0):
        raise ValueError(f"time_limit_s: must be a positive number of seconds, got {time_limit_s}")
    options = options or SolverOptions()
    if len(problem.points) > options.max_points_per_solve and len(problem.trucks) > 1:
        from routing import decompose

        return decompose.solve_decomposed(
            problem, time_limit_s=time_limit_s, seed=seed, options=options
        )
    return solve_direct(problem, time_limit_s=time_limit_s, seed=seed, options=options)


def solve_direct(
    problem: Problem,
    *,
    time_limit_s: float,
    seed: int = 0,
    options: SolverOptions | None = None,
) -> Plan:
    """One OR-Tools solve of the whole problem (no decomposition)."""
    t0 = time.monotonic()
    options = options or SolverOptions()
    starts = dict(options.starts)
    screened = screen(problem, starts, options.breaks_done)
    model = _Model(_shuffled(problem, seed) if seed else problem, screened, options, starts)
    status = "empty"
    sequences: list[list[int]] = [[] for _ in model.trucks]
    if model.points and model.trucks:
        hint_visits: dict[str, list[Visit]] | None = None
        if model.station_mode and options.construction == "trips":
            budget = (time_limit_s - (time.monotonic() - t0)) * options.construction_share
            hint_visits = construct_trips(model, budget)
        model.build()
        remaining = time_limit_s - (time.monotonic() - t0)
        sequences, status = model.solve(max(0.5, remaining * 0.97), hint_visits=hint_visits)
    visits_by_truck: dict[str, list[Visit]] = {}
    for v, seq in enumerate(sequences):
        visits = []
        for node in seq:
            nd = model.nodes[node]
            if nd.kind == "point":
                visits.append(Visit("point", nd.ref_id))
            elif nd.kind in ("unload", "final"):
                visits.append(Visit("station", nd.ref_id))
        if any(vi.kind == "point" for vi in visits):
            visits_by_truck[model.trucks[v].truck_id] = visits
    plan_routes, unassigned = finish_plan(
        problem,
        visits_by_truck,
        screened.unassigned,
        starts=starts,
        breaks_done=options.breaks_done,
        repair=options.repair,
        time_budget_s=repair_budget_s(time_limit_s, options),
    )
    return make_plan(
        problem,
        plan_routes,
        unassigned,
        solve_time_s=time.monotonic() - t0,
        seed=seed,
        status=status,
    )


def repair_budget_s(time_limit_s: float, options: SolverOptions | None = None) -> float:
    """What :func:`solve_direct` may spend after its search, re-inserting points the
    search left out (on top of ``time_limit_s``). A search bounded by a solution limit
    is never cut short by the clock (the time limit is then only a safety cap)."""
    if options is not None and options.solution_limit is not None:
        return time_limit_s
    return min(10.0, 0.1 * time_limit_s + 1.0)


# --------------------------------------------------------------------------- trips


def construct_trips(model: _Model, time_limit_s: float) -> dict[str, list[Visit]]:
    """A first solution with the trip structure right.

    The points of the trucks that unload at one station are routed as a CVRP from
    that station (truckload capacity, no time), by OR-Tools' iterated local search;
    the resulting trips are packed into those trucks' days (daily load cap, working
    time) most urgent first. Where the daily cap is not a whole number of truckloads,
    trips cut to the even share of a day are tried too, packed to fill days, and the
    shorter packing is kept (see ``_trip_sizes`` and ``_pack_trips``). The
    full model then starts from it (see ``_Model.hint_successors``) and repairs what
    this ignores (windows, eligibility).
    """
    t0 = time.monotonic()
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
            packed = _pack_trips(model, key[0], vs, trips, fill_days=size < sizes[0])
            # With one trip size there is nothing to compare.
            cost = _packed_cost(model, key[0], packed, pts) if len(sizes) > 1 else 0.0
            if chosen is None or cost < chosen[0]:
                chosen = (cost, packed)
        assert chosen is not None
        out.update(chosen[1])
        if model.options.solution_limit is None and time.monotonic() - t0 > time_limit_s * 1.5:
            break
    # Completing gets a share of its own: on a busy machine the trips can use all theirs.
    return _complete(model, out, time.monotonic() + time_limit_s)


def _complete(
    model: _Model, visits_by_truck: dict[str, list[Visit]], deadline: float
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
    _reinsert(sub, schedules, missing, starts, breaks_done, deadline)
    return {truck_id: visits for truck_id, (visits, _) in schedules.items()}


def _trip_sizes(model: _Model, vs: list[int]) -> list[float]:
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
    model: _Model, station_id: str, packed: dict[str, list[Visit]], pts: list[Point]
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
    model: _Model,
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
    for name in _OPERATORS_OFF:
        setattr(params.local_search_operators, name, 2)
    _ils(params, model.options)
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
    model: _Model,
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
    station = problem.station(station_id)

    def trip_time(trip: list[Point], matrix: Any) -> float:
        keys = [sk] + [point_key(p.point_id) for p in trip] + [sk]
        travel = sum(matrix.duration(a, b) for a, b in itertools.pairwise(keys))
        return travel + sum(p.service_time_s for p in trip) + station.tipping_time_s

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

    def centre(trip: list[Point]) -> float:
        return float(np.median([(p.window_start_s + p.window_end_s) / 2 for p in trip]))

    def day(ts: list[list[Point]]) -> list[Visit]:
        visits: list[Visit] = []
        for trip in sorted(ts, key=centre):
            visits.extend(Visit("point", p.point_id) for p in trip)
            visits.append(Visit("station", station_id))
        return visits

    def in_time(v: int, trip: list[Point]) -> bool:
        truck = model.trucks[v]
        sched = schedule_route(
            problem,
            truck,
            day([*assigned[v], trip]),
            start=model.start_of[v],
            break_done=truck.truck_id in model.options.breaks_done,
        )
        return sched.feasible

    def extra_m(v: int, trip: list[Point]) -> float:
        matrix = problem.matrix_for(model.trucks[v])
        ends = [point_key(trip[0].point_id), point_key(trip[-1].point_id)]
        if assigned[v]:
            return min(matrix.distance(sk, e) for e in ends)
        home = depot_key(model.trucks[v].end_depot_id)
        return min(matrix.distance(model.start_of[v].key, e) for e in ends) + matrix.distance(
            sk, home
        )

    urgency = sorted(trips, key=lambda trip: (min(p.window_end_s for p in trip), centre(trip)))
    assigned: dict[int, list[list[Point]]] = {v: [] for v in vs}
    for trip in urgency:
        load = sum(p.amount_kg for p in trip)
        fits = [v for v in vs if left_kg[v] >= load - 1e-9]
        if not fits:
            continue  # left for the search to place
        timely = [v for v in fits if in_time(v, trip)] if fill_days else []
        if timely:
            v = min(timely, key=lambda x: (extra_m(x, trip), -left_s[x]))
        else:
            v = max(fits, key=lambda x: left_s[x])
        assigned[v].append(trip)
        left_s[v] -= trip_time(trip, problem.matrix_for(model.trucks[v]))
        left_kg[v] -= load
    out: dict[str, list[Visit]] = {}
    for v, ts in assigned.items():
        if not ts:
            continue
        truck = model.trucks[v]
        start = model.start_of[v]
        out[truck.truck_id] = _drop_late(
            problem, truck, day(ts), start, truck.truck_id in model.options.breaks_done
        )
    return out


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
        visits = _normalise(
            problem,
            truck,
            [x for x in visits if not (x.kind == "point" and x.ref_id == bad)],
            start,
        )
    return visits


def _shuffled(problem: Problem, seed: int) -> Problem:
    """The same problem with points in a seed-dependent order: the search's
    trajectory (and so the plan) depends on the seed, reproducibly."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(problem.points))
    return problem.replace(points=[problem.points[i] for i in order])


# --------------------------------------------------------------------------- finishing


def finish_plan(
    problem: Problem,
    visits_by_truck: dict[str, list[Visit]],
    unassigned: Sequence[Unassigned],
    *,
    starts: dict[str, Start] | None = None,
    breaks_done: frozenset[str] = frozenset(),
    repair: bool = True,
    time_budget_s: float = 10.0,
) -> tuple[list[Route], list[Unassigned]]:
    """Time every route exactly; repair what does not hold (unload where a trip is
    over capacity, else drop points); try to re-insert dropped and unserved points;
    give every point left out its reason."""
    starts = starts or {}
    deadline = time.monotonic() + time_budget_s
    out_unassigned = list(unassigned)
    explained = {u.point_id for u in out_unassigned}
    schedules: dict[str, tuple[list[Visit], Schedule]] = {}
    dropped: list[str] = []
    for truck_id, visits in visits_by_truck.items():
        truck = problem.truck(truck_id)
        start = starts.get(truck_id)
        bd = truck_id in breaks_done
        visits = _normalise(problem, truck, visits, start)
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
        missing = _reinsert(problem, schedules, missing, starts, breaks_done, deadline)
    for pid in missing:
        reason = (
            _blocking_reason(problem, schedules, pid, starts, breaks_done)
            if time.monotonic() < deadline
            else _overall_reason(problem)
        )
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


def _normalise(
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
        out.append(Visit("station", _best_station(problem, truck, out).station_id))
    return out


def _best_station(problem: Problem, truck: Truck, visits: Sequence[Visit]) -> Station:
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
            trial = _normalise(problem, truck, visits[:i] + visits[i + 1 :], start)
            s = schedule_route(problem, truck, trial, start=start, break_done=break_done)
            score = (0.0 if s.feasible else 1e12) + s.duration_s
            if best is None or score < best[0]:
                best = (score, i)
        assert best is not None
        removed.append(visits[best[1]].ref_id)
        visits = _normalise(problem, truck, visits[: best[1]] + visits[best[1] + 1 :], start)
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
                out.append(Visit("station", _best_station(problem, truck, out).station_id))
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
        before = _unload_first(problem, truck, p, start)
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
            trial = _normalise(problem, truck, [*visits[:i], new, *visits[i:]], start)
            out.append((added, trial))
    out.sort(key=lambda x: x[0])
    return out


def _reinsert(
    problem: Problem,
    schedules: dict[str, tuple[list[Visit], Schedule]],
    missing: list[str],
    starts: dict[str, Start],
    breaks_done: frozenset[str],
    deadline: float,
) -> list[str]:
    """Cheapest feasible insertion of each missing point into any route (or a new
    route for an idle truck), the positions of all trucks tried cheapest first;
    returns the points still left out."""
    left: list[str] = []
    for pid in missing:
        if time.monotonic() > deadline:
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
            sched = schedule_route(problem, truck, trial, start=start, break_done=bd)
            if not sched.feasible and sched.reason == "capacity" and problem.stations:
                # A full trip takes the point with one more unload.
                trial = _split_overloaded_trips(problem, truck, trial, start)
                sched = schedule_route(problem, truck, trial, start=start, break_done=bd)
            if sched.feasible:
                schedules[truck.truck_id] = (trial, sched)
                placed = True
                break
            if time.monotonic() > deadline:
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
            s = schedule_route(
                problem,
                truck,
                trial,
                start=start,
                break_done=truck.truck_id in breaks_done,
            )
            if s.feasible:
                best_reason = None
                break
            best_reason = best_reason or s.reason
        if best_reason:
            reasons[best_reason] += 1
    return _pick_reason(reasons) if reasons else "shift"


def _overall_reason(problem: Problem) -> str:
    total = sum(p.amount_kg for p in problem.points)
    fleet = sum(min(t.day_load_limit_kg, 1e18) for t in problem.trucks)
    return "capacity" if total > fleet else "shift"


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
