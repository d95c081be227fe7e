"""API benchmark (issue 7): latest positions of 1,000 trucks and a day's ledger of 3,000
points, served by `clearday serve` from a database holding a full day of positions for
those trucks (one fix every 10 s: about 8.6 million rows).

    .venv/bin/python bench/api.py [--trucks 1000] [--points 3000] [--workers 2]
                                  [--duration-s 15] [--keep]

Measures, in one run, for each endpoint:

1. ``rps``: requests per second at saturation, 50 concurrent clients on keep-alive
   connections, for --duration-s seconds;
2. ``p50_ms`` / ``p95_ms``: latency at a steady offered load (open loop: requests are
   sent on schedule whether or not earlier ones came back, and latency is counted from
   the scheduled send time, so a stalled server cannot hide behind its own backlog) of
   100 requests/s for latest positions and 20 requests/s for the ledger.

The server runs as a separate process (`clearday serve --workers N`); the load
generator is this process (httpx, asyncio). Both share the machine with PostgreSQL,
so the figures are for the whole stack on this machine.

Database: CLEARDAY_DATABASE_URL when set (the benchmark creates a database of its own
there), otherwise a private PostgreSQL in .clearday/bench-api (fsync off: this is a
read benchmark). With --keep the generated data is kept and reused by the next run
with the same sizes. The last line on stdout is one JSON object:
{"latest_positions": {"p50_ms": …, "p95_ms": …, "rps": …}, "ledger": {…}}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api_server import ApiServer  # noqa: E402

from fleet import db  # noqa: E402
from fleet.auth import service as auth_service  # noqa: E402
from fleet.auth.models import Role  # noqa: E402
from fleet.devservers import PrivatePostgres  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
DISTRICT = "bench"
CONCURRENCY = 50
LATEST_RATE = 100.0
LEDGER_RATE = 20.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- data ----------------------------------------------------------------------------


def generate(url: str, *, trucks: int, points: int, day: date, interval_s: int) -> None:
    """Domain rows, a full day of fixes for every truck and a ledger for every point,
    generated inside PostgreSQL."""
    start = datetime(day.year, day.month, day.day, tzinfo=TZ)
    fixes_per_truck = 86_400 // interval_s
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO district (district_id, name) VALUES (%s, '基准区') ON CONFLICT DO NOTHING",
            (DISTRICT,),
        )
        conn.execute(
            """INSERT INTO depot (depot_id, district_id, name, lat, lon)
               VALUES ('BD1', %s, '基准车场', 31.80, 117.25)""",
            (DISTRICT,),
        )
        conn.execute(
            """INSERT INTO transfer_station (station_id, district_id, name, lat, lon, streams)
               VALUES ('BS1', %s, '基准中转站', 31.85, 117.30, '{other,kitchen,recyclable}')""",
            (DISTRICT,),
        )
        conn.execute(
            """INSERT INTO collection_point (point_id, district_id, name, lat, lon, stream,
                                             daily_amount_kg, window_start, window_end)
               SELECT 'BP' || lpad(i::text, 5, '0'), %s, '收集点' || i,
                      31.75 + (i %% 60) * 0.002, 117.20 + (i / 60) * 0.002,
                      (ARRAY['other','kitchen','recyclable'])[1 + i %% 3], 300, '06:00', '10:00'
               FROM generate_series(1, %s) AS i""",
            (DISTRICT, points),
        )
        conn.execute(
            """INSERT INTO truck (truck_id, district_id, plate, truck_type, capacity_kg, streams,
                                  depot_id, terminal_id)
               SELECT 'BT' || lpad(i::text, 4, '0'), %s, '皖A' || lpad(i::text, 5, '0'),
                      'compactor', 8000, '{other,recyclable}', 'BD1', 'BT' || i || '-GPS'
               FROM generate_series(1, %s) AS i""",
            (DISTRICT, trucks),
        )
        log(f"generating {trucks * fixes_per_truck:,} positions …")
        started = time.monotonic()
        # Bulk load without the primary key, then build it once (much faster).
        conn.execute("ALTER TABLE position DROP CONSTRAINT position_pkey")
        conn.execute("SET max_parallel_workers_per_gather = 2")
        step = 100
        for first in range(1, trucks + 1, step):
            last = min(first + step - 1, trucks)
            conn.execute(
                """INSERT INTO position (truck_id, recorded_at, received_at, lat, lon, speed_kmh,
                                         heading_deg, accuracy_m, odometer_km, ignition, load_state)
                   SELECT 'BT' || lpad(t::text, 4, '0'),
                          %(start)s + make_interval(secs => i * %(step)s),
                          %(start)s + make_interval(secs => i * %(step)s + 2),
                          31.75 + 0.1 * ((t * 7919 + i) %% 1000) / 1000.0,
                          117.20 + 0.1 * ((t * 104729 + i * 3) %% 1000) / 1000.0,
                          (i %% 50)::real, ((i * 37) %% 360)::real, 8,
                          10000 + t + i * 0.05, (i %% 2000) > 50, 'half'
                   FROM generate_series(%(first)s::int, %(last)s::int) AS t,
                        generate_series(0, %(n)s::int - 1) AS i""",
                {"start": start, "step": interval_s, "first": first, "last": last,
                 "n": fixes_per_truck},
            )  # fmt: skip
            log(f"  trucks {first}-{last} ({time.monotonic() - started:.0f} s)")
        conn.execute("ALTER TABLE position ADD PRIMARY KEY (truck_id, recorded_at)")
        log(f"positions loaded and indexed in {time.monotonic() - started:.0f} s")
        conn.execute(
            """INSERT INTO ledger_entry (service_date, point_id, district_id, stream,
                   planned_truck_id, planned_seq, planned_arrival_at, window_start_at,
                   window_end_at, deadline_at, status, reason, cleared_at,
                   cleared_by_truck_id, dwell_s, delivery, delivered_at, delivered_station_id,
                   evidence, status_since, computed_at)
               SELECT %(day)s, p.point_id, p.district_id, p.stream,
                      'BT' || lpad((1 + n %% %(trucks)s)::text, 4, '0'), n %% 30,
                      %(start)s + interval '7 hours' + n * interval '10 seconds',
                      %(start)s + interval '6 hours', %(start)s + interval '10 hours',
                      %(start)s + interval '20 hours',
                      CASE WHEN n %% 50 = 0 THEN 'missed' WHEN n %% 41 = 0 THEN 'partial'
                           ELSE 'cleared' END,
                      CASE WHEN n %% 50 = 0 THEN 'not_visited' END,
                      CASE WHEN n %% 50 <> 0 THEN %(start)s + interval '7 hours' + n * interval '10 seconds' END,
                      CASE WHEN n %% 50 <> 0 THEN 'BT' || lpad((1 + n %% %(trucks)s)::text, 4, '0') END,
                      CASE WHEN n %% 50 <> 0 THEN 240 + n %% 60 END,
                      CASE WHEN n %% 50 = 0 THEN 'none' ELSE 'delivered' END,
                      CASE WHEN n %% 50 <> 0 THEN %(start)s + interval '11 hours' END,
                      CASE WHEN n %% 50 <> 0 THEN 'BS1' END,
                      jsonb_build_object('visit', jsonb_build_object(
                          'truck_id', 'BT' || lpad((1 + n %% %(trucks)s)::text, 4, '0'),
                          'arrived_at', %(start)s + interval '7 hours' + n * interval '10 seconds',
                          'dwell_s', 240 + n %% 60, 'fixes', 25),
                          'events', jsonb_build_array(jsonb_build_object('kind', 'bin_lift'))),
                      %(start)s + interval '10 hours', %(start)s + interval '21 hours'
               FROM (SELECT point_id, district_id, stream::text AS stream,
                            row_number() OVER (ORDER BY point_id) AS n
                     FROM collection_point WHERE district_id = %(district)s) p""",
            {"day": day, "start": start, "trucks": trucks, "district": DISTRICT},
        )
        conn.execute("ANALYZE")
        conn.execute("CREATE TABLE bench_marker (trucks int, points int, interval_s int, day date)")
        conn.execute(
            "INSERT INTO bench_marker VALUES (%s, %s, %s, %s)", (trucks, points, interval_s, day)
        )


def ready_database(
    admin_url: str, *, trucks: int, points: int, interval_s: int, keep: bool
) -> tuple[str, date]:
    name = f"bench_api_{trucks}_{points}_{interval_s}"
    base = admin_url.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists and keep:
            with psycopg.connect(url) as bench:
                marked = bench.execute("SELECT to_regclass('bench_marker') IS NOT NULL").fetchone()
                marker = (
                    bench.execute("SELECT day FROM bench_marker").fetchone()
                    if marked and marked[0]
                    else None
                )
            if marker:
                log(f"reusing database {name} (generated for {marker[0]})")
                return url, marker[0]
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    db.migrate(url, timescale="auto")
    day = datetime.now(TZ).date() - timedelta(days=1)
    generate(url, trucks=trucks, points=points, day=day, interval_s=interval_s)
    return url, day


# --- load ------------------------------------------------------------------------------


@dataclass
class Figures:
    p50_ms: float
    p95_ms: float
    rps: float
    errors: int

    def out(self) -> dict[str, float]:
        return {
            "p50_ms": round(self.p50_ms, 1),
            "p95_ms": round(self.p95_ms, 1),
            "rps": round(self.rps, 1),
        }


async def saturate(client: httpx.AsyncClient, path: str, *, duration_s: float) -> tuple[float, int]:
    deadline = time.monotonic() + duration_s
    done = 0
    errors = 0

    async def worker() -> None:
        nonlocal done, errors
        while time.monotonic() < deadline:
            try:
                response = await client.get(path)
                await response.aread()
            except httpx.TransportError:
                errors += 1
                continue
            if response.status_code == 200:
                done += 1
            else:
                errors += 1

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done / (time.monotonic() - started), errors


async def steady(
    client: httpx.AsyncClient, path: str, *, rate: float, duration_s: float
) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    start = time.monotonic() + 0.2
    count = int(rate * duration_s)

    async def one(at: float) -> None:
        nonlocal errors
        delay = at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            response = await client.get(path)
            await response.aread()
        except httpx.TransportError:
            errors += 1
            return
        latencies.append((time.monotonic() - at) * 1000)
        if response.status_code != 200:
            errors += 1

    await asyncio.gather(*(one(start + i / rate) for i in range(count)))
    return latencies, errors


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(
    base_url: str, token: str, path: str, *, rate: float, duration_s: float
) -> Figures:
    limits = httpx.Limits(
        max_connections=CONCURRENCY + 10, max_keepalive_connections=CONCURRENCY + 10
    )
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=60
    ) as client:
        for _ in range(20):  # warm up connections, caches and prepared statements
            (await client.get(path)).raise_for_status()
        latencies, steady_errors = await steady(client, path, rate=rate, duration_s=duration_s)
        rps, sat_errors = await saturate(client, path, duration_s=duration_s)
    return Figures(
        p50_ms=statistics.median(latencies),
        p95_ms=percentile(latencies, 0.95),
        rps=rps,
        errors=steady_errors + sat_errors,
    )


# --- main ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trucks", type=int, default=1000)
    parser.add_argument("--points", type=int, default=3000)
    parser.add_argument(
        "--interval-s", type=int, default=10, help="seconds between a truck's fixes"
    )
    parser.add_argument("--workers", type=int, default=2, help="API worker processes")
    parser.add_argument("--duration-s", type=float, default=15.0, help="per phase")
    parser.add_argument("--keep", action="store_true", help="keep and reuse the generated database")
    parser.add_argument(
        "--snapshot-max-age-s",
        type=float,
        default=1.0,
        help="CLEARDAY_LIVE_SNAPSHOT_MAX_AGE_S of the server (0: read the database per request)",
    )
    args = parser.parse_args()

    private: PrivatePostgres | None = None
    configured = os.environ.get("CLEARDAY_DATABASE_URL")
    if configured:
        admin_url = configured
    else:
        data_dir = ROOT / ".clearday" / "bench-api" / "pg"
        if not args.keep and data_dir.exists():
            shutil.rmtree(data_dir.parent)
        private = PrivatePostgres(data_dir, durable=False).start()
        admin_url = private.admin_url
    server: ApiServer | None = None
    try:
        url, day = ready_database(
            admin_url,
            trucks=args.trucks,
            points=args.points,
            interval_s=args.interval_s,
            keep=args.keep,
        )
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM app_user WHERE username = 'bench'")
            user = auth_service.create_user(
                conn, username="bench", password=os.urandom(16).hex(), role=Role.viewer
            )
            token = auth_service.issue_token(
                conn, user_id=user.user_id, now=datetime.now(UTC), ttl_s=3600
            ).token
            rows = conn.execute("SELECT count(*) FROM position").fetchone()
        log(
            f"database: {rows[0] if rows else 0:,} positions, {args.trucks} trucks, {args.points} points"
        )

        server = ApiServer(
            url,
            args=["--workers", str(args.workers)],
            env={
                "CLEARDAY_HTTP_DB_POOL_SIZE": "20",
                "CLEARDAY_LIVE_SNAPSHOT_MAX_AGE_S": str(args.snapshot_max_age_s),
            },
        ).start()
        base = server.base

        latest_path = f"/api/v1/positions/latest?district_id={DISTRICT}"
        ledger_path = f"/api/v1/ledger?district_id={DISTRICT}&service_date={day.isoformat()}"
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:
            latest = client.get(latest_path).json()
            ledger = client.get(ledger_path).json()
        assert len(latest["trucks"]) == args.trucks, "latest positions: wrong truck count"
        assert all(t["recorded_at"] for t in latest["trucks"]), "a truck without its latest fix"
        assert len(ledger["entries"]) == args.points, "ledger: wrong entry count"

        # What building a ledger costs when it is not cached (each limit is a new query).
        cold = []
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:
            for k in range(10):
                started = time.monotonic()
                client.get(ledger_path + f"&limit={9000 - k}").raise_for_status()
                cold.append((time.monotonic() - started) * 1000)
        log(f"ledger built uncached: p50 {statistics.median(cold):.0f} ms (single requests)")

        log(f"latest positions: steady {LATEST_RATE:.0f}/s, then {CONCURRENCY} clients …")
        latest_figures = asyncio.run(
            measure(base, token, latest_path, rate=LATEST_RATE, duration_s=args.duration_s)
        )
        log(f"  {latest_figures}")
        log(f"ledger: steady {LEDGER_RATE:.0f}/s, then {CONCURRENCY} clients …")
        ledger_figures = asyncio.run(
            measure(base, token, ledger_path, rate=LEDGER_RATE, duration_s=args.duration_s)
        )
        log(f"  {ledger_figures}")
        if latest_figures.errors or ledger_figures.errors:
            log(f"errors: latest {latest_figures.errors}, ledger {ledger_figures.errors}")
        result: dict[str, Any] = {
            "latest_positions": latest_figures.out(),
            "ledger": ledger_figures.out(),
        }
    finally:
        if server:
            server.stop()
        if private:
            private.stop()
            if not args.keep:
                shutil.rmtree(private.data_dir.parent, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
