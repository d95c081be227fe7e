"""`clearday plan`: plan a district's day and store it."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated

import typer

from fleet import db
from fleet.config import Settings
from fleet.plans import service


def register(app: typer.Typer) -> None:
    @app.command()
    def plan(
        service_date: Annotated[
            str, typer.Option("--date", help="service date YYYY-MM-DD (default: tomorrow)")
        ] = "",
        district: Annotated[str, typer.Option(help="district code")] = "default",
        time_limit: Annotated[float, typer.Option(help="solver time budget in seconds")] = 30.0,
        seed: Annotated[int, typer.Option(help="seed: the same seed gives the same plan")] = 0,
        publish: Annotated[bool, typer.Option(help="publish it as the day's plan")] = False,
    ) -> None:
        """Plan a district's day with the real planner and store it."""
        settings = Settings()
        if service_date:
            try:
                day = date.fromisoformat(service_date)
            except ValueError:
                raise typer.BadParameter("use YYYY-MM-DD", param_hint="--date") from None
        else:
            day = datetime.now(settings.tz).date() + timedelta(days=1)
        with db.connect(settings.database_dsn(), autocommit=True) as conn:

            def progress(fraction: float, message: str) -> None:
                typer.echo(
                    f"\r[{'#' * int(fraction * 30):<30}] {fraction:4.0%} {message:<60}", nl=False
                )

            try:
                plan_id = service.plan_day(
                    conn, district_id=district, service_date=day, tz=settings.tz,
                    time_limit_s=time_limit, seed=seed, publish=publish, progress=progress,
                )  # fmt: skip
            except service.PlanningError as exc:
                typer.echo("")
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(2) from None
            typer.echo("")
            stored = service.get_plan(conn, plan_id=plan_id)
            assert stored is not None
            stats = stored["stats"]
            typer.echo(
                f"plan {plan_id} for {district} on {day}: {stats.get('num_routes', '?')} routes, "
                f"{stats.get('num_assigned', '?')}/{stats.get('num_points', '?')} points, "
                f"{stats.get('distance_m', 0) / 1000:.1f} km ({stored['status']})"
            )
