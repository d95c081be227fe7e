"""The API against hostile clients: oversized bodies refused before any work (a real
server process, curl as the client), login guesses counted exactly under concurrency,
a lockout a stranger cannot impose, per-address limits, bounded throttle rows, and the
password policy in the API and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest
from fastapi import FastAPI

from fleet.auth import throttle
from fleet.config import Settings
from fleet.devservers import free_port, wait_for_port
from fleet.web.app import create_app
from tests.integration.web.conftest import PASSWORD, LiveServer, Users

MB = 1_000_000
HUNDRED_MB = 100 * MB
RSS_MARGIN_BYTES = 50 * 1024 * 1024


class Server:
    """`clearday serve` in its own process, so that its memory can be measured."""

    def __init__(self, url: str, process: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.process = process
        self.ps = psutil.Process(process.pid)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)


@pytest.fixture
def server(web_settings: Settings) -> Iterator[Server]:
    port = free_port()
    env = {
        **os.environ,
        "CLEARDAY_DATABASE_URL": web_settings.storage.database_dsn(),
        "CLEARDAY_LOG_LEVEL": "WARNING",
        "CLEARDAY_HTTP_DB_POOL_SIZE": "4",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", "from fleet.cli import main; main()", "serve",
         "--port", str(port), "--no-alerts"],
        env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert wait_for_port(port, 60), "the API server did not start within 60 s"
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the API server did not become ready"
            time.sleep(0.2)
        yield Server(url, process)
    finally:
        process.terminate()
        process.wait(20)


class PeakRss:
    """Samples a process's RSS in a thread while the block runs."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.server.rss())
            self._stop.wait(0.01)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.server.rss())


def curl_post(url: str, *, stdin_bytes: int | None = None, file: Path | None = None) -> str:
    """POST with curl (no Expect: 100-continue, so the body starts at once): streamed
    from /dev/zero with chunked encoding, or a file with its Content-Length. Returns
    "<status> <bytes uploaded>"."""
    command = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_upload}",
               "-X", "POST", "-H", "Expect:", "-H", "Content-Type: application/json",
               "--max-time", "120"]  # fmt: skip
    if file is not None:
        result = subprocess.run([*command, "--data-binary", f"@{file}", url],
                                capture_output=True, text=True, timeout=180)  # fmt: skip
    else:
        assert stdin_bytes is not None
        zeros = subprocess.Popen(["head", "-c", str(stdin_bytes), "/dev/zero"],
                                 stdout=subprocess.PIPE)  # fmt: skip
        result = subprocess.run([*command, "-H", "Transfer-Encoding: chunked", "-T", "-", url],
                                stdin=zeros.stdout, capture_output=True, text=True, timeout=180)  # fmt: skip
        zeros.kill()
        zeros.wait()
    return result.stdout.strip()


def test_oversized_anonymous_bodies_are_refused_before_they_are_read(
    server: Server, users: Users, tmp_path: Path
) -> None:
    """100 MB to /import (chunked and with a Content-Length) and 24 MB to /auth/login,
    anonymous: 413 each time, and the server's memory stays within 50 MB of idle."""
    time.sleep(0.5)
    idle = server.rss()
    sparse = tmp_path / "hundred.bin"
    with sparse.open("wb") as fh:
        fh.truncate(HUNDRED_MB)  # --data-binary @file reads it; a Content-Length is sent
    login_body = tmp_path / "login.json"
    login_body.write_text("[" + ",".join(["1"] * (12 * MB)) + "]")  # a 24 MB JSON array
    with PeakRss(server) as peak:
        chunked = curl_post(f"{server.url}/api/v1/import", stdin_bytes=HUNDRED_MB)
        declared = curl_post(f"{server.url}/api/v1/import", file=sparse)
        login = curl_post(f"{server.url}/api/v1/auth/login", file=login_body)
        login_chunked = curl_post(f"{server.url}/api/v1/auth/login", stdin_bytes=24 * MB)
    for name, answer in (("chunked import", chunked), ("declared import", declared),
                         ("login", login), ("chunked login", login_chunked)):  # fmt: skip
        assert answer.split()[0] == "413", f"{name}: {answer}"
    assert peak.peak - idle < RSS_MARGIN_BYTES, (
        f"peak RSS {peak.peak / 2**20:.0f} MiB vs idle {idle / 2**20:.0f} MiB"
    )
    # Bodies within the limits still reach the app: the login answers 401, not 413.
    refused = httpx.post(
        f"{server.url}/api/v1/auth/login", json={"username": "viewer", "password": "wrong one!"}
    )
    assert refused.status_code == 401
    too_big = httpx.post(f"{server.url}/api/v1/trucks", content=b"{" + b" " * 2 * MB + b"}")
    assert too_big.status_code == 413
    assert "at most 1,048,576 bytes" in too_big.json()["detail"]
    # An import-sized body needs a live login: a made-up token gets the default limit.
    big_import = {"files": [{"name": "points.csv", "content": "x" * 2 * MB}], "dry_run": True}
    forged = httpx.post(f"{server.url}/api/v1/import", json=big_import,
                        headers={"Authorization": "Bearer cd_made-up"})  # fmt: skip
    assert forged.status_code == 413
    assert "without a valid login (67,108,864 with one)" in forged.json()["detail"]
    real = httpx.post(f"{server.url}/api/v1/import", json=big_import,
                      headers=users.headers("dispatcher"), timeout=60)  # fmt: skip
    assert real.status_code == 422, real.text  # read and parsed: not a points file


@pytest.fixture
def strict_server(web_settings: Settings) -> Iterator[LiveServer]:
    """The app with a per-address limit low enough to reach in a test."""
    import uvicorn

    web = web_settings.web.model_copy(update={"login_max_failures_per_address": 15})
    settings = web_settings.model_copy(update={"web": web})
    app: FastAPI = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_for_port(port, 20.0), "the test server did not start"
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(15)


def client_from(address: str) -> httpx.Client:
    """A client whose connections come from `address` (any of 127.0.0.0/8)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def login(client: httpx.Client, url: str, username: str, password: str) -> int:
    response = client.post(
        f"{url}/api/v1/auth/login", json={"username": username, "password": password}
    )
    return response.status_code


def test_concurrent_guesses_are_checked_exactly_up_to_the_limit(
    strict_server: LiveServer, users: Users
) -> None:
    """40 simultaneous wrong guesses: exactly 10 checked (401), the rest refused (429);
    the real user, from another address, still logs in."""
    url = strict_server.url
    with client_from("127.0.0.2") as attacker, ThreadPoolExecutor(40) as pool:
        answers = list(
            pool.map(lambda i: login(attacker, url, "viewer", f"guess number {i}"), range(40))
        )
        assert answers.count(401) == 10 and answers.count(429) == 30, answers
        assert login(attacker, url, "viewer", PASSWORD) == 429  # the pair is locked
    with client_from("127.0.0.3") as owner:
        assert login(owner, url, "viewer", PASSWORD) == 200


def test_spraying_one_address_across_user_names_is_slowed(
    strict_server: LiveServer, users: Users
) -> None:
    """Per-address limit (15 here): the 16th guess from one address is refused even for
    a user name never tried; another address is unaffected."""
    url = strict_server.url
    with client_from("127.0.0.4") as sprayer:
        answers = [login(sprayer, url, f"user{i}", "Spring2026!!") for i in range(20)]
    assert answers[:15] == [401] * 15 and answers[15:] == [429] * 5, answers
    with client_from("127.0.0.5") as other:
        assert login(other, url, "admin", PASSWORD) == 200


def test_throttle_rows_expire_and_cannot_be_flushed(database_url: str) -> None:
    """Thousands of fresh user names do not reset a locked pair; rows of passed windows
    are deleted by later logins, so the table holds one window's keys."""
    policy = throttle.ThrottlePolicy(max_failures=3, max_failures_per_address=10**5, window_s=60)
    t0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        waits = [
            throttle.claim(conn, username="wang", address="10.0.0.1", now=t0, policy=policy)
            for _ in range(4)
        ]
        assert waits[:3] == [0, 0, 0] and waits[3] == 60
        for i in range(2000):
            throttle.claim(conn, username=f"flood{i}", address="10.9.9.9", now=t0, policy=policy)
        later = t0 + timedelta(seconds=30)
        assert throttle.claim(conn, username="WANG", address="10.0.0.1", now=later, policy=policy)
        count = conn.execute("SELECT count(*) FROM login_attempt").fetchone()
        assert count is not None and count[0] == 2003
        after = t0 + timedelta(seconds=61)
        for _ in range(25):
            throttle.forget_expired(conn, now=after, policy=policy)
        left = conn.execute("SELECT count(*) FROM login_attempt").fetchone()
        assert left is not None and left[0] == 0
        assert (
            throttle.claim(conn, username="wang", address="10.0.0.1", now=after, policy=policy) == 0
        )


def test_ipv6_clients_are_held_to_their_64() -> None:
    assert throttle.address_key("2001:db8:1:2:aaaa::1") == throttle.address_key("2001:db8:1:2::9")
    assert throttle.address_key("2001:db8:1:3::1") != throttle.address_key("2001:db8:1:2::1")
    assert throttle.address_key("::ffff:10.1.2.3") == "10.1.2.3"


@pytest.mark.parametrize(
    ("password", "why"),
    [("1234567890", "digits only"), ("qwertyuiop", "most common"), ("password123", "most common"),
     ("Password123", "most common")],
)  # fmt: skip
def test_weak_passwords_are_refused_by_api_and_cli(
    strict_server: LiveServer, users: Users, web_settings: Settings, password: str, why: str
) -> None:
    created = httpx.post(
        f"{strict_server.url}/api/v1/users",
        headers=users.headers("admin"),
        json={"username": "new.user", "role": "viewer", "password": password},
    )
    assert created.status_code == 422 and why in created.json()["detail"], created.text
    changed = httpx.patch(
        f"{strict_server.url}/api/v1/users/{users.ids['viewer']}",
        headers=users.headers("admin"),
        json={"password": password},
    )
    assert changed.status_code == 422 and why in changed.json()["detail"], changed.text
    cli = subprocess.run(
        [sys.executable, "-c", "from fleet.cli import main; main()", "user", "create",
         "new.user", "--role", "viewer", "--password-stdin"],
        input=password + "\n", capture_output=True, text=True, timeout=60,
        env={**os.environ, "CLEARDAY_DATABASE_URL": web_settings.storage.database_dsn()},
    )  # fmt: skip
    assert cli.returncode == 2 and why in cli.stderr, cli.stderr
