"""Alert evaluation shared by district among real `clearday alerts run` processes (each
with its own settings): the districts are split between them; when one is killed its
districts move to the other within the lease; and the day's alerts are exactly those of
one worker evaluating the same data at the same moments (none lost, none doubled)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from fleet import db, importer
from fleet.alerts import repo, worker
from fleet.config import Settings
from fleet.plans import repo as plans_repo
from fleet.plans import service as plans
from routing.plan import Plan
from simulator.city import City, generate_districts
from simulator.direct import DirectSink
from simulator.faults import FaultRates, random_faults
from simulator.trucks import DaySpec, Emission, SimDay, TerminalConfig
from tests.conftest import PgServer

DAY = date(2026, 3, 3)
TZ = ZoneInfo("Asia/Shanghai")
NOON = datetime.combine(DAY, dtime(12, 0), tzinfo=TZ)
NIGHT = datetime.combine(DAY, dtime(23, 0), tzinfo=TZ)
LEASE_S = 2.0
WAIT_S = 120.0


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def load_city(urls: list[str], tmp_path: Path) -> list[tuple[City, Any]]:
    """Three districts in every database, each with the same published plan."""
    out = []
    for city in generate_districts(3, n_points=15, n_trucks=2, seed=7):
        folder = city.write(tmp_path / str(city.district))
        for url in urls:
            with db.connect(url) as conn:
                importer.load(conn, importer.parse_files(importer.read_paths([folder])))
        with db.connect(urls[0], autocommit=True) as conn:
            plan_id = plans.plan_day(
                conn, district_id=str(city.district), service_date=DAY, tz=TZ, time_limit_s=300,
                solution_limit=50, publish=True,
            )  # fmt: skip
            stored = plans_repo.get_plan(conn, plan_id)
        assert stored is not None
        plan = Plan.from_dict(stored["document"])
        for url in urls[1:]:
            with db.connect(url, autocommit=True) as conn:
                copy = plans_repo.insert_plan(
                    conn, district_id=str(city.district), service_date=DAY,
                    document=stored["document"], stats=stored["stats"],
                    stops=plans.stop_rows(plan, service_date=DAY, tz=TZ),
                    unassigned=[(u.point_id, u.reason) for u in plan.unassigned], seed=0,
                    time_limit_s=300, created_by=None,
                )  # fmt: skip
                plans_repo.publish(conn, copy)
        out.append((city, Plan.from_dict(stored["document"])))
    return out


def emissions(city_plans: list[tuple[City, Any]]) -> list[tuple[City, Emission]]:
    """The simulated day of every district, with faults of every kind."""
    out = []
    for k, (city, plan) in enumerate(city_plans):
        faults = random_faults(plan, city, FaultRates.scaled(2.0), seed=k)
        spec = DaySpec(
            city=city, plan=plan, service_date=DAY, seed=k, faults=tuple(faults),
            terminal=TerminalConfig(fix_interval_s=15.0, noise_m=10.0, dropout_prob=0.03,
                                    signal_losses_per_day=2),
        )  # fmt: skip
        out += [(city, em) for em in SimDay(spec).emissions()]
    return out


def feed(url: str, items: list[tuple[City, Emission]]) -> datetime:
    """Write emissions as an ingestor would; returns the database time after."""
    sinks: dict[str, DirectSink] = {}
    for city, em in items:
        sink = sinks.setdefault(str(city.district), DirectSink(url, city))
        sink.send(em)
    for sink in sinks.values():
        sink.flush()
        sink.close()
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]


def alerts(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            """SELECT dedupe_key, kind, severity, district_id, point_id, truck_id, condition_at
                 FROM alert ORDER BY dedupe_key"""
        ).fetchall()


def evaluated_since(url: str, at: datetime) -> set[str]:
    """Districts whose evaluation began after `at` (and so saw what was there then)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT name FROM alert_worker_state WHERE name LIKE 'district:%%' AND updated_at > %s",
            (at,),
        ).fetchall()
    return {str(r[0]).removeprefix("district:") for r in rows}


def wait_until(what: str, ok: Any) -> float:
    started = time.monotonic()
    while not ok():
        assert time.monotonic() - started < WAIT_S, f"timed out waiting until {what}"
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.fixture
def run_alerts(tmp_path: Path) -> Iterator[Any]:
    started: list[subprocess.Popen[bytes]] = []

    def start(url: str, name: str, now: datetime) -> subprocess.Popen[bytes]:
        env = {
            **os.environ, "CLEARDAY_DATABASE_URL": url, "CLEARDAY_WORKER_NAME": name,
            "CLEARDAY_ALERT_LEASE_S": str(LEASE_S), "CLEARDAY_METRICS_PORT": "0",
        }  # fmt: skip
        # A clock that stands (practically) still at `now`: the evaluation moments are
        # the test's, not the machine's.
        proc = subprocess.Popen(
            [sys.executable, "-c", "from fleet.cli import main; main()", "alerts", "run",
             "--interval", "0.2", "--sim-start", now.isoformat(), "--speed", "1e-9"],
            env=env, stdout=(tmp_path / f"{name}.log").open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_leases_move_when_a_worker_dies_and_the_alerts_equal_one_workers(
    pg: PgServer, database_url: str, tmp_path: Path, run_alerts: Any
) -> None:
    shared, solo_url = database_url, pg.new_database()
    city_plans = load_city([shared, solo_url], tmp_path)
    day = emissions(city_plans)
    noon_s = (NOON - datetime.combine(DAY, dtime(0), tzinfo=TZ)).total_seconds()
    morning = [(c, e) for c, e in day if e.at_s < noon_s]
    afternoon = [(c, e) for c, e in day if e.at_s >= noon_s]
    districts = {str(c.district) for c, _ in city_plans}

    # One worker, the same data at the same moments: the reference.
    clock = FixedClock(NOON)
    solo = worker.Worker(
        solo_url, worker.AlertConfig.from_settings(Settings()), clock=clock, name="solo"
    )
    feed(solo_url, morning)
    solo.tick()
    feed(solo_url, afternoon)
    solo.tick()
    clock.now = NIGHT
    solo.tick()
    solo.close()

    # Two workers share the districts at noon with the morning's data ...
    fed = feed(shared, morning)
    a = run_alerts(shared, "a", NOON)
    b = run_alerts(shared, "b", NOON)
    with psycopg.connect(shared, autocommit=True) as conn:
        wait_until(
            "the districts are shared and evaluated",
            lambda: (
                set(repo.lease_holders(conn).values()) == {"a", "b"}
                and evaluated_since(shared, fed) == districts
            ),
        )
        a_held = {d for d, h in repo.lease_holders(conn).items() if h == "a"}
        # ... one is killed; the afternoon's data arrives; the other takes its districts.
        os.kill(a.pid, signal.SIGKILL)
        a.wait()
        fed = feed(shared, afternoon)
        moved_in_s = wait_until(
            "b holds every district and has evaluated the afternoon",
            lambda: (
                set(repo.lease_holders(conn).values()) == {"b"}
                and evaluated_since(shared, fed) == districts
            ),
        )
    assert a_held and a_held != districts
    # Handed over within the lease (and a few ticks), not whenever: generous for a busy box.
    assert moved_in_s < LEASE_S + 30
    # The night's evaluation, by a worker started then (b stops: its leases go at once).
    b.send_signal(signal.SIGTERM)
    assert b.wait(timeout=60) == 0
    with psycopg.connect(shared, autocommit=True) as conn:
        assert repo.lease_holders(conn) == {}
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    run_alerts(shared, "c", NIGHT)
    wait_until(
        "c has evaluated every district at night",
        lambda: evaluated_since(shared, row[0]) == districts,
    )

    got, want = alerts(shared), alerts(solo_url)
    assert want, "the simulated day should raise alerts"
    assert len(want) >= 5 and got == want, (len(got), len(want))
    assert len({r[0] for r in got}) == len(got)
