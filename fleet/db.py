"""Database access: connections, the pool, and the migration runner.

Migrations are plain SQL files in fleet/migrations named `NNNN_name.sql`. A file named
`NNNN_name.timescale.sql` runs only on a server with TimescaleDB, `NNNN_name.plain.sql`
only on one without; they follow the common file of the same number. Each file runs in
one transaction and is recorded in `schema_migration`, so `migrate` is idempotent.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import psycopg
from psycopg_pool import ConnectionPool

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


def make_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> ConnectionPool:
    pool = ConnectionPool(
        url, min_size=min_size, max_size=max_size, open=False,
        kwargs={"connect_timeout": CONNECT_TIMEOUT_S},
    )  # fmt: skip
    pool.open(wait=True, timeout=CONNECT_TIMEOUT_S * 2)
    return pool


@dataclass(frozen=True)
class Migration:
    number: int
    filename: str
    variant: Mode | None
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]


def available_migrations() -> list[Migration]:
    found = []
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
