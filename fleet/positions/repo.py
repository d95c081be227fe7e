"""SQL for positions. The latest fix of each truck is one backward index probe per truck
on the primary key (truck_id, recorded_at) through a LATERAL subquery — a few ms for a
thousand trucks however long the table is (see bench/api.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from fleet import db
from fleet.positions.policies import StoragePolicies

LATEST_SQL = """
SELECT t.truck_id, t.plate, t.district_id, t.truck_type, t.depot_id,
       p.recorded_at, p.lat, p.lon, p.speed_kmh, p.heading_deg, p.accuracy_m,
       p.ignition, p.load_state
FROM truck t
LEFT JOIN LATERAL (
    SELECT recorded_at, lat, lon, speed_kmh, heading_deg, accuracy_m, ignition, load_state
    FROM position
    WHERE position.truck_id = t.truck_id
    ORDER BY recorded_at DESC
    LIMIT 1
) p ON true
WHERE t.active
  AND (%(districts)s::text[] IS NULL OR t.district_id = ANY(%(districts)s))
ORDER BY t.truck_id
"""


# Where a committed batch of fixes or device events is announced (the NOTIFY is
# delivered at commit, so a listener never reads ahead of the rows): the alert worker
# wakes on it instead of waiting for its next poll.
TRACK_CHANNEL = "track_committed"


def announce_track_data(conn: psycopg.Connection) -> None:
    """In the writing transaction: fixes or events were written."""
    conn.execute("SELECT pg_notify(%s, '')", (TRACK_CHANNEL,))


def listen_for_track_data(conn: psycopg.Connection) -> None:
    conn.execute(f"LISTEN {TRACK_CHANNEL}")


def latest(conn: psycopg.Connection, *, districts: list[str] | None) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(LATEST_SQL, {"districts": districts}, prepare=True).fetchall()


def truck_district(conn: psycopg.Connection, *, truck_id: str) -> str | None:
    row = conn.execute("SELECT district_id FROM truck WHERE truck_id = %s", (truck_id,)).fetchone()
    return str(row[0]) if row else None


TRACK_SQL = """
SELECT recorded_at, lat, lon, speed_kmh, heading_deg, n
FROM (
    SELECT recorded_at, lat, lon, speed_kmh, heading_deg,
           row_number() OVER (ORDER BY recorded_at) AS rn,
           count(*) OVER () AS n
    FROM position
    WHERE truck_id = %(truck_id)s AND recorded_at >= %(start)s AND recorded_at < %(end)s
) f
-- Every k-th fix where k = ceil(n / max_points), and always the last one.
WHERE n <= %(max_points)s
   OR (rn - 1) %% ceil(n::numeric / %(max_points)s)::bigint = 0
   OR rn = n
ORDER BY recorded_at
"""


def track(
    conn: psycopg.Connection, *, truck_id: str, start: datetime, end: datetime, max_points: int
) -> tuple[list[dict[str, Any]], int]:
    """The fixes in [start, end), thinned evenly to at most max_points (+ the last)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            TRACK_SQL,
            {"truck_id": truck_id, "start": start, "end": end, "max_points": max_points},
        ).fetchall()
    total = int(rows[0]["n"]) if rows else 0
    return rows, total


SITES_SQL = """
SELECT 'point' AS kind, point_id AS site_id, district_id, lat, lon, geofence_radius_m AS radius_m
FROM collection_point WHERE active
UNION ALL
SELECT 'station', station_id, district_id, lat, lon, %(station_radius_m)s FROM transfer_station WHERE active
UNION ALL
SELECT 'depot', depot_id, district_id, lat, lon, %(depot_radius_m)s FROM depot WHERE active
"""


def sites(
    conn: psycopg.Connection, *, station_radius_m: float, depot_radius_m: float
) -> list[dict[str, Any]]:
    """Every active site: kind, site_id, district_id, lat, lon, radius_m."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            SITES_SQL, {"station_radius_m": station_radius_m, "depot_radius_m": depot_radius_m}
        ).fetchall()


def storage_policies(conn: psycopg.Connection) -> StoragePolicies:
    """The TimescaleDB policies that settle fixes (see fleet/positions/policies.py);
    the defaults (no policy) on plain PostgreSQL."""
    if db.timescale_installed(conn) is None:
        return StoragePolicies()
    row = conn.execute(
        """SELECT (SELECT extract(epoch FROM (j.config ->> 'compress_after')::interval)::float8
                     FROM timescaledb_information.jobs j
                    WHERE j.proc_name = 'policy_compression' AND j.hypertable_schema = 'public'
                      AND j.hypertable_name = 'position'
                    LIMIT 1),
                  r.job_id IS NOT NULL,
                  extract(epoch FROM (r.config ->> 'start_offset')::interval)::float8
             FROM (SELECT 1) one
             LEFT JOIN (SELECT j.job_id, j.config
                          FROM timescaledb_information.jobs j
                          JOIN timescaledb_information.continuous_aggregates c
                            ON c.materialization_hypertable_schema = j.hypertable_schema
                           AND c.materialization_hypertable_name = j.hypertable_name
                         WHERE j.proc_name = 'policy_refresh_continuous_aggregate'
                           AND c.view_name = 'truck_daily_distance'
                         LIMIT 1) r ON true"""
    ).fetchone()
    assert row is not None
    return StoragePolicies(
        compress_after_s=row[0], refresh_policy=bool(row[1]), refresh_start_offset_s=row[2]
    )
