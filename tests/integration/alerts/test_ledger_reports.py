"""The ledger, alerts, cases and reports of a hand-computed day, in a real database."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pypdf
import pytest

from fleet.alerts import service
from fleet.alerts.cases import CaseNotFound, CaseRefused
from fleet.config import Settings
from tests.unit.alerts.tracks import DAY, at

from .world import evening, load_world


@pytest.fixture
def day_url(database_url: str) -> str:
    load_world(database_url)
    with psycopg.connect(database_url) as conn:
        service.replay_day(conn=conn, settings=Settings(), service_date=DAY, now=evening())
    return database_url


def test_ledger_matches_the_hand_computed_day(day_url: str) -> None:
    with psycopg.connect(day_url) as conn:
        entries = {e.point_id: e for e in service.ledger(conn=conn, service_date=DAY)}
    got = {
        pid: (e.status, e.reason, e.delivery, e.cleared_by_truck_id) for pid, e in entries.items()
    }
    assert got == {
        "P1": ("cleared", None, "delivered", "T1"),
        "P2": ("cleared", None, "delivered", "T1"),
        "P3": ("cleared", None, "not_delivered", "T2"),
        "P4": ("missed", "not_visited", "none", None),
        "P5": ("missed", "unassigned: capacity", "none", None),
    }
    assert entries["P1"].delivered_station_id == "S1"
    assert entries["P1"].dwell_s is not None and 280 <= entries["P1"].dwell_s <= 320
    assert entries["P1"].evidence["visit"]["truck_id"] == "T1"


def test_alerts_and_cases_of_the_day(day_url: str) -> None:
    with psycopg.connect(day_url) as conn:
        alerts = service.list_alerts(conn=conn, service_date=DAY)
        cases = service.list_cases(conn=conn, service_date=DAY, now=evening())
    # One incident per point: P4 missed at 10:15 and still not cleared at the deadline.
    assert sorted((a.kind, a.point_id or a.truck_id) for a in alerts) == [
        ("not_cleared_by_deadline", "P4"),
        ("not_cleared_by_deadline", "P5"),
        ("not_unloaded", "T2"),
    ]
    p4_alert = next(a for a in alerts if a.point_id == "P4")
    assert [s["kind"] for s in p4_alert.details["stages"]] == ["missed", "not_cleared_by_deadline"]
    assert p4_alert.condition_at == at("10:15") and p4_alert.severity == "high"
    assert sorted((c.subject, c.severity, c.state) for c in cases) == [
        ("point:P4", "high", "open"),
        ("point:P5", "high", "open"),
        ("truck:T2", "high", "open"),
    ]
    p4 = next(c for c in cases if c.subject == "point:P4")
    assert len([a for a in alerts if a.point_id == "P4"]) == 1, "one alert for P4's incident"
    # The texts name trucks as a person reads them: by plate (T2 is 皖A00002).
    assert all(not re.search(r"车辆 T\d", a.message) for a in alerts), [a.message for a in alerts]
    assert "车辆 皖A00002 " in next(a.message for a in alerts if a.kind == "not_unloaded")
    assert "计划车辆 皖A0000" in p4_alert.message, p4_alert.message
    assert p4.due_at == evening() + timedelta(hours=4)


def test_clearance_rate_by_district_truck_and_stream(day_url: str) -> None:
    with psycopg.connect(day_url) as conn:
        by_district = service.clearance_report(conn=conn, date_from=DAY)
        by_truck = service.clearance_report(conn=conn, date_from=DAY, by="truck")
        by_stream = service.clearance_report(conn=conn, date_from=DAY, by="stream")
    (d,) = by_district
    assert (d.group, d.due, d.cleared, d.cleared_and_delivered, d.missed, d.not_delivered) == (
        "d1",
        5,
        3,
        2,
        2,
        1,
    )
    assert d.clearance_rate == 0.4
    trucks = {r.group: (r.due, r.cleared_and_delivered, r.clearance_rate) for r in by_truck}
    assert trucks == {"T1": (2, 2, 1.0), "T2": (2, 0, 0.0), "-": (1, 0, 0.0)}
    streams = {r.group: (r.due, r.cleared_and_delivered, r.clearance_rate) for r in by_stream}
    assert streams == {"other": (3, 2, 0.6667), "recyclable": (2, 0, 0.0)}


def test_missed_points_report_has_reasons(day_url: str) -> None:
    with psycopg.connect(day_url) as conn:
        rows = service.missed_report(conn=conn, date_from=DAY)
    assert [(r.point_id, r.reason_text) for r in rows] == [
        ("P3", "已收运但未到中转站卸载"),
        ("P4", "未到达收集点"),
        ("P5", "计划未能安排：载重不足"),
    ]
    assert all(r.case_id is not None for r in rows if r.point_id != "P3")


def test_case_workflow_and_on_time_closure_rate(day_url: str) -> None:
    with psycopg.connect(day_url) as conn:
        cases = {c.subject: c for c in service.list_cases(conn=conn, service_date=DAY)}
        p5, p4 = cases["point:P5"].case_id, cases["point:P4"].case_id
        with pytest.raises(CaseRefused, match="note"):
            service.close_case(conn=conn, case_id=p5, note="", actor="王监管")
        with pytest.raises(CaseRefused, match="assign"):
            service.feedback_case(conn=conn, case_id=p4, note="done", actor="二中队")
        service.assign_case(
            conn=conn, case_id=p4, assignee="二中队", actor="王监管", now=at("21:05")
        )
        service.feedback_case(
            conn=conn, case_id=p4, note="已安排补收", actor="二中队", now=at("21:10")
        )
        detail = service.close_case(
            conn=conn, case_id=p5, note="次日优先安排", actor="王监管", now=at("21:30")
        )
        assert detail.state == "closed" and detail.close_note == "次日优先安排"
        assert [(e.action, e.actor) for e in detail.events][-1] == ("close", "王监管")
        with pytest.raises(CaseRefused, match="closed"):
            service.assign_case(conn=conn, case_id=p5, assignee="x", actor="王监管")
        with pytest.raises(CaseNotFound):
            service.get_case(conn=conn, case_id=p4, district_ids=["other-district"])
        with pytest.raises(CaseNotFound):
            service.close_case(
                conn=conn, case_id=p4, note="n", actor="a", district_ids=["other-district"]
            )
        timeline = service.get_case(conn=conn, case_id=p4)
        assert [(e.action, e.to_state) for e in timeline.events] == [
            ("open", "open"),
            ("assign", "assigned"),
            ("feedback", "feedback"),
        ]
        (soon,) = service.closure_report(conn=conn, date_from=DAY, now=at("21:40"))
        assert (soon.cases, soon.closed_on_time, soon.open_overdue, soon.on_time_rate) == (
            3,
            1,
            0,
            1.0,
        )
        (later,) = service.closure_report(
            conn=conn, date_from=DAY, now=at("21:40") + timedelta(hours=6)
        )
        assert (later.open_overdue, later.on_time_rate) == (2, round(1 / 3, 4))
        week = service.period_report(conn=conn, period="week", anchor=DAY, now=at("21:40"))
        assert (week.date_from.isoformat(), week.date_to.isoformat()) == (
            "2026-03-02",
            "2026-03-08",
        )
        assert {(a.kind, a.alerts) for a in week.alerts} == {
            ("missed", 1), ("not_cleared_by_deadline", 2), ("not_unloaded", 1)
        }  # fmt: skip
        assert [p.point_id for p in week.worst_points] == ["P3", "P4", "P5"]
        month = service.period_report(conn=conn, period="month", anchor=DAY, now=at("21:40"))
        assert (
            month.date_to.isoformat() == "2026-03-31" and month.clearance[0].clearance_rate == 0.4
        )
        csv = service.report_csv(conn=conn, report="clearance", date_from=DAY, by="truck")
    assert csv.startswith("\ufeffservice_date,group,due,")
    assert "2026-03-02,T1,2,2,2," in csv


def test_replay_is_idempotent(day_url: str) -> None:
    """Replaying the day again changes no visit, no verdict, and raises nothing twice."""

    def snapshot(conn: psycopg.Connection) -> tuple[list[tuple[Any, ...]], ...]:
        return (
            conn.execute(
                "SELECT * FROM visit ORDER BY truck_id, arrived_at, kind, site_id"
            ).fetchall(),
            conn.execute(
                """SELECT service_date, point_id, status, reason, cleared_at, cleared_by_truck_id,
                          dwell_s, delivery, delivered_at, evidence FROM ledger_entry ORDER BY point_id"""
            ).fetchall(),
            conn.execute("SELECT dedupe_key, case_id FROM alert ORDER BY dedupe_key").fetchall(),
            conn.execute("SELECT * FROM track_gap ORDER BY truck_id, start_at").fetchall(),
        )

    with psycopg.connect(day_url) as conn:
        before = snapshot(conn)
        stats = service.replay_day(conn=conn, settings=Settings(), service_date=DAY, now=evening())
        assert stats["alerts_raised"] == 0
        assert snapshot(conn) == before


def test_cli_replay_and_report(database_url: str, tmp_path: Path) -> None:
    """`clearday alerts replay` recomputes the day; `clearday alerts report` prints it,
    as CSV or as the PDF the dashboard downloads."""
    load_world(database_url)
    env = {**os.environ, "CLEARDAY_DATABASE_URL": database_url}

    def clearday(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", "from fleet.cli import main; main()", *args],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip

    done = clearday(
        "alerts", "replay", "--date", DAY.isoformat(), "--now", "2026-03-02T21:00+08:00"
    )
    assert done.returncode == 0, done.stderr
    assert "3 new alerts" in done.stdout  # P4, P5 (one incident each) and T2
    assert "cleared 3" in done.stdout and "missed 2" in done.stdout
    report = clearday(
        "alerts", "report", "clearance", "--date", DAY.isoformat(), "--by", "truck", "--csv"
    )
    assert report.returncode == 0, report.stderr
    assert report.stdout.splitlines()[0].startswith("service_date,group,due,cleared")
    printed = tmp_path / "missed.pdf"
    done = clearday("alerts", "report", "missed", "--date", DAY.isoformat(), "--pdf", str(printed))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and "3 rows" in done.stderr, done.stderr  # P3 not unloaded, P4, P5
    pages = pypdf.PdfReader(io.BytesIO(printed.read_bytes()), strict=True).pages
    text = re.sub(r"\s+", "", "".join(page.extract_text() for page in pages))
    assert "漏收明细" in text and "P4小区桶站" in text
    assert f"{DAY.isoformat()}10:00" in text  # P4's deadline in Shanghai time, not UTC
    nowhere = tmp_path / "no-such-folder" / "missed.pdf"
    refused = clearday(
        "alerts", "report", "missed", "--date", DAY.isoformat(), "--pdf", str(nowhere)
    )
    assert refused.returncode == 2 and "cannot write" in refused.stderr, refused.stderr
    assert not nowhere.parent.exists()
    bad = clearday("alerts", "replay", "--date", "2026-13-01")
    assert bad.returncode != 0 and "YYYY-MM-DD" in bad.stderr


def test_times_a_person_reads_are_in_the_district_time_zone(day_url: str) -> None:
    """The session reads timestamptz in UTC; the alert texts, case timeline, ledger and the
    missed-points CSV still give Asia/Shanghai times (P4's window ends 10:00 local)."""
    with psycopg.connect(day_url) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        (alert,) = [
            a for a in service.list_alerts(conn=conn, service_date=DAY) if a.point_id == "P4"
        ]
        detail = service.get_case(conn=conn, case_id=alert.case_id or 0)
        (entry,) = [e for e in service.ledger(conn=conn, service_date=DAY) if e.point_id == "P4"]
        csv = service.report_csv(conn=conn, report="missed", date_from=DAY)
    assert "（10:00）" in alert.message, alert.message
    assert {e.at.utcoffset() for e in detail.events} == {timedelta(hours=8)}
    assert alert.raised_at.utcoffset() == timedelta(hours=8)
    assert entry.window_end_at.isoformat() == "2026-03-02T10:00:00+08:00"
    assert "2026-03-02T10:00:00+08:00" in csv
