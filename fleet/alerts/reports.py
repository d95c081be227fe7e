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
from fleet.alerts.repo import reports as repo

# Why a point broke 日清, in the words of the dashboard (fleet/web/static/js/i18n.js,
# why.* and reason.*), by language.
REASON_TEXT = {
    "zh": {
        "not_visited": "未到达收集点",
        "drive_by": "车辆驶过未停车",
        "too_short": "停留时间不足",
        "no_lift": "停留但未见倒桶",
        "terminal_offline": "终端离线，无法核实",
        "not_planned": "未排入当日计划",
        "not_delivered": "已收运但未到中转站卸载",
        "at_point": "车辆正在收集点",
        "unassigned": "计划未能安排：",
        "pending": "尚未到时限",
        "missed": "未清运",
        "partial": "停留时间不足",
    },
    "en": {
        "not_visited": "no truck came",
        "drive_by": "a truck drove past without stopping",
        "too_short": "stopped too briefly",
        "no_lift": "stood there, no bin lifted",
        "terminal_offline": "terminal offline: cannot be verified",
        "not_planned": "not in the day's plan",
        "not_delivered": "collected but not unloaded at a station",
        "at_point": "a truck is at the point",
        "unassigned": "the plan could not include it: ",
        "pending": "not due yet",
        "missed": "not cleared",
        "partial": "stopped too briefly",
    },
}
# Why the plan left a point out (routing.plan.REASONS).
UNASSIGNED_TEXT = {
    "zh": {
        "capacity": "载重不足", "time_window": "时间窗冲突", "stream": "无可收该类垃圾的车辆",
        "access": "车辆无法进入（窄巷）", "station_hours": "中转站开放时间不符",
        "shift": "超出班次时间", "unreachable": "道路不通", "no_truck": "无可用车辆",
    },
    "en": {
        "capacity": "not enough capacity", "time_window": "time window conflict",
        "stream": "no truck takes this stream", "access": "no truck can enter (narrow lane)",
        "station_hours": "station opening hours", "shift": "beyond the shift",
        "unreachable": "not reachable by road", "no_truck": "no truck available",
    },
}  # fmt: skip


def reason_text(status: str, reason: str | None, delivery: str, *, lang: str = "zh") -> str:
    """Why a ledger entry broke 日清, for a person reading `lang` (zh or en)."""
    words = REASON_TEXT[lang]
    if status == "cleared" and delivery == "not_delivered":
        return words["not_delivered"]
    if reason and reason.startswith("unassigned: "):
        why = reason.removeprefix("unassigned: ")
        return words["unassigned"] + UNASSIGNED_TEXT[lang].get(why, why)
    if reason in words:
        return words[reason]
    return words.get(status, status)


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
    if by not in repo.GROUP_BY:
        raise ValueError(f"report by district, truck or stream, not {by!r}")
    rows = repo.clearance_counts(
        conn,
        date_from=date_from,
        date_to=date_to,
        by=by,
        districts=_districts(district_ids),
        per_day=per_day,
    )
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
    rows = repo.missed_entries(
        conn, date_from=date_from, date_to=date_to, districts=_districts(district_ids)
    )
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
    rows = repo.closure_counts(
        conn, date_from=date_from, date_to=date_to, now=now, districts=_districts(district_ids)
    )
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
    alert_rows = repo.alert_counts(conn, date_from=start, date_to=end, districts=districts)
    worst_rows = repo.worst_points(
        conn, date_from=start, date_to=end, districts=districts, limit=worst
    )
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
