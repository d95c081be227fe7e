"""MQTT packets written by hand (the gateway's publisher) and split from a stream;
packet ids never reused while the broker may still answer for them."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest import mqttpacket as mp
from ingest.jt808.broker import MAX_PACKET_ID, _Message, _Session


def test_varint_matches_the_standards_examples() -> None:
    """MQTT 5 §1.5.5: 0, 127, 128, 16383, 16384, 2097151, 2097152, 268435455."""
    assert mp.varint(0) == b"\x00"
    assert mp.varint(127) == b"\x7f"
    assert mp.varint(128) == b"\x80\x01"
    assert mp.varint(16_383) == b"\xff\x7f"
    assert mp.varint(16_384) == b"\x80\x80\x01"
    assert mp.varint(2_097_151) == b"\xff\xff\x7f"
    assert mp.varint(2_097_152) == b"\x80\x80\x80\x01"
    assert mp.varint(268_435_455) == b"\xff\xff\xff\x7f"
    with pytest.raises(ValueError):
        mp.varint(268_435_456)


def test_publish_qos1_layout() -> None:
    """Fixed header 0x32 (0x33 retained), length, topic, packet id, empty properties
    (MQTT 5), payload."""
    packet = mp.publish_qos1(mp.string("a/b"), 0x1234, b"xyz")
    assert packet == b"\x32\x0b\x00\x03a/b\x12\x34\x00xyz"
    assert mp.publish_qos1(mp.string("a/b"), 1, b"", retain=True)[0] == 0x33
    assert mp.publish_qos1(mp.string("a/b"), 1, b"", version=4) == b"\x32\x07\x00\x03a/b\x00\x01"


def test_connect_layout() -> None:
    packet = mp.connect("gw", username="u", password="p", keepalive_s=30)
    body = b"\x00\x04MQTT\x05\xc2\x00\x1e\x00" + b"\x00\x02gw" + b"\x00\x01u" + b"\x00\x01p"
    assert packet == b"\x10" + bytes([len(body)]) + body


def _connack_with_properties() -> bytes:
    props = Properties(PacketTypes.CONNACK)
    props.ReceiveMaximum = 100
    props.TopicAliasMaximum = 10
    body = b"\x00\x00" + props.pack()
    return b"\x20" + mp.varint(len(body)) + body


@given(
    st.lists(st.binary(max_size=300), min_size=1, max_size=20),
    st.lists(st.integers(1, 50), min_size=1, max_size=200),
)
def test_any_chunking_yields_the_same_packets(payloads: list[bytes], cuts: list[int]) -> None:
    packets = [mp.publish_qos1(mp.string("t"), i + 1, p) for i, p in enumerate(payloads)]
    packets += [mp.PINGREQ_PACKET, b"\x40\x02\x00\x07", _connack_with_properties()]
    stream = b"".join(packets)
    splitter = mp.PacketSplitter()
    got: list[tuple[int, bytes]] = []
    pos = i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        got += splitter.feed(stream[pos : pos + step])
        pos, i = pos + step, i + 1
    assert [bytes([first]) + mp.varint(len(body)) + body for first, body in got] == packets


def test_a_malformed_or_huge_length_is_refused() -> None:
    with pytest.raises(ValueError):
        mp.PacketSplitter().feed(b"\x30\xff\xff\xff\xff\x01")
    with pytest.raises(ValueError):
        mp.PacketSplitter(max_packet_bytes=10).feed(b"\x30\x0b")


def test_packet_ids_skip_those_in_flight_or_awaiting_a_late_puback() -> None:
    """After wrapping past 65,535 the allocator skips an id still in flight and one
    whose PUBACK timed out (the broker may still answer it); there is room only below
    the Receive Maximum, counting both."""
    session = _Session(link=None, receive_maximum=4)  # type: ignore[arg-type]
    session.next_id = MAX_PACKET_ID - 1
    session.inflight[MAX_PACKET_ID] = _Message(b"", b"", False, print, 0.0)
    session.stale.update({1, 3})
    assert session.take_id() == MAX_PACKET_ID - 1
    assert session.take_id() == 2  # 65535 in flight, 1 stale
    assert session.take_id() == 4
    assert len(session.inflight) + len(session.stale) == 3 and session.has_room
    session.stale.add(5)
    assert not session.has_room
    assert struct.unpack(">H", mp.publish_qos1(mp.string("t"), 4, b"")[5:7]) == (4,)
