"""The planner's entry point: ``solve(problem, time_limit_s=..., seed=...)`` returns a
:class:`~routing.plan.Plan`; no OR-Tools object leaves the library. Points that cannot
be served come back as ``Unassigned`` with the constraint that blocked them, never
silently dropped. A district larger than ``SolverOptions.points_per_solve`` is
decomposed (:mod:`routing.decompose`); otherwise one search runs
(:mod:`routing.search`)."""

from __future__ import annotations

import time

from routing import decompose
from routing.budget import Clock
from routing.options import SolverOptions
from routing.pieces import PieceRunner
from routing.plan import Plan
from routing.problem import (
    Problem,
)
from routing.search import solve_direct


def solve(
    problem: Problem,
    *,
    time_limit_s: float,
    seed: int = 0,
    options: SolverOptions | None = None,
    clock: Clock = time.monotonic,
    runner: PieceRunner | None = None,
) -> Plan:
    """Plan the day within ``time_limit_s`` of wall time (× 1.05 + 2 s at most, see
    :mod:`routing.budget`; ``clock`` is injectable for tests). Never returns OR-Tools
    objects; unassigned points carry their reason. Large districts (more than
    ``options.points_per_solve``) are decomposed and improved in parallel
    (see :mod:`routing.decompose`), their pieces by ``runner`` when given
    (:mod:`routing.pieces`)."""
    if not isinstance(problem, Problem):
        raise ValueError(f"problem: expected a routing.problem.Problem, got {type(problem)}")
    if not (isinstance(time_limit_s, int | float) and time_limit_s > 0):
        raise ValueError(f"time_limit_s: must be a positive number of seconds, got {time_limit_s}")
    options = options or SolverOptions()
    if len(problem.trucks) > 1 and (
        len(problem.points) > options.points_per_solve(bool(problem.stations))
        or (
            problem.stations
            and options.improve_above_points is not None
            and len(problem.points) > options.improve_above_points
        )
    ):
        return decompose.solve_decomposed(
            problem,
            time_limit_s=time_limit_s,
            seed=seed,
            options=options,
            clock=clock,
            runner=runner,
        )
    return solve_direct(
        problem, time_limit_s=time_limit_s, seed=seed, options=options, clock=clock, whole=True
    )
