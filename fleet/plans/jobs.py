"""Planning as jobs of the engine (fleet/jobs/engine.py): queue, run, cancel.

`queue_plan` / `queue_replan` record the request in `plan_job` and queue an engine job
that carries only its id, with the engine's lock on the district and date (two plans
of one district and day never run at once) and its queueing lock (one waits at most).
A worker runs the job's solve in a child process (`fleet.plans.solve_job`): OR-Tools
holds the GIL for a whole search, which would stop the worker's heartbeat and make it
look dead; and a child can be stopped at once when a dispatcher cancels the job.
The child dies with its worker, and the plan is stored once per job (`plan.plan_job_id`
is unique), so a job retried after its worker was killed never stores twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import procrastinate
import psycopg
from procrastinate import exceptions as pexc

from fleet.districts import repo as districts_repo
from fleet.jobs import engine, pieces
from fleet.plans import repo, service
from fleet.refusal import Refused

PLAN_TASK = "clearday.plan"
PLAN_TOMORROW_TASK = "clearday.plan_tomorrow"
# The child's exit status when the district cannot be planned as it stands (not retried).
EXIT_REFUSED = 3
POLL_S = 0.25


class JobConflict(Refused):
    """A job is already queued or running for the district and date."""

    def __init__(self, job_id: int | None, district_id: str, service_date: date) -> None:
        day = service_date.isoformat()
        if job_id is None:
            super().__init__(
                "plan_running_other", f"another job is already planning {district_id} on {day}",
                district=district_id, date=day,
            )  # fmt: skip
        else:
            super().__init__(
                "plan_running", f"job {job_id} is already planning {district_id} on {day}",
                job_id=job_id, district=district_id, date=day,
            )  # fmt: skip
        self.job_id = job_id


class PlanRefused(Exception):
    """The district cannot be planned as it stands; the job's message says why."""


class SolveCrashed(Exception):
    """The solving process ended abnormally (retried)."""


def _lock(district_id: str, service_date: date) -> str:
    return f"plan:{district_id}:{service_date.isoformat()}"


def _queue(
    app: procrastinate.App,
    conn: psycopg.Connection,
    *,
    kind: str,
    district_id: str,
    service_date: date,
    request: dict[str, Any],
    requested_by: str | None,
    priority: int,
) -> int:
    """Record the job, then queue it on the engine; returns the `plan_job` id."""
    running = repo.active_job_id(conn, district_id, service_date)
    if running is not None:
        raise JobConflict(running, district_id, service_date)
    job_id = repo.create_job(
        conn, kind=kind, district_id=district_id, service_date=service_date, request=request,
        requested_by=requested_by,
    )  # fmt: skip
    lock = _lock(district_id, service_date)
    try:
        engine_id = app.configure_task(
            PLAN_TASK, lock=lock, queueing_lock=lock, priority=priority,
            queue=engine.QUEUE_PLANNING,
        ).defer(job_id=job_id)  # fmt: skip
    except pexc.AlreadyEnqueued:
        repo.delete_job(conn, job_id)
        raise JobConflict(None, district_id, service_date) from None
    except BaseException:
        repo.delete_job(conn, job_id)  # nothing half-written: no job the engine never had
        raise
    repo.set_engine_job(conn, job_id, engine_id)
    return job_id


def queue_plan(
    app: procrastinate.App,
    conn: psycopg.Connection,
    *,
    district_id: str,
    service_date: date,
    time_limit_s: float | None = None,
    seed: int = 0,
    solution_limit: int | None = None,
    publish: bool = False,
    requested_by: str | None = None,
    priority: int = engine.PRIORITY_REQUEST,
) -> int:
    """Queue planning a district's day; returns the job id (poll `get_job`). Without
    `time_limit_s` the budget grows with the district (`service.default_budget_s`)."""
    if not districts_repo.district_exists(conn, district_id):
        raise service.PlanningError(
            "district_unknown", f"district {district_id!r} does not exist", district=district_id
        )
    request = {
        "time_limit_s": time_limit_s, "seed": seed, "solution_limit": solution_limit,
        "publish": publish,
    }  # fmt: skip
    return _queue(
        app, conn, kind="plan", district_id=district_id, service_date=service_date,
        request=request, requested_by=requested_by, priority=priority,
    )  # fmt: skip


def queue_all_districts(
    app: procrastinate.App,
    conn: psycopg.Connection,
    *,
    district_ids: Sequence[str] | None,
    service_date: date,
    time_limit_s: float | None = None,
    seed: int = 0,
    solution_limit: int | None = None,
    publish: bool = False,
    requested_by: str | None = None,
    priority: int = engine.PRIORITY_BATCH,
) -> tuple[dict[str, int], dict[str, str]]:
    """Queue every district (or `district_ids`): the workers plan them in parallel.
    Returns (district -> job id, district -> why it was not queued)."""
    queued: dict[str, int] = {}
    refused: dict[str, str] = {}
    for district_id in district_ids if district_ids is not None else repo.district_ids(conn):
        try:
            queued[district_id] = queue_plan(
                app, conn, district_id=district_id, service_date=service_date,
                time_limit_s=time_limit_s, seed=seed, solution_limit=solution_limit,
                publish=publish, requested_by=requested_by, priority=priority,
            )  # fmt: skip
        except (JobConflict, ValueError) as exc:
            refused[district_id] = str(exc)
    return queued, refused


def queue_replan(
    app: procrastinate.App,
    conn: psycopg.Connection,
    *,
    plan_id: int,
    now: datetime,
    unavailable_truck_ids: Sequence[str] = (),
    new_point_ids: Sequence[str] = (),
    time_limit_s: float | None = None,
    seed: int = 0,
    solution_limit: int | None = None,
    publish: bool = False,
    requested_by: str | None = None,
) -> int:
    """Check the re-plan request (raising PlanningError at once if it cannot work),
    then queue it ahead of other planning; returns the job id."""
    checked = service.check_replan(
        conn, plan_id=plan_id, now=now, unavailable_truck_ids=unavailable_truck_ids,
        new_point_ids=new_point_ids,
    )  # fmt: skip
    request = {
        "plan_id": plan_id, "now": now.isoformat(),
        "unavailable_truck_ids": list(checked.unavailable_truck_ids),
        "new_point_ids": list(checked.new_point_ids),
        "time_limit_s": time_limit_s, "seed": seed, "solution_limit": solution_limit,
        "publish": publish,
    }  # fmt: skip
    return _queue(
        app, conn, kind="replan", district_id=checked.district_id,
        service_date=checked.service_date, request=request, requested_by=requested_by,
        priority=engine.PRIORITY_REPLAN,
    )  # fmt: skip


def cancel(app: procrastinate.App, conn: psycopg.Connection, *, job_id: int) -> bool:
    """Cancel a queued job, or abort a running one (its solve stops within about a
    second of the worker noticing). False if the job has already ended."""
    job = repo.get_job(conn, job_id)
    if job is None or job["engine_job_id"] is None:
        return False
    if job["state"] not in ("queued", "running"):
        return False
    return bool(app.job_manager.cancel_job_by_id(job["engine_job_id"], abort=True))


# ------------------------------------------------------------------ run by a worker


async def _record(dsn: str, job_id: int, *, state: str, message: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await repo.finish_job(conn, job_id=job_id, state=state, message=message)


async def run_plan(context: procrastinate.JobContext, job_id: int) -> int:
    """The engine's task: solve in a child process, stop it if the job is aborted."""
    dsn = str(context.additional_context["dsn"])
    worker = context.worker_name or f"pid {os.getpid()}"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fleet.plans.solve_job", str(job_id), worker, str(os.getpid()),
        env={**os.environ, "CLEARDAY_DATABASE_URL": dsn},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    talk = asyncio.ensure_future(child.communicate())
    try:
        return await _follow(context, child, talk, dsn, job_id)
    finally:
        # Whatever ended the solve, none of its pieces is wanted any more.
        with contextlib.suppress(Exception):
            await pieces.cancel_pieces_of(dsn, context.app, job_id)


async def _follow(
    context: procrastinate.JobContext,
    child: asyncio.subprocess.Process,
    talk: asyncio.Future[tuple[bytes, bytes]],
    dsn: str,
    job_id: int,
) -> int:
    try:
        while not talk.done():
            await asyncio.wait({talk}, timeout=POLL_S)
            reason = context.abort_reason()
            if reason is not None and not talk.done():
                child.kill()
                await talk
                if reason == procrastinate.job_context.AbortReason.SHUTDOWN:
                    raise SolveCrashed("the worker stopped: queued again")
                await _record(dsn, job_id, state="cancelled", message="cancelled")
                raise pexc.JobAborted(f"planning job {job_id} cancelled")
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        with contextlib.suppress(BaseException):
            await talk  # reap it while the loop runs
        raise
    out, err = talk.result()
    if child.returncode == 0:
        return int(out.decode().split()[-1])
    last_line = (err.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
    if child.returncode == EXIT_REFUSED:
        raise PlanRefused(last_line)
    raise SolveCrashed(f"the solving process ended with status {child.returncode}: {last_line}")


def plan_tomorrow(context: procrastinate.JobContext, timestamp: int) -> int:
    """Every hour: queue tomorrow's plan of each district whose plan hour it is now."""
    extra = context.additional_context
    at = datetime.fromtimestamp(timestamp, UTC)
    with psycopg.connect(str(extra["dsn"]), autocommit=True) as conn:
        due = repo.districts_planning_at(conn, at)
        for district_id, day in due:
            with contextlib.suppress(JobConflict):
                queue_plan(
                    context.app, conn, district_id=district_id, service_date=day,
                    time_limit_s=extra.get("plan_time_limit_s"),
                    requested_by="schedule", priority=engine.PRIORITY_BATCH,
                )  # fmt: skip
    return len(due)


def register(app: procrastinate.App) -> None:
    """The planning tasks (and the pieces of decomposed districts), on `app`."""
    pieces.register(app)
    app.task(
        name=PLAN_TASK, queue=engine.QUEUE_PLANNING, pass_context=True,
        retry=procrastinate.RetryStrategy(
            max_attempts=engine.MAX_ATTEMPTS - 1, wait=2, retry_exceptions={SolveCrashed}
        ),
    )(run_plan)  # fmt: skip
    task = app.task(name=PLAN_TOMORROW_TASK, queue=engine.QUEUE_MAINTENANCE, pass_context=True)
    app.periodic(cron="0 * * * *", periodic_id="plan_tomorrow")(task(plan_tomorrow))
