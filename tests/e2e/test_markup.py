"""Strings from the database reach the page as text: a plate, a point name and a case
note full of markup show literally in map tooltips, lists and the case detail, and no
element is created from them (Chromium, the real app and database)."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from fleet.config import Settings
from tests.e2e.conftest import shot
from tests.e2e.test_dashboard import choose, log_in
from tests.integration.web.conftest import LiveServer, Users
from tests.unit.alerts.tracks import DAY

pytestmark = pytest.mark.slow


def markup(label: str) -> str:
    return (
        f'{label}<img src=x class=pwn onerror="window.__pwned=1">'
        f'<a class=pwn href="http://evil.example/">点此查看</a><b class=pwn>粗</b>'
    )


PLATE = markup("皖A")
POINT_NAME = markup("桶站")
NOTE = markup("备注")

# Leaflet renders a string tooltip as HTML. Record every layer given a tooltip, so the
# test can open them all (canvas markers cannot be hovered by selector).
RECORD_TOOLTIPS = """
Object.defineProperty(window, "L", {
  configurable: true,
  get() { return this.__leaflet; },
  set(leaflet) {
    const bind = leaflet.Layer.prototype.bindTooltip;
    window.__tooltipLayers = [];
    leaflet.Layer.prototype.bindTooltip = function (...args) {
      window.__tooltipLayers.push(this);
      return bind.apply(this, args);
    };
    this.__leaflet = leaflet;
  },
});
"""

OPEN_TOOLTIPS = """() => window.__tooltipLayers.filter((layer) => layer._map).map((layer) => {
  layer.openTooltip();
  const el = layer.getTooltip().getElement();
  return { text: el.textContent, elements: el.querySelectorAll("*").length };
})"""


def no_markup_elements(page: Any) -> None:
    assert page.locator(".pwn").count() == 0
    assert page.evaluate("window.__pwned === undefined")


def test_markup_from_the_database_is_shown_as_text(
    page: Any, live_server: LiveServer, users: Users, supervised_day: int, web_settings: Settings
) -> None:
    with psycopg.connect(web_settings.storage.database_dsn(), autocommit=True) as conn:
        conn.execute("UPDATE collection_point SET name = %s WHERE point_id = 'P4'", (POINT_NAME,))
        conn.execute("UPDATE truck SET plate = %s WHERE truck_id = 'T1'", (PLATE,))
    assigned = httpx.post(
        f"{live_server.url}/api/v1/cases/{supervised_day}/assign",
        headers=users.headers("supervisor"),
        json={"assignee": "二班", "note": NOTE},
    )
    assert assigned.status_code == 200, assigned.text
    page.add_init_script(RECORD_TOOLTIPS)

    log_in(page, live_server, "supervisor")
    page.click("a[data-page=supervise]")
    choose(page, "d1", DAY.isoformat())
    page.wait_for_selector("[data-testid=ledger-missed]:has-text('2')")
    tooltips = page.evaluate(OPEN_TOOLTIPS)
    shot(page, "40-markup-ledger")
    assert tooltips, "no tooltip was bound on the supervision map"
    assert all(t["elements"] == 0 for t in tooltips), tooltips
    assert any(POINT_NAME in t["text"] for t in tooltips), [t["text"] for t in tooltips]
    no_markup_elements(page)

    page.click("[data-testid=tab-alerts]")
    page.locator("[data-testid=sup-list] tr", has_text="P4").first.click()
    page.wait_for_selector("[data-testid=case-detail][data-state=assigned]")
    detail = page.inner_text("[data-testid=case-detail]")
    assert NOTE in detail, detail
    shot(page, "41-markup-case")
    no_markup_elements(page)
    page.click("[data-testid=case-dismiss]")

    page.click("a[data-page=live]")
    choose(page, "d1")
    page.wait_for_selector(".truck-label", timeout=20_000)
    labels = page.locator(".truck-label").all_inner_texts()
    assert PLATE in labels, labels
    assert page.locator(".truck-label *").count() == 0
    row = "[data-testid=truck-list] tr[data-truck-id='T1']"
    page.wait_for_selector(row)
    assert PLATE in page.inner_text(row)
    shot(page, "42-markup-live")
    no_markup_elements(page)

    # The missed list, the playback and the reports put the same strings on the page.
    page.click("a[data-page=supervise]")
    choose(page, "d1", DAY.isoformat())
    page.wait_for_selector("[data-testid=missed] tr[data-point-id=P4]")
    assert POINT_NAME in page.inner_text("[data-testid=missed] tr[data-point-id=P4]")
    no_markup_elements(page)
    page.click("a[data-page=playback]")
    page.wait_for_selector("[data-testid=pb-truck] option[value=T1]", state="attached")
    page.select_option("[data-testid=pb-truck]", "T1")
    page.wait_for_selector("[data-testid=playback][data-ready='1']")
    assert PLATE in page.inner_text("[data-testid=pb-info]")
    assert PLATE in page.inner_text("[data-testid=pb-progress]")
    shot(page, "43-markup-playback")
    no_markup_elements(page)
    page.click("a[data-page=reports]")
    page.click("[data-testid=rep-kind-week]")
    page.wait_for_selector("[data-testid=rep-worst]")
    assert PLATE in page.inner_text("[data-testid=rep-by-truck]")
    assert POINT_NAME in page.inner_text("[data-testid=rep-worst]")
    no_markup_elements(page)
