"""JT/T 808 gateway benchmark (issue 18): real TCP terminals, the real gateway and
ingestor processes, a real Mosquitto and PostgreSQL.

    .venv/bin/python bench/jt808.py [--idle 10000] [--locations 20000]

Measures, in one run:

1. ``ingest_msgs_per_s``: the ingestor alone draining ``--locations`` single-fix MQTT
   messages from its persistent session (as bench/ingest.py does) — the yardstick;
   ``ingest_live_msgs_per_s``: the same messages published (by a raw pipelined
   publisher) while the ingestor runs, from the first publish to the last commit —
   the ingestor's rate when its producer shares the machine, as the terminals and
   the gateway do (``jt808_over_ingest_live``);
2. ``jt808_locations_per_s``: ``--terminals`` JT/T 808 terminals send ``--locations``
   0x0200 reports through the gateway as fast as the acknowledgements come back (each
   terminal waits for its 0x8001 before the next report, as terminals do); timed from
   the first report to the commit of the last row. ``jt808_over_ingest`` is the ratio
   (target >= 0.5). These terminals are lean protocol objects whose frames are encoded
   before the clock starts, run in a process of their own (so that neither the
   bench's commit watcher nor anything else of the bench shares their event loop),
   and share the cores with everything measured. ``cpu_s`` says how much CPU each
   component (terminals, gateway, broker, ingestor, PostgreSQL, the bench) used during
   this phase, ``cpu_system_s`` how much of it in the kernel (system calls and the
   loopback network), and ``cpu_busy`` what share of the machine's cores they took
   together. ``gateway_batches`` is how many messages the gateway published on its
   own topic in this phase and ``fixes_per_batch`` how many fixes each carried on
   average (none with ``CLEARDAY_JT808_BATCH_FIXES=false``: one message per report on
   the truck's topic);
3. ``p99_latency_ms``: report sent → row committed (the commit notification of the
   row's transaction, from the trigger bench/ingest.py adds), for reports paced at
   half the rate of 2;
4. ``idle_connections_held``: ``--idle`` terminals connect and authenticate, then
   send a heartbeat every ``--heartbeat-s`` for ``--hold-s``; a connection counts as
   held when every heartbeat was answered and it is still open at the end (target
   10,000). ``gateway_rss_mb`` is the gateway's memory while holding them (its
   processes' resident sizes added up), ``gateway_pss_mb`` the same with each page
   shared between processes counted once (proportional set size), and
   ``gateway_rss_before_mb`` its resident size before they connected;
5. ``lost`` / ``duplicated``: the reports acknowledged in 2 and 3 against the table.

Servers: private Mosquitto and PostgreSQL in a temporary folder (or CLEARDAY_MQTT_URL
/ CLEARDAY_DATABASE_URL, as bench/ingest.py). The open-file limit of this process is
raised to its hard limit (the gateway raises its own). The last line on stdout is one
JSON object.

``--gateway-processes N`` runs the gateway as N processes sharing the port
(``clearday jt808 --processes N``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import multiprocessing
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

import psycopg
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fleet.config import MqttTarget  # noqa: E402
from fleet.devservers import free_port, free_port_run  # noqa: E402
from ingest.jt808 import codec  # noqa: E402
from ingest.jt808.service import freeze_imports, loop_runner  # noqa: E402
from simulator.jt808 import Jt808Terminal  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_ingest", ROOT / "bench" / "ingest.py")
assert _spec is not None and _spec.loader is not None
bi: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bi)

HANDSHAKE_CONCURRENCY = 400


def run_loop(coro: Any) -> Any:
    """The bench's terminals on the gateway's event loop (uvloop): the load generator
    should take as little of the shared CPU as it can."""
    with loop_runner() as runner:
        return runner.run(coro)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def phone(i: int) -> str:
    return f"139{i + 1:08d}"


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def prepare(url: str, trucks: int) -> list[str]:
    """Trucks BT0000… with phones and registrations (auth code = 'bench-' + phone)."""
    terminals: list[str] = bi.Workload(trucks).terminals
    bi.prepare_database(url, terminals)
    with psycopg.connect(url) as conn:
        conn.execute(
            "UPDATE truck SET jt808_phone = '139' || lpad((substr(truck_id, 3)::int + 1)::text, 8, '0')"
        )
        conn.execute(
            "INSERT INTO jt808_registration (jt808_phone, truck_id, auth_code)"
            " SELECT jt808_phone, truck_id, 'bench-' || jt808_phone FROM truck"
        )
    return terminals


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


CpuTimes = tuple[float, float]  # (user, system) seconds


def cpu_times(pid: int) -> CpuTimes:
    """(user, system) CPU seconds of a process tree: each live process's own, plus
    what its exited children used (PostgreSQL's backends, the gateway's instances
    once stopped)."""
    user = system = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11]) + int(fields[13])  # utime cutime
        system += int(fields[12]) + int(fields[14])  # stime cstime
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


class CpuSplit:
    """CPU seconds each component uses between ``start`` and ``stop``."""

    def __init__(self, components: dict[str, Callable[[], CpuTimes]]) -> None:
        self.components = components
        self.before: dict[str, CpuTimes] = {}
        self.wall_s = 0.0

    def start(self) -> None:
        self.before = {name: read() for name, read in self.components.items()}
        self.wall_s = time.monotonic()

    def stop(self) -> tuple[dict[str, CpuTimes], float]:
        """The CPU times each component used, and the wall time that took."""
        wall_s = time.monotonic() - self.wall_s
        return {n: _minus(read(), self.before[n]) for n, read in self.components.items()}, wall_s


def _minus(after: CpuTimes, before: CpuTimes) -> CpuTimes:
    return after[0] - before[0], after[1] - before[1]


def summary(used: dict[str, CpuTimes], wall_s: float) -> dict[str, Any]:
    """``cpu_s`` per component, ``cpu_system_s`` of it in the kernel, and ``cpu_busy``
    the share of the machine's cores they took together."""
    total = sum(u + s for u, s in used.values())
    return {
        "cpu_s": {n: round(u + s, 2) for n, (u, s) in used.items()},
        "cpu_system_s": {n: round(s, 2) for n, (_, s) in used.items()},
        "cpu_wall_s": round(wall_s, 2),
        "cpu_busy": round(total / wall_s / (os.cpu_count() or 1), 2),
    }


def own_cpu_times() -> CpuTimes:
    t = os.times()
    return t.user, t.system


class GatewayProcess:
    def __init__(self, env: dict[str, str], port: int, processes: int = 1) -> None:
        self.metrics_port = free_port_run(processes)
        self.env = {**env, "CLEARDAY_JT808_METRICS_PORT": str(self.metrics_port)}
        self.port, self.processes = port, processes
        self.proc: subprocess.Popen[bytes] | None = None

    def batches(self) -> tuple[float, float]:
        """(batches published on the gateway's topic, fixes they carried) over every
        process, from their /metrics."""
        totals = {"clearday_jt808_batches_total": 0.0, "clearday_jt808_batched_fixes_total": 0.0}
        for n in range(self.processes):
            url = f"http://127.0.0.1:{self.metrics_port + n}/metrics"
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name in totals:
                        totals[sample.name] += sample.value
        return totals["clearday_jt808_batches_total"], totals["clearday_jt808_batched_fixes_total"]

    def start(self) -> GatewayProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from fleet.cli import main; main()", "jt808",
             "--host", "127.0.0.1", "--port", str(self.port),
             "--processes", str(self.processes)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        # Ready when terminals can connect and every process answers on /metrics (the
        # processes start one after another; the first alone holds the terminals' port).
        ports = [self.port, *(self.metrics_port + n for n in range(self.processes))]
        deadline = time.monotonic() + 60
        while ports:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", ports[0])) == 0:
                    ports.pop(0)
                    continue
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.2)
        return self

    def rss_mb(self) -> float:
        """Resident memory of the gateway's processes added up."""
        return self._memory_mb("status", "VmRSS:")

    def pss_mb(self) -> float:
        """The same with each page shared by several processes (the libraries, the
        modules of processes forked from one another) counted once."""
        return self._memory_mb("smaps_rollup", "Pss:")

    def _memory_mb(self, file: str, key: str) -> float:
        assert self.proc is not None
        total = 0.0
        for pid in process_tree(self.proc.pid):
            try:
                lines = Path(f"/proc/{pid}/{file}").read_text().splitlines()
            except OSError:
                continue
            total += sum(int(x.split()[1]) / 1024 for x in lines if x.startswith(key))
        return total

    def cpu_times(self) -> CpuTimes:
        assert self.proc is not None
        return cpu_times(self.proc.pid)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def location(i: int, at: datetime) -> codec.Location:
    return codec.Location(
        alarm=0,
        status=codec.Status.LOCATED | codec.Status.ACC_ON,
        lat=31.8 + (i % 1000) * 1e-5,
        lon=117.3,
        altitude_m=10,
        speed_kmh=20.0,
        heading_deg=90,
        recorded_at=at,
    )


async def login(i: int, port: int, gate: asyncio.Semaphore) -> Jt808Terminal | None:
    t = Jt808Terminal("127.0.0.1", port, phone(i), auth_code=f"bench-{phone(i)}")
    async with gate:
        try:
            await t.connect()
            await t.authenticate()
        except Exception:
            await t.close()
            return None
    return t


class LeanTerminal(asyncio.Protocol):
    """A terminal for the rate phases, as cheap as the bench can make it (it shares
    the machine with the gateway): its frames are encoded before the clock starts,
    and it sends report k+1 once report k is acknowledged (after ``pace_s``)."""

    def __init__(self, auth: bytes, reports: list[bytes], pace_s: float) -> None:
        self.auth, self.reports, self.pace_s = auth, reports, pace_s
        self.k = -1  # the report awaiting its answer; -1: the auth
        self.sent_at: list[float] = []
        self.acked = 0
        self.refused = 0
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.authenticated: asyncio.Future[bool] = self.loop.create_future()
        self.finished: asyncio.Future[None] = self.loop.create_future()
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's is not an asyncio.Transport subclass)
        self.transport = cast(asyncio.Transport, transport)
        transport.write(self.auth)

    def start(self) -> None:
        if not self.reports:
            self.finished.set_result(None)
            return
        self._send_next()

    def _send_next(self) -> None:
        assert self.transport is not None
        self.k += 1
        self.sent_at.append(time.time())
        self.transport.write(self.reports[self.k])

    def data_received(self, data: bytes) -> None:
        *frames, self._tail = (self._tail + data).split(b"\x7e")
        for raw in frames:
            if len(raw) < 7:
                continue
            content = codec.unescape(raw) if b"\x7d" in raw else raw
            result = content[-2]  # 0x8001 body: reply serial, reply id, result; check code
            if self.k < 0:
                self.authenticated.set_result(result == codec.Result.OK)
                continue
            if result == codec.Result.OK:
                self.acked += 1
            else:
                self.refused += 1
            if self.k + 1 >= len(self.reports):
                if not self.finished.done():
                    self.finished.set_result(None)
            elif self.pace_s:
                self.loop.call_later(self.pace_s, self._send_next)
            else:
                self._send_next()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.authenticated.done():
            self.authenticated.set_result(False)
        if not self.finished.done():
            self.finished.set_result(None)


def report_frames(i: int, per_terminal: int, base: datetime) -> list[bytes]:
    return [
        codec.encode_frame(
            codec.MsgId.LOCATION,
            phone(i),
            k + 2,
            codec.encode_location(location(k, base + timedelta(seconds=k)), codec.GMT8),
        )
        for k in range(per_terminal)
    ]


Throughput = tuple[float, float, dict[tuple[int, datetime], float], int]


async def throughput(
    port: int,
    terminals: int,
    per_terminal: int,
    base: datetime,
    *,
    pace_s: float = 0.0,
    ready: Callable[[], None] | None = None,
) -> Throughput:
    """(first send, last ack, {(truck index, device time): send time}, reports
    unacknowledged). ``ready`` is called (blocking) once every terminal is
    authenticated, before the first report."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(HANDSHAKE_CONCURRENCY)

    async def connect(i: int) -> LeanTerminal:
        auth = codec.encode_frame(codec.MsgId.AUTH, phone(i), 1, f"bench-{phone(i)}".encode())
        async with gate:
            _, t = await loop.create_connection(
                lambda: LeanTerminal(auth, report_frames(i, per_terminal, base), pace_s),
                "127.0.0.1",
                port,
            )
            if not await asyncio.wait_for(t.authenticated, 30):
                raise RuntimeError(f"terminal {i} was not authenticated")
        return t

    fleet = await asyncio.gather(*(connect(i) for i in range(terminals)))
    if ready is not None:
        await loop.run_in_executor(None, ready)
    start = time.time()
    for t in fleet:
        t.start()
    await asyncio.wait([t.finished for t in fleet], timeout=300)
    end = time.time()
    sent: dict[tuple[int, datetime], float] = {}
    failed = 0
    for i, t in enumerate(fleet):
        for k, at in enumerate(t.sent_at):
            sent[(i, base + timedelta(seconds=k))] = at
        failed += per_terminal - t.acked
        assert t.transport is not None
        t.transport.close()
    return start, end, sent, failed


def _terminals_main(conn: Connection, args: tuple[Any, ...], pace_s: float) -> None:
    """The rate phases' terminals, in a process of their own: tells the parent when
    they are connected, waits for its go, and sends back the result and the CPU
    seconds this process used while the clock ran."""
    raise_fd_limit()
    used: list[CpuTimes] = []

    def ready() -> None:
        freeze_imports()  # as the gateway does: its frames and modules out of collections
        conn.send("ready")
        conn.recv()
        used.append(own_cpu_times())

    result = run_loop(throughput(*args, pace_s=pace_s, ready=ready))
    conn.send((result, _minus(own_cpu_times(), used[0])))
    conn.close()


def throughput_apart(
    args: tuple[int, int, int, datetime], pace_s: float, split: CpuSplit
) -> tuple[Throughput, dict[str, Any]]:
    """:func:`throughput` in a separate process; ``split`` measures the other
    components over the same interval."""
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    proc = ctx.Process(target=_terminals_main, args=(there, args, pace_s))
    proc.start()
    try:
        if here.recv() != "ready":
            raise RuntimeError("the terminals process did not start")
        split.start()
        here.send("go")
        result, terminals_cpu = here.recv()
        used, wall_s = split.stop()
    finally:
        proc.join(60)
        if proc.is_alive():
            proc.kill()
    return result, summary({**used, "terminals": terminals_cpu}, wall_s)


async def idle(
    port: int, n: int, hold_s: float, heartbeat_s: float, gateway: GatewayProcess
) -> dict[str, Any]:
    gate = asyncio.Semaphore(HANDSHAKE_CONCURRENCY)
    rss_before = gateway.rss_mb()
    t0 = time.monotonic()
    fleet = [t for t in await asyncio.gather(*(login(i, port, gate) for i in range(n))) if t]
    connect_s = time.monotonic() - t0
    log(f"idle: {len(fleet)} of {n} terminals authenticated in {connect_s:.1f} s")
    missed: set[int] = set()
    answered = 0

    async def beat(k: int, t: Jt808Terminal) -> None:
        nonlocal answered
        await asyncio.sleep(heartbeat_s * (k % 1000) / 1000)  # spread the heartbeats
        deadline = time.monotonic() + hold_s
        while time.monotonic() < deadline:
            try:
                if await t.heartbeat():
                    answered += 1
                else:
                    missed.add(k)
            except Exception:
                missed.add(k)
            await asyncio.sleep(heartbeat_s)

    rss = pss = 0.0

    async def sample_rss() -> None:
        nonlocal rss, pss
        for _ in range(int(hold_s)):
            rss, pss = max(rss, gateway.rss_mb()), max(pss, gateway.pss_mb())
            await asyncio.sleep(1)

    await asyncio.gather(sample_rss(), *(beat(k, t) for k, t in enumerate(fleet)))
    held = sum(
        1
        for k, t in enumerate(fleet)
        if k not in missed and t.connected and t._pump is not None and not t._pump.done()
    )
    for t in fleet:
        await t.close()
    return {
        "idle_terminals": n,
        "idle_connections_held": held,
        "idle_connect_s": round(connect_s, 1),
        "heartbeats_answered": answered,
        "heartbeats_missed_terminals": len(missed),
        "gateway_rss_mb": round(rss, 1),
        "gateway_pss_mb": round(pss, 1),
        "gateway_rss_before_mb": round(rss_before, 1),
    }


def stored(url: str, commits: dict[str, float]) -> dict[tuple[str, datetime], tuple[int, float]]:
    """(truck, device time) → (copies, commit time). The commit time is the one the
    bench trigger's notification reported for the row's transaction (its
    ``received_at``), or ``received_at`` itself if none arrived."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT truck_id, recorded_at, count(*) OVER (PARTITION BY truck_id, recorded_at),"
            " extract(epoch FROM received_at)::text FROM position"
        ).fetchall()
    return {(r[0], r[1]): (r[2], commits.get(r[3], float(r[3]))) for r in rows}


def check(
    url: str, sent: dict[tuple[int, datetime], float], commits: dict[str, float]
) -> tuple[int, int, list[float], float]:
    """(lost, duplicated, latencies in ms, last commit time) of one phase's reports."""
    rows = stored(url, commits)
    lost = dup = 0
    latencies: list[float] = []
    last = 0.0
    for (i, at), sent_at in sent.items():
        row = rows.get((f"BT{i:04d}", at))
        if row is None:
            lost += 1
            continue
        dup += row[0] - 1
        latencies.append((row[1] - sent_at) * 1000)
        last = max(last, row[1])
    dup += len(rows) - len(sent) + lost
    return lost, dup, latencies, last


def wait_count(url: str, expected: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            (n,) = conn.execute("SELECT count(*) FROM position").fetchone()  # type: ignore[misc]
            if n >= expected or time.monotonic() > deadline:
                return int(n)
            time.sleep(0.25)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def components(
    servers: Any, ingestor: Any, gateway: GatewayProcess
) -> dict[str, Callable[[], CpuTimes]]:
    """What shares the machine during the rate phase (the terminals are measured in
    their own process); a server the bench did not start is not measured."""
    out: dict[str, Callable[[], CpuTimes]] = {
        "gateway": gateway.cpu_times,
        "ingestor": lambda: cpu_times(ingestor.proc.pid),
        "bench": own_cpu_times,
    }
    if servers.private_mq is not None:
        out["broker"] = lambda: cpu_times(servers.private_mq.process.pid)
    if servers.private_pg is not None:
        postmaster = int((servers.private_pg.data_dir / "postmaster.pid").read_text().split()[0])
        out["postgres"] = lambda: cpu_times(postmaster)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle", type=int, default=10_000, help="idle terminals held")
    parser.add_argument("--hold-s", type=float, default=60.0)
    parser.add_argument("--heartbeat-s", type=float, default=20.0)
    parser.add_argument("--locations", type=int, default=20_000, help="reports in the rate phase")
    parser.add_argument("--terminals", type=int, default=200, help="terminals in the rate phase")
    parser.add_argument("--latency-s", type=float, default=10.0, help="length of the paced phase")
    parser.add_argument(
        "--gateway-processes", type=int, default=1, help="gateway processes sharing the port"
    )
    args = parser.parse_args()
    fds = raise_fd_limit()
    log(f"open-file limit {fds}")
    trucks = max(args.idle, args.terminals)
    with tempfile.TemporaryDirectory(prefix="clearday-bench-jt808-") as tmp:
        servers = bi.Servers(Path(tmp))
        ingestor = gateway = None
        watcher = None
        try:
            terminals = prepare(servers.url, trucks)
            env = {
                **os.environ,
                "CLEARDAY_DATABASE_URL": servers.url,
                "CLEARDAY_MQTT_URL": servers.mqtt_url,
                "CLEARDAY_METRICS_PORT": "0",
                "CLEARDAY_INGEST_SHARE_GROUP": "",
                "CLEARDAY_INGEST_RECEIVE_MAXIMUM": str(bi.RECEIVE_MAXIMUM),
                "CLEARDAY_LOG_LEVEL": "WARNING",
            }
            watcher = bi.CommitWatcher(servers.url)
            ingestor = bi.IngestorProcess(env, f"bench-ingest-{uuid.uuid4().hex[:6]}")
            # 1. the ingestor's own single-fix drain rate
            ingestor.start()
            ingestor.wait_subscribed()
            ingestor.stop()
            workload = bi.Workload(len(terminals))
            messages, seqs = workload.single(args.locations)
            bi.publish(MqttTarget(servers.mqtt_url), messages, "single-fix")
            elapsed, _, lo, du = bi.drain_phase(
                "ingest", servers.url, ingestor, watcher, workload, seqs
            )
            ingest_rate = len(seqs) / elapsed
            log(f"ingestor alone: {ingest_rate:,.0f} msgs/s")
            ingestor.start()
            ingestor.wait_subscribed()
            # 1b. the same messages, published while the ingestor runs
            watcher.commits.clear()
            live_start = time.time()
            bi.publish(MqttTarget(servers.mqtt_url), messages, "single-fix live")
            wait_count(servers.url, len(seqs), 120)
            time.sleep(0.5)
            live_rate = len(seqs) / (watcher.last_commit() - live_start)
            lo_live, du_live, _ = bi.check_rows(servers.url, workload, seqs)
            bi.truncate(servers.url)
            log(f"ingestor fed live: {live_rate:,.0f} msgs/s")
            port = free_port()
            gateway = GatewayProcess(env, port, args.gateway_processes).start()
            split = CpuSplit(components(servers, ingestor, gateway))
            # 2. rate through the gateway
            per = max(1, args.locations // args.terminals)
            base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
            batches_before = gateway.batches()
            (start, _, sent, failed), cpu = throughput_apart(
                (port, args.terminals, per, base), 0.0, split
            )
            batches, batched = (
                a - b for a, b in zip(gateway.batches(), batches_before, strict=True)
            )
            log(f"CPU during the rate phase: {cpu}")
            wait_count(servers.url, len(sent), 120)
            time.sleep(0.5)
            lost, dup, _, last_commit = check(servers.url, sent, watcher.commits)
            rate = len(sent) / (last_commit - start)
            log(
                f"through the gateway: {len(sent)} reports, {rate:,.0f}/s; unacked {failed}, lost {lost}, duplicated {dup}"
            )
            bi.truncate(servers.url)
            # 3. latency at half that rate
            per_l = max(1, int(rate / 2 * args.latency_s / args.terminals))
            pace = args.terminals / (rate / 2)
            base_l = base + timedelta(hours=1)
            (_, _, sent_l, failed_l), _ = throughput_apart(
                (port, args.terminals, per_l, base_l), pace, split
            )
            wait_count(servers.url, len(sent_l), 120)
            time.sleep(0.5)
            lost_l, dup_l, latencies, _ = check(servers.url, sent_l, watcher.commits)
            log(
                f"paced at {rate / 2:,.0f}/s: p50 {percentile(latencies, 0.5):.0f} ms, p99 {percentile(latencies, 0.99):.0f} ms"
            )
            bi.truncate(servers.url)
            # 4. idle connections
            idle_result = run_loop(idle(port, args.idle, args.hold_s, args.heartbeat_s, gateway))
            log(f"idle: {idle_result}")
            result = {
                "ingest_msgs_per_s": round(ingest_rate),
                "jt808_locations_per_s": round(rate),
                "jt808_over_ingest": round(rate / ingest_rate, 3),
                "ingest_live_msgs_per_s": round(live_rate),
                "jt808_over_ingest_live": round(rate / live_rate, 3),
                "p99_latency_ms": round(percentile(latencies, 0.99)),
                "p50_latency_ms": round(percentile(latencies, 0.5)),
                "latency_rate_per_s": round(len(sent_l) / args.latency_s),
                **idle_result,
                "reports_unacknowledged": failed + failed_l,
                "lost": lost + lost_l + lo + lo_live,
                "duplicated": dup + dup_l + du + du_live,
                "locations": len(sent),
                "rate_terminals": args.terminals,
                "gateway_processes": args.gateway_processes,
                "gateway_batches": round(batches),
                "fixes_per_batch": round(batched / batches, 1) if batches else None,
                **cpu,
                "load_avg": round(os.getloadavg()[0], 2),
            }
        finally:
            if gateway is not None:
                gateway.stop()
            if ingestor is not None:
                ingestor.stop()
            if watcher is not None:
                watcher.close()
            servers.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
