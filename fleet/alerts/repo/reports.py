"""The supervision reports' queries: counts over the ledger, alerts and cases, rows by name."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

Row = dict[str, Any]
# What a clearance row is counted by.
GROUP_BY = {
    "district": "district_id",
    "truck": "coalesce(planned_truck_id, '-')",
    "stream": "stream",
}


def clearance_counts(
    conn: psycopg.Connection,
    *,
    date_from: date,
    date_to: date,
    by: str,
    districts: list[str] | None,
    per_day: bool,
) -> list[Row]:
    """Ledger entries by status per group (and per service date when `per_day`)."""
    group = GROUP_BY[by]
    day = "service_date" if per_day else "%(date_from)s::date"
    sql = f"""
        SELECT {day} AS service_date, {group} AS "group",
               count(*) AS due,
               count(*) FILTER (WHERE status = 'cleared') AS cleared,
               count(*) FILTER (WHERE status = 'cleared' AND delivery = 'delivered') AS cleared_and_delivered,
               count(*) FILTER (WHERE status = 'partial') AS partial,
               count(*) FILTER (WHERE status = 'missed') AS missed,
               count(*) FILTER (WHERE status = 'unverifiable') AS unverifiable,
               count(*) FILTER (WHERE status = 'pending') AS pending,
               count(*) FILTER (WHERE status = 'cleared' AND delivery = 'not_delivered') AS not_delivered
          FROM ledger_entry
         WHERE service_date BETWEEN %(date_from)s AND %(date_to)s
           AND (%(districts)s::text[] IS NULL OR district_id = ANY(%(districts)s))
         GROUP BY 1, 2 ORDER BY 1, 2"""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            sql, {"date_from": date_from, "date_to": date_to, "districts": districts}
        ).fetchall()


def missed_entries(
    conn: psycopg.Connection, *, date_from: date, date_to: date, districts: list[str] | None
) -> list[Row]:
    """Ledger entries that broke 日清, with the point's name and its newest case."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT l.service_date, l.district_id, l.point_id, p.name AS point_name, l.stream,
                      l.planned_truck_id, l.status, l.delivery, l.reason, l.window_end_at,
                      c.case_id, c.state AS case_state
                 FROM ledger_entry l JOIN collection_point p USING (point_id)
                 LEFT JOIN LATERAL (
                      SELECT case_id, state FROM alert_case c
                       WHERE c.service_date = l.service_date AND c.point_id = l.point_id
                       ORDER BY case_id DESC LIMIT 1) c ON true
                WHERE l.service_date BETWEEN %(f)s AND %(t)s
                  AND (%(d)s::text[] IS NULL OR l.district_id = ANY(%(d)s))
                  AND (l.status IN ('partial', 'missed', 'unverifiable')
                       OR (l.status = 'cleared' AND l.delivery = 'not_delivered'))
                ORDER BY l.service_date, l.district_id, l.point_id""",
            {"f": date_from, "t": date_to, "d": districts},
        ).fetchall()


def closure_counts(
    conn: psycopg.Connection,
    *,
    date_from: date,
    date_to: date,
    now: datetime,
    districts: list[str] | None,
) -> list[Row]:
    """Cases by how and when they closed, per district, as of `now`."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT district_id,
                      count(*) AS cases,
                      count(*) FILTER (WHERE state = 'closed') AS closed,
                      count(*) FILTER (WHERE state = 'closed' AND closed_at <= due_at) AS closed_on_time,
                      count(*) FILTER (WHERE state = 'closed' AND closed_at > due_at) AS closed_late,
                      count(*) FILTER (WHERE auto_closed) AS auto_closed,
                      count(*) FILTER (WHERE state <> 'closed' AND due_at < %(now)s) AS open_overdue,
                      count(*) FILTER (WHERE state <> 'closed' AND due_at >= %(now)s) AS open_not_due
                 FROM alert_case
                WHERE service_date BETWEEN %(f)s AND %(t)s
                  AND (%(d)s::text[] IS NULL OR district_id = ANY(%(d)s))
                GROUP BY district_id ORDER BY district_id""",
            {"f": date_from, "t": date_to, "now": now, "d": districts},
        ).fetchall()


def alert_counts(
    conn: psycopg.Connection, *, date_from: date, date_to: date, districts: list[str] | None
) -> list[Row]:
    """Alerts per district and kind; a point's one incident counts under each of its stages."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT a.district_id, coalesce(s.stage ->> 'kind', a.kind) AS kind,
                      count(*) AS alerts
                 FROM alert a
                 LEFT JOIN LATERAL jsonb_array_elements(
                      CASE WHEN jsonb_typeof(a.details -> 'stages') = 'array'
                           THEN a.details -> 'stages' END) AS s(stage) ON true
                WHERE a.service_date BETWEEN %(f)s AND %(t)s
                  AND (%(d)s::text[] IS NULL OR a.district_id = ANY(%(d)s))
                GROUP BY 1, 2 ORDER BY 1, 2""",
            {"f": date_from, "t": date_to, "d": districts},
        ).fetchall()


def worst_points(
    conn: psycopg.Connection,
    *,
    date_from: date,
    date_to: date,
    districts: list[str] | None,
    limit: int,
) -> list[Row]:
    """The points most often not cleared (or not delivered) in the range."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT l.district_id, l.point_id, p.name AS point_name,
                      count(*) AS days_not_cleared
                 FROM ledger_entry l JOIN collection_point p USING (point_id)
                WHERE l.service_date BETWEEN %(f)s AND %(t)s
                  AND (%(d)s::text[] IS NULL OR l.district_id = ANY(%(d)s))
                  AND (l.status IN ('partial', 'missed')
                       OR (l.status = 'cleared' AND l.delivery = 'not_delivered'))
                GROUP BY 1, 2, 3 ORDER BY 4 DESC, 2 LIMIT %(n)s""",
            {"f": date_from, "t": date_to, "d": districts, "n": limit},
        ).fetchall()
