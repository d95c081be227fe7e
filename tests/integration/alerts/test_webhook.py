"""The webhook notifier against a real local HTTP server: retries, final failures,
signatures, and a pipeline that never waits for a receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest

from fleet.alerts import notify, worker
from fleet.devservers import free_port
from tests.settings import flat_settings
from tests.unit.alerts.tracks import at

from .world import load_world


class Receiver:
    """Answers each POST with the next status of `script` (then 200), recording bodies."""

    def __init__(self, script: list[int], *, delay_s: float = 0.0) -> None:
        self.script = list(script)
        self.delay_s = delay_s
        self.requests: list[tuple[int, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver.script.pop(0) if receiver.script else 200
                receiver.requests.append(
                    (status, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                time.sleep(receiver.delay_s)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=s3cret"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notify, "BACKOFF_BASE_S", 0.05)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([500, 503])
    yield r
    r.close()


def deliveries(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT event, state, attempts, last_status, url FROM webhook_delivery ORDER BY delivery_id"
        ).fetchall()


def drain(sender: notify.Sender, url: str, *, until: float = 10.0) -> None:
    deadline = time.monotonic() + until
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            sender.send_due(conn)
            if all(state != "pending" for _, state, *_ in deliveries(url)):
                return
            time.sleep(0.05)


def test_alerts_are_posted_with_retries_and_signature(
    database_url: str, receiver: Receiver, fast_backoff: None
) -> None:
    load_world(database_url)
    config = worker.AlertConfig.from_settings(flat_settings(alert_webhook_urls=receiver.url))
    w = worker.Worker(database_url, config, clock=lambda: at("21:00"))
    stats = w.tick()
    w.close()
    assert stats.alerts_raised == 3  # P4, P5 (one incident each) and T2
    assert receiver.requests == [], "the worker only queues; nothing is posted from the pipeline"
    sender = notify.Sender(database_url, timeout_s=2, max_attempts=5, secret="k3y")
    drain(sender, database_url)
    rows = deliveries(database_url)
    assert {r[1] for r in rows} == {"delivered"}
    assert sum(r[2] for r in rows) == 3 + 2, "the 500 and the 503 were each retried once"
    _status, headers, body = receiver.requests[-1]
    payload = json.loads(body)
    assert payload["event"] == "alert.raised" and payload["alert"]["kind"] in {
        "missed", "not_cleared_by_deadline", "not_unloaded"
    }  # fmt: skip
    timestamp = headers["x-clearday-signature"].split(",")[0].removeprefix("t=")
    mac = hmac.new(b"k3y", f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert headers["x-clearday-signature"] == f"t={timestamp},sha256={mac}"
    assert headers["x-clearday-event"] == "alert.raised"
    ids = {h["x-clearday-delivery"] for _, h, _ in receiver.requests}
    assert len(ids) == 3 and len(receiver.requests) == 5, "a retry carries its delivery's id"


def verify(secret: str, header: str, body: bytes, *, max_age_s: int = 300) -> bool:
    """The receiver's check, as docs/api.md gives it."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    timestamp = int(fields["t"])
    signed = f"{timestamp}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - timestamp) <= max_age_s
    return fresh and hmac.compare_digest(expected, fields["sha256"])


def test_webhooks_are_signed_by_default_with_a_secret_per_receiver(
    database_url: str, receiver: Receiver, fast_backoff: None
) -> None:
    """No secret configured: each receiver URL gets its own generated secret, which
    `clearday alerts webhook-secret` shows and the documented check accepts."""
    other = Receiver([])
    try:
        load_world(database_url)
        urls = f"{receiver.url},{other.url}"
        config = worker.AlertConfig.from_settings(flat_settings(alert_webhook_urls=urls))
        w = worker.Worker(database_url, config, clock=lambda: at("21:00"))
        w.tick()
        w.close()
        drain(notify.Sender(database_url, timeout_s=2, max_attempts=5), database_url)
        shown = subprocess.run(
            [sys.executable, "-c", "from fleet.cli import main; main()", "alerts",
             "webhook-secret"],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "CLEARDAY_DATABASE_URL": database_url,
                 "CLEARDAY_ALERT_WEBHOOK_URLS": urls},
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        secrets = {
            url: secret for secret, url in (line.split() for line in shown.stdout.splitlines())
        }
        assert len(set(secrets.values())) == 2 and all(len(s) == 64 for s in secrets.values())
        for target in (receiver, other):
            delivered = [(h, b) for status, h, b in target.requests if status == 200]
            assert delivered, "nothing delivered"
            for headers, body in delivered:
                assert verify(secrets[target.url], headers["x-clearday-signature"], body)
                assert not verify(secrets[target.url], headers["x-clearday-signature"], body + b" ")
            other_secret = secrets[other.url if target is receiver else receiver.url]
            assert not verify(
                other_secret, delivered[0][0]["x-clearday-signature"], delivered[0][1]
            )
    finally:
        other.close()


def test_a_refusing_receiver_fails_for_good_and_a_dead_one_after_max_attempts(
    database_url: str, fast_backoff: None
) -> None:
    refusing = Receiver([400])
    dead = f"http://127.0.0.1:{free_port()}/nobody"
    try:
        load_world(database_url)
        config = worker.AlertConfig.from_settings(
            flat_settings(alert_webhook_urls=f"{refusing.url},{dead}")
        )
        w = worker.Worker(database_url, config, clock=lambda: at("10:20"))
        assert w.tick().alerts_raised == 2  # missed P4, not_unloaded T2
        w.close()
        drain(notify.Sender(database_url, timeout_s=1, max_attempts=3), database_url)
        rows = deliveries(database_url)
        to_refusing = [r for r in rows if r[4] == refusing.url]
        to_dead = [r for r in rows if r[4] == dead]
        assert next((r[1], r[2], r[3]) for r in to_refusing) == ("failed", 1, 400)
        assert {(r[1], r[2], r[3]) for r in to_dead} == {("failed", 3, None)}
    finally:
        refusing.close()


def test_a_slow_receiver_never_holds_up_the_pipeline(database_url: str, fast_backoff: None) -> None:
    """With the sender stuck on a receiver that takes 3 s per request, ticks still run in ms."""
    slow = Receiver([], delay_s=3.0)
    stop = threading.Event()
    try:
        load_world(database_url)
        config = worker.AlertConfig.from_settings(flat_settings(alert_webhook_urls=slow.url))
        sender = notify.Sender(database_url, timeout_s=10, poll_interval_s=0.05)
        thread = threading.Thread(target=sender.run, args=(stop,), daemon=True)
        thread.start()
        w = worker.Worker(database_url, config, clock=lambda: at("10:20"))
        w.tick()
        time.sleep(0.5)  # the sender is now inside a 3 s request
        started = time.monotonic()
        w.pipeline.config = worker.AlertConfig.from_settings(
            flat_settings(alert_webhook_urls=slow.url)
        )
        w.clock = lambda: at("21:00")
        stats = w.tick()
        assert stats.alerts_raised == 2  # the two 日清 deadline alerts
        assert time.monotonic() - started < 2.0
        w.close()
    finally:
        stop.set()
        slow.close()
