"""Planning jobs on the engine with real `clearday worker` processes, each started on
its own with its own settings (as on separate machines): a worker killed mid-solve,
the lock on a district's date, cancelling a running job."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from psycopg.rows import dict_row

from fleet import db, importer
from fleet.jobs import engine
from fleet.plans import jobs as plans_jobs
from fleet.plans import repo, service
from routing.check import check_plan
from routing.plan import Plan
from simulator.city import generate
from tests.integration.plans.conftest import WorkerProcess

DAY = date(2026, 3, 3)
# Long enough to be caught mid-search: bounded by solutions, never by the clock.
LONG_SOLVE = 400
# Bounds that only end a hang: these tests run worker processes that solve, and on a
# loaded machine (the suite beside other CPU-bound work) that takes minutes.
WAIT_S = 900.0
pytestmark = pytest.mark.timeout(3 * WAIT_S)


@pytest.fixture
def city(database_url: str, tmp_path: Path) -> str:
    for number, district in enumerate(("east", "west")):
        folder = tmp_path / district
        city = generate(n_points=120, n_trucks=5, seed=number + 1, district=district)
        city.with_prefix(f"{district}-", number).write(folder)
        with db.connect(database_url) as conn:
            importer.load(conn, importer.parse_files(importer.read_paths([folder])))
    return database_url


def queue(url: str, district: str, *, solution_limit: int) -> int:
    app = engine.make_app(url, [plans_jobs.register]).open()
    try:
        with db.connect(url, autocommit=True) as conn:
            return plans_jobs.queue_plan(
                app, conn, district_id=district, service_date=DAY, time_limit_s=600,
                solution_limit=solution_limit,
            )  # fmt: skip
    finally:
        app.close()


def job(url: str, job_id: int) -> dict[str, Any]:
    with db.connect(url, autocommit=True) as conn:
        row = service.get_job(conn, job_id=job_id)
    assert row is not None
    return row


def wait_for(url: str, job_id: int, ok: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        row = job(url, job_id)
        if ok(row):
            return row
        assert time.monotonic() < deadline, f"job never reached the state wanted: {row}"
        time.sleep(0.1)


def solving(row: dict[str, Any]) -> bool:
    return row["state"] == "running" and row["progress"] >= 0.2


def solve_children(job_id: int, worker_pid: int) -> list[int]:
    """Pids of a worker's solving processes of a job still alive (the worker's pid is
    on their command line, so other test runs on the machine are not counted)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            b"fleet.plans.solve_job" in args
            and str(job_id).encode() in args
            and str(worker_pid).encode() in args
        ):
            found.append(int(entry.name))
    return found


def plans_of(url: str, job_id: int) -> list[dict[str, Any]]:
    with db.connect(url) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT plan_id, district_id, document FROM plan WHERE plan_job_id = %s", (job_id,)
        ).fetchall()


def test_a_job_whose_worker_is_killed_mid_solve_is_finished_by_another_and_stored_once(
    city: str, start_worker: Callable[[str], WorkerProcess]
) -> None:
    workers = {w.name: w for w in (start_worker("w1"), start_worker("w2"))}
    job_id = queue(city, "east", solution_limit=LONG_SOLVE)
    first = wait_for(city, job_id, solving)
    victim = workers[first["worker"]]
    os.kill(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait()
    done = wait_for(city, job_id, lambda r: r["state"] in ("done", "failed", "cancelled"))
    assert done["state"] == "done", done
    assert done["worker"] != victim.name and done["worker"] in workers
    assert done["attempt"] == 2
    # The killed worker's solve died with it; the plan was stored once, and it is whole.
    assert solve_children(job_id, victim.proc.pid) == []
    stored = plans_of(city, job_id)
    assert [p["plan_id"] for p in stored] == [done["plan_id"]]
    with db.connect(city) as conn:
        problem = service.build_problem(conn, district_id="east", service_date=DAY)
        count = conn.execute("SELECT count(*) FROM plan").fetchone()
    assert count is not None and count[0] == 1
    assert check_plan(problem, Plan.from_dict(stored[0]["document"])) == []


def test_the_lock_keeps_two_plans_of_one_district_and_date_from_running_at_once(
    city: str, start_worker: Callable[[str], WorkerProcess]
) -> None:
    # The queue refuses a second job for the same district and date outright ...
    first = queue(city, "east", solution_limit=300)
    with pytest.raises(plans_jobs.JobConflict):
        queue(city, "east", solution_limit=300)
    # ... and when two get past that check at once (a race), the engine's lock runs them
    # one after the other: queue a second the way a racing request would.
    app = engine.make_app(city, [plans_jobs.register]).open()
    try:
        with db.connect(city, autocommit=True) as conn:
            second = repo.create_job(
                conn, kind="plan", district_id="east", service_date=DAY,
                request={"time_limit_s": 600, "solution_limit": 300}, requested_by="race",
            )  # fmt: skip
            engine_id = app.configure_task(
                plans_jobs.PLAN_TASK, lock=f"plan:east:{DAY.isoformat()}",
                queue=engine.QUEUE_PLANNING,
            ).defer(job_id=second)  # fmt: skip
            repo.set_engine_job(conn, second, engine_id)
    finally:
        app.close()
    other = queue(city, "west", solution_limit=300)
    start_worker("w1")
    start_worker("w2")
    rows = [wait_for(city, j, lambda r: r["state"] == "done") for j in (first, second, other)]
    a, b, west = rows
    assert a["finished_at"] <= b["started_at"] or b["finished_at"] <= a["started_at"], rows
    # Other districts are not held up by the lock: west ran beside the east jobs.
    assert west["started_at"] < max(a["finished_at"], b["finished_at"])


def test_a_cancelled_job_stops(city: str, start_worker: Callable[[str], WorkerProcess]) -> None:
    worker = start_worker("w1")
    running = queue(city, "east", solution_limit=LONG_SOLVE * 10)
    waiting = queue(city, "west", solution_limit=300)  # one job at a time: it waits
    wait_for(city, running, solving)
    assert job(city, waiting)["state"] == "queued"
    app = engine.make_app(city, [plans_jobs.register]).open()
    try:
        with db.connect(city, autocommit=True) as conn:
            assert plans_jobs.cancel(app, conn, job_id=waiting)
            assert plans_jobs.cancel(app, conn, job_id=running)
            assert not plans_jobs.cancel(app, conn, job_id=waiting)  # already ended
    finally:
        app.close()
    assert wait_for(city, waiting, lambda r: r["state"] != "queued")["state"] == "cancelled"
    stopped = wait_for(city, running, lambda r: r["state"] not in ("running", "cancelling"))
    assert stopped["state"] == "cancelled", stopped
    deadline = time.monotonic() + 30
    while solve_children(running, worker.proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert solve_children(running, worker.proc.pid) == []
    assert plans_of(city, running) == [] and plans_of(city, waiting) == []


def test_tomorrows_plans_are_queued_at_each_districts_plan_hour(
    city: str, start_worker: Callable[[str], WorkerProcess]
) -> None:
    # The worker's own hourly tick also runs (for the real hour, up to 10 minutes late):
    # a plan hour half a day from now keeps it from queueing a second plan.
    hour = (datetime.now(ZoneInfo("Asia/Shanghai")).hour + 12) % 24
    with db.connect(city, autocommit=True) as conn:
        conn.execute("UPDATE district SET plan_at_hour = %s WHERE district_id = 'east'", (hour,))
        at = datetime(2026, 3, 2, hour, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
        assert repo.districts_planning_at(conn, at) == [("east", DAY)]
        assert repo.districts_planning_at(conn, at - timedelta(hours=1)) == []
    # The hourly job as the engine's scheduler defers it, run by a worker.
    app = engine.make_app(city, [plans_jobs.register]).open()
    try:
        app.configure_task(plans_jobs.PLAN_TOMORROW_TASK).defer(timestamp=int(at.timestamp()))
    finally:
        app.close()
    start_worker("w1")
    deadline = time.monotonic() + WAIT_S
    while True:
        with db.connect(city, autocommit=True) as conn:
            jobs = service.list_jobs(conn, district_ids=None)
        if jobs:
            break
        assert time.monotonic() < deadline, "no job was queued"
        time.sleep(0.2)
    assert len(jobs) == 1, jobs
    (queued,) = jobs
    assert (queued["district_id"], queued["service_date"]) == ("east", DAY)
    assert queued["requested_by"] == "schedule" and queued["priority"] == engine.PRIORITY_BATCH


def test_a_job_whose_workers_keep_dying_is_failed_with_the_reason(
    city: str, start_worker: Callable[[str], WorkerProcess]
) -> None:
    job_id = queue(city, "west", solution_limit=300)
    # As the engine leaves it after its worker died on the last allowed attempt: taken
    # by a worker whose heartbeat stopped.
    with db.connect(city, autocommit=True) as conn:
        (dead,) = conn.execute(
            """INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '1 hour')
               RETURNING id"""
        ).fetchone() or (None,)
        conn.execute(
            """UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s, attempts = %s
                WHERE id = (SELECT engine_job_id FROM plan_job WHERE job_id = %s)""",
            (dead, engine.MAX_ATTEMPTS - 1, job_id),
        )
    start_worker("w1")
    failed = wait_for(city, job_id, lambda r: r["state"] != "running")
    assert failed["state"] == "failed", failed
    assert "the worker running it stopped" in failed["message"]
    assert failed["attempt"] == engine.MAX_ATTEMPTS and plans_of(city, job_id) == []
