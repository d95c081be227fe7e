"""`clearday alerts`: the continuous worker, day replays and supervision reports."""

from __future__ import annotations

import json
import logging
import signal
import threading
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Literal, cast

import psycopg
import typer

from fleet import db
from fleet.alerts import repo, service, worker
from fleet.alerts.models import ReportBy
from fleet.config import Settings

log = logging.getLogger("clearday.alerts")


def _date(value: str, hint: str, settings: Settings) -> date:
    if not value:
        return datetime.now(settings.tz).date()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter("use YYYY-MM-DD", param_hint=hint) from None


def _instant(value: str, hint: str) -> datetime | None:
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            "use ISO 8601 with an offset, e.g. 2026-03-02T21:00+08:00", param_hint=hint
        ) from None
    if at.tzinfo is None:
        raise typer.BadParameter("give the UTC offset, e.g. +08:00", param_hint=hint)
    return at


alerts = typer.Typer(
    name="alerts",
    help="日产日清: clearance ledger, missed-pickup alerts and 一单四制 cases.",
    no_args_is_help=True,
)


@alerts.command("run")
def run(
    interval: Annotated[
        float,
        typer.Option(help="seconds between ticks (default: CLEARDAY_ALERT_WORKER_INTERVAL_S)"),
    ] = 0.0,
    sim_start: Annotated[
        str,
        typer.Option(help="follow an accelerated simulation: simulated time at start (ISO 8601)"),
    ] = "",
    speed: Annotated[
        float, typer.Option(help="with --sim-start: simulated seconds per real second")
    ] = 1.0,
    sim_anchor: Annotated[
        float,
        typer.Option(
            help="with --sim-start: the Unix time at which the simulation is at "
            "--sim-start (default: now), so that several workers share one clock"
        ),
    ] = 0.0,
) -> None:
    """Run the alert worker and the webhook sender until interrupted."""
    settings = Settings()
    if interval > 0:
        alerts = settings.alerts.model_copy(update={"worker_interval_s": interval})
        settings = settings.model_copy(update={"alerts": alerts})
    clock: worker.Clock = worker.wall_clock
    start = _instant(sim_start, "--sim-start")
    if start is not None:
        clock = worker.ScaledClock(start, speed, anchor=sim_anchor or None)
    settings.storage.database_dsn()  # fail now, with the variable to set, if unset
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("stopping the alert worker (signal %d)", signum)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    hooks = len(settings.alerts.webhook_url_list)
    typer.echo(
        f"alert worker running every {settings.alerts.worker_interval_s:g} s; {hooks} webhook URL(s)"
    )
    worker.run_forever(settings, stop, clock=clock)


@alerts.command("webhook-secret")
def webhook_secret(
    url: Annotated[
        str, typer.Argument(help="a receiver URL (default: every CLEARDAY_ALERT_WEBHOOK_URLS)")
    ] = "",
) -> None:
    """Print the secret that signs the webhooks to each receiver (generated and stored
    on first use), to configure the receiver's signature check (docs/api.md)."""
    settings = Settings()
    if settings.alerts.webhook_secret is not None:
        typer.echo("CLEARDAY_ALERT_WEBHOOK_SECRET is set: it signs every webhook")
        return
    urls = [url] if url else settings.alerts.webhook_url_list
    if not urls:
        typer.echo("error: no URL given and CLEARDAY_ALERT_WEBHOOK_URLS is empty", err=True)
        raise typer.Exit(2)
    with db.connect(settings.storage.database_dsn(), autocommit=True) as conn:
        for target in urls:
            typer.echo(f"{service.webhook_secret(conn, url=target)}  {target}")


@alerts.command("replay")
def replay(
    service_date: Annotated[str, typer.Option("--date", help="service date YYYY-MM-DD")],
    district: Annotated[str, typer.Option(help="only this district (default: all)")] = "",
    now: Annotated[
        str, typer.Option(help="evaluate as of this time (ISO 8601; default: now)")
    ] = "",
) -> None:
    """Recompute a day: visits, ledger, alerts not raised yet, auto-closures (idempotent)."""
    settings = Settings()
    day = _date(service_date, "--date", settings)
    with db.connect(settings.storage.database_dsn()) as conn:
        stats = service.replay_day(
            conn=conn, settings=settings, service_date=day,
            district_id=district or None, now=_instant(now, "--now"),
        )  # fmt: skip
        counts = repo.status_counts(conn, service_date=day, district_id=district or None)
    typer.echo(
        f"{day}: {stats['truck_days']} truck-days re-detected, {stats['district_days']} district-days; "
        f"{stats['alerts_raised']} new alerts, {stats['cases_auto_closed']} cases auto-closed"
    )
    typer.echo("ledger: " + (", ".join(f"{s} {n}" for s, n in counts) or "no points due"))


@alerts.command("report")
def report(
    kind: Annotated[str, typer.Argument(help="clearance | missed | closure | week | month")],
    service_date: Annotated[
        str, typer.Option("--date", help="day (or any day of the week/month)")
    ] = "",
    until: Annotated[
        str, typer.Option(help="last day of a range (clearance, missed, closure)")
    ] = "",
    by: Annotated[str, typer.Option(help="clearance: district | truck | stream")] = "district",
    district: Annotated[list[str] | None, typer.Option(help="only these districts")] = None,
    csv: Annotated[bool, typer.Option("--csv", help="CSV instead of JSON")] = False,
    pdf_path: Annotated[
        Path | None,
        typer.Option("--pdf", help="write the report to print as a PDF file here, not JSON"),
    ] = None,
    lang: Annotated[str, typer.Option(help="with --pdf: zh (Chinese) or en")] = "zh",
) -> None:
    """Print a supervision report (日清率, missed points, 按期结案率, 周小结, 月通报)."""
    if kind not in ("clearance", "missed", "closure", "week", "month"):
        raise typer.BadParameter(
            "one of clearance, missed, closure, week, month", param_hint="KIND"
        )
    if by not in ("district", "truck", "stream"):
        raise typer.BadParameter("one of district, truck, stream", param_hint="--by")
    if lang not in ("zh", "en"):
        raise typer.BadParameter("zh or en", param_hint="--lang")
    if csv and pdf_path is not None:
        raise typer.BadParameter("choose one of --csv and --pdf", param_hint="--pdf")
    settings = Settings()
    day = _date(service_date, "--date", settings)
    last = _date(until, "--until", settings) if until else day
    name = cast(service.ReportName, kind)
    with db.connect(settings.storage.database_dsn(), autocommit=True) as conn:
        if pdf_path is not None:
            _write_pdf(
                conn, pdf_path, name, day, last, cast(ReportBy, by), district, lang, settings
            )
            return
        if csv:
            typer.echo(
                service.report_csv(
                    conn=conn,
                    report=name,
                    date_from=day,
                    date_to=last,
                    by=cast(ReportBy, by),
                    district_ids=district or None,
                    bom=False,
                ),
                nl=False,
            )
            return
        if kind in ("week", "month"):
            period = cast(Literal["week", "month"], kind)
            out: object = service.period_report(
                conn=conn, period=period, anchor=day, district_ids=district or None
            ).model_dump(mode="json")
        elif kind == "clearance":
            out = [
                r.model_dump(mode="json")
                for r in service.clearance_report(
                    conn=conn,
                    date_from=day,
                    date_to=last,
                    by=cast(ReportBy, by),
                    district_ids=district or None,
                )
            ]
        elif kind == "missed":
            out = [
                r.model_dump(mode="json")
                for r in service.missed_report(
                    conn=conn, date_from=day, date_to=last, district_ids=district or None
                )
            ]
        else:
            out = [
                r.model_dump(mode="json")
                for r in service.closure_report(
                    conn=conn, date_from=day, date_to=last, district_ids=district or None
                )
            ]
    typer.echo(json.dumps(out, ensure_ascii=False, indent=2))


def _write_pdf(
    conn: psycopg.Connection,
    path: Path,
    report: service.ReportName,
    day: date,
    last: date,
    by: ReportBy,
    district: list[str] | None,
    lang: str,
    settings: Settings,
) -> None:
    """The report as the API prints it, without its row limit (that guards a shared
    server; here the operator's own machine does the work). Written whole or not at all."""
    # reportlab takes about 0.4 s to load: only a PDF pays for it, not every command
    from fleet import pdf
    from fleet.reports import documents
    from fleet.reports.columns import Lang

    document = documents.printed_report(
        conn, report=report, date_from=day, date_to=last, by=by,
        district_ids=district or None, lang=cast(Lang, lang),
        made_at=datetime.now(settings.tz),
    )  # fmt: skip
    body = pdf.to_pdf(document)
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_bytes(body)
        partial.replace(path)
    except OSError as e:
        partial.unlink(missing_ok=True)
        raise typer.BadParameter(f"cannot write {path}: {e.strerror}", param_hint="--pdf") from None
    typer.echo(f"{path}: {pdf.rows_in(document)} rows, {len(body):,} bytes", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(alerts)
