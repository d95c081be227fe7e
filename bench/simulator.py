"""How far ahead of real time the simulator stays at 60x on a 300-point district.

Runs against a real Mosquitto (CLEARDAY_MQTT_URL, or a private one started here),
with a subscriber counting what arrives:

1. a window of the day (default the first 2 simulated hours, when every truck is
   out) published at 60x: the lag of each message against its schedule, and the
   share of wall time the simulator was busy (the rest it slept, waiting for its
   schedule) -> `headroom_x` = 1 / busy share;
2. the whole day as fast as possible: simulated seconds per wall second
   (`afap_speed_x`, including MQTT publishing and acknowledgements) -> how many
   times faster than 60x it could go (`ahead_of_60x`);
3. the same day computed without MQTT (`compute_speed_x`).

The last stdout line is one JSON object.

    .venv/bin/python bench/simulator.py [--points 300] [--trucks 12] [--window-min 120]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path and its name would hide
# the `simulator` package: put the repository root before it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as paho

from fleet.config import MqttTarget
from simulator.city import generate
from simulator.faults import FaultRates, random_faults
from simulator.mqtt import MqttFleet
from simulator.plans import greedy_plan
from simulator.roads import RoadNetwork
from simulator.trucks import DaySpec, ListSink, SimDay, TerminalConfig, run

SERVICE_DATE = date(2025, 3, 3)


class Recorder:
    """Counts live (not retained) messages on the truck topics."""

    def __init__(self, url: str) -> None:
        target = MqttTarget(url)
        self.count = 0
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=f"bench-recorder-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv5,
        )
        if target.username is not None:
            self.client.username_pw_set(target.username, target.password)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(target.host, target.port)
        self.client.loop_start()
        self.client.subscribe("clearday/v1/trucks/#", qos=1)
        if not subscribed.wait(10):
            raise RuntimeError("no SUBACK from the broker")

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        if not msg.retain:
            with self._lock:
                self.count += 1

    def wait_for(self, n: int, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while self.count < n and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        return self.count

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=300)
    ap.add_argument("--trucks", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--speed", type=float, default=60.0)
    ap.add_argument("--window-min", type=float, default=120.0, help="simulated minutes paced")
    args = ap.parse_args()

    broker = None
    url = os.environ.get("CLEARDAY_MQTT_URL")
    if not url:
        from fleet.devservers import PrivateMosquitto

        broker = PrivateMosquitto(Path(tempfile.mkdtemp(prefix="bench-sim-"))).start()
        url = broker.url
    try:
        t0 = time.perf_counter()
        city = generate(n_points=args.points, n_trucks=args.trucks, seed=args.seed)
        net = RoadNetwork(city)
        plan = greedy_plan(city, net=net)
        faults = random_faults(plan, city, FaultRates(), seed=args.seed)
        setup_s = time.perf_counter() - t0
        terminal = TerminalConfig(noise_m=15.0, dropout_prob=0.05)

        def spec() -> DaySpec:
            return DaySpec(
                city=city,
                plan=plan,
                service_date=SERVICE_DATE,
                seed=args.seed,
                terminal=terminal,
                faults=faults,
            )

        start_s = min(r.stops[0].departure_s for r in plan.routes) - 120
        until_s = start_s + args.window_min * 60

        def log(msg: str) -> None:
            print(msg, file=sys.stderr, flush=True)

        # 1. paced at 60x
        log(f"paced: {args.window_min:.0f} simulated minutes at {args.speed:g}x …")
        recorder = Recorder(url)
        fleet = MqttFleet(url, client_prefix="bench-paced")
        paced = run(
            SimDay(spec(), net=net).emissions(),
            fleet,
            speed=args.speed,
            start_s=start_s,
            until_s=until_s,
        )
        pub = fleet.close()
        got = recorder.wait_for(paced.messages + pub.drops, timeout_s=30)
        recorder.close()
        paced_lost = paced.messages + pub.drops - got

        # 2. the whole day as fast as possible, through the broker
        log("whole day, as fast as possible, through the broker …")
        recorder = Recorder(url)
        fleet = MqttFleet(url, client_prefix="bench-afap")
        t1 = time.perf_counter()
        afap = run(SimDay(spec(), net=net).emissions(), fleet, speed=None)
        pub2 = fleet.close()
        afap_wall = time.perf_counter() - t1
        got2 = recorder.wait_for(afap.messages + pub2.drops, timeout_s=60)
        recorder.close()
        day_span = afap.sim_end_s - afap.sim_start_s

        # 3. the same day, no MQTT
        t2 = time.perf_counter()
        dry = run(SimDay(spec(), net=net).emissions(), ListSink(), speed=None)
        compute_wall = time.perf_counter() - t2

        busy = paced.busy_s / paced.wall_s if paced.wall_s else 1.0
        afap_speed = day_span / afap_wall
        result = {
            "points": args.points,
            "trucks": args.trucks,
            "routes": len(plan.routes),
            "faults": len(faults),
            "speed": args.speed,
            "paced_sim_s": round(until_s - start_s, 1),
            "paced_wall_s": round(paced.wall_s, 2),
            "paced_messages": paced.messages,
            "paced_msgs_per_s": round(paced.messages / paced.wall_s, 1),
            "paced_lost": paced_lost,
            "max_lag_ms": round(paced.max_lag_s * 1000, 2),
            "p99_lag_ms": round(paced.lag_quantile_s(0.99) * 1000, 2),
            "p50_lag_ms": round(paced.lag_quantile_s(0.5) * 1000, 2),
            "busy_fraction": round(busy, 4),
            "headroom_x": round(1 / busy, 1) if busy > 0 else None,
            "day_sim_s": round(day_span, 1),
            "day_messages": afap.messages,
            "day_fixes": afap.fixes,
            "afap_wall_s": round(afap_wall, 2),
            "afap_speed_x": round(afap_speed, 1),
            "ahead_of_60x": round(afap_speed / args.speed, 1),
            "afap_lost": afap.messages + pub2.drops - got2,
            "compute_speed_x": round((dry.sim_end_s - dry.sim_start_s) / compute_wall, 1),
            "setup_s": round(setup_s, 2),
            "broker": "private" if broker else "CLEARDAY_MQTT_URL",
        }
        print(json.dumps(result))
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
