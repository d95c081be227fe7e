"""The dashboard's import in a real browser: refusals listed by file and line, in Chinese
first and in English, and nothing of another district shown or changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import shot
from tests.e2e.test_dashboard import choose, log_in
from tests.integration.web.conftest import LiveServer, Users

pytestmark = pytest.mark.slow

HEADER = "id,name,lat,lon,stream,daily_amount_kg\n"


def check(page: Any, path: Path) -> None:
    page.set_input_files("[data-testid=import-files]", [str(path)])
    page.click("[data-testid=import-check]")


def error_rows(page: Any) -> list[list[str]]:
    rows = page.locator("[data-testid=import-errors] tr")
    return [
        [cell.strip() for cell in rows.nth(i).inner_text().split("\t")]
        for i in range(1, rows.count())
    ]


def test_import_refusals_are_listed_by_file_and_line(
    page: Any, live_server: LiveServer, users: Users, tmp_path: Path
) -> None:
    log_in(page, live_server, "north_dispatcher")
    choose(page, "north")
    page.click("[data-testid=import-open]")
    result = "[data-testid=import-result]"

    invalid = tmp_path / "invalid" / "points.csv"
    invalid.parent.mkdir()
    invalid.write_text(HEADER + "N-P7,好点,31.91,117.30,其他,10\nN-P8,坏点,123,117.3,塑料,10\n")
    check(page, invalid)
    page.wait_for_selector("[data-testid=import-refused]:has-text('文件有误')")
    rows = error_rows(page)
    assert [r[:2] for r in rows] == [["points.csv", "3"], ["points.csv", "3"]]
    # Each problem in Chinese, by its code, with the column it is in.
    assert sorted(r[2] for r in rows) == [
        "lat：纬度 123 超出 -90..90",
        "stream：未知的垃圾类别 '塑料'（可用 other、kitchen、recyclable、hazardous、mixed）",
    ], rows

    taken = tmp_path / "taken" / "points.csv"
    taken.parent.mkdir()
    taken.write_text(
        HEADER + "S-P1,北区一号,31.91,117.30,其他,10\nS-P2,北区二号,31.92,117.3,其他,10\n"
    )
    check(page, taken)
    page.wait_for_selector("[data-testid=import-refused]:has-text('编号不可用')")
    rows = error_rows(page)
    assert [r[:2] for r in rows] == [["points.csv", "2"], ["points.csv", "3"]]
    assert rows[0][2] == (
        "编号 S-P1 已被其他区域使用；编号全系统唯一，请加上本区域代码作前缀，如 north-S-P1"
    )
    assert "south" not in page.inner_text(result)
    shot(page, "40-import-refused-zh")

    gbk = tmp_path / "gbk" / "points.csv"
    gbk.parent.mkdir()
    gbk.write_bytes((HEADER + "N-P7,好点,31.91,117.30,其他,10\n").encode("gbk"))
    check(page, gbk)
    page.wait_for_selector("[data-testid=import-refused]:has-text('文件有误')")
    assert [r[:2] for r in error_rows(page)] == [["points.csv", "2"]]

    # English: the server's own words.
    page.keyboard.press("Escape")
    page.click(".topbar [data-lang-toggle]")
    page.click("[data-testid=import-open]")
    check(page, taken)
    page.wait_for_selector("[data-testid=import-refused]:has-text('not available')")
    assert error_rows(page)[0][2].startswith(
        "point id 'S-P1' is already used outside district north; ids are unique"
    )
    shot(page, "41-import-refused-en")
    page.keyboard.press("Escape")
    page.click(".topbar [data-lang-toggle]")

    good = tmp_path / "good" / "points.csv"
    good.parent.mkdir()
    good.write_text(HEADER + "N-P7,好点,31.91,117.30,其他,10\n")
    page.click("[data-testid=import-open]")
    check(page, good)
    page.wait_for_selector("[data-testid=import-ok]:has-text('检查通过')")
    page.click("[data-testid=import-run]")
    page.wait_for_selector("[data-testid=import-ok]:has-text('导入完成')")
    with TestClient(live_server.app) as client:
        north = users.headers("north_dispatcher")
        assert client.get("/api/v1/points/N-P7", headers=north).json()["name"] == "好点"
        south = client.get("/api/v1/points/S-P1", headers=users.headers("admin")).json()
        assert south["district_id"] == "south" and south["name"] != "北区一号"
