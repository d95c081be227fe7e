"""`clearday serve` as a real process: it starts, answers, runs the alert worker, stops
cleanly on Ctrl-C, and refuses a database without the schema in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx

from fleet.config import Settings
from fleet.devservers import free_port, wait_for_port
from tests.conftest import PgServer


def serve(url: str, port: int, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "CLEARDAY_DATABASE_URL": url, "CLEARDAY_LOG_LEVEL": "WARNING"}
    return subprocess.Popen(
        [sys.executable, "-c", "from fleet.cli import main; main()", "serve", "--port", str(port), *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_serve_answers_and_stops_on_ctrl_c(web_settings: Settings) -> None:
    port = free_port()
    proc = serve(web_settings.storage.database_dsn(), port)
    try:
        assert wait_for_port(port, 60), "clearday serve did not listen"
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        assert "ClearDay" in httpx.get(f"{base}/").text
        assert httpx.get(f"{base}/api/v1/trucks").status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert f"http://127.0.0.1:{port}/" in output and "alert worker running" in output
    assert "Traceback" not in output


def test_serve_refuses_an_unmigrated_database_in_one_line(pg: PgServer) -> None:
    proc = serve(pg.new_database(migrated=False), free_port(), "--no-alerts")
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "clearday migrate" in output and "Traceback" not in output
