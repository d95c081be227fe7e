"""Ingest benchmark (issue 3): a real Mosquitto, the real database, real processes.

    .venv/bin/python bench/ingest.py [--messages 50000] [--batched-messages 10000]

Measures, in one run:

1. ``bare_msgs_per_s``: a bare paho subscriber (auto-ack, same MQTT 5 settings and
   subscription as the ingestor) draining N single-fix messages from its
   persistent session — the client library's own limit on this machine;
   ``lean_bare_msgs_per_s`` is the same with the ingestor's own receive path
   (``ingest.mqtt.LeanClient``, which skips most of stock paho's per-message work), so
   ``ingest_over_lean_bare`` is what the ingestor adds on top of just receiving;
2. ``ingest_msgs_per_s``: ``clearday ingest`` draining the same N messages from its
   persistent session (published while it was stopped), timed from its CONNACK to
   the commit of the last row;
3. ``ingest_fixes_per_s_batched``: the same with ``--fixes-per-message`` fixes a message;
4. ``copy_rows_per_s``: one raw binary COPY of the batched phase's rows into ``position``;
5. ``p99_latency_ms``: publish → commit latency of single-fix messages published at
   half the drained rate (median of the rounds) while the ingestor runs;
6. ``hostile_good_fixes_per_s``: the single-fix drain again with 1 % hostile messages
   mixed in (``--hostile-percent``; the payloads of issue 13 and others, on every
   channel: deep nesting, 1e999, NaN, NUL, lone surrogates, a malformed array), each of
   which must become a dead letter; ``hostile_over_clean`` compares the best good
   fixes/s with the best clean single-fix drain (and per round; target >= 0.9);
7. ``lost`` / ``duplicated``: every phase's published fixes compared with the table.

Commit times come from a statement-level trigger the benchmark adds to ``position``
in its own database: it NOTIFYs the transaction's timestamp (= the rows'
``received_at``), and the notification arrives when the transaction commits.

Servers: CLEARDAY_MQTT_URL / CLEARDAY_DATABASE_URL when set (the benchmark creates and
drops a database of its own there; the broker must allow a queue of N messages per
client — see deploy/mosquitto), otherwise a private Mosquitto and PostgreSQL
(fsync on; BENCH_DURABLE=0 turns it off) in a temporary folder. ``--rounds`` interleave
the bare subscriber and the ingestor so both see the same background load; the best
round of each is reported, and every round. The last line on stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fleet import db  # noqa: E402
from fleet.config import MqttTarget  # noqa: E402
from fleet.devservers import PrivateMosquitto, PrivatePostgres  # noqa: E402
from ingest import mqttpacket as mp  # noqa: E402
from ingest import wire  # noqa: E402
from ingest.writer import COPY_POSITION, POSITION_TYPES, position_row  # noqa: E402

RECEIVE_MAXIMUM = 20_000
SESSION_EXPIRY_S = 3600
BATCH_ROWS = 5000


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- publisher


class RawPublisher:
    """A minimal MQTT 3.1.1 QoS 1 publisher over a plain socket: pipelined, so it
    out-runs one paho publisher (which tops out near 3-4k msgs/s here) and does not
    limit the figures. It counts PUBACKs; ``flush()`` waits for all of them."""

    def __init__(self, target: MqttTarget, client_id: str, window: int = 20_000) -> None:
        self.window = window
        self.sock = socket.create_connection((target.host, target.port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.next_id = 1
        self.inflight = 0
        self.acked = 0
        self._rbuf = b""
        self.sock.sendall(
            mp.connect(
                client_id,
                username=target.username or None,
                password=target.password,
                keepalive_s=60,
                version=4,
            )
        )
        connack = self._read_exact(4)
        if connack[0] != 0x20 or connack[3] != 0:
            raise RuntimeError(f"broker refused the benchmark publisher: {connack!r}")
        self.sock.setblocking(False)

    def _read_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            data += chunk
        return data

    def _drain_acks(self, block: bool) -> None:
        while True:
            ready, _, _ = select.select([self.sock], [], [], 1.0 if block else 0)
            if not ready:
                if block:
                    continue
                return
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("broker closed the connection")
            self._rbuf += chunk
            n = len(self._rbuf) // 4  # only PUBACKs (4 bytes) come back
            self._rbuf = self._rbuf[n * 4 :]
            self.inflight -= n
            self.acked += n
            if not block or self.inflight < self.window // 2:
                return

    def _publish_packet(self, topic: str, payload: bytes) -> bytes:
        pid = self.next_id
        self.next_id = pid + 1 if pid < 65535 else 1
        self.inflight += 1
        return mp.publish_qos1(mp.string(topic), pid, payload, version=4)

    def publish_many(self, messages: Iterable[tuple[str, bytes]]) -> int:
        buf: list[bytes] = []
        count = 0
        for topic, payload in messages:
            buf.append(self._publish_packet(topic, payload))
            count += 1
            if len(buf) >= 500:
                self._send(b"".join(buf))
                buf.clear()
                while self.inflight >= self.window:
                    self._drain_acks(block=True)
                self._drain_acks(block=False)
        if buf:
            self._send(b"".join(buf))
        return count

    def packet(self, topic: str, payload: bytes) -> bytes:
        """A PUBLISH packet to send later with ``send_packets`` (ids stay unique as
        long as fewer than 65535 are unacknowledged)."""
        return self._publish_packet(topic, payload)

    def send_packets(self, packets: list[bytes]) -> None:
        self._send(b"".join(packets))
        self._drain_acks(block=False)

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = self.sock.send(view)
                view = view[sent:]
            except BlockingIOError:
                select.select([self.sock], [self.sock], [], 1.0)
                self._drain_acks(block=False)

    def flush(self, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while self.inflight > 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.inflight} publishes not acknowledged")
            self._drain_acks(block=True)

    def close(self) -> None:
        self.flush()
        self.sock.setblocking(True)
        self.sock.sendall(b"\xe0\x00")
        self.sock.close()


# ----------------------------------------------------------------------------- workload


class Workload:
    """Fixes with unique (truck, device time) keys and a global sequence number."""

    def __init__(self, trucks: int) -> None:
        self.terminals = [f"BENCH-{i:04d}" for i in range(trucks)]
        self.topics = [wire.positions_topic(t) for t in self.terminals]
        self.base = datetime.now(UTC) - timedelta(hours=2)
        self.next_seq = 0
        self._explicit_at: dict[int, datetime] = {}

    def recorded_at(self, seq: int) -> datetime:
        return self._explicit_at.get(seq) or self.base + timedelta(milliseconds=seq)

    def fix(self, seq: int, at: datetime | None = None) -> wire.Fix:
        truck = seq % len(self.terminals)
        if at is not None:
            self._explicit_at[seq] = at
        recorded_at = self.recorded_at(seq)
        return wire.Fix(
            recorded_at=recorded_at,
            lat=31.80 + (seq % 1000) * 1e-5,
            lon=117.25 + (truck % 100) * 1e-4,
            speed_kmh=float(seq % 60),
            heading_deg=float(seq % 360),
            accuracy_m=8.0,
            odometer_km=10_000 + seq * 0.01,
            ignition=True,
            load_state="half",
            seq=seq,
        )

    def single(self, n: int) -> tuple[list[tuple[str, bytes]], list[int]]:
        seqs = list(range(self.next_seq, self.next_seq + n))
        self.next_seq += n
        messages = [
            (self.topics[s % len(self.topics)], wire.encode_fixes(self.fix(s))) for s in seqs
        ]
        return messages, seqs

    def batched(
        self, n_messages: int, per_message: int
    ) -> tuple[list[tuple[str, bytes]], list[int]]:
        messages: list[tuple[str, bytes]] = []
        seqs: list[int] = []
        ntrucks = len(self.terminals)
        self.next_seq = -(-self.next_seq // ntrucks) * ntrucks  # seq % ntrucks == truck
        for m in range(n_messages):
            truck = m % ntrucks
            # All fixes of a message belong to the message's truck (seq ≡ truck mod ntrucks).
            start = self.next_seq + truck
            batch = [start + k * ntrucks for k in range(per_message)]
            messages.append((self.topics[truck], wire.encode_fixes([self.fix(s) for s in batch])))
            seqs.extend(batch)
            if truck == ntrucks - 1:
                self.next_seq += ntrucks * per_message
        self.next_seq += ntrucks * per_message
        return messages, seqs

    def hostile_mix(
        self, n_good: int, percent: float
    ) -> tuple[list[tuple[str, bytes]], list[int], int]:
        """``n_good`` single-fix messages with hostile ones spread evenly among them, so
        that they make ``percent`` % of all messages; returns (messages, good seqs,
        number of hostile messages)."""
        messages, seqs = self.single(n_good)
        n_hostile = round(n_good * percent / (100 - percent))
        every = max(1, len(messages) // max(n_hostile, 1))
        now_s = int(time.time())
        mixed: list[tuple[str, bytes]] = []
        for i, message in enumerate(messages):
            if i % every == 0 and len(mixed) - i < n_hostile:
                k = len(mixed) - i
                terminal = self.terminals[k % len(self.terminals)]
                channel, payload = HOSTILE[k % len(HOSTILE)]
                mixed.append(
                    (wire.topic(channel, terminal), payload.replace(b"@NOW", b"%d" % now_s))
                )
            mixed.append(message)
        return mixed, seqs, len(mixed) - len(messages)


DEEP = b"[" * 5000 + b"]" * 5000
# Each of these is rejected whole: one dead letter per message.
HOSTILE: list[tuple[wire.Channel, bytes]] = [
    (wire.Channel.POSITIONS, DEEP),
    (wire.Channel.EVENTS, b'{"recorded_at": @NOW, "kind": "bin_lift", "v": 1e999}'),
    (wire.Channel.POSITIONS, b'{"recorded_at": @NOW, "lat": 1e999, "lon": 117.2}'),
    (wire.Channel.EVENTS, b'{"recorded_at": @NOW, "kind": "rfid", "rfid_tag": "a\\u0000b"}'),
    (wire.Channel.POSITIONS, b'{"recorded_at": @NOW, "lat": NaN, "lon": 117.2}'),
    (wire.Channel.STATUS, DEEP),
    (wire.Channel.EVENTS, b'{"recorded_at": @NOW, "kind": "rfid", "rfid_tag": "\\ud800"}'),
    (wire.Channel.POSITIONS, b'[{"recorded_at": @NOW, "lat": 31.8, "lon": 117.2}, {"lat": '),
]


# ----------------------------------------------------------------------------- processes


class IngestorProcess:
    """`clearday ingest` in its own process; records when it connected."""

    def __init__(self, env: dict[str, str], client_id: str) -> None:
        self.env = env
        self.client_id = client_id
        self.proc: subprocess.Popen[str] | None = None
        self.connected_at: float | None = None  # wall clock
        self.subscribed = threading.Event()
        self.lines: list[str] = []
        self.cpu_at_connect = 0.0

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the ingestor process has used so far."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def start(self) -> IngestorProcess:
        self.connected_at = None
        self.subscribed.clear()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from fleet.cli import main; main()", "ingest",
             "--client-id", self.client_id],
            env=self.env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        threading.Thread(target=self._watch, daemon=True).start()
        return self

    def _watch(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            if self.connected_at is None and "connected to" in line:
                self.connected_at = time.time()
                self.cpu_at_connect = self.cpu_s()
            if "subscribed to" in line:
                self.subscribed.set()
            self.lines.append(line.rstrip())

    def wait_subscribed(self, timeout_s: float = 60) -> None:
        if not self.subscribed.wait(timeout_s):
            raise RuntimeError("ingestor did not subscribe:\n" + "\n".join(self.lines[-20:]))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def bare_subscriber_main(argv: list[str]) -> None:
    """Child process: drain N messages with a plain paho client; print JSON."""
    import paho.mqtt.client as paho
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions

    url, client_id, n_str, topic_filter, mode, client_kind = argv
    n = int(n_str)
    target = MqttTarget(url)
    got = 0
    first_connect: list[float] = []
    cpu_at_connect: list[float] = []
    last = [0.0]
    cpu_at_last = [0.0]
    done = threading.Event()

    def on_connect(client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        first_connect.append(time.time())
        cpu_at_connect.append(time.process_time())
        client.subscribe(topic_filter, options=SubscribeOptions(qos=1))

    def on_subscribe(*args: Any) -> None:
        if mode == "register":
            done.set()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        nonlocal got
        got += 1
        if got >= n and not done.is_set():
            last[0] = time.time()
            cpu_at_last[0] = time.process_time()
            done.set()

    if client_kind == "lean":
        from ingest.mqtt import LeanClient

        def deliver(mid: int, qos: int, topic: bytes, payload: bytes, dup: bool) -> None:
            on_message(client, None, None)
            client._send_puback(mid)  # what stock paho's auto-ack does

        client: paho.Client = LeanClient(
            paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5,
            deliver=deliver, manual_ack=True,
        )  # fmt: skip
    else:
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
    if target.username:
        client.username_pw_set(target.username, target.password)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    props.ReceiveMaximum = RECEIVE_MAXIMUM
    client.connect(target.host, target.port, clean_start=False, properties=props)
    client.loop_start()
    done.wait(600)
    client.disconnect()
    client.loop_stop()
    elapsed = last[0] - first_connect[0] if mode == "drain" else 0.0
    cpu = cpu_at_last[0] - cpu_at_connect[0] if mode == "drain" else 0.0
    print(json.dumps({"received": got, "elapsed_s": elapsed, "cpu_s": cpu}))


def run_bare(
    url: str, client_id: str, n: int, topic_filter: str, mode: str, client_kind: str = "paho"
) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--bare-subscriber", url, client_id, str(n), topic_filter,
         mode, client_kind],
        capture_output=True, text=True, timeout=900, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# ----------------------------------------------------------------------------- database


class CommitWatcher:
    """LISTENs for the bench trigger's notifications: transaction time → commit time."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute("LISTEN bench_commit")
        self.commits: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for note in self.conn.notifies(timeout=0.2):
                self.commits.setdefault(note.payload, time.time())

    def last_commit(self) -> float:
        return max(self.commits.values()) if self.commits else 0.0

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.conn.close()


BENCH_TRIGGER = """
CREATE OR REPLACE FUNCTION bench_notify_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bench_commit', extract(epoch FROM now())::text);
    RETURN NULL;
END $$;
CREATE TRIGGER bench_commit AFTER INSERT ON position
    FOR EACH STATEMENT EXECUTE FUNCTION bench_notify_commit();
"""


def prepare_database(url: str, terminals: list[str]) -> None:
    db.migrate(url)
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO district (district_id, name) VALUES ('bench', 'bench')")
        conn.execute(
            "INSERT INTO depot (depot_id, district_id, name, lat, lon) "
            "VALUES ('bench-depot', 'bench', 'bench depot', 31.8, 117.3)"
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO truck (truck_id, district_id, plate, truck_type, capacity_kg, streams,"
                " depot_id, terminal_id) VALUES (%s, 'bench', %s, 'compactor', 8000, '{other}',"
                " 'bench-depot', %s)",
                [(f"BT{i:04d}", f"皖A{i:05d}", t) for i, t in enumerate(terminals)],
            )
        conn.execute(BENCH_TRIGGER)


def wait_rows(url: str, expected: int, timeout_s: float, proc: IngestorProcess) -> int:
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            (count,) = conn.execute("SELECT count(*) FROM position").fetchone()  # type: ignore[misc]
            if count >= expected or time.monotonic() > deadline:
                return int(count)
            if proc.proc is not None and proc.proc.poll() is not None:
                raise RuntimeError("ingestor exited:\n" + "\n".join(proc.lines[-20:]))
            time.sleep(0.25)


def check_rows(
    url: str, workload: Workload, seqs: list[int]
) -> tuple[int, int, list[tuple[int, str]]]:
    """(lost, duplicated, [(seq, received_at as epoch text)]) for one phase's fixes.

    A row counts as the published fix when truck, device time and seq all match."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT seq, truck_id, recorded_at, extract(epoch FROM received_at)::text FROM position"
        ).fetchall()
    wanted = set(seqs)
    seen: dict[int, int] = {}
    extra = 0
    received: list[tuple[int, str]] = []
    ntrucks = len(workload.terminals)
    for seq, truck_id, recorded_at, rcv in rows:
        if (
            seq in wanted
            and truck_id == f"BT{seq % ntrucks:04d}"
            and recorded_at == workload.recorded_at(seq)
        ):
            seen[seq] = seen.get(seq, 0) + 1
            received.append((seq, rcv))
        else:
            extra += 1
    lost = len(wanted) - len(seen)
    duplicated = extra + sum(c - 1 for c in seen.values())
    return lost, duplicated, received


def truncate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE position, dead_letter, device_event, terminal_status")


def dead_letter_count(url: str) -> int:
    with psycopg.connect(url) as conn:
        (count,) = conn.execute("SELECT count(*) FROM dead_letter").fetchone()  # type: ignore[misc]
    return int(count)


# ----------------------------------------------------------------------------- phases


def publish(target: MqttTarget, messages: list[tuple[str, bytes]], name: str) -> None:
    publisher = RawPublisher(target, f"bench-pub-{uuid.uuid4().hex[:6]}")
    t0 = time.perf_counter()
    publisher.publish_many(messages)
    publisher.close()
    log(f"{name}: published {len(messages)} messages in {time.perf_counter() - t0:.1f} s")


def drain_phase(
    name: str,
    url: str,
    ingestor: IngestorProcess,
    watcher: CommitWatcher,
    workload: Workload,
    seqs: list[int],
    dead_letters: int = 0,
) -> tuple[float, float, int, int]:
    """Start the ingestor on its queued session: seconds from its CONNACK to the
    commit of the last row, CPU seconds it used meanwhile, lost and duplicated.
    ``dead_letters`` messages must end up in dead_letter (waited for, then checked)."""
    watcher.commits.clear()
    ingestor.start()
    count = wait_rows(url, len(seqs), 600, ingestor)
    cpu_s = ingestor.cpu_s() - ingestor.cpu_at_connect
    time.sleep(0.3)  # let the last notification arrive
    assert ingestor.connected_at is not None
    elapsed = watcher.last_commit() - ingestor.connected_at
    deadline = time.monotonic() + 30
    while dead_letter_count(url) < dead_letters and time.monotonic() < deadline:
        time.sleep(0.2)
    ingestor.stop()
    lost, duplicated, _ = check_rows(url, workload, seqs)
    dead = dead_letter_count(url)
    log(
        f"{name}: {count} rows committed in {elapsed:.2f} s; lost {lost}, duplicated "
        f"{duplicated}; {dead} dead letters"
    )
    if dead != dead_letters:
        raise RuntimeError(f"{name}: {dead} dead letters, expected {dead_letters}")
    truncate(url)
    return elapsed, cpu_s, lost, duplicated


def latency_phase(
    url: str,
    target: MqttTarget,
    ingestor: IngestorProcess,
    watcher: CommitWatcher,
    workload: Workload,
    rate_per_s: float,
    duration_s: float,
) -> tuple[dict[str, float], int, int]:
    truncate(url)
    watcher.commits.clear()
    ingestor.start()
    ingestor.wait_subscribed()
    time.sleep(1.0)
    publisher = RawPublisher(target, f"bench-lat-{uuid.uuid4().hex[:6]}")
    n = int(rate_per_s * duration_s)
    ntrucks = len(workload.topics)
    seqs = [workload.next_seq + i for i in range(n)]
    workload.next_seq += n
    # Everything is encoded before the clock starts, so the publisher spends its CPU
    # on sending, not on building messages, and leaves the cores to the system under
    # test. Device times are the planned send times; latency is measured from the
    # actual send time of each message.
    first_at = datetime.now(UTC) + timedelta(seconds=0.5)
    packets = [
        publisher.packet(
            workload.topics[seq % ntrucks],
            wire.encode_fixes(workload.fix(seq, first_at + timedelta(seconds=i / rate_per_s))),
        )
        for i, seq in enumerate(seqs)
    ]
    published_at: dict[int, float] = {}
    time.sleep(max(0.0, (first_at - datetime.now(UTC)).total_seconds()))
    start = time.perf_counter()
    sent = 0
    while sent < n:
        due = min(n, int((time.perf_counter() - start) * rate_per_s) + 1)
        if due > sent:
            publisher.send_packets(packets[sent:due])
            now = time.time()
            for seq in seqs[sent:due]:
                published_at[seq] = now
            sent = due
        time.sleep(0.002)
    achieved = n / (time.perf_counter() - start)
    publisher.close()
    wait_rows(url, n, 120, ingestor)
    time.sleep(0.5)
    ingestor.stop()
    lost, duplicated, received = check_rows(url, workload, seqs)
    latencies_ms = []
    unmatched = 0
    for seq, rcv in received:
        committed = watcher.commits.get(rcv)
        if committed is None:
            unmatched += 1
            continue
        latencies_ms.append((committed - published_at[seq]) * 1000)
    if unmatched:
        log(f"latency: {unmatched} rows without a commit notification (left out)")
    latencies_ms.sort()
    stats = {
        "target_rate_per_s": round(rate_per_s, 1),
        "achieved_rate_per_s": round(achieved, 1),
        "p50_ms": round(statistics.median(latencies_ms), 1) if latencies_ms else -1,
        "p99_ms": round(latencies_ms[int(len(latencies_ms) * 0.99) - 1], 1) if latencies_ms else -1,
        "max_ms": round(latencies_ms[-1], 1) if latencies_ms else -1,
    }
    return stats, lost, duplicated


def copy_phase(url: str, workload: Workload, seqs: list[int]) -> float:
    truncate(url)
    ntrucks = len(workload.terminals)
    rows = []
    for s in seqs:
        rows.append(position_row(f"BT{s % ntrucks:04d}", workload.fix(s)))
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        t0 = time.perf_counter()
        with cur.copy(COPY_POSITION) as copy:
            copy.set_types(list(POSITION_TYPES))
            for row in rows:
                copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - t0
    return len(rows) / elapsed


# ----------------------------------------------------------------------------- main


class Servers:
    """The broker and database server for the run: configured ones or private ones."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.private_pg: PrivatePostgres | None = None
        self.private_mq: PrivateMosquitto | None = None
        self.database = f"clearday_bench_{uuid.uuid4().hex[:8]}"
        admin = os.environ.get("CLEARDAY_DATABASE_URL")
        if not admin:
            self.private_pg = PrivatePostgres(
                tmp / "pg", durable=os.environ.get("BENCH_DURABLE", "1") == "1"
            ).start()
            admin = self.private_pg.admin_url
        self.admin_url = admin
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {self.database}")
        base, _, _ = admin.partition("?")[0].rpartition("/")
        query = "?" + admin.split("?", 1)[1] if "?" in admin else ""
        self.url = f"{base}/{self.database}{query}"
        mqtt = os.environ.get("CLEARDAY_MQTT_URL")
        if not mqtt:
            self.private_mq = PrivateMosquitto(tmp / "mosquitto").start()
            mqtt = self.private_mq.url
        self.mqtt_url = mqtt

    def close(self) -> None:
        try:
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
        finally:
            if self.private_mq:
                self.private_mq.stop()
            if self.private_pg:
                self.private_pg.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=40_000, help="single-fix messages")
    parser.add_argument("--batched-messages", type=int, default=4_000)
    parser.add_argument("--fixes-per-message", type=int, default=50)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--trucks", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; best reported")
    parser.add_argument(
        "--hostile-percent", type=float, default=1.0, help="share of hostile messages in the mix"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="clearday-bench-") as tmp:
        servers = Servers(Path(tmp))
        try:
            result = run(servers, args)
        finally:
            servers.close()
    print(json.dumps(result))


def run(servers: Servers, args: argparse.Namespace) -> dict[str, Any]:
    target = MqttTarget(servers.mqtt_url)
    workload = Workload(args.trucks)
    prepare_database(servers.url, workload.terminals)
    env = {
        **os.environ,
        "CLEARDAY_DATABASE_URL": servers.url,
        "CLEARDAY_MQTT_URL": servers.mqtt_url,
        "CLEARDAY_METRICS_PORT": "0",
        "CLEARDAY_INGEST_BATCH_MAX_ROWS": str(BATCH_ROWS),
        "CLEARDAY_INGEST_RECEIVE_MAXIMUM": str(RECEIVE_MAXIMUM),
        "CLEARDAY_INGEST_SHARE_GROUP": "",
    }
    # Both the bare subscriber and the ingestor hold a plain persistent subscription
    # (the ingestor's default), so one publish queues the same messages for both.
    positions_filter = wire.subscription_filters(None)[0]
    watcher = CommitWatcher(servers.url)
    ingestor = IngestorProcess(env, f"bench-ingest-{uuid.uuid4().hex[:6]}")
    bare_id = f"bench-bare-{uuid.uuid4().hex[:6]}"
    lean_id = f"bench-lean-{uuid.uuid4().hex[:6]}"
    lost = duplicated = 0
    bare_rates: list[float] = []
    lean_rates: list[float] = []
    single_rates: list[float] = []
    batched_rates: list[float] = []
    hostile_rates: list[float] = []
    copy_rates: list[float] = []
    bare_cpu: list[float] = []  # CPU µs per message, the whole client process
    single_cpu: list[float] = []
    load_before = os.getloadavg()[0]
    try:
        run_bare(servers.mqtt_url, bare_id, 0, positions_filter, "register")
        run_bare(servers.mqtt_url, lean_id, 0, positions_filter, "register", "lean")
        ingestor.start()
        ingestor.wait_subscribed()
        ingestor.stop()
        # Rounds interleave the bare subscriber and the ingestor so that both see the
        # same background load; the best round of each is reported (and every round).
        for r in range(args.rounds):
            messages, seqs = workload.single(args.messages)
            publish(target, messages, f"round {r + 1} single")
            bare = run_bare(servers.mqtt_url, bare_id, len(messages), positions_filter, "drain")
            bare_rates.append(len(messages) / bare["elapsed_s"])
            bare_cpu.append(bare["cpu_s"] / len(messages) * 1e6)
            log(f"bare: {bare['received']} messages in {bare['elapsed_s']:.2f} s")
            lean = run_bare(
                servers.mqtt_url, lean_id, len(messages), positions_filter, "drain", "lean"
            )
            lean_rates.append(len(messages) / lean["elapsed_s"])
            log(f"lean bare: {lean['received']} messages in {lean['elapsed_s']:.2f} s")
            elapsed, cpu_s, lo, du = drain_phase(
                "single", servers.url, ingestor, watcher, workload, seqs
            )
            single_rates.append(len(messages) / elapsed)
            single_cpu.append(cpu_s / len(messages) * 1e6)
            lost, duplicated = lost + lo, duplicated + du

            hmessages, hseqs, n_hostile = workload.hostile_mix(args.messages, args.hostile_percent)
            publish(target, hmessages, f"round {r + 1} hostile mix ({n_hostile} hostile)")
            n_positions = sum(1 for t, _ in hmessages if t.endswith("/positions"))
            run_bare(servers.mqtt_url, bare_id, n_positions, positions_filter, "drain")
            run_bare(servers.mqtt_url, lean_id, n_positions, positions_filter, "drain", "lean")
            elapsed, _, lo, du = drain_phase(
                "hostile mix", servers.url, ingestor, watcher, workload, hseqs, n_hostile
            )
            hostile_rates.append(len(hseqs) / elapsed)
            lost, duplicated = lost + lo, duplicated + du

            bmessages, bseqs = workload.batched(args.batched_messages, args.fixes_per_message)
            # The bare subscribers' sessions get these too; drain them so they stay empty.
            publish(target, bmessages, f"round {r + 1} batched")
            run_bare(servers.mqtt_url, bare_id, len(bmessages), positions_filter, "drain")
            run_bare(servers.mqtt_url, lean_id, len(bmessages), positions_filter, "drain", "lean")
            elapsed, _, lo, du = drain_phase(
                "batched", servers.url, ingestor, watcher, workload, bseqs
            )
            batched_rates.append(len(bseqs) / elapsed)
            lost, duplicated = lost + lo, duplicated + du

            copy_rates.append(copy_phase(servers.url, workload, bseqs))
            log(f"copy: {copy_rates[-1]:,.0f} rows/s")
            truncate(servers.url)

        # Latency at half the drained single-message rate (median of the rounds).
        latency, lo, du = latency_phase(
            servers.url, target, ingestor, watcher, workload, statistics.median(single_rates) / 2,
            args.latency_seconds,
        )  # fmt: skip
        lost, duplicated = lost + lo, duplicated + du
        log(f"latency: {latency}")
    finally:
        ingestor.stop()
        watcher.close()

    bare_best, single_best = max(bare_rates), max(single_rates)
    batched_best, copy_best = max(batched_rates), max(copy_rates)
    return {
        "bare_msgs_per_s": round(bare_best),
        "ingest_msgs_per_s": round(single_best),
        "ingest_over_bare": round(single_best / bare_best, 3),
        "ingest_over_bare_per_round": [
            round(i / b, 3) for i, b in zip(single_rates, bare_rates, strict=True)
        ],
        "lean_bare_msgs_per_s": round(max(lean_rates)),
        "ingest_over_lean_bare": round(single_best / max(lean_rates), 3),
        # CPU per message is independent of what else runs on the machine.
        "bare_cpu_us_per_msg": round(statistics.median(bare_cpu), 1),
        "ingest_cpu_us_per_msg": round(statistics.median(single_cpu), 1),
        "hostile_good_fixes_per_s": round(max(hostile_rates)),
        # Best against best, as for ingest_over_bare; per round: same background load.
        "hostile_over_clean": round(max(hostile_rates) / single_best, 3),
        "hostile_over_clean_per_round": [
            round(h / c, 3) for h, c in zip(hostile_rates, single_rates, strict=True)
        ],
        "hostile_percent": args.hostile_percent,
        "ingest_fixes_per_s_batched": round(batched_best),
        "copy_rows_per_s": round(copy_best),
        "batched_over_copy": round(batched_best / copy_best, 3),
        "p99_latency_ms": latency["p99_ms"],
        "p50_latency_ms": latency["p50_ms"],
        "max_latency_ms": latency["max_ms"],
        "latency_rate_per_s": latency["achieved_rate_per_s"],
        "lost": lost,
        "duplicated": duplicated,
        "rounds": {
            "bare_msgs_per_s": [round(x) for x in bare_rates],
            "lean_bare_msgs_per_s": [round(x) for x in lean_rates],
            "ingest_msgs_per_s": [round(x) for x in single_rates],
            "hostile_good_fixes_per_s": [round(x) for x in hostile_rates],
            "ingest_fixes_per_s_batched": [round(x) for x in batched_rates],
            "copy_rows_per_s": [round(x) for x in copy_rates],
        },
        "messages": args.messages,
        "batched_messages": args.batched_messages,
        "fixes_per_message": args.fixes_per_message,
        "batch_max_rows": BATCH_ROWS,
        "receive_maximum": RECEIVE_MAXIMUM,
        "cpus": os.cpu_count(),
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "broker": "configured" if servers.private_mq is None else "private mosquitto",
        "database": "configured" if servers.private_pg is None else "private postgresql (fsync on)",
    }


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--bare-subscriber":
        bare_subscriber_main(sys.argv[2:])
    else:
        main()
