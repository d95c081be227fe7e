"""Large districts: a first plan by territories, then iterated decomposition over
the plan itself (POPMUSIC), so that nothing stays frozen at a territory border.

1. **First plan.** The district is cut into compact territories by recursive
   bisection of the points' positions (each at most ``max_points_per_solve``
   points, balanced by count); trucks are shared out among them by the working time
   each kind of truck needs there, nearest depot first. Each piece is an ordinary
   :class:`Problem` over the sub-matrix of its locations, solved by
   :func:`routing.search.solve_direct` in its own process (OR-Tools holds the GIL),
   and the plans are stitched into one.
2. **Improvement.** Repeatedly, a seed route and the routes whose centroids lie
   nearest to it (about ``neighbourhood_points`` points in all) form a sub-problem
   with their trucks and the points left out nearby; OR-Tools re-optimises it
   warm-started from those routes, and the result replaces them when it serves at
   least as many points for less distance (the other routes are untouched, so the
   whole plan improves). Each round solves one disjoint neighbourhood per worker in
   parallel. A seed whose neighbourhood did not improve is not tried again until one
   of its routes changes (POPMUSIC; Santini, Schneider, Vidal & Vigo 2023). Before
   the rounds (once the points the territories left out are inserted) and between
   them, moves between routes and within a route (routing.exchange) run over the
   plan: the first call in groups of nearby routes, one process per worker, with
   ruin and recreate too (routing.ruin: ``ruin_share`` of the budget at most, or
   ``ruin_iterations``).
3. **Finishing** on the whole district: every route timed, points still left out
   offered to every route, each one left out given its reason.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np

from routing.budget import OVERRUN_S, OVERRUN_SHARE, Budget, Clock
from routing.exchange import (
    NEIGHBOURS,
    ExchangeJob,
    ExchangeResult,
    improve_group,
    improve_routes,
    move_kinds,
    neighbour_lists,
)
from routing.finish import finish_plan, make_plan, route_visits
from routing.options import SolverOptions
from routing.pieces import PieceRunner, SubSolve, solve_sub
from routing.plan import Plan, Unassigned
from routing.problem import Point, Problem, Truck, depot_key, point_key, station_key
from routing.processes import die_with
from routing.ruin import improve_and_ruin_group
from routing.schedule import Visit
from routing.screen import screen

# Kept back from each round of parallel solves for process hand-over and pickling.
ROUND_MARGIN_S = 1.0
# A neighbourhood is not worth a solve shorter than this.
MIN_SLOT_S = 2.0
# What a territory's first plan needs per point of the largest piece (measured:
# 375-point pieces at 6.5 s left points out, at 13 s none).
MIN_PIECE_S_PER_POINT = 0.035
# Rounds of improvement when a solution limit (not the clock) bounds the search.
COUNTED_ROUNDS = 3
# Kept from the territories for the moves between routes over the stitched plan, per
# point and worker (the groups of routes are improved in parallel).
MOVES_S_PER_POINT = 0.004

_A = TypeVar("_A")
_R = TypeVar("_R")
Mapper = Callable[[Callable[[_A], _R], list[_A]], list[_R]]


@dataclass(frozen=True, slots=True)
class Piece:
    points: tuple[Point, ...]
    trucks: tuple[Truck, ...]


def _xy(problem: Problem, points: Sequence[Point]) -> np.ndarray:
    lat0 = float(np.mean([p.lat for p in points])) if points else 0.0
    k = math.cos(math.radians(lat0))
    return np.array([[p.lon * k, p.lat] for p in points], dtype=np.float64)


def split_points(problem: Problem, max_points: int, multiple_of: int = 1) -> list[list[Point]]:
    """Compact, balanced territories of at most ``max_points``: recursive bisection
    along the wider axis. The number of pieces is a multiple of ``multiple_of`` (the
    workers), so that no worker idles through a round of solves: a district below
    ``max_points`` that is decomposed (``SolverOptions.improve_above_points``) is cut
    into one territory per worker."""
    pieces: list[list[Point]] = []

    def bisect(points: list[Point], parts: int) -> None:
        if parts <= 1:
            pieces.append(points)
            return
        xy = _xy(problem, points)
        axis = 0 if np.ptp(xy[:, 0]) >= np.ptp(xy[:, 1]) else 1
        order = np.argsort(xy[:, axis], kind="stable")
        left_parts = parts // 2
        cut = round(len(points) * left_parts / parts)
        bisect([points[i] for i in order[:cut]], left_parts)
        bisect([points[i] for i in order[cut:]], parts - left_parts)

    parts = max(1, math.ceil(len(problem.points) / max_points))
    parts = min(max(1, len(problem.points)), math.ceil(parts / multiple_of) * multiple_of)
    bisect(list(problem.points), parts)
    return [p for p in pieces if p]


def _truck_kind(t: Truck) -> tuple[Any, ...]:
    return (frozenset(t.streams), t.can_enter_narrow, t.capacity_kg)


def share_trucks(problem: Problem, territories: list[list[Point]]) -> list[list[Truck]]:
    """Give each territory trucks of each kind (streams, narrow access, capacity) in
    proportion to the working time that kind needs there, nearest depot first.

    A point's working time is its service plus its share of the trips to unload
    (its amount over the truck's capacity, times a round trip to the nearest station
    that takes its stream, tipping included): a truck's day runs out of hours before
    it runs out of loads. Shared by kilograms, the 3,000-point district left 4–14
    points with no shift to fit them; shared by working time, none (docs/routing.md)."""
    kinds: dict[tuple[Any, ...], list[Truck]] = defaultdict(list)
    for t in problem.trucks:
        kinds[_truck_kind(t)].append(t)
    demand = np.zeros((len(territories), len(kinds)))
    kind_keys = list(kinds)
    for ti, pts in enumerate(territories):
        for p in pts:
            able = [
                k
                for k, key in enumerate(kind_keys)
                if p.stream in key[0] and (p.access_class != "narrow" or key[1])
            ]
            unload_s = _unload_round_trip_s(problem, p)
            for k in able:
                capacity = max(kind_keys[k][2], 1.0)
                work_s = p.service_time_s + p.amount_kg / capacity * unload_s
                demand[ti, k] += max(work_s, 1.0) / len(able)
    centroids = [
        (float(np.mean([p.lat for p in pts])), float(np.mean([p.lon for p in pts])))
        for pts in territories
    ]
    out: list[list[Truck]] = [[] for _ in territories]
    for k, key in enumerate(kind_keys):
        trucks = kinds[key]
        col = demand[:, k]
        if col.sum() <= 0:
            continue
        quota = col / col.sum() * len(trucks)
        counts = np.floor(quota).astype(int)
        # Every territory with work for this kind gets at least one, if possible.
        need = [i for i in range(len(territories)) if col[i] > 0 and counts[i] == 0]
        rest = len(trucks) - int(counts.sum())
        for i in sorted(need, key=lambda i: -quota[i])[: max(0, rest)]:
            counts[i] += 1
        rest = len(trucks) - int(counts.sum())
        for i in np.argsort(-(quota - counts))[: max(0, rest)]:
            counts[i] += 1
        # Nearest depot first: hand out trucks territory by territory.
        pool = list(trucks)
        for i in np.argsort(-counts):
            lat, lon = centroids[i]
            pool.sort(
                key=lambda t: (
                    (problem.depot(t.start_depot_id).lat - lat) ** 2
                    + (problem.depot(t.start_depot_id).lon - lon) ** 2
                )
            )
            out[i].extend(pool[: counts[i]])
            pool = pool[counts[i] :]
    return out


def _unload_round_trip_s(problem: Problem, p: Point) -> float:
    """To the nearest station that takes the point's stream, tip, and back."""
    pk = point_key(p.point_id)
    trips = [
        problem.matrix.duration(pk, station_key(s.station_id))
        + problem.matrix.duration(station_key(s.station_id), pk)
        + s.tipping_time_s
        for s in problem.stations
        if p.stream in s.streams
    ]
    return min(trips, default=0.0)


def sub_problem(problem: Problem, piece: Piece, name: str) -> Problem:
    depots = sorted(
        {t.start_depot_id for t in piece.trucks} | {t.end_depot_id for t in piece.trucks}
    )
    if not depots:
        depots = [problem.depots[0].depot_id]
    keys = (
        [depot_key(d) for d in depots]
        + [station_key(s.station_id) for s in problem.stations]
        + [point_key(p.point_id) for p in piece.points]
    )
    return Problem(
        points=piece.points,
        stations=problem.stations,
        depots=tuple(problem.depot(d) for d in depots),
        trucks=piece.trucks,
        matrix=problem.matrix.subset(keys),
        matrix_no_narrow=(
            problem.matrix_no_narrow.subset(keys) if problem.matrix_no_narrow is not None else None
        ),
        name=name,
    )


@dataclass(slots=True)
class _Current:
    """The plan being improved: visits and distance by truck, points left out."""

    visits: dict[str, list[Visit]]
    distance_m: dict[str, float]
    left_out: list[str]
    exchange_moves: int = 0
    exchange_saved_m: float = 0.0
    exchange_calls: int = 0
    exchange_s: float = 0.0
    ruin_iterations: int = 0

    def served(self, trucks: Sequence[str]) -> int:
        return sum(1 for t in trucks for v in self.visits.get(t, ()) if v.kind == "point")

    def centroids(self, problem: Problem) -> dict[str, np.ndarray]:
        """Each route's mean point position (``_xy`` units); empty routes have none."""
        xy = _xy(problem, problem.points)
        row = {p.point_id: i for i, p in enumerate(problem.points)}
        out: dict[str, np.ndarray] = {}
        for truck_id, visits in self.visits.items():
            rows = [row[v.ref_id] for v in visits if v.kind == "point"]
            if rows:
                out[truck_id] = xy[rows].mean(axis=0)
        return out


@contextmanager
def _mapper(workers: int, runner: PieceRunner | None = None) -> Iterator[Mapper[Any, Any]]:
    """``map`` over jobs: by ``runner`` when given (all of a round submitted, then
    waited for), in this process for one worker, else in a pool of processes
    (fork: no re-import of the caller's ``__main__``; this process never runs an
    OR-Tools search while it decomposes). The pool's processes die with this one."""
    if runner is not None:
        yield lambda _fn, jobs: [f.result() for f in [runner.submit(j) for j in jobs]]
        return
    if workers <= 1:
        yield lambda fn, jobs: [fn(j) for j in jobs]
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context(method),
        initializer=die_with,
        initargs=(os.getpid(),),
    ) as pool:
        yield lambda fn, jobs: list(pool.map(fn, jobs))


def solve_decomposed(
    problem: Problem,
    *,
    time_limit_s: float,
    seed: int = 0,
    options: SolverOptions | None = None,
    clock: Clock = time.monotonic,
    runner: PieceRunner | None = None,
) -> Plan:
    """First plan by territories, improved by neighbourhoods of routes, finished on
    the whole district; returns within the budget (:mod:`routing.budget`). The pieces
    run in a pool of this machine's processes, or by ``runner`` (routing.pieces)."""
    budget = Budget.of(time_limit_s, clock)
    options = options or SolverOptions()
    workers = max(1, options.workers or os.cpu_count() or 1)
    if runner is not None:
        workers = max(1, runner.parallelism)
    explained = screen(problem, dict(options.starts), options.breaks_done).unassigned
    unservable = {u.point_id for u in explained}
    sub_options = replace(options, max_points_per_solve=10**9)
    with _mapper(workers, runner) as run_all:
        territories = split_points(
            problem, options.points_per_solve(bool(problem.stations)), multiple_of=workers
        )
        current, pieces, status = _first_plan(
            problem, territories, budget, seed, sub_options, workers, unservable, run_all
        )
        first_km = sum(current.distance_m.values()) / 1000.0
        first_left_out = len(current.left_out)
        if current.left_out and options.exchange_passes and options.improve_rounds != 0:
            _insert_left_out(problem, current, explained, budget, options)
        # Groups of routes take their moves to the pool (a runner takes only pieces;
        # a live start's position is not among a group's locations).
        moves_map = run_all if runner is None and workers > 1 and not options.starts else None
        rounds, tried, accepted, eliminated = _improve(
            problem, current, budget, seed, sub_options, workers, run_all, moves_map
        )
    routes, final_unassigned = finish_plan(
        problem,
        current.visits,
        explained,
        starts=dict(options.starts),
        breaks_done=options.breaks_done,
        repair=True,
        time_budget_s=time_limit_s if options.solution_limit is not None else budget.overrun_s(),
        clock=clock,
    )
    notes = (
        f"{pieces} pieces; {rounds} rounds of {workers} workers: "
        f"{accepted} of {tried} neighbourhoods improved ({eliminated} with a truck fewer); "
        f"{current.exchange_moves} moves between routes saved "
        f"{current.exchange_saved_m / 1000.0:.1f} km "
        f"({current.exchange_calls} calls, {current.exchange_s:.1f} s; "
        f"{current.ruin_iterations} iterations of ruin and recreate)",
        f"first plan {first_km:.1f} km ({len(current.visits)} routes, {first_left_out} "
        f"points left out), after improvement {sum(current.distance_m.values()) / 1000.0:.1f} "
        f"km ({len(current.left_out)} left out)",
    )
    return make_plan(
        problem,
        routes,
        final_unassigned,
        solve_time_s=budget.elapsed_s(),
        seed=seed,
        status=status,
        pieces=pieces,
        notes=notes,
    )


def _slot_s(budget: Budget, usable_s: float, rounds: int) -> float:
    """The time limit of one solve in a round, so that ``rounds`` rounds of them
    (each returning within its limit × 1.05 + 2 s) end inside ``usable_s``."""
    per_round = usable_s / max(1, rounds) - ROUND_MARGIN_S - OVERRUN_S
    return per_round / (1.0 + OVERRUN_SHARE)


def _first_plan(
    problem: Problem,
    territories: list[list[Point]],
    budget: Budget,
    seed: int,
    options: SolverOptions,
    workers: int,
    unservable: set[str],
    run_all: Mapper[Any, Any],
) -> tuple[_Current, int, str]:
    """Territories solved in parallel and stitched (not yet re-timed as a whole)."""
    fleets = share_trucks(problem, territories)
    pieces = [Piece(tuple(p), tuple(f)) for p, f in zip(territories, fleets, strict=True)]
    waves = math.ceil(len(pieces) / max(1, min(workers, len(pieces))))
    usable = budget.remaining_s() - budget.finishing_reserve_s()
    if options.exchange_passes and options.improve_rounds != 0:
        # Time for the moves between routes across the territories' borders.
        usable -= MOVES_S_PER_POINT * len(problem.points) / workers
    # Each piece gets at least what a first plan of its size needs, else the whole
    # budget (3,000 points in 60 s: with half of it, the pieces left 26 points out
    # and the plan came out 25 % longer than with all of it; docs/routing.md).
    largest = max((len(p.points) for p in pieces), default=0)
    needed = waves * (MIN_PIECE_S_PER_POINT * largest + ROUND_MARGIN_S)
    share = max(options.first_plan_share, min(1.0, needed / max(usable, 1e-9)))
    if options.improve_rounds == 0:
        share = 1.0
    # A piece's solve keeps its own finishing inside its limit; what the waves take
    # beyond their slots is taken from the improvement, which checks the clock.
    slot = max(1.0, usable * share / waves - ROUND_MARGIN_S)
    piece_options = options
    if options.first_plan_solution_limit is not None and options.solution_limit is None:
        # Counts bound the pieces; their slot is only a cap: all the usable time.
        piece_options = replace(options, solution_limit=options.first_plan_solution_limit)
        slot = max(1.0, usable / waves - ROUND_MARGIN_S)
    jobs = [
        SubSolve(sub_problem(problem, piece, f"{problem.name}#{i}"), slot, seed, piece_options)
        for i, piece in enumerate(pieces)
        if piece.trucks
    ]
    plans: list[Plan] = run_all(solve_sub, jobs)
    current = _Current({}, {}, [])
    for plan in plans:
        for route in plan.routes:
            current.visits[route.truck_id] = route_visits(route)
            current.distance_m[route.truck_id] = route.distance_m
    served = {v.ref_id for vs in current.visits.values() for v in vs if v.kind == "point"}
    current.left_out = [
        p.point_id
        for p in problem.points
        if p.point_id not in served and p.point_id not in unservable
    ]
    status = ",".join(sorted({p.stats.status for p in plans})) or "empty"
    return current, len(pieces), status


def _insert_left_out(
    problem: Problem,
    current: _Current,
    explained: Sequence[Unassigned],
    budget: Budget,
    options: SolverOptions,
) -> None:
    """The points the territories left out, inserted where they fit best in the whole
    plan, so that the moves between routes polish the plan with them in it (inserted
    only at the end, they would stay where they landed)."""
    counted = options.solution_limit is not None
    routes, unassigned = finish_plan(
        problem,
        current.visits,
        explained,
        starts=dict(options.starts),
        breaks_done=options.breaks_done,
        repair=True,
        time_budget_s=(
            budget.limit_s if counted else budget.remaining_s() - budget.finishing_reserve_s()
        ),
        clock=budget.clock,
    )
    current.visits = {r.truck_id: route_visits(r) for r in routes if r.point_ids}
    current.distance_m = {r.truck_id: r.distance_m for r in routes if r.point_ids}
    explained_ids = {u.point_id for u in explained}
    current.left_out = [u.point_id for u in unassigned if u.point_id not in explained_ids]


def _improve(
    problem: Problem,
    current: _Current,
    budget: Budget,
    seed: int,
    options: SolverOptions,
    workers: int,
    run_all: Mapper[Any, Any],
    moves_map: Mapper[Any, Any] | None,
) -> tuple[int, int, int, int]:
    """Rounds of neighbourhood re-optimisation until the budget (or
    ``options.improve_rounds``, or, with a solution limit, ``COUNTED_ROUNDS``) runs
    out, moves between routes before each; returns (rounds, neighbourhoods tried,
    improved, improved with a truck fewer)."""
    max_rounds = options.improve_rounds
    if max_rounds is None and options.solution_limit is not None:
        max_rounds = COUNTED_ROUNDS
    rng = np.random.default_rng(seed)
    tried_seeds: set[str] = set()
    rounds = tried = accepted = eliminated = 0
    near = neighbour_lists(problem, NEIGHBOURS) if options.exchange_passes else {}
    moves = _Moves(problem, current, budget, seed, options, near, tried_seeds, workers, moves_map)
    # Moves between routes run over the first plan, then from the routes each round
    # changed and those a split kept apart (the rest stays at its local optimum).
    exchange = bool(options.exchange_passes) and (max_rounds is None or max_rounds > 0)
    while max_rounds is None or rounds < max_rounds:
        if exchange and (moves.pending is None or moves.pending):
            moves.call()
        if options.solution_limit is None:
            usable = budget.remaining_s() - budget.finishing_reserve_s()
            slot = min(options.neighbourhood_s, _slot_s(budget, usable, 1))
            if slot < MIN_SLOT_S:
                break
        else:
            slot = budget.limit_s  # a cap only: counts bound each solve
        groups = neighbourhoods(
            problem, current, options.neighbourhood_points, workers, tried_seeds, rng
        )
        if not groups:
            if not tried_seeds:
                break
            tried_seeds.clear()  # every seed tried: start over with new search seeds
            continue
        jobs = []
        without: list[str | None] = []
        for i, (seed_truck, trucks, extra) in enumerate(groups):
            tried_seeds.add(seed_truck)
            # Every other neighbourhood is offered one truck fewer (the one serving the
            # fewest points): the search alone seldom empties a truck's whole day.
            fewer = options.route_elimination and len(trucks) > 1 and (rounds + i) % 2 == 1
            victim = min(trucks, key=lambda t: current.served([t])) if fewer else None
            without.append(victim)
            sub = _neighbourhood_problem(problem, current, trucks, extra, rounds, victim)
            initial = {t: current.visits[t] for t in trucks if t in current.visits and t != victim}
            jobs.append(SubSolve(sub, slot, seed + 1 + rounds * workers + i, options, initial))
        plans: list[Plan] = run_all(solve_sub, jobs)
        for (_, trucks, _), plan, victim in zip(groups, plans, without, strict=True):
            tried += 1
            if _better(current, trucks, plan):
                accepted += 1
                eliminated += victim is not None
                _accept(current, trucks, plan)
                tried_seeds.difference_update(trucks)
                if moves.pending is not None:
                    moves.pending.update(trucks)
        rounds += 1
    if exchange and moves.pending:
        moves.call()
    return rounds, tried, accepted, eliminated


@dataclass(slots=True)
class _Moves:
    """Moves between routes (routing.exchange) over the plan being improved. The first
    call covers every route: with a pool, the routes are cut into one group of nearby
    routes per worker, each group improved in its own process. Later calls start from
    the few routes still pending and run over the whole plan in this process (cutting
    and sending the sub-problems cost more than the moves there; docs/routing.md)."""

    problem: Problem
    current: _Current
    budget: Budget
    seed: int
    options: SolverOptions
    near: dict[str, list[str]]
    tried_seeds: set[str]
    workers: int
    moves_map: Mapper[Any, Any] | None
    # The routes whose moves are still to try (None: every route).
    pending: set[str] | None = None

    def call(self) -> int:
        """One call from the pending routes, until the finishing reserve at most; the
        moves made. Afterwards only the routes it left with a near neighbour on
        another group's route are pending (rounds add the routes they change)."""
        counted = self.options.solution_limit is not None
        budget = self.budget
        left_s = budget.remaining_s() - (0.0 if counted else budget.finishing_reserve_s())
        if left_s <= 0:
            self.pending = set()
            return 0
        started = budget.clock()
        focus = self.pending
        if self.moves_map is None or focus is not None:
            groups = [sorted(self.current.visits)]
            results = [self._whole_plan(focus, budget.clock() + left_s)]
        else:
            groups = route_groups(self.problem, self.current, self.workers)
            jobs = self._jobs(groups, focus, max(0.0, left_s - ROUND_MARGIN_S))
            group_fn = improve_and_ruin_group if self.options.ruin_count() != 0 else improve_group
            results = self.moves_map(group_fn, [job for job in jobs if job is not None])
        touched: set[str] = set()
        moves = 0
        for result in results:
            moves += result.moves
            self.current.ruin_iterations += result.ruin_iterations
            touched.update(result.changed)
            self._merge(result)
        examined = set(self.current.visits) if focus is None else focus | touched
        self.pending = _cut_routes(self.current, groups, self.near) & examined
        self.current.exchange_calls += 1
        self.current.exchange_s += budget.clock() - started
        return moves

    def _whole_plan(self, focus: set[str] | None, deadline: float) -> ExchangeResult:
        return improve_routes(
            self.problem,
            self.current.visits,
            starts=dict(self.options.starts),
            breaks_done=self.options.breaks_done,
            neighbours=self.near,
            max_passes=self.options.exchange_passes,
            focus=focus,
            seed=self.seed + self.current.exchange_calls,
            deadline=deadline,
            clock=self.budget.clock,
            kinds=move_kinds(self.options.moves_within),
        )

    def _jobs(
        self, groups: list[list[str]], focus: set[str] | None, limit_s: float
    ) -> list[ExchangeJob | None]:
        """A job per group (None for a group with no pending route)."""
        jobs: list[ExchangeJob | None] = []
        for i, group in enumerate(groups):
            group_focus = None if focus is None else focus & set(group)
            if group_focus is not None and not group_focus:
                jobs.append(None)
                continue
            visits = {t: self.current.visits[t] for t in group}
            points = tuple(
                self.problem.point(v.ref_id)
                for vs in visits.values()
                for v in vs
                if v.kind == "point"
            )
            trucks = tuple(self.problem.truck(t) for t in group)
            name = f"{self.problem.name}/moves{self.current.exchange_calls}.{i}"
            jobs.append(
                ExchangeJob(
                    problem=sub_problem(self.problem, Piece(points, trucks), name),
                    visits=visits,
                    starts={t: s for t, s in self.options.starts if t in visits},
                    breaks_done=self.options.breaks_done,
                    max_passes=self.options.exchange_passes,
                    focus=group_focus,
                    seed=self.seed + self.current.exchange_calls * len(groups) + i,
                    time_limit_s=limit_s,
                    kinds=move_kinds(self.options.moves_within),
                    ruin_iterations=self.options.ruin_count(),
                    ruin_s=self.options.ruin_share * self.budget.limit_s,
                )
            )
        return jobs

    def _merge(self, result: ExchangeResult) -> None:
        current = self.current
        for truck_id, visits in result.changed.items():
            if visits:
                current.visits[truck_id] = visits
                current.distance_m[truck_id] = result.distance_m[truck_id]
            else:
                current.visits.pop(truck_id, None)
                current.distance_m.pop(truck_id, None)
        self.tried_seeds.difference_update(result.changed)  # a changed route: try its seed
        current.exchange_moves += result.moves
        current.exchange_saved_m += result.saved_m


def route_groups(problem: Problem, current: _Current, count: int) -> list[list[str]]:
    """The plan's routes in up to ``count`` west-to-east strips of nearby routes, by
    their centroids, about as many points in each strip."""
    centroid = current.centroids(problem)
    index = problem.truck_index
    order = sorted(centroid, key=lambda t: (float(centroid[t][0]), index[t]))
    total = max(1, current.served(order))
    groups: list[list[str]] = [[] for _ in range(max(1, count))]
    done = 0
    for t in order:
        n = current.served([t])
        # A route goes to the strip that holds the middle of its points in the order.
        k = min(len(groups) - 1, int((done + n / 2) * len(groups) / total))
        groups[k].append(t)
        done += n
    return [g for g in groups if g]


def _cut_routes(current: _Current, groups: list[list[str]], near: dict[str, list[str]]) -> set[str]:
    """The routes with a point whose near neighbour lies on a route of another group:
    the moves between them were not tried."""
    group_of = {t: k for k, g in enumerate(groups) for t in g}
    route_of = {v.ref_id: t for t, vs in current.visits.items() for v in vs if v.kind == "point"}
    cut: set[str] = set()
    for pid, truck_id in route_of.items():
        k = group_of.get(truck_id)
        if any(group_of.get(route_of.get(q, ""), k) != k for q in near.get(pid, ())):
            cut.add(truck_id)
    return cut


def neighbourhoods(
    problem: Problem,
    current: _Current,
    size: int,
    count: int,
    tried_seeds: set[str],
    rng: np.random.Generator,
) -> list[tuple[str, list[str], list[str]]]:
    """Up to ``count`` disjoint neighbourhoods: (seed truck, trucks, points left out
    nearby). A neighbourhood is a seed route not yet tried and the routes whose
    centroids lie nearest to its own, until they hold about ``size`` points."""
    index = problem.truck_index
    xy = _xy(problem, problem.points)
    row = {p.point_id: i for i, p in enumerate(problem.points)}
    centroid = current.centroids(problem)
    free = sorted(centroid, key=lambda t: index[t])
    out: list[tuple[str, list[str], list[str]]] = []
    for _ in range(count):
        seeds = [t for t in free if t not in tried_seeds]
        if not seeds:
            break
        seed_truck = seeds[int(rng.integers(len(seeds)))]
        near = sorted(
            free,
            key=lambda t: (float(np.sum((centroid[t] - centroid[seed_truck]) ** 2)), index[t]),
        )
        group: list[str] = []
        n = 0
        for t in near:
            if group and n >= size:
                break
            group.append(t)
            n += current.served([t])
        out.append((seed_truck, group, []))
        taken = set(group)
        free = [t for t in free if t not in taken]
    # Points left out go to the neighbourhood whose routes lie nearest.
    if out and current.left_out:
        centres = np.array([np.mean([centroid[t] for t in g], axis=0) for _, g, _ in out])
        for pid in current.left_out:
            k = int(np.argmin(np.sum((centres - xy[row[pid]]) ** 2, axis=1)))
            out[k][2].append(pid)
    return out


def _neighbourhood_problem(
    problem: Problem,
    current: _Current,
    trucks: list[str],
    extra: list[str],
    rnd: int,
    without: str | None = None,
) -> Problem:
    """The points of the trucks' routes and ``extra``, with the trucks but ``without``."""
    pids = [v.ref_id for t in trucks for v in current.visits.get(t, ()) if v.kind == "point"]
    points = tuple(problem.point(pid) for pid in [*pids, *extra])
    piece = Piece(points, tuple(problem.truck(t) for t in trucks if t != without))
    return sub_problem(problem, piece, f"{problem.name}~{rnd}:{trucks[0]}")


def _better(current: _Current, trucks: list[str], plan: Plan) -> bool:
    """More points served, or as many for less distance (by more than rounding)."""
    served_before = current.served(trucks)
    served_after = sum(len(r.point_ids) for r in plan.routes)
    if served_after != served_before:
        return served_after > served_before
    before = sum(current.distance_m.get(t, 0.0) for t in trucks)
    return plan.stats.distance_m < before - 1e-6 * max(1.0, before)


def _accept(current: _Current, trucks: list[str], plan: Plan) -> None:
    before = [v.ref_id for t in trucks for v in current.visits.get(t, ()) if v.kind == "point"]
    for t in trucks:
        current.visits.pop(t, None)
        current.distance_m.pop(t, None)
    for route in plan.routes:
        current.visits[route.truck_id] = route_visits(route)
        current.distance_m[route.truck_id] = route.distance_m
    served = {pid for r in plan.routes for pid in r.point_ids}
    left = [*current.left_out, *before]
    current.left_out = [pid for pid in left if pid not in served]
