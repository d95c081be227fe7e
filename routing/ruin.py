"""Ruin and recreate over a whole plan: slack induction by string removals (SISR;
Christiaens & Vanden Berghe 2020, "Slack induction by string removals for vehicle
routing problems"), on the exact timing of routing.schedule.

Each iteration removes a string of consecutive points from each of a few routes
that lie near one another (the routes of a seed point's nearest points), then puts
the removed points back one at a time, each where it adds the least distance among
the positions next to its nearest served points (a position is passed over, "blinked",
with a small probability, so that the search does not always rebuild the same
routes). A rebuilt plan that serves every removed point is kept when it drives less
than the plan before plus a simulated-annealing threshold that falls towards zero;
the best plan met is returned. Every route is timed exactly before it is kept, so
the plans it returns pass routing.check whenever the plan it started from did.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from routing.budget import Clock
from routing.exchange import (
    DEFAULT_MOVES,
    MIN_GAIN_M,
    ExchangeJob,
    ExchangeResult,
    PlanRoutes,
    improve_routes,
    neighbour_lists,
)
from routing.problem import Problem, point_key
from routing.schedule import Start, Visit

# The mean number of points an iteration removes (SISR's c-bar) and the longest
# string it takes from one route (L-max), as in the paper's tuning.
MEAN_REMOVED = 10
MAX_STRING = 10
# The chance that an insertion position is passed over.
BLINK = 0.01
# A ruin walks a seed point's ADJACENT nearest points for routes to ruin; a point
# goes back next to one of its INSERT_NEAR nearest, trying at most MAX_TRIES
# positions, cheapest first.
ADJACENT = 30
INSERT_NEAR = 15
MAX_TRIES = 8
# The annealing threshold, in metres: from START_T_M to END_T_M over the search.
START_T_M = 100.0
END_T_M = 1.0


def threshold_m(progress: float) -> float:
    """The annealing threshold once ``progress`` (0 to 1) of the search is done: the
    share of its iterations when a count bounds it, of its time slot when the clock
    does (SISR cools by time when it is bounded by time)."""
    return START_T_M * (END_T_M / START_T_M) ** min(1.0, max(0.0, progress))


@dataclass(frozen=True, slots=True)
class RuinResult:
    """The routes that changed (an empty list is a truck left idle), their
    distances, and what the search did."""

    changed: dict[str, list[Visit]]
    distance_m: dict[str, float]
    iterations: int
    accepted: int
    saved_m: float


def ruin_and_recreate(
    problem: Problem,
    visits_by_truck: dict[str, list[Visit]],
    *,
    iterations: int | None,
    starts: dict[str, Start] | None = None,
    breaks_done: frozenset[str] = frozenset(),
    neighbours: dict[str, list[str]] | None = None,
    seed: int = 0,
    deadline: float = math.inf,
    clock: Clock = time.monotonic,
) -> RuinResult:
    """Up to ``iterations`` ruin-and-recreate steps over the plan (or until
    ``deadline`` on ``clock``), cooling by the iterations done; with ``iterations``
    None, steps until ``deadline`` (which must then be finite), cooling by the share
    of the time from the first step to the deadline elapsed. The best plan found, as the
    routes it changed. Routes that do not hold as given are left alone.
    Deterministic for a seed when a count bounds it and the deadline is not hit."""
    if iterations is None and not math.isfinite(deadline):
        raise ValueError("ruin and recreate needs an iteration count or a deadline")
    near = neighbours if neighbours is not None else neighbour_lists(problem, ADJACENT)
    routes = PlanRoutes(problem, starts or {}, breaks_done, {}, {})
    for truck_id, visits in visits_by_truck.items():
        truck = problem.truck(truck_id)
        prepared = routes.prepared(truck, list(visits))
        if prepared is not None and prepared[0] and routes.holds(truck, prepared[0]):
            routes.visits[truck_id], routes.distance_m[truck_id] = prepared
            routes.locate(truck_id)
    original = dict(routes.visits)
    start_m = current = best = sum(routes.distance_m.values())
    # SISR's longest string: at most the mean number of points a route serves.
    sizes = [sum(v.kind == "point" for v in vs) for vs in routes.visits.values() if vs]
    max_string = min(MAX_STRING, max(1.0, sum(sizes) / max(1, len(sizes))))
    best_visits, best_distance = dict(routes.visits), dict(routes.distance_m)
    rng = np.random.default_rng(seed)
    done = accepted = 0
    begun = clock()
    while iterations is None or done < iterations:
        now = clock()
        if now >= deadline:
            break
        if iterations is None:
            threshold = threshold_m((now - begun) / max(deadline - begun, 1e-9))
        else:
            threshold = threshold_m(done / iterations)
        done += 1
        before = dict(routes.visits), dict(routes.distance_m)
        removed = _ruin(routes, near, rng, max_string)
        if removed and _recreate(routes, removed, near, rng):
            total = current + sum(
                routes.distance_m[t] - before[1][t]
                for t, v in routes.visits.items()
                if v is not before[0][t]
            )
            # Simulated annealing: a worse plan is kept with a falling chance.
            if total < current - threshold * math.log(max(float(rng.random()), 1e-12)):
                current = total
                accepted += 1
                if total < best - MIN_GAIN_M:
                    best = total
                    best_visits, best_distance = dict(routes.visits), dict(routes.distance_m)
                continue
        _restore(routes, *before)
    changed = {t: v for t, v in best_visits.items() if v != original.get(t)}
    return RuinResult(
        changed=changed,
        distance_m={t: best_distance[t] for t in changed},
        iterations=done,
        accepted=accepted,
        saved_m=start_m - best,
    )


def improve_and_ruin_group(job: ExchangeJob) -> ExchangeResult:
    """:func:`improve_and_ruin` over one group, in a process of its own, within the
    job's time limit."""
    return improve_and_ruin(
        job.problem,
        job.visits,
        starts=job.starts,
        breaks_done=job.breaks_done,
        max_passes=job.max_passes,
        focus=job.focus,
        seed=job.seed,
        kinds=job.kinds,
        iterations=job.ruin_iterations,
        ruin_s=job.ruin_s,
        deadline=time.monotonic() + job.time_limit_s,
    )


def improve_and_ruin(
    problem: Problem,
    visits_by_truck: dict[str, list[Visit]],
    *,
    starts: dict[str, Start] | None = None,
    breaks_done: frozenset[str] = frozenset(),
    max_passes: int,
    focus: set[str] | None = None,
    seed: int = 0,
    kinds: frozenset[str] = DEFAULT_MOVES,
    iterations: int | None,
    ruin_s: float = 0.0,
    deadline: float,
    clock: Clock = time.monotonic,
) -> ExchangeResult:
    """The moves (:func:`routing.exchange.improve_routes`), then ``iterations`` of ruin
    and recreate (with None, ``ruin_s`` seconds of it, cooling by time), then the
    moves again from the routes that changed; all by ``deadline`` on ``clock``."""
    first = improve_routes(
        problem,
        visits_by_truck,
        starts=starts,
        breaks_done=breaks_done,
        max_passes=max_passes,
        focus=focus,
        seed=seed,
        deadline=deadline,
        clock=clock,
        kinds=kinds,
    )
    visits = {**visits_by_truck, **first.changed}
    distance = dict(first.distance_m)
    ruin_deadline = deadline if iterations is not None else min(deadline, clock() + ruin_s)
    ruined = ruin_and_recreate(
        problem,
        {t: v for t, v in visits.items() if v},
        iterations=iterations,
        starts=starts,
        breaks_done=breaks_done,
        seed=seed,
        deadline=ruin_deadline,
        clock=clock,
    )
    visits.update(ruined.changed)
    distance.update(ruined.distance_m)
    last = improve_routes(
        problem,
        {t: v for t, v in visits.items() if v},
        starts=starts,
        breaks_done=breaks_done,
        max_passes=max_passes,
        focus=set(ruined.changed),
        seed=seed + 1,
        deadline=deadline,
        clock=clock,
        kinds=kinds,
    )
    visits.update(last.changed)
    distance.update(last.distance_m)
    changed = {t: v for t, v in visits.items() if v != visits_by_truck.get(t)}
    return ExchangeResult(
        changed=changed,
        distance_m={t: distance[t] for t in changed},
        passes=first.passes + last.passes,
        moves=first.moves + ruined.accepted + last.moves,
        saved_m=first.saved_m + ruined.saved_m + last.saved_m,
        ruin_iterations=ruined.iterations,
    )


def _restore(
    routes: PlanRoutes, visits: dict[str, list[Visit]], distance: dict[str, float]
) -> None:
    """Put back the routes an iteration changed (their lists are replaced, never
    changed in place, so the saved dictionaries hold the old ones)."""
    for truck_id, old in visits.items():
        if routes.visits[truck_id] is not old:
            routes.visits[truck_id] = old
            routes.distance_m[truck_id] = distance[truck_id]
            routes.locate(truck_id)


def _ruin(
    routes: PlanRoutes, near: dict[str, list[str]], rng: np.random.Generator, max_string: float
) -> list[str]:
    """Remove a string of consecutive points from each of a few routes near a random
    seed point (SISR's string removal); the points removed."""
    served = list(routes.where)
    if not served:
        return []
    seed_pid = served[int(rng.integers(len(served)))]
    max_routes = 4.0 * MEAN_REMOVED / (1.0 + max_string) - 1.0
    route_count = int(rng.uniform(1.0, max_routes + 1.0))
    removed: list[str] = []
    ruined: set[str] = set()
    for pid in [seed_pid, *near.get(seed_pid, ())]:
        if len(ruined) >= route_count:
            break
        if pid not in routes.where:
            continue
        truck_id, _ = routes.where[pid]
        if truck_id in ruined:
            continue
        ruined.add(truck_id)
        visits = routes.visits[truck_id]
        spots = [i for i, v in enumerate(visits) if v.kind == "point"]
        at = spots.index(routes.where[pid][1])
        length = int(rng.uniform(1.0, min(len(spots), max_string) + 1.0))
        first = int(rng.integers(max(0, at - length + 1), min(at, len(spots) - length) + 1))
        take = {spots[k] for k in range(first, first + length)}
        gone = [visits[i].ref_id for i in sorted(take)]
        kept = [v for i, v in enumerate(visits) if i not in take]
        truck = routes.problem.truck(truck_id)
        prepared = routes.prepared(truck, kept)
        if prepared is None:  # dropping points never breaks eligibility; for safety
            ruined.discard(truck_id)
            continue
        routes.visits[truck_id], routes.distance_m[truck_id] = prepared
        for gone_pid in gone:
            del routes.where[gone_pid]
        routes.locate(truck_id)
        removed.extend(gone)
    return removed


def _recreate(
    routes: PlanRoutes, removed: list[str], near: dict[str, list[str]], rng: np.random.Generator
) -> bool:
    """Put every removed point back where it adds the least distance among the
    positions next to its nearest served points (some blinked), timed exactly;
    False as soon as one fits nowhere."""
    problem = routes.problem
    order = [removed[i] for i in rng.permutation(len(removed))]
    for pid in order:
        pk = point_key(pid)
        options: list[tuple[float, str, int]] = []
        seen: set[tuple[str, int]] = set()
        for qid in near.get(pid, ())[:INSERT_NEAR]:
            if qid not in routes.where:
                continue
            truck_id, j = routes.where[qid]
            truck = problem.truck(truck_id)
            matrix = problem.matrix_for(truck)
            visits = routes.visits[truck_id]
            for at in (j, j + 1):
                if (truck_id, at) in seen or rng.random() < BLINK:
                    continue
                seen.add((truck_id, at))
                x, y = routes.key_at(truck, visits, at - 1), routes.key_at(truck, visits, at)
                added = matrix.distance(x, pk) + matrix.distance(pk, y) - matrix.distance(x, y)
                options.append((added, truck_id, at))
        options.sort()
        for _, truck_id, at in options[:MAX_TRIES]:
            truck = problem.truck(truck_id)
            visits = routes.visits[truck_id]
            prepared = routes.prepared(truck, [*visits[:at], Visit("point", pid), *visits[at:]])
            if prepared is not None and routes.holds(truck, prepared[0]):
                routes.visits[truck_id], routes.distance_m[truck_id] = prepared
                routes.locate(truck_id)
                break
        else:
            return False
    return True
