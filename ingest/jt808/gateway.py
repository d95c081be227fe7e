"""`clearday jt808`: an asyncio TCP server for JT/T 808 terminals that publishes what
they send in ClearDay's MQTT wire format: their fixes in batches on the gateway's own
topic, each item naming the truck's terminal id (ingest/jt808/batching.py), alarms and
statuses on the truck's topics.

One ingest path: the gateway translates, the ingestor stores. The rules:

- **Who may connect**: a terminal registers (0x0100) only if an active truck carries
  its phone number (``truck.jt808_phone``) and gets an auth code (0x8100, stored in
  ``jt808_registration``); every connection then authenticates (0x0102) with it.
  Anything else before that, an unknown phone number, a wrong code or a logout
  (0x0003) gets a failure result (or none) and the connection is closed.
- **At least once**: a location (0x0200, 0x0704, and every sub-package of one) is
  acknowledged (0x8001 result 0) only after the broker has acknowledged the
  translated message (PUBACK). Without a PUBACK within ``publish_timeout_s`` the
  terminal gets no answer and sends the location again later (JT/T 808 terminals
  keep unacknowledged reports and upload them as 0x0704).
- **Bad frames** are answered as the standard says (0x8001 result 2, or 3 for an
  unsupported message, when the header could be read), logged, and kept in
  ``dead_letter`` with their raw bytes; the connection goes on, unless
  ``max_bad_frames`` arrive in a row (it cannot be re-synchronised).
- **Idle connections** (nothing received for ``idle_timeout_s``) are closed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ingest import wire
from ingest.jt808 import codec, repo, translate
from ingest.jt808.batching import FixBatcher
from ingest.jt808.broker import Done, Join, Publisher
from ingest.jt808.codec import Frame, FrameError, Reason, Result

log = logging.getLogger("clearday.jt808")

STOP_DRAIN_S = 5.0  # at stop, how long the last status messages may take
# Locations of one connection awaiting the broker before the gateway stops reading
# from it (a terminal that sends without waiting for answers).
MAX_UNACKED_PER_CONNECTION = 64
# An idle connection is closed after idle_timeout_s of silence, at most 1/IDLE_SWEEPS of
# it later.
IDLE_SWEEPS = 8
REGISTRATION_RECHECK_S = 300.0  # an authenticated connection re-checks its truck this often
DEAD_LETTER_QUEUE_MAX = 100_000
DEAD_LETTER_BATCH = 500
AUTH_CODE_BYTES = 12  # 16 URL-safe characters
STOP_CHECK_S = 1.0  # how often the command tasks look at the stop event
RECONNECT_MIN_S = 1.0  # the command listener's reconnect delay, doubling up to
RECONNECT_MAX_S = 30.0
COMMAND_IDS = frozenset((codec.MsgId.SET_PARAMETERS, codec.MsgId.QUERY_LOCATION))


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The gateway's settings (`CLEARDAY_JT808_*`, whose defaults live in fleet/config.py)."""

    idle_timeout_s: float
    device_zone: timezone
    publish_timeout_s: float
    max_bad_frames: int
    max_connections: int
    resend_after_s: float
    command_poll_s: float  # safety poll for a missed command notification
    batch_fixes: bool = True  # many terminals' fixes in one message on the gateway's topic

    @classmethod
    def from_settings(cls, settings: Any) -> GatewayConfig:
        return cls(
            idle_timeout_s=settings.jt808.idle_timeout_s,
            device_zone=codec.device_zone(settings.jt808.device_utc_offset_min),
            publish_timeout_s=settings.jt808.publish_timeout_s,
            max_bad_frames=settings.jt808.max_bad_frames,
            max_connections=settings.jt808.max_connections,
            resend_after_s=settings.jt808.resend_after_s,
            command_poll_s=settings.jt808.command_poll_s,
            batch_fixes=settings.jt808.batch_fixes,
        )


@dataclass(slots=True)
class Counts:
    """Running totals (read by the metrics endpoint when it is scraped)."""

    connections: int = 0
    frames: int = 0
    locations_acked: int = 0
    locations_pending: int = 0  # location messages awaiting the broker's PUBACK
    bad_frames: int = 0
    bad_by_reason: collections.Counter[str] = field(default_factory=collections.Counter)
    dead_letters_lost: int = 0


class DatabaseDown(Exception):
    pass


class Registry:
    """Terminals, registrations and dead letters in the database."""

    def __init__(self, pool: AsyncConnectionPool, conninfo: str) -> None:
        self.pool = pool
        self.conninfo = conninfo  # the pool's database, for the listening connection
        self._dead: collections.deque[repo.DeadLetter] = collections.deque()
        self._dead_ready = asyncio.Event()
        self.counts: Counts | None = None

    async def _run(self, fn: Callable[[psycopg.AsyncConnection], Awaitable[Any]]) -> Any:
        try:
            async with self.pool.connection(timeout=5.0) as conn:
                return await fn(conn)
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, TimeoutError) as exc:
            text = str(exc).strip()
            raise DatabaseDown(text.splitlines()[0] if text else type(exc).__name__) from exc

    async def terminal(self, phone: str) -> repo.Terminal | None:
        return await self._run(lambda conn: repo.terminal_by_phone(conn, phone))

    async def registered(self, phone: str) -> tuple[repo.Terminal, str] | None:
        return await self._run(lambda conn: repo.registered(conn, phone))

    async def register(self, terminal: repo.Terminal, code: str, info: codec.Register) -> None:
        await self._run(lambda conn: repo.register(conn, terminal, code, info))

    async def deregister(self, phone: str) -> None:
        await self._run(lambda conn: repo.deregister(conn, phone))

    async def open_commands(self, connected: list[tuple[str, bool]]) -> list[repo.Command]:
        return await self._run(lambda conn: repo.open_commands(conn, connected))

    async def queued_phones(self) -> list[str]:
        return await self._run(repo.queued_phones)

    async def listen_commands(self, heard: Callable[[str], None], stop: asyncio.Event) -> None:
        """Call ``heard(phone)`` for every command queued, until ``stop``; on its own
        connection (LISTEN holds it). Reconnects after a failure, and calls
        ``heard("")`` after each (re)connection: what was queued meanwhile went unheard."""
        delay = RECONNECT_MIN_S
        while not stop.is_set():
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True, connect_timeout=5
                )
                async with conn:
                    await repo.listen_commands(conn)
                    delay = RECONNECT_MIN_S
                    heard("")
                    while not stop.is_set():
                        async for note in conn.notifies(timeout=STOP_CHECK_S):
                            heard(note.payload)
            except Exception as exc:  # the safety poll covers the time without them
                log.error("command notifications unavailable (%s); retrying", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, RECONNECT_MAX_S)

    async def command_sent(self, command_id: int, serial: int) -> None:
        await self._run(lambda conn: repo.command_sent(conn, command_id, serial))

    async def command_answered(
        self, phone: str, msg_id: int, serial: int, result: int, reply: bytes
    ) -> int | None:
        return await self._run(
            lambda conn: repo.command_answered(conn, phone, msg_id, serial, result, reply)
        )

    def dead_letter(self, topic: str, reason: str, detail: str, raw: bytes) -> None:
        """Queue a dead letter; a background task writes them (retrying while the
        database is down, up to DEAD_LETTER_QUEUE_MAX, then counted and logged)."""
        if len(self._dead) >= DEAD_LETTER_QUEUE_MAX:
            if self.counts is not None:
                self.counts.dead_letters_lost += 1
            log.error("dead-letter queue full: lost %s from %s (%s)", reason, topic, detail)
            return
        self._dead.append((datetime.now(UTC), topic, reason, detail, raw))
        self._dead_ready.set()

    async def write_dead_letters(self, stop: asyncio.Event) -> None:
        delay = 0.2
        while not (stop.is_set() and not self._dead):
            if not self._dead:
                self._dead_ready.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._dead_ready.wait(), 1.0)
                continue
            rows = [self._dead[i] for i in range(min(DEAD_LETTER_BATCH, len(self._dead)))]
            try:
                await self._run(functools.partial(_insert_dead_letters, rows=rows))
            except DatabaseDown as exc:
                log.error("writing %d dead letters failed (%s); retrying", len(rows), exc)
                if stop.is_set():
                    log.error("stopping with %d dead letters unwritten", len(self._dead))
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.2
            for _ in rows:
                self._dead.popleft()

    @property
    def dead_letters_queued(self) -> int:
        return len(self._dead)


class Gateway:
    def __init__(self, config: GatewayConfig, registry: Registry, publisher: Publisher) -> None:
        self.config = config
        self.registry = registry
        self.publisher = publisher
        # The fixes of one loop turn, from every connection, go out as one message.
        self.batcher = (
            FixBatcher(publisher, wire.gateway_positions_topic(publisher.client_id))
            if config.batch_fixes
            else None
        )
        self.counts = Counts()
        registry.counts = self.counts
        self.sessions: set[Session] = set()
        # phone key -> the terminal's authenticated connection; a terminal that
        # reconnects replaces its old connection (which may linger until it idles out)
        self.current: dict[str, Session] = {}
        # connections with answers queued this event-loop turn (written at its end)
        self.answering: list[Session] = []
        # phone key -> fresh connection: terminals whose commands are to be looked for
        self._due: dict[str, bool] = {}
        self._poll_due = False  # every terminal with a queued command
        self._due_ready = asyncio.Event()

    def flush_answers(self) -> None:
        """One write per connection for the answers of this loop turn (the PUBACKs
        of one broker read acknowledge many locations at once)."""
        answering, self.answering = self.answering, []
        for session in answering:
            session.flush_answers()

    def connection(self) -> Session:
        """A protocol instance for one new TCP connection."""
        return Session(self)

    async def close_idle(self, stop: asyncio.Event) -> None:
        """Close the connections silent for ``idle_timeout_s``: one sweep over them
        every ``1 / IDLE_SWEEPS`` of it, rather than a timer per connection (half a
        kilobyte each)."""
        timeout_s = self.config.idle_timeout_s
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout_s / IDLE_SWEEPS)
            silent_since = loop.time() - timeout_s
            for session in [s for s in self.sessions if s.received_at <= silent_since]:
                if session.open:
                    log.info("%s: nothing for %.0f s, closing", session.who, timeout_s)
                    session.close()

    def commands_due(self, phone: str, *, fresh: bool = False) -> None:
        """Look for the commands of ``phone`` if it is connected here (``fresh``, on
        its authentication: also those sent on an earlier connection and never
        answered); ``phone`` "" looks for every terminal with a queued command."""
        if phone == "":
            self._poll_due = True
        elif phone in self.current:
            self._due[phone] = self._due.get(phone, False) or fresh
        else:
            return
        self._due_ready.set()

    async def send_commands(self, stop: asyncio.Event) -> None:
        """Send the queued commands of the terminals connected here, when they are
        due: a terminal authenticated, a command was queued (the notification of
        ``clearday jt808-command``), or every ``command_poll_s`` in case a
        notification was missed (one query, whatever the number of terminals). An
        idle gateway sends no phone number to the database. A command is marked sent
        (with the frame's serial) before it goes out, so that the answer always
        finds it."""
        listener = asyncio.create_task(self.registry.listen_commands(self.commands_due, stop))
        loop = asyncio.get_running_loop()
        next_poll = loop.time() + self.config.command_poll_s
        while not stop.is_set():
            if not self._due and not self._poll_due:
                self._due_ready.clear()
                wait_s = min(STOP_CHECK_S, max(next_poll - loop.time(), 0.0))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._due_ready.wait(), wait_s)
            if loop.time() >= next_poll:
                self._poll_due = True
            if stop.is_set() or not (self._due or self._poll_due):
                continue
            try:
                await self._send_due_commands()
                if self._poll_due:
                    self._poll_due = False
                    next_poll = loop.time() + self.config.command_poll_s
            except DatabaseDown as exc:
                log.error("commands not sent: database unavailable (%s)", exc)
                await asyncio.sleep(STOP_CHECK_S)
            except Exception:  # one bad command must not stop the others for good
                log.exception("sending commands failed")
                await asyncio.sleep(STOP_CHECK_S)
        await listener

    async def _send_due_commands(self) -> None:
        if self._poll_due:
            for phone in await self.registry.queued_phones():
                if phone in self.current:
                    self._due.setdefault(phone, False)
        due, self._due = self._due, {}
        try:
            connected = [(p, fresh) for p, fresh in due.items() if p in self.current]
            commands = await self.registry.open_commands(connected)
        except BaseException:
            for phone, fresh in due.items():  # looked for again next time
                self._due[phone] = self._due.get(phone, False) or fresh
            raise
        for command in commands:
            session = self.current.get(command.phone)
            if session is None or not session.open:
                continue
            serial = session.next_serial()
            await self.registry.command_sent(command.command_id, serial)
            session.send_command(command, serial)


class Session(asyncio.Protocol):
    """One terminal connection.

    Frames are handled in the order they arrive. Most need no waiting and are handled
    in ``data_received`` itself: a location is decoded, translated and handed to the
    publisher, whose callback sends the acknowledgement once the broker's PUBACK is
    in. A terminal may send its next report before that. Messages that need the
    database (register, auth, logout, the periodic re-check) run in a task, and
    every frame received meanwhile waits behind them in ``backlog``.
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.config = gateway.config
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.frames = codec.FrameReader()
        self.packets: codec.Reassembler | None = None  # made at the first sub-package
        self.phone: str | None = None  # phone key, from the first good frame
        self.phone_digits = ""  # the phone number as its header spells it
        self.terminal: repo.Terminal | None = None  # set once authenticated
        self.positions_topic = ""  # the terminal's topics, set once authenticated
        self.events_topic = ""
        self.item_prefix = b""  # its items in the gateway's batches
        self.responder: codec.Responder | None = None
        self.auth_header: codec.Header | None = None  # how the terminal addresses itself
        self.checked_at = 0.0
        self.serial = 0
        self.bad_in_a_row = 0
        self.alarm_word = 0
        self.open = True
        self.unacked = 0  # locations handed to the publisher, not yet answered
        self.paused = False
        self.answers: list[bytes] = []  # 0x8001 answers waiting for the end of the turn
        self.batch: _Batch | None = None  # location messages waiting for the end of the read
        self.backlog: collections.deque[Frame | FrameError] | None = None
        self.task: asyncio.Task[None] | None = None
        self.loop = asyncio.get_running_loop()
        self.received_at = self.loop.time()

    @property
    def who(self) -> str:
        return f"{self.phone or '?'}@{self.peer}"

    @property
    def topic(self) -> str:
        """Where this connection's dead letters are filed (``dead_letter.topic``)."""
        return f"jt808/{self.phone}" if self.phone else f"jt808/peer/{self.peer}"

    # ------------------------------------------------------------------ connection
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's is not an asyncio.Transport subclass)
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        if len(self.gw.sessions) >= self.config.max_connections:
            log.warning(
                "connection limit %d reached: refusing %s", self.config.max_connections, self.peer
            )
            self.open = False
            self.transport.abort()
            return
        self.gw.sessions.add(self)
        self.gw.counts.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.gw.sessions.discard(self)
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.terminal is not None and self.gw.current.get(self.terminal.phone) is self:
            del self.gw.current[self.terminal.phone]
            # Offline since it was last heard from: a terminal that has meanwhile
            # reconnected to another gateway process said `online` later, and the
            # latest status wins.
            silent_s = self.loop.time() - self.received_at
            self.publish_status("offline", datetime.now(UTC) - timedelta(seconds=silent_s))

    def close(self) -> None:
        """Stop reading and close once what was written is sent."""
        self.open = False
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.received_at = self.loop.time()
        items = self.frames.feed(data)
        if self.backlog is not None:
            self.backlog.extend(items)
            return
        for i, item in enumerate(items):
            waiting = self.step(item)
            if waiting is not None:
                self.publish_batch()
                self.backlog = collections.deque(items[i + 1 :])  # the rest wait behind it
                self.task = asyncio.create_task(self._drain(waiting))
                return
            if not self.open:
                break
        self.publish_batch()
        if not self.open:
            self.close()

    async def _drain(self, first: Awaitable[None]) -> None:
        """Handle frames in order while one of them has to wait (the database)."""
        try:
            await first
            while self.open and self.backlog:
                waiting = self.step(self.backlog.popleft())
                if waiting is not None:
                    self.publish_batch()
                    await waiting
        finally:
            self.backlog = None
            self.publish_batch()
        if not self.open:
            self.close()

    def _hold(self, more: int) -> None:
        """Count locations awaiting the broker; stop reading while too many are."""
        self.unacked += more
        self.gw.counts.locations_pending += more
        if self.transport is None:
            return
        if not self.paused and self.unacked >= MAX_UNACKED_PER_CONNECTION:
            self.paused = True
            self.transport.pause_reading()
        elif self.paused and self.unacked <= MAX_UNACKED_PER_CONNECTION // 2:
            self.paused = False
            if self.open:
                self.transport.resume_reading()

    # ------------------------------------------------------------------ answers
    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def queue_answer(self, data: bytes) -> None:
        """Send at the end of this loop turn, in one write with the turn's others."""
        if not self.answers:
            gw = self.gw
            if not gw.answering:
                self.loop.call_soon(gw.flush_answers)
            gw.answering.append(self)
        self.answers.append(data)

    def flush_answers(self) -> None:
        answers, self.answers = self.answers, []
        self.send(answers[0] if len(answers) == 1 else b"".join(answers))

    def next_serial(self) -> int:
        self.serial = (self.serial + 1) & 0xFFFF
        return self.serial

    def respond(self, header: codec.Header, result: Result) -> None:
        self.send(codec.platform_response(header, result, self.next_serial()))

    def refuse(self, err: FrameError) -> None:
        """Answer (when the header could be read), log and dead-letter a bad frame."""
        self.gw.counts.bad_frames += 1
        self.gw.counts.bad_by_reason[err.reason] += 1
        self.bad_in_a_row += 1
        topic = self.topic
        if err.header is not None and err.reason not in (Reason.NOISE, Reason.OVERSIZE):
            # Answered, and filed under the phone number it names; a bad frame does not
            # decide which terminal this connection is.
            if self.phone is None:
                topic = f"jt808/{err.header.phone_key}"
            self.respond(err.header, codec.result_for(err.reason))
        log.warning("%s: %s: %s", self.who, err.reason, err.detail)
        self.gw.registry.dead_letter(topic, err.reason, err.detail, err.raw)
        if self.bad_in_a_row >= self.config.max_bad_frames:
            log.warning("%s: %d bad frames in a row, closing", self.who, self.bad_in_a_row)
            self.open = False

    def fail(self, frame: Frame, reason: Reason, detail: str, *, keep: bool) -> None:
        """Failure result, then close; ``keep`` dead-letters the frame (it carried data)."""
        log.warning("%s: %s: %s", self.who, reason, detail)
        self.respond(frame.header, Result.FAILURE)
        if keep:
            self.gw.registry.dead_letter(self.topic, reason, detail, frame.raw)
        self.open = False

    # ------------------------------------------------------------------ frames
    def step(self, item: Frame | FrameError) -> Awaitable[None] | None:
        """Handle one frame; what has to wait for the database comes back as an
        awaitable, to be awaited before the next frame."""
        if isinstance(item, FrameError):
            self.refuse(item)
            return None
        self.bad_in_a_row = 0
        self.gw.counts.frames += 1
        h = item.header
        if self.phone is None:
            self.phone, self.phone_digits = h.phone_key, h.phone
        elif h.phone != self.phone_digits and h.phone_key != self.phone:
            self.fail(
                item,
                Reason.NOT_AUTHENTICATED,
                f"phone number {h.phone} on a connection of {self.phone}",
                keep=True,
            )
            return None
        whole = item
        if h.packets or (self.packets is not None and self.packets.incomplete):
            packets = self.packets
            if packets is None:
                packets = self.packets = codec.Reassembler(
                    resend_after_s=self.config.resend_after_s
                )
            now = time.monotonic()
            try:
                joined = packets.add(item, now)
            except FrameError as err:
                self.refuse(err)
                return None
            if packets.incomplete:
                self.request_missing(packets, now)
            if joined is None:
                return None  # more sub-packages to come; answered with the whole message
            whole = joined
        try:
            message = codec.decode_message(whole, self.config.device_zone)
        except FrameError as err:
            self.refuse(err)
            return None
        return self.message(whole, message)

    def request_missing(self, packets: codec.Reassembler, now: float) -> None:
        """Ask again (0x8003) for the packets of a message still missing after
        ``resend_after_s``; checked whenever the connection receives a frame."""
        for missing in packets.overdue(now):
            log.info(
                "%s: message 0x%04X lacks packets %s; asking for them again",
                self.who,
                missing.header.msg_id,
                ", ".join(map(str, missing.indexes)),
            )
            self.send(codec.resend_request(missing, self.next_serial()))

    def message(self, frame: Frame, message: codec.Message) -> Awaitable[None] | None:
        if not self.ready():
            return self._guard(self.slow(frame, message))
        if isinstance(message, codec.Location):
            self.on_locations(frame, (message,))
        elif isinstance(message, codec.LocationBatch):
            self.on_locations(frame, message.locations)
        elif isinstance(message, codec.Heartbeat):
            self.respond(frame.header, Result.OK)
        elif isinstance(message, codec.TerminalResponse):  # it needs no answer
            if message.reply_id in COMMAND_IDS:
                return self._guard(
                    self.on_command_answer(
                        message.reply_id, message.reply_serial, message.result, frame.body
                    )
                )
        elif isinstance(message, codec.LocationReply):
            self.on_locations(frame, (message.location,), answer=False)
            return self._guard(
                self.on_command_answer(
                    codec.MsgId.QUERY_LOCATION, message.reply_serial, Result.OK, frame.body
                )
            )
        else:
            return self._guard(self.slow(frame, message))
        return None

    async def on_command_answer(self, msg_id: int, serial: int, result: int, body: bytes) -> None:
        assert self.terminal is not None
        found = await self.gw.registry.command_answered(
            self.terminal.phone, msg_id, serial, result, body
        )
        if found is None:
            log.info("%s: answer to 0x%04X serial %d matches no command", self.who, msg_id, serial)
        else:
            log.info("%s: command %d answered, result %d", self.who, found, result)

    def send_command(self, command: repo.Command, serial: int) -> None:
        assert self.auth_header is not None
        h = self.auth_header
        self.send(
            codec.encode_frame(command.msg_id, h.phone, serial, command.body, version=h.version)
        )

    def ready(self) -> bool:
        """Authenticated, and the registration was checked recently."""
        return (
            self.terminal is not None
            and time.monotonic() - self.checked_at <= REGISTRATION_RECHECK_S
        )

    async def _guard(self, work: Awaitable[None]) -> None:
        try:
            await work
        except DatabaseDown as exc:
            log.error("%s: database unavailable (%s): closing without an answer", self.who, exc)
            self.open = False

    async def slow(self, frame: Frame, message: codec.Message) -> None:
        """Messages that need the database, and anything before authentication."""
        if isinstance(message, codec.Register):
            await self.on_register(frame, message)
            return
        if isinstance(message, codec.Auth):
            await self.on_auth(frame, message)
            return
        if self.terminal is None:
            is_data = isinstance(message, (codec.Location, codec.LocationBatch))
            self.fail(
                frame,
                Reason.NOT_AUTHENTICATED,
                f"message 0x{frame.header.msg_id:04X} before authentication",
                keep=is_data,
            )
            return
        if not self.ready() and not await self.still_registered(frame):
            return
        if isinstance(message, codec.Logout):
            await self.gw.registry.deregister(self.terminal.phone)
            log.info("%s: logged out (registration deleted)", self.who)
            self.respond(frame.header, Result.OK)
            self.open = False
            return
        follow_up = self.message(frame, message)
        if follow_up is not None:
            await follow_up

    async def on_register(self, frame: Frame, info: codec.Register) -> None:
        h = frame.header
        terminal = await self.gw.registry.terminal(h.phone_key)
        if terminal is None:
            log.warning(
                "%s: registration refused: no active truck has jt808_phone %s",
                self.who,
                h.phone_key,
            )
            self.gw.registry.dead_letter(
                self.topic,
                Reason.UNKNOWN_TERMINAL,
                f"no active truck has jt808_phone {h.phone_key}",
                frame.raw,
            )
            self.send(
                codec.register_response(
                    h, codec.RegisterResult.NO_SUCH_TERMINAL, "", self.next_serial()
                )
            )
            self.open = False
            return
        code = secrets.token_urlsafe(AUTH_CODE_BYTES)
        await self.gw.registry.register(terminal, code, info)
        log.info("%s: registered for truck %s", self.who, terminal.truck_id)
        self.send(codec.register_response(h, codec.RegisterResult.OK, code, self.next_serial()))

    async def on_auth(self, frame: Frame, auth: codec.Auth) -> None:
        found = await self.gw.registry.registered(frame.header.phone_key)
        if found is None or not hmac.compare_digest(
            found[1].encode(), auth.code.encode("utf-8", "replace")
        ):
            self.fail(
                frame,
                Reason.NOT_AUTHENTICATED,
                "unknown terminal, not registered, or wrong auth code",
                keep=False,
            )
            return
        self.terminal = found[0]
        self.positions_topic = wire.positions_topic(self.terminal.terminal_id)
        self.events_topic = wire.events_topic(self.terminal.terminal_id)
        self.item_prefix = wire.gateway_item_prefix(self.terminal.terminal_id)
        self.responder = codec.Responder(frame.header)
        self.auth_header = frame.header
        self.checked_at = time.monotonic()
        older = self.gw.current.get(self.terminal.phone)
        self.gw.current[self.terminal.phone] = self
        if older is not None and older is not self:
            log.info("%s: reconnected; closing its previous connection %s", self.who, older.peer)
            older.close()
        self.respond(frame.header, Result.OK)
        self.publish_status("online")
        self.gw.commands_due(self.terminal.phone, fresh=True)

    async def still_registered(self, frame: Frame) -> bool:
        assert self.terminal is not None
        found = await self.gw.registry.registered(self.terminal.phone)
        if found is None or found[0] != self.terminal:
            self.fail(
                frame,
                Reason.UNKNOWN_TERMINAL,
                "the terminal is no longer registered to an active truck",
                keep=True,
            )
            return False
        self.checked_at = time.monotonic()
        return True

    def on_locations(
        self, frame: Frame, locations: Sequence[codec.Location], *, answer: bool = True
    ) -> None:
        """Take a location message into this read's batch: the batch goes to the
        broker as one message (:meth:`publish_batch`), and each of its frames that
        wants an answer (``answer``: not a 0x0201 reply) is acknowledged once the
        broker has acknowledged it."""
        events, self.alarm_word = translate.alarm_events(locations, self.alarm_word)
        batch = self.batch
        if batch is None:
            batch = self.batch = _Batch()
        batch.messages += 1
        batch.locations.extend(locations)
        batch.events.extend(events)
        if answer:
            batch.frames.append(frame)
            batch.answered_locations += len(locations)

    def publish_batch(self) -> None:
        """Hand this read's fixes to the gateway's batcher (or, batching off, publish
        them on the truck's topic) and its alarm events on the truck's topic; the
        frames are acknowledged once every message carrying them has its PUBACK."""
        batch, self.batch = self.batch, None
        if batch is None:
            return
        locations = batch.locations
        if len(locations) == 1:  # the common read: one report
            fix = translate.fix_of(locations[0])
            fixes = [] if fix is None else [fix]
        else:
            fixes = translate.fixes_of(locations)
        batcher = self.gw.batcher
        messages = self._truck_messages(fixes) if fixes and batcher is None else []
        if batch.events:
            messages.append((self.events_topic, wire.encode_events(batch.events)))
        batched = bool(fixes) and batcher is not None
        parts = len(messages) + batched
        if not parts:  # reports without a fix and without a new alarm: nothing to store
            self.acknowledge(batch)
            return
        self._hold(batch.messages)
        done: Done = functools.partial(self._published, batch)
        if parts > 1:
            done = Join(parts, done)
        if batched:
            assert batcher is not None
            prefix = self.item_prefix
            batcher.add([wire.encode_gateway_fix(prefix, f) for f in fixes], done)
        for topic, payload in messages:
            self.gw.publisher.publish(topic, payload, done)

    def _truck_messages(self, fixes: list[wire.Fix]) -> list[tuple[str, bytes]]:
        """Fixes on the truck's own topic: one as an object, several as arrays."""
        topic = self.positions_topic
        if len(fixes) == 1:
            return [(topic, wire.encode_fixes(fixes[0]))]
        return [(topic, wire.encode_fixes(chunk)) for chunk in translate.chunks(fixes)]

    def _published(self, batch: _Batch, ok: bool) -> None:
        self._hold(-batch.messages)
        if not ok:
            log.warning(
                "%s: broker did not acknowledge; %d locations not acknowledged",
                self.who,
                len(batch.locations),
            )
            # The terminal sends them again: their alarm bits must then count as new.
            self.alarm_word = 0
            return
        self.acknowledge(batch)

    def acknowledge(self, batch: _Batch) -> None:
        self.gw.counts.locations_acked += batch.answered_locations
        responder = self.responder
        if responder is None:
            return
        for frame in batch.frames:
            msg_id = frame.header.msg_id
            for serial in frame.part_serials or (frame.header.serial,):
                self.queue_answer(responder.ok(serial, msg_id, self.next_serial()))

    def publish_status(self, state: wire.TerminalState, at: datetime | None = None) -> None:
        assert self.terminal is not None
        who = self.who

        def done(ok: bool) -> None:
            if not ok:
                log.warning("%s: status %s not acknowledged by the broker", who, state)

        self.gw.publisher.publish(
            wire.status_topic(self.terminal.terminal_id),
            wire.encode_status(state, at or datetime.now(UTC)),
            done,
            retain=True,
        )


class _Batch:
    """Location messages of one connection that go to the broker as one message."""

    __slots__ = ("answered_locations", "events", "frames", "locations", "messages")

    def __init__(self) -> None:
        self.messages = 0
        self.locations: list[codec.Location] = []
        self.events: list[wire.Event] = []
        self.frames: list[Frame] = []  # those to acknowledge
        self.answered_locations = 0  # the locations those frames carry


async def _insert_dead_letters(
    conn: psycopg.AsyncConnection, *, rows: list[repo.DeadLetter]
) -> None:
    await repo.insert_dead_letters(conn, rows)


async def serve(
    gateway: Gateway,
    *,
    host: str,
    port: int,
    stop: asyncio.Event,
    started: Callable[[int], None] | None = None,
    reuse_port: bool = False,
) -> None:
    """Run until ``stop`` is set; ``started`` gets the bound port."""
    writer_task = asyncio.create_task(gateway.registry.write_dead_letters(stop))
    commands_task = asyncio.create_task(gateway.send_commands(stop))
    idle_task = asyncio.create_task(gateway.close_idle(stop))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        gateway.connection, host, port, backlog=4096, reuse_port=reuse_port or None
    )
    bound = server.sockets[0].getsockname()[1]
    log.info("JT/T 808 gateway listening on %s:%d", host, bound)
    if started is not None:
        started(bound)
    async with server:
        await stop.wait()
        server.close()
        for session in list(gateway.sessions):
            session.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 10)
    await gateway.publisher.wait_idle(STOP_DRAIN_S)  # the `offline` statuses
    await writer_task
    await commands_task
    await idle_task
