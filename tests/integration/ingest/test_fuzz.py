"""Hypothesis throws arbitrary bytes and hostile JSON at the running ingestor (a real
process): it never dies, and every message ends up stored or dead-lettered."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.services import PrivateMosquitto
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
