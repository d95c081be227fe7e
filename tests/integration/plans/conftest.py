"""Real `clearday worker` processes, each started on its own with its own settings (as
on separate machines), for the job engine's tests. A test module provides the `city`
fixture (the database URL with its districts loaded) and may override `worker_env`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class WorkerProcess:
    name: str
    proc: subprocess.Popen[bytes]


@pytest.fixture
def worker_env() -> dict[str, str]:
    """Settings every worker of the module gets beyond the common ones."""
    return {}


@pytest.fixture
def start_worker(
    city: str, worker_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[[str], WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(name: str) -> WorkerProcess:
        env = {
            **os.environ,
            "CLEARDAY_DATABASE_URL": city,
            "CLEARDAY_WORKER_NAME": name,
            "CLEARDAY_WORKER_HEARTBEAT_S": "0.5",
            "CLEARDAY_WORKER_STALLED_AFTER_S": "3",
            **worker_env,
        }
        log = (tmp_path / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-c", "from fleet.cli import main; main()", "worker"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        started.append(WorkerProcess(name, proc))
        return started[-1]

    yield start
    for w in started:
        if w.proc.poll() is None:
            w.proc.terminate()
    for w in started:
        try:
            w.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            w.proc.kill()
