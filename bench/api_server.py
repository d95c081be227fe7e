"""`clearday serve` as a process of its own, for the benchmarks that measure the API
from outside (bench/api.py, bench/playback.py, bench/web_hostile.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

import httpx

from fleet.devservers import free_port, wait_for_port

START_TIMEOUT_S = 60.0


class ApiServer:
    """Started on a free port; `start` returns once `/readyz` answers 200."""

    def __init__(
        self,
        database_url: str,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._command = [
            sys.executable, "-c", "from fleet.cli import main; main()", "serve",
            "--port", str(self.port), "--no-alerts", *args,
        ]  # fmt: skip
        self._env = {
            **os.environ,
            "CLEARDAY_DATABASE_URL": database_url,
            "CLEARDAY_LOG_LEVEL": "WARNING",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ApiServer:
        self.process = subprocess.Popen(
            self._command, env=self._env, stdout=subprocess.DEVNULL, stderr=sys.stderr
        )
        try:
            if not wait_for_port(self.port, START_TIMEOUT_S):
                raise RuntimeError("the API server did not start")
            deadline = time.monotonic() + START_TIMEOUT_S
            while httpx.get(f"{self.base}/readyz").status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("the API server is not ready")
                time.sleep(0.2)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGINT (uvicorn's graceful stop), then kill after 20 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
