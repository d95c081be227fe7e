"""Hypothesis throws arbitrary bytes and hostile JSON at the running ingestor (a real
process): it never dies, and every message ends up stored or dead-lettered."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import psycopg
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fleet.devservers import PrivateMosquitto
from ingest import wire
from tests.integration.ingest.support import (
    IngestorProcess,
    Publisher,
    ingest_env,
    rows,
    wait_for,
)

VALID_TIME = "@valid-time"  # replaced by a unique, acceptable device time
VALID_EPOCH_MS = "@valid-epoch-ms"

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=16),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
fix_like = st.fixed_dictionaries(
    {
        "recorded_at": st.one_of(
            st.just(VALID_TIME),
            st.just(VALID_EPOCH_MS),
            st.just("2026-05-12T16:29:50"),  # no offset
            st.just("1999-01-01T00:00:00Z"),  # too old
            st.just("2999-01-01T00:00:00Z"),  # future
            json_leaf,
        ),
    },
    optional={
        "lat": st.one_of(st.floats(min_value=-100, max_value=100), st.just(0), json_leaf),
        "lon": st.one_of(st.floats(min_value=-200, max_value=200), st.just(0), json_leaf),
        "speed_kmh": st.one_of(st.floats(min_value=-10, max_value=500), json_leaf),
        "heading_deg": st.one_of(st.floats(min_value=-10, max_value=400), json_leaf),
        "ignition": st.one_of(st.booleans(), json_leaf),
        "load_state": st.sampled_from(["empty", "half", "full", "overflowing", "", None]),
        "seq": st.one_of(st.integers(min_value=-5, max_value=2**64), json_leaf),
        "vendor": json_value,
    },
)
positions_payload = st.one_of(
    st.binary(max_size=200),
    json_value,
    fix_like,
    st.lists(st.one_of(fix_like, fix_like, json_value), min_size=0, max_size=8),
)
terminal_ids = st.sampled_from(["GPS-T0", "GPS-T1", "GPS-T7", "GPS-UNKNOWN"])
message = st.one_of(
    st.tuples(st.just("positions"), terminal_ids, positions_payload),
    st.tuples(
        st.sampled_from(["events", "status"]),
        terminal_ids,
        st.one_of(st.binary(max_size=120), json_value),
    ),
)


class Clock:
    """Hands out unique acceptable device times (so stored rows can be attributed)."""

    def __init__(self) -> None:
        self.base = datetime.now(UTC) - timedelta(hours=1)
        self.n = 0

    def next(self) -> datetime:
        self.n += 1
        return self.base + timedelta(milliseconds=self.n)


def materialise(obj: Any, clock: Clock) -> Any:
    if obj == VALID_TIME:
        return clock.next().isoformat()
    if obj == VALID_EPOCH_MS:
        return int(clock.next().timestamp() * 1000)
    if isinstance(obj, list):
        return [materialise(x, clock) for x in obj]
    if isinstance(obj, dict):
        return {k: materialise(v, clock) for k, v in obj.items()}
    return obj


def encode(payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    return json.dumps(payload, ensure_ascii=False).encode()


def _same_json(raw: bytes, obj: Any) -> bool:
    try:
        return bool(json.loads(raw) == obj)
    except ValueError:
        return False


def _stored(element: Any, truck_id: str | None, stored: set[tuple[str, float, float]]) -> bool:
    if truck_id is None or not isinstance(element, dict):
        return False
    lat, lon = element.get("lat"), element.get("lon")
    if not isinstance(lat, (int, float)) or not isinstance(lon, (int, float)):
        return False
    if (
        isinstance(lat, bool)
        or isinstance(lon, bool)
        or not (math.isfinite(lat) and math.isfinite(lon))
    ):
        return False
    return (truck_id, float(lat), float(lon)) in stored


def test_fuzzed_messages_are_each_stored_or_dead_lettered(
    fleet_url: str, broker: PrivateMosquitto, tmp_path: Path
) -> None:
    """Every message (and every element of an array) is accounted for: a row in
    position or a dead letter with a reason; the ingestor survives all of it."""
    ingestor = IngestorProcess(
        ingest_env(fleet_url, broker.url, ingest_batch_max_age_s="0.1"), tmp_path / "ingest.log"
    ).start()
    ingestor.wait_subscribed()
    pub = Publisher(broker.url)
    clock = Clock()
    trucks = {f"GPS-T{i}": f"T{i}" for i in range(10)}
    marker_seq = [0]

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(message, min_size=1, max_size=25))
    def check(messages: list[tuple[str, str, Any]]) -> None:
        with psycopg.connect(fleet_url) as conn:
            conn.execute("TRUNCATE position, dead_letter, device_event, terminal_status")
        sent: list[tuple[str, str, bytes, Any]] = []
        for channel, terminal_id, raw_payload in messages:
            payload = (
                raw_payload if isinstance(raw_payload, bytes) else materialise(raw_payload, clock)
            )
            data = encode(payload)
            topic = wire.topic(wire.Channel(channel), terminal_id)
            pub.publish(topic, data)
            sent.append((channel, terminal_id, data, payload))
        # A marker after the batch: once it is stored, everything before it was handled.
        marker_seq[0] += 1
        marker_at = clock.next()
        pub.publish(
            wire.positions_topic("GPS-T9"),
            wire.encode_fixes(wire.Fix(recorded_at=marker_at, lat=1.0, lon=1.0, seq=marker_seq[0])),
        )
        pub.wait_all_acked()
        wait_for(
            lambda: bool(
                rows(fleet_url, "SELECT 1 FROM position WHERE recorded_at = %s", [marker_at])
            ),
            30,
            "the marker fix",
        )
        assert ingestor.running(), f"ingestor died:\n{ingestor.log()[-3000:]}"
        stored = {
            (t, float(a), float(o))
            for t, a, o in rows(fleet_url, "SELECT truck_id, lat, lon FROM position")
        }
        dead = rows(fleet_url, "SELECT reason, detail, payload FROM dead_letter")
        reasons = {r.value for r in wire.Reason}
        assert all(reason in reasons and detail for reason, detail, _ in dead)
        dead_payloads = [bytes(p) for _, _, p in dead]
        for channel, terminal_id, data, payload in sent:
            if data in dead_payloads:
                continue  # rejected whole
            if channel == "positions" and isinstance(payload, (dict, list)):
                elements = payload if isinstance(payload, list) else [payload]
                truck_id = trucks.get(terminal_id)
                for element in elements:
                    accounted = _stored(element, truck_id, stored) or any(
                        _same_json(p, element) for p in dead_payloads
                    )
                    assert accounted, (
                        f"fix {element!r} of {data!r} neither stored nor dead-lettered"
                    )
                continue
            if channel in ("events", "status"):
                # Arbitrary input on these channels is either a stored event/status or a
                # dead letter of the message or of its elements.
                n_rows = (
                    rows(fleet_url, "SELECT count(*) FROM device_event")[0][0]
                    + rows(fleet_url, "SELECT count(*) FROM terminal_status")[0][0]
                )
                elements = payload if isinstance(payload, list) else [payload]
                assert n_rows > 0 or all(
                    any(_same_json(p, e) for p in dead_payloads) for e in elements
                ), f"{channel} message {data!r} left no trace"
                continue
            raise AssertionError(f"message {data!r} on {channel} neither stored nor dead-lettered")

    check()
    assert ingestor.running()
    assert ingestor.stop() == 0
    pub.close()


# ------------------------------------------------------------------ hostile content
# Payloads are built as bytes, element by element, so that JSON a serializer would
# never write (1e999, NaN, lone surrogates, 5,000 nested brackets) can be sent, and
# every element can be traced to a stored row (its unique device time) or to a dead
# letter holding its exact bytes.

TIME = b'"@T"'  # replaced by a unique acceptable device time per element
DEEP_LIMIT = 6000

deep = st.integers(min_value=900, max_value=DEEP_LIMIT).flatmap(
    lambda n: st.sampled_from([b"[" * n + b"]" * n, b'{"a":' * n + b"1" + b"}" * n])
)
bad_number = st.one_of(
    st.sampled_from(
        [
            b"1e999",
            b"-1e999",
            b"1e-999",
            b"1e308",
            b"-1e308",
            b"NaN",
            b"Infinity",
            b"-Infinity",
            b'"NaN"',
            b'"Infinity"',
            b"-0",
            b"9" * 400,
            b"18446744073709551616",
            b"-9223372036854775809",
            b"1.0e+",
            b"0x10",
        ]
    ),
    st.floats().map(lambda f: repr(f).encode()),
    st.integers(min_value=-(2**130), max_value=2**130).map(lambda i: b"%d" % i),
)
bad_string = st.one_of(
    st.sampled_from(
        [
            b'"\\u0000"',
            b'"a\\u0000b"',
            b'"\\ud800"',
            b'"\\udc00x"',
            b'"\\ud83d"',
            b'"\xed\xa0\x80"',
            b'"\xff\xfe"',
            b'"\\uZZZZ"',
            b'""',
            b'"' + b"x" * 300 + b'"',
        ]
    ),
    st.text(max_size=12).map(
        lambda s: json.dumps(s, ensure_ascii=False).encode("utf-8", "surrogatepass")
    ),
)
bad_value = st.one_of(
    bad_number, bad_string, deep, st.sampled_from([b"null", b"true", b"[]", b"{}"])
)

CHANNEL_FIELDS = {
    "positions": ["recorded_at", "lat", "lon", "speed_kmh", "heading_deg", "accuracy_m",
                  "odometer_km", "ignition", "load_state", "seq"],
    "events": ["recorded_at", "kind", "point_id", "station_id", "rfid_tag", "weight_kg",
               "lat", "lon"],
    "status": ["state", "at"],
}  # fmt: skip
BASE = {
    "positions": [("recorded_at", TIME), ("lat", b"31.8"), ("lon", b"117.2")],
    "events": [("recorded_at", TIME), ("kind", b'"bin_lift"'), ("point_id", b'"P1"')],
    "status": [("state", b'"online"'), ("at", TIME)],
}


def hostile_element(channel: str) -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    """A base object of the channel with 0-3 fields replaced or added: hostile values
    in known fields, and vendor fields with hostile names or values."""
    key = st.one_of(
        st.sampled_from(CHANNEL_FIELDS[channel]).map(lambda k: json.dumps(k).encode()),
        bad_string,
    )
    return st.lists(st.tuples(key, bad_value), max_size=3).map(
        lambda over: (
            [
                (json.dumps(k).encode(), v)
                for k, v in BASE[channel]
                if json.dumps(k).encode() not in {o for o, _ in over}
            ]
            + over
        )
    )


def raw_elements(payload: bytes) -> list[bytes]:
    """The exact bytes of each element when a raw payload is a JSON array the decoder
    can split (nested under its depth limit): those are dead-lettered one by one."""
    try:
        return [bytes(e) for e in msgspec.json.decode(payload, type=list[msgspec.Raw])]
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return []


def obj(fields: list[tuple[bytes, bytes]]) -> bytes:
    return b"{" + b",".join(k + b":" + v for k, v in fields) + b"}"


def base_obj(channel: str) -> bytes:
    return obj([(json.dumps(k).encode(), v) for k, v in BASE[channel]])


def hostile_message(channel: str) -> st.SearchStrategy[list[bytes] | bytes]:
    """A list of element objects (sent as one object, or as an array) or raw bytes."""
    element = hostile_element(channel).map(obj)
    arrays = st.lists(element, min_size=1, max_size=30)
    huge = st.tuples(st.integers(500, 3000), st.lists(element, max_size=3)).map(
        lambda t: [base_obj(channel)] * t[0] + t[1]
    )
    raw = st.one_of(deep, bad_value, st.binary(max_size=64))
    return st.one_of(element.map(lambda e: [e]), arrays, huge, raw)


hostile = st.sampled_from(list(CHANNEL_FIELDS)).flatmap(
    lambda ch: st.tuples(
        st.just(ch),
        st.sampled_from(["GPS-T1", "GPS-T2", "GPS-T3", "GPS-NOBODY"]),
        hostile_message(ch),
        st.booleans(),  # a one-element list goes out as an array rather than an object
    )
)


def test_hostile_messages_on_every_channel_never_stop_the_running_ingestor(
    fleet_url: str, broker: PrivateMosquitto, tmp_path: Path
) -> None:
    """Deep nesting, numbers out of every range, NaN/Infinity, NUL and surrogates in
    every string field, huge arrays, mixed good and bad elements, on positions, events
    and status: every element is stored or dead-lettered with its exact bytes, a good
    fix published after each hostile message is stored, and the process never exits."""
    ingestor = IngestorProcess(
        ingest_env(fleet_url, broker.url, ingest_batch_max_age_s="0.1"), tmp_path / "ingest.log"
    ).start()
    ingestor.wait_subscribed()
    pub = Publisher(broker.url)
    clock = Clock()

    # Each example talks to real processes: no shrinking (it would take minutes).
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
    )
    @given(st.lists(hostile, min_size=1, max_size=4))
    def check(messages: list[tuple[str, str, list[bytes] | bytes, bool]]) -> None:
        with psycopg.connect(fleet_url) as conn:
            conn.execute("TRUNCATE position, dead_letter, device_event, terminal_status")
        sent: list[tuple[str, str, bytes, list[tuple[bytes, datetime | None]]]] = []
        goods: list[datetime] = []
        for channel, terminal_id, body, as_array in messages:
            elements: list[tuple[bytes, datetime | None]] = []
            if isinstance(body, bytes):
                data = body
                elements = [(e, None) for e in raw_elements(body)]
            else:
                for element in body:
                    at = clock.next() if TIME in element else None
                    text = (
                        element.replace(TIME, b'"%s"' % at.isoformat().encode()) if at else element
                    )
                    elements.append((text, at))
                texts = [t for t, _ in elements]
                data = (
                    texts[0] if len(texts) == 1 and not as_array else b"[" + b",".join(texts) + b"]"
                )
            pub.publish(wire.topic(wire.Channel(channel), terminal_id), data)
            sent.append((channel, terminal_id, data, elements))
            good_at = clock.next()
            goods.append(good_at)
            pub.publish(
                wire.positions_topic("GPS-T9"),
                wire.encode_fixes(wire.Fix(recorded_at=good_at, lat=1.0, lon=1.0)),
            )
        pub.wait_all_acked()
        stored_goods = lambda: {  # noqa: E731
            r for (r,) in rows(fleet_url, "SELECT recorded_at FROM position WHERE truck_id = 'T9'")
        }
        wait_for(
            lambda: set(goods) <= stored_goods() or not ingestor.running(),
            60,
            "the good fix after each hostile message",
        )
        assert ingestor.running(), f"ingestor died:\n{ingestor.log()[-3000:]}"

        def unaccounted() -> list[str]:
            # Batches commit in parallel: a dead letter may land after the next good fix.
            stored = {
                r
                for (r,) in rows(
                    fleet_url,
                    "SELECT recorded_at FROM position WHERE truck_id <> 'T9'"
                    " UNION ALL SELECT recorded_at FROM device_event",
                )
            }
            # One row per terminal: a later status replaces an earlier one, and a
            # status without `at` is stored with the time it was received.
            statuses = dict(rows(fleet_url, "SELECT terminal_id, changed_at FROM terminal_status"))
            dead_payloads = {
                bytes(p) for (p,) in rows(fleet_url, "SELECT payload FROM dead_letter")
            }
            missing = []
            for channel, terminal_id, data, elements in sent:
                if data in dead_payloads:
                    continue  # rejected whole
                if not elements:
                    missing.append(f"{channel} message {data[:100]!r}")
                for text, at in elements:
                    if channel == "status":
                        latest = statuses.get(terminal_id)
                        kept = latest is not None and (at is None or latest >= at)
                    else:
                        kept = at is not None and at in stored
                    if text not in dead_payloads and not kept:
                        missing.append(f"{channel} element {text[:100]!r} of {terminal_id}")
            return missing

        try:
            wait_for(lambda: not unaccounted(), 30, "every message stored or dead-lettered")
        except AssertionError:
            raise AssertionError(f"neither stored nor dead-lettered: {unaccounted()[:5]}") from None
        dead = rows(fleet_url, "SELECT reason, detail FROM dead_letter")
        reasons = {r.value for r in wire.Reason}
        assert all(reason in reasons and detail for reason, detail in dead), dead[:3]
        # Validation, not the last-resort paths, refuses all of it.
        assert not [d for d in dead if d[0] in ("decoder_failed", "db_rejected")], dead[:3]
        assert ingestor.running(), f"ingestor died:\n{ingestor.log()[-3000:]}"

    check()
    assert ingestor.running()
    assert ingestor.stop() == 0
    pub.close()
