"""Moves between routes over a whole plan, cheap enough to run between the rounds of
the iterated decomposition (routing.decompose):

* **relocate**: a point moves next to one of its nearest points on another route
  (before or after it);
* **swap**: a point and one of its nearest points on another route change places;
* **2-opt\\***: two routes swap tails, the point's route going on at its neighbour.

Candidates come from granular neighbour lists (each point's ``neighbours`` nearest
points) and are ranked by the distance they save on the legs they change; a move is
kept only when both routes, timed exactly (:func:`routing.schedule.route_fault`)
(windows, loads, unloads, the break, the shift end), hold and drive less in all. The
trucks' streams, narrow access and the stations' streams are kept too, so every plan
the moves make passes :mod:`routing.check` whenever the plan they started from did.

A large plan's routes can be cut into groups of nearby routes, each improved in its
own process (:class:`ExchangeJob`, :func:`improve_group`; routing.decompose).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from routing.budget import Clock
from routing.finish import normalise
from routing.problem import Problem, Truck, depot_key, point_key, station_key
from routing.schedule import EPS, Start, Visit, route_fault

# Each point looks for moves next to this many of its nearest points.
NEIGHBOURS = 10
# A move must save more than this (metres) to be tried: rounding is not a gain.
MIN_GAIN_M = 0.5
ROWS_PER_BLOCK = 512
# Loads are compared as the scheduler compares them.
CAPACITY_EPS_KG = EPS


@dataclass(frozen=True, slots=True)
class ExchangeResult:
    """The improved routes (only the trucks whose route changed; an empty list is a
    truck left idle) and what it took."""

    changed: dict[str, list[Visit]]
    distance_m: dict[str, float]
    passes: int
    moves: int
    saved_m: float


@dataclass(slots=True)
class _Routes:
    problem: Problem
    starts: dict[str, Start]
    breaks_done: frozenset[str]
    visits: dict[str, list[Visit]]
    distance_m: dict[str, float]
    where: dict[str, tuple[str, int]] = field(default_factory=dict)
    touched: set[str] = field(default_factory=set)  # trucks whose route a move changed

    def locate(self, truck_id: str) -> None:
        for i, v in enumerate(self.visits[truck_id]):
            if v.kind == "point":
                self.where[v.ref_id] = (truck_id, i)

    def first_key(self, truck: Truck) -> str:
        start = self.starts.get(truck.truck_id)
        return start.key if start is not None else depot_key(truck.start_depot_id)

    def key_at(self, truck: Truck, visits: Sequence[Visit], i: int) -> str:
        """The location of visit ``i``: the start before the first, the end after the last."""
        if i < 0:
            return self.first_key(truck)
        if i >= len(visits):
            return depot_key(truck.end_depot_id)
        v = visits[i]
        return point_key(v.ref_id) if v.kind == "point" else station_key(v.ref_id)

    def prepared(self, truck: Truck, visits: list[Visit]) -> tuple[list[Visit], float] | None:
        """The route normalised and the distance it drives, or None if the truck may
        not carry it (streams, access, loads); not yet timed."""
        start = self.starts.get(truck.truck_id)
        visits = normalise(self.problem, truck, visits, start)
        if not _eligible(self.problem, truck, visits, start):
            return None
        matrix = self.problem.matrix_for(truck)
        keys = [self.first_key(truck), *(self.key_at(truck, visits, i) for i in range(len(visits)))]
        keys.append(depot_key(truck.end_depot_id))
        rows = [matrix.index[k] for k in keys]
        return visits, float(matrix.distance_m[rows[:-1], rows[1:]].sum()) if visits else 0.0

    def holds(self, truck: Truck, visits: list[Visit]) -> bool:
        """The route's exact timing holds (an empty route always does)."""
        if not visits:
            return True
        fault = route_fault(
            self.problem,
            truck,
            visits,
            start=self.starts.get(truck.truck_id),
            break_done=truck.truck_id in self.breaks_done,
        )
        return fault is None

    def try_pair(self, a: str, new_a: list[Visit], b: str, new_b: list[Visit]) -> float:
        """Replace routes ``a`` and ``b`` if both hold and drive less; the metres saved.
        The distance is known before the timing, so only a real saving is timed."""
        truck_a, truck_b = self.problem.truck(a), self.problem.truck(b)
        pa = self.prepared(truck_a, new_a)
        pb = self.prepared(truck_b, new_b) if pa is not None else None
        if pa is None or pb is None:
            return 0.0
        saved = self.distance_m[a] + self.distance_m[b] - pa[1] - pb[1]
        if saved <= MIN_GAIN_M or not self.holds(truck_b, pb[0]) or not self.holds(truck_a, pa[0]):
            return 0.0
        for truck_id, (visits, dist) in ((a, pa), (b, pb)):
            self.visits[truck_id] = visits
            self.distance_m[truck_id] = dist
            self.locate(truck_id)
            self.touched.add(truck_id)
        return saved


def _eligible(problem: Problem, truck: Truck, visits: Sequence[Visit], start: Start | None) -> bool:
    """The truck carries every point's stream and enters every narrow point, no trip
    exceeds its capacity nor the day its daily load, and each unload's station takes
    the streams of the trip it ends."""
    trip: set[str] = set()
    load = start.load_kg if start is not None else 0.0
    day = start.day_load_kg if start is not None else 0.0
    for v in visits:
        if v.kind == "point":
            p = problem.point(v.ref_id)
            if p.stream not in truck.streams:
                return False
            if p.access_class == "narrow" and not truck.can_enter_narrow:
                return False
            trip.add(p.stream)
            load += p.amount_kg
            day += p.amount_kg
            if (
                load > truck.capacity_kg + CAPACITY_EPS_KG
                or day > truck.day_load_limit_kg + CAPACITY_EPS_KG
            ):
                return False
        else:
            if not trip <= problem.station(v.ref_id).streams:
                return False
            trip = set()
            load = 0.0
    return True


def neighbour_lists(problem: Problem, count: int) -> dict[str, list[str]]:
    """Each point's ``count`` nearest points (there and back, on the full matrix)."""
    ids = [p.point_id for p in problem.points]
    k = min(count, len(ids) - 1)
    if k < 1:
        return {pid: [] for pid in ids}
    idx = np.array([problem.matrix.index[point_key(pid)] for pid in ids], dtype=np.int64)
    out: dict[str, list[str]] = {}
    for lo in range(0, len(ids), ROWS_PER_BLOCK):  # blocks of rows: bounded memory
        rows = idx[lo : lo + ROWS_PER_BLOCK]
        both = (
            problem.matrix.distance_m[np.ix_(rows, idx)]
            + problem.matrix.distance_m[np.ix_(idx, rows)].T
        )
        both[np.arange(len(rows)), np.arange(lo, lo + len(rows))] = np.inf
        near = np.argpartition(both, k - 1, axis=1)[:, :k]
        for r in range(len(rows)):
            order = near[r][np.argsort(both[r, near[r]], kind="stable")]
            out[ids[lo + r]] = [ids[j] for j in order if math.isfinite(both[r, j])]
    return out


@dataclass(frozen=True, slots=True)
class ExchangeJob:
    """The moves between the routes of one group, in a process of their own: the
    sub-problem of the group's points and trucks, their routes, the live state, and
    the seconds the moves may take (a cap on that process's clock; under a solution
    limit the passes bound them)."""

    problem: Problem
    visits: dict[str, list[Visit]]
    starts: dict[str, Start]
    breaks_done: frozenset[str]
    max_passes: int
    focus: set[str] | None
    seed: int
    time_limit_s: float


def improve_group(job: ExchangeJob) -> ExchangeResult:
    """:func:`improve_routes` over one group; each point's neighbours are the nearest
    points of the group, the only ones it can move next to."""
    return improve_routes(
        job.problem,
        job.visits,
        starts=job.starts,
        breaks_done=job.breaks_done,
        max_passes=job.max_passes,
        focus=job.focus,
        seed=job.seed,
        deadline=time.monotonic() + job.time_limit_s,
    )


def improve_routes(
    problem: Problem,
    visits_by_truck: dict[str, list[Visit]],
    *,
    starts: dict[str, Start] | None = None,
    breaks_done: frozenset[str] = frozenset(),
    neighbours: dict[str, list[str]] | None = None,
    max_passes: int = 3,
    focus: set[str] | None = None,
    seed: int = 0,
    deadline: float = math.inf,
    clock: Clock = time.monotonic,
) -> ExchangeResult:
    """First-improvement relocate, swap and 2-opt* moves over every route until a
    pass finds none, ``max_passes`` passes are done, or ``deadline`` on ``clock``
    passes. With ``focus`` (truck ids), only the points of those trucks' routes, and
    of routes a move has changed since, look for moves (the rest of the plan was
    already at a local optimum). Routes that do not hold as given are left alone. The points are visited
    in an order drawn from ``seed``, so the result depends only on the seed when the
    deadline is not hit."""
    starts = starts or {}
    neighbours = neighbours if neighbours is not None else neighbour_lists(problem, NEIGHBOURS)
    routes = _Routes(problem, starts, breaks_done, {}, {})
    for truck_id, visits in visits_by_truck.items():
        if clock() >= deadline:
            break  # no time to time every route: no pass either
        truck = problem.truck(truck_id)
        prepared = routes.prepared(truck, list(visits))
        if prepared is not None and prepared[0] and routes.holds(truck, prepared[0]):
            routes.visits[truck_id], routes.distance_m[truck_id] = prepared
            routes.locate(truck_id)
    original = {t: list(v) for t, v in routes.visits.items()}
    rng = np.random.default_rng(seed)
    passes = moves = 0
    saved_m = 0.0
    while passes < max_passes and clock() < deadline:
        passes += 1
        saved_this_pass = 0.0
        for pid in [problem.points[i].point_id for i in rng.permutation(len(problem.points))]:
            if clock() >= deadline:
                break
            if pid not in routes.where:
                continue
            if focus is not None and not {routes.where[pid][0]} & (focus | routes.touched):
                continue
            saved = _best_move_for(routes, pid, neighbours.get(pid, ()))
            if saved > 0:
                moves += 1
                saved_this_pass += saved
        saved_m += saved_this_pass
        if saved_this_pass <= 0:
            break
    changed = {t: v for t, v in routes.visits.items() if v != original.get(t)}
    return ExchangeResult(
        changed=changed,
        distance_m={t: routes.distance_m[t] for t in changed},
        passes=passes,
        moves=moves,
        saved_m=saved_m,
    )


def _best_move_for(routes: _Routes, pid: str, near: Sequence[str]) -> float:
    """Try the point's moves next to each neighbour on another route, the largest
    saving on the changed legs first; keep the first that holds. The metres saved."""
    candidates = sorted(_candidates(routes, pid, near), key=lambda c: -c[0])
    for _, a, new_a, b, new_b in candidates:
        saved = routes.try_pair(a, new_a, b, new_b)
        if saved > 0:
            return saved
    return 0.0


def _candidates(
    routes: _Routes, pid: str, near: Sequence[str]
) -> Iterator[tuple[float, str, list[Visit], str, list[Visit]]]:
    """(estimated saving, truck a, its new route, truck b, its new route) for every
    relocate, swap and 2-opt* move of ``pid`` next to a neighbour on another route."""
    problem = routes.problem
    a, i = routes.where[pid]
    ta = problem.truck(a)
    ma = problem.matrix_for(ta)
    va = routes.visits[a]
    pk = point_key(pid)
    prev_a, next_a = routes.key_at(ta, va, i - 1), routes.key_at(ta, va, i + 1)
    removal = ma.distance(prev_a, pk) + ma.distance(pk, next_a) - ma.distance(prev_a, next_a)
    for qid in near:
        if qid not in routes.where:
            continue
        b, j = routes.where[qid]
        if b == a:
            continue
        tb = problem.truck(b)
        mb = problem.matrix_for(tb)
        vb = routes.visits[b]
        qk = point_key(qid)
        # Relocate before and after the neighbour.
        for at in (j, j + 1):
            x, y = routes.key_at(tb, vb, at - 1), routes.key_at(tb, vb, at)
            added = mb.distance(x, pk) + mb.distance(pk, y) - mb.distance(x, y)
            if removal - added > MIN_GAIN_M:
                yield (
                    removal - added,
                    a,
                    va[:i] + va[i + 1 :],
                    b,
                    [*vb[:at], Visit("point", pid), *vb[at:]],
                )
        # Swap: the point takes the neighbour's place and the neighbour the point's.
        before_q, after_q = routes.key_at(tb, vb, j - 1), routes.key_at(tb, vb, j + 1)
        added_a = ma.distance(prev_a, qk) + ma.distance(qk, next_a) - ma.distance(prev_a, next_a)
        added_b = (
            mb.distance(before_q, pk)
            + mb.distance(pk, after_q)
            - mb.distance(before_q, qk)
            - mb.distance(qk, after_q)
        )
        if removal - added_a - added_b > MIN_GAIN_M:
            yield (
                removal - added_a - added_b,
                a,
                [*va[:i], Visit("point", qid), *va[i + 1 :]],
                b,
                [*vb[:j], Visit("point", pid), *vb[j + 1 :]],
            )
        # 2-opt*: a goes on from the point to the neighbour and b's tail; b from the
        # neighbour's predecessor to a's tail (each truck still goes home to its depot).
        end_a, end_b = depot_key(ta.end_depot_id), depot_key(tb.end_depot_id)
        last_a, last_b = routes.key_at(ta, va, len(va) - 1), routes.key_at(tb, vb, len(vb) - 1)
        old = (
            ma.distance(pk, next_a)
            + ma.distance(last_a, end_a)
            + mb.distance(before_q, qk)
            + mb.distance(last_b, end_b)
        )
        new = (
            ma.distance(pk, qk)
            + ma.distance(last_b, end_a)
            + mb.distance(before_q, next_a)
            + mb.distance(last_a, end_b)
        )
        if old - new > MIN_GAIN_M:
            yield old - new, a, va[: i + 1] + vb[j:], b, vb[:j] + va[i + 1 :]
