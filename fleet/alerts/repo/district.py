"""The district as the alerts see it: trucks, time zones, sites (points, stations,
depots) with their fences, and road geometry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import class_row, dict_row

from fleet.alerts.visits import Site


@dataclass(frozen=True, slots=True)
class TruckRef:
    truck_id: str
    district_id: str
    timezone: str


def trucks(conn: psycopg.Connection) -> dict[str, TruckRef]:
    with conn.cursor(row_factory=class_row(TruckRef)) as cur:
        rows = cur.execute(
            """SELECT t.truck_id, t.district_id, d.timezone
                 FROM truck t JOIN district d USING (district_id)"""
        ).fetchall()
    return {r.truck_id: r for r in rows}


def read_in_zone(conn: psycopg.Connection, timezone: str) -> None:
    """Times read on `conn` from now on come in `timezone` (the session's TimeZone), so
    the visits, evidence and alert details computed from them are in that district's
    local time, as a person reads them."""
    conn.execute("SELECT set_config('TimeZone', %s, false)", (timezone,))


def district_timezones(conn: psycopg.Connection) -> dict[str, str]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("SELECT district_id, timezone FROM district").fetchall()
    return {r["district_id"]: r["timezone"] for r in rows}


def sites(
    conn: psycopg.Connection,
    *,
    district_id: str,
    min_dwell_fraction: float,
    station_min_dwell_fraction: float,
    station_radius_m: float,
    depot_radius_m: float,
) -> list[Site]:
    """The district's points, and every station and depot (trucks may cross lines)."""
    with conn.cursor(row_factory=class_row(Site)) as cur:
        out = cur.execute(
            """SELECT 'point' AS kind, point_id AS site_id, lat, lon,
                      geofence_radius_m AS radius_m,
                      coalesce(min_dwell_s, service_time_s * %s)::float8 AS min_dwell_s
                 FROM collection_point WHERE district_id = %s AND active""",
            (min_dwell_fraction, district_id),
        ).fetchall()
        out += cur.execute(
            """SELECT 'station' AS kind, station_id AS site_id, lat, lon,
                      %s::float8 AS radius_m, tipping_time_s * %s::float8 AS min_dwell_s
                 FROM transfer_station WHERE active""",
            (station_radius_m, station_min_dwell_fraction),
        ).fetchall()
        out += cur.execute(
            """SELECT 'depot' AS kind, depot_id AS site_id, lat, lon,
                      %s::float8 AS radius_m, 0::float8 AS min_dwell_s
                 FROM depot WHERE active""",
            (depot_radius_m,),
        ).fetchall()
    return out


def roads(conn: psycopg.Connection, *, district_id: str) -> list[dict[str, Any]]:
    """The district's road geometry, for judging which road a truck drove past a point."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT from_node, to_node, oneway, coordinates FROM road WHERE district_id = %s",
            (district_id,),
        ).fetchall()


def station_min_dwell(conn: psycopg.Connection, *, fraction: float) -> dict[str, float]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT station_id, tipping_time_s * %s::float8 AS dwell_s FROM transfer_station",
            (fraction,),
        ).fetchall()
    return {r["station_id"]: float(r["dwell_s"]) for r in rows}
