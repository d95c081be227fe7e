"""One search over the whole problem: screen, construct trips, run OR-Tools' search
from them, finish (no decomposition; see :mod:`routing.solver` for the entry point)."""

from __future__ import annotations

import time

import numpy as np

from routing.finish import finish_plan, make_plan, repair_budget_s
from routing.model import Model
from routing.options import SolverOptions
from routing.plan import Plan
from routing.problem import (
    Problem,
)
from routing.schedule import Visit
from routing.screen import screen
from routing.trips import construct_trips


def solve_direct(
    problem: Problem,
    *,
    time_limit_s: float,
    seed: int = 0,
    options: SolverOptions | None = None,
) -> Plan:
    """One OR-Tools solve of the whole problem (no decomposition)."""
    t0 = time.monotonic()
    options = options or SolverOptions()
    starts = dict(options.starts)
    screened = screen(problem, starts, options.breaks_done)
    model = Model(_shuffled(problem, seed) if seed else problem, screened, options, starts)
    status = "empty"
    sequences: list[list[int]] = [[] for _ in model.trucks]
    if model.points and model.trucks:
        hint_visits: dict[str, list[Visit]] | None = None
        if model.station_mode and options.construction == "trips":
            budget = (time_limit_s - (time.monotonic() - t0)) * options.construction_share
            hint_visits = construct_trips(model, budget)
        model.build()
        remaining = time_limit_s - (time.monotonic() - t0)
        sequences, status = model.solve(max(0.5, remaining * 0.97), hint_visits=hint_visits)
    visits_by_truck: dict[str, list[Visit]] = {}
    for v, seq in enumerate(sequences):
        visits = []
        for node in seq:
            nd = model.nodes[node]
            if nd.kind == "point":
                visits.append(Visit("point", nd.ref_id))
            elif nd.kind in ("unload", "final"):
                visits.append(Visit("station", nd.ref_id))
        if any(vi.kind == "point" for vi in visits):
            visits_by_truck[model.trucks[v].truck_id] = visits
    plan_routes, unassigned = finish_plan(
        problem,
        visits_by_truck,
        screened.unassigned,
        starts=starts,
        breaks_done=options.breaks_done,
        repair=options.repair,
        time_budget_s=repair_budget_s(time_limit_s, options),
    )
    return make_plan(
        problem,
        plan_routes,
        unassigned,
        solve_time_s=time.monotonic() - t0,
        seed=seed,
        status=status,
    )


def _shuffled(problem: Problem, seed: int) -> Problem:
    """The same problem with points in a seed-dependent order: the search's
    trajectory (and so the plan) depends on the seed, reproducibly."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(problem.points))
    return problem.replace(points=[problem.points[i] for i in order])
