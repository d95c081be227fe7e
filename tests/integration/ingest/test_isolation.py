"""No message can stop the stream (issue 13), against a real PostgreSQL and Mosquitto:
the issue's payloads against a running `clearday ingest`, a row the database refuses
in the middle of a batch, and a message that really kills the process on every
delivery until it is quarantined."""

from __future__ import annotations

import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
from psycopg.types.json import Jsonb

from fleet.config import IngestSettings
from fleet.devservers import BROKER_MAX_PACKET_BYTES, PrivateMosquitto
from ingest import wire
from ingest.metrics import IngestMetrics
from ingest.writer import AttemptLedger, Batch, BatchWriter, Db, position_row
from tests.integration.ingest.support import (
    ROOT,
    FixStream,
    IngestorProcess,
    Publisher,
    assert_exactly_once,
    ingest_env,
    rows,
    scalar,
    wait_for,
)

DEEP = b"[" * 5000 + b"]" * 5000


def hostile_messages(now: datetime) -> list[tuple[str, bytes, str]]:
    """(topic, payload, expected dead-letter reason): the two payloads of issue 13 and
    values PostgreSQL refuses, on every channel."""
    at = int(now.timestamp())
    pos, evt, sta = (wire.topic(c, "GPS-T1") for c in wire.Channel)
    return [
        (pos, DEEP, "bad_shape"),
        (evt, b'{"recorded_at": %d, "kind": "bin_lift", "v": 1e999}' % at, "out_of_range"),
        (evt, DEEP, "bad_shape"),
        (sta, DEEP, "bad_shape"),
        (pos, b'{"recorded_at": %d, "lat": 1e999, "lon": 117.2}' % at, "out_of_range"),
        (pos, b'{"recorded_at": %d, "lat": NaN, "lon": 117.2}' % at, "malformed_json"),
        (evt, b'{"recorded_at": %d, "kind": "rfid", "rfid_tag": "a\\u0000b"}' % at, "bad_value"),
        (evt, b'{"recorded_at": %d, "kind": "bin_lift", "v": "\\u0000"}' % at, "bad_value"),
        (evt, b'{"recorded_at": %d, "kind": "rfid", "rfid_tag": "\\ud800"}' % at, "malformed_json"),
        (pos, b'{"recorded_at": "99999-01-01T00:00:00Z", "lat": 1, "lon": 1}', "bad_time"),
        (pos, b'{"recorded_at": 1e300, "lat": 1, "lon": 1}', "out_of_range"),
        (sta, b'{"state": "online", "at": -1e15}', "bad_time"),
    ]


def test_regression_payloads_are_dead_lettered_and_the_running_ingestor_goes_on(
    fleet_url: str, broker: PrivateMosquitto, tmp_path: Path
) -> None:
    """Each hostile message becomes a dead letter with its reason and bytes, and a good
    fix published right after each one is stored; the process never exits."""
    ingestor = IngestorProcess(
        ingest_env(fleet_url, broker.url, ingest_batch_max_age_s="0.1"), tmp_path / "ingest.log"
    ).start()
    ingestor.wait_subscribed()
    pub = Publisher(broker.url)
    stream = FixStream()
    hostile = hostile_messages(datetime.now(UTC))
    for seq, (topic, payload, _) in enumerate(hostile):
        pub.publish(topic, payload)
        pub.publish(*stream.message(seq))
    pub.wait_all_acked()
    wait_for(
        lambda: (
            scalar(fleet_url, "SELECT count(*) FROM position") == len(hostile)
            or not ingestor.running()
        ),
        30,
        "the good fixes",
    )
    assert ingestor.running(), f"ingestor died:\n{ingestor.log()[-3000:]}"
    assert_exactly_once(fleet_url, stream, range(len(hostile)))
    wait_for(
        lambda: scalar(fleet_url, "SELECT count(*) FROM dead_letter") >= len(hostile),
        10,
        "the dead letters",
    )
    dead = {
        (topic, bytes(payload)): (reason, detail)
        for topic, payload, reason, detail in rows(
            fleet_url, "SELECT topic, payload, reason, detail FROM dead_letter"
        )
    }
    for topic, payload, reason in hostile:
        got = dead.get((topic, payload))
        assert got is not None, f"{payload[:80]!r} on {topic} was not dead-lettered"
        assert got[0] == reason and got[1], (payload[:80], got)
    assert ingestor.stop() == 0


def test_a_row_the_database_refuses_costs_only_its_own_message(fleet_url: str) -> None:
    """A batch whose COPY/INSERT fails on one message's rows (NUL in text, a number the
    column cannot hold, a jsonb NUL, a status the CHECK refuses) is written message by
    message: the other messages' rows are stored, each refused message is a
    db_rejected dead letter with its raw bytes."""
    at = datetime.now(UTC) - timedelta(minutes=5)
    batch = Batch()

    def message(name: str) -> int:
        batch.messages.append((f"clearday/v1/trucks/GPS-T1/{name}", name.encode()))
        return len(batch.messages) - 1

    def fix(src: int, seconds: int, speed_kmh: float = 10.0) -> None:
        at_s = at + timedelta(seconds=seconds)
        row = position_row("T1", wire.Fix(at_s, 31.8, 117.2, speed_kmh=speed_kmh, seq=src))
        batch.positions.append(row)
        batch.positions_src.append(src)

    def event(src: int, point_id: str, payload: object = None) -> None:
        batch.events.append(("T1", at + timedelta(seconds=src), "bin_lift", point_id, None, None,
                             None, payload))  # fmt: skip
        batch.events_src.append(src)

    good_fixes = message("good-fixes")
    fix(good_fixes, 1)
    fix(good_fixes, 2)
    fix(message("float4-overflow"), 3, speed_kmh=1e300)
    event(message("nul-in-text"), "P\x00")
    event(message("nul-in-jsonb"), "P2", Jsonb({"v": "\x00"}))
    good_event = message("good-event")
    event(good_event, "P3")
    bad_status = message("bad-status")
    batch.statuses.append(("GPS-T1", "T1", "exploded", at, True))
    batch.statuses_src.append(bad_status)
    good_status = message("good-status")
    batch.statuses.append(("GPS-T2", "T2", "online", at, True))
    batch.statuses_src.append(good_status)

    writer = BatchWriter(
        Db(fleet_url, metrics=IngestMetrics(), stop=threading.Event()),
        now=lambda: datetime.now(UTC),
    )
    try:
        result = writer.write(batch)
    finally:
        writer.close()
    assert (result.positions_inserted, result.events_inserted, result.statuses_written) == (2, 1, 1)
    assert scalar(fleet_url, "SELECT count(*) FROM position") == 2
    assert rows(fleet_url, "SELECT point_id FROM device_event") == [("P3",)]
    assert rows(fleet_url, "SELECT terminal_id FROM terminal_status") == [("GPS-T2",)]
    dead = rows(fleet_url, "SELECT reason, payload, detail FROM dead_letter ORDER BY payload")
    assert [(r, bytes(p)) for r, p, _ in dead] == [
        ("db_rejected", b"bad-status"),
        ("db_rejected", b"float4-overflow"),
        ("db_rejected", b"nul-in-jsonb"),
        ("db_rejected", b"nul-in-text"),
    ]
    assert all("refused" in d for _, _, d in dead)


# A test seam, and only in tests: the process under test runs this before the CLI,
# so that decoding a payload holding MARKER crashes the interpreter with SIGSEGV, as a
# fault in a C extension would. Nothing in the ingestor knows about it.
MARKER = b"__segfault_here__"
CRASH_PRELUDE = f"""
import faulthandler
from ingest import wire
_parse = wire.Decoder.parse
def _crashing_parse(self, topic, payload, window):
    if {MARKER!r} in payload:
        faulthandler._sigsegv()
    return _parse(self, topic, payload, window)
wire.Decoder.parse = _crashing_parse
"""


def test_a_message_that_kills_the_process_is_quarantined_after_max_attempts(
    fleet_url: str, broker: PrivateMosquitto, tmp_path: Path
) -> None:
    """A payload that makes the real process die (SIGSEGV) on every delivery: restarted
    as a supervisor would, the ingestor dies max_attempts + 1 times (the first delivery,
    then one per counted attempt), then quarantines the message with its raw bytes,
    acks it, and stores every good fix published around it exactly once."""
    max_attempts = 2
    env = ingest_env(
        fleet_url, broker.url, ingest_batch_max_age_s="0.2", ingest_max_attempts=str(max_attempts)
    )
    stream = FixStream()
    poison = b'{"recorded_at": 1, "lat": 1, "lon": 1, "vendor": "%s"}' % MARKER
    pub = Publisher(broker.url)
    first = IngestorProcess(env, tmp_path / "ingest-0.log", prelude=CRASH_PRELUDE).start()
    first.wait_subscribed()
    pub.publish_many(stream.message(s) for s in range(200))
    pub.publish(wire.positions_topic("GPS-T3"), poison)
    pub.publish_many(stream.message(s) for s in range(200, 400))
    pub.wait_all_acked()

    def quarantined() -> int:
        return int(
            scalar(fleet_url, "SELECT count(*) FROM dead_letter WHERE reason = 'quarantined'")
        )

    deaths, process = 0, first
    for start in range(1, max_attempts + 3):
        wait_for(
            lambda p=process: not p.running() or quarantined() > 0,  # type: ignore[misc]
            60,
            "a crash or the quarantine",
        )
        if process.running():
            break
        assert process.proc is not None and process.proc.returncode == -11, process.log()[-2000:]
        deaths += 1
        process = IngestorProcess(
            env, tmp_path / f"ingest-{start}.log", prelude=CRASH_PRELUDE
        ).start()
    assert deaths == max_attempts + 1, f"died {deaths} times"
    wait_for(lambda: scalar(fleet_url, "SELECT count(*) FROM position") >= 400, 60, "400 fixes")
    time.sleep(0.5)
    assert_exactly_once(fleet_url, stream, range(400))
    ((topic, reason, detail, payload),) = rows(
        fleet_url, "SELECT topic, reason, detail, payload FROM dead_letter"
    )
    assert (topic, reason, bytes(payload)) == (
        wire.positions_topic("GPS-T3"),
        "quarantined",
        poison,
    )
    assert f"stopped {max_attempts} times" in detail
    assert scalar(fleet_url, "SELECT count(*) FROM ingest_attempt") == 0
    # Acked: a restart gets nothing back, and the stream goes on.
    assert process.stop() == 0
    again = IngestorProcess(env, tmp_path / "ingest-last.log", prelude=CRASH_PRELUDE).start()
    again.wait_subscribed()
    pub.publish(*stream.message(400))
    pub.wait_all_acked()
    wait_for(lambda: scalar(fleet_url, "SELECT count(*) FROM position") == 401, 30, "fix 400")
    time.sleep(0.5)
    assert again.running() and quarantined() == 1
    assert again.stop() == 0
    pub.close()


def _pub(
    broker: PrivateMosquitto, payload_file: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-i", "vendor",
         "-t", wire.positions_topic("GPS-T4"), "-f", str(payload_file), *args],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_oversize_is_dead_lettered_up_to_the_broker_limit_and_refused_visibly_above(
    fleet_url: str, broker: PrivateMosquitto, tmp_path: Path
) -> None:
    """Clients the project did not write: a payload over the ingestor's limit but under
    the broker's packet limit is acknowledged and dead-lettered (oversize, every byte
    kept) — from mosquitto_pub (MQTT 3.1.1 and 5) and plain paho (MQTT 5); a packet over
    the broker's limit is refused visibly (mosquitto_pub fails, paho is disconnected);
    the ingestor goes on."""
    ingestor = IngestorProcess(ingest_env(fleet_url, broker.url), tmp_path / "ingest.log").start()
    ingestor.wait_subscribed()
    over_ingest = tmp_path / "over-ingest.json"
    over_ingest.write_bytes(b'{"pad": "' + b"x" * 300_000 + b'"}')
    for version in ("mqttv311", "mqttv5"):
        done = _pub(broker, over_ingest, "-V", version)
        assert done.returncode == 0 and not done.stderr, done.stderr
    near_broker = b"z" * (BROKER_MAX_PACKET_BYTES - 1000)
    acked: list[int] = []
    disconnects: list[int] = []
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="vendor-paho",
                         protocol=paho.MQTTv5)  # fmt: skip
    client.on_publish = lambda c, u, mid, rc, props: acked.append(rc.value)
    client.on_disconnect = lambda c, u, flags, rc, props: disconnects.append(rc.value)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        client.publish(wire.positions_topic("GPS-T4"), near_broker, qos=1)
        wait_for(lambda: bool(acked), 30, "the PUBACK")
        assert acked == [0] and disconnects == []
        client.publish(wire.positions_topic("GPS-T4"), near_broker + b"z" * 2000, qos=1)
        wait_for(lambda: bool(disconnects), 30, "the broker to refuse the packet")
        # 0x95 "packet too large" when paho reads the broker's DISCONNECT before the
        # socket closes under it, else 0x80 (connection lost); never an ack.
        assert disconnects[0] in (0x95, 0x80) and acked == [0], (disconnects, acked)
    finally:
        client.disconnect()
        client.loop_stop()
    too_big = tmp_path / "too-big.json"
    too_big.write_bytes(near_broker + b"z" * 2000)
    refused = _pub(broker, too_big, "-V", "mqttv311")
    assert refused.returncode != 0 and "connection was lost" in refused.stderr, refused
    good = tmp_path / "good.json"
    good.write_bytes(
        wire.encode_fixes(wire.Fix(recorded_at=datetime.now(UTC), lat=31.8, lon=117.2))
    )
    assert _pub(broker, good).returncode == 0
    wait_for(lambda: scalar(fleet_url, "SELECT count(*) FROM position") == 1, 30, "the good fix")
    wait_for(
        lambda: scalar(fleet_url, "SELECT count(*) FROM dead_letter") >= 3, 30, "3 dead letters"
    )
    dead = rows(
        fleet_url, "SELECT reason, detail, payload FROM dead_letter ORDER BY dead_letter_id"
    )
    assert [(r, bytes(p)) for r, _, p in dead] == [
        ("oversize", over_ingest.read_bytes()),
        ("oversize", over_ingest.read_bytes()),
        ("oversize", near_broker),
    ]
    assert all("exceeds the limit of 262144 bytes" in d for _, d, _ in dead)
    assert ingestor.running() and ingestor.stop() == 0


def test_the_shipped_and_the_test_broker_share_a_packet_limit_above_the_ingestors() -> None:
    """One limit: deploy/mosquitto carries fleet.devservers' number, which leaves room
    above the ingestor's payload limit, and no message_size_limit."""
    conf = (ROOT / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    settings = [line.split() for line in conf.splitlines() if line and not line.startswith("#")]
    assert ["max_packet_size", str(BROKER_MAX_PACKET_BYTES)] in settings
    assert not [s for s in settings if s[0] == "message_size_limit"]
    assert IngestSettings.model_fields["max_payload_bytes"].default < BROKER_MAX_PACKET_BYTES


def test_attempts_are_counted_per_distinct_message_and_settled_by_the_write(
    fleet_url: str,
) -> None:
    """The ledger counts a message received twice in one batch once, counts again on
    the next charge, and the batch that settles a message deletes its row."""
    db = Db(fleet_url, metrics=IngestMetrics(), stop=threading.Event())
    ledger = AttemptLedger(db)
    a, b = b"a" * 16, b"b" * 16
    ledger.charge([a, a, b], ["t/a", "t/a", "t/b"])
    ledger.charge([a], ["t/a"])
    assert ledger.attempts([a, b, b"c" * 16]) == {a: 2, b: 1}
    writer = BatchWriter(db, now=lambda: datetime.now(UTC))
    batch = Batch()
    batch.settled = [a]
    writer.write(batch)
    assert ledger.attempts([a, b]) == {b: 1}
    writer.close()
