"""One search over the whole problem: screen, construct trips (or take the routes
given), run OR-Tools' search from them, finish (no decomposition; see
:mod:`routing.solver` for the entry point)."""

from __future__ import annotations

import time

import numpy as np

from routing.budget import Budget, Clock
from routing.finish import finish_plan, make_plan
from routing.model import Model
from routing.options import SolverOptions
from routing.plan import Plan
from routing.problem import Problem
from routing.schedule import Visit
from routing.screen import screen
from routing.trips import construct_trips


def solve_direct(
    problem: Problem,
    *,
    time_limit_s: float,
    seed: int = 0,
    options: SolverOptions | None = None,
    initial: dict[str, list[Visit]] | None = None,
    clock: Clock = time.monotonic,
) -> Plan:
    """One OR-Tools solve of the whole problem (no decomposition), warm-started from
    ``initial`` (visits by truck id) when given, else from constructed trips.

    Every stage takes what the budget has left, and the search leaves a reserve for
    finishing, so the solve returns within ``time_limit_s`` × 1.05 + 2 s
    (:mod:`routing.budget`); a stage with no time left is skipped, and the plan is
    then finished from the best routes at hand. With a solution limit the search and
    finishing are bounded by counts and the time limit is only a cap on the search."""
    budget = Budget.of(time_limit_s, clock)
    options = options or SolverOptions()
    counted = options.solution_limit is not None
    starts = dict(options.starts)
    screened = screen(problem, starts, options.breaks_done)
    model = Model(_shuffled(problem, seed) if seed else problem, screened, options, starts)
    reserve = budget.finishing_reserve_s()

    def search_s() -> float:
        return budget.remaining_s() - reserve

    status = "empty"
    visits_by_truck: dict[str, list[Visit]] = {}
    if model.points and model.trucks and (counted or search_s() > 0):
        hint = initial
        if hint is None and model.station_mode and options.construction == "trips":
            hint = construct_trips(model, search_s() * options.construction_share, clock)
        status = "construction"
        if counted or search_s() > 0:
            model.build()
            sequences, status = model.solve(max(0.1, search_s()), hint_visits=hint)
            visits_by_truck = _visits(model, sequences)
        if not visits_by_truck and hint:
            visits_by_truck = hint  # no time left to search, or no solution found
    plan_routes, unassigned = finish_plan(
        problem,
        visits_by_truck,
        screened.unassigned,
        starts=starts,
        breaks_done=options.breaks_done,
        repair=options.repair,
        time_budget_s=time_limit_s if counted else budget.overrun_s(),
        clock=clock,
    )
    return make_plan(
        problem,
        plan_routes,
        unassigned,
        solve_time_s=budget.elapsed_s(),
        seed=seed,
        status=status,
    )


def _visits(model: Model, sequences: list[list[int]]) -> dict[str, list[Visit]]:
    """The model's routes (node sequences) as visits by truck id."""
    out: dict[str, list[Visit]] = {}
    for v, seq in enumerate(sequences):
        visits = []
        for node in seq:
            nd = model.nodes[node]
            if nd.kind == "point":
                visits.append(Visit("point", nd.ref_id))
            elif nd.kind in ("unload", "final"):
                visits.append(Visit("station", nd.ref_id))
        if any(vi.kind == "point" for vi in visits):
            out[model.trucks[v].truck_id] = visits
    return out


def _shuffled(problem: Problem, seed: int) -> Problem:
    """The same problem with points in a seed-dependent order: the search's
    trajectory (and so the plan) depends on the seed, reproducibly."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(problem.points))
    return problem.replace(points=[problem.points[i] for i in order])
