"""SQL for an import (fleet/importer.py): what is already stored that the rows must
agree with, and the writes. The importer runs every call in its one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb


def places(
    conn: psycopg.Connection, *, table: str, key: str, district_id: str
) -> list[dict[str, Any]]:
    """A district's rows of a table with a place: `id`, `lat`, `lon`."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            sql.SQL("SELECT {key} AS id, lat, lon FROM {table} WHERE district_id = %s").format(
                key=sql.Identifier(key), table=sql.Identifier(table)
            ),
            (district_id,),
        ).fetchall()


def delete_roads_except(
    conn: psycopg.Connection, *, district_id: str, kept_road_ids: list[str]
) -> int:
    """Delete a district's roads but those kept; returns how many went."""
    cur = conn.execute(
        "DELETE FROM road WHERE district_id = %s AND NOT (road_id = ANY(%s))",
        (district_id, kept_road_ids),
    )
    return cur.rowcount


def existing_districts(conn: psycopg.Connection, *, district_ids: list[str]) -> set[str]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT district_id FROM district WHERE district_id = ANY(%s)", (district_ids,)
        ).fetchall()
    return {str(r["district_id"]) for r in rows}


def create_district(conn: psycopg.Connection, *, district_id: str) -> bool:
    """A district named by its code; False when another import created it meanwhile."""
    cur = conn.execute(
        "INSERT INTO district (district_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (district_id, district_id),
    )
    return cur.rowcount == 1


def id_owners(conn: psycopg.Connection, *, table: str, key: str, ids: list[str]) -> dict[str, str]:
    """The district of each of `ids` already stored in `table`."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            sql.SQL("SELECT {key} AS id, district_id FROM {table} WHERE {key} = ANY(%s)").format(
                key=sql.Identifier(key), table=sql.Identifier(table)
            ),
            (ids,),
        ).fetchall()
    return {str(r["id"]): str(r["district_id"]) for r in rows}


def depot_districts(conn: psycopg.Connection, *, depot_ids: list[str]) -> set[tuple[str, str]]:
    """(depot, district) of each of `depot_ids` already stored."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT depot_id, district_id FROM depot WHERE depot_id = ANY(%s)", (depot_ids,)
        ).fetchall()
    return {(str(r["depot_id"]), str(r["district_id"])) for r in rows}


def terminal_holders(conn: psycopg.Connection, *, column: str, values: list[str]) -> dict[str, str]:
    """The truck holding each of `values` in the terminal column `column`."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            sql.SQL("SELECT {c} AS terminal, truck_id FROM truck WHERE {c} = ANY(%s)").format(
                c=sql.Identifier(column)
            ),
            (values,),
        ).fetchall()
    return {str(r["terminal"]): str(r["truck_id"]) for r in rows}


def upsert(
    conn: psycopg.Connection,
    *,
    table: str,
    key: str,
    columns: Sequence[str],
    rows: list[list[Any]],
) -> list[bool | None]:
    """Insert or update `rows` (each: id, district, then `columns`); for each row, True
    when new, False when updated, None when refused: an update never crosses a district
    (the WHERE below)."""
    query = sql.SQL(
        "INSERT INTO {table} ({key}, district_id, {columns}) VALUES ({values}) "
        "ON CONFLICT ({key}) DO UPDATE SET {sets}, updated_at = now() "
        "WHERE {table}.district_id = EXCLUDED.district_id RETURNING (xmax = 0) AS fresh"
    ).format(
        table=sql.Identifier(table),
        key=sql.Identifier(key),
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        values=sql.SQL(", ").join(sql.Placeholder() * (len(columns) + 2)),
        sets=sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in columns
        ),
    )
    outcomes: list[bool | None] = []
    with conn.cursor(row_factory=dict_row) as cur:
        cur.executemany(query, [[_sql_value(v) for v in row] for row in rows], returning=True)
        for _ in rows:
            result = cur.fetchone()
            outcomes.append(None if result is None else bool(result["fresh"]))
            cur.nextset()
    return outcomes


def _sql_value(value: Any) -> Any:
    """A road's coordinates (a list of lists) go in as JSON."""
    return (
        Jsonb(value) if isinstance(value, list) and value and isinstance(value[0], list) else value
    )
