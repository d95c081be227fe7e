"""`clearday demo`: one simulated district day, end to end, on private servers.

Stages: servers → fresh database → generated (or given) district imported → the day
planned → ingestor, alert worker and dashboard started → the day played by the
simulator over MQTT → a summary read back from the ledger. Ctrl-C stops everything.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import psycopg
import typer

from fleet import db, importer
from fleet.config import Settings
from fleet.services import PrivateMosquitto, PrivatePostgres

DEMO_DATABASE = "clearday_demo"


def say(message: str) -> None:
    typer.echo(message, err=False)


@dataclass
class Stack:
    """Everything the demo started, so that it can all be stopped."""

    postgres: PrivatePostgres | None = None
    broker: PrivateMosquitto | None = None
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start_process(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        log = (log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [*clearday_command(), *args],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us; we stop children in order
        )
        self.processes.append((name, process))

    def stop(self) -> None:
        for _, process in reversed(self.processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for _, process in reversed(self.processes):
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()
        if self.broker:
            self.broker.stop()
        if self.postgres:
            self.postgres.stop()


def clearday_command() -> list[str]:
    script = Path(sys.executable).with_name("clearday")
    if script.exists():
        return [str(script)]
    found = shutil.which("clearday")
    return [found] if found else [sys.executable, "-c", "from fleet.cli import main; main()"]


@contextlib.contextmanager
def running_stack(settings: Settings) -> Iterator[tuple[Stack, str, str]]:
    """Servers for the demo: the configured ones, or private ones under data_dir."""
    stack = Stack()
    try:
        if settings.database_url is None:
            say("▸ starting a private PostgreSQL …")
            stack.postgres = PrivatePostgres(settings.data_dir / "pg", durable=True).start()
            admin_url = stack.postgres.admin_url
        else:
            admin_url = settings.database_dsn()
        if settings.mqtt_url is None:
            say("▸ starting a private Mosquitto …")
            stack.broker = PrivateMosquitto(settings.data_dir / "mosquitto").start()
            mqtt_url = stack.broker.url
        else:
            mqtt_url = settings.mqtt_dsn()
        yield stack, admin_url, mqtt_url
    finally:
        stack.stop()


def fresh_database(admin_url: str, configured: bool) -> str:
    """A new, empty, migrated demo database (each demo starts a fresh day)."""
    if configured:
        # Never drop a database somebody pointed us at: use it as it is.
        db.migrate(admin_url)
        return admin_url
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DEMO_DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DEMO_DATABASE}")
    url = admin_url.rsplit("/", 1)[0] + f"/{DEMO_DATABASE}"
    mode, _ = db.migrate(url)
    say(f"  database ready ({mode} storage)")
    return url


def import_city(url: str, city_dir: Path) -> dict[str, int]:
    parsed = importer.parse_files(importer.read_paths([city_dir]), default_district="demo")
    with db.connect(url) as conn:
        importer.load(conn, parsed)
    return parsed.count()


def run_demo(settings: Settings, *, city: Path | None, points: int, trucks: int, seed: int) -> None:
    started = time.monotonic()
    with running_stack(settings) as (stack, admin_url, mqtt_url):
        url = fresh_database(admin_url, configured=settings.database_url is not None)
        city_dir = city
        if city_dir is None:
            from simulator.city import generate

            say(f"▸ generating a district: {points} points, {trucks} trucks (seed {seed}) …")
            city_dir = settings.data_dir / "city"
            if city_dir.exists():
                shutil.rmtree(city_dir)
            generate(n_points=points, n_trucks=trucks, seed=seed).write(city_dir)
        say(f"▸ importing {city_dir} …")
        counts = import_city(url, city_dir)
        say("  " + ", ".join(f"{n} {k}" for k, n in counts.items()))
        say(
            f"▸ done in {time.monotonic() - started:.1f} s (database {url.rsplit('/', 1)[-1]}, broker {mqtt_url})"
        )


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        city: Annotated[
            Path | None,
            typer.Option(help="a district folder in the import format instead of a generated one"),
        ] = None,
        points: Annotated[int, typer.Option(help="points in the generated district")] = 300,
        trucks: Annotated[int, typer.Option(help="trucks in the generated district")] = 12,
        seed: Annotated[
            int, typer.Option(help="seed for the district, the plan and the faults")
        ] = 1,
    ) -> None:
        """Run a whole simulated district day on private servers (Ctrl-C stops everything)."""
        settings = Settings()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            run_demo(settings, city=city, points=points, trucks=trucks, seed=seed)
        except KeyboardInterrupt:
            say("\nstopped; every process the demo started has been stopped too")
            raise typer.Exit(130) from None
