"""The budget is wall time: each stage takes what the budget has left and a stage
with nothing left is skipped. Checked with an injected clock (a stage "takes" the time
the clock says), never by timing the machine."""

from __future__ import annotations

import pytest

from routing import SolverOptions, solve
from routing.budget import OVERRUN_S, OVERRUN_SHARE, Budget
from routing.check import check_plan
from routing.finish import finish_plan
from routing.instances import synthetic_district
from routing.schedule import Visit

from .tiny import line_problem, point, truck


class JumpClock:
    """Reads ``0`` for its first ``reads`` readings, then ``later`` for ever: the stage
    running at that moment took that long."""

    def __init__(self, reads: int, later: float) -> None:
        self.left = reads
        self.later = later
        self.count = 0

    def __call__(self) -> float:
        self.count += 1
        if self.left > 0:
            self.left -= 1
            return 0.0
        return self.later


def test_budget_counts_on_its_clock() -> None:
    """Remaining time and the hard cap follow the clock, never below zero."""
    clock = JumpClock(1, 7.0)
    budget = Budget.of(10.0, clock)
    assert budget.elapsed_s() == 7.0
    assert budget.remaining_s() == 3.0
    assert budget.overrun_s() == pytest.approx(10 * (1 + OVERRUN_SHARE) + OVERRUN_S - 1 - 7)
    late = Budget.of(10.0, JumpClock(1, 50.0))
    assert late.remaining_s() == 0.0
    assert late.overrun_s() == 0.0
    assert 0 < budget.finishing_reserve_s() < 10.0


@pytest.mark.parametrize("reads", [1, 2, 3, 4, 6])
def test_no_search_starts_once_a_stage_used_up_the_budget(reads: int) -> None:
    """Whichever early stage takes (nearly) the whole budget, the search is skipped
    and the plan is finished from what is at hand: valid, every point served or
    given its reason, and back within the budget on the solve's own clock."""
    pb, _ = synthetic_district(n_points=30, n_trucks=3, seed=2)
    limit_s = 20.0
    clock = JumpClock(reads, 0.99 * limit_s)
    plan = solve(pb, time_limit_s=limit_s, clock=clock)
    assert plan.stats.status in ("construction", "empty")
    assert plan.stats.solve_time_s <= limit_s * (1 + OVERRUN_SHARE) + OVERRUN_S
    assert check_plan(pb, plan) == []
    assert plan.stats.num_assigned + len(plan.unassigned) == len(pb.points)


def test_a_search_runs_while_the_budget_lasts() -> None:
    """The same problem with the clock standing still: the search runs (bounded by
    solutions), and serves every point."""
    pb, _ = synthetic_district(n_points=30, n_trucks=3, seed=2)
    plan = solve(
        pb, time_limit_s=20.0, clock=lambda: 0.0, options=SolverOptions(solution_limit=100)
    )
    assert plan.stats.status not in ("construction", "empty")
    assert check_plan(pb, plan) == []
    assert not plan.unassigned


def test_a_late_finish_still_gives_every_point_its_reason() -> None:
    """Past the hard cap, finishing re-inserts nothing more, yet every point left out
    carries a reason and the plan is valid."""
    pb, _ = synthetic_district(n_points=30, n_trucks=3, seed=2)
    plan = solve(pb, time_limit_s=5.0, clock=JumpClock(1, 100.0))
    assert plan.stats.status == "empty"
    assert check_plan(pb, plan) == []
    assert plan.stats.num_assigned == 0
    assert len(plan.unassigned) == len(pb.points)
    assert {u.reason for u in plan.unassigned} == {"shift"}  # each could be served alone


def test_a_decomposed_district_skips_improvement_once_the_budget_is_gone() -> None:
    """Large-district mode: the first plan by territories comes back and improvement
    rounds are not started when the clock says the budget is gone."""
    pb, _ = synthetic_district(n_points=60, n_trucks=4, seed=5)
    options = SolverOptions(max_points_per_solve=25, workers=1)
    # Two readings (budget start, the first plan's share), then the budget is gone.
    plan = solve(pb, time_limit_s=6.0, clock=JumpClock(2, 5.9), options=options)
    assert plan.stats.pieces == 3
    assert "0 rounds" in plan.stats.notes[0]
    assert check_plan(pb, plan) == []
    assert plan.stats.num_assigned + len(plan.unassigned) == len(pb.points)


def test_past_the_cap_each_point_left_out_gets_what_blocks_it() -> None:
    """With no time left to try insertions, a point gets the constraint that blocks
    it on a day of its own (its window), else what the trucks lack: load where every
    truck that could serve it has its day's load, time otherwise."""
    pb = line_problem(
        {
            "A": (1000.0, point("A")),
            "B": (10_000.0, point("B", window_end_s=100.0)),
            "C": (2000.0, point("C")),
        },
        trucks=[truck("T1", max_day_load_kg=150.0)],
    )
    served = {"T1": [Visit("point", "C"), Visit("station", "S")]}
    routes, unassigned = finish_plan(pb, served, [], time_budget_s=0.0, clock=lambda: 0.0)
    assert [r.truck_id for r in routes] == ["T1"]
    assert {u.point_id: u.reason for u in unassigned} == {"A": "capacity", "B": "time_window"}
    roomy = pb.replace(trucks=[truck("T1")])
    _, unassigned = finish_plan(roomy, served, [], time_budget_s=0.0, clock=lambda: 0.0)
    assert {u.point_id: u.reason for u in unassigned} == {"A": "shift", "B": "time_window"}
