"""`clearday plan`: plan a district's day and store it, or re-plan today's from now."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

import psycopg
import typer

from fleet import db
from fleet.alerts.worker import AlertConfig
from fleet.config import Settings
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


def register(app: typer.Typer) -> None:
    @app.command()
    def plan(
        service_date: Annotated[
            str, typer.Option("--date", help="service date YYYY-MM-DD (default: tomorrow)")
        ] = "",
        district: Annotated[str, typer.Option(help="district code")] = "default",
        time_limit: Annotated[float, typer.Option(help="solver time budget in seconds")] = 30.0,
        seed: Annotated[int, typer.Option(help="seed: the same seed gives the same plan")] = 0,
        solution_limit: Annotated[
            int | None,
            typer.Option(
                min=1,
                help="stop the search after this many solutions: the same plan for the same "
                "seed on any machine (--time-limit is then only a safety cap)",
            ),
        ] = None,
        publish: Annotated[bool, typer.Option(help="publish it as the day's plan")] = False,
        replan: Annotated[
            int | None,
            typer.Option(
                "--replan",
                metavar="PLAN_ID",
                min=1,
                help="re-plan the rest of today from now, starting from this published plan "
                "and the trucks' live positions (--date and --district are taken from it)",
            ),
        ] = None,
        unavailable: Annotated[
            str,
            typer.Option(
                metavar="T1,T2", help="with --replan: trucks out of service (broken down)"
            ),
        ] = "",
        new_points: Annotated[
            str, typer.Option(metavar="P1,P2", help="with --replan: collection points to add")
        ] = "",
        now: Annotated[
            str,
            typer.Option(
                metavar="ISO",
                help="with --replan: re-plan as of this time (default: the clock); "
                "without an offset, in the district's time zone",
            ),
        ] = "",
    ) -> None:
        """Plan a district's day with the real planner and store it; or, with --replan,
        re-plan today mid-day from the trucks' live positions (stored as a draft that
        replaces the plan; add --publish to send it to the trucks at once)."""
        settings = Settings()
        if replan is None and (unavailable or new_points or now):
            raise typer.BadParameter(
                "--unavailable, --new-points and --now go with --replan PLAN_ID",
                param_hint="--replan",
            )
        day = None if replan is not None else _service_date(service_date, settings)
        with db.connect(settings.database_dsn(), autocommit=True) as conn:

            def progress(fraction: float, message: str) -> None:
                typer.echo(
                    f"\r[{'#' * int(fraction * 30):<30}] {fraction:4.0%} {message:<60}", nl=False
                )

            try:
                if replan is not None:
                    at = _replan_now(now, conn, replan)
                    plan_id = service.replan_day(
                        conn, plan_id=replan, now=at, unavailable_truck_ids=_id_list(unavailable),
                        new_point_ids=_id_list(new_points), time_limit_s=time_limit, seed=seed,
                        solution_limit=solution_limit, progress=progress, alert_config=AlertConfig.from_settings(settings),
                    )  # fmt: skip
                    if publish:
                        service.publish_plan(conn, plan_id=plan_id)
                else:
                    assert day is not None
                    plan_id = service.plan_day(
                        conn, district_id=district, service_date=day, tz=settings.tz,
                        time_limit_s=time_limit, seed=seed, solution_limit=solution_limit,
                        publish=publish, progress=progress,
                    )  # fmt: skip
            except service.PlanningError as exc:
                typer.echo("")
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(2) from None
            typer.echo("")
            stored = service.get_plan(conn, plan_id=plan_id)
            assert stored is not None
            stats = stored["stats"]
            what = f"plan {plan_id} for {stored['district_id']} on {stored['service_date']}"
            if replan is not None:
                what += f", re-planned from {at.isoformat(timespec='minutes')} (replaces {replan})"
            typer.echo(
                f"{what}: {stats.get('num_routes', '?')} routes, "
                f"{stats.get('num_assigned', '?')}/{stats.get('num_points', '?')} points, "
                f"{stats.get('distance_m', 0) / 1000:.1f} km ({stored['status']})"
            )
