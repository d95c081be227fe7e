"""The gateway's MQTT side: QoS 1 publishing on the gateway's own event loop.

Every location a terminal sends goes out in a PUBLISH (a batch of many terminals'
fixes) whose PUBACK decides whether the terminal gets its acknowledgement, so this is
the gateway's hot path. It is written for that, over a plain asyncio connection
(MQTT 5):

- no thread and no future per message: ``publish`` takes a callback, called once
  with True (PUBACK with a success reason code) or False (a failure code, 0x10 "no
  matching subscribers" — the broker dropped the message —, a timeout, a lost
  connection, or no connection at all);
- the PUBLISH packets of one event-loop turn go out in one write, and the PUBACKs
  that arrive together are handled in one read;
- at most the broker's Receive Maximum in flight; beyond it messages wait in order,
  up to ``MAX_WAITING`` (then they fail at once: the terminal keeps them);
- a packet id whose PUBACK timed out is not reused on that connection, so a late
  PUBACK can never acknowledge another message;
- reconnects by itself (1 s doubling to 10 s); gives up on a refused account.

Nothing is queued across a disconnection: what was in flight fails, and the
terminals send it again (they keep what was not acknowledged).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleet.config import MqttTarget
from ingest import mqttpacket as mp
from ingest.mqtt import FATAL_CONNECT_CODES

log = logging.getLogger("clearday.jt808.broker")

KEEPALIVE_S = 30
CONNECT_TIMEOUT_S = 10.0
RECONNECT_MIN_DELAY_S = 1.0
RECONNECT_MAX_DELAY_S = 10.0
TICK_S = 0.1  # how often timeouts and keepalive are checked
MAX_PACKET_ID = 65_535
DEFAULT_RECEIVE_MAXIMUM = MAX_PACKET_ID - 1  # MQTT 5 says 65,535 when the CONNACK names none
MAX_WAITING = 100_000  # messages waiting for a free in-flight slot
TOPIC_CACHE_MAX = 100_000
NO_MATCHING_SUBSCRIBERS = 0x10
FIRST_FAILURE_CODE = 0x80

Done = Callable[[bool], None]


class BrokerRefused(RuntimeError):
    """The broker refused the gateway's account: retrying cannot help."""


@dataclass(slots=True)
class _Message:
    topic: bytes  # mqttpacket.string(topic)
    payload: bytes
    retain: bool
    done: Done
    deadline: float  # time.monotonic()
    sent_at: float = 0.0


class Join:
    """Calls ``done`` once with whether all of ``count`` publishes succeeded."""

    __slots__ = ("done", "left", "ok")

    def __init__(self, count: int, done: Done) -> None:
        self.left, self.ok, self.done = count, True, done

    def __call__(self, ok: bool) -> None:
        self.ok = self.ok and ok
        self.left -= 1
        if self.left == 0:
            self.done(self.ok)


class _Link(asyncio.Protocol):
    """One connection to the broker; hands whole packets to its publisher."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self.transport: asyncio.Transport | None = None
        self.splitter = mp.PacketSplitter()
        loop = asyncio.get_running_loop()
        self.connack: asyncio.Future[tuple[int, Properties | None]] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.received_at = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's is not an asyncio.Transport subclass)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received_at = time.monotonic()
        try:
            packets = self.splitter.feed(data)
        except ValueError as exc:
            log.error("unreadable data from the broker (%s); reconnecting", exc)
            if self.transport is not None:
                self.transport.abort()
            return
        for first, body in packets:
            kind = first & 0xF0
            if kind == mp.PUBACK:
                self.publisher._acked(body)
            elif kind == mp.CONNACK:
                self._on_connack(body)
            elif kind == mp.DISCONNECT:
                code = body[0] if body else 0
                log.warning("the broker disconnected the gateway (reason 0x%02X)", code)

    def _on_connack(self, body: bytes) -> None:
        if self.connack.done() or len(body) < 2:
            return
        props: Properties | None = None
        if len(body) > 2:
            try:
                props, _ = Properties(PacketTypes.CONNACK).unpack(body[2:])
            except Exception:  # properties are advice: a bad one must not stop us
                log.warning("could not read the CONNACK properties", exc_info=True)
        self.connack.set_result((body[1], props))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connack.done():
            self.connack.set_exception(ConnectionError("closed before CONNACK"))
        if not self.closed.done():
            self.closed.set_result(None)


@dataclass
class _Session:
    """What one broker connection allows, from its CONNACK."""

    link: _Link
    receive_maximum: int = DEFAULT_RECEIVE_MAXIMUM
    max_packet_bytes: int = 0  # 0: no limit named
    keepalive_s: int = KEEPALIVE_S
    inflight: dict[int, _Message] = field(default_factory=dict)
    # ids whose PUBACK timed out: never reused on this connection
    stale: set[int] = field(default_factory=set)
    next_id: int = 1
    sent_at: float = 0.0

    @property
    def has_room(self) -> bool:
        """Below the broker's Receive Maximum. A message whose PUBACK timed out still
        counts: for the broker it is in flight until it answers."""
        return len(self.inflight) + len(self.stale) < self.receive_maximum

    def take_id(self) -> int:
        """The next packet id neither in flight nor stale (there is a free one while
        ``has_room``: the Receive Maximum is below 65,535)."""
        mid = self.next_id
        while mid in self.inflight or mid in self.stale:
            mid = mid % MAX_PACKET_ID + 1
        self.next_id = mid % MAX_PACKET_ID + 1
        return mid


class Publisher:
    def __init__(
        self,
        target: MqttTarget,
        client_id: str,
        *,
        timeout_s: float = 10.0,
        keepalive_s: int = KEEPALIVE_S,
    ) -> None:
        self.target = target
        self.client_id = client_id
        self.timeout_s = timeout_s
        self.keepalive_s = keepalive_s
        self.refused: str | None = None
        self.published = 0  # acknowledged by the broker
        self.failed = 0
        self.latency_observer: Callable[[float], None] | None = None  # PUBACK delay, seconds
        self._session: _Session | None = None
        self._waiting: collections.deque[_Message] = collections.deque()
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._topics: dict[str, bytes] = {}
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def connected(self) -> bool:
        return self._session is not None

    @property
    def pending(self) -> int:
        """Messages sent or waiting whose PUBACK has not come yet."""
        s = self._session
        return len(self._waiting) + (len(s.inflight) if s is not None else 0)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(self._run(), name="mqtt-connection"),
            asyncio.create_task(self._tick(), name="mqtt-timeouts"),
        ]

    async def wait_connected(self, timeout_s: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._session is None:
            if self.refused is not None:
                raise BrokerRefused(self.refused)
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until nothing is pending (before stopping)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.pending and self._session is not None and loop.time() < deadline:
            await asyncio.sleep(0.05)
        return not self.pending

    async def close(self) -> None:
        self._closing = True
        session = self._session
        if session is not None and session.link.transport is not None:
            self.flush()
            session.link.transport.write(mp.DISCONNECT_PACKET)
            session.link.transport.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._lost()

    async def _run(self) -> None:
        delay = RECONNECT_MIN_DELAY_S
        down_logged = False
        loop = asyncio.get_running_loop()
        while not self._closing:
            try:
                link = await self._connect(loop)
            except BrokerRefused as exc:
                self.refused = str(exc)
                log.error("broker refused the gateway's account: %s", exc)
                return
            except (OSError, TimeoutError, ConnectionError) as exc:
                if not down_logged:
                    log.warning(
                        "cannot reach the broker at %s (%s); retrying", self.target.redacted, exc
                    )
                    down_logged = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_DELAY_S)
                continue
            delay, down_logged = RECONNECT_MIN_DELAY_S, False
            log.info("connected to %s as %s", self.target.redacted, self.client_id)
            self._send_waiting()
            await link.closed
            self._lost()
            if not self._closing:
                log.warning("lost the broker; locations are not acknowledged until it is back")

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Link:
        ctx = ssl.create_default_context() if self.target.tls else None
        _, link = await asyncio.wait_for(
            loop.create_connection(
                lambda: _Link(self),
                self.target.host,
                self.target.port,
                ssl=ctx,
                server_hostname=self.target.host if ctx else None,
            ),
            CONNECT_TIMEOUT_S,
        )
        assert link.transport is not None
        link.transport.write(
            mp.connect(
                self.client_id,
                username=self.target.username,
                password=self.target.password,
                keepalive_s=self.keepalive_s,
            )
        )
        try:
            code, props = await asyncio.wait_for(asyncio.shield(link.connack), CONNECT_TIMEOUT_S)
        except BaseException:
            link.transport.abort()
            raise
        if code >= FIRST_FAILURE_CODE:
            link.transport.close()
            if code in FATAL_CONNECT_CODES:
                raise BrokerRefused(f"{self.target.redacted}: {FATAL_CONNECT_CODES[code]}")
            raise ConnectionError(f"CONNACK reason 0x{code:02X}")
        session = _Session(link, keepalive_s=self.keepalive_s)
        if props is not None:
            session.receive_maximum = min(
                getattr(props, "ReceiveMaximum", DEFAULT_RECEIVE_MAXIMUM), MAX_PACKET_ID - 1
            )
            session.max_packet_bytes = getattr(props, "MaximumPacketSize", 0)
            session.keepalive_s = getattr(props, "ServerKeepAlive", self.keepalive_s)
        session.sent_at = time.monotonic()
        self._session = session
        return link

    def _lost(self) -> None:
        """The connection is gone: everything in flight or waiting fails."""
        session, self._session = self._session, None
        self._out.clear()
        failed = list(session.inflight.values()) if session is not None else []
        if session is not None:
            session.inflight.clear()
        failed.extend(self._waiting)
        self._waiting.clear()
        for message in failed:
            self._finish(message, False)

    # ------------------------------------------------------------------ publishing
    def publish(self, topic: str, payload: bytes, done: Done, *, retain: bool = False) -> None:
        """Send one QoS 1 message; ``done(ok)`` is called exactly once (at once with
        False when there is no connection or the wait queue is full)."""
        session = self._session
        if session is None or len(self._waiting) >= MAX_WAITING:
            self.failed += 1
            done(False)
            return
        encoded = self._topics.get(topic)
        if encoded is None:
            if len(self._topics) >= TOPIC_CACHE_MAX:
                self._topics.clear()
            encoded = self._topics[topic] = mp.string(topic)
        message = _Message(encoded, payload, retain, done, time.monotonic() + self.timeout_s)
        if self._waiting or not session.has_room:
            self._waiting.append(message)
        else:
            self._send(session, message)

    async def publish_wait(self, topic: str, payload: bytes, *, retain: bool = False) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def done(ok: bool) -> None:
            if not future.done():
                future.set_result(ok)

        self.publish(topic, payload, done, retain=retain)
        return await future

    def _send(self, session: _Session, message: _Message) -> None:
        mid = session.take_id()
        data = mp.publish_qos1(message.topic, mid, message.payload, retain=message.retain)
        if session.max_packet_bytes and len(data) > session.max_packet_bytes:
            log.error(
                "a message of %d bytes is over the broker's maximum packet size %d",
                len(data),
                session.max_packet_bytes,
            )
            self._finish(message, False)
            return
        message.sent_at = time.monotonic()
        session.inflight[mid] = message
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write the PUBLISH packets built so far (otherwise at the end of the loop turn)."""
        self._flush_scheduled = False
        session = self._session
        if not self._out or session is None or session.link.transport is None:
            self._out.clear()
            return
        data = b"".join(self._out)
        self._out.clear()
        session.link.transport.write(data)
        session.sent_at = time.monotonic()

    def _send_waiting(self) -> None:
        session = self._session
        while self._waiting and session is not None and session.has_room:
            self._send(session, self._waiting.popleft())

    def _acked(self, body: bytes) -> None:
        session = self._session
        if session is None or len(body) < 2:
            return
        mid = (body[0] << 8) | body[1]
        code = body[2] if len(body) > 2 else 0
        message = session.inflight.pop(mid, None)
        if message is None:
            if mid in session.stale:  # a PUBACK after its timeout: the id is free again
                session.stale.discard(mid)
                self._send_waiting()
            return
        ok = code < FIRST_FAILURE_CODE and code != NO_MATCHING_SUBSCRIBERS
        if not ok:
            log.warning("the broker refused a message (reason 0x%02X)", code)
        elif self.latency_observer is not None:
            self.latency_observer(time.monotonic() - message.sent_at)
        self._finish(message, ok)
        if self._waiting:
            self._send_waiting()

    def _finish(self, message: _Message, ok: bool) -> None:
        if ok:
            self.published += 1
        else:
            self.failed += 1
        try:
            message.done(ok)
        except Exception:  # one caller's bug must not stop the acknowledgements
            log.exception("a publish callback failed")

    # ------------------------------------------------------------------ timeouts, keepalive
    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self._expire(time.monotonic())
            except Exception:
                log.exception("publisher tick failed")

    def _expire(self, now: float) -> None:
        while self._waiting and self._waiting[0].deadline <= now:
            self._finish(self._waiting.popleft(), False)
        session = self._session
        if session is None:
            return
        # in flight in sending order, so the expired ones come first
        expired = []
        for mid, message in session.inflight.items():
            if message.deadline > now:
                break
            expired.append(mid)
        for mid in expired:
            session.stale.add(mid)
            self._finish(session.inflight.pop(mid), False)
        if expired:
            log.warning("%d messages got no PUBACK within %.1f s", len(expired), self.timeout_s)
            self._send_waiting()
        transport = session.link.transport
        if transport is None or session.keepalive_s <= 0:
            return
        if now - session.link.received_at > 1.5 * session.keepalive_s + CONNECT_TIMEOUT_S:
            log.warning(
                "the broker has been silent for %.0f s; reconnecting",
                now - session.link.received_at,
            )
            transport.abort()
        elif now - session.sent_at > session.keepalive_s / 2:
            transport.write(mp.PINGREQ_PACKET)
            session.sent_at = now
