"""The greedy planner the simulator uses without the real one, and the checks before a day."""

from __future__ import annotations

import itertools
from pathlib import Path

import msgspec
import pytest

from routing.plan import Plan, Route
from simulator.city import City
from simulator.plans import greedy_plan, load_plan, refuse_unknown_places
from simulator.roads import RoadNetwork


def test_greedy_plan_respects_streams_access_capacity_and_ends_empty(
    small_city: City, small_net: RoadNetwork
) -> None:
    plan = greedy_plan(small_city, net=small_net)
    refuse_unknown_places(plan, small_city)
    served = [s.ref_id for r in plan.routes for s in r.stops if s.kind == "point"]
    assert len(served) == len(set(served))
    assert set(served) | {u.point_id for u in plan.unassigned} == {p.id for p in small_city.points}
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
            assert stop.load_after_kg == pytest.approx(load)
        assert load == 0.0, f"{truck.id} ends its day loaded"
        assert route.stops[-1].arrival_s <= truck.shift_end_s


def test_greedy_plan_reports_the_road_distance_of_each_leg(
    small_city: City, small_net: RoadNetwork, small_plan: Plan
) -> None:
    """A leg's distance is the length of the fastest road path; a route's is their sum."""
    for route in small_plan.routes:
        truck = small_city.truck(route.truck_id)
        node = {d.id: d.node for d in small_city.depots}
        node |= {s.id: s.node for s in small_city.stations}
        node |= {p.id: p.node for p in small_city.points}
        here = node[route.stops[0].ref_id or ""]
        for stop in route.stops[1:]:
            if stop.kind == "break":
                assert stop.distance_from_prev_m == 0
                continue
            there = node[stop.ref_id or ""]
            path = small_net.path(here, there, narrow_ok=truck.can_enter_narrow)
            assert stop.distance_from_prev_m == pytest.approx(small_net.path_length_m(path))
            assert (here == there) == (stop.distance_from_prev_m == 0)
            here = there
        assert route.distance_m == pytest.approx(sum(s.distance_from_prev_m for s in route.stops))
    assert small_plan.stats.solver == "greedy"
    assert small_plan.stats.distance_m == pytest.approx(small_plan.distance_m)


def test_plan_json_round_trip(tmp_path: Path, small_plan: Plan) -> None:
    path = tmp_path / "plan.json"
    path.write_bytes(small_plan.to_json())
    assert load_plan(path) == small_plan


def test_a_file_that_is_not_a_plan_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text('{"routes": [{"truck_id": "T01", "stops": "none"}]}')
    with pytest.raises(ValueError, match=r"plan\.json: not a plan"):
        load_plan(path)


def _with_route(plan: Plan, route: Route) -> Plan:
    return msgspec.structs.replace(plan, routes=(route, *plan.routes[1:]))


def test_plans_that_do_not_fit_the_city_are_refused_with_the_place(
    small_city: City, small_plan: Plan
) -> None:
    first = small_plan.routes[0]
    stranger = msgspec.structs.replace(first, truck_id="T99")
    with pytest.raises(ValueError, match="unknown truck 'T99'"):
        refuse_unknown_places(_with_route(small_plan, stranger), small_city)
    nowhere = msgspec.structs.replace(first.stops[1], ref_id="P9999")
    lost = msgspec.structs.replace(first, stops=(first.stops[0], nowhere, *first.stops[2:]))
    with pytest.raises(ValueError, match="unknown 'P9999'"):
        refuse_unknown_places(_with_route(small_plan, lost), small_city)
    endless = msgspec.structs.replace(first, stops=first.stops[:-1])
    with pytest.raises(ValueError, match="structure"):
        refuse_unknown_places(_with_route(small_plan, endless), small_city)


def test_a_stop_of_an_unknown_kind_is_refused_where_it_is(small_plan: Plan) -> None:
    data = small_plan.to_dict()
    data["routes"][0]["stops"][1]["kind"] = "teleport"
    with pytest.raises(ValueError, match=r"routes\[0\].stops\[1\].kind"):
        Plan.from_dict(data)
