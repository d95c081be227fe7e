"""`clearday plan` on an imported district: the real planner serves every point of the
demo's district, the plan passes the independent checker, and it is stored as rows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

from psycopg.rows import dict_row

from fleet import db, importer
from fleet.jobs import engine
from fleet.plans import jobs as plans_jobs
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
         "--district", "demo", "--solution-limit", "500", "--time-limit", "600", "--publish", "--here"],
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


def test_plan_all_districts_queues_every_district_and_a_worker_plans_them(
    database_url: str, tmp_path: Path
) -> None:
    for number, district in enumerate(("east", "west", "north")):
        city = generate(n_points=20, n_trucks=2, seed=number + 1, district=district)
        city.with_prefix(f"{district}-", number).write(tmp_path / district)
        with db.connect(database_url) as conn:
            importer.load(conn, importer.parse_files(importer.read_paths([tmp_path / district])))
    done = subprocess.run(
        [sys.executable, "-c", "from fleet.cli import main; main()", "plan", "--date", DAY.isoformat(),
         "--all-districts", "--solution-limit", "50", "--time-limit", "600", "--here"],
        capture_output=True, text=True, env={**os.environ, "CLEARDAY_DATABASE_URL": database_url}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with db.connect(database_url) as conn:
        rows = conn.execute(
            """SELECT j.district_id, j.state, p.plan_id IS NOT NULL FROM plan_job j
               LEFT JOIN plan p ON p.plan_job_id = j.job_id ORDER BY 1"""
        ).fetchall()
    assert rows == [("east", "done", True), ("north", "done", True), ("west", "done", True)]
    assert sorted(re.findall(r"plan \d+ for (\w+) on 2026-03-03", done.stdout)) == [
        "east",
        "north",
        "west",
    ], done.stdout


def test_a_job_the_engine_never_got_reads_as_failed_and_blocks_nothing(database_url: str) -> None:
    """The process queueing a job died between recording it and handing it to the engine."""
    with db.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO district (district_id, name) VALUES ('d1', 'd1')")
        row = conn.execute(
            """INSERT INTO plan_job (district_id, service_date, created_at)
               VALUES ('d1', %s, now() - interval '2 minutes') RETURNING job_id""",
            (DAY,),
        ).fetchone()
        assert row is not None
        job = service.get_job(conn, job_id=row[0])
        assert job is not None and job["state"] == "failed" and "never queued" in job["message"]
        app = engine.make_app(database_url, [plans_jobs.register]).open()
        try:
            again = plans_jobs.queue_plan(
                app, conn, district_id="d1", service_date=DAY, time_limit_s=10
            )
        finally:
            app.close()
        queued = service.get_job(conn, job_id=again)
        assert queued is not None and queued["state"] == "queued"
