"""Load mode: N terminals random-walking on the road graph, publishing fixes at a rate.

No plan, no faults: just realistic, valid traffic for ingest benchmarks. Terminals
are split over several publisher processes (one paho client each, since one Python
publisher tops out well below what an ingestor can take); each process paces itself
to its share of the rate (0 = as fast as the broker acknowledges). Device times are
the wall clock (strictly increasing per terminal), so an ingestor accepts them.

Terminal ids are those of a city's trucks (`T0001-GPS` …): import the same city
(`clearday simulate city --trucks N`) so the ingestor knows them.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import queue
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as paho

from fleet.config import MqttTarget
from ingest import wire
from simulator import geo
from simulator.city import City, CityConfig, generate

TICK_S = 0.01  # pacing granularity
MAX_UNACKED = 5_000  # per process; publishing waits beyond this
ACK_TIMEOUT_S = 60.0
WORKER_START_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class LoadConfig:
    url: str
    terminals: int = 100
    rate: float = 1000.0  # messages per second over all processes; 0 = as fast as possible
    duration_s: float | None = 10.0
    messages: int | None = None  # stop after this many messages in total instead
    processes: int = 1
    fixes_per_message: int = 1
    qos: int = 1
    seed: int = 0
    noise_m: float = 10.0
    city: CityConfig | None = None  # default: a 50-point city with `terminals` trucks
    terminal_ids: tuple[str, ...] | None = None  # default: the city's first `terminals`

    def __post_init__(self) -> None:
        if self.terminals < 1 or self.processes < 1:
            raise ValueError("terminals and processes must be >= 1")
        if self.processes > self.terminals:
            raise ValueError("more processes than terminals")
        if self.rate < 0:
            raise ValueError("rate must be >= 0 (0 = as fast as possible)")
        if self.duration_s is None and self.messages is None:
            raise ValueError("give duration_s or messages")
        if self.fixes_per_message < 1 or self.qos not in (0, 1, 2):
            raise ValueError("fixes_per_message >= 1 and qos in 0, 1, 2")
        MqttTarget(self.url)  # validates the URL

    def city_config(self) -> CityConfig:
        return self.city or CityConfig(n_points=50, n_trucks=self.terminals, seed=self.seed)


@dataclass(slots=True)
class LoadResult:
    messages: int
    fixes: int
    acked: int
    elapsed_s: float
    processes: int

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out["msgs_per_s"] = round(self.msgs_per_s, 1)
        out["fixes_per_s"] = round(self.fixes / self.elapsed_s, 1) if self.elapsed_s > 0 else 0.0
        out["elapsed_s"] = round(self.elapsed_s, 3)
        return out


class _Walker:
    """One terminal driving at random along the roads (no U-turns unless a dead end)."""

    __slots__ = ("heading", "lat", "length", "lon", "pos_m", "speed_ms", "u", "v")

    def __init__(self, walk: _Walk, rng: random.Random) -> None:
        self.u = rng.choice(walk.nodes)
        self.v = rng.choice(walk.succ[self.u])
        self.pos_m = 0.0
        self.speed_ms = 0.0
        self.length = 1.0
        self.lat = self.lon = self.heading = 0.0
        walk.enter(self, rng)


class _Walk:
    def __init__(self, city: City) -> None:
        g = city.graph
        self.latlon = {n: (float(d["lat"]), float(d["lon"])) for n, d in g.nodes(data=True)}
        self.succ = {n: sorted(g.successors(n)) for n in g.nodes}
        self.edge = {
            (u, v): (float(d["length_m"]), float(d["speed_kmh"]) / 3.6)
            for u, v, d in g.edges(data=True)
        }
        self.nodes = sorted(g.nodes)

    def enter(self, w: _Walker, rng: random.Random) -> None:
        length, speed = self.edge[(w.u, w.v)]
        w.length = length
        w.speed_ms = speed * rng.uniform(0.5, 1.0)
        (lat1, lon1), (lat2, lon2) = self.latlon[w.u], self.latlon[w.v]
        w.heading = geo.bearing_deg(lat1, lon1, lat2, lon2)

    def advance(self, w: _Walker, dt: float, rng: random.Random) -> None:
        w.pos_m += w.speed_ms * dt
        while w.pos_m >= w.length:
            w.pos_m -= w.length
            choices = [n for n in self.succ[w.v] if n != w.u] or self.succ[w.v]
            w.u, w.v = w.v, rng.choice(choices)
            self.enter(w, rng)
        f = w.pos_m / w.length
        (lat1, lon1), (lat2, lon2) = self.latlon[w.u], self.latlon[w.v]
        w.lat, w.lon = lat1 + f * (lat2 - lat1), lon1 + f * (lon2 - lon1)


def _worker(
    config: LoadConfig,
    index: int,
    terminal_ids: Sequence[str],
    quota: int | None,
    start_at: float,
    results: Any,
) -> None:
    """One publisher process: its terminals, its share of the rate."""
    try:
        results.put(("ok", index, _publish(config, index, terminal_ids, quota, start_at)))
    except Exception as exc:  # report, never hang the parent
        results.put(("error", index, f"{type(exc).__name__}: {exc}"))


class _Terminals:
    """One process's terminals: where each is on its walk, and what its next fixes say
    (device time strictly increasing, odometer, sequence number)."""

    def __init__(self, config: LoadConfig, terminal_ids: Sequence[str], rng: random.Random) -> None:
        self.rng = rng
        self.walk = _Walk(generate(config.city_config()))
        self.walkers = [_Walker(self.walk, rng) for _ in terminal_ids]
        self.topics = [wire.positions_topic(t) for t in terminal_ids]
        self.last_time = [datetime.now(UTC)] * len(terminal_ids)
        self.last_mono = [time.monotonic()] * len(terminal_ids)
        self.odometer = [rng.uniform(20_000, 150_000) for _ in terminal_ids]
        self.seqs = [0] * len(terminal_ids)
        self.sigma = config.noise_m
        self.fixes_per_message = config.fixes_per_message

    def message(self, j: int) -> tuple[str, bytes]:
        """Terminal `j`'s next message (topic, payload), its walk advanced to now."""
        w, rng, sigma = self.walkers[j], self.rng, self.sigma
        now = datetime.now(UTC)
        mono = time.monotonic()
        batch = []
        for _ in range(self.fixes_per_message):
            dt = max(0.0, mono - self.last_mono[j])
            self.walk.advance(w, dt, rng)
            self.last_mono[j] = mono
            at = max(now, self.last_time[j] + timedelta(milliseconds=1))
            self.last_time[j] = at
            self.odometer[j] += w.speed_ms * dt / 1000.0
            self.seqs[j] += 1
            lat, lon = geo.offset(w.lat, w.lon, rng.gauss(0, sigma), rng.gauss(0, sigma))
            batch.append(
                wire.Fix(
                    recorded_at=at,
                    lat=round(lat, 7),
                    lon=round(lon, 7),
                    speed_kmh=round(w.speed_ms * 3.6, 1),
                    heading_deg=round(w.heading, 1),
                    accuracy_m=round(sigma * 1.2, 1),
                    odometer_km=round(self.odometer[j], 3),
                    ignition=True,
                    load_state="half",
                    seq=self.seqs[j],
                )
            )
        return self.topics[j], wire.encode_fixes(batch[0] if len(batch) == 1 else batch)


class _Client:
    """One paho client, driven by the publishing thread itself (`loop` calls between
    publishes): measured 1.7x faster than paho's background thread fighting the
    publisher for the GIL."""

    def __init__(self, config: LoadConfig, index: int) -> None:
        self.target = MqttTarget(config.url)
        self.refused: list[str] = []
        self.acked = 0
        self.paho = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=f"clearday-load-{config.seed}-{index}-{random.getrandbits(32):08x}",
            protocol=paho.MQTTv5,
        )
        if self.target.username is not None:
            self.paho.username_pw_set(self.target.username, self.target.password)
        if self.target.tls:
            self.paho.tls_set()
        self.paho.max_inflight_messages_set(1000)
        self.paho.on_connect = self._on_connect
        self.paho.on_publish = self._on_publish

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if getattr(rc, "is_failure", False):
            self.refused.append(str(rc))

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, rc: Any, props: Any
    ) -> None:
        self.acked += 1

    def connect(self) -> None:
        """Connect and wait for the CONNACK (10 s at most)."""
        self.paho.connect(self.target.host, self.target.port, keepalive=30)
        deadline = time.monotonic() + 10
        while not self.paho.is_connected():
            self.paho.loop(0.05)
            if self.refused:
                raise RuntimeError(
                    f"{self.target.redacted} refused the connection: {self.refused[0]}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"no CONNACK from {self.target.redacted} within 10 s")

    def drain(self, sent: int, qos: int) -> None:
        """Wait (bounded) until the broker has acknowledged (QoS 0: taken) every message."""
        wait_until = time.monotonic() + ACK_TIMEOUT_S
        if qos > 0:
            while self.acked < sent and time.monotonic() < wait_until:
                self.paho.loop(0.005)
        else:
            while self.paho.want_write() and time.monotonic() < wait_until:
                self.paho.loop(0.005)

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop(0.1)


def _publish(
    config: LoadConfig,
    index: int,
    terminal_ids: Sequence[str],
    quota: int | None,
    start_at: float,
) -> dict[str, Any]:
    """Publish round-robin over the terminals at this process's share of the rate,
    until the duration or the quota is reached."""
    rng = random.Random(f"clearday-load:{config.seed}:{index}")
    terminals = _Terminals(config, terminal_ids, rng)
    client = _Client(config, index)
    client.connect()
    share = config.rate / config.processes if config.rate > 0 else 0.0
    n = len(terminal_ids)
    sent = i = 0
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    t0 = time.monotonic()
    deadline = t0 + config.duration_s if config.duration_s is not None else math.inf
    while True:
        now_m = time.monotonic()
        if now_m >= deadline or (quota is not None and sent >= quota):
            break
        due = int((now_m - t0) * share) + 1 - sent if share > 0 else 256
        if quota is not None:
            due = min(due, quota - sent)
        if due <= 0:
            client.paho.loop(TICK_S)
            continue
        while client.acked + MAX_UNACKED < sent and time.monotonic() < deadline:
            client.paho.loop(0.001)
        for _ in range(min(due, 32)):
            topic, payload = terminals.message(i % n)
            i += 1
            client.paho.publish(topic, payload, qos=config.qos)
            sent += 1
        client.paho.loop(0)
    elapsed = time.monotonic() - t0
    client.drain(sent, config.qos)
    acked_elapsed = time.monotonic() - t0
    client.close()
    return {
        "messages": sent,
        "fixes": sent * config.fixes_per_message,
        "acked": client.acked if config.qos > 0 else sent,
        "publish_s": elapsed,
        "elapsed_s": acked_elapsed,
    }


def terminal_ids_for(config: LoadConfig) -> tuple[str, ...]:
    if config.terminal_ids is not None:
        ids = config.terminal_ids
    else:
        ids = tuple(t.terminal_id for t in generate(config.city_config()).trucks)
    if len(ids) < config.terminals:
        raise ValueError(f"only {len(ids)} terminal ids for {config.terminals} terminals")
    return tuple(ids[: config.terminals])


def run_load(config: LoadConfig) -> LoadResult:
    """Run the publishers (in this process when `processes` is 1) and add up."""
    ids = terminal_ids_for(config)
    p = config.processes
    groups = [ids[k::p] for k in range(p)]
    quotas: list[int | None] = [None] * p
    if config.messages is not None:
        base, extra = divmod(config.messages, p)
        quotas = [base + (1 if k < extra else 0) for k in range(p)]
    if p == 1:
        out = _publish(config, 0, groups[0], quotas[0], time.time())
        parts = [out]
    else:
        ctx = mp.get_context("spawn")
        results: Any = ctx.Queue()
        start_at = time.time() + 2.0 + 0.5 * p  # let every process build its walk first
        procs = [
            ctx.Process(
                target=_worker,
                args=(config, k, groups[k], quotas[k], start_at, results),
                daemon=True,
            )
            for k in range(p)
        ]
        for proc in procs:
            proc.start()
        parts = []
        errors: list[str] = []
        limit = (config.duration_s or 0) + ACK_TIMEOUT_S + WORKER_START_TIMEOUT_S
        if config.messages is not None and config.rate > 0:
            limit += config.messages / config.rate
        elif config.messages is not None:
            limit += 3600
        deadline = time.monotonic() + limit
        while len(parts) + len(errors) < p:
            try:
                status, _k, payload = results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                errors.append("a publisher process did not report in time")
                break
            (parts if status == "ok" else errors).append(payload)
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
        if errors:
            raise RuntimeError("load publisher failed: " + "; ".join(map(str, errors)))
    return LoadResult(
        messages=sum(x["messages"] for x in parts),
        fixes=sum(x["fixes"] for x in parts),
        acked=sum(x["acked"] for x in parts),
        elapsed_s=max(x["elapsed_s"] for x in parts),
        processes=p,
    )
