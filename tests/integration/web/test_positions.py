"""Latest positions with status, downsampled tracks, and the live SSE stream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from fastapi.testclient import TestClient

from fleet.config import Settings
from fleet.web.app import create_app
from tests.integration.web.conftest import LiveServer, Users


def insert_fixes(url: str, rows: list[tuple[Any, ...]]) -> None:
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO position (truck_id, recorded_at, lat, lon, speed_kmh) VALUES (%s, %s, %s, %s, %s)",
            rows,
        )


def test_latest_position_and_status_of_each_truck(client: TestClient, users: Users) -> None:
    now = datetime.now(UTC)
    insert_fixes(
        users.url,
        [
            ("N-T1", now - timedelta(minutes=5), 31.80, 117.20, 30.0),  # older fix
            ("N-T1", now - timedelta(seconds=20), 31.9020, 117.3000, 0.0),  # stopped at N-P1
            ("N-T2", now - timedelta(seconds=10), 31.9100, 117.3100, 2.0),  # at station N-S1
            ("S-T1", now - timedelta(hours=2), 31.70, 117.30, 0.0),  # offline (at its depot)
            ("S-T2", now - timedelta(seconds=5), 31.75, 117.35, 42.0),  # driving
        ],
    )
    body = client.get("/api/v1/positions/latest", headers=users.headers("viewer")).json()
    trucks = {t["truck_id"]: t for t in body["trucks"]}
    assert set(trucks) == {"N-T1", "N-T2", "S-T1", "S-T2"}
    assert trucks["N-T1"]["lat"] == 31.902 and trucks["N-T1"]["status"] == "at_point"
    assert trucks["N-T1"]["site_id"] == "N-P1" and 15 < trucks["N-T1"]["age_s"] < 60
    assert trucks["N-T2"]["status"] == "unloading" and trucks["N-T2"]["site_id"] == "N-S1"
    assert trucks["S-T1"]["status"] == "offline"
    assert trucks["S-T2"]["status"] == "moving" and trucks["S-T2"]["plate"] == "皖AS0002"
    north = client.get("/api/v1/positions/latest", headers=users.headers("north_viewer")).json()
    assert {t["truck_id"] for t in north["trucks"]} == {"N-T1", "N-T2"}


def test_station_fence_is_the_alerts_own(web_settings: Settings, users: Users) -> None:
    """A truck stopped 70 m from station N-S1 is outside the alerts' default 50 m fence
    (stopped), and unloading once CLEARDAY_ALERT_STATION_RADIUS_M is 100 m."""
    now = datetime.now(UTC)
    insert_fixes(
        users.url, [("N-T2", now - timedelta(seconds=10), 31.9100 + 70 / 111_195, 117.3100, 0.0)]
    )
    wide = web_settings.model_copy(
        update={"alerts": web_settings.alerts.model_copy(update={"station_radius_m": 100.0})}
    )
    seen = {}
    for name, settings in (("default", web_settings), ("wide", wide)):
        with TestClient(create_app(settings)) as client:
            body = client.get("/api/v1/positions/latest", headers=users.headers("viewer")).json()
        seen[name] = {t["truck_id"]: t for t in body["trucks"]}["N-T2"]
    assert seen["default"]["status"] == "stopped" and seen["default"]["site_id"] is None
    assert seen["wide"]["status"] == "unloading" and seen["wide"]["site_id"] == "N-S1"


def test_truck_without_fixes_is_listed_as_no_data(client: TestClient, users: Users) -> None:
    body = client.get(
        "/api/v1/positions/latest?district_id=south", headers=users.headers("viewer")
    ).json()
    assert {t["status"] for t in body["trucks"]} == {"no_data"}
    assert all(t["lat"] is None for t in body["trucks"])


def test_track_is_downsampled_for_long_ranges(client: TestClient, users: Users) -> None:
    start = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
    insert_fixes(
        users.url,
        [
            ("N-T1", start + timedelta(seconds=10 * i), 31.9 + i * 1e-5, 117.3, 20.0)
            for i in range(3000)
        ],
    )
    params = {"start_at": start.isoformat(), "end_at": (start + timedelta(hours=9)).isoformat()}
    full = client.get(
        "/api/v1/trucks/N-T1/track",
        params={**params, "max_points": 5000},
        headers=users.headers("viewer"),
    ).json()
    assert full["total_fixes"] == 3000 and len(full["points"]) == 3000 and not full["downsampled"]
    thin = client.get(
        "/api/v1/trucks/N-T1/track",
        params={**params, "max_points": 100},
        headers=users.headers("viewer"),
    ).json()
    assert thin["downsampled"] and thin["total_fixes"] == 3000
    assert 100 <= len(thin["points"]) <= 101
    times = [datetime.fromisoformat(p["recorded_at"]) for p in thin["points"]]
    assert (
        times == sorted(times)
        and times[0] == start
        and times[-1] == start + timedelta(seconds=29990)
    )
    window = client.get(
        "/api/v1/trucks/N-T1/track",
        params={
            "start_at": start.isoformat(),
            "end_at": (start + timedelta(minutes=1)).isoformat(),
        },
        headers=users.headers("viewer"),
    ).json()
    assert window["total_fixes"] == 6


def test_track_checks_its_range_and_the_district(client: TestClient, users: Users) -> None:
    viewer = users.headers("viewer")
    backwards = client.get(
        "/api/v1/trucks/N-T1/track",
        params={"start_at": "2026-11-22T10:00:00+08:00", "end_at": "2026-11-22T09:00:00+08:00"},
        headers=viewer,
    )
    assert backwards.status_code == 422 and "end_at" in backwards.json()["detail"]
    naive = client.get(
        "/api/v1/trucks/N-T1/track", params={"start_at": "2026-11-22T10:00:00"}, headers=viewer
    )
    assert naive.status_code == 422 and "offset" in naive.json()["detail"]
    too_long = client.get(
        "/api/v1/trucks/N-T1/track",
        params={"start_at": "2026-01-01T00:00:00+08:00", "end_at": "2026-03-01T00:00:00+08:00"},
        headers=viewer,
    )
    assert too_long.status_code == 422
    assert (
        client.get("/api/v1/trucks/S-T1/track", headers=users.headers("north_viewer")).status_code
        == 404
    )
    assert client.get("/api/v1/trucks/nope/track", headers=viewer).status_code == 404


def read_events(
    response: httpx.Response, until: Any, timeout_s: float = 10.0
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Parse an SSE stream into (event, data) pairs."""
    event, data = "message", ""
    deadline = time.monotonic() + timeout_s
    for line in response.iter_lines():
        assert time.monotonic() < deadline, "stream took too long"
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif line == "" and data:
            parsed = json.loads(data)
            yield event, parsed
            if until(event, parsed):
                return
            event, data = "message", ""


def test_live_stream_sends_a_snapshot_then_changes(live_server: LiveServer, users: Users) -> None:
    now = datetime.now(UTC)
    insert_fixes(users.url, [("N-T1", now - timedelta(seconds=30), 31.95, 117.35, 25.0)])
    headers = {**users.headers("north_viewer"), "Accept": "text/event-stream"}
    seen: list[tuple[str, dict[str, Any]]] = []
    with httpx.stream(
        "GET", f"{live_server.url}/api/v1/positions/stream", headers=headers, timeout=10
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for event, data in read_events(response, until=lambda e, d: e == "update"):
            seen.append((event, data))
            if event == "snapshot":  # the truck moves once the stream has its snapshot
                insert_fixes(users.url, [("N-T1", datetime.now(UTC), 31.96, 117.36, 30.0)])
    kinds = [e for e, _ in seen]
    assert kinds[0] == "snapshot" and kinds[-1] == "update"
    snapshot = {t["truck_id"]: t for t in seen[0][1]["trucks"]}
    assert set(snapshot) == {"N-T1", "N-T2"}  # the north only
    assert snapshot["N-T1"]["lat"] == 31.95
    update = {t["truck_id"]: t for t in seen[-1][1]["trucks"]}
    assert update["N-T1"]["lat"] == 31.96 and "N-T2" not in update


def test_live_stream_needs_a_token(live_server: LiveServer) -> None:
    response = httpx.get(f"{live_server.url}/api/v1/positions/stream", timeout=5)
    assert response.status_code == 401
