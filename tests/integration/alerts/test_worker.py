"""The incremental worker against a real database: late and out-of-order data,
idempotency, and a late batch that clears a missed point and closes its case."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg

from fleet.alerts import repo, service, worker
from fleet.alerts.visits import Fix
from fleet.config import Settings
from tests.unit.alerts.tracks import DAY, at

from .world import insert_fixes, load_domain, load_plan, track_t1, track_t2, track_t3_serving_p4


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def snapshot(conn: psycopg.Connection) -> tuple[list[tuple[Any, ...]], ...]:
    return (
        conn.execute(
            """SELECT truck_id, service_date, kind, site_kind, site_id, arrived_at, departed_at,
                      round(dwell_s::numeric, 3), is_open, fixes, distance_m, speed_kmh, evidence
                 FROM visit ORDER BY truck_id, arrived_at, kind, site_id"""
        ).fetchall(),
        conn.execute("SELECT * FROM track_gap ORDER BY truck_id, start_at").fetchall(),
        conn.execute(
            """SELECT point_id, status, reason, cleared_at, cleared_by_truck_id, round(dwell_s::numeric, 3),
                      delivery, delivered_at, evidence FROM ledger_entry ORDER BY point_id"""
        ).fetchall(),
    )


def test_worker_follows_the_day_incrementally_and_replay_agrees(database_url: str) -> None:
    """Fixes arrive in slices, one blind-zone batch late and reversed; the result equals a full replay."""
    t1, t2, t3 = track_t1(), track_t2(), track_t3_serving_p4()
    blind = (at("06:10"), at("06:16"))
    held = [f for f in t1.fixes if blind[0] <= f.at < blind[1]]
    with psycopg.connect(database_url, autocommit=True) as conn:
        load_domain(conn)
        load_plan(conn)
    clock = FakeClock(at("06:00"))
    w = worker.Worker(database_url, worker.AlertConfig.from_settings(Settings()), clock=clock)
    raised: list[str] = []

    def feed(truck: str, fixes: list[Fix], start: datetime, end: datetime) -> None:
        part = [f for f in fixes if start <= f.at < end and f not in held]
        if part:
            with psycopg.connect(database_url, autocommit=True) as conn:
                insert_fixes(conn, truck, part)

    def tick(now: datetime) -> worker.TickStats:
        clock.now = now
        stats = w.tick()
        assert not stats.skipped
        raised.extend(r.candidate.key for r in stats.raised)
        return stats

    slice_start = at("06:00")
    while slice_start < at("06:50"):
        slice_end = slice_start + timedelta(minutes=2)
        feed("T1", t1.fixes, slice_start, slice_end)
        feed("T2", t2.fixes, slice_start, slice_end)
        if slice_start == at("06:24"):  # the blind zone's batch, newest first
            with psycopg.connect(database_url, autocommit=True) as conn:
                insert_fixes(conn, "T1", list(reversed(held)))
        tick(slice_end + timedelta(seconds=15))
        slice_start = slice_end

    tick(at("10:20"))
    assert [k for k in raised if k.startswith("point|")] == ["point|2026-03-02|P4"]
    with psycopg.connect(database_url) as conn:
        (case,) = [
            c for c in service.list_cases(conn=conn, service_date=DAY) if c.subject == "point:P4"
        ]
        assert case.state == "open"

    # T3's terminal was in a blind zone while it served P4 at 09:40; its batch lands now.
    with psycopg.connect(database_url, autocommit=True) as conn:
        insert_fixes(conn, "T3", t3.fixes)
    stats = tick(at("10:31"))
    assert stats.cases_auto_closed == 1
    with psycopg.connect(database_url) as conn:
        detail = service.get_case(conn=conn, case_id=case.case_id)
        (p4,) = [e for e in service.ledger(conn=conn, service_date=DAY) if e.point_id == "P4"]
    assert p4.status == "cleared" and p4.cleared_by_truck_id == "T3" and p4.delivery == "delivered"
    assert detail.state == "closed" and detail.auto_closed
    assert detail.events[-1].action == "auto_close" and detail.events[-1].actor == "system"
    assert "车辆 皖A00003 " in (detail.close_note or "")  # T3, by its plate
    assert detail.alerts[0].resolved_at == at("10:31")

    tick(at("20:01"))
    tick(at("21:00"))
    tick(at("21:00"))  # nothing new: nothing raised twice
    assert sorted(raised) == sorted(set(raised))
    assert sorted(raised) == [
        "not_unloaded|2026-03-02|T2",
        "point|2026-03-02|P4",
        "point|2026-03-02|P5",
    ]

    with psycopg.connect(database_url) as conn:
        incremental = snapshot(conn)
        stats_replay = worker.replay(conn, w.pipeline.config, service_date=DAY, now=at("21:00"))
        assert stats_replay.alerts_raised == 0
        assert snapshot(conn) == incremental
    w.close()


def test_concurrent_ticks_do_not_double_process(database_url: str) -> None:
    """A second worker finds the district's lock held (a tick or a replay running
    there) and skips it."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        load_domain(conn)
        load_plan(conn)
        insert_fixes(conn, "T1", track_t1().fixes)
        config = worker.AlertConfig.from_settings(Settings())
        with conn.transaction():
            for (district_id,) in conn.execute("SELECT district_id FROM district").fetchall():
                repo.lock_district(conn, district_id)
            other = worker.Worker(database_url, config, clock=FakeClock(at("07:00")))
            assert other.tick().skipped
            other.close()
    w = worker.Worker(database_url, config, clock=FakeClock(at("07:00")))
    assert not w.tick().skipped
    w.close()


def test_a_point_incident_escalates_in_place(database_url: str) -> None:
    """P4 missed at 10:15 raises one alert; at the 20:00 deadline that same alert (and its
    case) move on to not_cleared_by_deadline and high severity: no second alert."""
    from .world import load_world

    load_world(database_url)
    clock = FakeClock(at("10:16"))
    w = worker.Worker(database_url, worker.AlertConfig.from_settings(Settings()), clock=clock)
    w.tick()
    with psycopg.connect(database_url) as conn:
        (first,) = [
            a for a in service.list_alerts(conn=conn, service_date=DAY) if a.point_id == "P4"
        ]
    assert (first.kind, first.severity) == ("missed", "normal")
    clock.now = at("20:01")
    stats = w.tick()
    w.close()
    assert [r.candidate.kind for r in stats.raised if r.candidate.point_id == "P4"] == [
        "not_cleared_by_deadline"
    ]
    with psycopg.connect(database_url) as conn:
        (now,) = [a for a in service.list_alerts(conn=conn, service_date=DAY) if a.point_id == "P4"]
        case = service.get_case(conn=conn, case_id=now.case_id or 0)
        events = conn.execute("SELECT event FROM webhook_delivery ORDER BY delivery_id").fetchall()
    assert now.alert_id == first.alert_id and now.case_id == first.case_id
    assert (now.kind, now.severity, case.severity) == ("not_cleared_by_deadline", "high", "high")
    stages = now.details["stages"]
    assert [s["kind"] for s in stages] == ["missed", "not_cleared_by_deadline"]
    assert stages[0]["raised_at"] < stages[1]["raised_at"]
    assert [e.action for e in case.events] == ["open", "attach"]
    assert events == [] or ("alert.escalated",) in events
