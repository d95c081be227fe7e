"""Shared fixtures: a real PostgreSQL and a real Mosquitto for every test run.

With CLEARDAY_DATABASE_URL / CLEARDAY_MQTT_URL set, the tests use those servers;
otherwise they start private ones in a temporary folder. If neither works the whole
run stops and says why: no test skips silently for lack of a service. Each test
that asks for `database_url` gets a database of its own, cloned from a migrated
template, so tests and concurrent runs never see each other's data.

CLEARDAY_TEST_TIMESCALE=1 (with CLEARDAY_DATABASE_URL pointing at a TimescaleDB server)
runs the same tests with every database migrated in TimescaleDB mode.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from fleet import db
from fleet.config import Settings, redact
from fleet.devservers import PrivateMosquitto, PrivatePostgres, ServiceError
from tests.settings import flat_settings

TIMESCALE_ENV = "CLEARDAY_TEST_TIMESCALE"


class PgServer:
    """A PostgreSQL server the tests may create databases on.

    Migrated databases are cloned from a template per storage mode. A template accepts
    no connections once migrated: on a TimescaleDB server the job scheduler connects to
    every database it may, and a template someone is connected to cannot be cloned
    (ObjectInUse; TimescaleDB issue 4048).
    """

    def __init__(self, admin_url: str, *, timescale: bool = False) -> None:
        self.admin_url = admin_url
        self.run_id = uuid.uuid4().hex[:8]
        self._counter = itertools.count()
        self._created: list[str] = []
        self._templates: dict[str, str] = {}
        with psycopg.connect(admin_url, autocommit=True) as conn:
            self.has_timescale = db.timescale_available(conn)
        # The storage mode of `new_database()`: CLEARDAY_TEST_TIMESCALE=1 runs the suite
        # on TimescaleDB, and refuses to run without it.
        self.default_timescale = "on" if timescale else "off"
        if timescale and not self.has_timescale:
            raise ServiceError(
                f"{TIMESCALE_ENV}=1 but the PostgreSQL server at {redact(admin_url)} has no "
                "timescaledb extension: point CLEARDAY_DATABASE_URL at a TimescaleDB server "
                "(timescaledb in shared_preload_libraries)"
            )

    def url(self, database: str) -> str:
        base, _, _ = self.admin_url.rpartition("/")
        query = ""
        if "?" in self.admin_url:
            query = "?" + self.admin_url.split("?", 1)[1]
            base = self.admin_url.split("?", 1)[0].rpartition("/")[0]
        return f"{base}/{database}{query}"

    def _create(self, template: str | None = None) -> str:
        name = f"cd_test_{self.run_id}_{next(self._counter)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            suffix = f" TEMPLATE {template}" if template else ""
            conn.execute(f"CREATE DATABASE {name}{suffix}")
        self._created.append(name)
        return name

    def _template(self, timescale: str) -> str:
        template = self._templates.get(timescale)
        if template is None:
            template = self._create()
            db.migrate(self.url(template), timescale=timescale)
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(
                    f"ALTER DATABASE {template} WITH ALLOW_CONNECTIONS false IS_TEMPLATE true"
                )
                # Whoever got in before (TimescaleDB's scheduler) leaves now and cannot return.
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (template,),
                )
            self._templates[timescale] = template
        return template

    def new_database(self, *, migrated: bool = True, timescale: str | None = None) -> str:
        """A fresh database; migrated ones are cloned from a template (fast). `timescale`
        is "on" or "off" (default: the suite's mode, see CLEARDAY_TEST_TIMESCALE)."""
        if not migrated:
            return self.url(self._create())
        return self.url(self._create(template=self._template(timescale or self.default_timescale)))

    def drop_all(self) -> None:
        """Drop what this run created (on a configured server; a private one is discarded)."""
        failures = []
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in reversed(self._created):
                try:
                    if name in self._templates.values():
                        conn.execute(f"ALTER DATABASE {name} IS_TEMPLATE false")
                    conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                except psycopg.Error as exc:
                    failures.append(f"{name}: {exc}")
        if failures:
            warnings.warn("test databases left behind: " + "; ".join(failures), stacklevel=1)


def _service_folder(name: str) -> tempfile.TemporaryDirectory[str]:
    """A folder for a private server, removed when the run ends. Not under pytest's own
    temporary folders: pytest deletes all but the newest three of those, so a second
    test run started meanwhile would pull the data from under this run's servers."""
    return tempfile.TemporaryDirectory(prefix=f"clearday-test-{name}-")


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    configured = os.environ.get("CLEARDAY_DATABASE_URL")
    timescale = os.environ.get(TIMESCALE_ENV, "") not in ("", "0")
    private: PrivatePostgres | None = None
    try:
        if configured:
            admin_url = configured
        elif timescale:
            raise ServiceError(
                f"{TIMESCALE_ENV}=1 needs CLEARDAY_DATABASE_URL (an admin URL of a TimescaleDB "
                "server): the private PostgreSQL the tests start has no TimescaleDB"
            )
        else:
            folder = _service_folder("pg")
            private = PrivatePostgres(Path(folder.name) / "data", durable=False).start()
            admin_url = private.admin_url
        server = PgServer(admin_url, timescale=timescale)
    except (ServiceError, psycopg.Error, OSError) as exc:
        pytest.exit(f"no PostgreSQL for the tests: {exc}", returncode=3)
    try:
        yield server
    finally:
        if private:
            private.stop()  # the whole throwaway cluster goes, databases and all
            folder.cleanup()
        else:
            server.drop_all()


@pytest.fixture(scope="session")
def mqtt_url() -> Iterator[str]:
    configured = os.environ.get("CLEARDAY_MQTT_URL")
    if configured:
        yield configured
        return
    folder = _service_folder("mosquitto")
    try:
        broker = PrivateMosquitto(Path(folder.name)).start()
    except ServiceError as exc:
        pytest.exit(f"no MQTT broker for the tests: {exc}", returncode=3)
    try:
        yield broker.url
    finally:
        broker.stop()
        folder.cleanup()


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[[], PrivateMosquitto]]:
    """Start private brokers a test can stop, kill and restart (fault tests)."""
    started: list[PrivateMosquitto] = []

    def start() -> PrivateMosquitto:
        broker = PrivateMosquitto(tmp_path / f"mosquitto{len(started)}").start()
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()


@pytest.fixture
def database_url(pg: PgServer) -> str:
    """A fresh, migrated database for this test alone (plain PostgreSQL, or TimescaleDB
    with CLEARDAY_TEST_TIMESCALE=1)."""
    return pg.new_database()


@pytest.fixture
def settings(database_url: str, mqtt_url: str, tmp_path: Path) -> Settings:
    return flat_settings(database_url=database_url, mqtt_url=mqtt_url, data_dir=tmp_path / "state")  # type: ignore[arg-type]
