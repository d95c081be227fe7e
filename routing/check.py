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
from collections.abc import Collection, Mapping
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
    out: list[Violation] = []
    tid = truck.truck_id

    def bad(kind: str, message: str, ref: str | None = None) -> None:
        out.append(Violation(kind, message, tid, ref))

    stops = route.stops
    if stops[0].ref_id != truck.start_depot_id:
        bad("structure", f"starts at {stops[0].ref_id!r}, not depot {truck.start_depot_id!r}")
    if stops[-1].ref_id != truck.end_depot_id:
        bad("structure", f"ends at {stops[-1].ref_id!r}, not depot {truck.end_depot_id!r}")
    matrix = problem.matrix_for(truck)
    has_stations = bool(problem.stations)

    # Shift and duration.
    dep0, arr_end = stops[0].departure_s, stops[-1].arrival_s
    if dep0 < truck.shift_start_s - TIME_EPS:
        bad("shift", f"leaves at {dep0:.0f} s, before the shift starts at {truck.shift_start_s}")
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

    # Walk the stops.
    load = 0.0
    day_load = 0.0
    on_board: set[str] = set()
    total = 0.0
    prev: Stop = stops[0]
    prev_key = _key(prev)
    pending_break: Stop | None = None
    breaks: list[tuple[Stop, Stop | None, Stop | None]] = []
    live_from = live.completed_stops if live is not None else None
    live_leg_done = False
    for i, stop in enumerate(stops[1:], start=1):
        if stop.kind == "break":
            if pending_break is not None:
                bad("break", "two breaks in a row")
            pending_break = stop
            if stop.distance_from_prev_m > DIST_ABS_EPS:
                bad("report", "a break has no distance")
            continue
        key = _key(stop)
        # The leg into this stop.
        leg_from_key, leg_from_time = prev_key, prev.departure_s
        if live is not None and live_from is not None and i >= live_from and not live_leg_done:
            # The leg from the live position (a break may come first); the load on
            # board there is measured.
            leg_from_key, leg_from_time = live.key, live.time_s
            load = live.load_kg
            live_leg_done = True
        assert leg_from_key is not None
        leg_m = matrix.distance(leg_from_key, key)
        leg_s = matrix.duration(leg_from_key, key)
        if not (math.isfinite(leg_m) and math.isfinite(leg_s)):
            bad("unreachable", f"{stop.ref_id} cannot be reached from {leg_from_key}", stop.ref_id)
            leg_m, leg_s = 0.0, 0.0
        if not _close(stop.distance_from_prev_m, leg_m):
            bad(
                "report",
                f"distance_from_prev_m {stop.distance_from_prev_m} != {leg_m:.3f}",
                stop.ref_id,
            )
        total += leg_m
        service_s = _service_s(problem, stop)
        start_s = stop.departure_s - service_s
        if pending_break is not None:
            breaks.append((pending_break, prev, stop))
            b0, b1 = pending_break.arrival_s, pending_break.departure_s
            if b0 < leg_from_time - TIME_EPS or b1 > start_s + TIME_EPS:
                bad("break", "the break overlaps a stop's service", stop.ref_id)
            drive_room = max(0.0, b0 - leg_from_time) + max(0.0, start_s - b1)
            if drive_room < leg_s - TIME_EPS:
                bad("timing", f"leg to {stop.ref_id} needs {leg_s:.0f} s of driving", stop.ref_id)
            earliest = (
                leg_from_time + leg_s
                if leg_from_time + leg_s <= b0
                else b1 + (leg_s - max(0.0, b0 - leg_from_time))
            )
            pending_break = None
        else:
            earliest = leg_from_time + leg_s
        if stop.arrival_s < earliest - TIME_EPS:
            bad(
                "timing",
                f"arrives at {stop.arrival_s:.1f}, cannot before {earliest:.1f}",
                stop.ref_id,
            )
        if start_s < stop.arrival_s - TIME_EPS:
            bad("timing", "service starts before arrival", stop.ref_id)

        if stop.kind == "point":
            assert stop.ref_id is not None
            p = problem.point(stop.ref_id)
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
            load += p.amount_kg
            day_load += p.amount_kg
            on_board.add(p.stream)
            if load > truck.capacity_kg + LOAD_EPS:
                bad("capacity", f"load {load:.1f} > capacity {truck.capacity_kg}", p.point_id)
            if day_load > truck.day_load_limit_kg + LOAD_EPS:
                bad("capacity", f"day load {day_load:.1f} > {truck.day_load_limit_kg}", p.point_id)
        elif stop.kind == "station":
            assert stop.ref_id is not None
            s = problem.station(stop.ref_id)
            if start_s < s.opens_s - TIME_EPS or stop.departure_s > s.closes_s + TIME_EPS:
                bad(
                    "station_hours",
                    f"tips {start_s:.0f}..{stop.departure_s:.0f}, open "
                    f"{s.opens_s:.0f}..{s.closes_s:.0f}",
                    s.station_id,
                )
            refused = sorted(on_board - s.streams)
            if refused:
                bad("stream", f"station does not accept {refused}", s.station_id)
            load = 0.0
            on_board.clear()
        elif stop.kind == "end":
            if has_stations and load > LOAD_EPS:
                bad("end_empty", f"returns to the depot with {load:.1f} on board")
            if not has_stations:
                load = 0.0
        if abs(stop.load_after_kg - load) > max(LOAD_EPS, 1e-6 * load) and stop.kind != "end":
            bad("report", f"load_after_kg {stop.load_after_kg} != {load}", stop.ref_id)
        prev, prev_key = stop, key
    if pending_break is not None:
        bad("structure", "a break right before 'end' must be followed by the end stop")
    if not _close(route.distance_m, total):
        bad("report", f"distance_m {route.distance_m} != sum of legs {total:.3f}")

    # The break.
    if truck.break_duration_s > 0:
        if len(breaks) > 1:
            bad("break", f"{len(breaks)} breaks")
        for b, _, _ in breaks:
            if b.arrival_s < truck.break_earliest_s - TIME_EPS or (
                b.arrival_s > truck.break_latest_s + TIME_EPS
            ):
                bad(
                    "break",
                    f"break starts at {b.arrival_s:.0f}, window "
                    f"{truck.break_earliest_s:.0f}..{truck.break_latest_s:.0f}",
                )
            if b.departure_s - b.arrival_s < truck.break_duration_s - TIME_EPS:
                bad("break", f"break lasts {b.departure_s - b.arrival_s:.0f} s")
        if not breaks:
            fits_before = truck.break_earliest_s + truck.break_duration_s <= dep0 + TIME_EPS
            fits_after = truck.break_latest_s >= arr_end - TIME_EPS
            taken_earlier = live is not None and (
                live.break_taken
                or (
                    live.completed_stops > 0
                    and any(s.kind == "break" for s in stops[: live.completed_stops])
                )
            )
            if not (fits_before or fits_after or taken_earlier):
                bad("break", "no break, and it fits neither before departure nor after return")
    return out


def _service_s(problem: Problem, stop: Stop) -> float:
    if stop.ref_id is None:
        return 0.0
    if stop.kind == "point" and stop.ref_id in problem.point_index:
        return problem.point(stop.ref_id).service_time_s
    if stop.kind == "station" and stop.ref_id in problem.station_index:
        return problem.station(stop.ref_id).tipping_time_s
    return 0.0
