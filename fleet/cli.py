"""The `clearday` command. Fleet's own subcommands live here; the upper layers (ingest,
simulator) add theirs through the `clearday.commands` entry point group, so that fleet
never imports them."""

from __future__ import annotations

import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated

import psycopg
import pydantic
import typer

from fleet import db, doctor, importer
from fleet.alerts import cli as alerts_cli
from fleet.config import NotConfigured, Settings, refusals
from fleet.devservers import ServiceError
from fleet.jobs import cli as jobs_cli
from fleet.plans import cli as plans_cli
from fleet.web import cli as web_cli

app = typer.Typer(
    name="clearday",
    help="ClearDay: route planning and GPS tracking for waste collection (日产日清).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


class CommandsMissing(RuntimeError):
    """An install without a command group: stops `clearday` at start-up."""


# Errors a person can act on: printed as one line, never as a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    NotConfigured,
    CommandsMissing,
    db.DatabaseUnavailable,
    db.MigrationFailed,
    ServiceError,
    OSError,  # a file that cannot be read (missing, a folder without rights, …)
)


def settings() -> Settings:
    return Settings()


@app.command()
def migrate(
    timescale: Annotated[
        str, typer.Option(help="auto: use TimescaleDB when the server has it; on; off")
    ] = "auto",
) -> None:
    """Create or update the database schema (idempotent)."""
    if timescale not in ("auto", "on", "off"):
        raise typer.BadParameter("use auto, on or off", param_hint="--timescale")
    mode, ran = db.migrate(settings().storage.database_dsn(), timescale=timescale)
    for name in ran:
        typer.echo(f"applied {name}")
    typer.echo(f"schema up to date ({mode} storage)")


@app.command("import")
def import_(
    paths: Annotated[list[Path], typer.Argument(help="files or folders (see docs/import.md)")],
    district: Annotated[str, typer.Option(help="district code for rows without one")] = "default",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="check everything, count, then write nothing")
    ] = False,
) -> None:
    """Import depots, stations, points, trucks and roads from CSV / GeoJSON, or a
    district's road network from an OpenStreetMap extract (.osm.pbf / .osm).

    All or nothing: every refused row is listed with its file and line (exit code 1).
    Ids are unique across the deployment; a row whose id another district uses is
    refused, never merged into that district's row."""
    files = importer.read_paths(paths)
    if not files:
        raise FileNotFoundError(
            "no importable files found (depots/stations/points/trucks.csv, roads.geojson, "
            "an .osm.pbf / .osm extract …)"
        )
    try:
        parsed = importer.parse_files(files, default_district=district)
        with db.connect(settings().storage.database_dsn()) as conn:
            summary = importer.load(conn, parsed, dry_run=dry_run)
    except importer.ImportRejected as rejected:
        for error in rejected.errors:
            typer.echo(f"  {error}", err=True)
        typer.echo(f"import rejected: {rejected}", err=True)
        raise typer.Exit(1) from None
    except psycopg.Error as exc:  # the parser is meant to catch everything first
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        typer.echo(f"import rejected by the database: {first_line}; nothing was imported", err=True)
        raise typer.Exit(1) from None
    for code in summary.created_districts:
        typer.echo(f"district {code} created")
    for extract in parsed.extracts:
        kept = ", ".join(f"{name} {n}" for name, n in extract.report().items())
        typer.echo(f"{extract.file} (district {extract.district}): {kept}")
    if summary.roads_removed:
        typer.echo(f"roads     {summary.roads_removed:>6} removed (not in the extract)")
    for kind in importer.KINDS:
        if kind in summary.inserted:
            typer.echo(
                f"{kind:<9} {summary.inserted[kind]:>6} new  {summary.updated[kind]:>6} updated"
            )
    if dry_run:
        typer.echo("dry run: nothing was written")


@app.command("doctor")
def doctor_() -> None:
    """Check the database, TimescaleDB, migrations and the MQTT broker."""
    findings = doctor.run(settings())
    for finding in findings:
        typer.echo(finding.line())
    if not all(f.ok for f in findings):
        raise typer.Exit(1)


# Fleet's domains that add commands of their own, imported statically above.
FLEET_COMMANDS = (plans_cli.register, web_cli.register, alerts_cli.register, jobs_cli.register)
# The upper layers' command groups (entry points of group `clearday.commands`): fleet
# never imports those layers, so it names the groups it expects to find.
UPPER_COMMANDS = ("ingest", "simulate", "demo")


def register_commands() -> None:
    for register in FLEET_COMMANDS:
        register(app)
    found = {entry.name: entry for entry in entry_points(group="clearday.commands")}
    missing = [name for name in UPPER_COMMANDS if name not in found]
    if missing:
        raise CommandsMissing(
            f"the command groups {', '.join(missing)} are not installed "
            "(entry points clearday.commands); reinstall clearday: pip install -e ."
        )
    for name, entry in found.items():
        try:
            register = entry.load()
        except ImportError as exc:
            raise CommandsMissing(
                f"the `clearday {name}` commands ({entry.value}) cannot be loaded: {exc}"
            ) from exc
        register(app)


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        register_commands()
        app()
    except USER_ERRORS as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except pydantic.ValidationError as exc:
        for line in refusals(exc):
            typer.echo(f"error: {line}", err=True)
        sys.exit(2)
