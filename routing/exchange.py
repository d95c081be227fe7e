"""Moves between routes over a whole plan, cheap enough to run between the rounds of
the iterated decomposition (routing.decompose):

* **relocate**: a point moves next to one of its nearest points on another route
  (before or after it);
* **swap**: a point and one of its nearest points on another route change places;
* **2-opt\\***: two routes swap tails, the point's route going on at its neighbour;
* **or-opt**: a string of 2–3 consecutive points (the point at one end) moves next
  to the neighbour on another route, turned so that the point lies beside it;
* **within a route**: a string of 1–3 points moves next to the neighbour on the
  same route (or-opt), or the legs between the point and the neighbour in one trip
  are driven the other way round (2-opt), so that the two lie side by side.

Candidates come from granular neighbour lists (each point's ``neighbours`` nearest
points) and are ranked by the distance they save on the legs they change; a move is
kept only when both routes, timed exactly (windows, loads, unloads, the break, the
shift end: :class:`routing.timing.RouteTiming`, or
:func:`routing.schedule.route_fault` where that cannot tell), hold and drive less in
all. The
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
from itertools import pairwise

import numpy as np

from routing.budget import Clock
from routing.finish import normalise
from routing.matrix import TravelMatrix
from routing.problem import Problem, Truck, depot_key, point_key, station_key
from routing.schedule import EPS, Start, Visit, route_fault
from routing.timing import RouteTiming

# Each point looks for moves next to this many of its nearest points.
NEIGHBOURS = 10
# The longest string of consecutive points an or-opt move carries.
MAX_STRING = 3
# The kinds of move (improve_routes' ``kinds``): between routes, and within one.
BETWEEN = frozenset({"relocate", "swap", "2-opt*", "or-opt"})
WITHIN = frozenset({"or-opt within", "2-opt within"})
ALL_MOVES = BETWEEN | WITHIN
# Or-opt between routes saved little for its time on a fixed plan (docs/routing.md).
DEFAULT_MOVES = ALL_MOVES - {"or-opt"}


def move_kinds(within: bool) -> frozenset[str]:
    """The default moves, with or without those within a route."""
    return DEFAULT_MOVES if within else DEFAULT_MOVES - WITHIN


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
    # Iterations of ruin and recreate run (routing.ruin), if any.
    ruin_iterations: int = 0


@dataclass(slots=True)
class PlanRoutes:
    """A plan's routes being improved: each truck's visits and distance, where each
    point is served; routes are replaced whole, never changed in place."""

    problem: Problem
    starts: dict[str, Start]
    breaks_done: frozenset[str]
    visits: dict[str, list[Visit]]
    distance_m: dict[str, float]
    where: dict[str, tuple[str, int]] = field(default_factory=dict)
    touched: set[str] = field(default_factory=set)  # trucks whose route a move changed
    timing: RouteTiming = field(init=False)

    def __post_init__(self) -> None:
        self.timing = RouteTiming(self.problem)

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
        if not visits:
            return visits, 0.0
        rows = self.timing.rows(truck, visits, start)
        distance_m = self.problem.matrix_for(truck).distance_m
        return visits, float(distance_m[rows[:-1], rows[1:]].sum())

    def holds(self, truck: Truck, visits: list[Visit]) -> bool:
        """The route's exact timing holds (an empty route always does): the fast
        verdict, or route_fault where that cannot tell."""
        if not visits:
            return True
        start = self.starts.get(truck.truck_id)
        done = truck.truck_id in self.breaks_done
        fast = self.timing.holds(truck, visits, start=start, break_done=done)
        if fast is not None:
            return fast
        return route_fault(self.problem, truck, visits, start=start, break_done=done) is None

    def try_pair(
        self, a: str, new_a: list[Visit], b: str | None, new_b: list[Visit] | None
    ) -> float:
        """Replace routes ``a`` and ``b`` (``b`` None: ``a`` alone) if they hold and
        drive less; the metres saved. The distance is known before the timing, so only
        a real saving is timed."""
        changes = [(a, new_a)] if b is None or new_b is None else [(a, new_a), (b, new_b)]
        prepared: list[tuple[str, Truck, list[Visit], float]] = []
        for truck_id, visits in changes:
            truck = self.problem.truck(truck_id)
            ready = self.prepared(truck, visits)
            if ready is None:
                return 0.0
            prepared.append((truck_id, truck, *ready))
        saved = sum(self.distance_m[t] - dist for t, _, _, dist in prepared)
        if saved <= MIN_GAIN_M:
            return 0.0
        if not all(self.holds(truck, visits) for _, truck, visits, _ in reversed(prepared)):
            return 0.0
        for truck_id, _, visits, dist in prepared:
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
    capacity = truck.capacity_kg + CAPACITY_EPS_KG
    day_cap = truck.day_load_limit_kg + CAPACITY_EPS_KG
    narrow_ok = truck.can_enter_narrow
    points = problem.points
    point_index = problem.point_index
    for v in visits:
        if v.kind == "point":
            p = points[point_index[v.ref_id]]
            if p.stream not in truck.streams or (p.access_class == "narrow" and not narrow_ok):
                return False
            trip.add(p.stream)
            load += p.amount_kg
            day += p.amount_kg
            if load > capacity or day > day_cap:
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
    kinds: frozenset[str] = DEFAULT_MOVES
    # Iterations of ruin and recreate (routing.ruin) after the moves; 0: none; None:
    # for ruin_s seconds, cooling by time.
    ruin_iterations: int | None = 0
    ruin_s: float = 0.0


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
        kinds=job.kinds,
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
    kinds: frozenset[str] = DEFAULT_MOVES,
) -> ExchangeResult:
    """First-improvement moves of ``kinds`` over every route: the moves between
    routes until a pass finds none, then those within a route until a pass finds
    none, again (from the routes they changed) while that saved, until
    ``max_passes`` passes are done or ``deadline`` on ``clock`` passes. With
    ``focus`` (truck ids), only the points of those trucks' routes, and of routes a
    move has changed since, look for moves (the rest of the plan was already at a
    local optimum). Routes that do not hold as given are left alone. The points are
    visited in an order drawn from ``seed``, so the result depends only on the seed
    when the deadline is not hit."""
    starts = starts or {}
    neighbours = neighbours if neighbours is not None else neighbour_lists(problem, NEIGHBOURS)
    routes = PlanRoutes(problem, starts, breaks_done, {}, {})
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
    # The moves between routes first, then those within a route, each until a pass
    # finds none; again while a round of them saves, from the routes they changed.
    phases = [k for k in (kinds & BETWEEN, kinds & WITHIN) if k]
    while passes < max_passes and clock() < deadline:
        saved_this_cycle = 0.0
        for phase in phases:
            while passes < max_passes and clock() < deadline:
                passes += 1
                found, saved = _pass(routes, neighbours, phase, focus, rng, deadline, clock)
                moves += found
                saved_this_cycle += saved
                if saved <= 0:
                    break
        saved_m += saved_this_cycle
        if saved_this_cycle <= 0 or len(phases) < 2:
            break
        focus = (focus or set()) | routes.touched
    changed = {t: v for t, v in routes.visits.items() if v != original.get(t)}
    return ExchangeResult(
        changed=changed,
        distance_m={t: routes.distance_m[t] for t in changed},
        passes=passes,
        moves=moves,
        saved_m=saved_m,
    )


# (estimated saving, truck a, its new route, truck b or None, its new route or None).
Candidate = tuple[float, str, list[Visit], str | None, list[Visit] | None]


def _pass(
    routes: PlanRoutes,
    neighbours: dict[str, list[str]],
    kinds: frozenset[str],
    focus: set[str] | None,
    rng: np.random.Generator,
    deadline: float,
    clock: Clock,
) -> tuple[int, float]:
    """Every point (of the focus routes and those changed since) in a random order
    tries its moves of ``kinds``; the moves made and the metres they saved."""
    points = routes.problem.points
    moves = 0
    saved_m = 0.0
    for pid in [points[i].point_id for i in rng.permutation(len(points))]:
        if clock() >= deadline:
            break
        if pid not in routes.where:
            continue
        if focus is not None and not {routes.where[pid][0]} & (focus | routes.touched):
            continue
        saved = _best_move_for(routes, pid, neighbours.get(pid, ()), kinds)
        if saved > 0:
            moves += 1
            saved_m += saved
    return moves, saved_m


def _best_move_for(
    routes: PlanRoutes, pid: str, near: Sequence[str], kinds: frozenset[str] = DEFAULT_MOVES
) -> float:
    """Try the point's moves next to each neighbour, the largest saving on the changed
    legs first; keep the first that holds. The metres saved."""
    candidates = sorted(_candidates(routes, pid, near, kinds), key=lambda c: -c[0])
    for _, a, new_a, b, new_b in candidates:
        saved = routes.try_pair(a, new_a, b, new_b)
        if saved > 0:
            return saved
    return 0.0


def _candidates(
    routes: PlanRoutes, pid: str, near: Sequence[str], kinds: frozenset[str]
) -> Iterator[Candidate]:
    """Every move of ``kinds`` that puts ``pid`` next to one of its neighbours, with
    its estimated saving (only those that save more than rounding)."""
    problem = routes.problem
    a, i = routes.where[pid]
    ta = problem.truck(a)
    ma = problem.matrix_for(ta)
    va = routes.visits[a]
    pk = point_key(pid)
    prev_a, next_a = routes.key_at(ta, va, i - 1), routes.key_at(ta, va, i + 1)
    removal = ma.distance(prev_a, pk) + ma.distance(pk, next_a) - ma.distance(prev_a, next_a)
    strings = _strings(va, i)
    for qid in near:
        if qid not in routes.where:
            continue
        b, j = routes.where[qid]
        if b == a:
            yield from _within(routes, a, i, j, strings, kinds)
            continue
        tb = problem.truck(b)
        mb = problem.matrix_for(tb)
        vb = routes.visits[b]
        qk = point_key(qid)
        # Relocate before and after the neighbour.
        for at in (j, j + 1) if "relocate" in kinds else ():
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
        # Or-opt: a string of 2-3 points, the point at one end, goes next to the neighbour.
        for s, e in strings if "or-opt" in kinds else ():
            if e - s < 2:
                continue  # one point: relocate
            for at in (j, j + 1):
                rev = (at == j) == (i == s)  # the point, not the string's other end, meets q
                gain = _string_gain(routes, ta, va, s, e, tb, vb, at, rev)
                if gain > MIN_GAIN_M:
                    string = va[s:e][::-1] if rev else va[s:e]
                    yield gain, a, va[:s] + va[e:], b, [*vb[:at], *string, *vb[at:]]
        # Swap: the point takes the neighbour's place and the neighbour the point's.
        before_q, after_q = routes.key_at(tb, vb, j - 1), routes.key_at(tb, vb, j + 1)
        if "swap" in kinds:
            added_a = (
                ma.distance(prev_a, qk) + ma.distance(qk, next_a) - ma.distance(prev_a, next_a)
            )
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
        if "2-opt*" not in kinds:
            continue
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


def _strings(visits: Sequence[Visit], i: int) -> list[tuple[int, int]]:
    """The strings ``visits[s:e]`` of 1 to MAX_STRING consecutive points (no unload
    among them) that begin or end at visit ``i``."""
    out = {(i, i + 1)}
    for length in range(2, MAX_STRING + 1):
        for s in (i, i - length + 1):
            e = s + length
            if s >= 0 and e <= len(visits) and all(v.kind == "point" for v in visits[s:e]):
                out.add((s, e))
    return sorted(out)


def _path_m(matrix: TravelMatrix, keys: Sequence[str]) -> float:
    return sum(matrix.distance(x, y) for x, y in pairwise(keys))


def _string_gain(
    routes: PlanRoutes,
    ta: Truck,
    va: Sequence[Visit],
    s: int,
    e: int,
    tb: Truck,
    vb: Sequence[Visit],
    at: int,
    rev: bool,
) -> float:
    """The metres saved by moving ``va[s:e]`` (turned round if ``rev``) to stand
    before ``vb[at]``; with ``va is vb``, ``at`` must lie outside ``s..e``."""
    ma, mb = routes.problem.matrix_for(ta), routes.problem.matrix_for(tb)
    keys = [point_key(v.ref_id) for v in va[s:e]]
    seq = keys[::-1] if rev else keys
    prev, after = routes.key_at(ta, va, s - 1), routes.key_at(ta, va, e)
    x, y = routes.key_at(tb, vb, at - 1), routes.key_at(tb, vb, at)
    old = ma.distance(prev, keys[0]) + ma.distance(keys[-1], after) + _path_m(ma, keys)
    new = ma.distance(prev, after) + mb.distance(x, seq[0]) + mb.distance(seq[-1], y)
    return old + mb.distance(x, y) - new - _path_m(mb, seq)


def _within(
    routes: PlanRoutes,
    a: str,
    i: int,
    j: int,
    strings: Sequence[tuple[int, int]],
    kinds: frozenset[str],
) -> Iterator[Candidate]:
    """Moves inside route ``a`` that put visit ``i`` next to visit ``j``: a string
    that begins or ends at ``i`` moved beside ``j`` (or-opt), or the visits between
    them driven the other way round, inside one trip (2-opt)."""
    truck = routes.problem.truck(a)
    va = routes.visits[a]
    for s, e in strings if "or-opt within" in kinds else ():
        for at in (j, j + 1):
            if s <= at <= e:
                continue  # the string's own place, or overlapping it
            rev = (at == j) == (i == s) and e - s > 1
            gain = _string_gain(routes, truck, va, s, e, truck, va, at, rev)
            if gain > MIN_GAIN_M:
                string = va[s:e][::-1] if rev else va[s:e]
                rest = va[:s] + va[e:]
                pos = at if at < s else at - (e - s)
                yield gain, a, [*rest[:pos], *string, *rest[pos:]], None, None
    if "2-opt within" not in kinds:
        return
    lo, hi = (i + 1, j + 1) if i < j else (j, i)  # va[lo:hi] turned round
    if hi - lo < 2 or any(v.kind != "point" for v in va[lo:hi]):
        return
    matrix = routes.problem.matrix_for(truck)
    keys = [routes.key_at(truck, va, k) for k in range(lo - 1, hi + 1)]
    inner = keys[1:-1]
    old = matrix.distance(keys[0], inner[0]) + matrix.distance(inner[-1], keys[-1])
    new = matrix.distance(keys[0], inner[-1]) + matrix.distance(inner[0], keys[-1])
    gain = old + _path_m(matrix, inner) - new - _path_m(matrix, inner[::-1])
    if gain > MIN_GAIN_M:
        yield gain, a, [*va[:lo], *va[lo:hi][::-1], *va[hi:]], None, None
