"""The wire format: topics, decoding with per-fix rejections, and encode/decode round trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import wire
from ingest.wire import Channel, Event, Fix, Limits, Reason

NOW = datetime(2026, 5, 12, 8, 30, tzinfo=UTC)
BJT = timezone(timedelta(hours=8))
POS = "clearday/v1/trucks/GPS-T1/positions"
EVT = "clearday/v1/trucks/GPS-T1/events"
STA = "clearday/v1/trucks/GPS-T1/status"


def fix_obj(**over: object) -> dict[str, object]:
    obj: dict[str, object] = {
        "recorded_at": "2026-05-12T16:29:50+08:00",
        "lat": 31.82,
        "lon": 117.29,
    }
    obj.update(over)
    return obj


def enc(obj: object) -> bytes:
    return json.dumps(obj).encode()


def reasons(parsed: wire.Parsed[Any]) -> list[str]:
    return [r.reason.value for r in parsed.rejections]


# ----------------------------------------------------------------------------- topics


def test_topic_builders_and_parser_agree() -> None:
    for channel in Channel:
        name = wire.topic(channel, "GPS-T1")
        assert name == f"clearday/v1/trucks/GPS-T1/{channel.value}"
        assert wire.parse_topic(name) == wire.TopicRef(channel, "GPS-T1")


@pytest.mark.parametrize(
    "bad",
    [
        "clearday/v1/trucks/GPS-T1/unknown",
        "clearday/v2/trucks/GPS-T1/positions",
        "clearday/v1/trucks//positions",
        "clearday/v1/trucks/a/b/positions",
        "clearday/v1/trucks/-x/positions",
        "other/topic",
    ],
)
def test_parse_topic_rejects_foreign_topics(bad: str) -> None:
    with pytest.raises(wire.BadMessage) as info:
        wire.parse_topic(bad)
    assert info.value.reason is Reason.BAD_TOPIC


def test_topic_builder_refuses_ids_that_would_break_the_topic_tree() -> None:
    for bad in ("a/b", "+", "#", "", "x" * 65, "空格 id"):
        with pytest.raises(ValueError):
            wire.positions_topic(bad)


def test_subscription_filters_plain_and_shared() -> None:
    assert wire.subscription_filters(None) == [
        "clearday/v1/trucks/+/positions",
        "clearday/v1/trucks/+/events",
        "clearday/v1/trucks/+/status",
        "clearday/v1/gateways/+/positions",
    ]
    assert wire.subscription_filters("ingest")[0] == "$share/ingest/clearday/v1/trucks/+/positions"
    with pytest.raises(ValueError):
        wire.subscription_filters("a/b")


# ----------------------------------------------------------------------------- fixes


def test_single_fix_with_offset_time_decodes_to_aware_utc_equal_time() -> None:
    parsed = wire.parse_fixes(POS, enc(fix_obj(speed_kmh=23.5, load_state="half", seq=7)), now=NOW)
    assert parsed.rejections == [] and parsed.terminal_id == "GPS-T1"
    (fix,) = parsed.items
    assert fix.recorded_at == datetime(2026, 5, 12, 8, 29, 50, tzinfo=UTC)
    assert (fix.lat, fix.lon, fix.speed_kmh, fix.load_state, fix.seq) == (
        31.82,
        117.29,
        23.5,
        "half",
        7,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1778574590, datetime(2026, 5, 12, 8, 29, 50, tzinfo=UTC)),
        (1778574590.25, datetime(2026, 5, 12, 8, 29, 50, 250000, tzinfo=UTC)),
        (1778574590250, datetime(2026, 5, 12, 8, 29, 50, 250000, tzinfo=UTC)),
        ("2026-05-12T08:29:50Z", datetime(2026, 5, 12, 8, 29, 50, tzinfo=UTC)),
    ],
)
def test_device_time_accepts_epoch_seconds_milliseconds_and_rfc3339(
    value: object, expected: datetime
) -> None:
    (fix,) = wire.parse_fixes(POS, enc(fix_obj(recorded_at=value)), now=NOW).items
    assert fix.recorded_at == expected


def test_array_with_one_bad_fix_keeps_the_good_ones_and_names_the_bad_one() -> None:
    payload = enc([fix_obj(), fix_obj(lat=123.0), fix_obj(recorded_at="2026-05-12T16:29:55+08:00")])
    parsed = wire.parse_fixes(POS, payload, now=NOW)
    assert len(parsed.items) == 2
    (rej,) = parsed.rejections
    assert rej.reason is Reason.OUT_OF_RANGE and rej.index == 1
    assert json.loads(rej.raw) == fix_obj(lat=123.0)
    assert rej.detail.startswith("fix 1 of 3")


def test_array_element_rejected_after_typed_decoding_keeps_its_exact_bytes() -> None:
    good = b'{"recorded_at":"2026-05-12T16:29:50+08:00","lat":31.82,"lon":117.29}'
    zero = b'{"recorded_at":  1778574590, "lat":0, "lon":0.0}'
    parsed = wire.parse_fixes(POS, b"[" + good + b"," + zero + b"]", now=NOW)
    assert len(parsed.items) == 1
    assert parsed.rejections[0].reason is Reason.NULL_ISLAND
    assert parsed.rejections[0].raw == zero


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", Reason.MALFORMED_JSON),
        (b"\xff\xfe\x00", Reason.MALFORMED_JSON),
        (b"", Reason.MALFORMED_JSON),
        (b"42", Reason.BAD_SHAPE),
        (b'"text"', Reason.BAD_SHAPE),
        (b"[]", Reason.BAD_SHAPE),
        (enc({"lat": 31.8, "lon": 117.2}), Reason.MISSING_FIELD),
        (enc(fix_obj(lat="31.8")), Reason.WRONG_TYPE),
        (enc(fix_obj(ignition="yes")), Reason.WRONG_TYPE),
        (enc(fix_obj(seq=1.5)), Reason.WRONG_TYPE),
        (enc(fix_obj(lat=90.0001)), Reason.OUT_OF_RANGE),
        (enc(fix_obj(lon=-180.5)), Reason.OUT_OF_RANGE),
        (enc(fix_obj(speed_kmh=-3)), Reason.OUT_OF_RANGE),
        (enc(fix_obj(heading_deg=361)), Reason.OUT_OF_RANGE),
        (enc(fix_obj(load_state="overflowing")), Reason.BAD_VALUE),
        (enc(fix_obj(lat=0, lon=0)), Reason.NULL_ISLAND),
        (enc(fix_obj(recorded_at="2026-05-12T16:29:50")), Reason.BAD_TIME),
        (enc(fix_obj(recorded_at="yesterday")), Reason.BAD_TIME),
        (enc(fix_obj(recorded_at="2026-05-12T08:40:00Z")), Reason.TIME_IN_FUTURE),
        (enc(fix_obj(recorded_at="2026-04-01T00:00:00Z")), Reason.TIME_TOO_OLD),
        (enc(fix_obj(recorded_at=0)), Reason.TIME_TOO_OLD),
        (b'{"recorded_at":1778574590,"lat":1e999,"lon":2}', Reason.OUT_OF_RANGE),
    ],
)
def test_bad_fix_is_rejected_with_its_reason(payload: bytes, reason: Reason) -> None:
    parsed = wire.parse_fixes(POS, payload, now=NOW)
    assert parsed.items == []
    assert reasons(parsed) == [reason.value]
    assert parsed.rejections[0].raw == payload


def test_oversize_payload_is_rejected_before_decoding() -> None:
    payload = enc([fix_obj(seq=i) for i in range(100)])
    parsed = wire.parse_fixes(POS, payload, now=NOW, limits=Limits(max_payload_bytes=1000))
    assert reasons(parsed) == ["oversize"] and parsed.items == []


def test_time_window_follows_limits() -> None:
    payload = enc(fix_obj(recorded_at="2026-05-12T08:31:00Z"))
    assert wire.parse_fixes(POS, payload, now=NOW).items
    strict = Limits(max_future_s=10)
    assert reasons(wire.parse_fixes(POS, payload, now=NOW, limits=strict)) == ["time_in_future"]


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    parsed = wire.parse_fixes(POS, enc(fix_obj(satellites=9, hdop=0.8)), now=NOW)
    assert len(parsed.items) == 1 and parsed.rejections == []


def test_positions_payload_on_the_events_topic_is_a_bad_topic_for_parse_fixes() -> None:
    parsed = wire.parse_fixes(EVT, enc(fix_obj()), now=NOW)
    assert reasons(parsed) == ["bad_topic"]


def test_message_on_a_foreign_topic_is_rejected_whole() -> None:
    parsed = wire.parse_message("clearday/v1/trucks/GPS T1/positions", b"{}", now=NOW)
    assert parsed.channel is None and reasons(parsed) == ["bad_topic"]


# ----------------------------------------------------------------------------- events/status


def test_events_decode_and_keep_vendor_fields_as_extra() -> None:
    payload = enc(
        [
            {"recorded_at": "2026-05-12T16:20:00+08:00", "kind": "bin_lift", "point_id": "P1"},
            {
                "recorded_at": "2026-05-12T16:25:00+08:00",
                "kind": "weighbridge",
                "station_id": "S1",
                "weight_kg": 5230.5,
                "ticket_no": "磅单-0042",
            },
            {"recorded_at": "2026-05-12T16:26:00+08:00", "kind": "rfid"},
        ]
    )
    parsed = wire.parse_events(EVT, payload, now=NOW)
    assert [e.kind for e in parsed.items] == ["bin_lift", "weighbridge"]
    assert parsed.items[1].extra == {"ticket_no": "磅单-0042"}
    assert reasons(parsed) == ["missing_field"] and parsed.rejections[0].index == 2


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"recorded_at": "2026-05-12T16:20:00+08:00", "kind": "dump"}, Reason.BAD_VALUE),
        ({"recorded_at": "2026-05-12T16:20:00+08:00", "kind": "weighbridge"}, Reason.MISSING_FIELD),
        (
            {"recorded_at": "2026-05-12T16:20:00+08:00", "kind": "bin_lift", "point_id": "a\x00"},
            Reason.BAD_VALUE,
        ),
        (
            {"recorded_at": "2026-05-12T16:20:00+08:00", "kind": "bin_lift", "note": "\x00"},
            Reason.BAD_VALUE,
        ),
        (
            {"recorded_at": "2026-05-12T16:20:00+08:00", "kind": "bin_lift", "lat": 31.8},
            Reason.MISSING_FIELD,
        ),
        (
            {"recorded_at": "2026-05-12T16:20:00+08:00", "kind": "bin_lift", "point_id": ""},
            Reason.BAD_VALUE,
        ),
        ({"kind": "bin_lift"}, Reason.MISSING_FIELD),
    ],
)
def test_bad_event_is_rejected_with_its_reason(obj: dict[str, object], reason: Reason) -> None:
    parsed = wire.parse_events(EVT, enc(obj), now=NOW)
    assert parsed.items == [] and reasons(parsed) == [reason.value]


def test_status_with_and_without_time() -> None:
    online = wire.parse_status(STA, wire.encode_status("online", NOW), now=NOW)
    assert online.items == [wire.Status(state="online", at=NOW)]
    will = wire.parse_status(STA, wire.encode_status("offline"), now=NOW)
    assert will.items == [wire.Status(state="offline", at=None)]
    assert reasons(wire.parse_status(STA, b'{"state":"asleep"}', now=NOW)) == ["bad_value"]
    assert reasons(wire.parse_status(STA, b"[]", now=NOW)) == ["bad_shape"]


# ----------------------------------------------------------------------------- encoding


def test_encode_then_parse_round_trips_fixes_events_and_status() -> None:
    fixes = [
        Fix(
            recorded_at=NOW.astimezone(BJT) - timedelta(seconds=10 * i),
            lat=31.8 + i * 1e-4,
            lon=117.2,
            speed_kmh=18.0,
            heading_deg=270.0,
            accuracy_m=12.0,
            odometer_km=10234.25,
            ignition=True,
            load_state="full",
            seq=i,
        )
        for i in range(5)
    ]
    assert wire.parse_fixes(POS, wire.encode_fixes(fixes), now=NOW).items == fixes
    assert wire.parse_fixes(POS, wire.encode_fixes(fixes[0]), now=NOW).items == fixes[:1]
    sparse = Fix(recorded_at=NOW, lat=1.0, lon=2.0)
    assert (
        wire.encode_fixes(sparse) == b'{"recorded_at":"2026-05-12T08:30:00Z","lat":1.0,"lon":2.0}'
    )
    event = Event(recorded_at=NOW, kind="rfid", rfid_tag="E200-01", extra={"antenna": 2})
    assert wire.parse_events(EVT, wire.encode_events([event, event]), now=NOW).items == [
        event,
        event,
    ]


def test_encoders_refuse_naive_times_and_empty_batches() -> None:
    with pytest.raises(ValueError):
        wire.encode_fixes(Fix(recorded_at=datetime(2026, 5, 12), lat=1.0, lon=2.0))
    with pytest.raises(ValueError):
        wire.encode_fixes([])
    with pytest.raises(ValueError):
        wire.encode_status("online", datetime(2026, 5, 12))


# ----------------------------------------------------------------------------- fuzz

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)
fix_like = st.fixed_dictionaries(
    {},
    optional={
        "recorded_at": st.one_of(
            st.just("2026-05-12T16:29:50+08:00"),
            st.integers(min_value=-(2**64), max_value=2**64),
            st.floats(allow_nan=False),
            st.text(max_size=30),
            st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
        ),
        "lat": st.one_of(st.floats(allow_nan=False), st.integers(), st.text(max_size=5)),
        "lon": st.one_of(st.floats(allow_nan=False), st.integers(), st.none()),
        "speed_kmh": json_leaf,
        "heading_deg": json_leaf,
        "load_state": st.sampled_from(["empty", "half", "full", "", "FULL", None]),
        "seq": json_leaf,
        "ignition": json_leaf,
    },
)


def _check_accounting(channel: Channel, payload: bytes) -> None:
    parsed = wire.parse_message(wire.topic(channel, "GPS-T1"), payload, now=NOW)
    for rej in parsed.rejections:
        assert isinstance(rej.reason, Reason) and rej.detail
    whole = [r for r in parsed.rejections if r.index is None]
    if whole:
        # A whole-message rejection carries the message and nothing is accepted.
        assert parsed.items == [] and len(parsed.rejections) == 1 and whole[0].raw == payload
        return
    try:
        decoded = msgspec.json.decode(payload)
    except (msgspec.DecodeError, UnicodeError):
        pytest.fail("undecodable payload was not rejected whole")
    n = len(decoded) if isinstance(decoded, list) else 1
    # Every element is accounted for exactly once: accepted or rejected with its index.
    assert len(parsed.items) + len(parsed.rejections) == n
    if isinstance(decoded, list):
        assert sorted(r.index for r in parsed.rejections if r.index is not None) == sorted(
            {r.index for r in parsed.rejections if r.index is not None}
        )


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.sampled_from(list(Channel)))
def test_fuzz_arbitrary_bytes_never_raise_and_are_accounted_for(
    payload: bytes, channel: Channel
) -> None:
    _check_accounting(channel, payload)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(json_value, fix_like, st.lists(st.one_of(fix_like, json_value), max_size=6)),
    st.sampled_from(list(Channel)),
)
def test_fuzz_hostile_json_never_raises_and_is_accounted_for(obj: object, channel: Channel) -> None:
    _check_accounting(channel, json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass"))


@settings(max_examples=200)
@given(
    st.lists(
        st.builds(
            Fix,
            recorded_at=st.datetimes(
                min_value=datetime(2026, 5, 6),
                max_value=datetime(2026, 5, 12, 8, 30),
                timezones=st.just(UTC),
            ),
            lat=st.floats(min_value=-90, max_value=90).filter(lambda x: x != 0),
            lon=st.floats(min_value=-180, max_value=180),
            speed_kmh=st.none() | st.floats(min_value=0, max_value=400),
            load_state=st.none() | st.sampled_from(["empty", "half", "full"]),
            seq=st.none() | st.integers(min_value=0, max_value=2**63 - 1),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_fuzz_whatever_the_encoder_writes_the_decoder_accepts_unchanged(fixes: list[Fix]) -> None:
    parsed = wire.parse_fixes(POS, wire.encode_fixes(fixes), now=NOW)
    assert parsed.rejections == [] and parsed.items == fixes


# ------------------------------------------------------------------- hostile content

DEEP = b"[" * 5000 + b"]" * 5000  # the first payload of issue 13
NOW_S = int(NOW.timestamp())


def test_regression_5000_nested_brackets_are_a_bad_shape_on_every_channel() -> None:
    """Issue 13: 5,000 nested `[` raised RecursionError out of Decoder.parse."""
    for channel in Channel:
        parsed = wire.parse_message(wire.topic(channel, "GPS-T1"), DEEP, now=NOW)
        assert parsed.items == [] and reasons(parsed) == ["bad_shape"], channel
        assert parsed.rejections[0].raw == DEEP
        if channel is not Channel.STATUS:  # status: "Expected `object`, got `array`"
            assert "nested too deeply" in parsed.rejections[0].detail


def test_regression_event_with_1e999_in_a_vendor_field_is_out_of_range() -> None:
    """Issue 13: `"v": 1e999` raised msgspec.ValidationError out of Decoder.parse."""
    payload = b'{"recorded_at": %d, "kind": "bin_lift", "v": 1e999}' % NOW_S
    parsed = wire.parse_events(EVT, payload, now=NOW)
    assert parsed.items == [] and reasons(parsed) == ["out_of_range"]
    assert parsed.rejections[0].raw == payload


def test_deep_nesting_anywhere_in_a_message_rejects_it_whole_with_its_bytes() -> None:
    """Splitting an array into its elements recurses too, so an array holding one
    too-deep element is refused whole (a bad_shape dead letter with every byte)."""
    good = enc(fix_obj())
    deep_fix = b'{"recorded_at":"2026-05-12T16:29:51+08:00","lat":31.8,"lon":117.2,"x":%s}' % DEEP
    fixes = b"[" + good + b"," + deep_fix + b"]"
    deep_vendor = b"[" * 3000 + b"]" * 3000
    events = b'[{"recorded_at": %d, "kind": "bin_lift"}, {"recorded_at": %d, "kind": "bin_lift", "v": %s}]' % (NOW_S, NOW_S + 1, deep_vendor)  # fmt: skip
    for topic_name, payload in ((POS, fixes), (EVT, events)):
        parsed = wire.parse_message(topic_name, payload, now=NOW)
        assert parsed.items == [] and reasons(parsed) == ["bad_shape"]
        assert parsed.rejections[0].raw == payload and parsed.rejections[0].index is None


def test_a_failure_inside_the_decoder_is_a_dead_letter_reason_not_a_raise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever escapes the decoding code (here an injected bug) rejects that message."""

    def broken(*args: object) -> object:
        raise KeyError("boom")

    monkeypatch.setattr(wire, "_fix_from_wire", broken)
    parsed = wire.parse_fixes(POS, enc(fix_obj()), now=NOW)
    assert parsed.items == [] and reasons(parsed) == ["decoder_failed"]
    assert "KeyError" in parsed.rejections[0].detail
    assert parsed.channel is Channel.POSITIONS and parsed.terminal_id == "GPS-T1"


def test_memory_error_while_decoding_is_an_oversize_rejection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Exhausted:
        def decode(self, payload: bytes) -> object:
            raise MemoryError

    monkeypatch.setattr(wire, "_status_decoder", Exhausted())
    parsed = wire.parse_status(STA, b'{"state": "online"}', now=NOW)
    assert reasons(parsed) == ["oversize"] and "memory" in parsed.rejections[0].detail


hostile_number = st.one_of(
    st.sampled_from([b"1e999", b"-1e999", b"1e-999", b"NaN", b"Infinity", b"-0", b"1" * 400]),
    st.integers(min_value=-(2**200), max_value=2**200).map(lambda i: str(i).encode()),
    st.floats().map(lambda f: repr(f).encode()),
)
hostile_string = st.text(
    alphabet=st.characters(codec=None, exclude_categories=()), max_size=20
).map(lambda s: json.dumps(s).encode())
hostile_leaf = st.one_of(
    hostile_number,
    hostile_string,
    st.sampled_from([b'"\\u0000"', b'"\\ud800"', b'"\\udfff\\ud800"', b'"a\\u0000b"', b"null"]),
    st.integers(min_value=1, max_value=6000).map(lambda n: b"[" * n + b"]" * n),
)


def _obj(fields: list[tuple[str, bytes]]) -> bytes:
    return b"{" + b",".join(json.dumps(k).encode() + b":" + v for k, v in fields) + b"}"


FIELDS = ["recorded_at", "lat", "lon", "speed_kmh", "seq", "kind", "point_id", "rfid_tag",
          "weight_kg", "state", "at", "vendor"]  # fmt: skip
hostile_object = st.lists(st.tuples(st.sampled_from(FIELDS), hostile_leaf), max_size=6).map(
    lambda fs: _obj([("recorded_at", b"%d" % NOW_S), ("lat", b"31.8"), ("lon", b"117.2"), *fs])
)
hostile_payload = st.one_of(
    hostile_object,
    st.lists(hostile_object, min_size=1, max_size=5).map(lambda xs: b"[" + b",".join(xs) + b"]"),
    hostile_leaf,
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_payload, st.sampled_from(list(Channel)))
def test_fuzz_hostile_numbers_strings_and_nesting_never_raise(
    payload: bytes, channel: Channel
) -> None:
    """Out-of-range numbers, NaN/Infinity, NUL and lone surrogates, deep nesting: each
    message decodes into items and rejections with reasons, never an exception, and
    nothing accepted holds a value PostgreSQL would refuse."""
    parsed = wire.parse_message(wire.topic(channel, "GPS-T1"), payload, now=NOW)
    assert all(isinstance(r.reason, Reason) and r.detail for r in parsed.rejections)
    assert parsed.items or parsed.rejections
    for item in parsed.items:
        text = msgspec.json.encode(item).decode()
        assert "\\u0000" not in text
        text.encode("utf-8")  # no lone surrogates
        for value in msgspec.structs.asdict(item).values():
            if isinstance(value, float):
                assert value == value and abs(value) != float("inf")
