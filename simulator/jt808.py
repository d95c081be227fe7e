"""A simulated JT/T 808 terminal: registers, authenticates, reports locations over
real TCP, and keeps every location the platform has not acknowledged (0x8001 result
0) to upload it again as a blind-zone batch (0x0704 type 1), as real terminals do.

Used by `clearday simulate day --protocol jt808`, the integration tests and
bench/jt808.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any

from ingest import wire
from ingest.jt808 import codec
from ingest.jt808.codec import MsgId

ANSWER_TIMEOUT_S = 15.0
BATCH_MAX_LOCATIONS = 20  # a 0x0704 of 20 reports stays in one 1023-byte packet

_LOAD_BITS = {"empty": 0b00, "half": 0b01, "full": 0b11}


def location_of(fix: wire.Fix, *, alarm: int = 0) -> codec.Location:
    """The 0x0200 report a JT/T 808 terminal would send for ``fix``."""
    status = codec.Status.LOCATED
    if fix.ignition:
        status |= codec.Status.ACC_ON
    status |= _LOAD_BITS.get(fix.load_state or "", 0) << codec.Status.LOAD_SHIFT
    extras: tuple[tuple[int, bytes], ...] = ()
    if fix.odometer_km is not None:
        extras = ((codec.EXTRA_MILEAGE, struct.pack(">I", round(fix.odometer_km * 10))),)
    return codec.Location(
        alarm=alarm,
        status=status,
        lat=round(fix.lat, 6),
        lon=round(fix.lon, 6),
        altitude_m=0,
        speed_kmh=round(fix.speed_kmh or 0.0, 1),
        heading_deg=round(fix.heading_deg or 0.0) % 360,
        recorded_at=fix.recorded_at.replace(microsecond=0),
        extras=extras,
    )


class Refused(RuntimeError):
    """The platform refused registration or authentication."""


@dataclass
class Jt808Terminal:
    host: str
    port: int
    phone: str  # digits
    zone: timezone = codec.GMT8
    version: int | None = None  # 1 for a 2019 terminal
    auth_code: str | None = None
    unacked: list[codec.Location] = field(default_factory=list)
    acked: list[codec.Location] = field(default_factory=list)
    # platform commands received (message id, body), each answered: 0x8103 with a
    # 0x0001 of this result, 0x8201 with a 0x0201 of the latest location reported
    commands: list[tuple[int, bytes]] = field(default_factory=list)
    parameter_result: int = codec.Result.OK

    def __post_init__(self) -> None:
        self._serial = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._answers: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self._pump: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    def _next_serial(self) -> int:
        self._serial = (self._serial + 1) & 0xFFFF
        return self._serial

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._pump = asyncio.create_task(self._read_answers(self._reader))

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(BaseException):
                await self._pump
        self._writer = None

    async def _read_answers(self, reader: asyncio.StreamReader) -> None:
        frames = codec.FrameReader()
        try:
            while data := await reader.read(65536):
                for item in frames.feed(data):
                    if isinstance(item, codec.Frame) and item.header.msg_id in _COMMANDS:
                        self._answer_command(item)
                    elif isinstance(item, codec.Frame) and len(item.body) >= 3:
                        (reply_serial,) = struct.unpack_from(">H", item.body)
                        future = self._answers.pop(reply_serial, None)
                        if future is not None and not future.done():
                            future.set_result((item.header.msg_id, item.body))
        except (ConnectionError, OSError):
            pass
        finally:
            for future in self._answers.values():
                if not future.done():
                    future.set_exception(ConnectionError("connection closed"))
            self._answers.clear()

    def _answer_command(self, frame: codec.Frame) -> None:
        h = frame.header
        self.commands.append((h.msg_id, frame.body))
        latest = max(self.acked + self.unacked, key=lambda x: x.recorded_at, default=None)
        if h.msg_id == MsgId.QUERY_LOCATION and latest is not None:
            reply = MsgId.LOCATION_REPLY, codec.encode_location_reply(h.serial, latest, self.zone)
        else:
            result = self.parameter_result if h.msg_id == MsgId.SET_PARAMETERS else 1
            reply = (
                MsgId.TERMINAL_RESPONSE,
                codec.encode_terminal_response(h.serial, h.msg_id, result),
            )
        if self._writer is not None:
            self._writer.write(
                codec.encode_frame(
                    reply[0], self.phone, self._next_serial(), reply[1], version=self.version
                )
            )

    async def request(
        self, msg_id: int, body: bytes = b"", *, timeout_s: float = ANSWER_TIMEOUT_S
    ) -> tuple[int, bytes]:
        """Send one message and wait for the platform's answer to it."""
        if self._writer is None:
            raise ConnectionError("not connected")
        serial = self._next_serial()
        future: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._answers[serial] = future
        self._writer.write(
            codec.encode_frame(msg_id, self.phone, serial, body, version=self.version)
        )
        try:
            return await asyncio.wait_for(future, timeout_s)
        finally:
            self._answers.pop(serial, None)

    async def register(self, plate: str = "皖A00000") -> str:
        info = codec.Register(34, 100, "CLRDY", "SIM-808", self.phone[-7:], 2, plate)
        edition = 2019 if self.version is not None else 2013
        _, body = await self.request(MsgId.REGISTER, codec.encode_register(info, edition=edition))
        result = body[2]
        if result != codec.RegisterResult.OK:
            raise Refused(f"registration of {self.phone} refused with result {result}")
        self.auth_code = body[3:].decode("gbk")
        return self.auth_code

    async def authenticate(self) -> None:
        if self.auth_code is None:
            raise Refused("register first")
        edition = 2019 if self.version is not None else 2013
        _, body = await self.request(
            MsgId.AUTH, codec.encode_auth(codec.Auth(self.auth_code), edition=edition)
        )
        if body[4] != codec.Result.OK:
            raise Refused(f"authentication of {self.phone} refused with result {body[4]}")

    async def login(self) -> None:
        """Connect, register if needed, authenticate."""
        await self.connect()
        if self.auth_code is None:
            await self.register()
        await self.authenticate()

    async def heartbeat(self) -> bool:
        _, body = await self.request(MsgId.HEARTBEAT)
        return body[4] == codec.Result.OK

    async def report(self, loc: codec.Location, *, timeout_s: float = ANSWER_TIMEOUT_S) -> bool:
        """One 0x0200; True once acknowledged with result 0, else kept for later."""
        self.unacked.append(loc)
        try:
            _, body = await self.request(
                MsgId.LOCATION, codec.encode_location(loc, self.zone), timeout_s=timeout_s
            )
        except (TimeoutError, ConnectionError, OSError):
            return False
        if body[4] != codec.Result.OK:
            return False
        self.unacked.remove(loc)
        self.acked.append(loc)
        return True

    async def upload_unacked(self, *, timeout_s: float = ANSWER_TIMEOUT_S) -> bool:
        """Send what was not acknowledged as 0x0704 blind-zone batches."""
        while self.unacked:
            batch = self.unacked[:BATCH_MAX_LOCATIONS]
            try:
                _, body = await self.request(
                    MsgId.LOCATION_BATCH,
                    codec.encode_batch(batch, self.zone, kind=1),
                    timeout_s=timeout_s,
                )
            except (TimeoutError, ConnectionError, OSError):
                return False
            if body[4] != codec.Result.OK:
                return False
            del self.unacked[: len(batch)]
            self.acked.extend(batch)
        return True


_LINK_ERRORS = (ConnectionError, OSError, TimeoutError, Refused)
_COMMANDS = (MsgId.SET_PARAMETERS, MsgId.QUERY_LOCATION)


async def online(terminal: Jt808Terminal, *, retry_s: float = 0.5) -> None:
    """Connected, authenticated, and what was kept uploaded: retried until it is."""
    while not terminal.connected:
        try:
            await terminal.login()
            if not await terminal.upload_unacked():
                await terminal.close()
        except _LINK_ERRORS:
            await terminal.close()
        if not terminal.connected:
            await asyncio.sleep(retry_s)


async def drive(
    terminal: Jt808Terminal,
    locations: Iterable[codec.Location],
    *,
    retry_s: float = 0.5,
    timeout_s: float = ANSWER_TIMEOUT_S,
) -> None:
    """Report every location; whatever is not acknowledged is kept and uploaded again
    after a reconnect, until everything is acknowledged."""
    for loc in locations:
        await online(terminal, retry_s=retry_s)
        if not await terminal.report(loc, timeout_s=timeout_s):
            await terminal.close()  # no answer: start afresh on the next report
    while terminal.unacked:
        await online(terminal, retry_s=retry_s)
        if not await terminal.upload_unacked(timeout_s=timeout_s):
            await terminal.close()
            await asyncio.sleep(retry_s)


# --------------------------------------------------------------------------- the fleet


@dataclass(slots=True)
class Jt808Counts:
    reported: int = 0  # locations handed to a terminal
    acked: int = 0  # acknowledged by the platform
    unacked: int = 0  # still kept by a terminal at close


class Jt808Fleet:
    """A simulator ``Sink`` for the trucks whose terminals speak JT/T 808: each is a
    TCP connection to the gateway, fed in order by its own task on a background event
    loop. Fixes go out as 0x0200 (a blind-zone array as 0x0704 type 1); ``online``
    connects and authenticates, ``offline`` and ``drop`` close the connection (the
    gateway publishes the terminal's status). JT/T 808 has no bin-lift or weighbridge
    message, so events go to ``other`` (an MQTT sink: a separate sensor), as do the
    emissions of trucks not in ``phones``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        phones: dict[str, str],
        other: Any,
        *,
        zone: timezone = codec.GMT8,
    ) -> None:
        self.host, self.port, self.phones, self.other, self.zone = host, port, phones, other, zone
        self.counts = Jt808Counts()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._queues: dict[str, asyncio.Queue[tuple[str, list[codec.Location]] | None]] = {}
        self._terminals: dict[str, Jt808Terminal] = {}
        self._workers: list[concurrent.futures.Future[None]] = []

    def _queue(self, terminal_id: str) -> asyncio.Queue[tuple[str, list[codec.Location]] | None]:
        queue = self._queues.get(terminal_id)
        if queue is None:
            term = Jt808Terminal(self.host, self.port, self.phones[terminal_id], zone=self.zone)
            self._terminals[terminal_id] = term

            async def make() -> asyncio.Queue[tuple[str, list[codec.Location]] | None]:
                return asyncio.Queue()

            queue = asyncio.run_coroutine_threadsafe(make(), self._loop).result()
            self._queues[terminal_id] = queue
            self._workers.append(
                asyncio.run_coroutine_threadsafe(self._work(term, queue), self._loop)
            )
        return queue

    def _put(self, terminal_id: str, item: tuple[str, list[codec.Location]] | None) -> None:
        queue = self._queue(terminal_id)
        self._loop.call_soon_threadsafe(queue.put_nowait, item)

    def send(self, em: Any) -> None:
        if em.terminal_id not in self.phones or em.kind == "events":
            if self.other is not None:
                self.other.send(em)
            return
        if em.kind == "fixes":
            self.counts.reported += len(em.fixes)
            self._put(em.terminal_id, ("report", [location_of(f) for f in em.fixes]))
        elif em.kind == "online":
            self._put(em.terminal_id, ("online", []))
        else:  # offline, drop
            self._put(em.terminal_id, ("close", []))

    async def _work(
        self, term: Jt808Terminal, queue: asyncio.Queue[tuple[str, list[codec.Location]] | None]
    ) -> None:
        while (item := await queue.get()) is not None:
            what, locations = item
            if what == "close":
                await term.close()
                continue
            await online(term)
            if what != "report":
                continue
            if len(locations) == 1:
                ok = await term.report(locations[0])
            else:
                term.unacked.extend(locations)
                ok = await term.upload_unacked()
            if not ok:
                await term.close()
        while term.unacked:  # the day is over: upload what was kept
            await online(term)
            if not await term.upload_unacked():
                await term.close()
                await asyncio.sleep(0.5)
        await term.close()

    def close(self, timeout_s: float = 60.0) -> Jt808Counts:
        for terminal_id in list(self._queues):
            self._put(terminal_id, None)
        concurrent.futures.wait(self._workers, timeout=timeout_s)
        self.counts.acked = sum(len(t.acked) for t in self._terminals.values())
        self.counts.unacked = sum(len(t.unacked) for t in self._terminals.values())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if self.other is not None:
            self.other.close()
        return self.counts
