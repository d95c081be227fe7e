"""A large district's neighbourhood solvers die with the process that started them, so
a cancelled or killed planning job leaves no orphaned solves behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Maps two endless jobs over the decomposition's process pool; prints each pool
# process's pid as it starts its job.
POOL_SCRIPT = """
import os, time
from routing.decompose import _mapper

def report_then_wait(_):
    print(os.getpid(), flush=True)
    time.sleep(600)

with _mapper(2) as run_all:
    run_all(report_then_wait, [0, 1])
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux")
def test_the_pool_processes_die_when_their_parent_is_killed() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", POOL_SCRIPT],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert parent.stdout is not None
    helpers: list[int] = []
    while len(helpers) < 2:
        line = parent.stdout.readline()
        assert line, "the pool ended before both helpers started"
        if line.strip().isdigit():  # other output (a warning) is not a pid
            helpers.append(int(line))
    assert all(_alive(pid) for pid in helpers)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 60  # the signal is immediate; the bound only ends a hang
    while any(_alive(pid) for pid in helpers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in helpers)
