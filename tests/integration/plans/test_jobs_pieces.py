"""The pieces of a decomposed district as engine jobs, with real `clearday worker`
processes (each its own process with its own settings, as on separate machines): a
district solved by pieces on two workers; a piece's worker killed; the worker of the
district's job killed; the district's job cancelled."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from psycopg.rows import dict_row

from fleet import db, importer
from fleet.jobs import engine
from fleet.plans import jobs as plans_jobs
from fleet.plans import service
from routing.check import check_plan
from routing.plan import Plan
from simulator.city import generate
from tests.integration.plans.conftest import WorkerProcess

DAY = date(2026, 3, 3)
# 160 points above 60 a solve: 4 territories (a multiple of the 2 workers), then 3
# rounds of 2 neighbourhoods (a solution limit bounds every piece, never the clock).
POINTS = 160
MAX_POINTS_PER_SOLVE = 60
# Bounds that only end a hang: these tests run worker processes that solve, and on a
# loaded machine (the suite beside other CPU-bound work) that takes minutes.
WAIT_S = 900.0
pytestmark = pytest.mark.timeout(3 * WAIT_S)


@pytest.fixture
def city(database_url: str, tmp_path: Path) -> str:
    folder = tmp_path / "east"
    generate(n_points=POINTS, n_trucks=6, seed=3, district="east").write(folder)
    with db.connect(database_url) as conn:
        importer.load(conn, importer.parse_files(importer.read_paths([folder])))
    return database_url


@pytest.fixture
def worker_env() -> dict[str, str]:
    return {
        "CLEARDAY_PLAN_PIECES": "engine",
        "CLEARDAY_PLAN_MAX_POINTS_PER_SOLVE": str(MAX_POINTS_PER_SOLVE),
    }


def query(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with db.connect(url, autocommit=True) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchall()


def wait_until(what: str, ok: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT_S
    while True:
        found = ok()
        if found:
            return found
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.1)


def piece_workers_up(url: str, count: int) -> None:
    wait_until(
        f"{count} workers taking pieces",
        lambda: query(url, "SELECT count(*) AS n FROM plan_piece_worker")[0]["n"] >= count,
    )


def queue(url: str, *, solution_limit: int) -> int:
    app = engine.make_app(url, [plans_jobs.register]).open()
    try:
        with db.connect(url, autocommit=True) as conn:
            return plans_jobs.queue_plan(
                app, conn, district_id="east", service_date=DAY, time_limit_s=900,
                solution_limit=solution_limit,
            )  # fmt: skip
    finally:
        app.close()


def job(url: str, job_id: int) -> dict[str, Any]:
    with db.connect(url, autocommit=True) as conn:
        row = service.get_job(conn, job_id=job_id)
    assert row is not None
    return row


def ended(url: str, job_id: int) -> dict[str, Any]:
    return wait_until(
        "the job ended",
        lambda: r if (r := job(url, job_id))["state"] in ("done", "failed", "cancelled") else None,
    )


def pieces_of(url: str, job_id: int) -> list[dict[str, Any]]:
    return query(
        url,
        """SELECT piece_id, state, worker, message, sub_solve IS NULL AND result IS NULL
                  AS cleared
             FROM plan_piece WHERE plan_job_id = %s ORDER BY piece_id""",
        job_id,
    )


def checked_once(url: str, job_id: int) -> Plan:
    """The job's one stored plan (and the only plan), through the independent checker."""
    stored = query(url, "SELECT plan_id, plan_job_id, document FROM plan")
    assert [p["plan_job_id"] for p in stored] == [job_id]
    plan = Plan.from_dict(stored[0]["document"])
    with db.connect(url) as conn:
        problem = service.build_problem(conn, district_id="east", service_date=DAY)
    assert check_plan(problem, plan) == []
    assert len(problem.points) == POINTS
    return plan


def solvers_gone(worker: WorkerProcess) -> None:
    """No piece solver of `worker` is left. A solver stores its piece's plan, then exits:
    on a busy machine the job can finish before the process is gone, so wait for it."""
    wait_until("the piece solvers gone", lambda: piece_solvers(worker.proc.pid) == [])


def piece_solvers(worker_pid: int) -> list[int]:
    """Pids of a worker's piece solving processes still alive."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"fleet.jobs.piece_solve" in args and str(worker_pid).encode() in args:
            found.append(int(entry.name))
    return found


def test_a_decomposed_district_is_solved_by_pieces_on_two_workers(
    city: str, start_worker: Callable[[str], WorkerProcess]
) -> None:
    start_worker("w1")
    start_worker("w2")
    piece_workers_up(city, 2)
    job_id = queue(city, solution_limit=150)
    done = ended(city, job_id)
    assert done["state"] == "done", done
    plan = checked_once(city, job_id)
    assert plan.stats.pieces == 4 and not plan.unassigned
    pieces = pieces_of(city, job_id)
    # 4 territories, then 2 neighbourhoods a round for 3 rounds (at most: a round may
    # offer fewer when the routes run out of untried seeds).
    assert 4 < len(pieces) <= 10
    assert {p["state"] for p in pieces} == {"done"}, pieces
    assert {p["worker"] for p in pieces} == {"w1/pieces", "w2/pieces"}
    assert all(p["cleared"] for p in pieces)  # sub-problems and plans not kept


def _the_waiting_job_replaced_the_piece(
    url: str, job_id: int, done: dict[str, Any], lost: dict[str, Any],
    workers: dict[str, WorkerProcess], parent: str, helper: str,
) -> None:  # fmt: skip
    """The piece's worker was killed: the job itself was not run again (its worker
    lived), and it replaced the piece."""
    assert done["worker"] == parent and done["attempt"] == 1
    assert lost["state"] == "replaced", lost
    assert "its worker stopped beating" in lost["message"]
    solvers_gone(workers[helper])  # its solve died with it
    plan = checked_once(url, job_id)
    assert plan.stats.pieces == 4
    assert {p["state"] for p in pieces_of(url, job_id)} <= {"done", "replaced"}


def _the_pieces_stopped_and_the_job_finished_elsewhere(
    url: str, job_id: int, done: dict[str, Any], first: dict[str, Any],
    workers: dict[str, WorkerProcess], parent: str, helper: str,
) -> None:  # fmt: skip
    """The job's worker was killed: the first attempt's piece on the living worker
    was stopped, not finished for nobody, and the other worker finished the job."""
    assert done["worker"] == helper and done["attempt"] == 2
    assert first["state"] == "cancelled", first
    assert all(p["state"] not in ("queued", "running") for p in pieces_of(url, job_id))
    solvers_gone(workers[helper])
    checked_once(url, job_id)


@pytest.mark.parametrize(
    ("killed", "solution_limit", "outcome"),
    [
        ("piece_worker", 1000, _the_waiting_job_replaced_the_piece),
        ("job_worker", 2500, _the_pieces_stopped_and_the_job_finished_elsewhere),
    ],
    ids=["piece-worker-killed", "job-worker-killed"],
)
def test_a_worker_killed_while_a_piece_runs_elsewhere(
    city: str, start_worker: Callable[[str], WorkerProcess], killed: str,
    solution_limit: int, outcome: Callable[..., None],
) -> None:  # fmt: skip
    """Either worker killed (the one running the piece, or the one running the
    district's job) while a piece runs on the other: the job still ends done, with
    one checked plan."""
    workers = {w.name: w for w in (start_worker("w1"), start_worker("w2"))}
    piece_workers_up(city, 2)
    job_id = queue(city, solution_limit=solution_limit)
    parent = wait_until("the job running", lambda: job(city, job_id)["worker"])
    helper = next(name for name in workers if name != parent)
    taken = wait_until(
        "a piece running on the other worker",
        lambda: [
            p for p in pieces_of(city, job_id)
            if p["state"] == "running" and p["worker"] == f"{helper}/pieces"
        ],
    )  # fmt: skip
    victim = workers[helper if killed == "piece_worker" else parent]
    os.kill(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait()
    done = ended(city, job_id)
    assert done["state"] == "done", done
    piece = {p["piece_id"]: p for p in pieces_of(city, job_id)}[taken[0]["piece_id"]]
    outcome(city, job_id, done, piece, workers, parent, helper)


def test_the_pieces_of_a_cancelled_job_stop(
    city: str, start_worker: Callable[[str], WorkerProcess]
) -> None:
    workers = [start_worker("w1"), start_worker("w2")]
    piece_workers_up(city, 2)
    job_id = queue(city, solution_limit=100_000)
    wait_until(
        "two pieces running",
        lambda: sum(p["state"] == "running" for p in pieces_of(city, job_id)) >= 2,
    )
    app = engine.make_app(city, [plans_jobs.register]).open()
    try:
        with db.connect(city, autocommit=True) as conn:
            assert plans_jobs.cancel(app, conn, job_id=job_id)
    finally:
        app.close()
    assert ended(city, job_id)["state"] == "cancelled"
    wait_until(
        "no piece open",
        lambda: all(p["state"] not in ("queued", "running") for p in pieces_of(city, job_id)),
    )
    assert "cancelled" in {p["state"] for p in pieces_of(city, job_id)}
    for w in workers:
        solvers_gone(w)
    assert query(city, "SELECT plan_id FROM plan") == []
