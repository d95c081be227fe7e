"""Mid-day re-planning on tiny problems; every re-plan goes through the independent
checker from the trucks' live positions.

Re-planning puts live positions into the travel matrix from coordinates, so these
problems sit on the equator: ``x`` metres east of the depot D (station S at the depot),
with the straight-line fallback matrix (1.3 x metres, driven at 25 km/h).
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from routing import make_plan
from routing.check import check_plan
from routing.plan import Plan, Route, Stop
from routing.problem import Depot, Point, Problem, Truck, build_problem
from routing.replan import Replan, TruckState, replan
from routing.schedule import Visit, schedule_route
from routing.vocab import EARTH_RADIUS_M

from .tiny import point, station, truck

# Searches stop after a number of solutions (the same plan on any machine); the time
# limit is only a safety cap.
LIMIT_S = 120.0
SOLUTIONS = 100


def lon(x: float) -> float:
    return math.degrees(x / EARTH_RADIUS_M)


def at(x: float, p: Point) -> Point:
    return dataclasses.replace(p, lat=0.0, lon=lon(x))


def geo_problem(
    points: dict[str, float],
    *,
    amounts: dict[str, float] | None = None,
    trucks: list[Truck] | None = None,
) -> Problem:
    """Points (100 kg unless ``amounts`` says otherwise) at x metres; S at the depot."""
    amounts = amounts or {}
    return build_problem(
        points=[at(x, point(pid, amount_kg=amounts.get(pid, 100.0))) for pid, x in points.items()],
        stations=[dataclasses.replace(station("S"), lat=0.0, lon=0.0)],
        depots=[Depot("D", 0.0, 0.0)],
        trucks=trucks or [truck("T1"), truck("T2")],
        name="geo-line",
    )


def fixed_plan(pb: Problem, items: dict[str, list[str]]) -> Plan:
    """The morning plan with the given sequences (``"@S"`` unloads), timed by the
    planner's scheduler; it must already be valid."""
    routes = []
    for tid, seq in items.items():
        visits = [Visit("station", i[1:]) if i[0] == "@" else Visit("point", i) for i in seq]
        sched = schedule_route(pb, pb.truck(tid), visits)
        assert sched.feasible, sched.reason
        routes.append(sched.to_route(tid))
    plan = make_plan(pb, routes, [], solve_time_s=0.0, seed=0, status="hand")
    assert check_plan(pb, plan) == []
    return plan


def state(tid: str, x: float, **kw: object) -> TruckState:
    return TruckState(tid, 0.0, lon(x), **kw)  # type: ignore[arg-type]


def checked(pb: Problem, plan: Plan, states: list[TruckState], **kw: object) -> Replan:
    """Re-plan and check the result from the live positions: no violation."""
    out = replan(pb, plan, states, time_limit_s=LIMIT_S, solution_limit=SOLUTIONS, **kw)  # type: ignore[arg-type]
    violations = check_plan(out.problem, out.plan, live=out.live_positions)
    assert violations == [], [str(v) for v in violations]
    return out


def route(plan: Plan, truck_id: str) -> Route:
    r = plan.route_for(truck_id)
    assert r is not None, f"no route for {truck_id}"
    return r


def after_live(out: Replan, truck_id: str) -> tuple[Stop, ...]:
    """The stops a truck makes from its live position on."""
    r = route(out.plan, truck_id)
    return r.stops[out.live_positions[truck_id].completed_stops :]


def served_after_live(out: Replan) -> dict[str, str]:
    """Point id -> the truck that collects it after the re-plan (not before)."""
    return {
        s.ref_id: r.truck_id
        for r in out.plan.routes
        for s in (after_live(out, r.truck_id) if r.truck_id in out.live_positions else r.stops)
        if s.kind == "point" and s.ref_id is not None
    }


# Four points on a line, two trucks: T1 takes the near two, T2 the far two.
PB = geo_problem({"P1": 1000.0, "P2": 2000.0, "P3": 3000.0, "P4": 4000.0})
MORNING = fixed_plan(PB, {"T1": ["P1", "P2", "@S"], "T2": ["P3", "P4", "@S"]})


def stop_of(truck_id: str, ref_id: str, plan: Plan = MORNING) -> Stop:
    return next(s for s in route(plan, truck_id).stops if s.ref_id == ref_id)


def test_completed_stops_are_kept_at_the_front() -> None:
    """T1 has served P1 and T2 has just left: their done stops stay as they were, the
    rest is served from the live positions, nothing collected twice."""
    now = stop_of("T1", "P1").departure_s + 60.0
    states = [
        state("T1", 1300.0, completed_stops=2, load_kg=100.0),
        state("T2", 500.0, completed_stops=1),
    ]
    out = checked(PB, MORNING, states, now_s=now)
    for tid, n in (("T1", 2), ("T2", 1)):
        assert route(out.plan, tid).stops[:n] == route(MORNING, tid).stops[:n]
        live = out.live_positions[tid]
        assert (live.completed_stops, live.time_s, live.key) == (n, now, f"truck/{tid}")
    assert out.live_positions["T1"].load_kg == 100.0
    assert set(served_after_live(out)) == {"P2", "P3", "P4"}
    assert not out.plan.unassigned
    assert out.plan.stats.notes == (f"re-planned at {now:.0f} s",)


def test_missed_point_is_reinserted() -> None:
    """T1 drove past P1 (it was blocked) and served P2: P1 leaves the done stops, the
    leg to P2 is measured from the depot, and P1 is collected later."""
    now = stop_of("T1", "P2").departure_s + 30.0
    states = [state("T1", 2000.0, completed_stops=3, load_kg=100.0)]
    out = checked(PB, MORNING, states, now_s=now, missed_point_ids=["P1"])
    r1 = route(out.plan, "T1")
    assert out.live_positions["T1"].completed_stops == 2
    start, p2 = r1.stops[:2]
    assert start == route(MORNING, "T1").stops[0]
    assert p2.ref_id == "P2"
    assert p2.distance_from_prev_m == pytest.approx(PB.matrix.distance("depot/D", "point/P2"))
    assert p2.load_after_kg == pytest.approx(100.0)  # only P2 on board
    assert "P1" in served_after_live(out)
    assert not out.plan.unassigned


def test_newly_reported_point_is_served() -> None:
    """A point reported at midday (P5, between P1 and P2) is served by someone."""
    now = stop_of("T1", "P1").departure_s
    p5 = at(1500.0, point("P5"))
    states = [state("T1", 1000.0, completed_stops=2, load_kg=100.0)]
    out = checked(PB, MORNING, states, now_s=now, new_points=[p5])
    assert "P5" in out.problem.point_index
    assert "P5" in served_after_live(out)
    assert not out.plan.unassigned


def test_broken_down_truck_hands_over_its_points() -> None:
    """T2 breaks down after P3: its P4 goes to T1, its route leaves the plan, and P3
    (collected, now history) leaves the problem."""
    now = stop_of("T2", "P3").departure_s + 10.0
    states = [
        state("T1", 1000.0, completed_stops=2, load_kg=100.0),
        state("T2", 3000.0, completed_stops=2, load_kg=100.0, available=False),
    ]
    out = checked(PB, MORNING, states, now_s=now)
    assert out.plan.route_for("T2") is None
    assert served_after_live(out) == {"P2": "T1", "P4": "T1"}
    assert "P3" not in out.problem.point_index
    assert not out.plan.unassigned


@pytest.mark.parametrize("with_state", [True, False], ids=["state", "no-state"])
def test_truck_that_has_not_left_starts_at_its_depot_now(with_state: bool) -> None:
    """T1 still at the depot at 5000 s (reported or not): its day starts there, then."""
    pb = geo_problem({"P1": 1000.0, "P2": 2000.0}, trucks=[truck("T1")])
    morning = fixed_plan(pb, {"T1": ["P1", "P2", "@S"]})
    states = [state("T1", 0.0)] if with_state else []
    out = checked(pb, morning, states, now_s=5000.0)
    start = route(out.plan, "T1").stops[0]
    assert (start.kind, start.ref_id) == ("start", "D")
    assert start.departure_s >= 5000.0
    assert out.live_positions == {}
    assert out.plan.assigned_point_ids() == {"P1", "P2"}


def load_problem() -> tuple[Problem, Plan]:
    """T1 alone (1000 kg): P1 (100 kg), P2 and P3 (200 kg each) in one trip."""
    pb = geo_problem(
        {"P1": 1000.0, "P2": 2000.0, "P3": 3000.0},
        amounts={"P2": 200.0, "P3": 200.0},
        trucks=[truck("T1")],
    )
    return pb, fixed_plan(pb, {"T1": ["P1", "P2", "P3", "@S"]})


def test_load_on_board_is_respected() -> None:
    """After P1 T1 has 700 kg on board (the bins were heavy): both 200 kg points no
    longer fit, so it unloads before the second; here unloading first (at x = 0, then
    P2, P3, unload: 7 km) beats P2, unload, P3, unload (9 km). Ignoring the load would
    have given P2, P3, unload (5 km)."""
    pb, morning = load_problem()
    now = stop_of("T1", "P1", morning).departure_s
    out = checked(pb, morning, [state("T1", 1000.0, completed_stops=2, load_kg=700.0)], now_s=now)
    rest = after_live(out, "T1")
    assert [s.kind for s in rest] == ["station", "point", "point", "station", "end"]
    assert [s.load_after_kg for s in rest[:3]] == [0.0, 200.0, 400.0]
    # Straight-line matrix: 1.3 × the distance along the line.
    assert sum(s.distance_from_prev_m for s in rest) == pytest.approx(7000.0 * 1.3, abs=1.0)
    assert not out.plan.unassigned


def test_full_truck_unloads_first() -> None:
    """With 900 kg on board neither 200 kg point fits: T1 unloads first, then serves
    both."""
    pb, morning = load_problem()
    now = stop_of("T1", "P1", morning).departure_s
    out = checked(pb, morning, [state("T1", 1000.0, completed_stops=2, load_kg=900.0)], now_s=now)
    rest = after_live(out, "T1")
    assert (rest[0].kind, rest[0].load_after_kg) == ("station", 0.0)
    assert not out.plan.unassigned


def break_problem(earliest_s: float, latest_s: float) -> tuple[Problem, Plan]:
    """T1 with a 600 s break, three points and its morning plan: it serves P3 at
    681..741 s and is home at 1603 s plus the break."""
    t1 = truck("T1", break_duration_s=600.0, break_earliest_s=earliest_s, break_latest_s=latest_s)
    pb = geo_problem({"P1": 1000.0, "P2": 2000.0, "P3": 3000.0}, trucks=[t1])
    morning = fixed_plan(pb, {"T1": ["P1", "P2", "P3", "@S"]})
    kinds = [s.kind for s in route(morning, "T1").stops]
    assert kinds == ["start", "point", "point", "point", "break", "station", "end"]
    return pb, morning


def test_break_still_due_is_taken_from_the_live_position() -> None:
    """T1 was held up: at 1050 s it is 500 m past P3 (320 kg on board) and its break
    must start by 1100 s, so the re-plan starts with the break; the checker measures
    the leg after it from the live position."""
    pb, morning = break_problem(1000.0, 1100.0)
    states = [state("T1", 3500.0, completed_stops=4, load_kg=320.0)]
    out = checked(pb, morning, states, now_s=1050.0)
    rest = after_live(out, "T1")
    assert [s.kind for s in rest] == ["break", "station", "end"]
    assert 1050.0 <= rest[0].arrival_s <= 1100.0
    assert rest[1].distance_from_prev_m == pytest.approx(
        pb.matrix.distance("point/P3", "station/S") + 1.3 * 500.0, rel=1e-3
    )


def test_break_already_taken_is_not_asked_again() -> None:
    """A driver who reports the break taken (off-plan, at P1) is not sent on another,
    and the plan without one is valid."""
    pb, morning = break_problem(1000.0, 1500.0)
    now = stop_of("T1", "P1", morning).departure_s + 600.0
    states = [state("T1", 1000.0, completed_stops=2, load_kg=100.0, break_taken=True)]
    out = checked(pb, morning, states, now_s=now)
    assert all(s.kind != "break" for s in route(out.plan, "T1").stops)
    assert route(out.plan, "T1").stops[-1].arrival_s > 1500.0  # no room for it after


def test_unknown_truck_is_refused() -> None:
    """A state for a truck the problem does not have."""
    with pytest.raises(ValueError, match=r"states: unknown truck 'T9'"):
        replan(PB, MORNING, [state("T9", 0.0)], now_s=100.0, time_limit_s=LIMIT_S)


@pytest.mark.parametrize(
    "new",
    [[at(500.0, point("P2"))], [at(500.0, point("P9")), at(600.0, point("P9"))]],
    ids=["already-known", "repeated"],
)
def test_duplicate_new_point_ids_are_refused(new: list[Point]) -> None:
    """A new point whose id the problem already has, or that is given twice."""
    with pytest.raises(ValueError, match=r"new_points: .*'P[29]'"):
        replan(PB, MORNING, [], now_s=100.0, time_limit_s=LIMIT_S, new_points=new)
