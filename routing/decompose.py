"""Large districts: split by territory, solve the pieces in parallel, stitch.

A district of thousands of points is cut into compact territories by recursive
bisection of the points' positions (each piece at most ``max_points_per_solve``
points, balanced by count). Trucks are shared out among the pieces in proportion to
the waste each kind of truck (same streams, narrow-lane access, depot) can collect
there, nearest depot first. Each piece is an ordinary :class:`Problem` over the
sub-matrix of its locations, solved by :func:`routing.search.solve_direct` in its own
process (OR-Tools holds the GIL), and the plans are stitched into one. Points a piece
could not serve are then offered to every route of the district.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from routing.finish import finish_plan, make_plan, repair_budget_s
from routing.options import SolverOptions
from routing.plan import Plan, Route, Unassigned
from routing.problem import Point, Problem, Truck, depot_key, point_key, station_key
from routing.schedule import Visit
from routing.screen import screen
from routing.search import solve_direct

# Time kept back from the budget for splitting, process start-up and stitching (with
# the re-offer of the points the pieces left out to the whole district), and for
# each round of piece solves going a little over its slot.
OVERHEAD_S = 8.0
STITCH_SHARE = 0.05
ROUND_MARGIN_S = 2.0


@dataclass(frozen=True, slots=True)
class Piece:
    points: tuple[Point, ...]
    trucks: tuple[Truck, ...]


def _xy(problem: Problem, points: Sequence[Point]) -> np.ndarray:
    lat0 = float(np.mean([p.lat for p in points])) if points else 0.0
    k = math.cos(math.radians(lat0))
    return np.array([[p.lon * k, p.lat] for p in points], dtype=np.float64)


def split_points(problem: Problem, max_points: int, multiple_of: int = 1) -> list[list[Point]]:
    """Compact, balanced territories: recursive bisection along the wider axis. When
    the problem must be cut, the number of pieces is a multiple of ``multiple_of``
    (the workers), so that no worker idles through the last round of solves."""
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
    if parts > 1:
        parts = math.ceil(parts / multiple_of) * multiple_of
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


def _solve_piece(args: tuple[Problem, float, int, SolverOptions]) -> Plan:
    problem, time_limit_s, seed, options = args
    return solve_direct(problem, time_limit_s=time_limit_s, seed=seed, options=options)


def solve_decomposed(
    problem: Problem,
    *,
    time_limit_s: float,
    seed: int = 0,
    options: SolverOptions | None = None,
) -> Plan:
    """Split, solve the pieces in parallel processes, stitch, re-offer leftovers."""
    t0 = time.monotonic()
    options = options or SolverOptions()
    workers = max(1, options.workers or os.cpu_count() or 1)
    territories = split_points(problem, options.max_points_per_solve, multiple_of=workers)
    fleets = share_trucks(problem, territories)
    pieces = [Piece(tuple(p), tuple(f)) for p, f in zip(territories, fleets, strict=True)]
    workers = min(workers, len(pieces))
    waves = math.ceil(len(pieces) / workers)
    overhead = min(
        max(OVERHEAD_S + 0.02 * len(problem.points) / 100, STITCH_SHARE * time_limit_s)
        + ROUND_MARGIN_S * waves,
        0.3 * time_limit_s,
    )
    slot = max(1.0, (time_limit_s - overhead - (time.monotonic() - t0)) / waves)
    # A piece's solve runs its search for its time limit, then may repair for up to
    # repair_budget_s more: the limit leaves room for that inside the slot (without it
    # a district of four rounds ran ~30 s over its budget).
    per_piece = max(1.0, slot - repair_budget_s(slot))
    piece_options = replace(options, max_points_per_solve=10**9)
    jobs = []
    unassigned: list[Unassigned] = []
    for i, piece in enumerate(pieces):
        if not piece.trucks:
            unassigned.extend(
                Unassigned(point_id=p.point_id, reason="no_truck") for p in piece.points
            )
            continue
        jobs.append(
            (sub_problem(problem, piece, f"{problem.name}#{i}"), per_piece, seed, piece_options)
        )
    plans: list[Plan] = []
    if workers == 1 or len(jobs) <= 1:
        plans = [_solve_piece(job) for job in jobs]
    else:
        # fork: no re-import of the caller's __main__ (spawn would need the caller to
        # guard it); the parent has not started any OR-Tools search at this point.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        ctx = multiprocessing.get_context(method)
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            plans = list(pool.map(_solve_piece, jobs))
    # Stitch: every route is re-timed on the whole problem; leftovers are offered to
    # every route of the district.
    visits_by_truck: dict[str, list[Visit]] = {}
    for plan in plans:
        for route in plan.routes:
            visits_by_truck[route.truck_id] = [
                Visit(s.kind, s.ref_id)
                for s in route.stops
                if s.kind in ("point", "station") and s.ref_id is not None
            ]
    # Points a piece could not serve are offered to the whole district again; points
    # no truck of the district could ever serve keep the reason found for them.
    explained = screen(problem, dict(options.starts), options.breaks_done).unassigned
    remaining = max(2.0, time_limit_s - (time.monotonic() - t0) - 1.0)
    if options.solution_limit is not None:  # bounded by counts: the clock is only a cap
        remaining = time_limit_s
    routes, final_unassigned = finish_plan(
        problem,
        visits_by_truck,
        explained,
        starts=dict(options.starts),
        breaks_done=options.breaks_done,
        repair=True,
        time_budget_s=remaining,
    )
    notes = (f"{len(pieces)} pieces, {workers} workers, {per_piece:.0f} s each",)
    return make_plan(
        problem,
        routes,
        final_unassigned,
        solve_time_s=time.monotonic() - t0,
        seed=seed,
        status=",".join(sorted({p.stats.status for p in plans})) or "empty",
        pieces=len(pieces),
        notes=notes,
    )


def routes_by_truck(routes: Sequence[Route]) -> dict[str, Route]:
    return {r.truck_id: r for r in routes}
