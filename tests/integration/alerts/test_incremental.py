"""The worker's incremental path against a full re-evaluation, on a real database.

The same random sequence of partial deliveries (slices of each truck's track, some
held back as a blind zone's batch and delivered late, newest first) goes into two
databases. One is followed by a long-lived worker, which re-detects only the trucks
that got data and remembers what it computed. The other is re-evaluated from scratch
after each delivery, by a pipeline with nothing remembered that re-detects every
truck's whole day. After every tick the two hold the same visits, ledger, alerts and
cases."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from fleet.alerts import repo, worker
from fleet.alerts.visits import Fix
from fleet.config import Settings
from tests.unit.alerts.tracks import at, latlon

from .test_worker import FakeClock, snapshot
from .world import insert_fixes, load_domain, load_plan, track_t1, track_t2, track_t3_serving_p4

# The streets the tracks drive (metres east, north of P1): the points' street, the
# lanes north and south of it, and the cross streets between them.
STREETS = [
    [(-500, 0), (0, 0), (400, 0), (800, 0), (1200, 0), (1600, 0)],
    [(-500, 300), (1600, 300)],
    [(-500, -300), (800, -300), (1200, -300)],
    [(-500, -300), (-500, 0), (-500, 300)],
    [(800, -300), (800, 0)],
    [(1200, -300), (1200, 0)],
    [(1600, 0), (1600, 300)],
]


def load_streets(conn: psycopg.Connection) -> None:
    nodes: dict[tuple[int, int], int] = {}
    for street in STREETS:
        for k, (a, b) in enumerate(itertools.pairwise(street)):
            coords = [[lon, lat] for lat, lon in (latlon(*a), latlon(*b))]
            u = nodes.setdefault(a, len(nodes) + 1)
            v = nodes.setdefault(b, len(nodes) + 1)
            length = ((b[0] - a[0]) ** 2 + (b[1] - a[1]) ** 2) ** 0.5
            conn.execute(
                """INSERT INTO road (road_id, district_id, from_node, to_node, speed_kmh,
                                     length_m, coordinates)
                   VALUES (%s, 'd1', %s, %s, 30, %s, %s)""",
                (f"r{u}-{v}-{k}", u, v, length, Jsonb(coords)),
            )


@dataclass
class Slice:
    truck_id: str
    fixes: list[Fix]
    deliver_at: datetime  # when its last fix was sent, or its blind zone ended


def deliveries(rng: random.Random) -> list[Slice]:
    """Each truck's track cut into random slices, each sent when its last fix is
    recorded; now and then a run of slices is held (a blind zone) and sent at once,
    newest first, up to half an hour later."""
    out = []
    tracks = {"T1": track_t1(), "T2": track_t2(), "T3": track_t3_serving_p4()}
    for truck_id, track in tracks.items():
        fixes = list(track.fixes)
        k = 0
        while k < len(fixes):
            n = rng.randint(1, 40)
            part = fixes[k : k + n]
            k += n
            sent = part[-1].at
            if rng.random() < 0.15:  # a blind zone: sent late, newest first
                sent += timedelta(seconds=rng.uniform(60, 1800))
                part = list(reversed(part))
            out.append(Slice(truck_id, part, sent))
    return sorted(out, key=lambda s: s.deliver_at)


def state(conn: psycopg.Connection) -> tuple[Any, ...]:
    """Visits, gaps, ledger, alerts, cases and their events: all the worker writes, by
    content (ids and insertion times belong to each database)."""
    rows = [
        conn.execute(
            """SELECT dedupe_key, kind, severity, subject, point_id, truck_id, condition_at,
                      raised_at, message, details, resolved_at, resolution
                 FROM alert ORDER BY dedupe_key"""
        ).fetchall(),
        conn.execute(
            """SELECT subject, state, severity, title, opened_at, due_at, escalation_level,
                      escalated_at, closed_at, closed_by, close_note
                 FROM alert_case ORDER BY subject"""
        ).fetchall(),
        conn.execute(
            """SELECT c.subject, e.at, e.actor, e.action, e.from_state, e.to_state, e.note
                 FROM case_event e JOIN alert_case c USING (case_id)
                ORDER BY c.subject, e.at, e.case_event_id"""
        ).fetchall(),
    ]
    return (*snapshot(conn), *rows)


def full_evaluation(conn: psycopg.Connection, config: worker.AlertConfig, now: datetime) -> None:
    """Re-detect every truck's whole day and evaluate it with nothing remembered."""
    with conn.transaction():
        changed, _ = repo.changed_truck_days(
            conn, since=at("00:00"), recorded_since=at("00:00"), district_id="d1"
        )
        everything = [(truck, day, None, received) for truck, day, _, received in changed]
        worker.Pipeline(config).process(conn, now=now, changes=everything, district_id="d1")


@pytest.mark.parametrize(
    ("seed", "full_every_s"),
    [(1, worker.FULL_EVERY_S), (2, worker.FULL_EVERY_S), (3, worker.FULL_EVERY_S), (4, 0.0)],
)
def test_incremental_ticks_equal_a_full_evaluation(
    database_url: str, pg: Any, seed: int, full_every_s: float
) -> None:
    """Random partial deliveries: after every tick the incremental worker's visits, ledger,
    alerts and cases equal those of a from-scratch evaluation of the same data (also when
    the worker drops what it remembers before every tick, its safety net)."""
    rng = random.Random(seed)
    full_url = pg.new_database()
    for url in (database_url, full_url):
        with psycopg.connect(url, autocommit=True) as conn:
            load_domain(conn)
            load_streets(conn)
            load_plan(conn)
    config = worker.AlertConfig.from_settings(Settings())
    clock = FakeClock(at("06:00"))
    incremental = worker.Worker(
        database_url, config, clock=clock, overlap_s=0.0, full_every_s=full_every_s
    )
    pending = deliveries(rng)
    now = at("06:00")
    ticks = 0
    with (
        psycopg.connect(database_url, autocommit=True) as inc_conn,
        psycopg.connect(full_url, autocommit=True) as full_conn,
    ):
        while now <= at("21:00"):
            while pending and pending[0].deliver_at <= now:
                part = pending.pop(0)
                for conn in (inc_conn, full_conn):
                    insert_fixes(conn, part.truck_id, part.fixes)
            clock.now = now
            assert not incremental.tick().skipped
            full_evaluation(full_conn, config, now)
            assert state(inc_conn) == state(full_conn), f"seed {seed}, tick at {now:%H:%M:%S}"
            ticks += 1
            # Short steps while data comes in; long ones through the afternoon and evening
            # (the time-driven conditions: missed, the deadline, not unloaded).
            step = rng.uniform(10, 240) if pending else rng.uniform(600, 3600)
            now += timedelta(seconds=step)
        raised = inc_conn.execute("SELECT count(*) FROM alert").fetchone()
    incremental.close()
    assert raised is not None and raised[0] >= 2  # the day raises alerts: the test compares some
    assert ticks > 30
