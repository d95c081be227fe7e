"""Supervision over the API: ledger, alerts, the 一单四制 case workflow and reports, on the
alerts team's hand-computed day (district d1)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from fastapi.testclient import TestClient

from tests.integration.web.conftest import Users
from tests.unit.alerts.tracks import DAY

DAY_Q = {"service_date": DAY.isoformat()}


def test_ledger_of_the_day(client: TestClient, users: Users, supervised_day: int) -> None:
    for _ in range(2):  # a fresh body, then the cached one: each says when it was served
        before = datetime.now(UTC)
        body = client.get("/api/v1/ledger", params=DAY_Q, headers=users.headers("viewer")).json()
        assert before <= datetime.fromisoformat(body["now"]) <= datetime.now(UTC)
    assert body["service_date"] == DAY.isoformat()
    status = {e["point_id"]: (e["status"], e["delivery"]) for e in body["entries"]}
    assert status == {
        "P1": ("cleared", "delivered"),
        "P2": ("cleared", "delivered"),
        "P3": ("cleared", "not_delivered"),
        "P4": ("missed", "none"),
        "P5": ("missed", "none"),
    }
    missed = client.get(
        "/api/v1/ledger", params={**DAY_Q, "status": "missed"}, headers=users.headers("viewer")
    )
    assert [e["point_id"] for e in missed.json()["entries"]] == ["P4", "P5"]
    hidden = client.get("/api/v1/ledger", params=DAY_Q, headers=users.headers("north_viewer"))
    assert hidden.json()["entries"] == []


def test_stays_of_a_truck_are_the_alerts_stays(
    client: TestClient, users: Users, supervised_day: int
) -> None:
    """/trucks/{id}/stays serves the stays the alert pipeline stored, matched to sites and
    named, in local time; a truck outside the caller's districts is not found."""
    import psycopg

    from fleet.alerts import repo

    got = client.get(
        "/api/v1/trucks/T1/stays", params=DAY_Q, headers=users.headers("viewer")
    ).json()
    with psycopg.connect(users.url) as conn:
        stored = repo.day_visits(conn, service_date=DAY, truck_ids=["T1"], point_ids=[])
    want = [(v.site_kind, v.site_id, v.arrived_at) for v in stored if v.kind == "stay"]
    assert [
        (s["site_kind"], s["site_id"], datetime.fromisoformat(s["arrived_at"])) for s in got
    ] == want
    by_site = {s["site_id"]: s for s in got}
    assert {"P1", "P2", "S1"} <= set(by_site)
    assert by_site["P1"]["site_name"] == "P1 小区桶站" and by_site["P1"]["site_kind"] == "point"
    assert by_site["P1"]["dwell_s"] >= 120 and by_site["P1"]["confidence"] == 1.0
    assert by_site["P1"]["arrived_at"].endswith("+08:00")
    for who, truck in (("north_viewer", "T1"), ("viewer", "NOPE")):
        missing = client.get(
            f"/api/v1/trucks/{truck}/stays", params=DAY_Q, headers=users.headers(who)
        )
        assert missing.status_code == 404, (who, truck)


def test_alerts_filtered_by_kind(client: TestClient, users: Users, supervised_day: int) -> None:
    alerts = client.get(
        "/api/v1/alerts", params={**DAY_Q, "kind": "missed"}, headers=users.headers("viewer")
    ).json()
    # P4's one incident: missed, then not cleared by the deadline; found by either stage.
    assert [(a["kind"], a["point_id"]) for a in alerts] == [("not_cleared_by_deadline", "P4")]
    assert [s["kind"] for s in alerts[0]["details"]["stages"]] == [
        "missed",
        "not_cleared_by_deadline",
    ]
    assert alerts[0]["case_id"] == supervised_day


def test_case_workflow_assign_feedback_close(
    client: TestClient, users: Users, supervised_day: int
) -> None:
    case = f"/api/v1/cases/{supervised_day}"
    opened = client.get(case, headers=users.headers("viewer")).json()
    assert opened["state"] == "open" and [a["kind"] for a in opened["alerts"]] == [
        "not_cleared_by_deadline"
    ]
    assigned = client.post(
        f"{case}/assign",
        headers=users.headers("supervisor"),
        json={"assignee": "二班 王师傅", "note": "今天补收"},
    )
    assert assigned.status_code == 200 and assigned.json()["state"] == "assigned"
    assert assigned.json()["assignee"] == "二班 王师傅"
    feedback = client.post(
        f"{case}/feedback", headers=users.headers("dispatcher"), json={"note": "已补收"}
    )
    assert feedback.json()["state"] == "feedback"
    no_note = client.post(f"{case}/close", headers=users.headers("supervisor"), json={"note": ""})
    assert no_note.status_code == 422 and no_note.json()["errors"][0]["field"] == "note"
    closed = client.post(
        f"{case}/close", headers=users.headers("supervisor"), json={"note": "现场核实已清"}
    )
    body = closed.json()
    assert (
        body["state"] == "closed"
        and body["closed_by"] == "supervisor"
        and body["close_note"] == "现场核实已清"
    )
    actions = [(e["action"], e["actor"]) for e in body["events"]]
    assert actions[-3:] == [
        ("assign", "supervisor"),
        ("feedback", "dispatcher"),
        ("close", "supervisor"),
    ]
    again = client.post(
        f"{case}/assign", headers=users.headers("supervisor"), json={"assignee": "x"}
    )
    assert again.status_code == 409 and "销号" in again.json()["detail"]
    listed = client.get(
        "/api/v1/cases", params={**DAY_Q, "state": "active"}, headers=users.headers("viewer")
    ).json()
    assert supervised_day not in {c["case_id"] for c in listed} and len(listed) == 2


def test_feedback_before_assignment_is_refused(
    client: TestClient, users: Users, supervised_day: int
) -> None:
    response = client.post(
        f"/api/v1/cases/{supervised_day}/feedback",
        headers=users.headers("supervisor"),
        json={"note": "done"},
    )
    assert response.status_code == 409 and "交办" in response.json()["detail"]


def test_cases_of_other_districts_are_not_found(
    client: TestClient, users: Users, supervised_day: int
) -> None:
    for who in ("north_viewer", "north_admin"):
        assert (
            client.get(f"/api/v1/cases/{supervised_day}", headers=users.headers(who)).status_code
            == 404
        )
    response = client.post(
        f"/api/v1/cases/{supervised_day}/close",
        headers=users.headers("north_admin"),
        json={"note": "x"},
    )
    assert response.status_code == 404
    assert client.get("/api/v1/cases", headers=users.headers("north_viewer")).json() == []


def test_reports_and_csv(client: TestClient, users: Users, supervised_day: int) -> None:
    params = {"date_from": DAY.isoformat()}
    rows = client.get(
        "/api/v1/reports/clearance", params=params, headers=users.headers("viewer")
    ).json()
    assert [(r["group"], r["due"], r["cleared_and_delivered"]) for r in rows] == [("d1", 5, 2)]
    assert rows[0]["clearance_rate"] == 0.4
    by_truck = client.get(
        "/api/v1/reports/clearance",
        params={**params, "by": "truck"},
        headers=users.headers("viewer"),
    ).json()
    assert {r["group"] for r in by_truck} >= {"T1", "T2"}
    missed = client.get(
        "/api/v1/reports/missed", params=params, headers=users.headers("viewer")
    ).json()
    assert {r["point_id"] for r in missed} >= {"P4", "P5"}
    week = client.get(
        "/api/v1/reports/period",
        params={"period": "week", "anchor": DAY.isoformat()},
        headers=users.headers("viewer"),
    ).json()
    assert week["date_from"] <= DAY.isoformat() <= week["date_to"]
    exported = client.get(
        "/api/v1/reports/clearance.csv", params=params, headers=users.headers("viewer")
    )
    assert exported.headers["content-type"].startswith("text/csv")
    assert "clearday-clearance-2026-03-02.csv" in exported.headers["content-disposition"]
    assert exported.content.startswith(b"\xef\xbb\xbf")
    table = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert table[0]["group"] == "d1" and table[0]["due"] == "5"
    backwards = client.get(
        "/api/v1/reports/clearance",
        params={"date_from": "2026-03-02", "date_to": "2026-03-01"},
        headers=users.headers("viewer"),
    )
    assert backwards.status_code == 422
    assert (
        client.get(
            "/api/v1/reports/clearance", params=params, headers=users.headers("north_viewer")
        ).json()
        == []
    )


def test_the_ledger_endpoint_matches_the_alerts_service(
    client: TestClient, users: Users, supervised_day: int
) -> None:
    """The endpoint builds its JSON in SQL; it must say what service.ledger says."""
    from datetime import datetime

    import psycopg

    from fleet.alerts import service

    def normal(value: object) -> object:
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value)
            except ValueError:
                return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, dict):
            return {k: normal(v) for k, v in value.items()}
        if isinstance(value, list):
            return [normal(v) for v in value]
        return value

    for params in ({}, {"status": "missed"}, {"truck_id": "T1"}, {"limit": 2, "offset": 1}):
        got = client.get(
            "/api/v1/ledger", params={**DAY_Q, **params}, headers=users.headers("viewer")
        )
        with psycopg.connect(users.url) as conn:
            want = service.ledger(conn=conn, service_date=DAY, **params)
        assert normal(got.json()["entries"]) == normal([e.model_dump(mode="json") for e in want]), (
            params
        )


def test_the_ledger_follows_a_recomputed_day(
    client: TestClient, users: Users, supervised_day: int
) -> None:
    """Served ledgers are cached until the day's rows change, even when a replay
    recomputes them at the same `now`."""
    import psycopg

    from fleet.alerts import service
    from fleet.config import Settings
    from tests.integration.alerts.world import evening, insert_fixes, track_t3_serving_p4

    def p4() -> str:
        body = client.get("/api/v1/ledger", params=DAY_Q, headers=users.headers("viewer")).json()
        return next(e["status"] for e in body["entries"] if e["point_id"] == "P4")

    assert p4() == "missed" and p4() == "missed"  # the second answer comes from the cache
    with psycopg.connect(users.url) as conn:
        insert_fixes(conn, "T3", track_t3_serving_p4().fixes)
        service.replay_day(conn=conn, settings=Settings(), service_date=DAY, now=evening())
    assert p4() == "cleared"


def test_the_ledger_json_gives_every_time_in_the_district_zone(
    client: TestClient, users: Users, supervised_day: int
) -> None:
    """Whatever the database session's zone (UTC here), every time in the ledger's JSON,
    its evidence's too, is ISO 8601 with the district's offset (Asia/Shanghai, +08:00)."""
    from typing import Any

    import psycopg

    from fleet.alerts import service
    from fleet.config import Settings
    from tests.integration.alerts.world import evening

    with psycopg.connect(users.url) as conn:
        conn.execute("SELECT set_config('TimeZone', 'UTC', false)")
        service.replay_day(conn=conn, settings=Settings(), service_date=DAY, now=evening())

    def times(value: Any, key: str = "") -> list[str]:
        if isinstance(value, dict):
            return [t for k, v in value.items() for t in times(v, k)]
        if isinstance(value, list):
            return [t for v in value for t in times(v, key)]
        return [value] if isinstance(value, str) and (key == "at" or key.endswith("_at")) else []

    body = client.get("/api/v1/ledger", params=DAY_Q, headers=users.headers("viewer")).json()
    found = times(body["entries"])
    assert len(found) > 30
    assert [t for t in found if not t.endswith("+08:00")] == []
    cleared = next(e for e in body["entries"] if e["point_id"] == "P1")
    assert cleared["cleared_at"].startswith(f"{DAY.isoformat()}T06:")
