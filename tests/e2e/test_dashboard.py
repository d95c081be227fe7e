"""The dashboard in a real browser: log in, plan and print a route sheet, watch trucks
move on the live map while the simulator drives them through the broker and the
ingestor, work a missed-point case from alert to 销号, and see the ledger update."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fleet.alerts import service as alerts_service
from fleet.config import Settings
from tests.e2e.conftest import shot
from tests.integration.web.conftest import PASSWORD, LiveServer, Users

pytestmark = pytest.mark.slow


def log_in(page: Any, server: LiveServer, username: str) -> None:
    page.goto(server.url + "/")
    page.fill("#login-username", username)
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("#shell:not([hidden])")


def choose(page: Any, district: str, day: str | None = None) -> None:
    page.select_option("[data-testid=district]", district)
    if day:
        page.fill("[data-testid=service-date]", day)
        page.dispatch_event("[data-testid=service-date]", "change")


def test_login_language_and_logout(page: Any, live_server: LiveServer, users: Users) -> None:
    page.goto(live_server.url + "/")
    assert page.inner_text("#login-submit") == "登录"
    page.fill("#login-username", "viewer")
    page.fill("#login-password", "not the password")
    page.click("#login-submit")
    page.wait_for_selector("#login-error:has-text('用户名或密码错误')")
    shot(page, "00-login")
    log_in(page, live_server, "viewer")
    assert page.inner_text(".tabs a.active") == "调度"
    assert "只读" in page.inner_text("#who")
    page.wait_for_selector(".leaflet-container")
    shot(page, "01-dispatch-empty-zh")
    page.click(".topbar [data-lang-toggle]")
    assert page.inner_text(".tabs a.active") == "Dispatch"
    assert page.evaluate("document.documentElement.lang") == "en"
    shot(page, "02-dispatch-en")
    page.click(".topbar [data-lang-toggle]")
    assert page.inner_text(".tabs a.active") == "调度"
    page.click("#logout")
    page.wait_for_selector("#login:not([hidden])")
    # The token is revoked: reloading does not log back in.
    page.reload()
    page.wait_for_selector("#login:not([hidden])")


def test_dispatcher_plans_a_day_prints_a_sheet_and_publishes(
    page: Any, live_server: LiveServer, users: Users, city: str
) -> None:
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    log_in(page, live_server, "dispatcher")
    choose(page, city, tomorrow)
    page.wait_for_selector("[data-testid=plan-list]:has-text('还没有方案')")
    page.select_option("#plan-budget", "5")
    page.click("[data-testid=plan-start]")
    page.wait_for_selector("[data-testid=plan-progress] .progress")
    shot(page, "10-dispatch-planning")
    page.wait_for_selector("[data-testid=plan-status]:has-text('草稿')", timeout=90_000)
    # Which worker ran the job is shown beside its progress (here: the API's own).
    assert "计算节点" in page.inner_text("[data-testid=plan-progress]")
    rows = page.locator("[data-testid=plan-routes] tr")
    assert rows.count() >= 1
    page.wait_for_function("document.querySelectorAll('.leaflet-overlay-pane canvas').length > 0")
    shot(page, "11-dispatch-plan")
    rows.first.click()
    page.wait_for_selector("[data-testid=route-sheet]")
    sheet = page.inner_text("[data-testid=route-sheet]")
    assert "路线单" in sheet and "出车" in sheet and "卸料" in sheet and "收车" in sheet
    shot(page, "12-route-sheet")
    page.keyboard.press("Escape")
    page.click("[data-testid=plan-publish]")
    page.wait_for_selector("[data-testid=plan-status]:has-text('已发布')")


@pytest.fixture
def ingestor(web_settings: Settings, mosquitto_factory: Any, tmp_path: Path) -> Iterator[str]:
    """The real ingestor on a broker of its own; yields the broker URL."""
    mqtt_url = mosquitto_factory().url
    log_path = tmp_path / "ingest.log"
    env = {
        **os.environ,
        "CLEARDAY_DATABASE_URL": web_settings.storage.database_dsn(),
        "CLEARDAY_MQTT_URL": mqtt_url,
        "CLEARDAY_METRICS_PORT": "0",
        "CLEARDAY_INGEST_CLIENT_ID": f"e2e-{uuid.uuid4().hex[:8]}",
    }
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from fleet.cli import main; main()", "ingest"],
            env=env, stdout=log, stderr=log,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "subscribed to" not in log_path.read_text(errors="replace"):
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the ingestor did not subscribe"
            time.sleep(0.1)
        yield mqtt_url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_trucks_move_on_the_live_map(
    page: Any, live_server: LiveServer, users: Users, city: str, ingestor: str
) -> None:
    from simulator.city import CityConfig
    from simulator.load import LoadConfig, run_load

    config = LoadConfig(
        url=ingestor, terminals=3, rate=6.0, duration_s=12.0, seed=3,
        city=CityConfig(n_points=30, n_trucks=3, seed=1, district="city"),
    )  # fmt: skip
    simulator = threading.Thread(target=run_load, args=(config,), daemon=True)
    simulator.start()
    log_in(page, live_server, "viewer")
    page.click("a[data-page=live]")
    choose(page, city)
    page.wait_for_selector("[data-testid=live-state] .live-dot.on")
    page.wait_for_selector("path.truck-marker", timeout=20_000)
    marker = page.locator("path.truck-marker").first
    truck = marker.get_attribute("data-truck-id")
    before = marker.get_attribute("d")
    row = page.locator(f"[data-testid=truck-list] tr[data-truck-id='{truck}']")
    lat_before = row.get_attribute("data-lat")
    page.wait_for_function(
        "([id, d]) => { const m = document.querySelector(`path.truck-marker[data-truck-id='${id}']`);"
        " return m && m.getAttribute('d') !== d; }",
        arg=[truck, before],
        timeout=15_000,
    )
    assert row.get_attribute("data-lat") != lat_before
    assert row.get_attribute("data-status") in (
        "moving",
        "stopped",
        "at_point",
        "unloading",
        "parked",
    )
    shot(page, "20-live-map")
    row.click()
    page.wait_for_selector("[data-testid=track-info]")
    shot(page, "21-live-track")
    simulator.join(40)


def test_supervisor_works_a_missed_point_case_and_sees_the_ledger_update(
    page: Any, live_server: LiveServer, users: Users, supervised_day: int, web_settings: Settings
) -> None:
    from tests.integration.alerts.world import evening, insert_fixes, track_t3_serving_p4
    from tests.unit.alerts.tracks import DAY

    log_in(page, live_server, "supervisor")
    page.click("a[data-page=supervise]")
    choose(page, "d1", DAY.isoformat())
    page.wait_for_selector("[data-testid=ledger-missed]:has-text('2')")
    assert page.inner_text("[data-testid=ledger-cleared]") == "3"
    shot(page, "30-supervise-ledger")
    page.click("[data-testid=tab-alerts]")
    # P4's one incident (missed, then not cleared by the deadline): one alert row.
    page.locator("[data-testid=sup-list] tr[data-alert-id]", has_text="P4").first.click()
    page.wait_for_selector("[data-testid=case-detail][data-state=open]")
    shot(page, "31-case-open")
    page.fill("[data-testid=case-assignee]", "二班 王师傅")
    page.fill("[data-testid=case-note]", "请今天补收")
    page.click("[data-testid=case-assign]")
    page.wait_for_selector("[data-testid=case-detail][data-state=assigned]")
    page.fill("[data-testid=case-note]", "已补收")
    page.click("[data-testid=case-feedback]")
    page.wait_for_selector("[data-testid=case-detail][data-state=feedback]")
    page.click("[data-testid=case-close]")  # no note: refused
    page.wait_for_selector("#toast.error:has-text('销号必须填写说明')")
    page.fill("[data-testid=case-note]", "现场核实已清运")
    page.click("[data-testid=case-close]")
    page.wait_for_selector("[data-testid=case-detail][data-state=closed]")
    assert "现场核实已清运" in page.inner_text("[data-testid=case-detail]")
    shot(page, "32-case-closed")
    page.click("[data-testid=case-dismiss]")

    # A spare truck's blind-zone batch arrives late: P4 was served after all.
    with psycopg.connect(web_settings.storage.database_dsn()) as conn:
        insert_fixes(conn, "T3", track_t3_serving_p4().fixes)
        alerts_service.replay_day(conn=conn, settings=web_settings, service_date=DAY, now=evening())
    page.click("[data-testid=sup-refresh]")
    page.wait_for_selector("[data-testid=ledger-missed]:has-text('1')")
    assert page.inner_text("[data-testid=ledger-cleared]") == "4"
    shot(page, "33-supervise-ledger-updated")
