"""A fast, exact verdict on whether a trial route holds in time: the common test of
the moves (routing.exchange) and of ruin and recreate (routing.ruin), which time
thousands of trial routes for each one they keep.

:func:`routing.schedule.route_fault` simulates the route once without the lunch
break and then once per leg that could hold it, each simulation building the timed
stops: O(n²) work in objects. :class:`RouteTiming` gives the same verdict from plain
numbers in O(n), after Savelsbergh's forward time slack (1992) and the segment data of
Vidal et al. (2013):

* one forward pass without the break: the earliest service start at each stop, the
  loads; a route that fails here fails with the break too (a break only delays);
* one backward pass: the latest service start at each stop from which the rest of the
  route still holds, waiting allowed (the windows, the stations' closing, the shift
  end and the route's duration limit at the end depot);
* the break on leg ``m`` (left at ``t``, the no-break departure before it) moves the
  arrival at stop ``m`` to ``max(t + drive, break_earliest) + break``; the route holds
  with it exactly when that stop's new service start is no later than its latest
  start. Every leg left by ``break_latest`` is tried; one that holds decides.

Where a comparison lies within :data:`MARGIN` of its bound (where rounding could
decide it), or a leg is unreachable, the verdict is None and the caller asks
``route_fault``, which stays the reference: ``tests/unit/routing/test_timing.py``
compares the two on random trial routes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from routing.problem import Problem, Truck, depot_key, point_key, station_key
from routing.schedule import EPS, Start, Visit, default_start

# A comparison this close to its bound (seconds, kg) is left to route_fault.
MARGIN = 1e-3


@dataclass(frozen=True, slots=True)
class _Stop:
    """What the timing needs of one point or station: the earliest and latest
    service start, the service (tipping) time, the amount picked up; a station empties
    the truck and must be left by its closing."""

    earliest_s: float
    latest_s: float
    service_s: float
    amount_kg: float
    station: bool
    closes_s: float = math.inf


class RouteTiming:
    """The verdict of :func:`routing.schedule.route_fault` (holds or not) for one
    problem's routes, computed in one forward and one backward pass."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.point_stops = {
            p.point_id: _Stop(
                p.window_start_s, p.window_end_s, p.service_time_s, p.amount_kg, False
            )
            for p in problem.points
        }
        self.station_stops = {
            s.station_id: _Stop(
                s.opens_s, s.closes_s - s.tipping_time_s, s.tipping_time_s, 0.0, True, s.closes_s
            )
            for s in problem.stations
        }
        # Per travel matrix (one per truck profile): its row of each point and station.
        self._rows: dict[int, tuple[dict[str, int], dict[str, int]]] = {}
        # Per travel matrix: whether some pair has a finite duration but no finite
        # distance (the scheduler calls such a leg unreachable too).
        self._odd_pairs: dict[int, bool] = {}

    def rows(self, truck: Truck, visits: Sequence[Visit], start: Start | None = None) -> list[int]:
        """The rows of ``truck``'s travel matrix along the route: its start, each
        visit, its end depot."""
        matrix = self.problem.matrix_for(truck)
        tables = self._rows.get(id(matrix))
        if tables is None:
            index = matrix.index
            tables = (
                {pid: index[point_key(pid)] for pid in self.point_stops},
                {sid: index[station_key(sid)] for sid in self.station_stops},
            )
            self._rows[id(matrix)] = tables
        point_rows, station_rows = tables
        first = start.key if start is not None else depot_key(truck.start_depot_id)
        rows = [matrix.index[first]]
        rows.extend(
            point_rows[v.ref_id] if v.kind == "point" else station_rows[v.ref_id] for v in visits
        )
        rows.append(matrix.index[depot_key(truck.end_depot_id)])
        return rows

    def holds(
        self,
        truck: Truck,
        visits: Sequence[Visit],
        *,
        start: Start | None = None,
        break_done: bool = False,
    ) -> bool | None:
        """True if ``route_fault`` finds no fault, False if it finds one, None where
        this test cannot tell (a comparison within MARGIN of its bound, an
        unreachable leg)."""
        rows = self.rows(truck, visits, start)
        start = start or default_start(truck)
        matrix = self.problem.matrix_for(truck)
        legs: list[float] = matrix.duration_s[rows[:-1], rows[1:]].tolist()
        if not all(math.isfinite(x) for x in legs):
            return None
        odd = self._odd_pairs.get(id(matrix))
        if odd is None:
            odd = bool((np.isfinite(matrix.duration_s) & ~np.isfinite(matrix.distance_m)).any())
            self._odd_pairs[id(matrix)] = odd
        if odd and not np.isfinite(matrix.distance_m[rows[:-1], rows[1:]]).all():
            return None
        stops = [
            self.point_stops[v.ref_id] if v.kind == "point" else self.station_stops[v.ref_id]
            for v in visits
        ]
        if not self._forward(truck, start, stops, legs):
            return False  # a break only delays: what fails without it fails with it
        if truck.break_duration_s <= 0 or break_done:
            return True
        deadline = start.earliest_s + truck.route_duration_limit_s
        if not start.fixed_time:
            deadline = min(deadline, truck.shift_end_s)
        return self._with_break(truck, start, stops, legs, deadline)

    def _forward(
        self,
        truck: Truck,
        start: Start,
        stops: Sequence[_Stop],
        legs: Sequence[float],
    ) -> bool:
        """The route without the break holds: the same sums and comparisons as the
        scheduler's simulation, in the same order, so the same verdict to the bit."""
        t = start.earliest_s
        if not start.fixed_time and t > truck.shift_end_s + EPS:
            return False
        load, day = start.load_kg, start.day_load_kg
        for stop, leg in zip(stops, legs, strict=False):
            begin = max(t + leg, stop.earliest_s)
            t = begin + stop.service_s
            if stop.station:
                if t > stop.closes_s + EPS:
                    return False
                load = 0.0
                continue
            if begin > stop.latest_s + EPS:
                return False
            load += stop.amount_kg
            day += stop.amount_kg
            if load > truck.capacity_kg + EPS or day > truck.day_load_limit_kg + EPS:
                return False
        home = t + legs[-1]
        if self.problem.stations and load > EPS:
            return False
        if not start.fixed_time and home > truck.shift_end_s + EPS:
            return False
        return home - start.earliest_s <= truck.route_duration_limit_s + EPS

    def _with_break(
        self,
        truck: Truck,
        start: Start,
        stops: Sequence[_Stop],
        legs: Sequence[float],
        deadline: float,
    ) -> bool | None:
        """The route with the break, given that it holds without: outside the route,
        or on a leg that keeps every later stop by its latest start."""
        earliest, latest, pause = (
            truck.break_earliest_s,
            truck.break_latest_s,
            truck.break_duration_s,
        )
        if earliest > latest:
            return None
        # The departures without the break (the start's, then each stop's).
        departures = [start.earliest_s]
        for stop, leg in zip(stops, legs, strict=False):
            departures.append(max(departures[-1] + leg, stop.earliest_s) + stop.service_s)
        home = departures[-1] + legs[-1]
        # The break fits before the departure or after the return (the scheduler's
        # comparisons, on the same sums).
        if earliest + pause <= departures[0] + EPS or latest >= home - EPS:
            return True
        # Latest service start at each stop (and arrival at the end) for the rest to hold.
        latest_start = [0.0] * len(stops) + [deadline]
        for k in range(len(stops) - 1, -1, -1):
            stop = stops[k]
            latest_start[k] = min(stop.latest_s, latest_start[k + 1] - legs[k + 1] - stop.service_s)
        unsure = False
        for m, leave in enumerate(departures):
            if leave > latest + EPS:
                break  # this leg and every later one starts after the break's window
            arrive = max(leave + legs[m], earliest) + pause
            begin = max(arrive, stops[m].earliest_s) if m < len(stops) else arrive
            bound = latest_start[m] + EPS
            if abs(begin - bound) < MARGIN:
                unsure = True
            elif begin <= bound:
                return True
        return None if unsure else False
