"""PDF exports over the API (the reports and a case's record), read back with pypdf on
the alerts team's hand-computed day (district d1, Asia/Shanghai): the rows, the words,
the local times, the scoping of the CSV, and clear refusals."""

from __future__ import annotations

import io
import re
from datetime import datetime
from typing import Any

import psycopg
import pypdf
import pytest
from fastapi.testclient import TestClient

from fleet import pdf
from tests.integration.web.conftest import Users
from tests.unit.alerts.tracks import DAY

D = DAY.isoformat()


def pdf_text(body: bytes) -> str:
    """The text of every page without white space: a cell's text wraps where its column
    ends, which puts line breaks at places that depend on the column's width."""
    assert body.startswith(b"%PDF-")
    reader = pypdf.PdfReader(io.BytesIO(body), strict=True)
    assert len(reader.pages) >= 1
    return re.sub(r"\s+", "", "".join(page.extract_text() for page in reader.pages))


def cells(*texts: str) -> str:
    """Consecutive cells (of a row, or a heading then its table), as `pdf_text` reads them."""
    return re.sub(r"\s+", "", "".join(texts))


def get_pdf(client: TestClient, users: Users, path: str, who: str = "viewer", **params: Any) -> str:
    response = client.get(path, params=params, headers=users.headers(who))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    return pdf_text(response.content)


def test_missed_pdf_holds_the_rows_in_words_and_local_times(
    client: TestClient, users: Users, supervised_day: int
) -> None:
    """Chinese by default: the headers, the reason and the codes in words, the plate,
    the deadline at 10:00 Shanghai time (02:00 UTC); `lang=en` says the same in English."""
    response = client.get(
        "/api/v1/reports/missed.pdf", params={"date_from": D}, headers=users.headers("viewer")
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert 'filename="clearday-missed-2026-03-02.pdf"' in response.headers["content-disposition"]
    text = pdf_text(response.content)
    assert cells("漏收明细") in text and cells("收集点名称", "垃圾类别", "计划车辆") in text
    p4 = ("P4", "P4 小区桶站", "可回收物", "皖A00002", "T2", "漏收", "未到达收集点")
    assert cells(*p4, f"{D} 10:00", "无", str(supervised_day), "待交办") in text, text
    assert cells("P5 小区桶站", "其他垃圾", "漏收", "计划未能安排：载重不足") in text, text
    assert f"{D} 02:00" not in text  # UTC is never printed

    english = get_pdf(client, users, "/api/v1/reports/missed.pdf", date_from=D, lang="en")
    assert (
        cells("Missed points") in english
        and cells("Point name", "Stream", "Planned truck") in english
    )
    assert (
        cells("P4 小区桶站", "Recyclable", "皖A00002", "T2", "missed", "no truck came") in english
    )
    assert cells("the plan could not include it: not enough capacity") in english
    assert cells(f"{D} 10:00") in english and "未到达" not in english


def test_reports_print_in_the_districts_own_zone(
    client: TestClient, users: Users, supervised_day: int
) -> None:
    """A district in Xinjiang time (UTC+6) reads its 10:00 Shanghai deadline as 08:00,
    in the PDF and the Chinese CSV alike, whatever the deployment's default zone."""
    with psycopg.connect(users.url, autocommit=True) as conn:
        conn.execute("UPDATE district SET timezone = 'Asia/Urumqi' WHERE district_id = 'd1'")
    text = get_pdf(client, users, "/api/v1/reports/missed.pdf", date_from=D, district_id="d1")
    assert cells("未到达收集点", f"{D} 08:00") in text, text
    assert "（Asia/Urumqi）" in text  # when it was made, in the district's zone
    exported = client.get(
        "/api/v1/reports/missed.csv",
        params={"date_from": D, "lang": "zh"},
        headers=users.headers("viewer"),
    ).content.decode("utf-8-sig")
    assert f"{D} 08:00" in exported and f"{D} 10:00" not in exported
    case = get_pdf(client, users, f"/api/v1/cases/{supervised_day}.pdf")
    assert cells("立案时间", f"{D} 19:00") in case  # 21:00 Shanghai


def test_clearance_pdf_by_truck_names_plates_and_prints_rates(
    client: TestClient, users: Users, supervised_day: int
) -> None:
    text = get_pdf(client, users, "/api/v1/reports/clearance.pdf", date_from=D, date_to=D)
    assert "日报（日清率）" in text and "分组：按区域" in text
    # d1: 5 due, 2 cleared and unloaded: 40.0%.
    assert cells(D, "d1", "5", "3", "2", "0", "2", "0", "0", "1", "40.0%", "40.0%") in text
    by_truck = get_pdf(client, users, "/api/v1/reports/clearance.pdf", date_from=D, by="truck")
    assert cells(D, "皖A00001", "T1", "2", "2", "2") in by_truck, by_truck
    assert cells(D, "未排入计划", "1", "0") in by_truck  # P5: no truck, no id
    english = get_pdf(
        client, users, "/api/v1/reports/clearance.pdf", date_from=D, by="stream", lang="en"
    )
    assert (
        cells("Daily report: clearance rate") in english
        and cells("Grouped: by waste stream") in english
    )
    assert cells(D, "Recyclable", "2") in english


def test_week_and_month_pdfs_print_the_whole_summary(
    client: TestClient, users: Users, supervised_day: int
) -> None:
    week = get_pdf(client, users, "/api/v1/reports/week.pdf", date_from=D)
    assert "周小结" in week and cells("作业日期：2026-03-02 至 2026-03-08") in week
    for heading in ("日清率汇总", "每日日清率", "按期结案率", "告警统计", "未日清次数最多的收集点"):
        assert heading in week, heading
    assert cells("d1", "未日清", "2") in week  # P4's and P5's deadline alerts
    assert cells("d1", "P4", "P4 小区桶站", "1") in week
    month = get_pdf(client, users, "/api/v1/reports/month.pdf", date_from=D, lang="en")
    assert (
        cells("Monthly report") in month
        and cells("Service dates: 2026-03-01 to 2026-03-31") in month
    )
    assert cells("d1", "not cleared by deadline", "2") in month


def test_case_pdf_is_the_record_of_the_case_in_local_time(
    client: TestClient, users: Users, supervised_day: int
) -> None:
    """一单四制 on paper: the case, who was responsible, every step with its actor, time
    and note, when it closed; a note full of markup and an emoji print literally."""
    case = f"/api/v1/cases/{supervised_day}"
    steps = [
        ("assign", "supervisor", {"assignee": "二班 王师傅", "note": "今天补收"}),
        ("feedback", "dispatcher", {"note": "已补收 <b>&amp;</b> 😀"}),
        ("close", "supervisor", {"note": "现场核实已清"}),
    ]
    for action, who, body in steps:
        done = client.post(f"{case}/{action}", json=body, headers=users.headers(who))
        assert done.status_code == 200, done.text
    closed = client.get(case, headers=users.headers("viewer")).json()
    closed_at = datetime.fromisoformat(closed["closed_at"])
    assert closed["closed_at"].endswith("+08:00")
    local = closed_at.strftime("%Y-%m-%d %H:%M")

    response = client.get(f"{case}.pdf", headers=users.headers("viewer"))
    assert response.status_code == 200, response.text
    disposition = response.headers["content-disposition"]
    assert f'filename="clearday-case-{supervised_day}.pdf"' in disposition
    text = pdf_text(response.content)
    assert cells(f"案件记录 #{supervised_day}") in text
    for fact in (
        ("对象", "P4"),
        ("车辆", "皖A00002 (T2)"),
        ("状态", "已销号"),
        ("责任人", "二班 王师傅"),
        ("立案时间", f"{D} 21:00"),
        ("销号时间", local),
        ("销号人", "supervisor"),
        ("销号说明", "现场核实已清"),
    ):
        assert cells(*fact) in text, (fact, text)
    assert cells(local, "supervisor", "销号", "已反馈 → 已销号", "现场核实已清") in text
    assert cells("supervisor", "交办", "待交办 → 已交办", "二班 王师傅", "今天补收") in text
    assert cells("dispatcher", "反馈", "已交办 → 已反馈", "已补收 <b>&amp;</b> ?") in text
    assert cells(f"{D} 10:15", "未日清", "严重") in text  # the alert, at its local time

    english = get_pdf(client, users, f"{case}.pdf", lang="en")
    assert cells(f"Case record #{supervised_day}") in english
    assert cells("Closed at", local) in english and cells("Closing note", "现场核实已清") in english
    assert cells("supervisor", "assigned", "open → assigned", "二班 王师傅") in english


def test_pdfs_keep_to_the_callers_districts_like_the_csv(
    client: TestClient, users: Users, supervised_day: int
) -> None:
    """A user of the north sees no d1 row (an empty report, as the CSV), and d1's case
    is not found for it; anonymous callers are refused."""
    for params in ({"date_from": D}, {"date_from": D, "district_id": "d1"}):
        text = get_pdf(client, users, "/api/v1/reports/missed.pdf", who="north_viewer", **params)
        assert "P4" not in text and "暂无" in text
        csv = client.get(
            "/api/v1/reports/missed.csv", params=params, headers=users.headers("north_viewer")
        ).text
        assert "P4" not in csv
    week = get_pdf(client, users, "/api/v1/reports/week.pdf", who="north_viewer", date_from=D)
    assert "d1" not in week
    for who in ("north_viewer", "north_admin"):
        hidden = client.get(f"/api/v1/cases/{supervised_day}.pdf", headers=users.headers(who))
        assert hidden.status_code == 404, (who, hidden.status_code)
    assert client.get(f"/api/v1/cases/{supervised_day}.pdf").status_code == 401
    assert client.get("/api/v1/reports/missed.pdf").status_code == 401


def test_bad_report_names_dates_and_ids_get_a_clear_4xx(
    client: TestClient, users: Users, supervised_day: int
) -> None:
    viewer = users.headers("viewer")
    refused = {
        "/api/v1/reports/nope.pdf": {},
        "/api/v1/reports/missed.pdf?date_from=2026-02-30": {},
        "/api/v1/reports/missed.pdf?lang=fr": {},
        "/api/v1/reports/missed.pdf?date_from=2026-03-02&date_to=2026-03-01": {
            "code": "range_reversed"
        },
        "/api/v1/reports/missed.pdf?date_from=2024-01-01&date_to=2026-03-01": {
            "code": "range_too_long"
        },
        "/api/v1/reports/missed.pdf?datefrom=2026-03-02": {},
        "/api/v1/cases/0.pdf": {},
        "/api/v1/cases/abc.pdf": {},
    }
    for url, expected in refused.items():
        response = client.get(url, headers=viewer)
        assert response.status_code == 422, (url, response.status_code)
        body = response.json()
        assert body["detail"], url
        if "code" in expected:
            assert body["code"] == expected["code"], (url, body)
    missing = client.get("/api/v1/cases/999999.pdf", headers=viewer)
    assert missing.status_code == 404 and "999999" in missing.json()["detail"]


def test_a_report_too_long_to_print_is_refused_with_the_way_out(
    client: TestClient, users: Users, supervised_day: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the printable number of rows the answer is a 422 that says how many and what
    to do instead (the CSV has no such limit)."""
    monkeypatch.setattr(pdf, "MAX_ROWS", 2)
    viewer = users.headers("viewer")
    refused = client.get("/api/v1/reports/missed.pdf", params={"date_from": D}, headers=viewer)
    assert refused.status_code == 422
    body = refused.json()
    assert body["code"] == "too_many_rows_to_print" and body["params"] == {"rows": 3, "max": 2}
    assert "CSV" in body["detail"]
    assert (
        client.get(
            "/api/v1/reports/clearance.pdf", params={"date_from": D}, headers=viewer
        ).status_code
        == 200
    )
    exported = client.get("/api/v1/reports/missed.csv", params={"date_from": D}, headers=viewer)
    assert exported.status_code == 200
