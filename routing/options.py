"""The planner's knobs (:class:`SolverOptions`) and the units of its integer model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from routing.schedule import Start

DIST_SCALE: Final = 10  # decimetres
TIME_SCALE: Final = 10  # deciseconds
LOAD_SCALE: Final = 1000  # grams (and thousandths of other units)
SOLVER_NAME: Final = "ortools-ils"
# Above this many points `solve` decomposes the district (routing.decompose).
DEFAULT_MAX_POINTS_PER_SOLVE: Final = 450
# Without stations the model has no unload slots (one node a point), and one search
# over the whole problem does better further up: CVRPLIB X-n502 (501 customers) at
# 30 s came out 1.9 % above the best known solved whole, 2.6 % decomposed.
DEFAULT_MAX_POINTS_PER_PLAIN_SOLVE: Final = 600
# Iterations of ruin and recreate per group when a solution limit bounds the solve and
# no count is given: a count keeps a counted solve's plan dependent on the seed alone.
COUNTED_RUIN_ITERATIONS: Final = 5000
# The share of the budget that ruin and recreate takes (within the time left after a
# decomposed district's first plan) when the clock bounds it: at 60 s about the 5,000
# iterations a group that measured best there (20,000 took rounds that saved more;
# docs/routing.md), ten times as many at 600 s.
RUIN_SHARE: Final = 0.1

# Operators that cost more time than they return on these models (measured on
# CVRPLIB X, see docs/routing.md); pickup-and-delivery ones never apply here.
OPERATORS_OFF: Final = (
    "use_lin_kernighan",
    "use_relocate_expensive_chain",
    "use_global_cheapest_insertion_path_lns",
    "use_local_cheapest_insertion_path_lns",
    "use_relocate_path_global_cheapest_insertion_insert_unperformed",
    "use_global_cheapest_insertion_visit_types_lns",
    "use_local_cheapest_insertion_visit_types_lns",
)


@dataclass(frozen=True, slots=True)
class SolverOptions:
    """Knobs for experiments and the benchmark; the defaults are the measured best."""

    metaheuristic: Literal["ils", "gls", "greedy"] = "ils"
    first_solution: str | None = None  # an OR-Tools FirstSolutionStrategy name
    soft_capacity: bool = False
    unload_model: Literal["parked", "optional"] = "parked"
    # Start from trips: a CVRP from each station cut into truckloads, packed into the
    # trucks' days ("trips"), or let OR-Tools build the first solution ("ortools").
    construction: Literal["trips", "ortools"] = "trips"
    construction_share: float = 0.25
    unload_copies: int | None = None  # per truck and station; None = from the loads
    sisr_max_sequence: int = 10
    sisr_avg_removed: int = 10
    operators_off: tuple[str, ...] = OPERATORS_OFF
    operators_on: tuple[str, ...] = ()
    # Stop every search after this many solutions: the plan then depends only on the
    # seed, not on the machine's speed; the time limit is only a safety cap.
    solution_limit: int | None = None
    log_search: bool = False
    # None: DEFAULT_MAX_POINTS_PER_SOLVE with stations, the plain one without.
    max_points_per_solve: int | None = None
    workers: int | None = None  # processes for decomposed districts; None = CPU count
    # Decomposed districts (routing.decompose): the share of the budget for the first
    # plan by territories (at least what its pieces need); then neighbourhoods of about
    # this many points, each solved for neighbourhood_s, for improve_rounds rounds
    # (None: until the budget runs out, or 3 with a solution limit; 0: territories
    # only, with the whole budget). Many short neighbourhood solves return more than
    # long territories or long solves (docs/routing.md).
    first_plan_share: float = 0.2
    # Bound each territory's search by this many solutions (the rest of the solve still
    # runs on the clock): a first plan that depends only on the seed, so that the
    # later phases can be compared across runs on a busy machine; None: by time.
    first_plan_solution_limit: int | None = None
    neighbourhood_points: int = 120
    neighbourhood_s: float = 3.0
    improve_rounds: int | None = None
    # Passes of moves between and within routes (routing.exchange) a call: after the search of a
    # fresh solve (a territory, or a district solved whole), over a decomposed
    # district's first plan and after each round of neighbourhoods; 0: none.
    exchange_passes: int = 10
    # The moves within a route (or-opt, 2-opt inside a trip) after those between routes.
    moves_within: bool = True
    route_elimination: bool = False  # every other neighbourhood with one truck fewer
    # Ruin and recreate (routing.ruin) in each group of the first moves over a
    # decomposed district's plan, then the moves again. None: by the clock, for
    # ruin_share of the budget at most (cooling by time), or COUNTED_RUIN_ITERATIONS
    # under a solution limit; N: N iterations (the time left is only a cap); 0: none.
    ruin_iterations: int | None = None
    ruin_share: float = RUIN_SHARE
    # A district solved whole (not decomposed) runs ruin and recreate too, after the
    # moves that follow its search (ruin_share of the budget, or its count).
    ruin_whole: bool = False
    # Districts with stations above this many points (but not above
    # max_points_per_solve) are decomposed too: one territory per worker, then
    # improved like a large district: a 300-point district at 60 s came out 13 %
    # shorter that way than solved whole (docs/routing.md); None: solved whole.
    improve_above_points: int | None = 200
    # Live state for re-planning (routing.replan): truck id -> where its day resumes.
    starts: tuple[tuple[str, Start], ...] = ()
    breaks_done: frozenset[str] = frozenset()
    repair: bool = True
    # "shift": fold the common lunch break into model time (fast, conservative);
    # "intervals": OR-Tools break intervals (exact, much slower search).
    break_model: Literal["shift", "intervals"] = "shift"

    def ruin_count(self) -> int | None:
        """Iterations of ruin and recreate per group (0: none), or None: a time slot of
        ``ruin_share`` of the budget, within the time left."""
        if self.ruin_iterations is not None:
            return self.ruin_iterations
        if self.solution_limit is not None:
            return COUNTED_RUIN_ITERATIONS
        return None if self.ruin_share > 0 else 0

    def points_per_solve(self, with_stations: bool) -> int:
        """Above this many points a problem is decomposed (routing.decompose)."""
        if self.max_points_per_solve is not None:
            return self.max_points_per_solve
        if with_stations:
            return DEFAULT_MAX_POINTS_PER_SOLVE
        return DEFAULT_MAX_POINTS_PER_PLAIN_SOLVE
