"""`clearday demo` end to end: plan, ingest, alerts and the summary, on real servers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg

from fleet.devservers import PrivateMosquitto


def test_demo_runs_a_day_and_its_summary_agrees_with_the_ledger(
    database_url: str, mosquitto_factory: Callable[[], PrivateMosquitto], tmp_path: Path
) -> None:
    # A broker of its own: the demo's retained terminal statuses must not reach other tests.
    broker = mosquitto_factory()
    env = {
        **os.environ,
        "CLEARDAY_DATABASE_URL": database_url,
        "CLEARDAY_MQTT_URL": broker.url,
        "CLEARDAY_DATA_DIR": str(tmp_path / "state"),
    }
    done = subprocess.run(
        [sys.executable, "-c", "from fleet.cli import main; main()", "demo",
         "--points", "40", "--trucks", "2", "--speed", "0", "--plan-time", "3", "--no-keep-open"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "日产日清 summary" in out

    def figure(label: str) -> int:
        match = re.search(rf"^\s+{re.escape(label)}\s+(\d+)", out, re.MULTILINE)
        assert match, f"{label!r} not in the summary:\n{out}"
        return int(match.group(1))

    with psycopg.connect(database_url) as conn:
        ledger = dict(
            conn.execute("SELECT status, count(*) FROM ledger_entry GROUP BY 1").fetchall()
        )
        fixes = conn.execute("SELECT count(*) FROM position").fetchone()
        dead = conn.execute("SELECT count(*) FROM dead_letter").fetchone()
    assert figure("points due") == sum(ledger.values()) == 40
    assert figure("cleared") == ledger.get("cleared", 0)
    assert figure("missed") == ledger.get("missed", 0)
    fixes_line = re.search(r"fixes ingested\s+(\d+) of (\d+) sent; (\d+) dead letters", out)
    assert fixes_line, out
    assert int(fixes_line.group(1)) == fixes[0] == int(fixes_line.group(2))  # type: ignore[index]
    assert int(fixes_line.group(3)) == dead[0] == 0  # type: ignore[index]
    # Every process the demo started is gone.
    assert "Traceback" not in done.stderr
