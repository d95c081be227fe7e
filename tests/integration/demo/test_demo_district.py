"""`clearday demo --city DIR` plans and plays a district given as import files: its own
node ids, Chinese names, its own district code, no city.json."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg

from fleet.devservers import PrivateMosquitto
from tests.district_files import POINTS, write_district


def test_demo_plays_a_hand_written_district(
    database_url: str, mosquitto_factory: Callable[[], PrivateMosquitto], tmp_path: Path
) -> None:
    folder = write_district(tmp_path / "district", district="shushan")
    broker = mosquitto_factory()  # retained statuses stay with this test
    env = {
        **os.environ,
        "CLEARDAY_DATABASE_URL": database_url,
        "CLEARDAY_MQTT_URL": broker.url,
        "CLEARDAY_DATA_DIR": str(tmp_path / "state"),
    }
    done = subprocess.run(
        [sys.executable, "-c", "from fleet.cli import main; main()", "demo", "--city", str(folder),
         "--speed", "0", "--plan-time", "3", "--no-keep-open"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "日产日清 summary" in out and "Traceback" not in done.stderr
    with psycopg.connect(database_url) as conn:
        districts = conn.execute("SELECT DISTINCT district_id FROM collection_point").fetchall()
        plans = conn.execute("SELECT district_id, status FROM plan").fetchall()
        ledger: dict[str, int] = dict(
            conn.execute("SELECT status, count(*) FROM ledger_entry GROUP BY 1").fetchall()
        )
        fixes = conn.execute("SELECT count(*) FROM position").fetchone()
    assert districts == [("shushan",)]
    assert ("shushan", "published") in plans
    due = re.search(r"^\s+points due\s+(\d+)", out, re.MULTILINE)
    assert due and int(due.group(1)) == sum(ledger.values()) == len(POINTS)
    assert ledger.get("cleared", 0) >= 1  # the trucks really served points of the file
    line = re.search(r"fixes ingested\s+(\d+) of (\d+) sent; (\d+) dead letters", out)
    assert line and int(line.group(1)) == int(line.group(2)) == fixes[0] > 0  # type: ignore[index]
    assert int(line.group(3)) == 0
