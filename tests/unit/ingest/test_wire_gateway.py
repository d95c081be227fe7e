"""A gateway's batch (clearday/v1/gateways/{gateway_id}/positions): the fixes of many
terminals in one message, each item naming its terminal; one bad item costs only itself."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import wire
from ingest.wire import Channel, Fix, Reason
from tests.unit.ingest.test_wire import NOW, NOW_S, fix_like, hostile_leaf, json_value

GW = "clearday/v1/gateways/jt808-1/positions"
TERMINAL_IDS = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def item(terminal_id: object, **over: object) -> dict[str, object]:
    obj: dict[str, object] = {
        "terminal_id": terminal_id,
        "recorded_at": "2026-05-12T16:29:50+08:00",
        "lat": 31.82,
        "lon": 117.29,
    }
    obj.update(over)
    return obj


def test_the_gateway_topic_is_built_and_parsed_by_its_gateway_id() -> None:
    """The builder and the parser agree; the reference names the gateway, not a terminal."""
    assert wire.gateway_positions_topic("jt808-1") == GW
    assert wire.parse_topic(GW) == wire.TopicRef(Channel.POSITIONS, None, "jt808-1")


@pytest.mark.parametrize(
    "bad",
    [
        "clearday/v1/gateways/jt808-1/events",
        "clearday/v1/gateways/jt808-1/status",
        "clearday/v1/gateways//positions",
        "clearday/v1/gateways/a/b/positions",
        "clearday/v1/gateways/-x/positions",
        "clearday/v1/gateways/jt808-1",
    ],
)
def test_a_malformed_gateway_topic_is_a_bad_topic(bad: str) -> None:
    """Only positions, under one well-formed gateway id."""
    with pytest.raises(wire.BadMessage) as info:
        wire.parse_topic(bad)
    assert info.value.reason is Reason.BAD_TOPIC


def test_the_gateway_topic_builder_refuses_ids_that_would_break_the_topic_tree() -> None:
    """An id with a separator or wildcard never becomes a topic."""
    for bad in ("a/b", "+", "#", "", "x" * 65):
        with pytest.raises(ValueError, match="gateway id"):
            wire.gateway_positions_topic(bad)


def test_the_ingestor_subscribes_to_the_gateway_topics_too() -> None:
    """Plain and shared subscriptions include every gateway's positions."""
    assert "clearday/v1/gateways/+/positions" in wire.subscription_filters(None)
    assert "$share/g/clearday/v1/gateways/+/positions" in wire.subscription_filters("g")


def test_each_item_goes_with_its_own_terminal_and_place() -> None:
    """Items of several terminals decode to (terminal id, fix, element index)."""
    payload = json.dumps([item("GPS-T1", seq=1), item("GPS-T2", seq=2)]).encode()
    parsed = wire.parse_gateway_fixes(GW, payload, now=NOW)
    assert parsed.rejections == [] and parsed.gateway_id == "jt808-1"
    assert parsed.terminal_id is None and parsed.channel is Channel.POSITIONS
    assert [(i.terminal_id, i.fix.seq, i.element) for i in parsed.items] == [
        ("GPS-T1", 1, 0),
        ("GPS-T2", 2, 1),
    ]


def test_a_bad_item_is_rejected_alone_with_its_own_bytes() -> None:
    """Missing or malformed terminal ids and bad fields reject their item; the rest stay."""
    elements = [
        json.dumps(item("GPS-T1")).encode(),
        json.dumps(item("GPS T2")).encode(),  # a space: not a terminal id
        json.dumps({"recorded_at": NOW_S, "lat": 31.8, "lon": 117.2}).encode(),
        json.dumps(item("GPS-T3", lat=123)).encode(),
        json.dumps(item(7)).encode(),
        b"5",
        json.dumps(item("GPS-T4", seq=4)).encode(),
    ]
    parsed = wire.parse_gateway_fixes(GW, b"[" + b",".join(elements) + b"]", now=NOW)
    assert [(i.terminal_id, i.element) for i in parsed.items] == [("GPS-T1", 0), ("GPS-T4", 6)]
    assert [(r.index, r.reason.value, r.raw) for r in parsed.rejections] == [
        (1, "bad_value", elements[1]),
        (2, "missing_field", elements[2]),
        (3, "out_of_range", elements[3]),
        (4, "wrong_type", elements[4]),
        (5, "wrong_type", elements[5]),
    ]
    assert "terminal_id" in parsed.rejections[0].detail


def test_a_truck_topic_and_a_gateway_topic_are_not_mistaken_for_each_other() -> None:
    """parse_fixes wants a truck's topic, parse_gateway_fixes a gateway's."""
    truck_payload = json.dumps({"recorded_at": NOW_S, "lat": 31.8, "lon": 117.2}).encode()
    gateway_payload = json.dumps([item("GPS-T1")]).encode()
    wrong = wire.parse_fixes(GW, gateway_payload, now=NOW)
    assert wrong.items == [] and [r.reason for r in wrong.rejections] == [Reason.BAD_TOPIC]
    wrong2 = wire.parse_gateway_fixes(wire.positions_topic("GPS-T1"), truck_payload, now=NOW)
    assert wrong2.items == [] and [r.reason for r in wrong2.rejections] == [Reason.BAD_TOPIC]


def test_an_oversize_batch_is_one_rejection_naming_the_gateway() -> None:
    """The payload limit applies to the whole message."""
    payload = json.dumps([item("GPS-T1")] * 10).encode()
    parsed = wire.parse_gateway_fixes(
        GW, payload, now=NOW, limits=wire.Limits(max_payload_bytes=100)
    )
    assert [r.reason for r in parsed.rejections] == [Reason.OVERSIZE]
    assert parsed.gateway_id == "jt808-1" and parsed.rejections[0].raw == payload


fixes = st.builds(
    Fix,
    recorded_at=st.datetimes(
        min_value=datetime(2026, 5, 6), max_value=datetime(2026, 5, 12, 8, 30), timezones=st.just(UTC)
    ),
    lat=st.floats(min_value=-90, max_value=90).filter(lambda x: x != 0),
    lon=st.floats(min_value=-180, max_value=180),
    speed_kmh=st.none() | st.floats(min_value=0, max_value=400),
    load_state=st.none() | st.sampled_from(["empty", "half", "full"]),
    seq=st.none() | st.integers(min_value=0, max_value=2**63 - 1),
    doors_open=st.none() | st.lists(st.integers(1, 5), max_size=5).map(tuple),
    extra=st.none() | st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: "\x00" not in k), st.text(max_size=8).filter(lambda v: "\x00" not in v), max_size=3),
)  # fmt: skip


@settings(max_examples=200)
@given(st.lists(st.tuples(TERMINAL_IDS, fixes), min_size=1, max_size=20))
def test_whatever_the_gateway_encodes_the_ingestor_decodes_unchanged(
    pairs: list[tuple[str, Fix]],
) -> None:
    """encode_gateway_fix / encode_gateway_batch round-trip through the decoder."""
    payload = wire.encode_gateway_batch(
        [wire.encode_gateway_fix(wire.gateway_item_prefix(t), f) for t, f in pairs]
    )
    parsed = wire.parse_gateway_fixes(GW, payload, now=NOW)
    assert parsed.rejections == []
    assert [(i.terminal_id, i.fix, i.element) for i in parsed.items] == [
        (t, f, k) for k, (t, f) in enumerate(pairs)
    ]


def test_the_encoder_refuses_what_it_cannot_write_correctly() -> None:
    """A bad terminal id, a naive time, an empty batch: ValueError, not a broken payload."""
    with pytest.raises(ValueError):
        wire.gateway_item_prefix('a"b')
    naive = Fix(recorded_at=datetime(2026, 5, 12, 8), lat=1.0, lon=1.0)
    with pytest.raises(ValueError):
        wire.encode_gateway_fix(wire.gateway_item_prefix("GPS-T1"), naive)
    with pytest.raises(ValueError):
        wire.encode_gateway_batch([])


def _obj(fields: list[tuple[str, bytes]]) -> bytes:
    return b"{" + b",".join(json.dumps(k).encode() + b":" + v for k, v in fields) + b"}"


hostile_terminal = st.one_of(TERMINAL_IDS.map(lambda t: json.dumps(t).encode()), hostile_leaf)
hostile_item = st.tuples(
    hostile_terminal,
    st.lists(
        st.tuples(st.sampled_from(["recorded_at", "lat", "lon", "speed_kmh", "seq", "extra"]), hostile_leaf),
        max_size=4,
    ),
).map(
    lambda tf: _obj(
        [("terminal_id", tf[0]), ("recorded_at", b"%d" % NOW_S), ("lat", b"31.8"), ("lon", b"117.2"), *tf[1]]
    )
)  # fmt: skip
hostile_batch = st.one_of(
    hostile_item,
    st.lists(hostile_item, min_size=1, max_size=6).map(lambda xs: b"[" + b",".join(xs) + b"]"),
    hostile_leaf,
    st.binary(max_size=200),
    st.one_of(json_value, fix_like, st.lists(st.one_of(fix_like, json_value), max_size=5)).map(
        lambda o: json.dumps(o, ensure_ascii=False).encode("utf-8", "surrogatepass")
    ),
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_batch)
def test_hostile_batches_never_raise_and_every_element_is_accounted_for(payload: bytes) -> None:
    """Arbitrary bytes, hostile numbers, strings, terminal ids and nesting: the decoder
    returns items and rejections, each element of an array exactly once, a whole-message
    rejection carries the payload, and every item accepted names a valid terminal."""
    parsed = wire.parse_gateway_fixes(GW, payload, now=NOW)
    assert all(isinstance(r.reason, Reason) and r.detail for r in parsed.rejections)
    assert parsed.items or parsed.rejections
    whole = [r for r in parsed.rejections if r.index is None]
    if whole:
        assert parsed.items == [] and len(parsed.rejections) == 1 and whole[0].raw == payload
        return
    try:
        n = len(msgspec.json.decode(payload, type=list[msgspec.Raw]))
    except msgspec.ValidationError:  # one value, not an array
        n = 1
    places = sorted([i.element for i in parsed.items] + [r.index or 0 for r in parsed.rejections])
    assert places == list(range(n))
    for accepted in parsed.items:
        assert wire.is_valid_terminal_id(accepted.terminal_id)
        assert NOW - timedelta(days=7) <= accepted.fix.recorded_at <= NOW + timedelta(minutes=5)
        assert "\\u0000" not in msgspec.json.encode(accepted.fix).decode()
