"""A short simulated day through a real Mosquitto: topics, format, order, faults."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from ingest import wire
from routing.plan import Plan
from simulator.city import City, generate
from simulator.faults import Fault
from simulator.mqtt import MqttFleet
from simulator.plans import greedy_plan
from simulator.trucks import DaySpec, SimDay, TerminalConfig, encode, run, simulate
from tests.integration.simulator.helpers import Recorder

DAY = date(2025, 3, 3)
NOON = datetime(2025, 3, 3, 4, 0, tzinfo=UTC)  # 12:00 in Asia/Shanghai


@pytest.fixture(scope="module")
def city() -> City:
    return generate(n_points=50, n_trucks=3, seed=1)


@pytest.fixture(scope="module")
def plan(city: City) -> Plan:
    return greedy_plan(city, max_points_per_truck=5)


@pytest.fixture
def recorder(mqtt_url: str) -> Iterator[Recorder]:
    rec = Recorder(mqtt_url)
    yield rec
    rec.close()


def _spec(city: City, plan: Plan) -> DaySpec:
    first = plan.routes[0]
    start = first.stops[0].departure_s
    faults = (
        Fault("offline", truck_id=first.truck_id, at_s=start + 600, duration_s=600),
        Fault("skip", point_id=[s.ref_id for s in first.stops if s.kind == "point"][-1]),
    )
    terminal = TerminalConfig(signal_losses_per_day=40.0, dropout_prob=0.03)
    return DaySpec(
        city=city, plan=plan, service_date=DAY, seed=11, terminal=terminal, faults=faults
    )


def test_day_arrives_on_the_documented_topics_in_the_documented_format(
    mqtt_url: str, recorder: Recorder, city: City, plan: Plan
) -> None:
    spec = _spec(city, plan)
    expected, _ = simulate(spec)  # the same seed in memory
    day = SimDay(spec)
    fleet = MqttFleet(mqtt_url, client_prefix="test-day")
    stats = run(day.emissions(), fleet, speed=None)
    counts = fleet.close()
    assert counts.published == counts.acked == stats.messages
    wanted = [m for m in (encode(e) for e in expected) if m is not None]
    got = recorder.wait_for(len(wanted) + 1)  # + the last will of the offline fault

    # same seed, same day: byte for byte what was computed in memory, plus the will
    will = (
        wire.status_topic(city.truck(plan.routes[0].truck_id).terminal_id),
        wire.encode_status("offline"),
    )
    assert Counter(got) == Counter([(t, p) for t, p, _ in wanted] + [will])

    terminals = {t.terminal_id for t in city.trucks}
    kinds: Counter[str] = Counter()
    decoder = wire.Decoder()
    window = decoder.window(NOON)
    last_seq: dict[str, int] = defaultdict(int)
    for topic, payload in got:
        ref = wire.parse_topic(topic)
        assert ref.terminal_id in terminals
        parsed = decoder.parse(topic, payload, window)
        assert parsed.rejections == [], (topic, payload, parsed.rejections)
        kinds[ref.channel.value] += len(parsed.items)
        if ref.channel is wire.Channel.POSITIONS:
            for fix in parsed.items:  # per terminal, fixes arrive in the order recorded
                assert isinstance(fix, wire.Fix) and fix.seq is not None
                assert fix.seq > last_seq[ref.terminal_id]
                last_seq[ref.terminal_id] = fix.seq
    assert kinds["positions"] == stats.fixes
    assert kinds["events"] == stats.events
    assert any(json.loads(p) == {"state": "offline"} for t, p in got if t.endswith("/status"))
    assert any(isinstance(json.loads(p), list) for t, p in got if t.endswith("/positions")), (
        "expected a late blind-zone batch"
    )


def test_accelerated_60x_keeps_to_real_time(
    mqtt_url: str, recorder: Recorder, city: City, plan: Plan
) -> None:
    day = SimDay(DaySpec(city=city, plan=plan, service_date=DAY, seed=3))
    fleet = MqttFleet(mqtt_url, client_prefix="test-60x")
    start = min(r.stops[0].departure_s for r in plan.routes)
    stats = run(day.emissions(), fleet, speed=60.0, start_s=start, until_s=start + 180)
    fleet.close()
    assert stats.wall_s == pytest.approx(180 / 60, abs=0.5)
    assert stats.max_lag_s < 0.5
    got = recorder.wait_for(stats.messages)
    assert len(got) == stats.messages
    # device times are simulated: the service date, not the wall clock
    fix = next(json.loads(p) for t, p in got if t.endswith("/positions"))
    fixes = fix if isinstance(fix, list) else [fix]
    assert all(f["recorded_at"].startswith("2025-03-0") for f in fixes)


def test_simulate_day_command(tmp_path: Path, mqtt_url: str, recorder: Recorder) -> None:
    truth = tmp_path / "truth.jsonl"
    plan_out = tmp_path / "plan.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from fleet.cli import main; main()",
            "simulate",
            "day",
            "--points",
            "50",
            "--trucks",
            "3",
            "--city-seed",
            "1",
            "--afap",
            "--date",
            "2025-03-03",
            "--until",
            "07:00",
            "--mqtt-url",
            mqtt_url,
            "--truth",
            str(truth),
            "--plan-out",
            str(plan_out),
            "--fault",
            "clock_skew:T02+90",
            "--seed",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["published"] == summary["acked"] == summary["messages"] > 100
    lines = [json.loads(x) for x in truth.read_text().splitlines()]
    assert lines[0]["type"] == "run" and lines[0]["service_date"] == "2025-03-03"
    assert {
        "type": "fault",
        "kind": "clock_skew",
        "truck_id": "T02",
        "terminal_id": "T02-GPS",
        "skew_s": 90.0,
    } in lines
    assert json.loads(plan_out.read_text())["routes"]
    assert len(recorder.wait_for(summary["messages"])) == summary["messages"]


def test_unreachable_broker_is_one_clear_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from fleet.cli import main; main()",
            "simulate",
            "day",
            "--points",
            "50",
            "--trucks",
            "3",
            "--afap",
            "--mqtt-url",
            "mqtt://127.0.0.1:9",
            "--truth",
            str(tmp_path / "t.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "cannot reach the MQTT broker" in proc.stderr
    assert "Traceback" not in proc.stderr
