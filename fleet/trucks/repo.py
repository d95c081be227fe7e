from __future__ import annotations

import psycopg
from psycopg import sql

from fleet.catalogue import Table
from fleet.trucks.terminals import TerminalColumn

TABLE = Table(
    name="truck",
    key="truck_id",
    columns=(
        "plate", "truck_type", "capacity_kg", "streams", "depot_id", "terminal_id",
        "jt808_phone", "shift_start", "shift_end", "max_route_duration_s", "break_duration_s",
        "break_earliest", "break_latest", "can_enter_narrow",
    ),
    casts={"streams": "text[]"},
    search=("plate", "terminal_id", "jt808_phone"),
    filters=("truck_type", "depot_id"),
    contains={"stream": "streams"},
)  # fmt: skip


def terminal_holder(conn: psycopg.Connection, *, column: TerminalColumn, value: str) -> str | None:
    """The truck (of any district) whose ``column`` is ``value``, if one is."""
    row = conn.execute(
        sql.SQL("SELECT truck_id FROM truck WHERE {} = %s").format(sql.Identifier(column)),
        (value,),
    ).fetchone()
    return None if row is None else str(row[0])


def plates(conn: psycopg.Connection, *, truck_ids: list[str]) -> dict[str, str]:
    """Plate by truck id, for the given trucks (any district: callers pass ids they
    already read within their scope)."""
    rows = conn.execute(
        "SELECT truck_id, plate FROM truck WHERE truck_id = ANY(%s)", (truck_ids,)
    ).fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def active_terminals(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(truck_id, terminal_id) of every active truck (all districts), by terminal id."""
    rows = conn.execute(
        "SELECT truck_id, terminal_id FROM truck WHERE active ORDER BY terminal_id"
    ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]
