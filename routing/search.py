"""One search over the whole problem: screen, construct trips (or take the routes
given), run OR-Tools' search from them, finish (no decomposition; see
:mod:`routing.solver` for the entry point)."""

from __future__ import annotations

import time

import numpy as np

from routing.budget import Budget, Clock
from routing.exchange import improve_routes, move_kinds
from routing.finish import finish_plan, make_plan, route_visits
from routing.model import Model
from routing.options import SolverOptions
from routing.plan import Plan, Route, Unassigned
from routing.problem import Problem
from routing.ruin import improve_and_ruin
from routing.schedule import Visit
from routing.screen import screen
from routing.trips import construct_trips

# What the moves between routes after a fresh search need, per point (measured: a
# 375-point territory's plan, 0.7 s to their local optimum on an idle core).
EXCHANGE_S_PER_POINT = 0.004


def solve_direct(
    problem: Problem,
    *,
    time_limit_s: float,
    seed: int = 0,
    options: SolverOptions | None = None,
    initial: dict[str, list[Visit]] | None = None,
    clock: Clock = time.monotonic,
    whole: bool = False,
) -> Plan:
    """One OR-Tools solve of the whole problem (no decomposition), warm-started from
    ``initial`` (visits by truck id) when given, else from constructed trips. A
    district solved ``whole`` (not a piece of a decomposed one) with
    ``options.ruin_whole`` runs ruin and recreate after the moves too.

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

    # Moves between and within routes polish a fresh plan with stations (a warm start is polished
    # already; plain CVRP and VRPTW were not measured with them).
    exchange = bool(options.exchange_passes) and initial is None and bool(problem.stations)
    exchange_s = EXCHANGE_S_PER_POINT * len(problem.points) if exchange else 0.0
    ruin = exchange and whole and options.ruin_whole and options.ruin_count() != 0
    if ruin and options.ruin_count() is None:
        exchange_s += options.ruin_share * time_limit_s

    def search_s() -> float:
        return budget.remaining_s() - reserve - exchange_s

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
    if exchange and plan_routes:
        plan_routes, unassigned = _exchanged(
            problem, plan_routes, unassigned, options, seed, budget, ruin
        )
    return make_plan(
        problem,
        plan_routes,
        unassigned,
        solve_time_s=budget.elapsed_s(),
        seed=seed,
        status=status,
    )


def _exchanged(
    problem: Problem,
    routes: list[Route],
    unassigned: list[Unassigned],
    options: SolverOptions,
    seed: int,
    budget: Budget,
    ruin: bool,
) -> tuple[list[Route], list[Unassigned]]:
    """The finished routes improved by moves between and within routes (routing.exchange) and
    timed again: on a short search's plan they find, in a fraction of a second,
    savings the search had no time for (a 375-point territory at 13 s: 4 %); with
    ``ruin``, ruin and recreate after them (routing.ruin). The points left out keep
    their reasons."""
    counted = options.solution_limit is not None
    left_s = budget.remaining_s() - (0.0 if counted else budget.finishing_reserve_s())
    if left_s <= 0:
        return routes, unassigned
    visits = {r.truck_id: route_visits(r) for r in routes}
    if ruin:
        result = improve_and_ruin(
            problem,
            visits,
            starts=dict(options.starts),
            breaks_done=options.breaks_done,
            max_passes=options.exchange_passes,
            seed=seed,
            kinds=move_kinds(options.moves_within),
            iterations=options.ruin_count(),
            ruin_s=options.ruin_share * budget.limit_s,
            deadline=budget.clock() + left_s,
            clock=budget.clock,
        )
    else:
        result = improve_routes(
            problem,
            visits,
            starts=dict(options.starts),
            breaks_done=options.breaks_done,
            max_passes=options.exchange_passes,
            seed=seed,
            deadline=budget.clock() + left_s,
            clock=budget.clock,
            kinds=move_kinds(options.moves_within),
        )
    if not result.changed:
        return routes, unassigned
    return finish_plan(
        problem,
        {t: v for t, v in {**visits, **result.changed}.items() if v},
        unassigned,
        starts=dict(options.starts),
        breaks_done=options.breaks_done,
        repair=options.repair,
        time_budget_s=budget.overrun_s(),
        clock=budget.clock,
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
