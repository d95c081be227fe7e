"""The ingestor: MQTT in, PostgreSQL out, acknowledged only after commit.

The pipeline, in order, for every batch:

1. collect  — take messages from the inbox until the batch holds
               ``ingest_batch_max_rows`` rows, or its oldest message is
               ``ingest_batch_max_age_s`` old, or nothing is waiting and it is
               ``ingest_batch_linger_s`` old;
2. decode   — :class:`ingest.wire.Decoder`: topic, size, JSON, types, ranges, time window;
3. resolve  — terminal id → truck id (cached; each item's own in a gateway's batch);
               unknown terminals are dead letters;
4. write    — one transaction: positions (COPY), events, status, dead letters; done by
               ``ingest_writers`` threads in parallel while the next batch is collected;
5. ack      — PUBACK every message of the batch, after its commit.

A crash anywhere before 5 leaves the messages unacknowledged: the broker redelivers
them and step 4 is idempotent, so every fix is stored exactly once.

No message can stop the stream. Whatever one message makes steps 2-4 do — an
exception in decoding, a row the database or the driver refuses — ends in a dead
letter for that message, which is acknowledged like any other; the other messages of
its batch are stored. Should the process die anyway while a message is in hand, the
broker redelivers it with the DUP flag set, and such a message is admitted only after
an attempt has been counted for it in ``ingest_attempt``:

- a redelivered message never counted before joins the batch (a plain restart costs
  one statement per batch);
- one counted before was in hand at a stop already: it is handled alone (counted,
  decoded, written, acked) so that a later stop is charged to it and no other;
- one counted ``ingest_max_attempts`` times is quarantined: a dead letter with its
  raw bytes, never decoded again, acked.
"""

from __future__ import annotations

import logging
import queue
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from hashlib import blake2b
from typing import Any, cast

from fleet.config import MqttTarget, Settings
from fleet.db import DatabaseUnavailable, connect
from fleet.positions import policies
from fleet.positions import repo as positions_repo
from ingest import wire
from ingest.metrics import IngestMetrics
from ingest.mqtt import Delivery, FatalMqttError, MqttConsumer
from ingest.writer import (
    AttemptLedger,
    Batch,
    BatchWriter,
    Db,
    Stopped,
    TerminalDirectory,
    clean_text,
    event_payload,
    position_row,
)

log = logging.getLogger("clearday.ingest")

IDLE_POLL_S = 0.005  # how often an empty inbox is looked at
DEADLINE_CHECK_EVERY = 256  # messages between batch-age checks while the inbox is full
REASON_LOG_INTERVAL_S = 60.0
REQUIRED_TABLES = ("position", "device_event", "dead_letter", "truck", "terminal_status")


def message_digest(delivery: Delivery) -> bytes:
    """The key of a message in ``ingest_attempt``: its topic and payload."""
    h = blake2b(delivery.topic, digest_size=16)
    h.update(b"\x00")
    h.update(delivery.payload)
    return h.digest()


def topic_text(delivery: Delivery) -> str:
    try:
        return delivery.topic.decode()
    except UnicodeDecodeError:
        return delivery.topic.decode("utf-8", "backslashreplace")


def default_client_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:40] or "host"
    return f"clearday-ingest-{host}"


class ReasonLog:
    """Logs a dead-letter reason at most once per interval, with a count of the rest."""

    def __init__(self, interval_s: float = REASON_LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def note(self, reason: str, topic: str, detail: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        last = self._last.get(reason)
        if last is not None and now - last < self.interval_s:
            self._suppressed[reason] += 1
            return False
        more = self._suppressed.pop(reason, 0)
        self._last[reason] = now
        log.warning(
            "dead letter [%s] on %s: %s%s",
            reason,
            topic,
            detail[:300],
            f" (and {more} more since the last report)" if more else "",
        )
        return True


def check_schema(url: str, *, max_past_s: float) -> None:
    """Fail fast, in words, when the database is unreachable, not migrated, or has
    storage policies that would settle fixes the ingestor may still write."""
    with connect(url) as conn:
        missing = [
            t
            for t in REQUIRED_TABLES
            if conn.execute("SELECT to_regclass(%s)", (t,)).fetchone() == (None,)
        ]
        if missing:
            raise DatabaseUnavailable(
                f"the database has no {', '.join(missing)} table(s): run `clearday migrate` first"
            )
        problems = policies.policy_problems(
            positions_repo.storage_policies(conn), max_past_s=max_past_s
        )
    if problems:
        raise DatabaseUnavailable("refusing to start: " + "; ".join(problems))


class Ingestor:
    """One ingestor process. ``run()`` blocks until ``stop()`` (or a fatal error)."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: IngestMetrics | None = None,
        client_id: str | None = None,
        share_group: str | None = None,
    ) -> None:
        self.settings = settings
        self.database_url = settings.storage.database_dsn()
        self.stop_event = threading.Event()
        self.metrics = metrics or IngestMetrics()
        self.decoder = wire.Decoder(
            wire.Limits(
                max_payload_bytes=settings.ingest.max_payload_bytes,
                max_future_s=settings.ingest.max_future_s,
                max_past_s=settings.ingest.max_past_s,
            )
        )
        self.max_rows = settings.ingest.batch_max_rows
        self.max_age_s = settings.ingest.batch_max_age_s
        self.linger_s = min(settings.ingest.batch_linger_s, self.max_age_s)
        group = settings.ingest.share_group if share_group is None else share_group
        target = MqttTarget(settings.ingest.mqtt_dsn())
        self.consumer = MqttConsumer(
            target,
            # A broker that binds client ids to user names (the shipped Mosquitto) uses
            # the account's name whatever we send: say the same in the logs.
            client_id=client_id
            or settings.ingest.client_id
            or target.username
            or default_client_id(),
            filters=wire.subscription_filters(group or None),
            receive_maximum=settings.ingest.receive_maximum,
            session_expiry_s=settings.ingest.session_expiry_s,
            keepalive_s=settings.ingest.keepalive_s,
        )
        # Several writers commit batches in parallel, each on its own connection: the
        # database's per-batch wait (COPY, WAL flush at commit) overlaps instead of
        # adding up. Acks follow each batch's own commit (MQTT allows any order).
        self.writers = [
            BatchWriter(
                Db(self.database_url, metrics=self.metrics, stop=self.stop_event), now=_utcnow
            )
            for _ in range(settings.ingest.writers)
        ]
        self.terminals = TerminalDirectory(
            Db(self.database_url, metrics=self.metrics, stop=self.stop_event)
        )
        # Redelivered messages that were in hand at a stop: counted, then handled in
        # the main thread (alone, on this writer, when they were in hand before).
        self.max_attempts = settings.ingest.max_attempts
        self.lone_writer = BatchWriter(
            Db(self.database_url, metrics=self.metrics, stop=self.stop_event), now=_utcnow
        )
        self.attempts = AttemptLedger(self.lone_writer.db)
        self.reasons = ReasonLog()
        self.batches = 0
        self._stats_lock = threading.Lock()
        # Collected batches wait here for a writer: the next batch is prepared (decoded,
        # rows built) while earlier ones are being written.
        self._ready: queue.Queue[tuple[list[Delivery], Batch] | None] = queue.Queue(
            maxsize=len(self.writers)
        )
        self._committer_error: BaseException | None = None

    def stop(self) -> None:
        self.stop_event.set()

    # ------------------------------------------------------------------ main loop

    def run(self) -> None:
        """Consume until stopped. Raises FatalMqttError on bad credentials and
        DatabaseUnavailable when the database is unusable at start."""
        check_schema(self.database_url, max_past_s=self.settings.ingest.max_past_s)
        for writer in self.writers:  # open the connections now: fail fast, no first-batch delay
            writer.db.connection()
        self.terminals.db.connection()
        self.attempts.purge(older_than_s=max(self.settings.ingest.session_expiry_s, 86_400))
        committers = [
            threading.Thread(
                target=self._commit_loop, args=(writer,), name=f"ingest-commit-{i}", daemon=True
            )
            for i, writer in enumerate(self.writers)
        ]
        for committer in committers:
            committer.start()
        self.consumer.start()
        try:
            while not self.stop_event.is_set():
                if self.consumer.fatal is not None:
                    raise FatalMqttError(self.consumer.fatal)
                self.metrics.connected.set(1 if self.consumer.connected.is_set() else 0)
                deliveries, topics, parsed, suspects = self._collect()
                settled: list[bytes] = []
                if suspects:
                    settled = self._admit(suspects, deliveries, topics, parsed)
                if deliveries:
                    trucks = self.terminals.trucks_for(terminals_named(parsed))
                    batch = build_batch(deliveries, topics, parsed, trucks, _utcnow())
                    batch.settled = settled
                    self._hand_over((deliveries, batch), committers)
        except Stopped:
            log.info("stopped while waiting for the database; unacked messages stay queued")
        finally:
            self.stop_event.set()
            for _ in committers:
                self._hand_over(None, committers)
            for committer in committers:
                committer.join()
            self.consumer.stop()
            for writer in self.writers:
                writer.close()
            self.lone_writer.close()
            self.terminals.close()
            self.metrics.connected.set(0)
        if self._committer_error is not None:
            raise self._committer_error

    def _hand_over(
        self, item: tuple[list[Delivery], Batch] | None, committers: list[threading.Thread]
    ) -> None:
        while any(c.is_alive() for c in committers):
            try:
                self._ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _commit_loop(self, writer: BatchWriter) -> None:
        try:
            while True:
                item = self._ready.get()
                if item is None:
                    return
                self._commit(writer, *item)
        except Stopped:
            log.info("stopped while waiting for the database; unacked messages stay queued")
        except BaseException as exc:
            log.exception("the committer failed")
            self._committer_error = exc
        finally:
            self.stop_event.set()

    def _collect(
        self,
    ) -> tuple[list[Delivery], list[str], list[wire.Parsed[Any]], list[Delivery]]:
        """A batch of decoded messages, and the redelivered ones, not decoded yet."""
        inbox = self.consumer.inbox
        popleft = inbox.popleft
        parse = self.decoder.parse
        window = self.decoder.window()
        deliveries: list[Delivery] = []
        topics: list[str] = []
        parsed: list[wire.Parsed[Any]] = []
        suspects: list[Delivery] = []
        rows = 0
        deadline = linger_until = 0.0
        stop = self.stop_event
        while True:
            try:
                delivery = popleft()
            except IndexError:
                if stop.is_set():
                    break
                if not deliveries and not suspects:
                    time.sleep(IDLE_POLL_S)
                    if stop.is_set() or self.consumer.fatal is not None:
                        break
                    window = self.decoder.window()
                    continue
                now = time.monotonic()
                if now >= deadline or now >= linger_until:
                    break
                time.sleep(min(deadline - now, IDLE_POLL_S))
                continue
            if not deliveries and not suspects:
                deadline = delivery.received_at + self.max_age_s
                linger_until = delivery.received_at + self.linger_s
            if delivery.dup:
                suspects.append(delivery)  # decoded only once an attempt is counted
                rows += 1
            else:
                deliveries.append(delivery)
                topic = topic_text(delivery)
                topics.append(topic)
                result = parse(topic, delivery.payload, window)
                parsed.append(result)
                rows += len(result.items) + len(result.rejections)
            if rows >= self.max_rows:
                break
            if (len(deliveries) + len(suspects)) % DEADLINE_CHECK_EVERY == 0 and (
                time.monotonic() >= deadline
            ):
                break
        self.metrics.inbox.set(len(inbox))
        return deliveries, topics, parsed, suspects

    def _admit(
        self,
        suspects: list[Delivery],
        deliveries: list[Delivery],
        topics: list[str],
        parsed: list[wire.Parsed[Any]],
    ) -> list[bytes]:
        """Count an attempt for each redelivered message before it is decoded (see the
        module docstring). Those never counted before join the batch (appended to
        ``deliveries``, ``topics``, ``parsed``; their digests are returned, for the
        batch to settle); the others are handled alone or quarantined here."""
        digests = [message_digest(d) for d in suspects]
        counted = self.attempts.attempts(digests)
        first = [(d, g) for d, g in zip(suspects, digests, strict=True) if g not in counted]
        if first:
            first_topics = [topic_text(d) for d, _ in first]
            self.attempts.charge([g for _, g in first], first_topics)
            window = self.decoder.window()
            for (delivery, _), topic in zip(first, first_topics, strict=True):
                deliveries.append(delivery)
                topics.append(topic)
                parsed.append(self.decoder.parse(topic, delivery.payload, window))
        for delivery, digest in zip(suspects, digests, strict=True):
            attempts = counted.get(digest)
            if attempts is None:
                continue
            if attempts >= self.max_attempts:
                self._quarantine(delivery, digest, attempts)
            else:
                self._handle_alone(delivery, digest)
        return [g for _, g in first]

    def _handle_alone(self, delivery: Delivery, digest: bytes) -> None:
        topic = topic_text(delivery)
        self.attempts.charge([digest], [topic])
        result = self.decoder.parse(topic, delivery.payload, self.decoder.window())
        trucks = self.terminals.trucks_for(terminals_named([result]))
        batch = build_batch([delivery], [topic], [result], trucks, _utcnow())
        batch.settled = [digest]
        self._commit(self.lone_writer, [delivery], batch)

    def _quarantine(self, delivery: Delivery, digest: bytes, attempts: int) -> None:
        batch = Batch()
        batch.messages.append((topic_text(delivery), delivery.payload))
        batch.dead.append(
            (
                _utcnow(),
                clean_text(topic_text(delivery), 500),
                wire.Reason.QUARANTINED.value,
                clean_text(
                    f"the ingestor stopped {attempts} times while this message was in hand "
                    f"(CLEARDAY_INGEST_MAX_ATTEMPTS={self.max_attempts}); quarantined "
                    "without decoding it again: inspect the payload, then republish a "
                    "corrected message or leave it"
                ),
                delivery.payload,
            )
        )
        batch.settled = [digest]
        self._commit(self.lone_writer, [delivery], batch)

    def _commit(self, writer: BatchWriter, deliveries: list[Delivery], batch: Batch) -> None:
        result = writer.write(batch)
        acked = self.consumer.ack(deliveries)
        oldest = deliveries[0].received_at
        lag_s = time.monotonic() - oldest
        with self._stats_lock:
            self.batches += 1

        m = self.metrics
        m.received.inc(len(deliveries))
        m.acked.inc(acked)
        m.rows_written.labels("position").inc(result.positions_inserted)
        m.rows_written.labels("device_event").inc(result.events_inserted)
        m.rows_written.labels("terminal_status").inc(result.statuses_written)
        if len(batch.positions) > result.positions_inserted:
            m.duplicates.labels("position").inc(len(batch.positions) - result.positions_inserted)
        if len(batch.events) > result.events_inserted:
            m.duplicates.labels("device_event").inc(len(batch.events) - result.events_inserted)
        m.batch_rows.observe(batch.rows)
        m.commit_seconds.observe(result.commit_s)
        m.lag_seconds.observe(lag_s)
        m.last_commit.set(time.time())
        for _, topic, reason, detail, _payload in result.dead_letters:
            m.dead_letters.labels(reason).inc()
            with self._stats_lock:
                self.reasons.note(reason, topic, detail)


def terminals_named(parsed: Iterable[wire.Parsed[Any]]) -> set[str]:
    """The terminal ids of decoded messages: a truck topic's, and each item's of a
    gateway's batch."""
    names: set[str] = set()
    for result in parsed:
        if result.gateway_id is not None:
            names.update(item.terminal_id for item in result.items)
        elif result.terminal_id is not None:
            names.add(result.terminal_id)
    return names


def build_batch(
    deliveries: list[Delivery],
    topics: list[str],
    parsed: list[wire.Parsed[Any]],
    trucks: dict[str, str],
    received_at: datetime,
) -> Batch:
    """Turn decoded messages into rows; unknown terminals and rejections become
    dead letters, and so does a message whose rows cannot be built."""
    batch = Batch()
    dead = batch.dead
    messages = batch.messages
    for src, (delivery, topic, result) in enumerate(zip(deliveries, topics, parsed, strict=True)):
        messages.append((topic, delivery.payload))
        marks = batch.marks()
        try:
            _add_message(batch, src, topic, delivery.payload, result, trucks, received_at)
        except Exception as exc:  # one message's rows must not cost the batch
            batch.rewind(marks)
            dead.append(
                (
                    received_at,
                    clean_text(topic, 500),
                    wire.Reason.DECODER_FAILED.value,
                    clean_text(
                        f"building rows failed with {type(exc).__name__}: {exc}; this is a "
                        "bug in the ingestor: report it with this dead letter's payload"
                    ),
                    delivery.payload,
                )
            )
    return batch


def _add_message(
    batch: Batch,
    src: int,
    topic: str,
    payload: bytes,
    result: wire.Parsed[Any],
    trucks: dict[str, str],
    received_at: datetime,
) -> None:
    if result.gateway_id is not None:
        _add_gateway_fixes(batch, src, topic, payload, result, trucks, received_at)
        return
    positions = batch.positions
    positions_src = batch.positions_src
    dead = batch.dead
    truck_id = trucks.get(result.terminal_id) if result.terminal_id is not None else None
    if result.terminal_id is not None and truck_id is None and result.items:
        dead.append(
            (
                received_at,
                clean_text(topic, 500),
                wire.Reason.UNKNOWN_TERMINAL.value,
                clean_text(f"no truck has terminal id {result.terminal_id!r}"),
                payload,
            )
        )
        return
    for rej in result.rejections:
        dead.append(
            (
                received_at,
                clean_text(topic, 500),
                rej.reason.value,
                clean_text(rej.detail),
                rej.raw,
            )
        )
    if not result.items or truck_id is None:
        return
    channel = result.channel
    if channel is wire.Channel.POSITIONS:
        for f in result.items:
            positions.append(position_row(truck_id, f))
            positions_src.append(src)
    elif channel is wire.Channel.EVENTS:
        for e in result.items:
            batch.events.append(
                (
                    truck_id,
                    e.recorded_at,
                    e.kind,
                    e.point_id,
                    e.station_id,
                    e.rfid_tag,
                    e.weight_kg,
                    event_payload(e.extra, e.lat, e.lon),
                )
            )
            batch.events_src.append(src)
    else:
        for s in result.items:
            batch.statuses.append(
                (
                    cast(str, result.terminal_id),
                    truck_id,
                    s.state,
                    s.at or received_at,
                    s.at is not None,
                )
            )
            batch.statuses_src.append(src)


def _add_gateway_fixes(
    batch: Batch,
    src: int,
    topic: str,
    payload: bytes,
    result: wire.Parsed[wire.TerminalFix],
    trucks: dict[str, str],
    received_at: datetime,
) -> None:
    """A gateway's batch: each fix goes to its own terminal's truck; an item naming a
    terminal no truck has is a dead letter of its own bytes, the others are stored."""
    topic_clean = clean_text(topic, 500)
    for rej in result.rejections:
        batch.dead.append(
            (received_at, topic_clean, rej.reason.value, clean_text(rej.detail), rej.raw)
        )
    elements: list[bytes] | None = None
    for item in result.items:
        truck_id = trucks.get(item.terminal_id)
        if truck_id is not None:
            batch.positions.append(position_row(truck_id, item.fix))
            batch.positions_src.append(src)
            continue
        if elements is None:
            elements = wire.array_elements(payload) or [payload]
        raw = elements[item.element] if item.element < len(elements) else payload
        batch.dead.append(
            (
                received_at,
                topic_clean,
                wire.Reason.UNKNOWN_TERMINAL.value,
                clean_text(f"no truck has terminal id {item.terminal_id!r} (fix {item.element})"),
                raw,
            )
        )


def _utcnow() -> datetime:
    return datetime.now(UTC)
