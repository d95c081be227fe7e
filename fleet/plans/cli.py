"""`clearday plan`: plan a district's day and store it, or re-plan today's from now."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

import procrastinate
import psycopg
import typer

from fleet import db
from fleet.config import Settings
from fleet.jobs import engine
from fleet.jobs import repo as jobs_repo
from fleet.jobs.worker import InProcessWorker
from fleet.plans import jobs as plans_jobs
from fleet.plans import service


def _id_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _replan_now(text: str, conn: psycopg.Connection, plan_id: int) -> datetime:
    """--now: ISO 8601; without an offset it is read in the plan's district time zone."""
    if not text:
        return datetime.now(UTC)
    try:
        now = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            "use ISO 8601, e.g. 2026-03-03T10:30+08:00", param_hint="--now"
        ) from None
    if now.tzinfo is None:
        now = now.replace(tzinfo=service.plan_timezone(conn, plan_id=plan_id))
    return now


def _service_date(text: str, settings: Settings) -> date:
    """--date, by default tomorrow (in the configured time zone)."""
    if not text:
        return datetime.now(settings.tz).date() + timedelta(days=1)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter("use YYYY-MM-DD", param_hint="--date") from None


DateOpt = Annotated[str, typer.Option("--date", help="service date YYYY-MM-DD (default: tomorrow)")]
SolutionLimitOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="stop the search after this many solutions: the same plan for the same "
        "seed on any machine (--time-limit is then only a safety cap)",
    ),
]
ReplanOpt = Annotated[
    int | None,
    typer.Option(
        "--replan",
        metavar="PLAN_ID",
        min=1,
        help="re-plan the rest of today from now, starting from this published plan "
        "and the trucks' live positions (--date and --district are taken from it)",
    ),
]
UnavailableOpt = Annotated[
    str, typer.Option(metavar="T1,T2", help="with --replan: trucks out of service (broken down)")
]
NewPointsOpt = Annotated[
    str, typer.Option(metavar="P1,P2", help="with --replan: collection points to add")
]
NowOpt = Annotated[
    str,
    typer.Option(
        metavar="ISO",
        help="with --replan: re-plan as of this time (default: the clock); "
        "without an offset, in the district's time zone",
    ),
]
AllDistrictsOpt = Annotated[
    bool, typer.Option("--all-districts", help="queue every district of the date")
]
WaitOpt = Annotated[
    bool, typer.Option(help="follow the jobs until they end (--no-wait: only queue)")
]
HereOpt = Annotated[
    bool,
    typer.Option("--here", help="run the jobs in this process too (no `clearday worker` needed)"),
]


@dataclass(frozen=True, slots=True)
class _Request:
    """What `clearday plan` was asked to queue."""

    district: str
    day: date | None  # None with --replan: the plan's own date
    replan: int | None
    replan_at: datetime | None
    unavailable: list[str]
    new_points: list[str]
    all_districts: bool
    time_limit_s: float | None
    seed: int
    solution_limit: int | None
    publish: bool

    def limits(self) -> dict[str, Any]:
        """The keywords every queue_* function takes."""
        return {"time_limit_s": self.time_limit_s, "seed": self.seed,
                "solution_limit": self.solution_limit, "publish": self.publish,
                "requested_by": "cli"}  # fmt: skip


def plan(
    service_date: DateOpt = "",
    district: Annotated[str, typer.Option(help="district code")] = "default",
    time_limit: Annotated[
        float | None,
        typer.Option(
            help="solver time budget in seconds [default: a day's plan "
            f"{service.BUDGET_S_PER_POINT:g} s a point within {service.BUDGET_MIN_S:g}–"
            f"{service.BUDGET_MAX_S:g} s; a re-plan {service.REPLAN_BUDGET_S:g} s]",
            min=1,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="seed: the same seed gives the same plan")] = 0,
    solution_limit: SolutionLimitOpt = None,
    publish: Annotated[bool, typer.Option(help="publish it as the day's plan")] = False,
    replan: ReplanOpt = None,
    unavailable: UnavailableOpt = "",
    new_points: NewPointsOpt = "",
    now: NowOpt = "",
    all_districts: AllDistrictsOpt = False,
    wait: WaitOpt = True,
    here: HereOpt = False,
) -> None:
    """Queue planning a district's day (or, with --all-districts, every district's)
    as jobs that `clearday worker` processes run, and follow them until they end;
    or, with --replan, re-plan today mid-day from the trucks' live positions (stored
    as a draft that replaces the plan; add --publish to send it to the trucks at once).
    With --here this process runs the jobs itself (a single machine, no worker)."""
    settings = Settings()
    if replan is None and (unavailable or new_points or now):
        raise typer.BadParameter(
            "--unavailable, --new-points and --now go with --replan PLAN_ID",
            param_hint="--replan",
        )
    if replan is not None and all_districts:
        raise typer.BadParameter("--replan takes one plan", param_hint="--all-districts")
    day = None if replan is not None else _service_date(service_date, settings)
    dsn = settings.storage.database_dsn()
    app = engine.make_app(dsn, [plans_jobs.register]).open()
    with db.connect(dsn, autocommit=True) as conn:
        try:
            request = _Request(
                district=district, day=day, replan=replan,
                replan_at=None if replan is None else _replan_now(now, conn, replan),
                unavailable=_id_list(unavailable), new_points=_id_list(new_points),
                all_districts=all_districts, time_limit_s=time_limit, seed=seed,
                solution_limit=solution_limit, publish=publish,
            )  # fmt: skip
            job_ids = _queue(app, conn, request)
        except (service.PlanningError, plans_jobs.JobConflict) as exc:
            app.close()
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"queued job(s) {', '.join(map(str, job_ids))}")
        if not wait:
            app.close()
            return
        try:
            jobs = _run_and_follow(
                conn, job_ids, single=len(job_ids) == 1 and not all_districts,
                settings=settings, here=here,
            )  # fmt: skip
        finally:
            app.close()
        if not _report(conn, jobs, request):
            raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.command()(plan)


def _queue(app: procrastinate.App, conn: psycopg.Connection, request: _Request) -> list[int]:
    """Queue the jobs asked for; the districts refused are reported on stderr."""
    limits = request.limits()
    if request.replan is not None:
        assert request.replan_at is not None
        return [
            plans_jobs.queue_replan(
                app, conn, plan_id=request.replan, now=request.replan_at,
                unavailable_truck_ids=request.unavailable, new_point_ids=request.new_points,
                **limits,
            )
        ]  # fmt: skip
    assert request.day is not None
    if not request.all_districts:
        return [
            plans_jobs.queue_plan(
                app, conn, district_id=request.district, service_date=request.day, **limits
            )
        ]
    queued, refused = plans_jobs.queue_all_districts(
        app, conn, district_ids=None, service_date=request.day, **limits
    )
    for district_id, why in refused.items():
        typer.echo(f"{district_id}: not queued: {why}", err=True)
    return list(queued.values())


def _run_and_follow(
    conn: psycopg.Connection, job_ids: list[int], *, single: bool, settings: Settings, here: bool
) -> list[dict[str, Any]]:
    """Follow the jobs until they end; with `here`, run them in this process meanwhile."""
    if not here:
        return _follow(conn, job_ids, single=single, settings=settings)
    dsn = settings.storage.database_dsn()
    config = replace(engine.WorkerConfig.from_settings(settings), name=f"cli:{os.getpid()}")
    local = InProcessWorker(engine.make_app(dsn, [plans_jobs.register]), dsn, config)
    local.start()
    try:
        return _follow(conn, job_ids, single=single, settings=settings)
    finally:
        local.stop()


def _report(conn: psycopg.Connection, jobs: list[dict[str, Any]], request: _Request) -> bool:
    """One line per job: the plan it stored, or why it failed. True if all are done."""
    for job in jobs:
        if job["state"] != "done":
            typer.echo(
                f"error: job {job['job_id']} ({job['district_id']}) {job['state']}: "
                f"{job['message']}",
                err=True,
            )
            continue
        stored = service.get_plan(conn, plan_id=job["plan_id"])
        assert stored is not None
        stats = stored["stats"]
        what = f"plan {stored['plan_id']} for {stored['district_id']} on {stored['service_date']}"
        if request.replan_at is not None:
            at = request.replan_at.isoformat(timespec="minutes")
            what += f", re-planned from {at} (replaces {request.replan})"
        typer.echo(
            f"{what}: {stats.get('num_routes', '?')} routes, "
            f"{stats.get('num_assigned', '?')}/{stats.get('num_points', '?')} points, "
            f"{stats.get('distance_m', 0) / 1000:.1f} km ({stored['status']})"
        )
    return all(job["state"] == "done" for job in jobs)


FINAL_STATES = ("done", "failed", "cancelled")
POLL_S = 0.5
NO_WORKER_HINT_AFTER_S = 5.0


def _follow(
    conn: psycopg.Connection, job_ids: list[int], *, single: bool, settings: Settings
) -> list[dict[str, Any]]:
    """Poll the jobs until each has ended, showing progress; returns their last rows."""
    shown: dict[int, tuple[str, str]] = {}
    hint_at = time.monotonic() + NO_WORKER_HINT_AFTER_S
    while True:
        if hint_at and time.monotonic() > hint_at:
            hint_at = 0.0
            status = jobs_repo.status(
                conn,
                stalled_after_s=settings.planning.worker_stalled_after_s,
                lease_s=settings.alerts.lease_s,
            )
            if not status.workers_beating:
                typer.echo(
                    "\nno worker is running: start `clearday worker` (or `clearday serve`), "
                    "or plan with --here; the jobs wait in the queue meanwhile",
                    err=True,
                )
        jobs = [service.get_job(conn, job_id=j) for j in job_ids]
        rows = [j for j in jobs if j is not None]
        for job in rows:
            fraction, message = float(job["progress"]), str(job["message"] or job["state"])
            if single:
                typer.echo(
                    f"\r[{'#' * int(fraction * 30):<30}] {fraction:4.0%} {message[:60]:<60}",
                    nl=False,
                )
            elif shown.get(job["job_id"]) != (job["state"], message):
                shown[job["job_id"]] = (job["state"], message)
                worker = f" on {job['worker']}" if job["worker"] else ""
                typer.echo(
                    f"{job['district_id']}: {job['state']}{worker} {fraction:4.0%} {message}"
                )
        if all(j["state"] in FINAL_STATES for j in rows):
            if single:
                typer.echo("")
            return rows
        time.sleep(POLL_S)
