"""Load mode: several publisher processes, valid fixes for known terminals."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from ingest import wire
from simulator.city import generate
from simulator.load import LoadConfig, run_load
from tests.integration.simulator.helpers import Recorder


@pytest.fixture
def recorder(mqtt_url: str) -> Iterator[Recorder]:
    rec = Recorder(mqtt_url, topic="clearday/v1/trucks/+/positions")
    yield rec
    rec.close()


def test_two_processes_publish_every_message_valid(mqtt_url: str, recorder: Recorder) -> None:
    config = LoadConfig(
        url=mqtt_url,
        terminals=20,
        rate=0,
        duration_s=None,
        messages=3000,
        processes=2,
        fixes_per_message=2,
        seed=3,
    )
    result = run_load(config)
    assert result.messages == result.acked == 3000 and result.fixes == 6000
    got = recorder.wait_for(3000)
    assert len(got) == 3000
    known = {t.terminal_id for t in generate(config.city_config()).trucks}
    decoder = wire.Decoder()
    window = decoder.window(datetime.now(UTC))
    last: dict[str, datetime] = defaultdict(lambda: datetime.min.replace(tzinfo=UTC))
    terminals = set()
    for topic, payload in got:
        parsed = decoder.parse(topic, payload, window)
        assert parsed.rejections == [] and len(parsed.items) == 2
        assert parsed.terminal_id in known
        terminals.add(parsed.terminal_id)
        for fix in parsed.items:  # device times strictly increase per terminal
            assert isinstance(fix, wire.Fix)
            assert fix.recorded_at > last[topic]
            last[topic] = fix.recorded_at
    assert len(terminals) == 20


def test_rate_is_held(mqtt_url: str, recorder: Recorder) -> None:
    result = run_load(LoadConfig(url=mqtt_url, terminals=10, rate=400, duration_s=2.0))
    assert 700 <= result.messages <= 820
    assert result.acked == result.messages


def test_simulate_load_command(mqtt_url: str, recorder: Recorder) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from fleet.cli import main; main()",
            "simulate",
            "load",
            "--terminals",
            "5",
            "--messages",
            "200",
            "--rate",
            "0",
            "--mqtt-url",
            mqtt_url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["messages"] == summary["acked"] == 200
    assert len(recorder.wait_for(200)) == 200
