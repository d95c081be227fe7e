"""The ingestor against a real Mosquitto and a real PostgreSQL."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fleet.devservers import PrivateMosquitto, free_port
from ingest import wire
from tests.integration.ingest.conftest import RunningIngestor
from tests.integration.ingest.support import (
    FixStream,
    Publisher,
    assert_exactly_once,
    rows,
    scalar,
    terminal,
    wait_for,
)

StartIngestor = Callable[..., RunningIngestor]


def test_fixes_events_and_status_are_stored(
    fleet_url: str, broker: PrivateMosquitto, start_ingestor: StartIngestor
) -> None:
    """Single fixes, a blind-zone batch, an event and a status all land in their tables."""
    start_ingestor()
    now = datetime.now(UTC).replace(microsecond=0)
    pub = Publisher(broker.url)
    pub.publish(
        wire.positions_topic("GPS-T1"),
        wire.encode_fixes(wire.Fix(recorded_at=now, lat=31.82, lon=117.29, speed_kmh=23.5)),
    )
    blind_zone = [
        wire.Fix(
            recorded_at=now - timedelta(minutes=30) + timedelta(seconds=10 * i), lat=31.8, lon=117.2
        )
        for i in range(20)
    ]
    pub.publish(wire.positions_topic("GPS-T2"), wire.encode_fixes(blind_zone))
    pub.publish(
        wire.events_topic("GPS-T1"),
        wire.encode_events(
            wire.Event(
                recorded_at=now, kind="weighbridge", station_id="S1", weight_kg=5230.5,
                extra={"ticket_no": "磅单-0042"},
            )
        ),
    )  # fmt: skip
    pub.publish(wire.status_topic("GPS-T1"), wire.encode_status("online", now), retain=True)
    pub.wait_all_acked()
    wait_for(lambda: scalar(fleet_url, "SELECT count(*) FROM position") == 21, 10, "21 fixes")
    wait_for(lambda: scalar(fleet_url, "SELECT count(*) FROM terminal_status") == 1, 10, "status")
    assert rows(
        fleet_url, "SELECT truck_id, lat, lon, speed_kmh FROM position WHERE truck_id = 'T1'"
    ) == [("T1", 31.82, 117.29, 23.5)]
    assert rows(
        fleet_url, "SELECT min(recorded_at), max(recorded_at) FROM position WHERE truck_id = 'T2'"
    ) == [(blind_zone[0].recorded_at, blind_zone[-1].recorded_at)]
    assert rows(
        fleet_url, "SELECT truck_id, kind, station_id, weight_kg, payload FROM device_event"
    ) == [("T1", "weighbridge", "S1", 5230.5, {"ticket_no": "磅单-0042"})]
    assert rows(
        fleet_url, "SELECT terminal_id, truck_id, state, changed_at FROM terminal_status"
    ) == [("GPS-T1", "T1", "online", now)]
    assert scalar(fleet_url, "SELECT count(*) FROM dead_letter") == 0
    pub.close()


def test_bad_messages_go_to_dead_letter_with_reason_and_good_fixes_survive(
    fleet_url: str, broker: PrivateMosquitto, start_ingestor: StartIngestor
) -> None:
    """Each kind of bad input becomes one dead letter with its reason and raw bytes."""
    running = start_ingestor()
    now = datetime.now(UTC)
    good = {"recorded_at": now.isoformat(), "lat": 31.8, "lon": 117.2}
    pub = Publisher(broker.url)
    cases = [
        (wire.positions_topic("GPS-T1"), b"{not json", "malformed_json"),
        (wire.positions_topic("GPS-T1"), b"42", "bad_shape"),
        (wire.positions_topic("GPS-T1"), json.dumps({**good, "lat": "x"}).encode(), "wrong_type"),
        (
            wire.positions_topic("GPS-T1"),
            json.dumps({"lat": 1, "lon": 2}).encode(),
            "missing_field",
        ),
        (wire.positions_topic("GPS-T1"), json.dumps({**good, "lat": 123}).encode(), "out_of_range"),
        (
            wire.positions_topic("GPS-T1"),
            json.dumps({**good, "lat": 0, "lon": 0}).encode(),
            "null_island",
        ),
        (
            wire.positions_topic("GPS-T1"),
            json.dumps({**good, "recorded_at": (now + timedelta(hours=1)).isoformat()}).encode(),
            "time_in_future",
        ),
        (
            wire.positions_topic("GPS-T1"),
            json.dumps({**good, "recorded_at": (now - timedelta(days=30)).isoformat()}).encode(),
            "time_too_old",
        ),
        (wire.positions_topic("GPS-UNKNOWN"), json.dumps(good).encode(), "unknown_terminal"),
        (wire.positions_topic("GPS-T1"), b"[" + b" " * 300_000 + b"]", "oversize"),
        ("clearday/v1/trucks/GPS T1/positions", b"{}", "bad_topic"),
    ]
    for topic, payload, _ in cases:
        pub.publish(topic, payload)
    # One array with a bad fix in the middle: the two good ones are stored.
    mixed = [
        {**good, "recorded_at": (now - timedelta(seconds=2)).isoformat()},
        {**good, "lat": 91},
        {**good, "recorded_at": (now - timedelta(seconds=1)).isoformat()},
    ]
    pub.publish(wire.positions_topic("GPS-T3"), json.dumps(mixed).encode())
    pub.wait_all_acked()
    expected = sorted([reason for _, _, reason in cases] + ["out_of_range"])
    wait_for(
        lambda: scalar(fleet_url, "SELECT count(*) FROM dead_letter") == len(expected),
        15,
        f"{len(expected)} dead letters",
    )
    got = rows(fleet_url, "SELECT reason, topic, payload, detail FROM dead_letter ORDER BY reason")
    assert sorted(r[0] for r in got) == expected
    by_reason = {r[0]: r for r in got}
    assert bytes(by_reason["malformed_json"][2]) == b"{not json"
    assert by_reason["unknown_terminal"][1] == wire.positions_topic("GPS-UNKNOWN")
    assert all(r[3] for r in got), "every dead letter says why"
    assert rows(fleet_url, "SELECT count(*) FROM position WHERE truck_id = 'T3'") == [(2,)]
    assert scalar(fleet_url, "SELECT count(*) FROM position") == 2
    metrics = running.ingestor.metrics
    assert metrics.dead_letters.labels("oversize")._value.get() == 1
    pub.close()


def test_redelivered_and_repeated_fixes_are_stored_once(
    fleet_url: str, broker: PrivateMosquitto, start_ingestor: StartIngestor
) -> None:
    """The same fix sent again (same truck and device time) never adds a row."""
    running = start_ingestor()
    stream = FixStream()
    pub = Publisher(broker.url)
    messages = [stream.message(s) for s in range(200)]
    pub.publish_many(messages)
    pub.publish_many(messages[:50])  # a terminal resending after a lost PUBACK
    pub.publish(wire.positions_topic(terminal(0)), wire.encode_fixes([stream.fix(0)] * 3))
    pub.wait_all_acked()
    wait_for(
        lambda: running.ingestor.metrics.received._value.get() >= 251, 15, "all messages batched"
    )
    wait_for(lambda: scalar(fleet_url, "SELECT count(*) FROM position") == 200, 10, "200 rows")
    assert_exactly_once(fleet_url, stream, range(200))
    assert scalar(fleet_url, "SELECT count(*) FROM dead_letter") == 0
    pub.close()


def test_late_and_out_of_order_fixes_are_stored_by_device_time(
    fleet_url: str, broker: PrivateMosquitto, start_ingestor: StartIngestor
) -> None:
    """Fixes arriving in reverse order, hours late, keep their device times."""
    start_ingestor()
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    pub = Publisher(broker.url)
    for i in reversed(range(10)):
        fix = wire.Fix(recorded_at=base + timedelta(seconds=10 * i), lat=31.8 + i * 1e-4, lon=117.2)
        pub.publish(wire.positions_topic("GPS-T4"), wire.encode_fixes(fix))
    pub.wait_all_acked()
    wait_for(lambda: scalar(fleet_url, "SELECT count(*) FROM position") == 10, 10, "10 fixes")
    track = rows(
        fleet_url,
        "SELECT recorded_at, lat FROM position WHERE truck_id = 'T4' ORDER BY recorded_at",
    )
    assert [r[0] for r in track] == [base + timedelta(seconds=10 * i) for i in range(10)]
    assert [round(r[1], 4) for r in track] == [round(31.8 + i * 1e-4, 4) for i in range(10)]
    pub.close()


def test_status_keeps_the_newest_state(
    fleet_url: str, broker: PrivateMosquitto, start_ingestor: StartIngestor
) -> None:
    """An older status message arriving late does not overwrite a newer one."""
    start_ingestor()
    now = datetime.now(UTC).replace(microsecond=0)
    pub = Publisher(broker.url)
    pub.publish(wire.status_topic("GPS-T5"), wire.encode_status("offline", now))
    pub.wait_all_acked()
    wait_for(lambda: scalar(fleet_url, "SELECT count(*) FROM terminal_status") == 1, 10, "status")
    pub.publish(
        wire.status_topic("GPS-T5"), wire.encode_status("online", now - timedelta(minutes=1))
    )
    pub.publish(
        wire.positions_topic("GPS-T5"),
        wire.encode_fixes(wire.Fix(recorded_at=now, lat=1.0, lon=1.0)),
    )
    pub.wait_all_acked()
    wait_for(
        lambda: scalar(fleet_url, "SELECT count(*) FROM position") == 1, 10, "the fix after it"
    )
    assert rows(fleet_url, "SELECT state, changed_at FROM terminal_status") == [("offline", now)]
    # A last will (no `at`) of the same state, redelivered: "offline since" stays put.
    pub.publish(wire.status_topic("GPS-T5"), wire.encode_status("offline"))
    pub.publish(
        wire.positions_topic("GPS-T5"),
        wire.encode_fixes(wire.Fix(recorded_at=now - timedelta(seconds=1), lat=1.0, lon=1.0)),
    )
    pub.wait_all_acked()
    wait_for(lambda: scalar(fleet_url, "SELECT count(*) FROM position") == 2, 10, "the next fix")
    assert rows(fleet_url, "SELECT state, changed_at FROM terminal_status") == [("offline", now)]
    # A will that changes the state takes the time it was received.
    pub.publish(wire.status_topic("GPS-T5"), wire.encode_status("online"))
    pub.wait_all_acked()
    wait_for(
        lambda: scalar(fleet_url, "SELECT state FROM terminal_status") == "online", 10, "online"
    )
    assert scalar(fleet_url, "SELECT changed_at FROM terminal_status") > now
    pub.close()


def test_terminal_added_while_running_is_accepted_after_the_recheck(
    fleet_url: str, broker: PrivateMosquitto, start_ingestor: StartIngestor
) -> None:
    """An unknown terminal is dead-lettered; once its truck exists, its fixes are stored."""
    running = start_ingestor()
    running.ingestor.terminals.unknown_recheck_s = 0.5
    clock = [0.0]
    running.ingestor.terminals.clock = lambda: clock[0]
    now = datetime.now(UTC)
    pub = Publisher(broker.url)
    fix = wire.Fix(recorded_at=now, lat=31.8, lon=117.2)
    pub.publish(wire.positions_topic("GPS-NEW"), wire.encode_fixes(fix))
    pub.wait_all_acked()
    wait_for(lambda: scalar(fleet_url, "SELECT count(*) FROM dead_letter") == 1, 10, "dead letter")
    rows(
        fleet_url,
        "INSERT INTO truck (truck_id, district_id, plate, truck_type, capacity_kg, streams,"
        " depot_id, terminal_id) VALUES ('TNEW', 'baohe', '皖A99999', 'small', 2000,"
        " '{other}', 'D1', 'GPS-NEW') RETURNING truck_id",
    )
    clock[0] += 0.6  # the unknown id is looked up again after unknown_recheck_s
    pub.publish(wire.positions_topic("GPS-NEW"), wire.encode_fixes(fix))
    pub.wait_all_acked()
    wait_for(lambda: scalar(fleet_url, "SELECT count(*) FROM position") == 1, 10, "the fix")
    assert rows(fleet_url, "SELECT truck_id FROM position") == [("TNEW",)]
    pub.close()


def test_two_ingestors_share_the_load_and_store_everything_once(
    fleet_url: str, broker: PrivateMosquitto, start_ingestor: StartIngestor
) -> None:
    """With a shared subscription each message goes to one of the ingestors."""
    first = start_ingestor(ingest_client_id="ingest-a", ingest_share_group="ingest")
    second = start_ingestor(ingest_client_id="ingest-b", ingest_share_group="ingest")
    stream = FixStream()
    pub = Publisher(broker.url)
    pub.publish_many(stream.message(s) for s in range(2000))
    pub.wait_all_acked()
    wait_for(lambda: scalar(fleet_url, "SELECT count(*) FROM position") == 2000, 20, "2000 rows")
    assert_exactly_once(fleet_url, stream, range(2000))
    a = first.ingestor.metrics.received._value.get()
    b = second.ingestor.metrics.received._value.get()
    assert a + b == 2000 and a > 0 and b > 0
    pub.close()


def test_metrics_endpoint_reports_the_pipeline(
    fleet_url: str, broker: PrivateMosquitto, start_ingestor: StartIngestor
) -> None:
    """/metrics shows received, written, dead-lettered, batch size, commit time and lag."""
    running = start_ingestor()
    port = free_port()
    running.ingestor.metrics.serve(port, host="127.0.0.1")
    stream = FixStream()
    pub = Publisher(broker.url)
    pub.publish_many(stream.message(s) for s in range(30))
    pub.publish(wire.positions_topic("GPS-T1"), b"nope")
    pub.wait_all_acked()
    wait_for(lambda: scalar(fleet_url, "SELECT count(*) FROM dead_letter") == 1, 10, "dead letter")
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "clearday_ingest_messages_received_total 31.0" in text
    assert 'clearday_ingest_rows_written_total{table="position"} 30.0' in text
    assert 'clearday_ingest_dead_letters_total{reason="malformed_json"} 1.0' in text
    for name in (
        "batch_rows_bucket",
        "commit_seconds_bucket",
        "lag_seconds_bucket",
        "inbox_messages",
    ):
        assert f"clearday_ingest_{name}" in text
    pub.close()
