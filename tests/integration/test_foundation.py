"""Migrations, import and doctor against a real PostgreSQL and a real Mosquitto."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import psycopg
import pytest

from fleet import db, doctor, importer
from fleet.config import Settings
from fleet.jobs import engine
from fleet.plans import jobs as plans_jobs
from tests.conftest import PgServer

DEPOTS = "id,name,lat,lon\nD1,包河车场,31.80,117.30\n"
STATIONS = (
    "id,name,lat,lon,streams,opens_at,closes_at\nS1,东部中转站,31.81,117.31,其他;厨余,05:00,22:00\n"
)
POINTS = (
    "id,name,lat,lon,stream,daily_amount_kg\n"
    "P1,芜湖路小区,31.82,117.29,其他,420\n"
    "P2,徽州大道,31.83,117.28,厨余,300\n"
)
TRUCKS = (
    "id,plate,truck_type,capacity_kg,streams,depot_id,terminal_id\n"
    "T1,皖A12345,compactor,8000,other,D1,GPS-T1\n"
)


def write_district(folder: Path, points: str = POINTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "depots.csv").write_text(DEPOTS, encoding="utf-8")
    (folder / "stations.csv").write_text(STATIONS, encoding="utf-8")
    (folder / "points.csv").write_text(points, encoding="utf-8")
    (folder / "trucks.csv").write_text(TRUCKS, encoding="utf-8")
    return folder


def counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
            for table in ("depot", "transfer_station", "collection_point", "truck")
        }


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from fleet.cli import main; main()", *args],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=120,
    )  # fmt: skip


def test_migrations_apply_on_a_fresh_database_and_are_idempotent(pg: PgServer) -> None:
    url = pg.new_database(migrated=False)
    mode, ran = db.migrate(url)
    assert mode == ("timescale" if pg.has_timescale else "plain")
    assert "0001_domain.sql" in ran and "0002_timeseries.sql" in ran
    assert f"0002_timeseries.{mode}.sql" in ran
    assert db.migrate(url) == (mode, [])
    with psycopg.connect(url) as conn:
        tables = {
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
    assert {
        "depot",
        "transfer_station",
        "collection_point",
        "truck",
        "position",
        "device_event",
        "dead_letter",
    } <= tables


def test_position_is_unique_on_truck_and_time(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        insert = "INSERT INTO position (truck_id, recorded_at, lat, lon) VALUES ('T1', '2026-11-22 08:00+08', 31.8, 117.3) ON CONFLICT DO NOTHING"
        conn.execute(insert)
        conn.execute(insert)
        assert conn.execute("SELECT count(*) FROM position").fetchone() == (1,)


def test_plain_daily_distance_view_uses_the_odometer(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO position (truck_id, recorded_at, lat, lon, odometer_km) VALUES "
            "('T1', '2026-11-22 06:00+08', 31.8, 117.3, 100.0), ('T1', '2026-11-22 15:00+08', 31.8, 117.3, 142.5)"
        )
        row = conn.execute(
            "SELECT distance_km, fixes FROM truck_daily_distance WHERE truck_id = 'T1'"
        ).fetchone()
    assert row == (42.5, 2)


@pytest.mark.timescale
def test_timescale_path_makes_position_a_hypertable(pg: PgServer) -> None:
    if not pg.has_timescale:
        pytest.skip("this server has no TimescaleDB; the plain path is tested above")
    url = pg.new_database(migrated=True, timescale="on")
    with psycopg.connect(url) as conn:
        hypertables = {
            r[0]
            for r in conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")
        }
        jobs = {r[0] for r in conn.execute("SELECT proc_name FROM timescaledb_information.jobs")}
    assert {"position", "device_event"} <= hypertables
    assert {"policy_retention", "policy_refresh_continuous_aggregate"} <= jobs


def test_import_then_reimport_updates_instead_of_duplicating(
    database_url: str, tmp_path: Path
) -> None:
    folder = write_district(tmp_path / "city")
    files = importer.read_paths([folder])
    with psycopg.connect(database_url) as conn:
        first = importer.load(conn, importer.parse_files(files))
    assert first.inserted == {"depots": 1, "stations": 1, "points": 2, "trucks": 1}
    renamed = POINTS.replace("芜湖路小区", "芜湖路小区(北)")
    write_district(folder, points=renamed)
    with psycopg.connect(database_url) as conn:
        second = importer.load(conn, importer.parse_files(importer.read_paths([folder])))
        name = conn.execute("SELECT name FROM collection_point WHERE point_id = 'P1'").fetchone()
    assert second.inserted == {"depots": 0, "stations": 0, "points": 0, "trucks": 0}
    assert second.updated["points"] == 2
    assert name == ("芜湖路小区(北)",)
    assert counts(database_url) == {
        "depot": 1,
        "transfer_station": 1,
        "collection_point": 2,
        "truck": 1,
    }


def test_cli_rejects_a_bad_file_whole_and_writes_nothing(database_url: str, tmp_path: Path) -> None:
    bad_points = POINTS + "P3,坏点,123,117.28,其他,300\nP4,未知,31.8,117.2,plutonium,10\n"
    folder = write_district(tmp_path / "city", points=bad_points)
    done = run_cli("import", str(folder), env={"CLEARDAY_DATABASE_URL": database_url})
    assert done.returncode == 1
    assert "points.csv, line 4: lat: latitude 123.0 is outside -90..90" in done.stderr
    assert "points.csv, line 5: stream: unknown waste stream 'plutonium'" in done.stderr
    assert "Traceback" not in done.stderr
    # The good depots, stations and trucks in the same command were not written either.
    assert counts(database_url) == {
        "depot": 0,
        "transfer_station": 0,
        "collection_point": 0,
        "truck": 0,
    }


def test_cli_import_reports_truck_with_unknown_depot(database_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "trucks-only"
    folder.mkdir()
    (folder / "trucks.csv").write_text(TRUCKS, encoding="utf-8")
    done = run_cli("import", str(folder), env={"CLEARDAY_DATABASE_URL": database_url})
    assert done.returncode == 1
    assert (
        "trucks.csv, line 2: depot_id 'D1' is not a depot of district default "
        "(neither in this import nor in the database)" in done.stderr
    )
    assert counts(database_url)["truck"] == 0


def test_doctor_reports_everything_fine(settings: Settings) -> None:
    findings = {f.check: f for f in doctor.run(settings)}
    assert all(f.ok for f in findings.values()), findings
    assert findings["timescaledb"].detail.startswith(("present", "absent (plain PostgreSQL mode)"))
    assert "up to date" in findings["migrations"].detail
    assert findings["workers"].detail.startswith("0 planning worker(s) beating, 0 job(s) queued")


def test_doctor_says_when_jobs_wait_for_a_worker(settings: Settings) -> None:
    url = settings.storage.database_dsn()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO district (district_id, name) VALUES ('d1', 'd1')")
    app = engine.make_app(url, [plans_jobs.register]).open()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            plans_jobs.queue_plan(
                app, conn, district_id="d1", service_date=date(2026, 3, 3), time_limit_s=10
            )
    finally:
        app.close()
    (workers,) = [f for f in doctor.run(settings) if f.check == "workers"]
    assert not workers.ok and "1 job(s) queued" in workers.detail
    assert "start `clearday worker`" in workers.detail


def test_doctor_cli_when_database_is_down(mqtt_url: str) -> None:
    done = run_cli(
        "doctor",
        env={
            "CLEARDAY_DATABASE_URL": "postgresql://postgres@127.0.0.1:9/x",
            "CLEARDAY_MQTT_URL": mqtt_url,
        },
    )
    assert done.returncode == 1
    assert "database     FAIL  cannot connect to PostgreSQL" in done.stdout
    assert "is the server running" in done.stdout
    assert "broker       ok" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_doctor_cli_when_broker_is_down(database_url: str) -> None:
    done = run_cli(
        "doctor",
        env={"CLEARDAY_DATABASE_URL": database_url, "CLEARDAY_MQTT_URL": "mqtt://127.0.0.1:9"},
    )
    assert done.returncode == 1
    assert "database     ok" in done.stdout
    assert "broker       FAIL  cannot reach the MQTT broker at mqtt://127.0.0.1:9" in done.stdout


def test_doctor_says_migrations_are_missing(pg: PgServer, mqtt_url: str) -> None:
    url = pg.new_database(migrated=False)
    done = run_cli("doctor", env={"CLEARDAY_DATABASE_URL": url, "CLEARDAY_MQTT_URL": mqtt_url})
    assert done.returncode == 1
    assert "migrations   FAIL  none applied: run `clearday migrate`" in done.stdout


def test_secrets_never_appear_in_errors() -> None:
    done = run_cli(
        "doctor",
        env={
            "CLEARDAY_DATABASE_URL": "postgresql://u:hunter2@127.0.0.1:9/x",
            "CLEARDAY_MQTT_URL": "mqtt://u:hunter2@127.0.0.1:9",
        },
    )
    assert "hunter2" not in done.stdout + done.stderr
    assert "u:***@127.0.0.1" in done.stdout
