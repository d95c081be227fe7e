"""SQL for roads: GeoJSON built in SQL (one round trip, no per-feature Python
objects), and the rows a district's road network is built from."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

ROADS_SQL = """
SELECT json_build_object(
    'type', 'FeatureCollection',
    'features', coalesce(json_agg(json_build_object(
        'type', 'Feature',
        'id', road_id,
        'geometry', json_build_object('type', 'LineString', 'coordinates', coordinates),
        'properties', json_build_object(
            'district_id', district_id, 'road_class', road_class, 'speed_kmh', speed_kmh,
            'oneway', oneway, 'narrow', narrow, 'length_m', round(length_m::numeric, 1))
    ) ORDER BY road_id), '[]'::json))::text
FROM road
WHERE (%(districts)s::text[] IS NULL OR district_id = ANY(%(districts)s))
"""

SITES_SQL = """
WITH sites AS (
    SELECT 'depot' AS kind, depot_id AS id, district_id, name, lat, lon,
           json_build_object() AS extra
    FROM depot WHERE active
    UNION ALL
    SELECT 'station', station_id, district_id, name, lat, lon,
           json_build_object('streams', streams::text[], 'opens_at', opens_at,
                             'closes_at', closes_at)
    FROM transfer_station WHERE active
    UNION ALL
    SELECT 'point', point_id, district_id, name, lat, lon,
           json_build_object('stream', stream::text, 'daily_amount_kg', daily_amount_kg,
                             'geofence_radius_m', geofence_radius_m,
                             'access_class', access_class, 'window_start', window_start,
                             'window_end', window_end)
    FROM collection_point WHERE active
)
SELECT json_build_object(
    'type', 'FeatureCollection',
    'features', coalesce(json_agg(json_build_object(
        'type', 'Feature',
        'id', kind || ':' || id,
        'geometry', json_build_object('type', 'Point', 'coordinates', json_build_array(lon, lat)),
        'properties', json_build_object('kind', kind, 'id', id, 'district_id', district_id,
                                        'name', name)::jsonb || extra::jsonb
    ) ORDER BY kind, id), '[]'::json))::text
FROM sites
WHERE (%(districts)s::text[] IS NULL OR district_id = ANY(%(districts)s))
"""


def roads_geojson(conn: psycopg.Connection, *, districts: list[str] | None) -> str:
    row = conn.execute(ROADS_SQL, {"districts": districts}).fetchone()
    return str(row[0]) if row else '{"type":"FeatureCollection","features":[]}'


def sites_geojson(conn: psycopg.Connection, *, districts: list[str] | None) -> str:
    row = conn.execute(SITES_SQL, {"districts": districts}).fetchone()
    return str(row[0]) if row else '{"type":"FeatureCollection","features":[]}'


def roads_version(conn: psycopg.Connection, *, district_id: str) -> tuple[Any, ...]:
    """What changes when a district's roads change: their count and last update."""
    row = conn.execute(
        "SELECT count(*), max(updated_at) FROM road WHERE district_id = %s", (district_id,)
    ).fetchone()
    return tuple(row or ())


def road_rows(conn: psycopg.Connection, *, district_id: str) -> list[dict[str, Any]]:
    """A district's roads, as the rows `routing.graph.graph_from_edges` reads."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT from_node, to_node, speed_kmh, oneway, narrow, length_m, coordinates
               FROM road WHERE district_id = %s""",
            (district_id,),
        ).fetchall()
