"""Every page of the dashboard in both languages, read as a person reads it: no raw
translation key anywhere, no English word in the Chinese UI and no Chinese in the
English UI, except what comes from the data (names, plates, ids, notes, a refused file).
The server's refusals are read too: a user name and a password refused, a planning job
that fails, an import refused line by line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

import psycopg
import pytest

from fleet.config import Settings
from fleet.web.fields import Stream
from tests.e2e.conftest import shot
from tests.e2e.test_dashboard import choose, log_in
from tests.integration.web.conftest import LiveServer, Users
from tests.unit.alerts.tracks import DAY

pytestmark = pytest.mark.slow

I18N = Path(__file__).resolve().parents[2] / "fleet/web/static/js/i18n.js"
# Words that are the same in both languages: the product's name, the language switch,
# the map library's attribution, file formats.
NEUTRAL = {
    "ClearDay",
    "English",
    "Leaflet",
    "CSV",
    "PDF",
    "UTF",
    "GeoJSON",
    "OpenStreetMap",
    "osm",
    "pbf",
    "Excel",
    "中文",
    "日清",
}

# Every text a person sees: visible text nodes, placeholders, titles, labels.
VISIBLE_TEXT = """() => {
  const out = [];
  const visible = (el) => !!(el && (el.offsetWidth || el.offsetHeight || el.getClientRects().length))
    && getComputedStyle(el).visibility !== "hidden";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent.trim();
    if (!text) continue;
    const parent = node.parentElement;
    if (parent.closest("script, style, datalist")) continue;
    if (parent.tagName === "OPTION" ? visible(parent.closest("select")) : visible(parent)) out.push(text);
  }
  for (const el of document.querySelectorAll("[placeholder], [title], [aria-label]")) {
    if (!visible(el) && el.tagName !== "svg") continue;
    for (const name of ["placeholder", "title", "aria-label"]) {
      const value = el.getAttribute(name);
      if (value) out.push(value.trim());
    }
  }
  return out;
}"""


def key_prefixes() -> set[str]:
    keys = re.findall(r'"([a-z_]+)\.[a-z_.]+":', I18N.read_text(encoding="utf-8"))
    return set(keys)


def data_text(url: str) -> str:
    """Everything the data itself may put on a page, as one string to look words up in."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """SELECT concat_ws(' ', district_id, name, timezone) FROM district
               UNION ALL SELECT concat_ws(' ', depot_id, name) FROM depot
               UNION ALL SELECT concat_ws(' ', station_id, name) FROM transfer_station
               UNION ALL SELECT concat_ws(' ', point_id, name) FROM collection_point
               UNION ALL SELECT concat_ws(' ', truck_id, plate, terminal_id) FROM truck
               UNION ALL SELECT concat_ws(' ', username, display_name) FROM app_user
               UNION ALL SELECT concat_ws(' ', subject, assignee, close_note, closed_by) FROM alert_case
               UNION ALL SELECT concat_ws(' ', actor, assignee, note) FROM case_event"""
        ).fetchall()
    return " ".join(str(r[0]) for r in rows)


def problems(texts: list[str], lang: str, data: str, prefixes: set[str]) -> list[str]:
    found = []
    for text in texts:
        for key in re.findall(r"\b([a-z_]+)\.[a-z_]+\b", text):
            if key in prefixes:
                found.append(f"raw key in {text!r}")
        if lang == "zh":
            for word in re.findall(r"[A-Za-z][A-Za-z_]{2,}", text):
                if word not in NEUTRAL and word not in data:
                    found.append(f"English {word!r} in {text!r}")
        else:
            for run in re.findall(r"[\u3400-\u9fff\uff00-\uffef\u3000-\u303f]+", text):
                if run not in NEUTRAL and run not in data:
                    found.append(f"Chinese {run!r} in {text!r}")
    return found


def visit_every_page(page: Any, lang: str) -> list[tuple[str, list[str]]]:
    """(page, texts) for each page and dialog of the dashboard."""
    seen: list[tuple[str, list[str]]] = []

    def read(name: str) -> None:
        page.wait_for_timeout(300)  # let the last answers draw
        seen.append((name, page.evaluate(VISIBLE_TEXT)))
        shot(page, f"60-wording-{lang}-{name}")

    page.click("a[data-page=dispatch]")
    choose(page, "d1", DAY.isoformat())
    page.wait_for_selector("[data-testid=plan-status]")
    read("dispatch")
    page.locator("[data-testid=plan-routes] tr").first.click()
    page.wait_for_selector("[data-testid=route-sheet]")
    read("route-sheet")
    page.keyboard.press("Escape")

    page.click("a[data-page=live]")
    page.wait_for_selector("[data-testid=truck-list] tr")
    read("live")

    page.click("a[data-page=supervise]")
    page.wait_for_selector("[data-testid=missed] tr[data-point-id=P4]")
    read("supervise-cases")
    page.click("[data-testid=tab-alerts]")
    read("supervise-alerts")
    page.click("[data-testid=missed] tr[data-point-id=P4] [data-testid=missed-case]")
    page.wait_for_selector("[data-testid=case-detail]")
    read("case")
    page.click("[data-testid=case-dismiss]")

    page.click("[data-testid=missed] tr[data-point-id=P4] [data-testid=missed-playback]")
    page.wait_for_selector("[data-testid=playback][data-ready='1']")
    read("playback")

    page.click("a[data-page=reports]")
    page.wait_for_selector("[data-testid=rep-title]")
    read("report-daily")
    for kind in ("week", "month"):
        page.click(f"[data-testid=rep-kind-{kind}]")
        page.wait_for_selector(f"[data-testid=rep-title]:has-text('{kind_title(lang, kind)}')")
        read(f"report-{kind}")

    page.click("a[data-page=admin]")
    page.wait_for_selector("[data-testid=adm-users] tr[data-username=admin]")
    page.locator("[data-testid=adm-edit]").first.click()
    read("admin")
    return seen


# A points file with a latitude out of range, an unknown stream and an id given twice.
REFUSED_POINTS = (
    "id,name,lat,lon,stream,daily_amount_kg\n"
    "E-P1,Elm Lane,123,117.3,plastic,10\n"
    "E-P1,Elm Lane,31.9,117.3,other,10\n"
)
EMPTY_DISTRICT = "empty"  # a district with nothing in it: planning it fails


def visit_refusals(page: Any, lang: str, folder: Path) -> list[tuple[str, list[str]]]:
    """(page, texts) with a refusal of the server on screen, each waited for by its words."""
    seen: list[tuple[str, list[str]]] = []
    zh = lang == "zh"

    def read(name: str) -> None:
        seen.append((name, page.evaluate(VISIBLE_TEXT)))
        shot(page, f"61-refusal-{lang}-{name}")

    page.click("a[data-page=admin]")
    page.wait_for_selector("[data-testid=adm-users] tr[data-username=admin]")
    page.fill("[data-testid=adm-username]", "new user")  # a space: the field's pattern refuses it
    page.fill("[data-testid=adm-password]", "correct horse battery")
    page.click("[data-testid=adm-create]")
    page.wait_for_selector(
        f"[data-testid=adm-error]:has-text('{'用户名：格式不符' if zh else 'username: String'}')"
    )
    read("user-name")
    page.fill("[data-testid=adm-username]", f"digits.{lang}")
    page.fill("[data-testid=adm-password]", "20261205031415")
    page.click("[data-testid=adm-create]")
    page.wait_for_selector(
        f"[data-testid=adm-error]:has-text('{'全是数字' if zh else 'digits only'}')"
    )
    read("password")

    page.click("a[data-page=dispatch]")
    choose(page, EMPTY_DISTRICT, DAY.isoformat())
    page.click("[data-testid=plan-start]")
    page.wait_for_selector(
        f"[data-testid=plan-progress]:has-text('{'没有启用的车场' if zh else 'no active depots'}')"
    )
    read("planning")

    page.click("[data-testid=import-open]")
    refused = folder / lang / "points.csv"
    refused.parent.mkdir(parents=True)
    refused.write_text(REFUSED_POINTS, encoding="utf-8")
    page.set_input_files("[data-testid=import-files]", [str(refused)])
    page.click("[data-testid=import-check]")
    page.wait_for_selector("[data-testid=import-errors]")
    read("import")
    page.keyboard.press("Escape")
    return seen


def kind_title(lang: str, kind: str) -> str:
    return {("zh", "week"): "周小结", ("zh", "month"): "月通报",
            ("en", "week"): "Weekly", ("en", "month"): "Monthly"}[(lang, kind)]  # fmt: skip


def test_no_raw_key_and_no_other_language_on_any_page(
    page: Any,
    live_server: LiveServer,
    users: Users,
    supervised_day: int,
    web_settings: Settings,
    tmp_path: Path,
) -> None:
    import httpx

    with psycopg.connect(web_settings.storage.database_dsn(), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO district (district_id, name) VALUES (%s, '空区')", (EMPTY_DISTRICT,)
        )

    # A case with a timeline of every step, so the timeline's words are read too.
    for action, body in (("assign", {"assignee": "二班"}), ("feedback", {"note": "已补收"})):
        httpx.post(
            f"{live_server.url}/api/v1/cases/{supervised_day}/{action}",
            headers=users.headers("supervisor"), json=body,
        ).raise_for_status()  # fmt: skip
    # The refused file is data too: its name, its values, and the stream codes a file may
    # use (the refusal lists them).
    data = " ".join(
        [
            data_text(web_settings.storage.database_dsn()),
            "points.csv",
            REFUSED_POINTS,
            *get_args(Stream),
        ]
    )
    prefixes = key_prefixes()
    log_in(page, live_server, "admin")
    report: dict[str, list[str]] = {}
    pages = 0
    for lang in ("zh", "en"):
        assert page.evaluate("document.documentElement.lang").startswith(lang)
        for name, texts in visit_every_page(page, lang) + visit_refusals(page, lang, tmp_path):
            assert texts, f"{lang} {name}: nothing read"
            found = problems(texts, lang, data, prefixes)
            if found:
                report[f"{lang} {name}"] = found
            pages += 1
        if lang == "zh":
            page.click(".topbar [data-lang-toggle]")
    assert pages == 2 * 15
    assert report == {}, report


def test_the_scan_finds_what_it_looks_for() -> None:
    """The checks above would fail on a raw key, a stray English word, stray Chinese."""
    prefixes = {"action", "case"}
    assert problems(["处理 action.open"], "zh", "", prefixes)
    assert problems(["searching for better routes"], "zh", "", prefixes)
    assert not problems(["皖A00002 north"], "zh", "皖A00002 north", prefixes)
    assert problems(["Missed 漏收"], "en", "", prefixes)
    assert not problems(["P4 小区桶站"], "en", "P4 小区桶站", prefixes)
    assert not problems(["zhang.wei"], "en", "zhang.wei", prefixes)
