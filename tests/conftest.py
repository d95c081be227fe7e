"""Shared fixtures: a real PostgreSQL and a real Mosquitto for every test run.

With CLEARDAY_DATABASE_URL / CLEARDAY_MQTT_URL set, the tests use those servers;
otherwise they start private ones in a temporary folder. If neither works the whole
run stops and says why: no test skips silently for lack of a service. Each test
that asks for `database_url` gets a database of its own, cloned from a migrated
template, so tests and concurrent runs never see each other's data.
"""

from __future__ import annotations

import itertools
import os
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from fleet import db
from fleet.config import Settings
from fleet.services import PrivateMosquitto, PrivatePostgres, ServiceError


class PgServer:
    """A PostgreSQL server the tests may create databases on."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.run_id = uuid.uuid4().hex[:8]
        self._counter = itertools.count()
        self._created: list[str] = []
        self._template: str | None = None
        with psycopg.connect(admin_url, autocommit=True) as conn:
            self.has_timescale = db.timescale_available(conn)

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

    def new_database(self, *, migrated: bool = True, timescale: str = "off") -> str:
        """A fresh database; migrated ones are cloned from a template (fast)."""
        if not migrated:
            return self.url(self._create())
        if timescale != "off":
            name = self._create()
            db.migrate(self.url(name), timescale=timescale)
            return self.url(name)
        if self._template is None:
            self._template = self._create()
            db.migrate(self.url(self._template), timescale="off")
        return self.url(self._create(template=self._template))

    def drop_all(self) -> None:
        """Drop what this run created (on a configured server; a private one is discarded)."""
        failures = []
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in reversed(self._created):
                try:
                    conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                except psycopg.Error as exc:
                    failures.append(f"{name}: {exc}")
        if failures:
            warnings.warn("test databases left behind: " + "; ".join(failures), stacklevel=1)


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    configured = os.environ.get("CLEARDAY_DATABASE_URL")
    private: PrivatePostgres | None = None
    try:
        if configured:
            admin_url = configured
        else:
            private = PrivatePostgres(tmp_path_factory.mktemp("pg") / "data", durable=False).start()
            admin_url = private.admin_url
        server = PgServer(admin_url)
    except (ServiceError, psycopg.Error, OSError) as exc:
        pytest.exit(f"no PostgreSQL for the tests: {exc}", returncode=3)
    try:
        yield server
    finally:
        if private:
            private.stop()  # the whole throwaway cluster goes, databases and all
        else:
            server.drop_all()


@pytest.fixture(scope="session")
def mqtt_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("CLEARDAY_MQTT_URL")
    if configured:
        yield configured
        return
    try:
        broker = PrivateMosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    except ServiceError as exc:
        pytest.exit(f"no MQTT broker for the tests: {exc}", returncode=3)
    try:
        yield broker.url
    finally:
        broker.stop()


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
    """A fresh, migrated database for this test alone (plain PostgreSQL mode)."""
    return pg.new_database()


@pytest.fixture
def settings(database_url: str, mqtt_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, mqtt_url=mqtt_url, data_dir=tmp_path / "state")  # type: ignore[arg-type]
