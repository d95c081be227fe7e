"""A simulated day through the real broker and the real ingestor into PostgreSQL:
every fix and event stored once, nothing dead-lettered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

from fleet import db, importer
from fleet.devservers import PrivateMosquitto
from simulator.city import generate
from simulator.faults import Fault
from simulator.mqtt import MqttFleet
from simulator.plans import greedy_plan
from simulator.trucks import DaySpec, SimDay, TerminalConfig, run


def _scalar(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def test_simulated_day_is_stored_by_the_ingestor(
    tmp_path: Path, database_url: str, mosquitto_factory: Callable[[], PrivateMosquitto]
) -> None:
    # A broker of its own: retained statuses left by other tests' (older) days would be
    # dead-lettered as too old, rightly, and muddle the count.
    mqtt_url = mosquitto_factory().url
    city = generate(n_points=50, n_trucks=3, seed=1)
    city.write(tmp_path / "city")
    parsed = importer.parse_files(importer.read_paths([tmp_path / "city"]))
    with db.connect(database_url) as conn:
        importer.load(conn, parsed)

    log_path = tmp_path / "ingest.log"
    env = {
        **os.environ,
        "CLEARDAY_DATABASE_URL": database_url,
        "CLEARDAY_MQTT_URL": mqtt_url,
        "CLEARDAY_METRICS_PORT": "0",
        "CLEARDAY_INGEST_CLIENT_ID": f"sim-e2e-{uuid.uuid4().hex[:8]}",
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

        # yesterday: device times in the past are accepted, the future is not
        yesterday = datetime.now(ZoneInfo("Asia/Shanghai")).date() - timedelta(days=1)
        plan = greedy_plan(city, max_points_per_truck=5)
        first = plan.routes[0]
        faults = (
            Fault("clock_skew", truck_id=plan.routes[1].truck_id, skew_s=45.0),
            Fault("offline", truck_id=first.truck_id, at_s=first.stops[0].departure_s + 900,
                  duration_s=600),
        )  # fmt: skip
        spec = DaySpec(
            city=city, plan=plan, service_date=yesterday, seed=2, faults=faults,
            terminal=TerminalConfig(signal_losses_per_day=20.0),
        )  # fmt: skip
        day = SimDay(spec)
        emissions = list(day.emissions())
        fixes = {(e.terminal_id, f.recorded_at) for e in emissions for f in e.fixes}
        events = sum(len(e.events) for e in emissions)
        fleet = MqttFleet(mqtt_url, client_prefix="sim-e2e")
        run(iter(emissions), fleet, speed=None)
        counts = fleet.close()
        assert counts.acked == counts.published

        deadline = time.monotonic() + 60
        while _scalar(database_url, "SELECT count(*) FROM position") < len(fixes):
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(1.5)  # anything extra (a duplicate) would be written by now
        assert _scalar(database_url, "SELECT count(*) FROM dead_letter") == 0
        assert _scalar(database_url, "SELECT count(*) FROM position") == len(fixes)
        assert _scalar(database_url, "SELECT count(*) FROM device_event") == events
        assert _scalar(database_url, "SELECT count(DISTINCT truck_id) FROM position") == len(
            plan.routes
        )
        with psycopg.connect(database_url) as conn:
            states: dict[str, str] = dict(
                conn.execute("SELECT terminal_id, state FROM terminal_status").fetchall()
            )
        assert states == {city.truck(r.truck_id).terminal_id: "offline" for r in plan.routes}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
