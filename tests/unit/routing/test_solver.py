"""The planner on tiny hand-checkable instances, one constraint each; every plan goes
through the independent checker."""

from __future__ import annotations

import pytest

from routing import SolverOptions, solve
from routing.check import check_plan
from routing.instances import synthetic_district
from routing.plan import Plan
from routing.problem import Problem

from .tiny import line_problem, point, station, truck

FAST = SolverOptions(solution_limit=400)


def plan_for(problem: Problem, seconds: float = 60.0, options: SolverOptions = FAST) -> Plan:
    plan = solve(problem, time_limit_s=seconds, options=options)
    violations = check_plan(problem, plan)
    assert violations == [], [str(v) for v in violations]
    return plan


def kinds(plan: Plan, truck_id: str = "T1") -> list[str]:
    route = plan.route_for(truck_id)
    assert route is not None
    return [s.kind for s in route.stops]


def refs(plan: Plan, truck_id: str = "T1") -> list[str | None]:
    route = plan.route_for(truck_id)
    assert route is not None
    return [s.ref_id for s in route.stops if s.kind in ("point", "station")]


def test_capacity_forces_an_unload_between_trips() -> None:
    """Three 400 kg points and a 1000 kg truck: it must unload after two of them and
    again before going home (station at the depot, points beyond)."""
    pb = line_problem(
        {
            "A": (1000.0, point("A", amount_kg=400.0)),
            "B": (1100.0, point("B", amount_kg=400.0)),
            "C": (1200.0, point("C", amount_kg=400.0)),
        }
    )
    plan = plan_for(pb)
    assert not plan.unassigned
    assert kinds(plan).count("station") == 2
    assert kinds(plan)[-2:] == ["station", "end"]  # ends the day empty
    route = plan.route_for("T1")
    assert route is not None
    assert max(s.load_after_kg for s in route.stops) <= 1000.0
    # Best: 0 -> 1100 -> 1200 -> 0 (2400 m) and 0 -> 1000 -> 0 (2000 m).
    assert route.distance_m == pytest.approx(4400.0)


def test_every_truck_ends_empty_at_a_station() -> None:
    """One small point: depot -> point -> station -> depot, never straight home."""
    pb = line_problem({"A": (1000.0, point("A"))}, stations={"S": (3000.0, station())})
    plan = plan_for(pb)
    assert refs(plan) == ["A", "S"]
    route = plan.route_for("T1")
    assert route is not None
    assert route.distance_m == pytest.approx(1000 + 2000 + 3000)
    assert route.stops[-1].load_after_kg == 0.0


def test_time_windows_decide_the_order() -> None:
    """B (far) must be served before 400 s, A (near) only after 1000 s: B first."""
    pb = line_problem(
        {
            "A": (1000.0, point("A", window_start_s=1000.0, window_end_s=5000.0)),
            "B": (3000.0, point("B", window_start_s=0.0, window_end_s=400.0)),
        }
    )
    plan = plan_for(pb)
    assert refs(plan) == ["B", "A", "S"]
    route = plan.route_for("T1")
    assert route is not None
    a = next(s for s in route.stops if s.ref_id == "A")
    assert a.departure_s - 60.0 >= 1000.0  # service starts within A's window


@pytest.mark.parametrize(
    ("the_point", "the_truck", "the_station", "reason"),
    [
        # No truck carries kitchen waste.
        (point("A", stream="kitchen"), truck(), station(), "stream"),
        # A narrow lane, the truck may not enter.
        (point("A", access_class="narrow"), truck(), station(), "access"),
        # More than a truckload.
        (point("A", amount_kg=1500.0), truck(), station(), "capacity"),
        # Window closes before the truck can get there (100 s away, leaves at 1000 s).
        (point("A", window_end_s=500.0), truck(shift_start_s=1000.0), station(), "time_window"),
        # The only station closes before the truck can tip there.
        (point("A"), truck(), station(closes_s=400.0), "station_hours"),
        # The shift is too short for the round trip.
        (point("A"), truck(shift_end_s=150.0), station(), "shift"),
    ],
)
def test_unservable_points_come_back_with_their_reason(
    the_point: object, the_truck: object, the_station: object, reason: str
) -> None:
    """A point nothing can serve is unassigned with the constraint that blocks it."""
    pb = line_problem(
        {"A": (1000.0, the_point)},  # type: ignore[dict-item]
        trucks=[the_truck],  # type: ignore[list-item]
        stations={"S": (0.0, the_station)},  # type: ignore[dict-item]
    )
    plan = plan_for(pb)
    assert [(u.point_id, u.reason) for u in plan.unassigned] == [("A", reason)]
    assert plan.routes == ()


def test_the_right_truck_serves_each_stream_and_lane() -> None:
    """Kitchen waste goes on the kitchen truck, the narrow-lane point on the small one."""
    pb = line_problem(
        {
            "K": (1000.0, point("K", stream="kitchen")),
            "N": (1500.0, point("N", access_class="narrow")),
            "O": (2000.0, point("O")),
        },
        trucks=[
            truck("KIT", streams=frozenset({"kitchen"})),
            truck("SMALL", can_enter_narrow=True, capacity_kg=300.0),
        ],
    )
    plan = plan_for(pb)
    assert not plan.unassigned
    assert "K" in refs(plan, "KIT")
    assert {"N", "O"} <= set(refs(plan, "SMALL"))


def test_lunch_break_is_taken_inside_its_window() -> None:
    """A day from 0 to 3 h with points at 0.5 h and 2.5 h: the break (30 min,
    starting 1 h .. 1.5 h) is in the plan, between two stops."""
    pb = line_problem(
        {
            "A": (1000.0, point("A", window_start_s=1800.0, window_end_s=2400.0)),
            "B": (1000.0, point("B", window_start_s=9000.0, window_end_s=9600.0)),
        },
        trucks=[
            truck(
                shift_end_s=12_000.0,
                break_duration_s=1800.0,
                break_earliest_s=3600.0,
                break_latest_s=5400.0,
            )
        ],
    )
    plan = plan_for(pb)
    route = plan.route_for("T1")
    assert route is not None
    breaks = [s for s in route.stops if s.kind == "break"]
    assert len(breaks) == 1
    assert 3600.0 <= breaks[0].arrival_s <= 5400.0
    assert breaks[0].departure_s - breaks[0].arrival_s >= 1800.0


def test_daily_load_cap_spreads_the_work() -> None:
    """Each truck may collect 500 kg a day: three 200 kg points need two trucks."""
    pb = line_problem(
        {pid: (1000.0 + 10 * i, point(pid, amount_kg=200.0)) for i, pid in enumerate("ABC")},
        trucks=[truck("T1", max_day_load_kg=500.0), truck("T2", max_day_load_kg=500.0)],
    )
    plan = plan_for(pb)
    assert not plan.unassigned
    assert len(plan.routes) == 2


def test_trips_are_cut_to_fit_the_day_when_the_depot_is_far() -> None:
    """Trucks of 243 kg with a 400 kg day, thirty-six 60 kg points 50 km out: six days
    of two 180 kg trips serve them all; full 240 kg trips would not pack two to a day
    and would send three more trucks out and home."""
    far = 50_000.0
    pb = line_problem(
        {f"P{i:02d}": (far + 40 * i, point(f"P{i:02d}", amount_kg=60.0)) for i in range(36)},
        trucks=[truck(f"T{k:02d}", capacity_kg=243.0, max_day_load_kg=400.0) for k in range(10)],
        stations={"S": (far, station())},
    )
    plan = plan_for(pb)
    assert not plan.unassigned
    assert len(plan.routes) == 6


def test_without_stations_the_depot_takes_the_load() -> None:
    """The classic CVRP: no stations, each truck one trip back to its depot."""
    pb = line_problem(
        {"A": (1000.0, point("A", amount_kg=600.0)), "B": (2000.0, point("B", amount_kg=600.0))},
        trucks=[truck("T1"), truck("T2")],
        stations={},
    )
    plan = plan_for(pb)
    assert len(plan.routes) == 2
    assert all(s.kind != "station" for r in plan.routes for s in r.stops)
    assert plan.stats.distance_m == pytest.approx(2000 + 4000)


def test_bad_arguments_raise_value_errors() -> None:
    """A non-positive time limit or a non-problem is refused with a clear message."""
    pb = line_problem({"A": (1000.0, point("A"))})
    with pytest.raises(ValueError, match="time_limit_s"):
        solve(pb, time_limit_s=0)
    with pytest.raises(ValueError, match="problem"):
        solve("not a problem", time_limit_s=1)  # type: ignore[arg-type]


def test_same_seed_same_plan() -> None:
    """With a solution limit (not a clock) the plan depends only on the seed."""
    pb, _ = synthetic_district(n_points=15, n_trucks=2, seed=4)
    options = SolverOptions(solution_limit=40)
    a = solve(pb, time_limit_s=30, seed=7, options=options)
    b = solve(pb, time_limit_s=30, seed=7, options=options)
    assert [r.stops for r in a.routes] == [r.stops for r in b.routes]


def test_small_generated_city_passes_the_checker() -> None:
    """A generated district (road graph, windows, break, streams, narrow lanes): every
    point served, the plan valid."""
    pb, _ = synthetic_district(n_points=40, n_trucks=4, seed=3, kitchen_share=0.1)
    plan = plan_for(pb, seconds=120.0, options=SolverOptions(solution_limit=300))
    assert not plan.unassigned
    assert plan.stats.num_assigned == 40


def test_decomposed_district_passes_the_checker() -> None:
    """Split into pieces (forced small), solved and stitched: still valid, all served."""
    pb, _ = synthetic_district(n_points=60, n_trucks=4, seed=5)
    options = SolverOptions(max_points_per_solve=25, workers=1, solution_limit=200)
    plan = plan_for(pb, seconds=120.0, options=options)
    assert plan.stats.pieces == 3
    assert not plan.unassigned
