"""Supervision reports, aggregated in SQL over the ledger, alerts and cases.

- 日清率 (daily clearance rate) by district, truck or waste stream: a point counts as
  cleared for 日清 only when it was cleared *and* its load reached a transfer station;
  ``verified_rate`` leaves out points whose truck's terminal was offline.
- missed points with a reason a person can read;
- 按期结案率 (on-time case closure): closed by their due time / (closed + overdue);
- 周小结 / 月通报: the above over an ISO week or a calendar month, alerts by kind and
  the points most often not cleared;
- CSV of any row list (``fleet.spreadsheet.to_csv``, formula cells neutralised).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from fleet.alerts.models import (
    AlertCountRow,
    ClearanceRow,
    ClosureRow,
    MissedRow,
    Period,
    PeriodSummary,
    PointMissCount,
    ReportBy,
)

REASON_TEXT = {
    "not_visited": "未到达收集点",
    "drive_by": "车辆驶过未停车",
    "too_short": "停留时间不足",
    "terminal_offline": "终端离线，无法核实",
    "not_planned": "未排入当日计划",
    "not_delivered": "已收运但未到中转站卸载",
    "at_point": "车辆正在收集点",
}
_GROUP = {
    "district": "district_id",
    "truck": "coalesce(planned_truck_id, '-')",
    "stream": "stream",
}


def reason_text(status: str, reason: str | None, delivery: str) -> str:
    if status == "cleared" and delivery == "not_delivered":
        return REASON_TEXT["not_delivered"]
    if reason and reason.startswith("unassigned: "):
        return "计划未能安排：" + reason.removeprefix("unassigned: ")
    if reason in REASON_TEXT:
        return REASON_TEXT[reason]
    return {"pending": "尚未到时限", "missed": "未清运", "partial": "停留时间不足"}.get(
        status, status
    )


def _districts(district_ids: Sequence[str] | None) -> list[str] | None:
    return None if district_ids is None else list(district_ids)


def clearance(
    conn: psycopg.Connection,
    *,
    date_from: date,
    date_to: date,
    by: ReportBy = "district",
    district_ids: Sequence[str] | None = None,
    per_day: bool = True,
) -> list[ClearanceRow]:
    """日清率 per group, per service date (or summed over the range when not per_day)."""
    if by not in _GROUP:
        raise ValueError(f"report by district, truck or stream, not {by!r}")
    day = "service_date" if per_day else "%(date_from)s::date"
    sql = f"""
        SELECT {day} AS service_date, {_GROUP[by]} AS "group",
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
        rows = cur.execute(
            sql, {"date_from": date_from, "date_to": date_to, "districts": _districts(district_ids)}
        ).fetchall()
    return [_clearance_row(r) for r in rows]


def _clearance_row(r: dict[str, Any]) -> ClearanceRow:
    due, ok, unver = r["due"], r["cleared_and_delivered"], r["unverifiable"]
    return ClearanceRow(
        **r,
        clearance_rate=round(ok / due, 4) if due else None,
        verified_rate=round(ok / (due - unver), 4) if due - unver > 0 else None,
    )


def missed_points(
    conn: psycopg.Connection,
    *,
    date_from: date,
    date_to: date,
    district_ids: Sequence[str] | None = None,
) -> list[MissedRow]:
    """Points that broke 日清: not cleared, or cleared but never delivered to a station."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
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
            {"f": date_from, "t": date_to, "d": _districts(district_ids)},
        ).fetchall()
    return [
        MissedRow(**r, reason_text=reason_text(r["status"], r["reason"], r["delivery"]))
        for r in rows
    ]


def case_closure(
    conn: psycopg.Connection,
    *,
    date_from: date,
    date_to: date,
    now: datetime,
    district_ids: Sequence[str] | None = None,
) -> list[ClosureRow]:
    """按期结案率 of the cases opened for service dates in the range, as of `now`."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
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
            {"f": date_from, "t": date_to, "now": now, "d": _districts(district_ids)},
        ).fetchall()
    out = []
    for r in rows:
        base = r["closed"] + r["open_overdue"]
        out.append(
            ClosureRow(**r, on_time_rate=round(r["closed_on_time"] / base, 4) if base else None)
        )
    return out


def period_bounds(period: Period, anchor: date) -> tuple[date, date]:
    """The ISO week (Monday to Sunday) or calendar month holding `anchor`."""
    if period == "week":
        start = anchor - timedelta(days=anchor.weekday())
        return start, start + timedelta(days=6)
    if period == "month":
        start = anchor.replace(day=1)
        nxt = (start + timedelta(days=32)).replace(day=1)
        return start, nxt - timedelta(days=1)
    raise ValueError(f"period is week or month, not {period!r}")


def period_summary(
    conn: psycopg.Connection,
    *,
    period: Period,
    anchor: date,
    now: datetime,
    district_ids: Sequence[str] | None = None,
    worst: int = 10,
) -> PeriodSummary:
    """周小结 / 月通报 for the week or month holding `anchor`."""
    start, end = period_bounds(period, anchor)
    districts = _districts(district_ids)
    with conn.cursor(row_factory=dict_row) as cur:
        alert_rows = cur.execute(
            # A point's one incident counts under each stage it went through.
            """SELECT a.district_id, coalesce(s.stage ->> 'kind', a.kind) AS kind,
                      count(*) AS alerts
                 FROM alert a
                 LEFT JOIN LATERAL jsonb_array_elements(
                      CASE WHEN jsonb_typeof(a.details -> 'stages') = 'array'
                           THEN a.details -> 'stages' END) AS s(stage) ON true
                WHERE a.service_date BETWEEN %(f)s AND %(t)s
                  AND (%(d)s::text[] IS NULL OR a.district_id = ANY(%(d)s))
                GROUP BY 1, 2 ORDER BY 1, 2""",
            {"f": start, "t": end, "d": districts},
        ).fetchall()
        worst_rows = cur.execute(
            """SELECT l.district_id, l.point_id, p.name AS point_name,
                      count(*) AS days_not_cleared
                 FROM ledger_entry l JOIN collection_point p USING (point_id)
                WHERE l.service_date BETWEEN %(f)s AND %(t)s
                  AND (%(d)s::text[] IS NULL OR l.district_id = ANY(%(d)s))
                  AND (l.status IN ('partial', 'missed')
                       OR (l.status = 'cleared' AND l.delivery = 'not_delivered'))
                GROUP BY 1, 2, 3 ORDER BY 4 DESC, 2 LIMIT %(n)s""",
            {"f": start, "t": end, "d": districts, "n": worst},
        ).fetchall()
    return PeriodSummary(
        period=period,
        date_from=start,
        date_to=end,
        clearance=clearance(
            conn, date_from=start, date_to=end, district_ids=district_ids, per_day=False
        ),
        daily=clearance(conn, date_from=start, date_to=end, district_ids=district_ids),
        closure=case_closure(
            conn, date_from=start, date_to=end, now=now, district_ids=district_ids
        ),
        alerts=[AlertCountRow(**r) for r in alert_rows],
        worst_points=[PointMissCount(**r) for r in worst_rows],
    )
