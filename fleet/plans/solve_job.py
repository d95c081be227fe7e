"""The solving process of one planning job, started by a worker (fleet/plans/jobs.py):

    python -m fleet.plans.solve_job JOB_ID WORKER_NAME WORKER_PID

Reads CLEARDAY_* like every entry point; a decomposed district's pieces are engine
jobs with CLEARDAY_PLAN_PIECES=engine (fleet/jobs/pieces.py). Prints the stored plan's id last; exits with
EXIT_REFUSED (the reason on stderr) when the district cannot be planned as it stands.
It dies with the worker that started it: a killed worker's job is run again by another
worker, and an orphaned solve must not race it.
"""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager, nullcontext

import psycopg

from fleet import db
from fleet.alerts.worker import AlertConfig
from fleet.config import Settings
from fleet.jobs import pieces
from fleet.jobs import repo as jobs_repo
from fleet.plans import service
from fleet.plans.jobs import EXIT_REFUSED
from routing.processes import die_with


def _piece_runner(
    settings: Settings, conn: psycopg.Connection, job_id: int
) -> AbstractContextManager[pieces.EnginePieceRunner | None]:
    """With CLEARDAY_PLAN_PIECES=engine and workers taking pieces, a decomposed
    district's pieces are engine jobs (fleet/jobs/pieces.py); else they run here."""
    if settings.planning.plan_pieces != "engine":
        return nullcontext()
    stalled = settings.planning.worker_stalled_after_s
    parallelism = jobs_repo.piece_parallelism(conn, stalled_after_s=stalled)
    if parallelism == 0:
        return nullcontext()
    return pieces.EnginePieceRunner(
        settings.storage.database_dsn(), plan_job_id=job_id, parallelism=parallelism,
        stalled_after_s=stalled,
    )  # fmt: skip


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    job_id, worker, parent_pid = int(argv[1]), argv[2], int(argv[3])
    die_with(parent_pid)
    settings = Settings()
    dsn = settings.storage.database_dsn()
    with db.connect(dsn, autocommit=True) as conn, _piece_runner(settings, conn, job_id) as runner:
        try:
            plan_id = service.run_job(
                conn, job_id=job_id, worker=worker,
                alert_config=AlertConfig.from_settings(settings),
                max_points_per_solve=settings.planning.plan_max_points_per_solve, piece_runner=runner,
            )  # fmt: skip
        except service.PlanningError as exc:
            print(str(exc).replace("\n", " "), file=sys.stderr)
            return EXIT_REFUSED
    print(plan_id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
