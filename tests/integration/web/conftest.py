"""Fixtures for the API tests: a migrated database with two districts (north, south),
users of every role (some limited to the north) and an app served in-process."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import uvicorn
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fleet import importer
from fleet.auth import service as auth_service
from fleet.auth.models import Role
from fleet.config import Settings
from fleet.devservers import free_port, wait_for_port
from fleet.web.app import create_app
from tests.settings import flat_settings

PASSWORD = "correct horse battery"


def district_files(code: str, lat: float, lon: float) -> list[tuple[str, bytes]]:
    up = code[0].upper()
    depots = f"id,name,lat,lon,district\n{up}-D1,{code}车场,{lat},{lon},{code}\n"
    stations = (
        "id,name,lat,lon,streams,district\n"
        f"{up}-S1,{code}中转站,{lat + 0.01},{lon + 0.01},其他;厨余,{code}\n"
    )
    points = (
        "id,name,lat,lon,stream,daily_amount_kg,district\n"
        f"{up}-P1,{code}一号收集点,{lat + 0.002},{lon},其他,400,{code}\n"
        f"{up}-P2,{code}二号收集点,{lat + 0.004},{lon + 0.002},厨余,300,{code}\n"
    )
    trucks = (
        "id,plate,truck_type,capacity_kg,streams,depot_id,terminal_id,district\n"
        f"{up}-T1,皖A{up}0001,compactor,8000,other,{up}-D1,{up}-T1-GPS,{code}\n"
        f"{up}-T2,皖A{up}0002,kitchen,5000,kitchen,{up}-D1,{up}-T2-GPS,{code}\n"
    )
    roads = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {
                    "type": "LineString",
                    "coordinates": [[lon, lat], [lon, lat + 0.004], [lon + 0.01, lat + 0.01]],
                },
                "properties": {"id": f"{up}-R1", "from_node": 1, "to_node": 2, "district": code},
            }
        ],
    }
    return [
        (f"depots_{code}.csv", depots.encode()),
        (f"stations_{code}.csv", stations.encode()),
        (f"points_{code}.csv", points.encode()),
        (f"trucks_{code}.csv", trucks.encode()),
        (f"roads_{code}.geojson", json.dumps(roads).encode()),
    ]


def seed_districts(url: str) -> None:
    files = district_files("north", 31.90, 117.30) + district_files("south", 31.70, 117.30)
    with psycopg.connect(url) as conn:
        importer.load(conn, importer.parse_files(files))


@pytest.fixture(autouse=True)
def _cheap_password_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2 at minimum cost in tests (the product uses the library defaults)."""
    monkeypatch.setattr(
        auth_service, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )


@pytest.fixture
def web_settings(database_url: str, tmp_path: Path) -> Settings:
    seed_districts(database_url)
    return flat_settings(
        database_url=database_url,
        data_dir=tmp_path / "state",
        http_db_pool_size=8,
        live_poll_interval_s=0.2,
    )


@pytest.fixture
def app(web_settings: Settings) -> FastAPI:
    return create_app(web_settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@dataclass
class Users:
    """Tokens by user name: admin, dispatcher, supervisor, viewer (every district),
    north_dispatcher, north_viewer (district north only)."""

    url: str
    tokens: dict[str, str]
    ids: dict[str, int]

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def add(self, name: str, role: Role, districts: tuple[str, ...] = ()) -> str:
        with psycopg.connect(self.url, autocommit=True) as conn:
            user = auth_service.create_user(
                conn, username=name, password=PASSWORD, role=role, districts=districts
            )
            issued = auth_service.issue_token(
                conn, user_id=user.user_id, now=datetime.now(UTC), ttl_s=3600
            )
        self.tokens[name] = issued.token
        self.ids[name] = user.user_id
        return issued.token


@pytest.fixture
def users(web_settings: Settings) -> Users:
    found = Users(web_settings.storage.database_dsn(), {}, {})
    for role in Role:
        found.add(role.value, role)
    found.add("north_dispatcher", Role.dispatcher, ("north",))
    found.add("north_viewer", Role.viewer, ("north",))
    found.add("north_admin", Role.admin, ("north",))
    return found


@dataclass
class LiveServer:
    url: str
    app: FastAPI


@pytest.fixture
def live_server(app: FastAPI) -> Iterator[LiveServer]:
    """The app on a real port, served by uvicorn in a thread (for streams and browsers)."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    if not wait_for_port(port, 20.0):
        raise RuntimeError("the test server did not start")
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture
def supervised_day(web_settings: Settings) -> int:
    """The alerts team's hand-computed day (district d1, tests/integration/alerts/world.py)
    replayed at 21:00: P4 and P5 missed, T2 parked loaded, three open cases. Returns the
    id of P4's case."""
    from fleet.alerts import service as alerts_service
    from tests.integration.alerts.world import evening, load_world
    from tests.unit.alerts.tracks import DAY

    url = web_settings.storage.database_dsn()
    load_world(url)
    with psycopg.connect(url) as conn:
        alerts_service.replay_day(conn=conn, settings=web_settings, service_date=DAY, now=evening())
        row = conn.execute("SELECT case_id FROM alert_case WHERE subject = 'point:P4'").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def city(web_settings: Settings, tmp_path: Path) -> str:
    """A small generated district "city" (30 points, 3 trucks, its roads), imported."""
    from simulator.city import CityConfig, generate

    folder = generate(CityConfig(n_points=30, n_trucks=3, seed=1, district="city")).write(
        tmp_path / "city"
    )
    files = importer.read_paths([folder])
    with psycopg.connect(web_settings.storage.database_dsn()) as conn:
        importer.load(conn, importer.parse_files(files))
    return "city"
