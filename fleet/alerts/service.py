"""Supervision service: what the API (and the CLI) call. Keyword-only, typed, no HTTP.

Every function takes an open psycopg connection (`conn`) and, where a user may be
limited to some districts, `district_ids` (None: all districts). A case outside the
caller's districts is reported as not found, so ids cannot be probed. Errors:

- ``CaseNotFound``: no such case (or not visible to the caller) → 404;
- ``CaseRefused``: the transition is not allowed; the message says why → 409.

Times default to the wall clock; pass ``now`` to control them (tests, simulations).
Times returned are in the district's time zone, as a person there reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

import psycopg
from pydantic import BaseModel

from fleet import spreadsheet
from fleet.alerts import repo, reports, worker
from fleet.alerts.cases import CaseAction, CaseNotFound, CaseRefused, CaseState, transition
from fleet.alerts.models import (
    AlertKindName,
    AlertOut,
    CaseDetailOut,
    CaseEventOut,
    CaseOut,
    CaseStateName,
    ClearanceRow,
    ClosureRow,
    LedgerEntryOut,
    LedgerStatus,
    MissedRow,
    Period,
    PeriodSummary,
    ReportBy,
    StayOut,
)
from fleet.config import Settings
from fleet.fields import DEFAULT_TIMEZONE

__all__ = [
    "CaseNotFound",
    "CaseRefused",
    "assign_case",
    "clearance_report",
    "close_case",
    "closure_report",
    "district_zone",
    "feedback_case",
    "get_case",
    "ledger",
    "list_alerts",
    "list_cases",
    "missed_report",
    "period_report",
    "replay_day",
    "report_csv",
    "truck_stays",
    "webhook_secret",
]

MAX_LIMIT = 10_000
DEFAULT_TZ = ZoneInfo(DEFAULT_TIMEZONE)
M = TypeVar("M", bound=BaseModel)


def _local(item: M, tz: ZoneInfo) -> M:
    """`item` with every datetime (also of the items it lists) in `tz`."""
    update: dict[str, Any] = {}
    for name, value in item:
        if isinstance(value, datetime):
            update[name] = value.astimezone(tz)
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            update[name] = [_local(v, tz) for v in value]
    return item.model_copy(update=update)


def _in_district_time(conn: psycopg.Connection, items: Sequence[M]) -> list[M]:
    """Items that carry a `district_id`, each with its times in its district's zone."""
    zones = {k: ZoneInfo(v) for k, v in repo.district_timezones(conn).items()}
    return [_local(i, zones.get(getattr(i, "district_id", ""), DEFAULT_TZ)) for i in items]


def district_zone(*, conn: psycopg.Connection, district_id: str) -> ZoneInfo:
    """The time zone a district's people read times in (the default when it has none)."""
    return ZoneInfo(repo.district_timezones(conn).get(district_id, DEFAULT_TIMEZONE))


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def _districts(district_ids: Sequence[str] | None) -> list[str] | None:
    return None if district_ids is None else list(district_ids)


def ledger(
    *,
    conn: psycopg.Connection,
    service_date: date,
    district_ids: Sequence[str] | None = None,
    status: LedgerStatus | None = None,
    truck_id: str | None = None,
    limit: int = 5000,
    offset: int = 0,
) -> list[LedgerEntryOut]:
    """The clearance ledger of a service date (one entry per due point), by point id."""
    rows = repo.ledger_entries(
        conn,
        repo.LedgerFilter(
            service_date, None if district_ids is None else tuple(district_ids), status,
            truck_id, _limit(limit), offset,
        ),
    )  # fmt: skip
    return _in_district_time(conn, [LedgerEntryOut(**r) for r in rows])


def truck_stays(*, conn: psycopg.Connection, truck_id: str, service_date: date) -> list[StayOut]:
    """Where a truck stood still on a service date, as the alert rules see it."""
    rows = repo.stays(conn, truck_id=truck_id, service_date=service_date)
    return _in_district_time(conn, [StayOut(**r) for r in rows])


def list_alerts(
    *,
    conn: psycopg.Connection,
    district_ids: Sequence[str] | None = None,
    service_date: date | None = None,
    kind: AlertKindName | None = None,
    unresolved_only: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> list[AlertOut]:
    """Alerts, newest first. `kind` also finds a point's incident that passed through
    that stage (a drive-by since escalated to missed is found as a drive_by)."""
    rows = repo.list_alerts(
        conn, district_ids=district_ids, service_date=service_date, kind=kind,
        unresolved_only=unresolved_only, limit=_limit(limit), offset=offset,
    )  # fmt: skip
    return _in_district_time(conn, [AlertOut(**r) for r in rows])


def list_cases(
    *,
    conn: psycopg.Connection,
    district_ids: Sequence[str] | None = None,
    service_date: date | None = None,
    state: CaseStateName | Literal["active"] | None = None,
    overdue_only: bool = False,
    now: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[CaseOut]:
    """Cases, most recently changed first. state='active' means every state but closed."""
    rows = repo.list_cases(
        conn, district_ids=district_ids, service_date=service_date, state=state,
        overdue_only=overdue_only, now=_now(now), limit=_limit(limit), offset=offset,
    )  # fmt: skip
    return _in_district_time(conn, [CaseOut(**r) for r in rows])


def get_case(
    *,
    conn: psycopg.Connection,
    case_id: int,
    district_ids: Sequence[str] | None = None,
    now: datetime | None = None,
) -> CaseDetailOut:
    """A case with its timeline (every transition, who and when) and its alerts."""
    row, events, alerts = repo.case_detail(
        conn, case_id=case_id, district_ids=district_ids, now=_now(now)
    )
    detail = CaseDetailOut(
        **row,
        events=[CaseEventOut(**e) for e in events],
        alerts=[AlertOut(**a) for a in alerts],
    )
    return _in_district_time(conn, [detail])[0]


def _act(
    conn: psycopg.Connection,
    *,
    case_id: int,
    action: CaseAction,
    actor: str,
    note: str | None,
    assignee: str | None,
    district_ids: Sequence[str] | None,
    now: datetime | None,
) -> CaseDetailOut:
    at = _now(now)
    with conn.transaction():
        row = repo.lock_case(conn, case_id)
        if district_ids is not None and row["district_id"] not in district_ids:
            raise CaseNotFound(f"no case {case_id}")
        t = transition(
            CaseState(row["state"]), action, actor=actor, note=note, assignee=assignee,
            current_assignee=row["assignee"],
        )  # fmt: skip
        repo.apply_transition(conn, case_id, t, at=at)
    return get_case(conn=conn, case_id=case_id, district_ids=district_ids, now=at)


def assign_case(
    *,
    conn: psycopg.Connection,
    case_id: int,
    assignee: str,
    actor: str,
    note: str | None = None,
    district_ids: Sequence[str] | None = None,
    now: datetime | None = None,
) -> CaseDetailOut:
    """交办: assign (or reassign, or send back after feedback) to a crew, person or truck."""
    return _act(
        conn, case_id=case_id, action=CaseAction.ASSIGN, actor=actor, note=note,
        assignee=assignee, district_ids=district_ids, now=now,
    )  # fmt: skip


def feedback_case(
    *,
    conn: psycopg.Connection,
    case_id: int,
    note: str,
    actor: str,
    district_ids: Sequence[str] | None = None,
    now: datetime | None = None,
) -> CaseDetailOut:
    """反馈: the assignee reports what was done (a note is required)."""
    return _act(
        conn, case_id=case_id, action=CaseAction.FEEDBACK, actor=actor, note=note,
        assignee=None, district_ids=district_ids, now=now,
    )  # fmt: skip


def close_case(
    *,
    conn: psycopg.Connection,
    case_id: int,
    note: str,
    actor: str,
    district_ids: Sequence[str] | None = None,
    now: datetime | None = None,
) -> CaseDetailOut:
    """销号: a supervisor closes the case; refused without a note."""
    return _act(
        conn, case_id=case_id, action=CaseAction.CLOSE, actor=actor, note=note,
        assignee=None, district_ids=district_ids, now=now,
    )  # fmt: skip


def clearance_report(
    *,
    conn: psycopg.Connection,
    date_from: date,
    date_to: date | None = None,
    by: ReportBy = "district",
    district_ids: Sequence[str] | None = None,
) -> list[ClearanceRow]:
    """日清率 by district, truck or stream, one row per group and day."""
    return reports.clearance(
        conn, date_from=date_from, date_to=date_to or date_from, by=by, district_ids=district_ids
    )


def missed_report(
    *,
    conn: psycopg.Connection,
    date_from: date,
    date_to: date | None = None,
    district_ids: Sequence[str] | None = None,
) -> list[MissedRow]:
    """Points that broke 日清, with the reason."""
    rows = reports.missed_points(
        conn, date_from=date_from, date_to=date_to or date_from, district_ids=district_ids
    )
    return _in_district_time(conn, rows)


def closure_report(
    *,
    conn: psycopg.Connection,
    date_from: date,
    date_to: date | None = None,
    district_ids: Sequence[str] | None = None,
    now: datetime | None = None,
) -> list[ClosureRow]:
    """按期结案率 by district for cases of the service dates in the range."""
    return reports.case_closure(
        conn,
        date_from=date_from,
        date_to=date_to or date_from,
        now=_now(now),
        district_ids=district_ids,
    )


def period_report(
    *,
    conn: psycopg.Connection,
    period: Period,
    anchor: date,
    district_ids: Sequence[str] | None = None,
    now: datetime | None = None,
) -> PeriodSummary:
    """周小结 (period='week', ISO week of `anchor`) or 月通报 (period='month')."""
    return reports.period_summary(
        conn, period=period, anchor=anchor, now=_now(now), district_ids=district_ids
    )


ReportName = Literal["clearance", "missed", "closure", "week", "month"]


def report_rows(
    *,
    conn: psycopg.Connection,
    report: ReportName,
    date_from: date,
    date_to: date | None = None,
    by: ReportBy = "district",
    district_ids: Sequence[str] | None = None,
    now: datetime | None = None,
) -> Sequence[ClearanceRow | MissedRow | ClosureRow]:
    """The rows of any report, as its CSV holds them. 'week' / 'month' give the
    period's daily clearance rows."""
    if report == "clearance":
        return clearance_report(
            conn=conn, date_from=date_from, date_to=date_to, by=by, district_ids=district_ids
        )
    if report == "missed":
        return missed_report(
            conn=conn, date_from=date_from, date_to=date_to, district_ids=district_ids
        )
    if report == "closure":
        return closure_report(
            conn=conn, date_from=date_from, date_to=date_to, district_ids=district_ids, now=now
        )
    if report in ("week", "month"):
        return period_report(
            conn=conn, period=report, anchor=date_from, district_ids=district_ids, now=now
        ).daily
    raise ValueError(f"unknown report {report!r}")


def report_csv(
    *,
    conn: psycopg.Connection,
    report: ReportName,
    date_from: date,
    date_to: date | None = None,
    by: ReportBy = "district",
    district_ids: Sequence[str] | None = None,
    now: datetime | None = None,
    bom: bool = True,
) -> str:
    """Any report as CSV (UTF-8; with the BOM Excel needs for Chinese by default)."""
    rows = report_rows(
        conn=conn, report=report, date_from=date_from, date_to=date_to, by=by,
        district_ids=district_ids, now=now,
    )  # fmt: skip
    return spreadsheet.to_csv(rows, bom=bom)


def replay_day(
    *,
    conn: psycopg.Connection,
    settings: Settings,
    service_date: date,
    district_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, int]:
    """Recompute a service day (visits, ledger, alerts not yet raised, auto-closures)."""
    stats = worker.replay(
        conn,
        worker.AlertConfig.from_settings(settings),
        service_date=service_date,
        district_id=district_id,
        now=now,
    )
    return worker.tick_stats_json(stats)


def webhook_secret(conn: psycopg.Connection, *, url: str) -> str:
    """The secret that signs webhooks to `url` (generated and stored on first use)."""
    return repo.webhook_secret(conn, url=url)
