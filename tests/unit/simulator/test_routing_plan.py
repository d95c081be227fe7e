"""The simulator drives a plan from the real planner (routing.solver) as planned."""

from __future__ import annotations

from datetime import date

from routing.check import check_plan
from simulator.city import City
from simulator.plans import routing_problem, solved_plan
from simulator.trucks import DaySpec, simulate


def test_drives_a_routing_solver_plan_stop_by_stop(small_city: City) -> None:
    plan = solved_plan(small_city, time_limit_s=120, seed=1, solution_limit=100)
    assert check_plan(routing_problem(small_city), plan) == []
    assert plan.routes
    _, day = simulate(DaySpec(city=small_city, plan=plan, service_date=date(2025, 3, 3), seed=1))
    for route in plan.routes:
        served = [
            r["point_id"]
            for r in day.truth
            if r["type"] == "service" and r["truck_id"] == route.truck_id
        ]
        unloads = [
            r["station_id"]
            for r in day.truth
            if r["type"] == "unload" and r["truck_id"] == route.truck_id
        ]
        assert served == [s.ref_id for s in route.stops if s.kind == "point"]
        assert unloads == [s.ref_id for s in route.stops if s.kind == "station"]
        end = next(
            r for r in day.truth if r["type"] == "route_end" and r["truck_id"] == route.truck_id
        )
        assert end["load_kg"] == 0 and end["depot_id"] == route.stops[-1].ref_id
