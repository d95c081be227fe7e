"""The plan shape the simulator reads, and the greedy planner it uses without one."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from simulator.city import City
from simulator.plans import SimPlan, check_plan, greedy_plan, load_plan, plan_from_dict
from simulator.roads import RoadNetwork


def test_greedy_plan_respects_streams_access_capacity_and_ends_empty(
    small_city: City, small_net: RoadNetwork
) -> None:
    plan = greedy_plan(small_city, net=small_net)
    check_plan(plan, small_city)
    served = [s.ref_id for r in plan.routes for s in r.stops if s.kind == "point"]
    assert len(served) == len(set(served))
    assert set(served) | set(plan.unassigned) == {p.id for p in small_city.points}
    for route in plan.routes:
        truck = small_city.truck(route.truck_id)
        assert route.stops[0].kind == "start" and route.stops[-1].kind == "end"
        load = 0.0
        for prev, stop in itertools.pairwise(route.stops):
            assert stop.arrival_s >= prev.departure_s - 1e-6
            if stop.kind == "point":
                point = small_city.point(stop.ref_id or "")
                assert truck.can_serve(point)
                load += point.daily_amount_kg
                assert load <= truck.capacity_kg
            elif stop.kind == "station":
                load = 0.0
        assert load == 0.0, f"{truck.id} ends its day loaded"
        assert route.stops[-1].arrival_s <= truck.shift_end_s


def test_plan_json_round_trip(tmp_path: Path, small_plan: SimPlan) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(small_plan.to_dict()))
    assert load_plan(path).routes == small_plan.routes


def test_reads_the_routing_plan_dict_form() -> None:
    data = {
        "routes": [
            {
                "truck_id": "T01",
                "distance_m": 1000.0,
                "duration_s": 600.0,
                "stops": [
                    {
                        "kind": "start",
                        "ref_id": "D1",
                        "arrival_s": 18000,
                        "departure_s": 18000,
                        "load_after_kg": 0,
                        "distance_from_prev_m": 0,
                    },
                    {
                        "kind": "point",
                        "ref_id": "P0001",
                        "arrival_s": 18100,
                        "departure_s": 18400,
                        "load_after_kg": 300,
                        "distance_from_prev_m": 500,
                    },
                    {
                        "kind": "break",
                        "ref_id": None,
                        "arrival_s": 18400,
                        "departure_s": 20200,
                        "load_after_kg": 300,
                        "distance_from_prev_m": 0,
                    },
                    {
                        "kind": "end",
                        "ref_id": "D1",
                        "arrival_s": 20300,
                        "departure_s": 20300,
                        "load_after_kg": 0,
                        "distance_from_prev_m": 500,
                    },
                ],
            }
        ],
        "unassigned": [{"point_id": "P0002", "reason": "capacity"}],
        "stats": {"objective": 1.0},
    }
    plan = plan_from_dict(data)
    assert [s.kind for s in plan.routes[0].stops] == ["start", "point", "break", "end"]
    assert plan.routes[0].stops[1].load_after_kg == 300


def test_a_routing_plan_value_is_driven_as_is(small_city: City, small_plan: SimPlan) -> None:
    plan_mod = pytest.importorskip("routing.plan", reason="routing.plan not written yet")
    data = small_plan.to_dict()
    for route in data["routes"]:
        route.update(distance_m=0.0, duration_s=0.0)
        for stop in route["stops"]:
            stop["distance_from_prev_m"] = 0.0
    data["unassigned"] = []
    data["stats"] = {
        "objective": 0.0,
        "distance_m": 0.0,
        "duration_s": 0.0,
        "solve_time_s": 0.0,
        "solver": "greedy",
        "seed": 0,
    }
    plan = plan_mod.Plan.from_dict(data)
    check_plan(plan, small_city)
    assert plan_from_dict(plan.to_dict()).routes == small_plan.routes


def test_bad_plans_are_refused_with_the_place(small_city: City) -> None:
    with pytest.raises(ValueError, match="route 0 stop 1"):
        plan_from_dict(
            {
                "routes": [
                    {
                        "truck_id": "T01",
                        "stops": [
                            {"kind": "start", "ref_id": "D1", "arrival_s": 0, "departure_s": 0},
                            {"kind": "teleport", "ref_id": "P1", "arrival_s": 0, "departure_s": 0},
                        ],
                    }
                ]
            }
        )
    plan = plan_from_dict(
        {
            "routes": [
                {
                    "truck_id": "T99",
                    "stops": [
                        {"kind": "start", "ref_id": "D1", "arrival_s": 0, "departure_s": 0},
                        {"kind": "end", "ref_id": "D1", "arrival_s": 0, "departure_s": 0},
                    ],
                }
            ]
        }
    )
    with pytest.raises(KeyError, match="T99"):
        check_plan(plan, small_city)
