from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row


def district_exists(conn: psycopg.Connection, district_id: str) -> bool:
    row = conn.execute("SELECT 1 FROM district WHERE district_id = %s", (district_id,)).fetchone()
    return row is not None


_SELECT = """
SELECT d.district_id, d.name, d.timezone, d.plan_at_hour, d.created_at,
       (SELECT count(*) FROM collection_point p WHERE p.district_id = d.district_id AND p.active) AS points,
       (SELECT count(*) FROM truck t WHERE t.district_id = d.district_id AND t.active) AS trucks
FROM district d
WHERE (%(districts)s::text[] IS NULL OR d.district_id = ANY(%(districts)s))
"""


def list_districts(
    conn: psycopg.Connection, *, districts: list[str] | None
) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_SELECT + " ORDER BY d.district_id", {"districts": districts}).fetchall()


def get_district(
    conn: psycopg.Connection, *, district_id: str, districts: list[str] | None
) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            _SELECT + " AND d.district_id = %(id)s", {"districts": districts, "id": district_id}
        ).fetchone()


def insert_district(
    conn: psycopg.Connection, *, district_id: str, name: str, timezone: str
) -> bool:
    cur = conn.execute(
        """INSERT INTO district (district_id, name, timezone) VALUES (%s, %s, %s)
           ON CONFLICT DO NOTHING""",
        (district_id, name, timezone),
    )
    return cur.rowcount == 1


def update_district(conn: psycopg.Connection, *, district_id: str, changes: dict[str, Any]) -> None:
    if changes:
        sets = ", ".join(f"{c} = %({c})s" for c in changes)
        conn.execute(
            f"UPDATE district SET {sets} WHERE district_id = %(id)s", {**changes, "id": district_id}
        )
