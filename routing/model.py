"""The OR-Tools model of the day (with :mod:`routing.trips`, the only modules that
import OR-Tools; no OR-Tools object leaves them).

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
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from ortools.constraint_solver import pywrapcp, routing_enums_pb2

from routing.options import DIST_SCALE, LOAD_SCALE, TIME_SCALE, SolverOptions
from routing.problem import (
    Point,
    Problem,
    Station,
    Truck,
    depot_key,
    point_key,
    station_key,
)
from routing.schedule import Start, Visit, default_start, fold_break
from routing.screen import Screen

FSS = routing_enums_pb2.FirstSolutionStrategy
LSM = routing_enums_pb2.LocalSearchMetaheuristic

# With stations, unserved points need more than a one-node insertion.
_STATION_MODE_KEEP: Final = frozenset(
    {"use_relocate_path_global_cheapest_insertion_insert_unperformed"}
)


@dataclass(slots=True)
class _Node:
    kind: str  # depot | point | unload | final
    loc: int  # row in the problem matrix
    ref_id: str
    truck: int = -1  # unload/final: owning vehicle
    station: Station | None = None
    point: Point | None = None


class Model:
    """Builds and solves the OR-Tools model for the screened points."""

    def __init__(
        self,
        problem: Problem,
        screen_result: Screen,
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

        # Time, unless no time rule can bind (plain CVRP): its filters would cost
        # search time and decide nothing.
        self.break_shift = self._break_shift()
        self.timed = self._time_can_bind()
        self.span_limit: list[int] = [1 << 60] * n_vehicles
        if self.timed:
            self._add_time(time_cbs)

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

    def _add_time(self, time_cbs: list[int]) -> None:
        routing, manager = self.routing, self.manager
        routing.AddDimensionWithVehicleTransits(time_cbs, self.horizon, self.horizon, False, "time")
        time_dim = routing.GetDimensionOrDie("time")
        self.time_dim = time_dim
        d_break = self.break_shift[1] if self.break_shift else 0
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
            self.span_limit[v] = (
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

    def _time_can_bind(self) -> bool:
        """Whether any window, shift end, duration limit or break could constrain some
        route: without stations, breaks or live starts, a route's time is at most, per
        node it enters, that node's slowest way in; if even that fits everywhere, no
        time rule can bind."""
        if self.station_mode or any(s.fixed_time for s in self.start_of):
            return True
        if any(
            t.break_duration_s > 0 and t.truck_id not in self.options.breaks_done
            for t in self.trucks
        ):
            return True
        point_nodes = [i for i, nd in enumerate(self.nodes) if nd.kind == "point"]
        opens = max(math.ceil(p.window_start_s * TIME_SCALE - 1e-6) for p in self.points)
        closes = min(math.floor(p.window_end_s * TIME_SCALE + 1e-6) for p in self.points)
        for v, t in enumerate(self.trucks):
            tm = self.time_np[self.profile[v]]
            end_node = self.depot_node[depot_key(t.end_depot_id)]
            longest = int(tm[:, point_nodes].max(axis=0).sum()) + int(tm[:, end_node].max())
            depart = math.ceil(self.start_of[v].earliest_s * TIME_SCALE - 1e-6)
            limit = t.route_duration_limit_s
            if (
                opens > depart
                or depart + longest > min(closes, int(t.shift_end_s * TIME_SCALE))
                or (math.isfinite(limit) and longest > int(limit * TIME_SCALE))
            ):
                return True
        return False

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
        window = fold_break(lo, hi, self.break_shift) if self.break_shift else (lo, hi)
        if window is None or window[1] < window[0]:
            return False
        self.time_dim.CumulVar(index).SetRange(*window)
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
            ils(p, opts)
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
        time_dim = self.time_dim if self.timed else None
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
                if time_dim is not None:
                    cumul = time_dim.CumulVar(index)
                    t = max(arrive, cumul.Min())
                    if t > cumul.Max():
                        return False, 0, 0
                    slack = min(slack, cumul.Max() - t)
                else:
                    t = arrive
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

        depart = time_dim.CumulVar(start_index).Min() if time_dim is not None else 0
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


def ils(p: Any, opts: SolverOptions) -> None:
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
