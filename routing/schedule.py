"""Timing one truck's sequence of visits: the planner's own route evaluator.

Given a truck and the ordered locations it visits (points and station unloads,
between its start and end), :func:`schedule_route` computes a timed route (arrival,
service start, departure, load after each stop), places the lunch break, and says
whether every constraint holds, naming the first one that does not. The solver uses
it to turn OR-Tools' sequences into :class:`~routing.plan.Route` values and to repair
or re-insert; the independent checker (:mod:`routing.check`) does not use it.

Conventions (shared with the checker, see docs/routing.md):

* a truck leaves its start at or after ``shift_start_s`` and reaches its end depot by
  ``shift_end_s``; the route (end arrival minus start departure) lasts at most
  ``max_route_duration_s``;
* service at a point starts within its window; tipping at a station starts at or after
  ``opens_s`` and ends by ``closes_s``; waiting is allowed;
* the load never exceeds ``capacity_kg``; a station unload empties the truck; with
  stations, the truck arrives at its end depot empty; the day's total stays within
  ``max_day_load_kg``;
* the break (``break_duration_s``, starting within ``[break_earliest_s,
  break_latest_s]``) is taken between two stops (en route or while waiting), never
  during service; it may be skipped only when it fits before the departure or after
  the return.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import takewhile

from routing.matrix import TravelMatrix
from routing.plan import Route, Stop
from routing.problem import Problem, Truck, depot_key, point_key, station_key

EPS = 1e-6


@dataclass(frozen=True, slots=True)
class Visit:
    """One stop of a sequence: ``kind`` is ``point`` or ``station``."""

    kind: str
    ref_id: str


@dataclass(frozen=True, slots=True)
class Timed:
    kind: str
    ref_id: str | None
    key: str | None
    arrival_s: float
    start_s: float  # service / tipping start (== arrival for start, end, break)
    departure_s: float
    load_after_kg: float
    distance_from_prev_m: float


@dataclass(frozen=True, slots=True)
class Schedule:
    feasible: bool
    reason: str | None  # first violated constraint (a Plan reason) when infeasible
    stops: tuple[Timed, ...]
    distance_m: float
    duration_s: float

    def to_route(self, truck_id: str) -> Route:
        return Route(
            truck_id=truck_id,
            stops=tuple(
                Stop(
                    kind=t.kind,  # type: ignore[arg-type]
                    ref_id=t.ref_id,
                    arrival_s=round(t.arrival_s, 6),
                    departure_s=round(t.departure_s, 6),
                    load_after_kg=round(t.load_after_kg, 6),
                    distance_from_prev_m=round(t.distance_from_prev_m, 6),
                )
                for t in self.stops
            ),
            distance_m=round(self.distance_m, 6),
            duration_s=round(self.duration_s, 6),
        )


@dataclass(frozen=True, slots=True)
class Start:
    """Where and when a route begins: the start depot at shift start by default, or a
    live position (mid-day re-planning) with a load already on board."""

    key: str
    ref_id: str
    earliest_s: float
    load_kg: float = 0.0
    day_load_kg: float = 0.0
    fixed_time: bool = False  # a live position: the time is now, not negotiable


def default_start(truck: Truck) -> Start:
    return Start(
        key=depot_key(truck.start_depot_id),
        ref_id=truck.start_depot_id,
        earliest_s=truck.shift_start_s,
    )


def _visit_key(v: Visit) -> str:
    return point_key(v.ref_id) if v.kind == "point" else station_key(v.ref_id)


def schedule_route(
    problem: Problem,
    truck: Truck,
    visits: Sequence[Visit],
    *,
    start: Start | None = None,
    break_done: bool = False,
) -> Schedule:
    """Time ``visits`` for ``truck``: leave as late as helps, take the break where it
    fits, and report feasibility."""
    start = start or default_start(truck)
    first = _forward(problem, truck, visits, start, start.earliest_s, break_done)
    if start.fixed_time or not first.feasible or not visits:
        return first
    # Leave later to cut waiting (and the route duration), if that stays feasible.
    waiting = sum(max(0.0, t.start_s - t.arrival_s) for t in first.stops if t.kind != "break")
    delay = min(waiting, truck.shift_end_s - start.earliest_s)
    best = first
    for _ in range(12):
        if delay < 1.0:
            break
        trial = _forward(problem, truck, visits, start, start.earliest_s + delay, break_done)
        if trial.feasible and trial.duration_s < best.duration_s - EPS:
            best = trial
            break
        delay /= 2
    return best


def _forward(
    problem: Problem,
    truck: Truck,
    visits: Sequence[Visit],
    start: Start,
    depart_s: float,
    break_done: bool,
) -> Schedule:
    """Earliest-time schedule leaving at ``depart_s``; the break goes on the leg that
    gives the earliest return (every leg is tried)."""
    needs_break = truck.break_duration_s > 0 and not break_done
    if not needs_break:
        return _simulate(problem, truck, visits, start, depart_s, None)
    no_break = _simulate(problem, truck, visits, start, depart_s, None)
    # A break only makes every later stop later: what fails without it fails with it.
    if not no_break.feasible or _break_fits_outside(truck, no_break):
        return no_break
    best: Schedule | None = None
    for leg in range(len(_break_legs(truck, no_break))):
        trial = _simulate(problem, truck, visits, start, depart_s, leg)
        if trial.feasible and (best is None or trial.duration_s < best.duration_s - EPS):
            best = trial
    if best is not None:
        return best
    return Schedule(False, "shift", no_break.stops, no_break.distance_m, no_break.duration_s)


def route_fault(
    problem: Problem,
    truck: Truck,
    visits: Sequence[Visit],
    *,
    start: Start | None = None,
    break_done: bool = False,
) -> str | None:
    """The rule :func:`schedule_route` finds the route breaking (its ``reason``), or
    None if it holds, found with fewer simulations: the break is tried first on the
    legs left nearest its earliest start, and the first leg that holds it ends the
    search (schedule_route looks on for the shortest day). For the many trial routes
    of insertions and moves, of which only the one kept needs its schedule."""
    start = start or default_start(truck)
    no_break = _simulate(problem, truck, visits, start, start.earliest_s, None)
    needs_break = truck.break_duration_s > 0 and not break_done
    if not needs_break or not no_break.feasible or _break_fits_outside(truck, no_break):
        return no_break.reason
    departures = _break_legs(truck, no_break)
    order = sorted(
        range(len(departures)), key=lambda leg: abs(departures[leg] - truck.break_earliest_s)
    )
    for leg in order:
        if _simulate(problem, truck, visits, start, start.earliest_s, leg).feasible:
            return None
    return "shift"


def _break_legs(truck: Truck, no_break: Schedule) -> list[float]:
    """The departure of each leg that can hold the break. Leg i ends at visit i (leg
    len(visits) at the end depot); up to leg i the schedule equals the one without a
    break, so only legs that start by break_latest_s can hold it."""
    departures = [t.departure_s for t in no_break.stops if t.kind != "end"]
    return list(takewhile(lambda dep: dep <= truck.break_latest_s + EPS, departures))


def _break_fits_outside(truck: Truck, sched: Schedule) -> bool:
    dep = sched.stops[0].departure_s
    arr = sched.stops[-1].arrival_s
    return (
        truck.break_earliest_s + truck.break_duration_s <= dep + EPS
        or truck.break_latest_s >= arr - EPS
    )


def _simulate(
    problem: Problem,
    truck: Truck,
    visits: Sequence[Visit],
    start: Start,
    depart_s: float,
    break_leg: int | None,
) -> Schedule:
    """Earliest-time schedule leaving at ``depart_s``, the break on leg ``break_leg``
    (leg i ends at visit i, leg len(visits) at the end depot; None: no break). Every
    stop is timed even past a violation; the first one broken is the reason."""
    matrix = problem.matrix_for(truck)
    end_key = depot_key(truck.end_depot_id)
    broken: list[str] = []
    t = max(depart_s, start.earliest_s)
    load = start.load_kg
    day_load = start.day_load_kg
    stops: list[Timed] = [
        Timed("start", start.ref_id, start.key, t, t, t, load, 0.0),
    ]
    if not start.fixed_time and t > truck.shift_end_s + EPS:
        broken.append("shift")
    prev_key = start.key
    distance = 0.0
    n = len(visits)
    for i in range(n + 1):
        v = visits[i] if i < n else None
        key = _visit_key(v) if v is not None else end_key
        leg_m, leg_s = _leg(matrix, prev_key, key, broken)
        distance += leg_m
        arrival = t + leg_s
        if break_leg == i:
            lunch = _break_on_leg(truck, t, load, broken)
            stops.append(lunch)
            # Drive until the break starts, then the rest after it.
            driven_before = min(leg_s, max(0.0, lunch.arrival_s - t))
            arrival = max(t + leg_s, lunch.departure_s + (leg_s - driven_before))
        if v is None:
            stops.append(
                _arrive_home(problem, truck, start, stops[0], arrival, load, leg_m, broken)
            )
            break
        if v.kind == "point":
            served, day_load = _collect(
                problem, truck, v, key, arrival, load, day_load, leg_m, broken
            )
        else:
            served = _unload(problem, v, key, arrival, leg_m, broken)
        stops.append(served)
        load = served.load_after_kg
        t = served.departure_s
        prev_key = key
    duration = stops[-1].arrival_s - stops[0].departure_s
    reason = broken[0] if broken else None
    return Schedule(reason is None, reason, tuple(stops), distance, duration)


def _leg(matrix: TravelMatrix, a: str, b: str, broken: list[str]) -> tuple[float, float]:
    """Distance and duration from ``a`` to ``b``; an unreachable leg is broken and
    counts what is finite of it."""
    leg_m = matrix.distance(a, b)
    leg_s = matrix.duration(a, b)
    if not (math.isfinite(leg_m) and math.isfinite(leg_s)):
        broken.append("unreachable")
        leg_m = 0.0 if not math.isfinite(leg_m) else leg_m
        leg_s = 0.0 if not math.isfinite(leg_s) else leg_s
    return leg_m, leg_s


def _break_on_leg(truck: Truck, leave_s: float, load: float, broken: list[str]) -> Timed:
    """The break on a leg left at ``leave_s``: at its earliest start, not before."""
    b = max(leave_s, truck.break_earliest_s)
    if b > truck.break_latest_s + EPS:
        broken.append("shift")
    return Timed("break", None, None, b, b, b + truck.break_duration_s, load, 0.0)


def _arrive_home(
    problem: Problem,
    truck: Truck,
    start: Start,
    first: Timed,
    arrival: float,
    load: float,
    leg_m: float,
    broken: list[str],
) -> Timed:
    """The end depot: empty if the district has stations, in the shift, within the
    route's duration limit."""
    has_stations = bool(problem.stations)
    if has_stations and load > EPS:
        broken.append("capacity")
    if not start.fixed_time and arrival > truck.shift_end_s + EPS:
        broken.append("shift")
    if arrival - first.departure_s > truck.route_duration_limit_s + EPS:
        broken.append("shift")
    end_load = 0.0 if not has_stations else load
    key = depot_key(truck.end_depot_id)
    return Timed("end", truck.end_depot_id, key, arrival, arrival, arrival, end_load, leg_m)


def _collect(
    problem: Problem,
    truck: Truck,
    v: Visit,
    key: str,
    arrival: float,
    load: float,
    day_load: float,
    leg_m: float,
    broken: list[str],
) -> tuple[Timed, float]:
    """Service at a point from its window's start; the stop and the day's load after it."""
    p = problem.point(v.ref_id)
    service_start = max(arrival, p.window_start_s)
    if service_start > p.window_end_s + EPS:
        broken.append("time_window")
    load += p.amount_kg
    day_load += p.amount_kg
    if load > truck.capacity_kg + EPS:
        broken.append("capacity")
    if day_load > truck.day_load_limit_kg + EPS:
        broken.append("capacity")
    departure = service_start + p.service_time_s
    return Timed("point", v.ref_id, key, arrival, service_start, departure, load, leg_m), day_load


def _unload(
    problem: Problem, v: Visit, key: str, arrival: float, leg_m: float, broken: list[str]
) -> Timed:
    """Tipping at a station from its opening, done by its closing; the truck leaves empty."""
    s = problem.station(v.ref_id)
    service_start = max(arrival, s.opens_s)
    departure = service_start + s.tipping_time_s
    if departure > s.closes_s + EPS:
        broken.append("station_hours")
    return Timed("station", v.ref_id, key, arrival, service_start, departure, 0.0, leg_m)


def fold_break(lo: int, hi: int, shift: tuple[int, int]) -> tuple[int, int] | None:
    """The real window [lo, hi] in model time that runs ``d`` behind real time from
    ``e`` on (``shift`` = (e, d): the lunch break folded into time, taken at its
    earliest start): [lo, min(hi, e - 1)] ∪ [max(lo - d, e), hi - d], which is always
    one interval (integers); None if it is empty."""
    e, d = shift
    before = lo < e  # the window opens before the break
    new_lo = lo if before else max(lo - d, e)
    new_hi = hi if hi < e else (max(e - 1, hi - d) if before else hi - d)
    return (new_lo, new_hi) if new_lo <= new_hi else None
