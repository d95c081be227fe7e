"""The pieces of a decomposed district (routing.decompose): each territory's first plan
and each improvement neighbourhood is a :class:`SubSolve`, an ordinary sub-problem
solved by :func:`solve_sub`.

Where the pieces run is a :class:`PieceRunner`'s business. By default
routing.decompose runs them in a pool of processes of this machine; a runner can send
them elsewhere (other machines, through a job queue) as long as it returns a future
of each piece's plan. Routing knows nothing of the queue: a runner gets a
``SubSolve`` (picklable) and gives back a ``Plan``.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

from routing.options import SolverOptions
from routing.plan import Plan
from routing.problem import Problem
from routing.schedule import Visit


@dataclass(frozen=True, slots=True)
class SubSolve:
    """One piece: its sub-problem, its time limit (its share of the district's
    budget), its search seed and options, and the routes it starts from (the warm
    start of an improvement neighbourhood; None for a territory's first plan)."""

    problem: Problem
    time_limit_s: float
    seed: int
    options: SolverOptions
    initial: dict[str, list[Visit]] | None = None


def solve_sub(job: SubSolve) -> Plan:
    from routing.search import solve_direct  # OR-Tools: only where pieces are solved

    return solve_direct(
        job.problem,
        time_limit_s=job.time_limit_s,
        seed=job.seed,
        options=job.options,
        initial=job.initial,
    )


class PieceRunner(Protocol):
    """Runs the pieces of one decomposed solve somewhere else than this process."""

    @property
    def parallelism(self) -> int:
        """How many pieces it runs at once: the decomposition cuts the territories and
        sizes each round of neighbourhoods to it."""
        ...

    def submit(self, job: SubSolve) -> Future[Plan]:
        """Start the piece; the future holds its plan, within about the piece's time
        limit (× 1.05 + 2 s, like any solve) plus the runner's hand-over."""
        ...
