"""The job engine: Procrastinate, with PostgreSQL as its queue (no other service).

What the engine gives and ClearDay uses as it is: queues and priorities, a lock per job
(one planning job per district and date runs at a time) and a queueing lock (one
waiting), retries, cancellation (aborting a running job), periodic jobs, and worker
heartbeats: a worker that stops beating (killed, machine gone) has its running jobs
found by `get_stalled_jobs` and put back in the queue by the `retry_stalled` periodic
job, which any other worker runs.

Each domain with jobs has a `register(app)` adding its tasks (fleet/plans/jobs.py); an
entry point builds the app from its Settings with `make_app`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import procrastinate
import psycopg
from procrastinate import jobs as pjobs
from procrastinate.manager import JobManager

from fleet.config import PlanningSettings, Settings
from fleet.jobs import repo

log = logging.getLogger("clearday.jobs")

# Queues: long solves, the pieces of decomposed districts (served by every worker
# beside its planning jobs: a job waiting for its pieces must not hold the only slot
# that could solve them), and the engine's own short housekeeping (never stuck behind
# a solve).
QUEUE_PLANNING = "planning"
QUEUE_PIECES = "pieces"
QUEUE_MAINTENANCE = "maintenance"

# Higher runs first: a piece of a district being planned (its job is waiting for it),
# a dispatcher's mid-day re-plan before a plan asked for now, before the evening's
# batch of tomorrow's plans.
PRIORITY_PIECE = 30
PRIORITY_REPLAN = 20
PRIORITY_REQUEST = 10
PRIORITY_BATCH = 0

# Connections of one process's engine pool (a solve uses its own, in its child process).
POOL_MAX = 8

# A job whose worker died this many times is failed (with the reason), not retried.
MAX_ATTEMPTS = 3

# The engine's job states as ClearDay shows them (`plan_job.state` and the API).
STATE_OF_STATUS = {
    pjobs.Status.TODO.value: "queued",
    pjobs.Status.DOING.value: "running",
    pjobs.Status.SUCCEEDED.value: "done",
    pjobs.Status.FAILED.value: "failed",
    pjobs.Status.CANCELLED.value: "cancelled",
    pjobs.Status.ABORTED.value: "cancelled",
}


# The settings' defaults, whatever the environment says.
_DEFAULTS = PlanningSettings.model_construct()


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How one `clearday worker` process runs (from Settings)."""

    name: str
    concurrency: int = _DEFAULTS.worker_concurrency
    heartbeat_s: float = _DEFAULTS.worker_heartbeat_s
    stalled_after_s: float = _DEFAULTS.worker_stalled_after_s
    abort_poll_s: float = 1.0
    scheduled_plan_time_limit_s: float | None = _DEFAULTS.scheduled_plan_time_limit_s
    piece_concurrency: int = _DEFAULTS.plan_piece_concurrency
    keep_finished_hours: int = _DEFAULTS.engine_keep_finished_hours

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerConfig:
        s = settings.planning
        return cls(
            name=s.worker_name_or_default, concurrency=s.worker_concurrency,
            heartbeat_s=s.worker_heartbeat_s, stalled_after_s=s.worker_stalled_after_s,
            scheduled_plan_time_limit_s=s.scheduled_plan_time_limit_s,
            piece_concurrency=s.plan_piece_concurrency,
            keep_finished_hours=s.engine_keep_finished_hours,
        )  # fmt: skip


RETRY_STALLED_TASK = "clearday.retry_stalled"


async def retry_stalled(context: procrastinate.JobContext, timestamp: int) -> int:
    """Put the jobs of workers that stopped beating back in the queue (or fail them
    after MAX_ATTEMPTS); returns how many were handled."""
    manager = context.app.job_manager
    stalled_after = float(context.additional_context.get("stalled_after_s", 30.0))
    handled = 0
    for job in await manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after):
        assert job.id is not None
        if job.attempts + 1 >= MAX_ATTEMPTS:
            log.warning("job %d lost its worker %d times: failed", job.id, job.attempts + 1)
            await manager.finish_job_by_id_async(
                job.id, status=pjobs.Status.FAILED, delete_job=False
            )
        else:
            log.warning("job %d lost its worker: queued again", job.id)
            await manager.retry_job(job)
        handled += 1
    return handled


PRUNE_TASK = "clearday.prune_finished"


async def prune(manager: JobManager, dsn: str, *, keep_hours: int) -> None:
    """Delete the engine's jobs finished (done, failed, cancelled) more than
    `keep_hours` ago, with the engine's own `delete_old_jobs`, after settling
    ClearDay's records of them (fleet/jobs/repo.py)."""

    def settle() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            repo.prune_finished(conn, keep_hours=keep_hours)

    await asyncio.to_thread(settle)
    await manager.delete_old_jobs(
        nb_hours=keep_hours, include_failed=True, include_cancelled=True, include_aborted=True
    )


async def prune_finished(context: procrastinate.JobContext, timestamp: int) -> None:
    extra = context.additional_context
    await prune(
        context.app.job_manager, str(extra["dsn"]),
        keep_hours=int(extra.get("keep_finished_hours", 168)),
    )  # fmt: skip


Register = Callable[[procrastinate.App], None]


def make_app(dsn: str, registers: Iterable[Register] = ()) -> procrastinate.App:
    """The engine on the project's database, with the tasks each of `registers` adds
    (every domain that has jobs has one). Open it (`open()` / `open_async()`) before use."""
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=dsn, kwargs={"connect_timeout": 5}, min_size=1, max_size=POOL_MAX
        ),
    )
    task = app.task(name=RETRY_STALLED_TASK, queue=QUEUE_MAINTENANCE, pass_context=True)
    # Every 5 seconds: the seconds are the sixth field (croniter's order).
    app.periodic(cron="* * * * * */5", periodic_id="retry_stalled")(task(retry_stalled))
    task = app.task(name=PRUNE_TASK, queue=QUEUE_MAINTENANCE, pass_context=True)
    app.periodic(cron="17 * * * *", periodic_id="prune_finished")(task(prune_finished))
    for register in registers:
        register(app)
    return app
