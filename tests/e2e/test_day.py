"""The supervisor's and the dispatcher's day, as a person performs it in Chromium against
the real app and database (the alerts team's hand-computed day in district d1: P4 missed
by T2, P5 left out of the plan): find the day's missed points and why, open one on the
map, export them (CSV and PDF), play back the truck's day, assign and close the case and
save its record, read the weekly report and save it as PDF, and create a user."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pypdf
import pytest

from fleet.alerts import repo as alerts_repo
from tests.e2e.conftest import shot
from tests.e2e.test_dashboard import choose, log_in
from tests.integration.web.conftest import PASSWORD, LiveServer, Users
from tests.unit.alerts.tracks import DAY

pytestmark = pytest.mark.slow


def downloaded_pdf(page: Any, button: str, saved: Path) -> str:
    """Click a PDF link, save the download and read its text back (white space removed:
    where a cell wraps depends on its column's width)."""
    with page.expect_download() as download_info:
        page.click(button)
    download_info.value.save_as(saved)
    raw = saved.read_bytes()
    assert raw.startswith(b"%PDF-"), raw[:20]
    reader = pypdf.PdfReader(io.BytesIO(raw), strict=True)
    return re.sub(r"\s+", "", "".join(p.extract_text() for p in reader.pages))


def open_supervision(page: Any, server: LiveServer, who: str = "supervisor") -> None:
    log_in(page, server, who)
    page.click("a[data-page=supervise]")
    choose(page, "d1", DAY.isoformat())
    page.wait_for_selector("[data-testid=missed] tr[data-point-id=P4]")


def test_supervisor_finds_missed_points_and_why_and_exports_them(
    page: Any, live_server: LiveServer, users: Users, supervised_day: int, tmp_path: Path
) -> None:
    open_supervision(page, live_server)
    row = page.locator("[data-testid=missed] tr[data-point-id=P4]")
    text = row.inner_text()
    # The reason in words, the planned truck by its plate, the stream, the case.
    assert "未到达收集点" in text and "皖A00002" in text and "可回收物" in text, text
    assert "待交办" in text, text
    assert "T2" not in text.split(), text
    left_out = page.inner_text("[data-testid=missed] tr[data-point-id=P5]")
    assert "计划未能安排" in left_out and "载重不足" in left_out, left_out
    headers = page.locator("[data-testid=missed] th").all_inner_texts()
    assert headers[:7] == [
        "收集点",
        "原因",
        "车辆",
        "垃圾类别",
        "计划时间",
        "最后证据",
        "可信度",
    ], headers

    zoom_before = page.evaluate("document.querySelector('.leaflet-proxy') !== null")
    assert zoom_before
    row.click()
    page.wait_for_selector("[data-testid=missed] tr.selected[data-point-id=P4]")
    # The map zoomed in on P4 and shows its tooltip.
    page.wait_for_selector(".leaflet-tooltip:has-text('P4')")
    shot(page, "50-missed-points")

    with page.expect_download() as download_info:
        page.click("[data-testid=missed-csv]")
    saved = tmp_path / "missed.csv"
    download_info.value.save_as(saved)
    raw = saved.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "Excel needs the BOM to read Chinese"
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    p4 = next(r for r in rows if r["收集点编号"] == "P4")
    assert p4["原因"] == "未到达收集点" and p4["计划车辆"] == "皖A00002", p4
    assert p4["状态"] == "漏收" and p4["垃圾类别"] == "可回收物", p4
    assert p4["收运时限"] == f"{DAY.isoformat()} 10:00", p4  # local time, not UTC

    # The same list to print: a PDF in the page's language, P4's row in words.
    text = downloaded_pdf(page, "[data-testid=missed-pdf]", tmp_path / "missed.pdf")
    assert "漏收明细" in text and "P4小区桶站可回收物皖A00002T2漏收未到达收集点" in text, text
    assert f"{DAY.isoformat()}10:00" in text, text


def test_filters_and_search_narrow_the_alerts_and_cases(
    page: Any, live_server: LiveServer, users: Users, supervised_day: int
) -> None:
    open_supervision(page, live_server)
    cases = page.locator("[data-testid=sup-list] tbody tr")
    every = cases.count()
    assert every >= 3, every
    assert page.locator("[data-testid=sup-list] th").count() >= 5  # column headers
    # Each step waits for the list the page draws, not for a time.
    page.select_option("[data-testid=filter-truck]", "T2")
    page.wait_for_function(
        """every => {
            const rows = [...document.querySelectorAll('[data-testid=sup-list] tbody tr')];
            return rows.length > 0 && rows.length < every
                && rows.every(r => r.innerText.includes('皖A00002'));
        }""",
        arg=every,
    )
    page.select_option("[data-testid=filter-truck]", "")
    page.fill("[data-testid=filter-q]", "P5")
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=sup-list] tbody tr').length === 1"
    )
    assert "P5" in cases.first.inner_text()
    page.fill("[data-testid=filter-q]", "")
    page.click("[data-testid=tab-alerts]")
    page.select_option("[data-testid=filter-kind]", "not_unloaded")
    page.wait_for_function(
        """() => {
            const rows = [...document.querySelectorAll('[data-testid=sup-list] tbody tr')];
            return rows.length > 0 && rows.every(r => r.dataset.kind === 'not_unloaded');
        }"""
    )
    shot(page, "51-alerts-filtered")


def test_supervisor_plays_back_the_truck_that_missed_a_point(
    page: Any, live_server: LiveServer, users: Users, supervised_day: int
) -> None:
    open_supervision(page, live_server)
    page.click("[data-testid=missed] tr[data-point-id=P4] [data-testid=missed-playback]")
    page.wait_for_selector("[data-testid=playback][data-ready='1']", timeout=20_000)
    assert page.inner_text(".tabs a.active") == "轨迹回放"
    assert page.input_value("[data-testid=pb-truck]") == "T2"
    info = page.inner_text("[data-testid=pb-info]")
    assert "皖A00002" in info and "计划路线" in info, info
    # T2 stopped at P3 (cleared there) and at the depot; the stop at P3 is listed with
    # its times and the planned time. The stops are the alerts' stays, one row each.
    stops = page.locator("[data-testid=pb-stops] tbody tr")
    with psycopg.connect(users.url) as conn:
        stays = alerts_repo.stays(conn, truck_id="T2", service_date=DAY)
    assert stops.count() == len(stays) >= 2, page.inner_text("[data-testid=pb-stops]")
    assert "车场 D1" in page.inner_text("[data-testid=pb-stops]")
    p3 = page.locator("[data-testid=pb-stops] tbody tr[data-point-id=P3]")
    assert p3.count() == 1, page.inner_text("[data-testid=pb-stops]")
    cells = p3.locator("td").all_inner_texts()
    assert cells[0] <= cells[1], cells  # arrived before it left
    assert cells[4] != "—", cells  # the plan's time for P3
    # Progress against the plan: T2 did P3, is late with P4.
    progress = page.inner_text("[data-testid=pb-progress] tr[data-truck-id=T2]")
    assert progress.split("\t")[:4] == ["皖A00002", "1", "0", "1"], progress
    shot(page, "52-playback-end")

    # The slider: back to the start of the day, then play at 900× and watch time pass.
    page.fill("[data-testid=pb-slider]", "0")
    page.dispatch_event("[data-testid=pb-slider]", "input")
    start_index = int(page.get_attribute("[data-testid=playback]", "data-index") or "-1")
    assert start_index == 0
    first_time = page.inner_text("[data-testid=pb-time]")
    page.select_option("[data-testid=pb-speed]", "900")
    page.click("[data-testid=pb-play]")
    page.wait_for_function(
        "() => Number(document.querySelector('[data-testid=playback]').dataset.index) > 5",
        timeout=15_000,
    )
    page.click("[data-testid=pb-play]")  # pause
    assert page.inner_text("[data-testid=pb-time]") != first_time
    assert page.inner_text("[data-testid=pb-play]") == "播放"
    shot(page, "53-playback-playing")
    # A stop row moves the slider to the stop.
    p3.click()
    index = int(page.get_attribute("[data-testid=playback]", "data-index") or "0")
    assert index > 0


def test_playback_progress_judges_late_by_the_servers_clock(
    page: Any, live_server: LiveServer, users: Users, supervised_day: int
) -> None:
    """A point still pending whose planned time has passed on the server's clock is late,
    even in a browser whose clock says the day has not begun."""
    with psycopg.connect(users.url, autocommit=True) as conn:
        conn.execute(
            """UPDATE ledger_entry SET status = 'pending', reason = NULL
                WHERE service_date = %s AND point_id = 'P4'""",
            (DAY,),
        )
    page.clock.set_fixed_time(datetime.combine(DAY - timedelta(days=1), time(12), UTC))
    log_in(page, live_server, "supervisor")
    page.click("a[data-page=playback]")
    choose(page, "d1", DAY.isoformat())
    row = page.locator("[data-testid=pb-progress] tr[data-truck-id=T2]")
    row.wait_for()
    assert row.inner_text().split("\t")[:4] == ["皖A00002", "1", "0", "1"], row.inner_text()


def test_supervisor_assigns_and_closes_the_case_from_the_missed_list(
    page: Any, live_server: LiveServer, users: Users, supervised_day: int, tmp_path: Path
) -> None:
    open_supervision(page, live_server)
    page.click("[data-testid=missed] tr[data-point-id=P4] [data-testid=missed-case]")
    page.wait_for_selector("[data-testid=case-detail][data-state=open]")
    # The assignee is picked from the users who work cases.
    options = page.locator("[data-testid=assignee-options] option").evaluate_all(
        "os => os.map(o => o.value)"
    )
    assert "supervisor" in options and "viewer" not in options, options
    page.fill("[data-testid=case-assignee]", "dispatcher")
    page.fill("[data-testid=case-note]", "请今天补收")
    page.click("[data-testid=case-assign]")
    page.wait_for_selector("[data-testid=case-detail][data-state=assigned]")
    page.fill("[data-testid=case-note]", "已补收")
    page.click("[data-testid=case-feedback]")
    page.wait_for_selector("[data-testid=case-detail][data-state=feedback]")
    page.fill("[data-testid=case-note]", "现场核实已清运")
    page.click("[data-testid=case-close]")
    page.wait_for_selector("[data-testid=case-detail][data-state=closed]")
    timeline = page.inner_text("[data-testid=case-timeline]")
    for word in ("立案", "交办", "反馈", "销号", "系统"):
        assert word in timeline, timeline
    assert "action." not in timeline, timeline
    shot(page, "54-case-closed-from-missed")
    record = downloaded_pdf(page, "[data-testid=case-pdf]", tmp_path / "case.pdf")
    assert f"案件记录#{supervised_day}" in record, record
    for step in ("交办", "请今天补收", "反馈", "已补收", "销号", "现场核实已清运", "已销号"):
        assert step in record, (step, record)
    page.click("[data-testid=case-dismiss]")
    page.wait_for_selector("[data-testid=missed] tr[data-point-id=P4]:has-text('已销号')")


def test_supervisor_reads_the_weekly_report_and_prints_it(
    page: Any, live_server: LiveServer, users: Users, supervised_day: int, tmp_path: Path
) -> None:
    log_in(page, live_server, "supervisor")
    page.click("a[data-page=reports]")
    choose(page, "d1", DAY.isoformat())
    page.wait_for_selector("[data-testid=rep-title]")
    page.click("[data-testid=rep-kind-week]")
    page.wait_for_selector("[data-testid=rep-title]:has-text('周小结')")
    title = page.inner_text("[data-testid=rep-title]")
    assert "2026-03-02" in title and "2026-03-08" in title, title  # the ISO week (Mon–Sun)
    # 日清率 of the week: P1, P2 cleared and delivered out of 5 due.
    assert page.inner_text("[data-testid=rep-rate]") == "40.0%"
    assert page.locator("[data-testid=rep-trend-chart] rect").count() == 7
    assert "皖A00001" in page.inner_text("[data-testid=rep-by-truck]")
    assert "可回收物" in page.inner_text("[data-testid=rep-by-stream]")
    assert page.locator("[data-testid=rep-closure] tbody tr").count() == 1
    assert "未卸料" in page.inner_text("[data-testid=rep-alerts]")
    assert "P4" in page.inner_text("[data-testid=rep-worst]")
    shot(page, "55-weekly-report")
    printed = downloaded_pdf(page, "[data-testid=rep-pdf]", tmp_path / "week.pdf")
    assert "周小结" in printed and "作业日期：2026-03-02至2026-03-08" in printed, printed
    assert "P4P4小区桶站1" in printed, printed  # the points most often not cleared
    page.emulate_media(media="print")
    assert not page.is_visible("[data-testid=rep-show]")  # controls are not printed
    shot(page, "56-weekly-report-print")
    page.emulate_media(media="screen")
    page.click("[data-testid=rep-kind-month]")
    page.wait_for_selector("[data-testid=rep-title]:has-text('月通报')")
    assert page.locator("[data-testid=rep-trend-chart] rect").count() == 31


def test_admin_creates_a_user_who_can_then_log_in(
    page: Any, live_server: LiveServer, users: Users, supervised_day: int
) -> None:
    log_in(page, live_server, "admin")
    page.click("a[data-page=admin]")
    page.wait_for_selector("[data-testid=adm-users] tr[data-username=viewer]")
    page.fill("[data-testid=adm-username]", "zhang.wei")
    page.fill("[data-testid=adm-display-name]", "张伟")
    page.select_option("[data-testid=adm-role]", "supervisor")
    page.fill("[data-testid=adm-password]", "1234567890")  # digits only: refused, with the rule
    page.click("[data-testid=adm-create]")
    # The rule it broke, in Chinese (the server sends its code).
    page.wait_for_selector("[data-testid=adm-error]:has-text('密码不能全是数字')")
    page.fill("[data-testid=adm-password]", PASSWORD)
    page.check("[data-testid=adm-user-districts] input[value=d1]")
    page.click("[data-testid=adm-create]")
    page.wait_for_selector("[data-testid=adm-users] tr[data-username='zhang.wei']")
    created = page.inner_text("[data-testid=adm-users] tr[data-username='zhang.wei']")
    assert "张伟" in created and "监管员" in created and "d1" in created, created
    shot(page, "57-admin-user-created")
    page.click("#logout")
    page.wait_for_selector("#login:not([hidden])")
    log_in(page, live_server, "zhang.wei")
    assert "张伟" in page.inner_text("#who")
    assert page.is_hidden("a[data-page=admin]")  # a supervisor does not administer


def test_admin_tab_is_hidden_from_other_roles(
    page: Any, live_server: LiveServer, users: Users
) -> None:
    log_in(page, live_server, "north_admin")
    assert page.is_hidden("a[data-page=admin]")
    # Let the first page finish loading before the server stops.
    page.wait_for_selector("[data-testid=plan-list]:has-text('还没有方案')")
