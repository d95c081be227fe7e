"""Real processes for the ingest tests: the ingestor, publishers, a TCP proxy."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleet.config import MqttTarget
from fleet.devservers import free_port
from ingest import wire

ROOT = Path(__file__).resolve().parents[3]
TRUCKS = 10


def terminal(i: int) -> str:
    return f"GPS-T{i}"


def add_fleet(url: str, trucks: int = TRUCKS) -> dict[str, str]:
    """A district, a depot and `trucks` trucks; returns terminal_id → truck_id."""
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO district (district_id, name) VALUES ('baohe', '包河区')")
        conn.execute(
            "INSERT INTO depot (depot_id, district_id, name, lat, lon)"
            " VALUES ('D1', 'baohe', '包河车场', 31.80, 117.30)"
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO truck (truck_id, district_id, plate, truck_type, capacity_kg,"
                " streams, depot_id, terminal_id) VALUES (%s, 'baohe', %s, 'compactor', 8000,"
                " '{other}', 'D1', %s)",
                [(f"T{i}", f"皖A{i:05d}", terminal(i)) for i in range(trucks)],
            )
    return {terminal(i): f"T{i}" for i in range(trucks)}


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def scalar(url: str, sql: str, params: Iterable[Any] = ()) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, tuple(params)).fetchone()
    return row[0] if row else None


def rows(url: str, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, tuple(params)).fetchall()


# ----------------------------------------------------------------------------- fixes


class FixStream:
    """Numbered fixes with unique (truck, device time) keys: seq n belongs to truck
    n % trucks and was recorded at base + n ms."""

    def __init__(self, trucks: int = TRUCKS, base: datetime | None = None) -> None:
        self.trucks = trucks
        self.base = base or datetime.now(UTC) - timedelta(hours=1)

    def fix(self, seq: int) -> wire.Fix:
        return wire.Fix(
            recorded_at=self.base + timedelta(milliseconds=seq),
            lat=31.8 + seq * 1e-6,
            lon=117.2,
            speed_kmh=float(seq % 50),
            seq=seq,
        )

    def message(self, seq: int) -> tuple[str, bytes]:
        return wire.positions_topic(terminal(seq % self.trucks)), wire.encode_fixes(self.fix(seq))

    def expected(self, seqs: Iterable[int]) -> set[tuple[str, datetime, int]]:
        return {(f"T{s % self.trucks}", self.fix(s).recorded_at, s) for s in seqs}


def stored_fixes(url: str) -> list[tuple[str, datetime, int]]:
    return [
        (str(t), r, int(s))
        for t, r, s in rows(url, "SELECT truck_id, recorded_at, seq FROM position")
    ]


def assert_exactly_once(url: str, stream: FixStream, seqs: Iterable[int]) -> None:
    expected = stream.expected(seqs)
    stored = stored_fixes(url)
    missing = expected - set(stored)
    assert not missing, f"{len(missing)} published fixes missing, e.g. {sorted(missing)[:3]}"
    assert len(stored) == len(set(stored)) == len(expected), (
        f"{len(stored)} rows stored for {len(expected)} published fixes"
    )


# ----------------------------------------------------------------------------- publisher


class Publisher:
    """A paho QoS 1 publisher with a persistent session that rides out broker
    restarts; ``wait_all_acked`` returns once the broker acknowledged every message."""

    def __init__(self, url: str, client_id: str = "test-publisher") -> None:
        target = MqttTarget(url)
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
        if target.username:
            self.client.username_pw_set(target.username, target.password)
        self.client.max_inflight_messages_set(500)
        self.client.reconnect_delay_set(1, 2)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.connected = threading.Event()
        self.client.on_connect = lambda *a: self.connected.set()
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.connect_async(target.host, target.port, clean_start=False, properties=props)
        self.client.loop_start()
        self.infos: list[paho.MQTTMessageInfo] = []
        if not self.connected.wait(10):
            raise AssertionError(f"publisher could not connect to {url}")

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.infos.append(self.client.publish(topic, payload, qos=1, retain=retain))

    def publish_many(self, messages: Iterable[tuple[str, bytes]], rate_per_s: float = 0) -> None:
        start = time.monotonic()
        for i, (topic, payload) in enumerate(messages):
            if rate_per_s:
                delay = start + i / rate_per_s - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            self.publish(topic, payload)

    def wait_all_acked(self, timeout_s: float = 60) -> None:
        # A message published while disconnected has rc NO_CONN (is_published() then
        # raises) but stays queued in paho and is sent on reconnect; `_published`
        # turns true when its PUBACK arrives either way.
        wait_for(
            lambda: all(info._published for info in self.infos),
            timeout_s,
            "the broker to acknowledge every publish",
        )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# ----------------------------------------------------------------------------- ingestor


class IngestorProcess:
    """`clearday ingest` as a real process."""

    def __init__(self, env: dict[str, str], log_path: Path, *args: str, prelude: str = "") -> None:
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.args = args
        self.prelude = prelude  # Python run before the CLI (a test seam, see test_isolation)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> IngestorProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", f"{self.prelude}\nfrom fleet.cli import main; main()",
             "ingest", *self.args],
            env=self.env, stdout=log, stderr=log, cwd=ROOT,
        )  # fmt: skip
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_subscribed(self, timeout_s: float = 30, times: int = 1) -> None:
        wait_for(
            lambda: self.log().count("subscribed to") >= times or not self.running(),
            timeout_s,
            "the ingestor to subscribe",
        )
        assert self.running(), f"ingestor exited:\n{self.log()[-3000:]}"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout_s: float = 30) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def wait_exit(self, timeout_s: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)


def ingest_env(database_url: str, mqtt_url: str, **extra: str) -> dict[str, str]:
    env = {
        "CLEARDAY_DATABASE_URL": database_url,
        "CLEARDAY_MQTT_URL": mqtt_url,
        "CLEARDAY_METRICS_PORT": "0",
        "CLEARDAY_INGEST_CLIENT_ID": "test-ingest-1",
    }
    env.update({f"CLEARDAY_{k.upper()}": v for k, v in extra.items()})
    return env


# ----------------------------------------------------------------------------- TCP proxy


class TcpProxy:
    """Forwards 127.0.0.1:port to an upstream; ``cut()`` drops every connection and
    refuses new ones (the database 'goes away'), ``restore()`` listens again."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self._sel = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._stop = threading.Event()
        self._listen()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        sock.setblocking(False)
        with self._lock:
            self._listener = sock
            self._sel.register(sock, selectors.EVENT_READ, "accept")

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                events = self._sel.select(timeout=0.05) if self._sel.get_map() else []
            for key, _ in events:
                with self._lock:
                    if key.data == "accept":
                        self._accept(key.fileobj)  # type: ignore[arg-type]
                    else:
                        self._pump(key.fileobj)  # type: ignore[arg-type]
            if not events:
                time.sleep(0.01)

    def _accept(self, listener: socket.socket) -> None:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        for s in (client, upstream):
            s.setblocking(False)
            self._sel.register(s, selectors.EVENT_READ, "pump")
        self._pairs[client] = upstream
        self._pairs[upstream] = client

    def _pump(self, sock: socket.socket) -> None:
        peer = self._pairs.get(sock)
        if peer is None:
            return
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_pair(sock)
            return
        try:
            peer.setblocking(True)
            peer.sendall(data)
            peer.setblocking(False)
        except OSError:
            self._close_pair(sock)

    def _close_pair(self, sock: socket.socket) -> None:
        peer = self._pairs.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            self._pairs.pop(s, None)
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(s)
            with contextlib.suppress(OSError):
                s.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
            s.close()

    def cut(self) -> None:
        with self._lock:
            if self._listener is not None:
                self._sel.unregister(self._listener)
                self._listener.close()
                self._listener = None
            for sock in list(self._pairs):
                self._close_pair(sock)

    def restore(self) -> None:
        self._listen()

    def close(self) -> None:
        self.cut()
        self._stop.set()
        self._thread.join(5)

    def url_for(self, database_url: str) -> str:
        """The same database URL, through the proxy."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(database_url)
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        new = f"{netloc[0]}@{host}" if len(netloc) == 2 else host
        return urlunsplit(parts._replace(netloc=new))
