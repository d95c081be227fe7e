"""Screening: which trucks could serve each point at all, and the constraint that
blocks a point no truck can serve (reported before any search)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from routing.plan import Unassigned
from routing.problem import (
    Point,
    Problem,
    Station,
    Truck,
    depot_key,
    point_key,
    station_key,
)
from routing.schedule import Start, Visit, default_start, schedule_route


@dataclass(slots=True)
class Screen:
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
) -> Screen:
    """Which trucks could serve each point on a dedicated trip, and why not if none."""
    starts = starts or {}
    out = Screen()
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
                Unassigned(point_id=p.point_id, reason=pick_reason(reasons))  # type: ignore[arg-type]
            )
    return out


_REASON_ORDER: Final = ("unreachable", "station_hours", "time_window", "shift", "capacity")


def pick_reason(reasons: Counter[str]) -> str:
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
    visits = [*unload_first(problem, truck, p, start), Visit("point", p.point_id)]
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
    return pick_reason(reasons)


def unload_first(problem: Problem, truck: Truck, p: Point, start: Start | None) -> list[Visit]:
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
