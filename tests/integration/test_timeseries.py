"""Time-series storage against a real server: late fixes still reach the alert worker
through its chunk-skipping bound; the test templates accept no connections; and, on a
TimescaleDB server (CLEARDAY_TEST_TIMESCALE=1), the policies of migration 0008 hold:
truck_daily_distance equals the plain view's definition, no default time index, the
ingestor refuses a compression policy that reaches into the accepted past, and the
doctor reports the policies and background jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from fleet import db, doctor
from fleet.alerts import repo as alerts_repo
from fleet.alerts.worker import AlertConfig, Worker
from fleet.positions import policies
from fleet.positions import repo as positions_repo
from ingest.service import check_schema
from tests.conftest import PgServer
from tests.integration.ingest.support import add_fleet

WEEK_S = 7 * 86_400
# The plain-PostgreSQL definition of truck_daily_distance (0002_timeseries.plain.sql).
PLAIN_DAILY_DISTANCE = """
SELECT truck_id,
       (date_trunc('day', recorded_at AT TIME ZONE 'Asia/Shanghai') AT TIME ZONE 'Asia/Shanghai') AS day,
       max(odometer_km) - min(odometer_km) AS distance_km,
       count(*) AS fixes
FROM position GROUP BY 1, 2 ORDER BY 1, 2"""


def insert_fixes(url: str, fixes: list[tuple[str, datetime, float]]) -> None:
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO position (truck_id, recorded_at, lat, lon, odometer_km)"
            " VALUES (%s, %s, 31.8, 117.3, %s)",
            fixes,
        )


def test_a_fix_received_now_from_the_edge_of_the_accepted_past_reaches_the_worker(
    database_url: str,
) -> None:
    """A blind-zone backlog: recorded almost 7 days ago, received now. The worker's
    device-time bound leaves it in; its day is re-evaluated (truck_day row written)."""
    add_fleet(database_url, trucks=1)
    now = datetime.now(UTC)
    late = now - timedelta(seconds=WEEK_S - 60)
    insert_fixes(database_url, [("T0", late, 100.0), ("T0", late + timedelta(minutes=1), 100.5)])
    worker = Worker(database_url, AlertConfig(ingest_max_past_s=WEEK_S))
    try:
        worker.tick()
    finally:
        worker.close()
    with psycopg.connect(database_url) as conn:
        first = conn.execute("SELECT min(first_fix_at) FROM truck_day WHERE truck_id = 'T0'")
        assert first.fetchone() == (late,)


def test_the_bound_is_in_the_query_and_leaves_out_only_what_ingest_refuses(
    database_url: str,
) -> None:
    """A row recorded before the bound (which the ingestor would have dead-lettered) is
    not looked at; one inside it is."""
    add_fleet(database_url, trucks=2)
    now = datetime.now(UTC)
    insert_fixes(
        database_url,
        [("T0", now - timedelta(days=6, hours=23), 1.0), ("T1", now - timedelta(days=9), 1.0)],
    )
    since = now - timedelta(minutes=5)
    with psycopg.connect(database_url) as conn:
        changed, _ = alerts_repo.changed_truck_days(
            conn, since=since, recorded_since=policies.recorded_since(since, max_past_s=WEEK_S)
        )
    assert [c[0] for c in changed] == ["T0"]


def test_templates_accept_no_connections(pg: PgServer, database_url: str) -> None:
    """TimescaleDB's scheduler (or anyone) cannot hold the template open: clones never
    fail with ObjectInUse (TimescaleDB issue 4048)."""
    with psycopg.connect(pg.admin_url) as conn:
        rows = conn.execute(
            "SELECT datallowconn, datistemplate FROM pg_database WHERE datname = ANY(%s)",
            (list(pg._templates.values()),),
        ).fetchall()
    assert rows and all(r == (False, True) for r in rows)
    for _ in range(3):  # clone again and again
        pg.new_database()


# ---------------------------------------------------------------------- TimescaleDB only


@pytest.fixture
def timescale_url(pg: PgServer) -> str:
    if not pg.has_timescale:
        pytest.skip(
            "this server has no TimescaleDB (run with CLEARDAY_TEST_TIMESCALE=1 and "
            "CLEARDAY_DATABASE_URL of a TimescaleDB server)"
        )
    return pg.new_database(timescale="on")


def run_refresh_job(url: str) -> None:
    """Run truck_daily_distance's refresh policy now, as the scheduler would."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            """SELECT j.job_id FROM timescaledb_information.jobs j
                 JOIN timescaledb_information.continuous_aggregates c
                   ON c.materialization_hypertable_name = j.hypertable_name
                WHERE c.view_name = 'truck_daily_distance'"""
        ).fetchone()
        assert row is not None, "truck_daily_distance has no refresh policy"
        conn.execute("CALL run_job(%s)", (row[0],))


def daily(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.timescale
def test_daily_distance_aggregate_equals_the_plain_definition(timescale_url: str) -> None:
    """Today (real time), days materialized by the policy, a late fix into a
    materialized day and a 30-day-old backfill: the aggregate always equals the plain
    view's query over the same rows."""
    url = timescale_url
    add_fleet(url, trucks=2)
    now = datetime.now(UTC)
    insert_fixes(
        url,
        [(f"T{t}", now - timedelta(days=d, hours=h), 100.0 * d + 7 * h + t)
         for t in (0, 1) for d in (0, 1, 2, 3) for h in (1, 5)],
    )  # fmt: skip
    view = "SELECT * FROM truck_daily_distance ORDER BY 1, 2"
    assert daily(url, view) == daily(url, PLAIN_DAILY_DISTANCE)  # nothing materialized yet
    run_refresh_job(url)
    assert daily(url, view) == daily(url, PLAIN_DAILY_DISTANCE)
    # A late fix 6 days back (accepted by ingest) and a backfill 30 days back.
    insert_fixes(url, [("T0", now - timedelta(days=6), 1.0), ("T1", now - timedelta(days=30), 2.0),
                       ("T0", now - timedelta(days=2, hours=3), 999.0)])  # fmt: skip
    run_refresh_job(url)
    assert daily(url, view) == daily(url, PLAIN_DAILY_DISTANCE)


@pytest.mark.timescale
def test_policies_and_indexes_of_migration_0008(timescale_url: str) -> None:
    with psycopg.connect(timescale_url) as conn:
        found = positions_repo.storage_policies(conn)
        indexes = {
            r[0]
            for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'position'")
        }
        jobs = db.timescale_jobs(conn)
    assert found.compress_after_s == 8 * 86_400
    assert found.refresh_policy and found.refresh_start_offset_s is None
    assert "position_recorded_at_idx" not in indexes
    assert {j.proc_name for j in jobs} >= {
        "policy_compression", "policy_retention", "policy_refresh_continuous_aggregate"
    }  # fmt: skip
    assert doctor.jobs_finding(jobs).ok


@pytest.mark.timescale
def test_ingestor_refuses_compression_inside_the_accepted_past(timescale_url: str) -> None:
    """Compression moved back to 7 days (the issue's setting): the ingestor does not
    start, and says which two settings disagree; the doctor says the same."""
    with psycopg.connect(timescale_url, autocommit=True) as conn:
        conn.execute("CALL remove_columnstore_policy('position')")
        conn.execute("CALL add_columnstore_policy('position', after => INTERVAL '7 days')")
    with pytest.raises(db.DatabaseUnavailable) as refused:
        check_schema(timescale_url, max_past_s=WEEK_S)
    assert "CLEARDAY_INGEST_MAX_PAST_S=604800" in str(refused.value)
    assert "compresses chunks after 7 days" in str(refused.value)
    check_schema(timescale_url, max_past_s=5 * 86_400)  # a shorter accepted past fits
    findings = {f.check: f for f in doctor.check_database(timescale_url, max_past_s=WEEK_S)}
    assert not findings["policies"].ok
