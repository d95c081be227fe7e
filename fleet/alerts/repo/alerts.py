"""Alerts: raised once per crossing (the dedupe key), escalated in place, listed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from fleet.alerts.rules import AlertCandidate

ALERT_COLS = """alert_id, kind, severity, district_id, service_date, subject, point_id, truck_id,
                condition_at, raised_at, message, details, case_id, resolved_at, resolution"""


def known_alert_keys(
    conn: psycopg.Connection, *, dates: Sequence[date]
) -> dict[str, frozenset[str]]:
    """The alerts raised on these dates: dedupe key -> the stages it has reached."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """SELECT dedupe_key, kind,
                      (SELECT array_agg(s ->> 'kind') FROM jsonb_array_elements(
                           CASE WHEN jsonb_typeof(details -> 'stages') = 'array'
                                THEN details -> 'stages' END) AS s) AS stages
                 FROM alert WHERE service_date = ANY(%s)""",
            (list(dates),),
        ).fetchall()
    return {r["dedupe_key"]: frozenset(r["stages"] or [r["kind"]]) for r in rows}


@dataclass(frozen=True, slots=True)
class RaisedAlert:
    alert_id: int
    candidate: AlertCandidate
    raised_at: datetime


def insert_alert(
    conn: psycopg.Connection, candidate: AlertCandidate, *, now: datetime
) -> RaisedAlert | None:
    """Insert the alert unless its crossing was raised before; None if it was."""
    c = _stages_raised(candidate, {}, now)
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            """INSERT INTO alert (dedupe_key, kind, severity, district_id, service_date, subject,
                                  point_id, truck_id, condition_at, raised_at, message, details)
               VALUES (%(key)s, %(kind)s, %(severity)s, %(district_id)s, %(service_date)s,
                       %(subject)s, %(point_id)s, %(truck_id)s, %(condition_at)s, %(now)s,
                       %(message)s, %(details)s)
               ON CONFLICT (dedupe_key) DO NOTHING RETURNING alert_id""",
            {"key": c.key, "kind": c.kind, "severity": c.severity, "district_id": c.district_id,
             "service_date": c.service_date, "subject": c.subject, "point_id": c.point_id,
             "truck_id": c.truck_id, "condition_at": c.condition_at, "now": now,
             "message": c.message, "details": Jsonb(c.details)},
        ).fetchone()  # fmt: skip
    return RaisedAlert(row["alert_id"], c, now) if row else None


def escalate_alert(
    conn: psycopg.Connection, candidate: AlertCandidate, *, now: datetime
) -> RaisedAlert | None:
    """Move an incident's alert (same key) on to the candidate's later stage in place:
    kind, severity, message and the stages of its evidence. None if it is not there."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT alert_id, details FROM alert WHERE dedupe_key = %s FOR UPDATE",
            (candidate.key,),
        ).fetchone()
    if row is None:
        return None
    alert_id = row["alert_id"]
    raised_at = {
        s["kind"]: s["raised_at"] for s in row["details"].get("stages", []) if "raised_at" in s
    }
    c = _stages_raised(candidate, raised_at, now)
    conn.execute(
        """UPDATE alert SET kind = %s, severity = %s, message = %s, details = %s
            WHERE alert_id = %s""",
        (c.kind, c.severity, c.message, Jsonb(c.details), alert_id),
    )
    return RaisedAlert(alert_id, c, now)


def _stages_raised(c: AlertCandidate, raised_at: dict[str, str], now: datetime) -> AlertCandidate:
    """The candidate with each stage stamped with when it was first raised."""
    stages = c.details.get("stages")
    if not stages:
        return c
    stamped = [{**s, "raised_at": raised_at.get(s["kind"], now.isoformat())} for s in stages]
    return replace(c, details={**c.details, "stages": stamped})


def list_alerts(
    conn: psycopg.Connection,
    *,
    district_ids: Sequence[str] | None,
    service_date: date | None,
    kind: str | None,
    unresolved_only: bool,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    """Alerts, newest first. `kind` also finds a point's incident that passed through
    that stage (a drive-by since escalated to missed is found as a drive_by)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"""SELECT {ALERT_COLS} FROM alert
                 WHERE (%(ds)s::text[] IS NULL OR district_id = ANY(%(ds)s))
                   AND (%(d)s::date IS NULL OR service_date = %(d)s)
                   AND (%(k)s::text IS NULL OR kind = %(k)s
                        OR details->'stages' @> jsonb_build_array(
                               jsonb_build_object('kind', %(k)s::text)))
                   AND (NOT %(u)s OR resolved_at IS NULL)
                 ORDER BY raised_at DESC, alert_id DESC LIMIT %(lim)s OFFSET %(off)s""",
            {"ds": None if district_ids is None else list(district_ids), "d": service_date,
             "k": kind, "u": unresolved_only, "lim": limit, "off": max(0, offset)},
        ).fetchall()  # fmt: skip
