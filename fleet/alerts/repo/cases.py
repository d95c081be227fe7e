"""Cases (一单四制): opened or joined by alerts, moved by transitions, listed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.rows import class_row, dict_row

from fleet.alerts.cases import CaseAction, CaseNotFound, CaseState, Transition, transition
from fleet.alerts.repo.alerts import ALERT_COLS, RaisedAlert


def open_case_for(
    conn: psycopg.Connection,
    raised: RaisedAlert,
    *,
    due_at: datetime,
    now: datetime,
) -> tuple[int, bool]:
    """Attach the alert to the open case of its subject and day, or open one.
    Returns (case_id, opened)."""
    c = raised.candidate
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            """SELECT case_id, state, severity FROM alert_case
                WHERE district_id = %s AND service_date = %s AND subject = %s
                  AND state <> 'closed'
                FOR UPDATE""",
            (c.district_id, c.service_date, c.subject),
        ).fetchone()
    if row:
        case_id, state = row["case_id"], row["state"]
        if c.severity == "high" and row["severity"] != "high":
            conn.execute(
                "UPDATE alert_case SET severity = 'high', due_at = least(due_at, %s), updated_at = %s WHERE case_id = %s",
                (due_at, now, case_id),
            )
        t = transition(CaseState(state), CaseAction.ATTACH, actor="system", note=c.message)
        add_case_event(conn, case_id, t, at=now, alert_id=raised.alert_id)
        opened = False
    else:
        with conn.cursor(row_factory=dict_row) as cur:
            opened_row = cur.execute(
                """INSERT INTO alert_case (district_id, service_date, subject, point_id,
                                           truck_id, severity, title, opened_at, due_at,
                                           updated_at)
                   VALUES (%(district_id)s, %(service_date)s, %(subject)s, %(point_id)s,
                           %(truck_id)s, %(severity)s, %(title)s, %(now)s, %(due_at)s, %(now)s)
                   RETURNING case_id""",
                {"district_id": c.district_id, "service_date": c.service_date,
                 "subject": c.subject, "point_id": c.point_id, "truck_id": c.truck_id,
                 "severity": c.severity, "title": c.message, "now": now, "due_at": due_at},
            ).fetchone()  # fmt: skip
        assert opened_row is not None
        case_id = opened_row["case_id"]
        t = transition(CaseState.OPEN, CaseAction.OPEN, actor="system", note=c.message)
        add_case_event(conn, case_id, t, at=now, alert_id=raised.alert_id)
        opened = True
    conn.execute("UPDATE alert SET case_id = %s WHERE alert_id = %s", (case_id, raised.alert_id))
    return case_id, opened


def add_case_event(
    conn: psycopg.Connection,
    case_id: int,
    t: Transition,
    *,
    at: datetime,
    alert_id: int | None = None,
) -> None:
    conn.execute(
        """INSERT INTO case_event (case_id, at, actor, action, from_state, to_state, assignee,
                                   note, alert_id)
           VALUES (%(case_id)s, %(at)s, %(actor)s, %(action)s, %(from_state)s, %(to_state)s,
                   %(assignee)s, %(note)s, %(alert_id)s)""",
        {"case_id": case_id, "at": at, "actor": t.actor, "action": t.action.value,
         "from_state": t.from_state.value, "to_state": t.to_state.value,
         "assignee": t.assignee, "note": t.note, "alert_id": alert_id},
    )  # fmt: skip


def lock_case(conn: psycopg.Connection, case_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT * FROM alert_case WHERE case_id = %s FOR UPDATE", (case_id,)
        ).fetchone()
    if row is None:
        raise CaseNotFound(f"no case {case_id}")
    return row


def apply_transition(
    conn: psycopg.Connection, case_id: int, t: Transition, *, at: datetime
) -> None:
    """Write a transition already checked by cases.transition (row locked by caller)."""
    sets = ["state = %(to)s", "updated_at = %(at)s"]
    if t.action.value == "assign":
        sets.append("assignee = %(assignee)s")
    if t.to_state == CaseState.CLOSED:
        sets += ["closed_at = %(at)s", "closed_by = %(actor)s", "close_note = %(note)s"]
        if t.action == CaseAction.AUTO_CLOSE:
            sets.append("auto_closed = true")
    if t.action == CaseAction.ESCALATE:
        sets += ["escalation_level = escalation_level + 1", "escalated_at = %(at)s"]
    conn.execute(
        f"UPDATE alert_case SET {', '.join(sets)} WHERE case_id = %(id)s",
        {
            "to": t.to_state.value,
            "at": at,
            "assignee": t.assignee,
            "actor": t.actor,
            "note": t.note,
            "id": case_id,
        },
    )
    add_case_event(conn, case_id, t, at=at)
    if t.to_state == CaseState.CLOSED:
        conn.execute(
            """UPDATE alert SET resolved_at = coalesce(resolved_at, %s),
                                resolution = coalesce(resolution, %s)
                WHERE case_id = %s""",
            (
                at,
                ("auto: " if t.action == CaseAction.AUTO_CLOSE else "closed: ") + (t.note or ""),
                case_id,
            ),
        )


@dataclass(frozen=True, slots=True)
class ClearedPointCase:
    """An open case about a point the ledger now says is cleared."""

    case_id: int
    state: str
    point_id: str
    cleared_at: datetime
    truck_name: str | None  # the truck that cleared it, as a person reads it (its plate)
    dwell_s: float | None


def open_point_cases_now_cleared(
    conn: psycopg.Connection, *, district_id: str, service_date: date
) -> list[ClearedPointCase]:
    """Open cases about a point that the ledger now says is cleared."""
    with conn.cursor(row_factory=class_row(ClearedPointCase)) as cur:
        return cur.execute(
            """SELECT c.case_id, c.state, l.point_id, l.cleared_at,
                      coalesce(nullif(t.plate, ''), l.cleared_by_truck_id) AS truck_name,
                      l.dwell_s
                 FROM alert_case c JOIN ledger_entry l
                   ON l.service_date = c.service_date AND l.point_id = c.point_id
                 LEFT JOIN truck t ON t.truck_id = l.cleared_by_truck_id
                WHERE c.district_id = %s AND c.service_date = %s AND c.state <> 'closed'
                  AND c.subject LIKE 'point:%%' AND l.status = 'cleared'
                ORDER BY c.case_id""",
            (district_id, service_date),
        ).fetchall()


@dataclass(frozen=True, slots=True)
class TruckCase:
    case_id: int
    state: str
    truck_id: str


def open_truck_cases(
    conn: psycopg.Connection, *, district_id: str, service_date: date, kind: str
) -> list[TruckCase]:
    """Open truck cases holding an alert of `kind`."""
    with conn.cursor(row_factory=class_row(TruckCase)) as cur:
        return cur.execute(
            """SELECT DISTINCT c.case_id, c.state, c.truck_id FROM alert_case c
                 JOIN alert a ON a.case_id = c.case_id
                WHERE c.district_id = %s AND c.service_date = %s AND c.state <> 'closed'
                  AND a.kind = %s AND c.truck_id IS NOT NULL""",
            (district_id, service_date, kind),
        ).fetchall()


def overdue_cases(
    conn: psycopg.Connection, *, now: datetime, repeat_s: float, district_id: str | None = None
) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT * FROM alert_case
                WHERE state <> 'closed' AND escalation_level < 3
                  AND due_at + make_interval(secs => %s * escalation_level) <= %s
                  AND (%s::text IS NULL OR district_id = %s)
                ORDER BY case_id FOR UPDATE SKIP LOCKED""",
            (repeat_s, now, district_id, district_id),
        ).fetchall()


CASE_COLS = """case_id, district_id, service_date, subject, point_id, truck_id, state, severity,
               title, assignee, opened_at, due_at, escalation_level, escalated_at, closed_at,
               closed_by, close_note, auto_closed, updated_at,
               (state <> 'closed' AND due_at < %(now)s) AS overdue"""


def list_cases(
    conn: psycopg.Connection,
    *,
    district_ids: Sequence[str] | None,
    service_date: date | None,
    state: str | None,
    overdue_only: bool,
    now: datetime,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    """Cases, most recently changed first. state='active' means every state but closed."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"""SELECT {CASE_COLS} FROM alert_case
                 WHERE (%(ds)s::text[] IS NULL OR district_id = ANY(%(ds)s))
                   AND (%(d)s::date IS NULL OR service_date = %(d)s)
                   AND (%(st)s::text IS NULL OR state = %(st)s
                        OR (%(st)s = 'active' AND state <> 'closed'))
                   AND (NOT %(od)s OR (state <> 'closed' AND due_at < %(now)s))
                 ORDER BY updated_at DESC, case_id DESC LIMIT %(lim)s OFFSET %(off)s""",
            {"ds": None if district_ids is None else list(district_ids), "d": service_date,
             "st": state, "od": overdue_only, "now": now, "lim": limit, "off": max(0, offset)},
        ).fetchall()  # fmt: skip


def case_detail(
    conn: psycopg.Connection, *, case_id: int, district_ids: Sequence[str] | None, now: datetime
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """A case (raises CaseNotFound outside `district_ids`), its timeline and its alerts."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"""SELECT {CASE_COLS} FROM alert_case
                 WHERE case_id = %(id)s
                   AND (%(ds)s::text[] IS NULL OR district_id = ANY(%(ds)s))""",
            {"id": case_id, "ds": None if district_ids is None else list(district_ids),
             "now": now},
        ).fetchone()  # fmt: skip
        if row is None:
            raise CaseNotFound(f"no case {case_id}")
        events = cur.execute(
            """SELECT case_event_id, at, actor, action, from_state, to_state, assignee, note,
                      alert_id
                 FROM case_event WHERE case_id = %s ORDER BY at, case_event_id""",
            (case_id,),
        ).fetchall()
        alerts = cur.execute(
            f"SELECT {ALERT_COLS} FROM alert WHERE case_id = %s ORDER BY raised_at, alert_id",
            (case_id,),
        ).fetchall()
    return row, events, alerts
