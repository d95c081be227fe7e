"""Batch building, dead-letter text, rate-limited reason logging and ack scoping."""

from __future__ import annotations

import logging
import socket
import struct
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from paho.mqtt.client import ConnectFlags, DisconnectFlags, MQTTMessage
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from fleet.config import MqttTarget
from ingest import wire
from ingest.mqtt import Delivery, LeanClient, MqttConsumer
from ingest.service import ReasonLog, build_batch
from ingest.writer import clean_text, event_payload

NOW = datetime(2026, 5, 12, 8, 30, tzinfo=UTC)
TRUCKS = {"GPS-T1": "T1", "GPS-T3": "T3"}


def message(topic: str, payload: bytes, mid: int = 1) -> MQTTMessage:
    msg = MQTTMessage(mid=mid, topic=topic.encode())
    msg.payload = payload
    msg.qos = 1
    return msg


def batch_of(*items: tuple[str, bytes]) -> Any:
    decoder = wire.Decoder()
    window = decoder.window(NOW)
    deliveries = [Delivery(1, i + 1, 1, t.encode(), p, 0.0) for i, (t, p) in enumerate(items)]
    parsed = [decoder.parse(t, p, window) for t, p in items]
    return build_batch(deliveries, [t for t, _ in items], parsed, TRUCKS, NOW)


def fix(seconds_ago: int, **kw: Any) -> wire.Fix:
    return wire.Fix(recorded_at=NOW - timedelta(seconds=seconds_ago), lat=31.8, lon=117.2, **kw)


def test_rows_keep_wire_values_in_column_order_and_point_at_their_message() -> None:
    terminal = fix(
        4,
        altitude_m=-12.0,
        fuel_l=88.5,
        recorder_speed_kmh=31.5,
        signal_strength=27,
        satellites=11,
        door_locked=False,
        doors_open=(1, 3),
        extra={"jt808_E1": "0a0b"},
    )
    batch = batch_of(
        (wire.positions_topic("GPS-T1"), wire.encode_fixes(fix(5, speed_kmh=12.5, seq=3))),
        (wire.positions_topic("GPS-T1"), wire.encode_fixes([terminal, fix(3)])),
    )
    assert (
        batch.positions[0]
        == (
            "T1",
            NOW - timedelta(seconds=5),
            31.8,
            117.2,
            12.5,
            None,
            None,
            None,
            None,
            None,
            3,
        )
        + (None,) * 8
    )
    assert batch.positions[1][11:18] == (-12.0, 88.5, 31.5, 27, 11, False, [1, 3])
    assert batch.positions[1][18].obj == {"jt808_E1": "0a0b"}
    assert batch.positions_src == [0, 1, 1]
    assert batch.dead == []


def test_unknown_terminal_is_one_dead_letter_with_the_whole_message() -> None:
    payload = wire.encode_fixes([fix(4), fix(3)])
    batch = batch_of((wire.positions_topic("GPS-T2"), payload))
    assert batch.positions == []
    ((_, topic, reason, detail, raw),) = batch.dead
    assert (topic, reason, raw) == (wire.positions_topic("GPS-T2"), "unknown_terminal", payload)
    assert "GPS-T2" in detail


def test_a_gateway_batch_stores_each_fix_under_its_own_truck() -> None:
    """Items of two known terminals become rows of their trucks, all from one message."""
    batch = batch_of(
        (
            wire.gateway_positions_topic("jt808-1"),
            wire.encode_gateway_batch(
                [
                    wire.encode_gateway_fix(wire.gateway_item_prefix("GPS-T1"), fix(5, seq=1)),
                    wire.encode_gateway_fix(wire.gateway_item_prefix("GPS-T3"), fix(5, seq=2)),
                ]
            ),
        )
    )
    assert [(row[0], row[10]) for row in batch.positions] == [("T1", 1), ("T3", 2)]
    assert batch.positions_src == [0, 0] and batch.dead == []


def test_an_unknown_terminal_in_a_gateway_batch_is_a_dead_letter_of_that_item_alone() -> None:
    """The item naming no truck is kept with its own bytes; its neighbours are stored."""
    items = [
        wire.encode_gateway_fix(wire.gateway_item_prefix(terminal), fix(5, seq=k))
        for k, terminal in enumerate(["GPS-T1", "GPS-NONE", "GPS-T3"])
    ]
    topic = wire.gateway_positions_topic("jt808-1")
    batch = batch_of((topic, wire.encode_gateway_batch(items)))
    assert [(row[0], row[10]) for row in batch.positions] == [("T1", 0), ("T3", 2)]
    ((_, dead_topic, reason, detail, raw),) = batch.dead
    assert (dead_topic, reason, raw) == (topic, "unknown_terminal", items[1])
    assert "GPS-NONE" in detail


def test_rejected_fix_is_a_dead_letter_next_to_the_stored_ones() -> None:
    bad = b'{"recorded_at":"2026-05-12T08:29:00Z","lat":95,"lon":1}'
    good = wire.encode_fixes(fix(10)).decode()
    batch = batch_of((wire.positions_topic("GPS-T1"), f"[{good},{bad.decode()}]".encode()))
    assert len(batch.positions) == 1
    assert [(d[2], d[4]) for d in batch.dead] == [("out_of_range", bad)]


def test_events_and_status_become_their_rows() -> None:
    event = wire.Event(recorded_at=NOW, kind="bin_lift", point_id="P7", lat=31.8, lon=117.2)
    batch = batch_of(
        (wire.events_topic("GPS-T1"), wire.encode_events(event)),
        (wire.status_topic("GPS-T1"), wire.encode_status("offline")),
    )
    ((truck, at, kind, point, station, tag, weight, payload),) = batch.events
    assert (truck, at, kind, point, station, tag, weight) == (
        "T1",
        NOW,
        "bin_lift",
        "P7",
        None,
        None,
        None,
    )
    assert payload.obj == {"lat": 31.8, "lon": 117.2}
    assert batch.statuses == [("GPS-T1", "T1", "offline", NOW, False)]  # no `at`: receive time


def test_event_payload_is_null_without_vendor_fields_or_position() -> None:
    assert event_payload(None, None, None) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("nul\x00here", "nul\\x00here"),
        ("lone \udc80 surrogate", "lone \\udc80 surrogate"),
    ],
)
def test_clean_text_is_always_storable(text: str, expected: str) -> None:
    assert clean_text(text) == expected
    clean_text(text).encode("utf-8")


def test_reason_log_reports_once_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = ReasonLog(interval_s=60)
    with caplog.at_level(logging.WARNING):
        assert log.note("oversize", "t", "d", now=0.0)
        assert not log.note("oversize", "t", "d", now=10.0)
        assert not log.note("oversize", "t", "d", now=20.0)
        assert log.note("malformed_json", "t", "d", now=21.0)
        assert log.note("oversize", "t", "d", now=61.0)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert "and 2 more since the last report" in lines[2]


# ----------------------------------------------------------------------------- acks


def consumer() -> MqttConsumer:
    return MqttConsumer(
        MqttTarget("mqtt://127.0.0.1:1"),
        client_id="unit",
        filters=wire.subscription_filters(None),
        receive_maximum=100,
        session_expiry_s=60,
    )


def connect(c: MqttConsumer) -> None:
    c._client.subscribe = lambda *a, **k: (0, 1)  # type: ignore[method-assign,assignment]
    c._on_connect(
        c._client,
        None,
        ConnectFlags(session_present=False),
        ReasonCode(PacketTypes.CONNACK, identifier=0),
        None,
    )


def disconnect(c: MqttConsumer) -> None:
    c._on_disconnect(
        c._client,
        None,
        DisconnectFlags(is_disconnect_packet_from_server=False),
        ReasonCode(PacketTypes.DISCONNECT, identifier=0),
        None,
    )


def sent_acks(c: MqttConsumer) -> list[int]:
    data = b"".join(p["packet"] for p in c._client._out_packet)
    return [struct.unpack("!BBH", data[i : i + 4])[2] for i in range(0, len(data), 4)]


def test_acks_go_out_as_one_write_for_the_current_connection_only() -> None:
    c = consumer()
    connect(c)
    for mid in (7, 8, 9):
        c._on_message(c._client, None, message("t", b"", mid))
    old = list(c.inbox)
    disconnect(c)
    connect(c)
    c._on_message(c._client, None, message("t", b"", 7))  # redelivered under the same id
    new = [c.inbox[-1]]
    assert c.ack(old) == 0, "ids from an earlier connection may now name other messages"
    assert c.ack(new) == 1
    assert sent_acks(c) == [7]
    assert len(c._client._out_packet) == 1


def test_nothing_is_acked_while_disconnected() -> None:
    c = consumer()
    connect(c)
    c._on_message(c._client, None, message("t", b"", 3))
    disconnect(c)
    assert c.ack(list(c.inbox)) == 0 and sent_acks(c) == []


def test_bad_credentials_are_fatal() -> None:
    c = consumer()
    c._client.disconnect = lambda *a, **k: 0  # type: ignore[method-assign,assignment]
    c._on_connect(
        c._client,
        None,
        ConnectFlags(session_present=False),
        ReasonCode(PacketTypes.CONNACK, identifier=134),
        None,
    )
    assert c.fatal is not None and "bad user name or password" in c.fatal
    assert not c.wait_connected(0.2)


def test_refused_subscription_is_fatal() -> None:
    c = consumer()
    c._client.disconnect = lambda *a, **k: 0  # type: ignore[method-assign,assignment]
    codes = [
        ReasonCode(PacketTypes.SUBACK, identifier=1),
        ReasonCode(PacketTypes.SUBACK, identifier=135),
    ]
    c._on_subscribe(c._client, None, 1, codes, None)
    assert c.fatal is not None and "events" in c.fatal


def test_callbacks_never_raise() -> None:
    c = consumer()
    broken: Any = SimpleNamespace()  # no subscribe(): on_connect must log, not raise
    c._on_connect(
        broken,
        None,
        ConnectFlags(session_present=False),
        ReasonCode(PacketTypes.CONNACK, identifier=0),
        None,
    )
    c._on_subscribe(c._client, None, 1, None, None)  # type: ignore[arg-type]


# ----------------------------------------------------------------- the lean receive path


def publish_packet(topic: bytes, payload: bytes, qos: int, mid: int, props: bytes = b"") -> bytes:
    """A raw MQTT 5 PUBLISH packet, as the broker sends it."""
    body = struct.pack("!H", len(topic)) + topic
    if qos:
        body += struct.pack("!H", mid)
    body += bytes([len(props)]) + props + payload
    length, rem = b"", len(body)
    while True:  # variable byte integer
        byte, rem = rem % 128, rem // 128
        length += bytes([byte | (128 if rem else 0)])
        if not rem:
            break
    return bytes([0x30 | qos << 1]) + length + body


@pytest.fixture
def wired() -> Any:
    """A connected consumer whose client reads from one end of a socket pair."""
    c = consumer()
    connect(c)
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    c._client._sock = ours
    yield c, broker
    broker.close()
    ours.close()


def read_all(c: MqttConsumer) -> None:
    assert c._client.loop_read() == 0


def test_lean_client_is_used_and_takes_plain_publishes_straight_to_the_inbox(wired: Any) -> None:
    c, broker = wired
    assert isinstance(c._client, LeanClient)
    big = b"x" * 70_000  # longer than one read chunk
    broker.sendall(
        publish_packet(b"clearday/v1/trucks/A/positions", b'{"lat":1}', 1, 7)
        + publish_packet(b"clearday/v1/trucks/B/positions", big, 1, 8)
        + publish_packet(b"clearday/v1/trucks/C/events", b"[]", 0, 0)
    )
    read_all(c)
    got = [(d.mid, d.qos, d.topic, d.payload) for d in c.inbox]
    assert got == [
        (7, 1, b"clearday/v1/trucks/A/positions", b'{"lat":1}'),
        (8, 1, b"clearday/v1/trucks/B/positions", big),
        (0, 0, b"clearday/v1/trucks/C/events", b"[]"),
    ]
    assert all(d.gen == c._gen for d in c.inbox)


def test_a_packet_split_across_reads_is_put_together(wired: Any) -> None:
    c, broker = wired
    packet = publish_packet(b"t/1", b"payload", 1, 300)
    for cut in (1, 2, 5, len(packet) - 1):
        c.inbox.clear()
        broker.sendall(packet[:cut])
        read_all(c)
        assert not c.inbox
        broker.sendall(packet[cut:])
        read_all(c)
        assert [(d.mid, d.payload) for d in c.inbox] == [(300, b"payload")]


def test_publishes_with_properties_or_qos2_take_paho_s_own_path(wired: Any) -> None:
    c, broker = wired
    content_type = bytes([0x03]) + struct.pack("!H", 4) + b"json"  # property 3: content type
    broker.sendall(
        publish_packet(b"t/props", b"p1", 1, 11, content_type)
        + publish_packet(b"t/two", b"p2", 2, 12)
    )
    read_all(c)
    assert [(d.mid, d.qos, d.topic, d.payload) for d in c.inbox] == [(11, 1, b"t/props", b"p1")]
    assert 12 in c._client._in_messages  # QoS 2 waits for PUBREL, as in stock paho


def test_a_topic_that_is_not_utf8_still_reaches_the_inbox(wired: Any) -> None:
    c, broker = wired
    broker.sendall(publish_packet(b"t/\xff", b"p", 1, 5))
    read_all(c)
    assert [d.topic for d in c.inbox] == [b"t/\xff"]


def test_closing_the_socket_drops_bytes_read_from_the_old_connection(wired: Any) -> None:
    c, broker = wired
    packet = publish_packet(b"t/1", b"payload", 1, 9)
    broker.sendall(packet * 2)
    c._client._sock_recv(3)  # as if the connection broke mid-packet
    assert c._client._rdata
    c._client._sock_close()
    assert c._client._rdata == b"" and c._client._rpos == 0


def test_redelivered_publish_carries_the_dup_flag_on_the_fast_path(wired: Any) -> None:
    """The broker marks a message it sends again with DUP; the quarantine keys on it."""
    c, broker = wired
    packet = publish_packet(b"t/1", b"again", 1, 21)
    broker.sendall(publish_packet(b"t/1", b"first", 1, 20) + bytes([packet[0] | 0x08]) + packet[1:])
    read_all(c)
    assert [(d.mid, d.dup) for d in c.inbox] == [(20, False), (21, True)]


def test_a_message_whose_rows_cannot_be_built_is_a_dead_letter_and_the_rest_are_kept() -> None:
    """A failure while building one message's rows (here: an item that is not a Fix)
    costs that message only, rows it had added are taken back."""
    decoder = wire.Decoder()
    window = decoder.window(NOW)
    good = (wire.positions_topic("GPS-T1"), wire.encode_fixes(fix(5)))
    odd = (wire.positions_topic("GPS-T1"), b"odd")
    parsed = [decoder.parse(*good, window), wire.Parsed(wire.Channel.POSITIONS, "GPS-T1",
              [wire.Fix(recorded_at=NOW, lat=1.0, lon=1.0), "not a fix"], [])]  # fmt: skip
    deliveries = [Delivery(1, i + 1, 1, t.encode(), p, 0.0) for i, (t, p) in enumerate([good, odd])]
    batch = build_batch(deliveries, [good[0], odd[0]], parsed, TRUCKS, NOW)
    assert len(batch.positions) == 1 and batch.positions_src == [0]
    ((_, _, reason, detail, raw),) = batch.dead
    assert (reason, raw) == ("decoder_failed", b"odd") and "AttributeError" in detail
