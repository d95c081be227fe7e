"""Database access: connections, the pool, and the migration runner.

Migrations are plain SQL files in fleet/migrations named `NNNN_name.sql`. A file named
`NNNN_name.timescale.sql` runs only on a server with TimescaleDB, `NNNN_name.plain.sql`
only on one without; they follow the common file of the same number. Each file runs in
one transaction and is recorded in `schema_migration`, so `migrate` is idempotent.
The job engine's schema (Procrastinate) is one more: `ENGINE_SCHEMA`, read from the
installed package.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from typing import Literal

import psycopg
from psycopg.rows import class_row

from fleet.config import redact

Mode = Literal["timescale", "plain"]
CONNECT_TIMEOUT_S = 5
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(timescale|plain))?\.sql$")


class DatabaseUnavailable(RuntimeError):
    """The server cannot be reached or refused us; the message is one actionable line."""


def connect(url: str, **kwargs: object) -> psycopg.Connection:
    try:
        return psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, **kwargs)  # type: ignore[arg-type]
    except psycopg.OperationalError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = lines[0].removeprefix("connection failed: ") if lines else type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {redact(url)}: {reason}"
        ) from exc


@dataclass(frozen=True)
class Migration:
    number: int
    filename: str
    variant: Mode | None
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]


# The job engine's tables and functions, as its package ships them (the version is
# pinned in pyproject.toml; a new version's upgrade scripts become new migrations).
ENGINE_SCHEMA = "0013_procrastinate.sql"


def _engine_schema() -> Migration:
    sql = (resources.files("procrastinate.sql") / "schema.sql").read_text("utf-8")
    return Migration(13, ENGINE_SCHEMA, None, sql)


def available_migrations() -> list[Migration]:
    found = [_engine_schema()]
    for entry in resources.files("fleet.migrations").iterdir():
        match = _NAME.match(entry.name)
        if not match:
            continue
        variant = match.group(3)
        found.append(Migration(int(match.group(1)), entry.name, variant, entry.read_text("utf-8")))  # type: ignore[arg-type]
    # The common file of a number first, then its variant.
    return sorted(found, key=lambda m: (m.number, m.variant is not None, m.filename))


def timescale_available(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    return bool(row and row[0])


def timescale_installed(conn: psycopg.Connection) -> str | None:
    row = conn.execute(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    ).fetchone()
    return str(row[0]) if row else None


# A job whose next start is this far behind (beyond its own interval) is not being run
# at all: the scheduler is missing (timescaledb.max_background_workers).
JOB_OVERDUE_SLACK_S = 3600.0


@dataclass(frozen=True)
class JobStatus:
    """A TimescaleDB background job of one of our tables, with its last outcome."""

    job_id: int
    proc_name: str  # policy_compression, policy_retention, policy_refresh_continuous_aggregate
    relation: str  # the hypertable, or the continuous aggregate a refresh job fills
    scheduled: bool
    schedule_interval_s: float
    last_run_status: str | None  # 'Success' / 'Failed'; None before the first run
    last_run_started_at: datetime | None
    last_successful_finish: datetime | None
    next_start: datetime | None
    total_runs: int
    total_failures: int
    last_error: str | None
    checked_at: datetime  # the server's now()

    def problem(self) -> str | None:
        """Why this job does not do its work, in words; None when it does."""
        what = f"{self.proc_name.removeprefix('policy_').replace('_', ' ')} job {self.job_id} of {self.relation}"
        if not self.scheduled:
            return f"{what} is paused (alter_job(..., scheduled => true) resumes it)"
        if self.last_run_status == "Failed":
            error = f": {self.last_error.strip()[:200]}" if self.last_error else ""
            started = self.last_run_started_at
            when = f"at {started:%Y-%m-%d %H:%M %Z}; " if started else ""
            return (
                f"{what} failed its last run ({when}"
                f"{self.total_failures} of {self.total_runs} runs failed){error}"
            )
        overdue_after = timedelta(seconds=self.schedule_interval_s + JOB_OVERDUE_SLACK_S)
        if self.next_start is not None and self.checked_at - self.next_start > overdue_after:
            return (
                f"{what} was due at {self.next_start:%Y-%m-%d %H:%M %Z} and has not run: is "
                "the TimescaleDB scheduler running (timescaledb.max_background_workers)?"
            )
        return None


def timescale_jobs(conn: psycopg.Connection) -> list[JobStatus]:
    """The background jobs (policies) of this database's hypertables and aggregates.

    TimescaleDB's own jobs (telemetry, job-history cleanup) are left out: telemetry
    fails on every offline server, which is no fault of ours.
    """
    with conn.cursor(row_factory=class_row(JobStatus)) as cur:
        return cur.execute(
            """SELECT j.job_id, j.proc_name,
                      coalesce(c.view_name, j.hypertable_name) AS relation,
                      j.scheduled, extract(epoch FROM j.schedule_interval)::float8 AS schedule_interval_s,
                      s.last_run_status, s.last_run_started_at, s.last_successful_finish,
                      s.next_start, coalesce(s.total_runs, 0) AS total_runs,
                      coalesce(s.total_failures, 0) AS total_failures,
                      e.err_message AS last_error, now() AS checked_at
                 FROM timescaledb_information.jobs j
                 LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
                 LEFT JOIN timescaledb_information.continuous_aggregates c
                        ON c.materialization_hypertable_schema = j.hypertable_schema
                       AND c.materialization_hypertable_name = j.hypertable_name
                 LEFT JOIN LATERAL (
                        SELECT x.err_message FROM timescaledb_information.job_errors x
                         WHERE x.job_id = j.job_id
                         ORDER BY x.finish_time DESC NULLS LAST LIMIT 1) e ON true
                WHERE j.hypertable_name IS NOT NULL
                ORDER BY j.job_id"""
        ).fetchall()


def _choose_mode(conn: psycopg.Connection, want: str) -> Mode:
    """Use TimescaleDB when the server has it (and `want` allows), else plain PostgreSQL."""
    if want == "off" or not timescale_available(conn):
        if want == "on":
            raise DatabaseUnavailable(
                "CLEARDAY_TIMESCALE=on but this server has no timescaledb extension"
            )
        return "plain"
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as exc:
        if want == "on":
            raise DatabaseUnavailable(f"cannot enable TimescaleDB: {exc}") from exc
        # Installed but not preloaded (shared_preload_libraries): run plain.
        return "plain"
    return "timescale"


def applied_migrations(conn: psycopg.Connection) -> dict[str, str]:
    exists = conn.execute("SELECT to_regclass('schema_migration') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute("SELECT filename, mode FROM schema_migration").fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def storage_mode(conn: psycopg.Connection) -> Mode | None:
    """The mode the schema was created in, or None before the first migration."""
    exists = conn.execute("SELECT to_regclass('schema_migration') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute("SELECT mode FROM schema_migration ORDER BY applied_at LIMIT 1").fetchone()
    return row[0] if row else None


def pending_migrations(conn: psycopg.Connection, mode: Mode) -> list[Migration]:
    applied = applied_migrations(conn)
    return [
        m for m in available_migrations() if m.filename not in applied and m.variant in (None, mode)
    ]


def migrate(url: str, *, timescale: str = "auto") -> tuple[Mode, list[str]]:
    """Apply every pending migration in order; returns the storage mode and what ran."""
    with connect(url, autocommit=True) as conn:
        # One migrator at a time (several ingestors may start together).
        conn.execute("SELECT pg_advisory_lock(7247321)")
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migration (
                       filename   text PRIMARY KEY,
                       mode       text NOT NULL,
                       checksum   text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT clock_timestamp())"""
            )
            mode = storage_mode(conn) or _choose_mode(conn, timescale)
            ran = []
            for migration in pending_migrations(conn, mode):
                try:
                    with conn.transaction():
                        conn.execute(migration.sql.encode())
                        conn.execute(
                            "INSERT INTO schema_migration (filename, mode, checksum) VALUES (%s, %s, %s)",
                            (migration.filename, mode, migration.checksum),
                        )
                except psycopg.Error as exc:
                    raise MigrationFailed(f"{migration.filename}: {exc}".strip()) from exc
                ran.append(migration.filename)
            return mode, ran
        finally:
            conn.execute("SELECT pg_advisory_unlock(7247321)")


class MigrationFailed(RuntimeError):
    """A migration file failed; its transaction was rolled back."""
