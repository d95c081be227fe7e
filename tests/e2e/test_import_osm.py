"""The dashboard imports an OpenStreetMap .osm.pbf extract in a real browser: sent as
base64, what it kept shown in Chinese, a district it misses refused by place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import shot
from tests.e2e.test_dashboard import choose, log_in
from tests.e2e.test_import import check, error_rows
from tests.integration.web.conftest import LiveServer, Users
from tests.osm_district import grid, osm_pbf

pytestmark = pytest.mark.slow


def test_an_extract_is_checked_and_refused_in_the_dashboard(
    page: Any, live_server: LiveServer, users: Users, tmp_path: Path
) -> None:
    log_in(page, live_server, "north_dispatcher")
    choose(page, "north")
    page.click("[data-testid=import-open]")

    # Streets under north's depot (31.90, 117.30), points and station (31.91, 117.31).
    covering = tmp_path / "north.osm.pbf"
    covering.write_bytes(osm_pbf(tmp_path, grid(31.898, 117.298, 0.003, 0.003)))
    check(page, covering)
    page.wait_for_selector("[data-testid=import-ok]:has-text('检查通过')")
    kept = page.inner_text("[data-testid=import-osm]")
    assert kept.startswith("north.osm.pbf: 可通行道路 11 · 单行道 2 · 背街小巷 1"), kept
    shot(page, "42-import-osm-zh")

    elsewhere = tmp_path / "elsewhere.osm.pbf"
    elsewhere.write_bytes(osm_pbf(tmp_path))  # 6 km south-west of north
    check(page, elsewhere)
    page.wait_for_selector("[data-testid=import-refused]:has-text('文件有误')")
    rows = error_rows(page)
    assert {r[0] for r in rows} == {"elsewhere.osm.pbf"} and len(rows) == 4
    assert any(r[2].startswith("区域 north 的 N-D1 距路网最近道路") for r in rows), rows
