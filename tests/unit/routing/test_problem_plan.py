"""Validated inputs and the Plan value."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from routing.matrix import TravelMatrix
from routing.plan import Plan, Route, SolveStats, Stop, Unassigned
from routing.problem import Depot, Problem

from .tiny import line_matrix, line_problem, point, station, truck


def test_valid_problem_builds_indexes() -> None:
    """A valid problem indexes its points, trucks and stations by id."""
    pb = line_problem({"A": (1000.0, point("A")), "B": (2000.0, point("B"))})
    assert pb.point("B").point_id == "B"
    assert pb.truck("T1").capacity_kg == 1000.0
    assert [s.station_id for s in pb.stations_for(pb.truck("T1"))] == ["S"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"window_start_s": 500.0, "window_end_s": 100.0}, "points[0] (A).window_end_s"),
        ({"stream": "glass"}, "points[0] (A).stream"),
        ({"amount_kg": -1.0}, "points[0] (A).amount_kg"),
        ({"access_class": "tiny"}, "points[0] (A).access_class"),
        ({"lat": 95.0}, "points[0] (A).lat"),
        ({"service_time_s": float("nan")}, "points[0] (A).service_time_s"),
    ],
)
def test_bad_point_names_the_field(change: dict[str, object], message: str) -> None:
    """A bad point raises a ValueError that names the point and the field."""
    with pytest.raises(ValueError, match=re.escape(message)):
        line_problem({"A": (1000.0, point("A", **change))})


def test_bad_truck_and_references_name_the_field() -> None:
    """Unknown depots, empty streams and reversed shifts are refused by name."""
    p = {"A": (1000.0, point("A"))}
    with pytest.raises(ValueError, match=r"trucks\[0\] \(T1\)\.start_depot_id"):
        line_problem(p, trucks=[truck(start_depot_id="nowhere")])
    with pytest.raises(ValueError, match=r"trucks\[0\] \(T1\)\.streams"):
        line_problem(p, trucks=[truck(streams=frozenset())])
    with pytest.raises(ValueError, match=r"trucks\[0\] \(T1\)\.shift_end_s"):
        line_problem(p, trucks=[truck(shift_start_s=100.0, shift_end_s=50.0)])
    with pytest.raises(ValueError, match=r"stations\[0\] \(S\)\.closes_s"):
        line_problem(p, stations={"S": (0.0, station(opens_s=0.0, closes_s=100.0))})


def test_duplicate_ids_and_missing_matrix_keys_are_refused() -> None:
    """Two points with one id, or a location missing from the matrix, are errors."""
    with pytest.raises(ValueError, match=r"points\[1\]\.point_id: duplicate"):
        Problem(
            points=(point("A"), point("A")),
            stations=(),
            depots=(Depot("D", 0, 0),),
            trucks=(truck(),),
            matrix=line_matrix({"depot/D": 0.0, "point/A": 1.0}),
        )
    with pytest.raises(ValueError, match=r"matrix\.location_ids: missing"):
        Problem(
            points=(point("A"),),
            stations=(),
            depots=(Depot("D", 0, 0),),
            trucks=(truck(),),
            matrix=line_matrix({"depot/D": 0.0}),
        )
    with pytest.raises(ValueError, match=r"matrix\.distance_m: contains negative"):
        TravelMatrix(("a", "b"), np.array([[0, -1], [1, 0]]), np.zeros((2, 2)))


def test_matrix_is_read_only() -> None:
    """Matrices cannot be changed after validation."""
    m = line_matrix({"a": 0.0, "b": 5.0})
    with pytest.raises(ValueError):
        m.distance_m[0, 1] = 3.0


def test_plan_round_trips_through_dict_and_json() -> None:
    """to_dict/from_dict and to_json/from_json give back an equal plan."""
    stop = Stop(
        kind="point",
        ref_id="A",
        arrival_s=100.0,
        departure_s=160.0,
        load_after_kg=100.0,
        distance_from_prev_m=1000.0,
    )
    route = Route(
        truck_id="T1",
        stops=(
            Stop(
                kind="start",
                ref_id="D",
                arrival_s=0,
                departure_s=0,
                load_after_kg=0,
                distance_from_prev_m=0,
            ),
            stop,
            Stop(
                kind="break",
                ref_id=None,
                arrival_s=200,
                departure_s=300,
                load_after_kg=100,
                distance_from_prev_m=0,
            ),
        ),
        distance_m=1000.0,
        duration_s=300.0,
    )
    plan = Plan(
        routes=(route,),
        unassigned=(Unassigned(point_id="B", reason="access"),),
        stats=SolveStats(
            objective=1000.0,
            distance_m=1000.0,
            duration_s=300.0,
            solve_time_s=0.5,
            solver="x",
            seed=3,
        ),
    )
    assert Plan.from_dict(plan.to_dict()) == plan
    assert Plan.from_json(plan.to_json()) == plan
    assert plan.to_dict()["unassigned"] == [{"point_id": "B", "reason": "access"}]
    with pytest.raises(Exception):  # noqa: B017 - msgspec's validation error
        Plan.from_dict({**plan.to_dict(), "unassigned": [{"point_id": "B", "reason": "lazy"}]})


def test_replace_keeps_matrices() -> None:
    """Problem.replace swaps collections and keeps the matrices."""
    pb = line_problem({"A": (1000.0, point("A")), "B": (2000.0, point("B"))})
    sub = pb.replace(points=[pb.point("B")])
    assert [p.point_id for p in sub.points] == ["B"]
    assert sub.matrix is pb.matrix
    assert dataclasses.replace(pb.trucks[0], capacity_kg=5.0).capacity_kg == 5.0
