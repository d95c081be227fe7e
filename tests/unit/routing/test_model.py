"""The OR-Tools model's structure: which dimensions it needs for a problem."""

from __future__ import annotations

from routing import SolverOptions
from routing.model import Model
from routing.problem import Problem
from routing.screen import screen

from .tiny import line_problem, point, truck


def built(problem: Problem) -> Model:
    model = Model(problem, screen(problem, {}, frozenset()), SolverOptions(), {})
    model.build()
    return model


def two_points(**truck_kw: object) -> Problem:
    # At 10 m/s with 60 s of service, the slowest way into each node: A from B 160 s,
    # B from the depot 200 s, home from B 260 s; no route takes more than 620 s.
    return line_problem(
        {"A": (1000.0, point("A")), "B": (2000.0, point("B"))},
        trucks=[truck("T1", **truck_kw)],
        stations={},
    )


def test_time_is_left_out_only_when_no_time_rule_can_bind() -> None:
    """A plain CVRP (a shift no route can fill, no windows) needs no time dimension;
    a shift, a duration limit or a window that some route could reach needs it."""
    assert not built(two_points()).timed
    assert built(two_points(shift_end_s=500.0)).timed
    assert built(two_points(max_route_duration_s=500.0)).timed
    windowed = line_problem(
        {"A": (1000.0, point("A", window_end_s=300.0)), "B": (2000.0, point("B"))},
        stations={},
    )
    assert built(windowed).timed
    assert built(line_problem({"A": (1000.0, point("A"))})).timed  # stations: always
