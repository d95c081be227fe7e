"""The ingestor's database side: one transaction per batch, written with COPY.

Idempotent on (truck, device time): a redelivered message or a restarted ingestor
never duplicates a row. The fast path COPYs a batch straight into ``position`` inside
a savepoint; only when that hits an existing key (a redelivery) does the batch go
through a staging table and ``INSERT … ON CONFLICT DO NOTHING``. Measured here, the
direct binary COPY is about three times faster than staging every batch, and
duplicates are rare (they follow a crash or a reconnect), so after a conflict the
writer stays on the staging path for a few batches and then tries the fast path again.

Connection problems are retried with backoff for as long as it takes (the messages
stay unacknowledged at the broker meanwhile). A row the database refuses for its
content — which validation should make impossible — does not block the stream: the
batch is retried message by message and the refused message goes to ``dead_letter``
with reason ``db_rejected``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from fleet.db import DatabaseUnavailable, connect
from fleet.positions import repo as positions_repo
from ingest import wire
from ingest.metrics import IngestMetrics

log = logging.getLogger("clearday.ingest.writer")

POSITION_COLUMNS = (
    "truck_id", "recorded_at", "lat", "lon", "speed_kmh", "heading_deg", "accuracy_m",
    "odometer_km", "ignition", "load_state", "seq",
    "altitude_m", "fuel_l", "recorder_speed_kmh", "signal_strength", "satellites",
    "door_locked", "doors_open", "extra",
)  # fmt: skip
POSITION_TYPES = (
    "text", "timestamptz", "float8", "float8", "float4", "float4", "float4",
    "float8", "bool", "text", "int8",
    "float4", "float4", "float4", "int2", "int2",
    "bool", "int2[]", "jsonb",
)  # fmt: skip
EVENT_COLUMNS = (
    "truck_id", "recorded_at", "kind", "point_id", "station_id", "rfid_tag", "weight_kg",
    "payload",
)  # fmt: skip
DEAD_LETTER_COLUMNS = ("received_at", "topic", "reason", "detail", "payload")
DEAD_LETTER_TYPES = ("timestamptz", "text", "text", "text", "bytea")

_POS_COLS = ", ".join(POSITION_COLUMNS)
COPY_POSITION = f"COPY position ({_POS_COLS}) FROM STDIN (FORMAT BINARY)"
COPY_POSITION_STAGE = f"COPY position_stage ({_POS_COLS}) FROM STDIN (FORMAT BINARY)"
CREATE_POSITION_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS position_stage ON COMMIT DELETE ROWS "
    f"AS SELECT {_POS_COLS} FROM position WITH NO DATA"
)
MERGE_POSITION_STAGE = (
    f"INSERT INTO position ({_POS_COLS}) SELECT {_POS_COLS} FROM position_stage "
    "ON CONFLICT DO NOTHING"
)
INSERT_POSITION = (
    f"INSERT INTO position ({_POS_COLS}) VALUES ({', '.join(['%s'] * len(POSITION_COLUMNS))}) "
    "ON CONFLICT DO NOTHING"
)
INSERT_EVENT = (
    f"INSERT INTO device_event ({', '.join(EVENT_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(EVENT_COLUMNS))}) ON CONFLICT DO NOTHING"
)
# A status without its own time (a last will) gets the receive time; then it only
# counts when the state really changes, so a retained will redelivered on every
# reconnect does not keep moving "offline since".
UPSERT_STATUS = """
    INSERT INTO terminal_status (terminal_id, truck_id, state, changed_at)
    VALUES (%s, %s, %s, %s)
    ON CONFLICT (terminal_id) DO UPDATE
       SET truck_id = EXCLUDED.truck_id, state = EXCLUDED.state,
           changed_at = EXCLUDED.changed_at, received_at = now()
     WHERE terminal_status.changed_at <= EXCLUDED.changed_at
       AND (%s OR terminal_status.state <> EXCLUDED.state)
"""
DELETE_ATTEMPTS = "DELETE FROM ingest_attempt WHERE digest = ANY(%s)"
SELECT_ATTEMPTS = "SELECT digest, attempts FROM ingest_attempt WHERE digest = ANY(%s)"
CHARGE_ATTEMPTS = """
    INSERT INTO ingest_attempt (digest, topic, attempts)
    SELECT digest, topic, 1 FROM unnest(%s::bytea[], %s::text[]) AS m (digest, topic)
    ON CONFLICT (digest) DO UPDATE
       SET attempts = ingest_attempt.attempts + 1, last_at = now()
"""
PURGE_ATTEMPTS = "DELETE FROM ingest_attempt WHERE last_at < now() - make_interval(secs => %s)"
COPY_DEAD_LETTER = f"COPY dead_letter ({', '.join(DEAD_LETTER_COLUMNS)}) FROM STDIN (FORMAT BINARY)"

# A database that vanishes without closing the connection (a network partition)
# is noticed within about a minute instead of the kernel's default ~15 minutes.
TCP_OPTIONS = {
    "keepalives": 1,
    "keepalives_idle": 15,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,
}
RETRY_MIN_DELAY_S = 0.2
RETRY_MAX_DELAY_S = 5.0
STAGING_BATCHES_AFTER_CONFLICT = 20
UNKNOWN_TERMINAL_RECHECK_S = 10.0
# Errors about the data itself: retrying the same rows cannot help.
# (ProgramLimitExceeded is an OperationalError, but e.g. a value too big to index.)
DATA_ERRORS = (pg_errors.DataError, pg_errors.IntegrityError, pg_errors.ProgramLimitExceeded)

PositionRow = tuple[Any, ...]  # in POSITION_COLUMNS order


def position_row(truck_id: str, f: wire.Fix) -> PositionRow:
    return (
        truck_id,
        f.recorded_at,
        f.lat,
        f.lon,
        f.speed_kmh,
        f.heading_deg,
        f.accuracy_m,
        f.odometer_km,
        f.ignition,
        f.load_state,
        f.seq,
        f.altitude_m,
        f.fuel_l,
        f.recorder_speed_kmh,
        f.signal_strength,
        f.satellites,
        f.door_locked,
        None if f.doors_open is None else list(f.doors_open),
        None if f.extra is None else Jsonb(f.extra),
    )


EventRow = tuple[Any, ...]  # in EVENT_COLUMNS order
# terminal_id, truck_id, state, changed_at, whether changed_at came with the message
StatusRow = tuple[str, str, str, datetime, bool]
DeadLetterRow = tuple[datetime, str, str, str, bytes]  # in DEAD_LETTER_COLUMNS order

T = TypeVar("T")


def is_message_fault(exc: BaseException) -> bool:
    """True when ``exc`` is about the rows being written, not about the database: a
    refusal of the data by the server or the driver (``DATA_ERRORS``), or an error the
    driver raised while encoding a value, before anything was sent (``OverflowError``,
    ``ValueError``…). Any other database error (a lost connection, a missing table) is
    never a message fault: those messages wait, unacked, while the write is retried."""
    if isinstance(exc, (Stopped, DatabaseUnavailable)):
        return False
    if isinstance(exc, psycopg.Error):
        return isinstance(exc, DATA_ERRORS)
    return isinstance(exc, Exception)


def clean_text(text: str, limit: int = 2000) -> str:
    """Text PostgreSQL accepts: no NUL, no lone surrogates; bounded length."""
    text = text[:limit]
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


@dataclass(slots=True)
class Batch:
    """Rows of a batch of MQTT messages. ``*_src`` give, for each row, the index of
    its message in ``messages`` (topic, payload), used only if the database refuses
    a row."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)
    positions: list[PositionRow] = field(default_factory=list)
    positions_src: list[int] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    events_src: list[int] = field(default_factory=list)
    statuses: list[StatusRow] = field(default_factory=list)
    statuses_src: list[int] = field(default_factory=list)
    dead: list[DeadLetterRow] = field(default_factory=list)
    # ingest_attempt digests of the redelivered messages this batch settles
    settled: list[bytes] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.positions) + len(self.events) + len(self.statuses) + len(self.dead)

    def marks(self) -> tuple[int, int, int, int]:
        """Where the rows of the next message will start (for :meth:`rewind`)."""
        return len(self.positions), len(self.events), len(self.statuses), len(self.dead)

    def rewind(self, marks: tuple[int, int, int, int]) -> None:
        """Drop the rows added since ``marks`` (a message that failed half-way)."""
        p, e, s, d = marks
        del self.positions[p:], self.positions_src[p:], self.events[e:], self.events_src[e:]
        del self.statuses[s:], self.statuses_src[s:], self.dead[d:]


@dataclass(slots=True)
class WriteResult:
    positions_inserted: int = 0
    events_inserted: int = 0
    statuses_written: int = 0
    dead_letters: list[DeadLetterRow] = field(default_factory=list)
    used_staging: bool = False
    commit_s: float = 0.0


class Stopped(Exception):
    """The writer was asked to stop while waiting for the database."""


class Db:
    """One database connection with retrying: connection-level failures are retried
    with backoff until the call succeeds or ``stop`` is set."""

    def __init__(
        self,
        url: str,
        *,
        metrics: IngestMetrics,
        stop: threading.Event,
        setup: Callable[[psycopg.Connection[Any]], None] | None = None,
    ) -> None:
        self.url = url
        self.metrics = metrics
        self.stop = stop
        self.setup = setup
        self._conn: psycopg.Connection[Any] | None = None
        self._last_error_log = 0.0

    def connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            conn = connect(self.url, autocommit=True, **TCP_OPTIONS)
            if self.setup is not None:
                self.setup(conn)
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def retrying(self, what: str, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        delay = RETRY_MIN_DELAY_S
        failures = 0
        while True:
            if self.stop.is_set() and failures:
                raise Stopped(what)
            try:
                return fn(self.connection())
            except DATA_ERRORS:
                raise
            except (psycopg.Error, DatabaseUnavailable) as exc:
                failures += 1
                self.metrics.db_errors.inc()
                self.close()
                now = time.monotonic()
                if failures == 1 or now - self._last_error_log > 30:
                    self._last_error_log = now
                    log.error(
                        "%s failed: %s; retrying (messages stay unacknowledged meanwhile)",
                        what,
                        str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc),
                    )
                if self.stop.wait(delay):
                    raise Stopped(what) from exc
                delay = min(delay * 2, RETRY_MAX_DELAY_S)


class TerminalDirectory:
    """terminal_id → truck_id, cached; unknown ids are looked up again at most every
    ``unknown_recheck_s`` seconds of ``clock`` (so a truck added while running is
    picked up)."""

    def __init__(self, db: Db, clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.clock = clock
        self._trucks: dict[str, str] = {}
        self._unknown_checked: dict[str, float] = {}
        self.unknown_recheck_s = UNKNOWN_TERMINAL_RECHECK_S

    def trucks_for(self, terminal_ids: Iterable[str]) -> dict[str, str]:
        """A mapping that holds every known terminal among ``terminal_ids``."""
        now = self.clock()
        missing = [
            t
            for t in terminal_ids
            if t not in self._trucks
            and now - self._unknown_checked.get(t, -self.unknown_recheck_s)
            >= self.unknown_recheck_s
        ]
        if missing:

            def lookup(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
                return conn.execute(
                    "SELECT terminal_id, truck_id FROM truck WHERE terminal_id = ANY(%s)",
                    (missing,),
                ).fetchall()

            found = dict(self.db.retrying("looking up terminals", lookup))
            self._trucks.update(found)
            for t in missing:
                if t not in found:
                    self._unknown_checked[t] = now
                else:
                    self._unknown_checked.pop(t, None)
            if len(self._unknown_checked) > 100_000:
                self._unknown_checked.clear()
        return self._trucks

    def close(self) -> None:
        self.db.close()


class BatchWriter:
    """Writes batches in one transaction each, on its own connection."""

    def __init__(self, db: Db, *, now: Callable[[], datetime]) -> None:
        self.db = db
        self.now = now
        self._staging_left = 0
        db.setup = _create_stage

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ writing

    def write(self, batch: Batch) -> WriteResult:
        """Commit the batch; retries connection failures until done or stopped."""
        started = time.perf_counter()
        try:
            result = self.db.retrying("writing a batch", lambda conn: self._write(conn, batch))
        except Exception as exc:
            if not is_message_fault(exc):
                raise
            log.error(
                "a batch could not be written (%s: %s); writing it message by message",
                type(exc).__name__,
                str(exc)[:300],
            )
            result = self.db.retrying(
                "writing a batch message by message", lambda conn: self._write_isolated(conn, batch)
            )
        result.commit_s = time.perf_counter() - started
        return result

    def _write(self, conn: psycopg.Connection[Any], batch: Batch) -> WriteResult:
        result = WriteResult(dead_letters=batch.dead)
        with conn.transaction(), conn.cursor() as cur:
            if batch.positions:
                result.positions_inserted, result.used_staging = self._positions(
                    conn, cur, batch.positions
                )
            if batch.events:
                result.events_inserted = _executemany_count(cur, INSERT_EVENT, batch.events)
            if batch.statuses:
                cur.executemany(UPSERT_STATUS, batch.statuses)
                result.statuses_written = len(batch.statuses)
            if batch.dead:
                _copy_dead_letters(cur, batch.dead)
            if batch.settled:
                cur.execute(DELETE_ATTEMPTS, (batch.settled,))
            if result.positions_inserted or result.events_inserted:
                positions_repo.announce_track_data(conn)  # the alert worker wakes at commit
        return result

    def _positions(
        self, conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any], rows: list[PositionRow]
    ) -> tuple[int, bool]:
        if self._staging_left <= 0:
            try:
                with conn.transaction():
                    _copy(cur, COPY_POSITION, POSITION_TYPES, rows)
                return len(rows), False
            except pg_errors.UniqueViolation:
                self._staging_left = STAGING_BATCHES_AFTER_CONFLICT
        else:
            self._staging_left -= 1
        _copy(cur, COPY_POSITION_STAGE, POSITION_TYPES, rows)
        cur.execute(MERGE_POSITION_STAGE)
        return max(cur.rowcount, 0), True

    def _write_isolated(self, conn: psycopg.Connection[Any], batch: Batch) -> WriteResult:
        """Slow path after a data error: each message in its own savepoint."""
        result = WriteResult(dead_letters=list(batch.dead))
        by_message: dict[int, tuple[list[PositionRow], list[EventRow], list[StatusRow]]] = {}
        for row, src in zip(batch.positions, batch.positions_src, strict=True):
            by_message.setdefault(src, ([], [], []))[0].append(row)
        for erow, src in zip(batch.events, batch.events_src, strict=True):
            by_message.setdefault(src, ([], [], []))[1].append(erow)
        for srow, src in zip(batch.statuses, batch.statuses_src, strict=True):
            by_message.setdefault(src, ([], [], []))[2].append(srow)
        received_at = self.now()
        with conn.transaction(), conn.cursor() as cur:
            for src, (positions, events, statuses) in sorted(by_message.items()):
                try:
                    with conn.transaction():
                        p = _executemany_count(cur, INSERT_POSITION, positions) if positions else 0
                        e = _executemany_count(cur, INSERT_EVENT, events) if events else 0
                        if statuses:
                            cur.executemany(UPSERT_STATUS, statuses)
                    result.positions_inserted += p
                    result.events_inserted += e
                    result.statuses_written += len(statuses)
                except Exception as exc:
                    if not is_message_fault(exc):
                        raise
                    topic, payload = batch.messages[src]
                    result.dead_letters.append(
                        (
                            received_at,
                            clean_text(topic),
                            "db_rejected",
                            clean_text(
                                f"the database refused this message ({type(exc).__name__}: "
                                f"{exc}); its other rows were not stored either"
                            ),
                            payload,
                        )
                    )
            if result.dead_letters:
                _copy_dead_letters(cur, result.dead_letters)
            if batch.settled:
                cur.execute(DELETE_ATTEMPTS, (batch.settled,))
            if result.positions_inserted or result.events_inserted:
                positions_repo.announce_track_data(conn)
        return result


class AttemptLedger:
    """How often each redelivered message was in hand when an ingestor stopped
    (``ingest_attempt``); the rules are in the ``ingest.service`` docstring."""

    def __init__(self, db: Db) -> None:
        self.db = db

    def attempts(self, digests: list[bytes]) -> dict[bytes, int]:
        def read(conn: psycopg.Connection[Any]) -> dict[bytes, int]:
            rows = conn.execute(SELECT_ATTEMPTS, (digests,)).fetchall()
            return {bytes(d): int(n) for d, n in rows}

        return self.db.retrying("reading message attempts", read)

    def charge(self, digests: list[bytes], topics: list[str]) -> None:
        """Count one more attempt for each message, committed before it is handled.
        A message received twice (a terminal's resend) is counted once: one statement
        cannot update a row twice."""
        distinct = dict(zip(digests, (clean_text(t, 500) for t in topics), strict=True))
        self.db.retrying(
            "recording message attempts",
            lambda conn: conn.execute(CHARGE_ATTEMPTS, (list(distinct), list(distinct.values()))),
        )

    def purge(self, older_than_s: float) -> None:
        """Forget attempts at messages the broker can no longer redeliver."""
        self.db.retrying(
            "purging old message attempts",
            lambda conn: conn.execute(PURGE_ATTEMPTS, (older_than_s,)),
        )


def _create_stage(conn: psycopg.Connection[Any]) -> None:
    conn.execute(CREATE_POSITION_STAGE)


def _copy(cur: psycopg.Cursor[Any], sql: str, types: Sequence[str], rows: list[Any]) -> None:
    with cur.copy(sql) as copy:
        copy.set_types(list(types))
        write_row = copy.write_row
        for row in rows:
            write_row(row)


def _copy_dead_letters(cur: psycopg.Cursor[Any], rows: list[DeadLetterRow]) -> None:
    _copy(cur, COPY_DEAD_LETTER, DEAD_LETTER_TYPES, rows)


def _executemany_count(cur: psycopg.Cursor[Any], sql: str, rows: Sequence[Any]) -> int:
    cur.executemany(sql, rows, returning=False)
    return max(cur.rowcount, 0)


def event_payload(extra: dict[str, Any] | None, lat: float | None, lon: float | None) -> Any:
    """What goes into device_event.payload: vendor fields, plus the position if sent."""
    if extra is None and lat is None:
        return None
    obj = dict(extra or {})
    if lat is not None:
        obj["lat"] = lat
        obj["lon"] = lon
    return Jsonb(obj)
