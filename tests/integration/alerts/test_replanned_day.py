"""A day re-planned mid-day, in a real database, with the real planner and re-planner.

The world's district (world.py: D1, P1-P5, S1; trucks T1-T3) is planned by the solver:
one truck, A, gets every point (D1 → P5 → P1 → P2 → P3 → P4 → S1 → D1). A clears P5
and P1, then breaks down between P1 and P2 at 06:11. At 06:40 the dispatcher re-plans
the day without A (`replan_day`) and publishes it: P2-P4 go to another truck, B, and
the new plan no longer mentions P5 and P1 (the re-planner leaves out the points a
truck now out of service collected). At 07:30 A is running again: it drives straight
along P2, P3, P4 (not stopping: they are B's now) to unload at S1 and goes home.
B leaves the depot at 07:45 and works its new route.

The ledger holds the whole day: P5 and P1 stay due, cleared by A with A as planned
truck; P2-P4 are due with B and are not held against A, whose drive past them is no
drive-by; nothing is missed, and the day ends with every point cleared and delivered.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import psycopg

from fleet.alerts import repo, service, worker
from fleet.alerts.visits import Fix
from fleet.config import Settings
from fleet.plans import service as plans
from routing.plan import Plan
from tests.unit.alerts.tracks import DAY, TZ, Track, at

from .test_worker import FakeClock, snapshot
from .world import POINTS, insert_fixes, load_domain

PLACES = {"D1": (-500.0, 0.0), "S1": (1600.0, 0.0)} | {
    pid: (float(x), float(y)) for pid, (x, y, _) in POINTS.items()
}
BROKEN_AT = (200.0, 0.0)  # between P1 and P2, at no site
REPLAN_AT = at("06:40")


def track_a() -> Track:
    """Clears P5 and P1, breaks down, runs again at 07:30: along P2-P4 to S1, home."""
    t = Track(at("05:55"), x=-500, noise_m=5, seed=41).stay(120)
    t.drive(*PLACES["P5"], 30).stay(300).drive(*PLACES["P1"], 30).stay(300)
    t.drive(*BROKEN_AT, 20)
    t.stay((at("07:30") - t.t).total_seconds())
    t.drive(*PLACES["S1"], 30).stay(900)
    t.drive(1600, 300, 30).drive(-500, 300, 40).drive(-500, 0, 30).stay(600)
    return t


def track_b(stops: list[tuple[str, str | None]]) -> Track:
    """At the depot, reporting, as its new route begins; from 07:45 the route's stops
    in order, reached along the lane at y = -300 (passing no other point)."""
    t = Track(REPLAN_AT - timedelta(minutes=2), x=-500, noise_m=5, seed=42)
    t.stay((at("07:45") - t.t).total_seconds())
    for kind, ref in stops:
        if kind not in ("point", "station", "end") or ref is None:
            continue
        x, y = PLACES[ref]
        if (x, y) != (t.x, t.y):
            t.drive(t.x, -300, 30).drive(x, -300, 30).drive(x, y, 30)
        t.stay({"point": 300, "station": 900}.get(kind, 600))
    return t


def ledger_of(conn: psycopg.Connection) -> dict[str, Any]:
    return {e.point_id: e for e in service.ledger(conn=conn, service_date=DAY)}


def test_a_replanned_day_keeps_every_point_planned_at_any_time(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        load_domain(conn)
        first_id = plans.plan_day(
            conn, district_id="d1", service_date=DAY, tz=TZ, time_limit_s=120,
            solution_limit=100, publish=True,
        )  # fmt: skip
        stored = plans.get_plan(conn, plan_id=first_id)
    assert stored is not None
    first = Plan.from_dict(stored["document"])
    (route,) = first.routes
    a = route.truck_id
    assert route.point_ids == ["P5", "P1", "P2", "P3", "P4"] and not first.unassigned

    clock = FakeClock(at("05:50"))
    w = worker.Worker(database_url, worker.AlertConfig.from_settings(Settings()), clock=clock)
    raised: list[str] = []

    def feed(fixes: dict[str, list[Fix]], until: datetime) -> None:
        """Fixes recorded up to `until` arrive, then the worker ticks at `until`."""
        with psycopg.connect(database_url, autocommit=True) as conn:
            for truck, track in fixes.items():
                new = [f for f in track if clock.now <= f.at < until]
                if new:
                    insert_fixes(conn, truck, new)
        clock.now = until
        stats = w.tick()
        assert not stats.skipped
        raised.extend(r.candidate.key for r in stats.raised)

    a_fixes = track_a().fixes
    feed({a: a_fixes}, at("06:35"))
    with psycopg.connect(database_url) as conn:
        before = ledger_of(conn)
    assert {p: (e.status, e.planned_truck_id) for p, e in before.items()} == {
        "P1": ("cleared", a), "P2": ("pending", a), "P3": ("pending", a),
        "P4": ("pending", a), "P5": ("cleared", a),
    }  # fmt: skip

    # The dispatcher takes A out and publishes the re-plan.
    with psycopg.connect(database_url, autocommit=True) as conn:
        second_id = plans.replan_day(
            conn, plan_id=first_id, now=REPLAN_AT, unavailable_truck_ids=[a], time_limit_s=120,
            solution_limit=100,
        )  # fmt: skip
        plans.publish_plan(conn, plan_id=second_id)
        stored = plans.get_plan(conn, plan_id=second_id)
        old = plans.get_plan(conn, plan_id=first_id)
    assert stored is not None and old is not None
    assert (stored["replaces_plan_id"], old["status"]) == (first_id, "superseded")
    second = Plan.from_dict(stored["document"])
    assert second.route_for(a) is None and not second.unassigned
    # What the re-planner leaves out of the new plan: the points A collected.
    assert second.assigned_point_ids() == {"P2", "P3", "P4"}
    handed = {p: r.truck_id for r in second.routes for p in r.point_ids}
    (b,) = set(handed.values())
    (b_route,) = second.routes
    b_fixes = track_b([(s.kind, s.ref_id) for s in b_route.stops]).fixes

    # 07:40: A has driven past P2-P4 to S1 and unloaded; B has not left yet.
    feed({a: a_fixes, b: b_fixes}, at("07:40"))
    with psycopg.connect(database_url) as conn:
        mid = ledger_of(conn)
        passes = conn.execute(
            """SELECT site_id FROM visit WHERE truck_id = %s AND kind = 'pass' AND site_kind = 'point'
                ORDER BY arrived_at""",
            (a,),
        ).fetchall()
    assert [r[0] for r in passes] == ["P2", "P3", "P4"]  # seen, and no drive-by of A's
    got = {
        p: (e.status, e.reason, e.planned_truck_id, e.cleared_by_truck_id, e.delivery)
        for p, e in mid.items()
    }
    assert got == {
        "P1": ("cleared", None, a, a, "delivered"),
        "P2": ("pending", None, b, None, "none"),
        "P3": ("pending", None, b, None, "none"),
        "P4": ("pending", None, b, None, "none"),
        "P5": ("cleared", None, a, a, "delivered"),
    }
    with psycopg.connect(database_url) as conn:
        plan_of: dict[str, int] = dict(
            conn.execute("SELECT point_id, plan_id FROM ledger_entry ORDER BY point_id").fetchall()
        )
    assert plan_of == {"P1": first_id, "P5": first_id} | dict.fromkeys(handed, second_id)
    # Planned stop and ETA: A's from the first plan, B's from the re-plan (after it).
    assert (mid["P1"].planned_seq, mid["P5"].planned_seq) == (2, 1)
    for seq, stop in enumerate(b_route.stops):
        if stop.ref_id in handed:
            entry = mid[stop.ref_id]
            assert entry.planned_seq == seq
            assert entry.planned_arrival_at is not None and entry.planned_arrival_at > REPLAN_AT
    assert [k for k in raised if k.split("|")[0] in ("missed", "drive_by")] == []

    # The rest of the day: B clears its points, unloads and goes home.
    feed({a: a_fixes, b: b_fixes}, at("10:20"))
    feed({a: a_fixes, b: b_fixes}, at("21:00"))
    with psycopg.connect(database_url) as conn:
        end = ledger_of(conn)
        (day,) = service.clearance_report(conn=conn, date_from=DAY)
        by_truck = service.clearance_report(conn=conn, date_from=DAY, by="truck")
    assert {p: (e.status, e.cleared_by_truck_id, e.delivery) for p, e in end.items()} == {
        "P1": ("cleared", a, "delivered"),
        "P2": ("cleared", b, "delivered"),
        "P3": ("cleared", b, "delivered"),
        "P4": ("cleared", b, "delivered"),
        "P5": ("cleared", a, "delivered"),
    }
    assert (day.due, day.cleared_and_delivered, day.clearance_rate) == (5, 5, 1.0)
    assert {r.group: (r.due, r.cleared_and_delivered) for r in by_truck} == {
        a: (2, 2),
        b: (3, 3),
    }
    # A's breakdown is what supervisors hear about; nothing was missed.
    assert sorted(k.rsplit("|", 1)[0] for k in raised) == [f"stationary|{DAY}|{a}"]

    # Replaying the day from scratch, under the re-plan, agrees with the worker.
    with psycopg.connect(database_url) as conn:
        incremental = snapshot(conn)
        again = worker.replay(conn, w.pipeline.config, service_date=DAY, now=at("21:00"))
        assert again.alerts_raised == 0
        assert snapshot(conn) == incremental
    w.close()


def insert_plan(
    conn: psycopg.Connection,
    *,
    status: str,
    replaces: int | None,
    routes: dict[str, list[str]],
    unassigned: dict[str, str],
    service_date: date = DAY,
) -> int:
    """A plan stored as the planner does (rows only): each route D1 → points → S1 → D1."""
    row = conn.execute(
        """INSERT INTO plan (district_id, service_date, status, replaces_plan_id, document)
           VALUES ('d1', %s, %s, %s, '{}') RETURNING plan_id""",
        (service_date, status, replaces),
    ).fetchone()
    assert row is not None
    for truck, points in routes.items():
        stops = [("start", "D1"), *(("point", p) for p in points), ("station", "S1"), ("end", "D1")]
        for seq, (kind, ref) in enumerate(stops):
            eta = at("06:00", 600 * seq)
            conn.execute(
                """INSERT INTO plan_stop (plan_id, truck_id, seq, kind, point_id, station_id,
                                          depot_id, arrival_at, departure_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (row[0], truck, seq, kind, ref if kind == "point" else None,
                 ref if kind == "station" else None, ref if kind in ("start", "end") else None,
                 eta, eta),
            )  # fmt: skip
    for point, reason in unassigned.items():
        conn.execute(
            "INSERT INTO plan_unassigned (plan_id, point_id, reason) VALUES (%s, %s, %s)",
            (row[0], point, reason),
        )
    return int(row[0])


def test_the_day_is_the_published_plan_and_the_chain_it_replaced(database_url: str) -> None:
    """Three plans in a chain (T1 out after P1, then T2 out after P3); neither a draft
    re-plan (not published yet) nor another day's plan is part of the day."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        load_domain(conn)
        conn.execute(
            """INSERT INTO collection_point (point_id, district_id, name, lat, lon, stream, daily_amount_kg)
               SELECT 'P6', district_id, name, lat, lon, stream, 100 FROM collection_point
                WHERE point_id = 'P5'"""
        )
        yesterday = insert_plan(
            conn, status="published", replaces=None, routes={"T1": ["P6"]}, unassigned={},
            service_date=DAY - timedelta(days=1),
        )  # fmt: skip
        one = insert_plan(
            conn, status="superseded", replaces=yesterday,
            routes={"T1": ["P1", "P2"], "T2": ["P3", "P4"]}, unassigned={"P5": "capacity"},
        )  # fmt: skip
        two = insert_plan(
            conn, status="superseded", replaces=one,
            routes={"T2": ["P3", "P4", "P2", "P5"]}, unassigned={},
        )  # fmt: skip
        three = insert_plan(
            conn, status="published", replaces=two,
            routes={"T3": ["P4", "P5"]}, unassigned={"P2": "time_window"},
        )  # fmt: skip
        insert_plan(
            conn, status="draft", replaces=three, routes={"T3": ["P4", "P5", "P1"]}, unassigned={}
        )
        due = repo.due_points(conn, district_id="d1", service_date=DAY, min_dwell_fraction=0.5)
        days = repo.truck_days(conn, district_id="d1", service_date=DAY)
    assert {p.point_id: (p.plan_id, p.planned_truck_id, p.planned_seq, p.unassigned_reason)
            for p in due} == {
        "P1": (one, "T1", 1, None),  # collected by T1 before it was taken out
        "P2": (None, None, None, "time_window"),  # the newest plan could not fit it
        "P3": (two, "T2", 1, None),
        "P4": (three, "T3", 1, None),
        "P5": (three, "T3", 2, None),  # no longer unassigned
    }  # fmt: skip
    # Each truck is held to exactly the points it is still the planned truck of.
    assert {d.truck_id: [(s.kind, s.site_id) for s in d.planned] for d in days} == {
        "T1": [("start", "D1"), ("point", "P1"), ("station", "S1"), ("end", "D1")],
        "T2": [("start", "D1"), ("point", "P3"), ("station", "S1"), ("end", "D1")],
        "T3": [("start", "D1"), ("point", "P4"), ("point", "P5"), ("station", "S1"), ("end", "D1")],
    }  # fmt: skip
