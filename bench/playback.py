"""Track playback benchmark (issue 20): a full day of one truck (8,640 fixes, one every
10 s) played back in the dashboard in Chromium — the time from the click that chooses
the truck to the playback being ready (track, planned route, stops and progress drawn,
one frame painted).

    .venv/bin/python bench/playback.py [--fixes 8640] [--points 300] [--runs 7]

The district has --points collection points; the truck drives a loop through them,
stopping three minutes at each; the day's published plan names them, and the alert
pipeline's replay of the day finds the stays (the page's stops) and the ledger, as for
a real day. The server is `clearday serve` in its own process; the browser is Debian's
Chromium (headless, Playwright); the clock is the page's own (`performance.now()` from
the `change` event of the truck picker to the frame after `data-ready`), so
Playwright's round trips are not counted. Each run chooses the truck afresh (API
answers are not cached).

Database: CLEARDAY_DATABASE_URL when set (a database of its own is created there),
otherwise a private PostgreSQL (fsync off). The last line on stdout is one JSON object:
{"fixes": …, "runs": …, "ready_ms_p50": …, "ready_ms_max": …, "target_ms": 1000}
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api_server import ApiServer  # noqa: E402

from fleet import db  # noqa: E402
from fleet.alerts import service as alerts_service  # noqa: E402
from fleet.auth import service as auth_service  # noqa: E402
from fleet.auth.models import Role  # noqa: E402
from fleet.config import Settings  # noqa: E402
from fleet.devservers import PrivatePostgres  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
DISTRICT = "bench"
TRUCK = "BT1"
INTERVAL_S = 10
DWELL_S = 180
SPEED_KMH = 20.0
TARGET_MS = 1000
CHROMIUM = os.environ.get("CLEARDAY_CHROMIUM", "/usr/bin/chromium")
M_PER_DEG = 111_320.0

# In the page: choose the truck, and time until the playback says it is ready and
# one more frame has been painted.
CHOOSE_AND_TIME = """(truck) => new Promise((resolve) => {
  const root = document.querySelector("[data-testid=playback]");
  const select = document.querySelector("[data-testid=pb-truck]");
  let t0 = 0;
  const observer = new MutationObserver(() => {
    if (root.dataset.ready !== "1") return;
    observer.disconnect();
    requestAnimationFrame(() => resolve({ ms: performance.now() - t0, index: Number(root.dataset.index),
      stops: document.querySelectorAll("[data-testid=pb-stops] tbody tr").length }));
  });
  observer.observe(root, { attributes: true });
  t0 = performance.now();
  select.value = truck;
  select.dispatchEvent(new Event("change"));
})"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def point_places(n: int) -> list[tuple[float, float]]:
    """Points on a grid of streets 200 m apart around the depot."""
    side = max(1, math.ceil(math.sqrt(n)))
    return [
        (31.80 + (i // side) * 200 / M_PER_DEG, 117.25 + (i % side) * 200 / (M_PER_DEG * 0.85))
        for i in range(n)
    ]


def drive(
    day: date, places: list[tuple[float, float]], fixes: int
) -> tuple[list[tuple[Any, ...]], dict[int, datetime]]:
    """`fixes` fixes every INTERVAL_S from local midnight: parked, then point to point at
    SPEED_KMH with DWELL_S at each, looping; returns the rows and the first arrival at
    each point."""
    start = datetime(day.year, day.month, day.day, tzinfo=TZ)
    rows: list[tuple[Any, ...]] = []
    arrivals: dict[int, datetime] = {}
    lat, lon = 31.80 - 300 / M_PER_DEG, 117.25
    step_m = SPEED_KMH / 3.6 * INTERVAL_S
    target = 0
    dwell_left = 0
    heading = 0.0
    for i in range(fixes):
        at = start + timedelta(seconds=i * INTERVAL_S)
        moving = at.hour >= 6 and dwell_left <= 0
        speed = 0.0
        if dwell_left > 0:
            dwell_left -= INTERVAL_S
        elif moving:
            tlat, tlon = places[target % len(places)]
            dy = (tlat - lat) * M_PER_DEG
            dx = (tlon - lon) * M_PER_DEG * 0.85
            dist = math.hypot(dx, dy)
            if dist <= step_m:
                lat, lon = tlat, tlon
                arrivals.setdefault(target % len(places), at)
                target += 1
                dwell_left = DWELL_S
            else:
                lat += dy / dist * step_m / M_PER_DEG
                lon += dx / dist * step_m / (M_PER_DEG * 0.85)
                heading = math.degrees(math.atan2(dx, dy)) % 360
                speed = SPEED_KMH
        rows.append((TRUCK, at, at + timedelta(seconds=2), lat, lon, speed, heading, 8.0, True))
    return rows, arrivals


def generate(url: str, *, points: int, fixes: int, day: date) -> None:
    places = point_places(points)
    rows, arrivals = drive(day, places, fixes)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO district (district_id, name) VALUES (%s, '回放基准区')", (DISTRICT,)
        )
        conn.execute(
            """INSERT INTO depot (depot_id, district_id, name, lat, lon)
               VALUES ('BD1', %s, '基准车场', %s, 117.25)""",
            (DISTRICT, 31.80 - 300 / M_PER_DEG),
        )
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO collection_point (point_id, district_id, name, lat, lon, stream,
                       daily_amount_kg, window_start, window_end)
                   VALUES (%s, %s, %s, %s, %s, 'other', 300, '06:00', '18:00')""",
                [
                    (f"BP{i:04d}", DISTRICT, f"收集点{i}", lat, lon)
                    for i, (lat, lon) in enumerate(places)
                ],
            )
        conn.execute(
            """INSERT INTO truck (truck_id, district_id, plate, truck_type, capacity_kg, streams,
                                  depot_id, terminal_id)
               VALUES (%s, %s, '皖A00001', 'compactor', 8000, '{other}', 'BD1', 'BT1-GPS')""",
            (TRUCK, DISTRICT),
        )
        with (
            conn.cursor() as cur,
            cur.copy(
                """COPY position (truck_id, recorded_at, received_at, lat, lon, speed_kmh,
                              heading_deg, accuracy_m, ignition) FROM STDIN"""
            ) as copy,
        ):
            for row in rows:
                copy.write_row(row)
        plan = conn.execute(
            """INSERT INTO plan (district_id, service_date, status, document, published_at)
               VALUES (%s, %s, 'published', %s, now()) RETURNING plan_id""",
            (DISTRICT, day, Jsonb({"routes": []})),
        ).fetchone()
        assert plan is not None
        served = sorted(arrivals.items(), key=lambda kv: kv[1])
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO plan_stop (plan_id, truck_id, seq, kind, point_id, arrival_at,
                                          departure_at)
                   VALUES (%s, %s, %s, 'point', %s, %s, %s)""",
                [(plan[0], TRUCK, seq, f"BP{i:04d}", at, at + timedelta(seconds=DWELL_S))
                 for seq, (i, at) in enumerate(served, start=1)],
            )  # fmt: skip
        # The alert pipeline finds the stays and writes the ledger, as for a real day.
        stats = alerts_service.replay_day(
            conn=conn, settings=Settings(), service_date=day, now=datetime.now(UTC)
        )
        log(f"{len(rows):,} fixes, {len(served)} points served, plan {plan[0]}, replay {stats}")


def measure(base: str, token: str, day: date, runs: int) -> list[dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.add_init_script(
                f"sessionStorage.setItem('clearday.token', {json.dumps(token)});"
                f"localStorage.setItem('clearday.district', {json.dumps(DISTRICT)});"
            )
            page.goto(f"{base}/#/playback")
            page.wait_for_selector("#shell:not([hidden])")
            page.fill("[data-testid=service-date]", day.isoformat())
            page.dispatch_event("[data-testid=service-date]", "change")
            page.wait_for_selector(
                f"[data-testid=pb-truck] option[value={TRUCK}]", state="attached"
            )
            page.wait_for_timeout(500)
            results = []
            for run in range(runs):
                page.select_option("[data-testid=pb-truck]", "")
                page.wait_for_timeout(200)
                result = page.evaluate(CHOOSE_AND_TIME, TRUCK)
                log(f"  run {run + 1}: ready in {result['ms']:.0f} ms ({result['stops']} stops)")
                results.append(result)
            return results
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fixes", type=int, default=86_400 // INTERVAL_S)
    parser.add_argument("--points", type=int, default=300)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    private: PrivatePostgres | None = None
    work = Path(tempfile.mkdtemp(prefix="clearday-bench-playback-"))
    configured = os.environ.get("CLEARDAY_DATABASE_URL")
    if configured:
        admin_url = configured
    else:
        private = PrivatePostgres(work / "pg", durable=False).start()
        admin_url = private.admin_url
    server: ApiServer | None = None
    try:
        name = "bench_playback"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")
        url = admin_url.rsplit("/", 1)[0] + f"/{name}"
        db.migrate(url, timescale="auto")
        day = datetime.now(TZ).date() - timedelta(days=1)
        generate(url, points=args.points, fixes=args.fixes, day=day)
        with psycopg.connect(url, autocommit=True) as conn:
            user = auth_service.create_user(
                conn, username="bench", password=os.urandom(16).hex(), role=Role.supervisor
            )
            token = auth_service.issue_token(
                conn, user_id=user.user_id, now=datetime.now(UTC), ttl_s=3600
            ).token

        server = ApiServer(url, args=["--workers", "1"]).start()
        base = server.base
        results = measure(base, token, day, args.runs)
        times = [r["ms"] for r in results]
        shown = results[-1]["index"] + 1
        if shown != args.fixes:
            raise RuntimeError(f"the page drew {shown} fixes, not {args.fixes}")
        if results[-1]["stops"] == 0:
            raise RuntimeError("the page listed no stops: the replay found no stays")
        result = {
            "fixes": args.fixes,
            "stops": results[-1]["stops"],
            "runs": len(times),
            "ready_ms_p50": round(statistics.median(times), 1),
            "ready_ms_max": round(max(times), 1),
            "target_ms": TARGET_MS,
        }
    finally:
        if server:
            server.stop()
        if private:
            private.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
