"""An independent plan checker.

``check_plan(problem, plan)`` recomputes every route from the problem data alone (it
shares no code with the solver or :mod:`routing.schedule`) and returns one
:class:`Violation` per broken rule: capacity, day load, time windows, shift, route
duration, break, stream, access, station hours, end-empty, reachability, reported
distances/loads that do not add up, and every point served exactly once or
explained in ``plan.unassigned``. An empty list means the plan is valid.
``check_references(plan, truck_ids=..., ...)`` is its first part alone: the routes'
shape and the ids they name, for a reader that has no :class:`Problem`.

Rules (the same as docs/routing.md):

* a route starts with ``start`` at the truck's start depot no earlier than its shift
  start, ends with ``end`` at its end depot no later than its shift end, and lasts at
  most ``max_route_duration_s``;
* at a point, service starts at ``departure_s - service_time_s``, within the window,
  not before arrival; the truck carries the point's stream and, for a narrow point,
  may enter narrow lanes;
* at a station, tipping starts at ``departure_s - tipping_time_s``, not before
  ``opens_s`` nor arrival, and ends by ``closes_s``; the station accepts every stream
  on board; the truck is empty afterwards;
* the load never exceeds the capacity, the day's total never exceeds
  ``max_day_load_kg``; with stations the truck reaches its end depot empty;
* one break of at least ``break_duration_s`` starting within the break window, between
  two stops, with the driving of that leg fitting around it; no break only if it
  fits before the departure or after the return;
* a leg can be driven no faster than the travel matrix allows.

Mid-day plans (:mod:`routing.replan`) pass ``live``: after the first
``completed_stops`` stops of a route the truck was at ``key`` at ``time_s``; the next
leg (the first one after a break that comes first) starts there.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from routing.plan import REASONS, Plan, Route, Stop
from routing.problem import Problem, Truck, depot_key, point_key, station_key

TIME_EPS = 1e-3
LOAD_EPS = 1e-6
DIST_REL_EPS = 1e-6
DIST_ABS_EPS = 0.01


@dataclass(frozen=True, slots=True)
class Violation:
    kind: str
    message: str
    truck_id: str | None = None
    ref_id: str | None = None

    def __str__(self) -> str:
        where = f"{self.truck_id}: " if self.truck_id else ""
        return f"[{self.kind}] {where}{self.message}"


@dataclass(frozen=True, slots=True)
class LivePosition:
    key: str  # matrix location key of the live position
    time_s: float
    completed_stops: int  # stops of the route already done before the position
    load_kg: float = 0.0
    break_taken: bool = False  # the driver has had the break (even if no stop shows it)


def check_references(
    plan: Plan,
    *,
    truck_ids: Collection[str],
    depot_ids: Collection[str],
    station_ids: Collection[str],
    point_ids: Collection[str],
) -> list[Violation]:
    """What a plan must pass before anything reads its routes: each route begins with
    ``start`` and finishes with ``end`` with neither between, and every truck, depot,
    station and point it names exists. ``check_plan`` starts with this; the simulator
    runs it alone before it drives a plan."""
    out: list[Violation] = []
    places = {"start": depot_ids, "end": depot_ids, "station": station_ids, "point": point_ids}
    for route in plan.routes:
        tid, stops = route.truck_id, route.stops
        if tid not in truck_ids:
            out.append(Violation("unknown_ref", f"unknown truck {tid!r}"))
        elif len(stops) < 2 or stops[0].kind != "start" or stops[-1].kind != "end":
            out.append(
                Violation("structure", "a route must begin with 'start' and finish with 'end'", tid)
            )
        elif any(s.kind in ("start", "end") for s in stops[1:-1]):
            out.append(Violation("structure", "'start'/'end' in the middle of a route", tid))
        else:
            unknown = [
                (i, s)
                for i, s in enumerate(stops)
                if s.kind in places and s.ref_id not in places[s.kind]
            ]
            if unknown:
                i, stop = unknown[0]
                out.append(
                    Violation(
                        "unknown_ref",
                        f"stop {i} ({stop.kind}) refers to unknown {stop.ref_id!r}",
                        tid,
                    )
                )
    for u in plan.unassigned:
        if u.point_id not in point_ids:
            out.append(Violation("unknown_ref", f"unknown unassigned point {u.point_id!r}"))
    return out


def check_plan(
    problem: Problem,
    plan: Plan,
    *,
    live: Mapping[str, LivePosition] | None = None,
) -> list[Violation]:
    out = check_references(
        plan,
        truck_ids=problem.truck_index,
        depot_ids=problem.depot_index,
        station_ids=problem.station_index,
        point_ids=problem.point_index,
    )
    broken = {v.truck_id for v in out if v.truck_id is not None}
    live = live or {}
    seen_trucks: set[str] = set()
    served: Counter[str] = Counter()
    for route in plan.routes:
        if route.truck_id not in problem.truck_index:
            continue
        if route.truck_id in seen_trucks:
            out.append(Violation("duplicate", "truck has two routes", route.truck_id))
        seen_trucks.add(route.truck_id)
        truck = problem.truck(route.truck_id)
        if route.truck_id not in broken:
            out.extend(_check_route(problem, truck, route, live.get(truck.truck_id)))
        for stop in route.stops:
            if (
                stop.kind == "point"
                and stop.ref_id is not None
                and stop.ref_id in problem.point_index
            ):
                served[stop.ref_id] += 1
    unassigned = Counter(u.point_id for u in plan.unassigned)
    for u in plan.unassigned:
        if u.reason not in REASONS:
            out.append(Violation("reason", f"unknown reason {u.reason!r}", ref_id=u.point_id))
    for p in problem.points:
        n, m = served[p.point_id], unassigned[p.point_id]
        if n + m == 0:
            out.append(Violation("unserved", "neither served nor explained", ref_id=p.point_id))
        elif n > 1 or m > 1 or (n and m):
            out.append(
                Violation(
                    "duplicate",
                    f"served {n} times and listed unassigned {m} times",
                    ref_id=p.point_id,
                )
            )
    return out


def _key(stop: Stop) -> str:
    """The matrix key of a stop that check_references has vouched for."""
    assert stop.ref_id is not None
    if stop.kind == "point":
        return point_key(stop.ref_id)
    if stop.kind == "station":
        return station_key(stop.ref_id)
    return depot_key(stop.ref_id)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= max(DIST_ABS_EPS, DIST_REL_EPS * max(abs(a), abs(b)))


def _check_route(
    problem: Problem, truck: Truck, route: Route, live: LivePosition | None
) -> list[Violation]:
    """Every broken rule of one route: its shift, each stop walked in order, its break."""
    walk = _RouteWalk(problem, truck, live)
    walk.check_shift(route)
    walk.walk(route.stops)
    if not _close(route.distance_m, walk.total_m):
        walk.bad("report", f"distance_m {route.distance_m} != sum of legs {walk.total_m:.3f}")
    walk.check_break(route.stops)
    return walk.violations


class _RouteWalk:
    """One route's check: the state carried from stop to stop (the load on board, the
    day's load, the break pending) and the violations found so far."""

    def __init__(self, problem: Problem, truck: Truck, live: LivePosition | None) -> None:
        self.problem, self.truck, self.live = problem, truck, live
        self.matrix = problem.matrix_for(truck)
        self.violations: list[Violation] = []
        self.load = self.day_load = self.total_m = 0.0
        self.on_board: set[str] = set()
        self.pending_break: Stop | None = None
        self.breaks: list[Stop] = []
        self.live_leg_done = False

    def bad(self, kind: str, message: str, ref: str | None = None) -> None:
        self.violations.append(Violation(kind, message, self.truck.truck_id, ref))

    def check_shift(self, route: Route) -> None:
        """The depots it starts and ends at, the shift, the route's duration."""
        truck, stops, bad = self.truck, route.stops, self.bad
        if stops[0].ref_id != truck.start_depot_id:
            bad("structure", f"starts at {stops[0].ref_id!r}, not depot {truck.start_depot_id!r}")
        if stops[-1].ref_id != truck.end_depot_id:
            bad("structure", f"ends at {stops[-1].ref_id!r}, not depot {truck.end_depot_id!r}")
        dep0, arr_end = stops[0].departure_s, stops[-1].arrival_s
        if dep0 < truck.shift_start_s - TIME_EPS:
            bad(
                "shift", f"leaves at {dep0:.0f} s, before the shift starts at {truck.shift_start_s}"
            )
        if arr_end > truck.shift_end_s + TIME_EPS:
            bad("shift", f"returns at {arr_end:.0f} s, after the shift ends at {truck.shift_end_s}")
        limit = truck.route_duration_limit_s
        if arr_end - dep0 > limit + TIME_EPS:
            bad("shift", f"route lasts {arr_end - dep0:.0f} s, more than {limit:.0f} s")
        if (
            not _close(route.duration_s, arr_end - dep0)
            and abs(route.duration_s - (arr_end - dep0)) > 1
        ):
            bad("report", f"duration_s {route.duration_s} != end - start {arr_end - dep0}")

    def walk(self, stops: Sequence[Stop]) -> None:
        """Each stop after the start: the leg into it, its timing, what it does to the load."""
        prev = stops[0]
        for i, stop in enumerate(stops[1:], start=1):
            if stop.kind == "break":
                if self.pending_break is not None:
                    self.bad("break", "two breaks in a row")
                self.pending_break = stop
                if stop.distance_from_prev_m > DIST_ABS_EPS:
                    self.bad("report", "a break has no distance")
                continue
            from_time, leg_s = self._leg(i, prev, stop)
            start_s = stop.departure_s - _service_s(self.problem, stop)
            self._timing(stop, from_time, leg_s, start_s)
            if stop.kind == "point":
                self._point(stop, start_s)
            elif stop.kind == "station":
                self._station(stop, start_s)
            elif stop.kind == "end":
                has_stations = bool(self.problem.stations)
                if has_stations and self.load > LOAD_EPS:
                    self.bad("end_empty", f"returns to the depot with {self.load:.1f} on board")
                if not has_stations:
                    self.load = 0.0
            tolerance = max(LOAD_EPS, 1e-6 * self.load)
            if abs(stop.load_after_kg - self.load) > tolerance and stop.kind != "end":
                self.bad(
                    "report", f"load_after_kg {stop.load_after_kg} != {self.load}", stop.ref_id
                )
            prev = stop
        if self.pending_break is not None:
            self.bad("structure", "a break right before 'end' must be followed by the end stop")

    def _leg(self, i: int, prev: Stop, stop: Stop) -> tuple[float, float]:
        """The leg into stop `i`: when it starts and its driving time. Its distance
        is checked against the matrix and added to the total."""
        from_key, from_time = _key(prev), prev.departure_s
        live = self.live
        if live is not None and i >= live.completed_stops and not self.live_leg_done:
            # The leg from the live position (a break may come first); the load on
            # board there is measured.
            from_key, from_time = live.key, live.time_s
            self.load = live.load_kg
            self.live_leg_done = True
        key = _key(stop)
        leg_m = self.matrix.distance(from_key, key)
        leg_s = self.matrix.duration(from_key, key)
        if not (math.isfinite(leg_m) and math.isfinite(leg_s)):
            self.bad("unreachable", f"{stop.ref_id} cannot be reached from {from_key}", stop.ref_id)
            leg_m, leg_s = 0.0, 0.0
        if not _close(stop.distance_from_prev_m, leg_m):
            self.bad(
                "report",
                f"distance_from_prev_m {stop.distance_from_prev_m} != {leg_m:.3f}",
                stop.ref_id,
            )
        self.total_m += leg_m
        return from_time, leg_s

    def _timing(self, stop: Stop, from_time: float, leg_s: float, start_s: float) -> None:
        """The stop is reached no sooner than the leg allows, around a break taken on it."""
        b = self.pending_break
        if b is not None:
            self.breaks.append(b)
            b0, b1 = b.arrival_s, b.departure_s
            if b0 < from_time - TIME_EPS or b1 > start_s + TIME_EPS:
                self.bad("break", "the break overlaps a stop's service", stop.ref_id)
            drive_room = max(0.0, b0 - from_time) + max(0.0, start_s - b1)
            if drive_room < leg_s - TIME_EPS:
                self.bad(
                    "timing", f"leg to {stop.ref_id} needs {leg_s:.0f} s of driving", stop.ref_id
                )
            earliest = (
                from_time + leg_s
                if from_time + leg_s <= b0
                else b1 + (leg_s - max(0.0, b0 - from_time))
            )
            self.pending_break = None
        else:
            earliest = from_time + leg_s
        if stop.arrival_s < earliest - TIME_EPS:
            self.bad(
                "timing",
                f"arrives at {stop.arrival_s:.1f}, cannot before {earliest:.1f}",
                stop.ref_id,
            )
        if start_s < stop.arrival_s - TIME_EPS:
            self.bad("timing", "service starts before arrival", stop.ref_id)

    def _point(self, stop: Stop, start_s: float) -> None:
        """A collection point (收集点): stream, access, window, and the load picked up."""
        assert stop.ref_id is not None
        truck, bad = self.truck, self.bad
        p = self.problem.point(stop.ref_id)
        if p.stream not in truck.streams:
            bad("stream", f"truck does not carry {p.stream!r}", p.point_id)
        if p.access_class == "narrow" and not truck.can_enter_narrow:
            bad("access", "narrow-lane point on a truck that may not enter", p.point_id)
        if start_s < p.window_start_s - TIME_EPS or start_s > p.window_end_s + TIME_EPS:
            bad(
                "time_window",
                f"service starts at {start_s:.0f}, window "
                f"{p.window_start_s:.0f}..{p.window_end_s:.0f}",
                p.point_id,
            )
        self.load += p.amount_kg
        self.day_load += p.amount_kg
        self.on_board.add(p.stream)
        if self.load > truck.capacity_kg + LOAD_EPS:
            bad("capacity", f"load {self.load:.1f} > capacity {truck.capacity_kg}", p.point_id)
        if self.day_load > truck.day_load_limit_kg + LOAD_EPS:
            bad(
                "capacity",
                f"day load {self.day_load:.1f} > {truck.day_load_limit_kg}",
                p.point_id,
            )

    def _station(self, stop: Stop, start_s: float) -> None:
        """A transfer station (中转站): its hours, the streams it accepts; empty after."""
        assert stop.ref_id is not None
        s = self.problem.station(stop.ref_id)
        if start_s < s.opens_s - TIME_EPS or stop.departure_s > s.closes_s + TIME_EPS:
            self.bad(
                "station_hours",
                f"tips {start_s:.0f}..{stop.departure_s:.0f}, open "
                f"{s.opens_s:.0f}..{s.closes_s:.0f}",
                s.station_id,
            )
        refused = sorted(self.on_board - s.streams)
        if refused:
            self.bad("stream", f"station does not accept {refused}", s.station_id)
        self.load = 0.0
        self.on_board.clear()

    def check_break(self, stops: Sequence[Stop]) -> None:
        """One break long enough in its window, or none if it fits outside the route."""
        truck, live = self.truck, self.live
        if truck.break_duration_s <= 0:
            return
        if len(self.breaks) > 1:
            self.bad("break", f"{len(self.breaks)} breaks")
        for b in self.breaks:
            if b.arrival_s < truck.break_earliest_s - TIME_EPS or (
                b.arrival_s > truck.break_latest_s + TIME_EPS
            ):
                self.bad(
                    "break",
                    f"break starts at {b.arrival_s:.0f}, window "
                    f"{truck.break_earliest_s:.0f}..{truck.break_latest_s:.0f}",
                )
            if b.departure_s - b.arrival_s < truck.break_duration_s - TIME_EPS:
                self.bad("break", f"break lasts {b.departure_s - b.arrival_s:.0f} s")
        if self.breaks:
            return
        fits_before = (
            truck.break_earliest_s + truck.break_duration_s <= stops[0].departure_s + TIME_EPS
        )
        fits_after = truck.break_latest_s >= stops[-1].arrival_s - TIME_EPS
        taken_earlier = live is not None and (
            live.break_taken
            or (
                live.completed_stops > 0
                and any(s.kind == "break" for s in stops[: live.completed_stops])
            )
        )
        if not (fits_before or fits_after or taken_earlier):
            self.bad("break", "no break, and it fits neither before departure nor after return")


def _service_s(problem: Problem, stop: Stop) -> float:
    if stop.ref_id is None:
        return 0.0
    if stop.kind == "point" and stop.ref_id in problem.point_index:
        return problem.point(stop.ref_id).service_time_s
    if stop.kind == "station" and stop.ref_id in problem.station_index:
        return problem.station(stop.ref_id).tipping_time_s
    return 0.0
