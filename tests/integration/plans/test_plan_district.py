"""`clearday plan` on an imported district: the real planner serves every point of the
demo's district, the plan passes the independent checker, and it is stored as rows."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row

from fleet import db, importer
from fleet.plans import service
from routing.check import check_plan
from routing.plan import Plan
from simulator.city import generate

DAY = date(2026, 3, 3)


def import_city(url: str, folder: Path, points: int, trucks: int) -> None:
    generate(n_points=points, n_trucks=trucks, seed=1, district="demo").write(folder)
    with db.connect(url) as conn:
        importer.load(conn, importer.parse_files(importer.read_paths([folder])))


def test_the_demo_district_is_planned_whole_and_checked(database_url: str, tmp_path: Path) -> None:
    # Bounded by solutions, not seconds: the same plan on a loaded machine as on a quiet
    # one (the time limit is only a safety cap).
    import_city(database_url, tmp_path / "city", points=300, trucks=12)
    done = subprocess.run(
        [sys.executable, "-c", "from fleet.cli import main; main()", "plan", "--date", DAY.isoformat(),
         "--district", "demo", "--solution-limit", "500", "--time-limit", "600", "--publish"],
        capture_output=True, text=True, env={**os.environ, "CLEARDAY_DATABASE_URL": database_url}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with db.connect(database_url) as conn:
        problem = service.build_problem(conn, district_id="demo", service_date=DAY)
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute("SELECT plan_id, status, document FROM plan").fetchone()
            stops = cur.execute(
                "SELECT count(*) AS n FROM plan_stop WHERE kind = 'point'"
            ).fetchone()
            unassigned = cur.execute("SELECT point_id, reason FROM plan_unassigned").fetchall()
    assert row is not None and row["status"] == "published"
    plan = Plan.from_dict(row["document"])
    assert check_plan(problem, plan) == []
    # Every point of this district can be served, so every point must be.
    assert unassigned == [], unassigned[:10]
    assert stops is not None and stops["n"] == 300
    assert "300/300 points" in done.stdout


def test_planning_a_district_that_does_not_exist_is_a_clear_error(database_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from fleet.cli import main; main()", "plan", "--date", "2026-03-03",
         "--district", "nowhere"],
        capture_output=True, text=True, env={**os.environ, "CLEARDAY_DATABASE_URL": database_url}, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "district 'nowhere' does not exist" in done.stderr
    assert "Traceback" not in done.stderr


def test_plan_job_reports_progress_and_stores_the_plan(database_url: str, tmp_path: Path) -> None:
    import_city(database_url, tmp_path / "city", points=40, trucks=2)

    def connect() -> psycopg.Connection:
        return db.connect(database_url)

    job_id = service.start_job(
        connect,
        district_id="demo",
        service_date=DAY,
        tz=ZoneInfo("Asia/Shanghai"),
        time_limit_s=120,
        solution_limit=100,
    )
    deadline = time.monotonic() + 120
    while True:
        with db.connect(database_url) as conn:
            job = service.get_job(conn, job_id=job_id)
        assert job is not None
        if job["state"] in ("done", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert job["state"] == "done", job
    assert job["progress"] == 1.0 and job["plan_id"] is not None


def test_a_job_left_running_by_a_dead_process_reads_as_failed(database_url: str) -> None:
    with db.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO district (district_id, name) VALUES ('demo', 'demo')")
        row = conn.execute(
            "INSERT INTO plan_job (district_id, service_date, state, created_at)"
            " VALUES ('demo', '2026-03-03', 'running', now() - INTERVAL '2 hours') RETURNING job_id"
        ).fetchone()
        assert row is not None
        job = service.get_job(conn, job_id=row[0])
    assert job is not None and job["state"] == "failed"
    assert "interrupted" in job["message"]
