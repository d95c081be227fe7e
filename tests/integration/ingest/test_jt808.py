"""JT/T 808 terminals over real TCP through the gateway, a real Mosquitto, the real
ingestor and PostgreSQL."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as paho
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from fleet import db, importer
from fleet.config import MqttTarget, Settings
from fleet.devservers import PrivateMosquitto, free_port, free_port_run
from ingest import wire
from ingest.jt808 import codec, repo
from ingest.jt808.codec import MsgId
from ingest.jt808.service import Instance, loop_runner, run_async
from simulator.city import generate, jt808_phone_for
from simulator.faults import Fault
from simulator.jt808 import Jt808Fleet, Jt808Terminal, drive
from simulator.mqtt import MqttFleet
from simulator.plans import greedy_plan
from simulator.trucks import DaySpec, SimDay, TerminalConfig
from simulator.trucks import run as sim_run
from tests.conftest import PgServer
from tests.integration.ingest.conftest import RunningIngestor
from tests.integration.ingest.support import ROOT, rows, scalar, wait_for
from tests.settings import flat_settings


def phone(i: int) -> str:
    return f"1391234{i:04d}"


@pytest.fixture
def jt808_fleet(fleet_url: str) -> str:
    """Trucks T0..T9 carry JT/T 808 terminals with phone numbers 13912340000 + i."""
    with psycopg.connect(fleet_url) as conn:
        for i in range(10):
            conn.execute(
                "UPDATE truck SET jt808_phone = %s WHERE truck_id = %s", (phone(i), f"T{i}")
            )
    return fleet_url


class GatewayThread:
    """The gateway in-process, on its own event loop."""

    def __init__(self, settings: Settings, instance: Instance | None = None) -> None:
        self.settings = settings
        self.instance = instance or Instance()
        self.port = 0
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.stop_event = asyncio.Event()

            def started(port: int) -> None:
                self.port = port
                self.ready.set()

            await run_async(
                self.settings,
                host="127.0.0.1",
                port=0,
                stop=self.stop_event,
                started=started,
                instance=self.instance,
            )

        try:
            with loop_runner() as runner:
                runner.run(main())
        except BaseException as exc:
            self.error = exc
            self.ready.set()

    def start(self) -> GatewayThread:
        self.thread.start()
        assert self.ready.wait(40), "gateway did not start"
        assert self.error is None, self.error
        return self

    def stop(self) -> None:
        if self.loop is not None and self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)
        assert not self.thread.is_alive(), "gateway did not stop"


@pytest.fixture
def start_gateway(
    jt808_fleet: str, broker: PrivateMosquitto, tmp_path: Path
) -> Iterator[Callable[..., GatewayThread]]:
    started: list[GatewayThread] = []

    def start(instance: Instance | None = None, **overrides: Any) -> GatewayThread:
        values: dict[str, Any] = {
            "database_url": jt808_fleet,
            "mqtt_url": broker.url,
            "jt808_publish_timeout_s": 3.0,
            "jt808_metrics_port": 0,
            "data_dir": tmp_path / "state",
        }
        values.update(overrides)
        gw = GatewayThread(flat_settings(**values), instance).start()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        if gw.thread.is_alive():
            gw.stop()


def run(coro: Any) -> Any:
    """Run a scenario on an event loop of its own thread: the main thread may hold a
    running loop left by other tests (Playwright's sync API keeps one)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def now_local() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)


def loc(at: datetime, i: int = 0, **kw: Any) -> codec.Location:
    values: dict[str, Any] = {
        "alarm": 0,
        "status": codec.Status.LOCATED | codec.Status.ACC_ON | (0b01 << 8),
        "lat": 31.8 + i * 1e-4,
        "lon": 117.3 + i * 1e-4,
        "altitude_m": 20,
        "speed_kmh": 23.5,
        "heading_deg": 90,
        "recorded_at": at,
        "extras": ((codec.EXTRA_MILEAGE, struct.pack(">I", 102342)),),
    }
    values.update(kw)
    return codec.Location(**values)


def positions(url: str, truck_id: str) -> list[tuple[Any, ...]]:
    return rows(
        url,
        "SELECT recorded_at, lat, lon, speed_kmh, ignition, load_state, odometer_km FROM position"
        " WHERE truck_id = %s ORDER BY recorded_at",
        (truck_id,),
    )


def dead_letters(url: str) -> list[tuple[str, str]]:
    return [
        (r[0], r[1])
        for r in rows(url, "SELECT topic, reason FROM dead_letter ORDER BY dead_letter_id")
    ]


# --------------------------------------------------------------------------- functional


def test_2013_and_2019_terminals_register_authenticate_and_are_stored(
    jt808_fleet: str,
    start_ingestor: Callable[..., RunningIngestor],
    start_gateway: Callable[..., GatewayThread],
) -> None:
    """Register → 0x8100 with a code, auth → 0x8001, locations and a blind-zone batch
    (sent out of order) stored under the truck with every mapped field; the alarm
    bit becomes an event and the terminal shows online."""
    start_ingestor()
    gw = start_gateway()
    base = now_local()

    async def scenario() -> None:
        t13 = Jt808Terminal("127.0.0.1", gw.port, "0" + phone(1))
        t19 = Jt808Terminal("127.0.0.1", gw.port, phone(2), version=1)
        # the 2019 terminal reports fuel, satellites, a vendor item and its doors
        items = (
            (codec.EXTRA_MILEAGE, struct.pack(">I", 102342)),
            (codec.EXTRA_FUEL, struct.pack(">H", 885)),
            (codec.EXTRA_SATELLITES, b"\x0b"),
            (0xE1, b"\x0a\x0b"),
        )
        doors = codec.Status.LOCATED | codec.Status.DOOR_LOCKED | 1 << (codec.Status.DOOR_SHIFT + 1)
        for t in (t13, t19):
            await t.connect()
            code = await t.register()
            assert len(code) >= 8
            await t.authenticate()
            assert await t.heartbeat()
            extra = {"extras": items, "status": doors} if t is t19 else {}
            for k in range(3):
                assert await t.report(loc(base + timedelta(seconds=10 * k), k, **extra))
            later = [loc(base + timedelta(seconds=100 - k), 10 + k) for k in range(5)]
            t.unacked.extend(later)
            assert await t.upload_unacked()
        assert await t13.report(loc(base + timedelta(seconds=200), alarm=1 << 1))
        for t in (t13, t19):
            await t.close()

    run(scenario())
    wait_for(
        lambda: len(positions(jt808_fleet, "T1")) == 9 and len(positions(jt808_fleet, "T2")) == 8,
        30,
        "17 fixes",
    )
    first = positions(jt808_fleet, "T1")[0]
    assert first == (base.astimezone(UTC), 31.8, 117.3, 23.5, True, "half", 10234.2)
    terminal_fields = rows(
        jt808_fleet,
        "SELECT altitude_m, fuel_l, satellites, door_locked, doors_open, extra FROM position"
        " WHERE truck_id = 'T2' ORDER BY recorded_at LIMIT 1",
    )
    assert terminal_fields == [(20.0, 88.5, 11, True, [2], {"jt808_E1": "0a0b"})]
    events = rows(
        jt808_fleet, "SELECT kind, payload->'alarms' FROM device_event WHERE truck_id = 'T1'"
    )
    assert events == [("alarm", ["overspeed"])]
    wait_for(
        lambda: (
            scalar(jt808_fleet, "SELECT state FROM terminal_status WHERE terminal_id = 'GPS-T2'")
            == "offline"
        ),
        20,
        "offline after close",
    )
    registered = rows(
        jt808_fleet, "SELECT jt808_phone, truck_id, model FROM jt808_registration ORDER BY 1"
    )
    assert registered == [(phone(1), "T1", "SIM-808"), (phone(2), "T2", "SIM-808")]
    assert dead_letters(jt808_fleet) == []


def test_unknown_terminal_wrong_code_and_data_before_auth_are_refused(
    jt808_fleet: str, start_gateway: Callable[..., GatewayThread]
) -> None:
    """An unknown phone gets 0x8100 result 4; a wrong auth code and a location before
    authentication get 0x8001 result 1; each connection is then closed."""
    gw = start_gateway()

    async def closed(t: Jt808Terminal) -> bool:
        for _ in range(50):
            if t._pump is not None and t._pump.done():
                return True
            await asyncio.sleep(0.1)
        return False

    async def scenario() -> None:
        unknown = Jt808Terminal("127.0.0.1", gw.port, "13800000000")
        await unknown.connect()
        _, body = await unknown.request(
            MsgId.REGISTER, codec.encode_register(codec.Register(1, 1, "M", "X", "D", 1, "P"))
        )
        assert body[2] == codec.RegisterResult.NO_SUCH_TERMINAL
        assert await closed(unknown)
        wrong = Jt808Terminal("127.0.0.1", gw.port, phone(3), auth_code="not-the-code")
        await wrong.connect()
        _, body = await wrong.request(MsgId.AUTH, b"not-the-code")
        assert body[4] == codec.Result.FAILURE
        assert await closed(wrong)
        early = Jt808Terminal("127.0.0.1", gw.port, phone(4))
        await early.connect()
        _, body = await early.request(
            MsgId.LOCATION, codec.encode_location(loc(now_local()), codec.GMT8)
        )
        assert body[4] == codec.Result.FAILURE
        assert await closed(early)

    run(scenario())
    wait_for(lambda: len(dead_letters(jt808_fleet)) == 2, 10, "two dead letters")
    assert dead_letters(jt808_fleet) == [
        ("jt808/13800000000", "jt808_unknown_terminal"),
        (f"jt808/{phone(4)}", "jt808_not_authenticated"),
    ]


def test_bad_frames_are_answered_dead_lettered_and_the_connection_survives(
    jt808_fleet: str,
    start_ingestor: Callable[..., RunningIngestor],
    start_gateway: Callable[..., GatewayThread],
) -> None:
    """Wrong check code → result 2, unknown id → 3, invalid BCD time → 2, impossible
    coordinate → 2, noise and an oversize run kept; the next location is stored. The
    gateway's /metrics counts each by reason."""
    start_ingestor()
    metrics_port = free_port()
    gw = start_gateway(jt808_metrics_port=metrics_port)
    at = now_local()

    async def scenario() -> None:
        t = Jt808Terminal("127.0.0.1", gw.port, phone(5))
        await t.connect()
        await t.register()
        await t.authenticate()
        assert t._writer is not None
        good = codec.encode_location(loc(at), codec.GMT8)

        async def answer(raw: bytes, serial: int) -> int:
            fut = asyncio.get_running_loop().create_future()
            t._answers[serial] = fut
            assert t._writer is not None
            t._writer.write(raw)
            _, body = await asyncio.wait_for(fut, 10)
            return int(body[4])

        # Corrupt the check code before escaping: flipping a byte of the escaped frame
        # breaks the escaping instead whenever the code itself is 0x7D or 0x7E.
        content = codec.unescape(codec.encode_frame(MsgId.LOCATION, phone(5), 900, good)[1:-1])
        wrong = bytes([content[-1] ^ 0x55])
        bad_check = b"\x7e" + codec.escape(content[:-1] + wrong) + b"\x7e"
        assert await answer(bad_check, 900) == codec.Result.MESSAGE_ERROR
        assert (
            await answer(codec.encode_frame(0x0900, phone(5), 901, b"\x01"), 901)
            == codec.Result.NOT_SUPPORTED
        )
        bad_time = good[:22] + bytes.fromhex("261399250000") + good[28:]
        assert (
            await answer(codec.encode_frame(MsgId.LOCATION, phone(5), 902, bad_time), 902)
            == codec.Result.MESSAGE_ERROR
        )
        bad_coord = good[:8] + struct.pack(">I", 95_000_000) + good[12:]
        assert (
            await answer(codec.encode_frame(MsgId.LOCATION, phone(5), 903, bad_coord), 903)
            == codec.Result.MESSAGE_ERROR
        )
        t._writer.write(b"\x7e" + b"A" * 5000)  # an oversize run, then the next frame's flag
        assert await t.report(loc(at + timedelta(seconds=1), 1))
        await t.close()

    run(scenario())
    wait_for(lambda: len(positions(jt808_fleet, "T5")) == 1, 20, "the good location")
    wait_for(lambda: len(dead_letters(jt808_fleet)) == 5, 10, "five dead letters")
    assert [r for _, r in dead_letters(jt808_fleet)] == [
        "jt808_bad_check",
        "jt808_unknown_message",
        "jt808_bad_time",
        "jt808_bad_coordinate",
        "jt808_oversize",
    ]
    raw = scalar(jt808_fleet, "SELECT payload FROM dead_letter WHERE reason = 'jt808_bad_time'")
    assert bytes(raw).startswith(b"\x7e") and bytes(raw).endswith(b"\x7e")
    # the `offline` status is published as the connection closes
    wait_for(
        lambda: ("clearday_jt808_published_total", {}, 3.0) in scrape(metrics_port),
        10,
        "three messages published",
    )
    metrics = scrape(metrics_port)
    assert {
        labels["reason"]: value
        for name, labels, value in metrics
        if name == "clearday_jt808_bad_frames_total"
    } == {
        "jt808_bad_check": 1,
        "jt808_unknown_message": 1,
        "jt808_bad_time": 1,
        "jt808_bad_coordinate": 1,
        "jt808_oversize": 1,
    }
    value = {name: v for name, labels, v in metrics if not labels}
    assert value["clearday_jt808_locations_acked_total"] == 1
    # register, auth, the location, and three frames whose message was refused
    assert value["clearday_jt808_frames_total"] == 6
    assert value["clearday_jt808_connections_accepted_total"] == 1
    assert value["clearday_jt808_connections"] == 0 and value["clearday_jt808_acks_pending"] == 0
    assert value["clearday_jt808_mqtt_connected"] == 1
    # the location went out in a batch of its own on the gateway's topic
    assert value["clearday_jt808_batches_total"] == value["clearday_jt808_batched_fixes_total"] == 1
    # the location and the `online`/`offline` statuses: each PUBACK timed
    assert (
        value["clearday_jt808_publish_seconds_count"]
        == value["clearday_jt808_published_total"]
        == 3
    )


def scrape(port: int) -> list[tuple[str, dict[str, str], float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def test_reports_sent_without_waiting_are_each_answered_once_and_stored(
    jt808_fleet: str,
    start_ingestor: Callable[..., RunningIngestor],
    start_gateway: Callable[..., GatewayThread],
) -> None:
    """A terminal writes 300 reports in one go (more than the 64 a connection may have
    awaiting the broker, so reading pauses and resumes): every serial gets one
    0x8001 result 0, and every report is stored once."""
    start_ingestor()
    gw = start_gateway()
    base = now_local()
    count = 300

    async def scenario() -> Counter[tuple[int, int]]:
        registered = Jt808Terminal("127.0.0.1", gw.port, phone(3))
        await registered.login()
        await registered.close()
        assert registered.auth_code is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(codec.encode_frame(MsgId.AUTH, phone(3), 1, registered.auth_code.encode()))
        writer.write(
            b"".join(
                codec.encode_frame(
                    MsgId.LOCATION,
                    phone(3),
                    1000 + k,
                    codec.encode_location(loc(base + timedelta(seconds=k), k), codec.GMT8),
                )
                for k in range(count)
            )
        )
        answers: Counter[tuple[int, int]] = Counter()  # (answered serial, result)
        frames = codec.FrameReader()
        deadline = time.monotonic() + 30
        quiet_after = None
        while time.monotonic() < deadline:
            try:
                data = await asyncio.wait_for(reader.read(65536), 0.5)
            except TimeoutError:
                if quiet_after is not None:
                    break  # all answered, and nothing more for 0.5 s
                continue
            assert data, "the gateway closed the connection"
            for frame in frames.feed(data):
                assert isinstance(frame, codec.Frame)
                serial, _, result = struct.unpack(">HHB", frame.body)
                answers[(serial, result)] += 1
            if sum(answers.values()) >= count + 1:
                quiet_after = time.monotonic()
        writer.close()
        return answers

    answers = run(scenario())
    assert answers == Counter({(1000 + k, codec.Result.OK): 1 for k in range(count)} | {(1, 0): 1})
    wait_for(lambda: len(positions(jt808_fleet, "T3")) == count, 30, f"{count} fixes")
    assert scalar(jt808_fleet, "SELECT count(DISTINCT recorded_at) FROM position") == count


class PositionsSeen:
    """A plain QoS 1 subscriber beside the ingestor: which terminals' fixes each
    positions message carried, on the trucks' topics and on the gateways'."""

    def __init__(self, broker: PrivateMosquitto) -> None:
        self.truck_messages: list[str] = []  # the terminal id of each
        self.gateway_messages: list[list[str]] = []  # the terminal ids of each one's items
        ready = threading.Event()
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="test-positions-seen")
        filters = [f for f in wire.subscription_filters() if f.endswith("/positions")]
        client.on_connect = lambda c, *a: c.subscribe([(f, 1) for f in filters])
        client.on_subscribe = lambda *a: ready.set()
        client.on_message = self._on_message
        target = MqttTarget(broker.url)
        client.connect(target.host, target.port)
        client.loop_start()
        assert ready.wait(10), "subscriber not ready"
        self.client = client

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        ref = wire.parse_topic(msg.topic)
        if ref.gateway_id is None:
            self.truck_messages.append(str(ref.terminal_id))
        else:
            parsed = wire.parse_gateway_fixes(msg.topic, bytes(msg.payload))
            self.gateway_messages.append([item.terminal_id for item in parsed.items])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "per-truck"])
def test_ten_terminals_waiting_for_answers_each_acknowledged_location_stored_once(
    jt808_fleet: str,
    broker: PrivateMosquitto,
    start_ingestor: Callable[..., RunningIngestor],
    start_gateway: Callable[..., GatewayThread],
    batched: bool,
) -> None:
    """Ten terminals (2013 and 2019) report 100 locations each, each waiting for its
    answer: every acknowledged location is stored exactly once. Batched (the default),
    every fix reached the broker on the gateway's topic, some message carrying several
    terminals' fixes, and none on a truck's topic; with batching off, the other way
    round."""
    seen = PositionsSeen(broker)
    start_ingestor()
    gw = start_gateway(jt808_batch_fixes=batched)
    per_terminal = 100
    terminals, plans = streaming_terminals(gw.port, per_terminal)

    async def scenario() -> None:
        await asyncio.gather(
            *(drive(t, plans[t.phone], retry_s=0.3, timeout_s=4) for t in terminals)
        )
        for t in terminals:
            await t.close()

    run(scenario())
    assert_acknowledged_stored_once(jt808_fleet, terminals, per_terminal)
    wait_for(
        lambda: len(seen.truck_messages) + sum(map(len, seen.gateway_messages)) >= 1000,
        30,
        "the subscriber to see every fix",
    )
    seen.close()
    if batched:
        assert seen.truck_messages == []
        assert max(len(set(ids)) for ids in seen.gateway_messages) >= 2
        assert len(seen.gateway_messages) < 1000
    else:
        assert seen.gateway_messages == [] and len(seen.truck_messages) >= 1000
    assert dead_letters(jt808_fleet) == []


def test_a_missing_sub_package_is_asked_for_again_and_then_stored(
    jt808_fleet: str,
    start_ingestor: Callable[..., RunningIngestor],
    start_gateway: Callable[..., GatewayThread],
) -> None:
    """A 0x0704 split in 3 packets arrives without packet 2: once the resend delay has
    passed, the next frame from the terminal brings a 0x8003 asking for packet 2; the
    terminal sends it, every packet is acknowledged and the batch stored."""
    start_ingestor()
    gw = start_gateway(jt808_resend_after_s=1.0)
    base = now_local()
    batch = [loc(base + timedelta(seconds=k), k) for k in range(12)]
    body = codec.encode_batch(batch, codec.GMT8)
    packets = codec.split_packets(MsgId.LOCATION_BATCH, phone(4), 500, body, packet_bytes=150)
    assert len(packets) == 3

    async def scenario() -> tuple[bytes, set[int]]:
        registered = Jt808Terminal("127.0.0.1", gw.port, phone(4))
        await registered.login()
        await registered.close()
        assert registered.auth_code is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        frames = codec.FrameReader()
        received: list[codec.Frame | codec.FrameError] = []

        async def next_frame() -> codec.Frame:
            while not received:
                received.extend(frames.feed(await asyncio.wait_for(reader.read(65536), 10)))
            item = received.pop(0)
            assert isinstance(item, codec.Frame)
            return item

        writer.write(codec.encode_frame(MsgId.AUTH, phone(4), 1, registered.auth_code.encode()))
        assert (await next_frame()).body[4] == codec.Result.OK
        writer.write(packets[0] + packets[2])
        await asyncio.sleep(1.2)
        writer.write(codec.encode_frame(MsgId.HEARTBEAT, phone(4), 2))
        request = await next_frame()
        assert (await next_frame()).header.msg_id == MsgId.PLATFORM_RESPONSE  # the heartbeat
        writer.write(packets[1])
        acked = set()
        for _ in range(3):
            answer = await next_frame()
            serial, msg_id, result = struct.unpack(">HHB", answer.body)
            assert (msg_id, result) == (MsgId.LOCATION_BATCH, codec.Result.OK)
            acked.add(serial)
        writer.close()
        return request.raw, acked

    raw, acked = run(scenario())
    request = codec.decode_frame(raw)
    assert request.header.msg_id == codec.MsgId.RESEND_REQUEST
    assert request.body == struct.pack(">HBH", 500, 1, 2)
    assert acked == {500, 501, 502}
    wait_for(lambda: len(positions(jt808_fleet, "T4")) == 12, 30, "the batch's 12 fixes")


def test_logout_deregisters_and_an_idle_connection_is_closed(
    jt808_fleet: str, start_gateway: Callable[..., GatewayThread]
) -> None:
    gw = start_gateway(jt808_idle_timeout_s=1.0)

    async def scenario() -> None:
        t = Jt808Terminal("127.0.0.1", gw.port, phone(6))
        await t.login()
        _, body = await t.request(MsgId.LOGOUT)
        assert body[4] == codec.Result.OK
        await t.close()
        await t.connect()
        with pytest.raises(Exception, match="refused with result 1"):
            await t.authenticate()
        await t.close()
        idle = Jt808Terminal("127.0.0.1", gw.port, phone(7))
        await idle.login()
        started = time.monotonic()
        assert idle._pump is not None
        await asyncio.wait_for(idle._pump, 10)  # the gateway closes it
        assert time.monotonic() - started < 5

    run(scenario())
    assert (
        scalar(
            jt808_fleet,
            "SELECT count(*) FROM jt808_registration WHERE jt808_phone = %s",
            (phone(6),),
        )
        == 0
    )


def test_a_reconnecting_terminal_replaces_its_old_connection_and_stays_online(
    jt808_fleet: str,
    start_ingestor: Callable[..., RunningIngestor],
    start_gateway: Callable[..., GatewayThread],
) -> None:
    """A terminal that logs in again while its old connection is still open (a lost
    link the gateway has not noticed) takes over: the old connection is closed and
    does not publish `offline` over the new connection's `online`."""
    start_ingestor()
    gw = start_gateway()

    async def scenario() -> None:
        old = Jt808Terminal("127.0.0.1", gw.port, phone(0))
        await old.login()
        new = Jt808Terminal("127.0.0.1", gw.port, phone(0), auth_code=old.auth_code)
        await new.login()
        assert old._pump is not None
        await asyncio.wait_for(old._pump, 10)  # the gateway closed the old connection
        assert await new.heartbeat()
        await asyncio.sleep(2.0)  # an `offline` from the old connection would be stored by now
        await new.close()

    state = "SELECT state FROM terminal_status WHERE terminal_id = 'GPS-T0'"
    seen: list[str] = []

    async def watch() -> None:
        task = asyncio.create_task(scenario())
        while not task.done():
            seen.append(str(scalar(jt808_fleet, state)))
            await asyncio.sleep(0.2)
        await task

    run(watch())
    assert "offline" not in seen[-5:], seen
    assert seen[-1] == "online"


def test_a_terminal_that_moved_to_another_gateway_process_stays_online(
    jt808_fleet: str,
    start_ingestor: Callable[..., RunningIngestor],
    start_gateway: Callable[..., GatewayThread],
) -> None:
    """A terminal reconnects to another gateway process (processes share nothing) while
    its old connection is still open; when the old one ends, its `offline` dates from
    when that connection last heard the terminal, before the new `online`: the
    terminal stays online."""
    start_ingestor()
    first = start_gateway(Instance(1, 2))
    second = start_gateway(Instance(2, 2))
    state = "SELECT state FROM terminal_status WHERE terminal_id = 'GPS-T0'"

    async def scenario() -> str:
        old = Jt808Terminal("127.0.0.1", first.port, phone(0))
        await old.login()
        assert await old.heartbeat()
        new = Jt808Terminal("127.0.0.1", second.port, phone(0), auth_code=old.auth_code)
        await new.login()
        # the first process closes the old connection and publishes its `offline`,
        # acknowledged by the broker before it stops
        await asyncio.to_thread(first.stop)
        # published after that `offline`, so stored with or after it
        assert await new.report(loc(now_local()))
        await asyncio.to_thread(
            wait_for, lambda: len(positions(jt808_fleet, "T0")) == 1, 30, "the report"
        )
        seen = str(scalar(jt808_fleet, state))
        await new.close()
        await old.close()
        return seen

    assert run(scenario()) == "online"


def test_no_acknowledgement_while_the_broker_is_down(
    jt808_fleet: str,
    broker: PrivateMosquitto,
    start_ingestor: Callable[..., RunningIngestor],
    start_gateway: Callable[..., GatewayThread],
) -> None:
    """With the broker stopped a location gets no answer; after it is back the
    terminal's re-upload is acknowledged and stored."""
    start_ingestor()
    gw = start_gateway(jt808_publish_timeout_s=1.0)
    at = now_local()

    async def scenario() -> None:
        t = Jt808Terminal("127.0.0.1", gw.port, phone(8))
        await t.login()
        broker.stop()
        assert not await t.report(loc(at), timeout_s=3)
        assert t.unacked == [loc(at)]
        broker.start()
        for _ in range(100):
            if await t.upload_unacked(timeout_s=3):
                break
            await asyncio.sleep(0.2)
        assert t.unacked == [] and t.acked == [loc(at)]
        await t.close()

    run(scenario())
    wait_for(lambda: len(positions(jt808_fleet, "T8")) == 1, 30, "the re-uploaded location")


@pytest.mark.slow
def test_hostile_bytes_never_crash_the_gateway_nor_desynchronise_a_connection(
    jt808_fleet: str, start_gateway: Callable[..., GatewayThread]
) -> None:
    """Arbitrary bytes (hypothesis) on an authenticated connection, then a heartbeat:
    the heartbeat is always answered on that same connection, and every bad frame is
    a dead letter."""
    gw = start_gateway(jt808_max_bad_frames=10_000)
    code: list[str] = []

    async def attempt(garbage: bytes) -> None:
        t = Jt808Terminal("127.0.0.1", gw.port, phone(9), auth_code=code[0] if code else None)
        await t.login()
        code[:1] = [t.auth_code or ""]
        assert t._writer is not None
        t._writer.write(garbage)
        _, body = await t.request(MsgId.HEARTBEAT, timeout_s=10)
        assert body[2:5] == bytes([0x00, 0x02, codec.Result.OK]), body.hex()
        await t.close()

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        st.lists(
            st.one_of(
                st.binary(max_size=400),
                st.sampled_from([b"\x7e", b"\x7d", b"\x7e\x7e", b"\x7e\x00\x02\x00"]),
                st.binary(min_size=2100, max_size=2400),
            ),
            min_size=1,
            max_size=6,
        ).map(b"".join)
    )
    def hostile(garbage: bytes) -> None:
        run(attempt(garbage))

    hostile()
    assert len(dead_letters(jt808_fleet)) > 0
    assert gw.thread.is_alive() and gw.error is None


# --------------------------------------------------------------------------- faults


class GatewayProcess:
    def __init__(self, env: dict[str, str], log_path: Path, port: int, processes: int = 1) -> None:
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.port = port
        self.processes = processes
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> GatewayProcess:
        out = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from fleet.cli import main; main()", "jt808", "--host", "127.0.0.1", "--port", str(self.port),
             "--processes", str(self.processes)],
            env=self.env, stdout=out, stderr=out, cwd=ROOT,
        )  # fmt: skip

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, 30, "the gateway to listen")
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@pytest.fixture
def gateway_process(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """Start `clearday jt808` processes that are stopped (killed if need be) when the test
    ends, whether it passed, failed or timed out waiting for them to listen."""
    started: list[GatewayProcess] = []

    def start(env: dict[str, str], port: int, processes: int = 1) -> GatewayProcess:
        gateway = GatewayProcess(env, tmp_path / "gateway.log", port, processes)
        started.append(gateway)
        return gateway.start()

    yield start
    for gateway in started:
        try:
            gateway.stop()
        except subprocess.TimeoutExpired:
            assert gateway.proc is not None
            gateway.proc.kill()
            gateway.proc.wait()


def gateway_env(database_url: str, broker_url: str, metrics_port: int) -> dict[str, str]:
    """Settings of a gateway process in the stream tests (a 2 s PUBACK wait)."""
    return {
        "CLEARDAY_DATABASE_URL": database_url,
        "CLEARDAY_MQTT_URL": broker_url,
        "CLEARDAY_JT808_PUBLISH_TIMEOUT_S": "2",
        "CLEARDAY_JT808_METRICS_PORT": str(metrics_port),
    }


def streaming_terminals(
    port: int, per_terminal: int
) -> tuple[list[Jt808Terminal], dict[str, list[codec.Location]]]:
    """Ten terminals (2013 and 2019 headers in turn) and the locations each reports,
    one a second from an hour ago."""
    base = now_local() - timedelta(hours=1)
    terminals = [
        Jt808Terminal("127.0.0.1", port, phone(i), version=1 if i % 2 else None) for i in range(10)
    ]
    plans = {
        t.phone: [loc(base + timedelta(seconds=k), k) for k in range(per_terminal)]
        for t in terminals
    }
    return terminals, plans


def stored_fixes(database_url: str) -> int:
    return int(scalar(database_url, "SELECT count(*) FROM position"))


def assert_acknowledged_stored_once(
    database_url: str, terminals: list[Jt808Terminal], per_terminal: int
) -> None:
    """Every location a terminal saw acknowledged is stored exactly once, and all of
    them are stored (terminal i reports for truck Ti)."""
    total = len(terminals) * per_terminal
    wait_for(lambda: stored_fixes(database_url) >= total, 60, f"{total} fixes")
    time.sleep(1.0)
    found = rows(database_url, "SELECT truck_id, recorded_at, count(*) FROM position GROUP BY 1, 2")
    counts = {(r[0], r[1]): r[2] for r in found}
    for i, t in enumerate(terminals):
        acked = {(f"T{i}", x.recorded_at.astimezone(UTC)) for x in t.acked}
        assert len(t.acked) >= per_terminal, f"terminal {i}: {len(t.acked)} acknowledged"
        missing = [k for k in acked if counts.get(k) != 1]
        assert not missing, f"terminal {i}: {len(missing)} acknowledged locations not stored once"
    assert len(counts) == total and all(c == 1 for c in counts.values())


@pytest.mark.slow
def test_gateway_killed_and_broker_restarted_mid_stream_every_acknowledged_location_stored_once(
    jt808_fleet: str,
    broker: PrivateMosquitto,
    start_ingestor: Callable[..., RunningIngestor],
    gateway_process: Callable[..., GatewayProcess],
) -> None:
    """Ten terminals report 300 locations each through a real gateway process; it is
    killed with SIGKILL and restarted, then the broker restarts. Every location a
    terminal saw acknowledged is stored exactly once, and the terminals' re-uploads
    bring the rest."""
    start_ingestor()
    port = free_port()
    env = gateway_env(jt808_fleet, broker.url, 0)
    gateway = gateway_process(env, port)
    per_terminal = 300
    terminals, plans = streaming_terminals(port, per_terminal)

    def stored() -> int:
        return stored_fixes(jt808_fleet)

    at_kill: list[int] = []

    async def scenario() -> None:
        tasks = [
            asyncio.create_task(drive(t, plans[t.phone], retry_s=0.3, timeout_s=4))
            for t in terminals
        ]
        while stored() < 600:
            await asyncio.sleep(0.1)
        gateway.kill9()
        at_kill.append(stored())
        await asyncio.sleep(1.0)
        gateway.start()
        while stored() < 1500:
            await asyncio.sleep(0.1)
        broker.stop()
        await asyncio.sleep(2.0)
        broker.start()
        await asyncio.wait_for(asyncio.gather(*tasks), 240)
        for t in terminals:
            await t.close()

    run(scenario())
    assert at_kill[0] < 10 * per_terminal, "the kill must happen mid-stream"
    assert_acknowledged_stored_once(jt808_fleet, terminals, per_terminal)
    assert gateway.stop() == 0


def test_the_gateway_process_holds_none_of_the_planners_libraries(
    jt808_fleet: str, broker: PrivateMosquitto, gateway_process: Callable[..., GatewayProcess]
) -> None:
    """`clearday jt808` replaces itself (same process id) with the gateway's own entry
    point, so the running gateway has loaded neither numpy nor scipy, which the
    `clearday` command's other groups import."""
    gateway = gateway_process(gateway_env(jt808_fleet, broker.url, 0), free_port())
    assert gateway.proc is not None
    pid = gateway.proc.pid
    assert b"ingest.jt808" in Path(f"/proc/{pid}/cmdline").read_bytes()
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert "/numpy/" not in maps and "/scipy/" not in maps
    assert gateway.stop() == 0


def instance_pids(supervisor: int) -> list[int]:
    """The gateway processes a supervisor started (not multiprocessing's helper)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == supervisor and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            pids.append(int(entry.name))
    return sorted(pids)


def gauge(port: int, name: str) -> float:
    return sum(v for n, _, v in scrape(port) if n == name)


@pytest.mark.slow
def test_two_gateway_processes_share_the_port_and_one_killed_loses_nothing(
    jt808_fleet: str,
    broker: PrivateMosquitto,
    start_ingestor: Callable[..., RunningIngestor],
    gateway_process: Callable[..., GatewayProcess],
) -> None:
    """`clearday jt808 --processes 2`: both processes take terminals on the one port,
    each with its own broker client id (they would take each other's connection
    otherwise); one is killed with SIGKILL mid-stream and started again by the
    supervisor. Every location a terminal saw acknowledged is stored exactly once, the
    re-uploads bring the rest, and SIGTERM stops all of it cleanly."""
    start_ingestor()
    port, metrics = free_port(), free_port_run(2)
    env = gateway_env(jt808_fleet, broker.url, metrics)
    gateway = gateway_process(env, port, processes=2)
    assert gateway.proc is not None
    supervisor = gateway.proc.pid
    wait_for(lambda: len(instance_pids(supervisor)) == 2, 30, "two gateway processes")

    def serving(metrics_port: int) -> bool:
        try:
            return gauge(metrics_port, "clearday_jt808_mqtt_connected") == 1
        except OSError:
            return False

    wait_for(lambda: serving(metrics) and serving(metrics + 1), 30, "both processes' brokers")
    per_terminal = 200
    terminals, plans = streaming_terminals(port, per_terminal)

    def authenticated() -> list[float]:
        return [gauge(metrics + k, "clearday_jt808_terminals_authenticated") for k in (0, 1)]

    killed: list[int] = []

    async def scenario() -> None:
        for t in terminals:
            await t.login()
        # The kernel picks a process per connection: reconnect one terminal (a new
        # source port each time) until both processes hold terminals.
        for _ in range(200):
            if all(authenticated()):
                break
            await terminals[0].close()
            await terminals[0].login()
        assert all(authenticated()), f"terminals per process: {authenticated()}"
        tasks = [
            asyncio.create_task(drive(t, plans[t.phone], retry_s=0.3, timeout_s=4))
            for t in terminals
        ]
        while stored_fixes(jt808_fleet) < 500:
            await asyncio.sleep(0.1)
        victim = instance_pids(supervisor)[0]
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)
        await asyncio.wait_for(asyncio.gather(*tasks), 240)
        for t in terminals:
            await t.close()

    run(scenario())
    assert_acknowledged_stored_once(jt808_fleet, terminals, per_terminal)
    # the supervisor started the killed process again
    wait_for(lambda: len(instance_pids(supervisor)) == 2, 30, "the killed process restarted")
    assert killed[0] not in instance_pids(supervisor)
    children = instance_pids(supervisor)
    assert gateway.stop() == 0
    assert not [p for p in children if Path(f"/proc/{p}").exists()], "a process outlived the stop"


# --------------------------------------------------------------------------- simulator


def test_simulated_day_with_part_of_the_fleet_on_jt808_is_stored_once(
    pg: PgServer,
    broker: PrivateMosquitto,
    start_ingestor: Callable[..., RunningIngestor],
    start_gateway: Callable[..., GatewayThread],
    tmp_path: Path,
) -> None:
    """`simulate day --protocol jt808 --jt808-share 0.67` in code: two of three trucks
    report over JT/T 808 (blind-zone batches, a dropped connection), one over MQTT;
    every fix is stored once (JT/T 808 times have whole seconds), nothing dead-lettered."""
    database_url = pg.new_database()  # the city's own district, not the fixtures' fleet
    city = generate(n_points=40, n_trucks=3, seed=1)
    city.write(tmp_path / "city")
    with db.connect(database_url) as conn:
        importer.load(conn, importer.parse_files(importer.read_paths([tmp_path / "city"])))
    start_ingestor(database_url=database_url)
    gw = start_gateway(database_url=database_url)
    yesterday = datetime.now(ZoneInfo("Asia/Shanghai")).date() - timedelta(days=1)
    plan = greedy_plan(city, max_points_per_truck=4)
    first = plan.routes[0]
    spec = DaySpec(
        city=city, plan=plan, service_date=yesterday, seed=2,
        faults=(Fault("offline", truck_id=first.truck_id, at_s=first.stops[0].departure_s + 900, duration_s=600),),
        terminal=TerminalConfig(signal_losses_per_day=20.0),
    )  # fmt: skip
    emissions = list(SimDay(spec).emissions())
    phones = {t.terminal_id: jt808_phone_for(k) for k, t in enumerate(city.trucks[:2])}
    expected = {
        (
            e.terminal_id,
            f.recorded_at.replace(microsecond=0) if e.terminal_id in phones else f.recorded_at,
        )
        for e in emissions
        for f in e.fixes
    }
    sink = Jt808Fleet(
        "127.0.0.1", gw.port, phones, MqttFleet(broker.url, client_prefix="sim-jt808")
    )
    sim_run(iter(emissions), sink, speed=None)
    counts = sink.close(timeout_s=120)
    assert counts.unacked == 0 and counts.acked == counts.reported > 0
    wait_for(
        lambda: scalar(database_url, "SELECT count(*) FROM position") >= len(expected),
        60,
        "every fix",
    )
    time.sleep(1.0)
    stored = rows(
        database_url,
        "SELECT t.terminal_id, p.recorded_at FROM position p JOIN truck t USING (truck_id)",
    )
    assert sorted(stored) == sorted(expected)
    assert scalar(database_url, "SELECT count(*) FROM dead_letter") == 0
    assert scalar(database_url, "SELECT count(*) FROM jt808_registration") == len(
        [r for r in plan.routes if city.truck(r.truck_id).terminal_id in phones]
    )


# --------------------------------------------------------------------------- commands


def clearday(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from fleet.cli import main; main()", *args],
        env={**os.environ, "CLEARDAY_DATABASE_URL": url},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def commands(url: str) -> list[tuple[Any, ...]]:
    return rows(
        url,
        "SELECT command_id, jt808_phone, msg_id, state, result, reply FROM jt808_command"
        " ORDER BY command_id",
    )


def test_commands_queued_from_the_cli_reach_the_terminal_and_their_answers_are_recorded(
    jt808_fleet: str,
    start_ingestor: Callable[..., RunningIngestor],
    start_gateway: Callable[..., GatewayThread],
) -> None:
    """`clearday jt808-command` queues 0x8103 and 0x8201; once the terminal is connected
    the gateway sends them, and records its 0x0001 result and its 0x0201 location. One
    queued while it is connected goes out too; one sent on an earlier connection and
    never answered is sent again on the next."""
    done = clearday(
        jt808_fleet,
        "jt808-command", phone(0), "--set", "0x0029=30", "--set", "0x0013=gw.example.com",
        "--set", "0x0031:word=500", "--query-location",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("queued command") == 2
    refused = clearday(jt808_fleet, "jt808-command", "13999999999", "--query-location")
    assert refused.returncode == 1 and "no truck has jt808_phone" in refused.stderr
    bad = clearday(jt808_fleet, "jt808-command", phone(0), "--set", "0x0031:word=70000")
    assert bad.returncode == 2 and "not a word" in bad.stderr
    # as if sent on an earlier connection of terminal 1 that ended before its answer
    with psycopg.connect(jt808_fleet) as conn:
        conn.execute(
            "INSERT INTO jt808_command (jt808_phone, msg_id, body, state, sent_at, serial)"
            " VALUES (%s, %s, %s, 'sent', now(), 7)",
            (phone(1), MsgId.SET_PARAMETERS, codec.encode_parameters([(1, b"x")])),
        )
    start_ingestor()
    # no safety poll within the test: commands go out on authentication and notification
    gw = start_gateway(jt808_command_poll_s=3600)
    at = now_local()
    kept = loc(at + timedelta(minutes=1), 7)  # a position terminal 0 has not reported

    def answered() -> int:
        return sum(1 for r in commands(jt808_fleet) if r[3] == "answered")

    async def scenario() -> tuple[Jt808Terminal, Jt808Terminal]:
        t0 = Jt808Terminal("127.0.0.1", gw.port, phone(0))
        t1 = Jt808Terminal("127.0.0.1", gw.port, phone(1), version=1)
        t0.unacked.append(kept)  # what it answers the position query with
        for t in (t0, t1):
            await t.login()
        assert await t0.report(loc(at, 3))
        await asyncio.to_thread(wait_for, lambda: answered() == 3, 30, "three answers")
        t0.parameter_result = codec.Result.NOT_SUPPORTED
        with psycopg.connect(jt808_fleet) as conn:
            repo.queue_command(conn, phone(0), MsgId.SET_PARAMETERS, b"\x00")
        await asyncio.to_thread(wait_for, lambda: answered() == 4, 30, "the fourth answer")
        for t in (t0, t1):
            await t.close()
        return t0, t1

    t0, t1 = run(scenario())
    assert [m for m, _ in t0.commands] == [
        MsgId.SET_PARAMETERS,
        MsgId.QUERY_LOCATION,
        MsgId.SET_PARAMETERS,
    ]
    assert codec.decode_parameters(t0.commands[0][1]) == [
        (0x0029, (30).to_bytes(4, "big")),
        (0x0013, b"gw.example.com"),
        (0x0031, (500).to_bytes(2, "big")),
    ]
    assert t1.commands == [(MsgId.SET_PARAMETERS, codec.encode_parameters([(1, b"x")]))]
    got = {(r[1], r[2], r[4]): r[5] for r in commands(jt808_fleet)}
    assert set(got) == {
        (phone(0), MsgId.SET_PARAMETERS, 0),
        (phone(0), MsgId.QUERY_LOCATION, 0),
        (phone(0), MsgId.SET_PARAMETERS, codec.Result.NOT_SUPPORTED),
        (phone(1), MsgId.SET_PARAMETERS, 0),
    }
    reply = got[(phone(0), MsgId.QUERY_LOCATION, 0)]
    header = codec.Header(MsgId.LOCATION_REPLY, phone(0), 1, len(reply))
    decoded = codec.decode_message(codec.Frame(header, bytes(reply), b""), codec.GMT8)
    assert isinstance(decoded, codec.LocationReply)
    assert decoded.location.recorded_at == kept.recorded_at and decoded.location.lat == kept.lat
    # the 0x0201 position is stored like a report's, once
    wait_for(lambda: len(positions(jt808_fleet, "T0")) == 2, 30, "the reported and the queried fix")
    stored = positions(jt808_fleet, "T0")
    assert [r[0] for r in stored] == [at, kept.recorded_at]
    assert [r[1] for r in stored] == pytest.approx([loc(at, 3).lat, kept.lat], abs=1e-6)
    assert dead_letters(jt808_fleet) == []


def test_a_command_queued_without_notification_is_found_by_the_safety_poll(
    jt808_fleet: str,
    start_gateway: Callable[..., GatewayThread],
) -> None:
    """A command inserted by hand (no NOTIFY) while its terminal is connected, after
    its authentication-time look, goes out at the next safety poll."""
    gw = start_gateway(jt808_command_poll_s=0.5)

    def answered() -> int:
        return sum(1 for r in commands(jt808_fleet) if r[3] == "answered")

    async def scenario() -> Jt808Terminal:
        t = Jt808Terminal("127.0.0.1", gw.port, phone(0))
        await t.login()
        with psycopg.connect(jt808_fleet) as conn:
            repo.queue_command(conn, phone(0), MsgId.SET_PARAMETERS, b"\x00")
        # answered: the terminal's authentication-time look is long over
        await asyncio.to_thread(wait_for, lambda: answered() == 1, 30, "the notified command")
        with psycopg.connect(jt808_fleet) as conn:
            conn.execute(
                "INSERT INTO jt808_command (jt808_phone, msg_id, body) VALUES (%s, %s, %s)",
                (phone(0), MsgId.SET_PARAMETERS, codec.encode_parameters([(1, b"y")])),
            )
        await asyncio.to_thread(wait_for, lambda: answered() == 2, 30, "the polled command")
        await t.close()
        return t

    t = run(scenario())
    assert [body for _, body in t.commands] == [b"\x00", codec.encode_parameters([(1, b"y")])]
