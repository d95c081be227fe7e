"""Values the supervision API returns (pydantic, so FastAPI can declare them)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

LedgerStatus = Literal["pending", "cleared", "partial", "missed", "unverifiable"]
DeliveryState = Literal["none", "on_truck", "delivered", "not_delivered"]
AlertKindName = Literal[
    "missed", "drive_by", "not_cleared_by_deadline", "not_unloaded", "offline", "stationary"
]
CaseStateName = Literal["open", "assigned", "feedback", "closed"]
ReportBy = Literal["district", "truck", "stream"]
Period = Literal["week", "month"]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class LedgerEntryOut(_Out):
    """One collection point on one service date: its verdict and the evidence for it."""

    service_date: date
    point_id: str
    point_name: str | None = None
    district_id: str
    stream: str
    lat: float | None = None
    lon: float | None = None
    status: LedgerStatus
    reason: str | None
    planned_truck_id: str | None
    planned_seq: int | None
    planned_arrival_at: datetime | None
    window_start_at: datetime
    window_end_at: datetime
    deadline_at: datetime
    cleared_at: datetime | None
    cleared_by_truck_id: str | None
    dwell_s: float | None
    delivery: DeliveryState
    delivered_at: datetime | None
    delivered_station_id: str | None
    evidence: dict[str, Any]  # "basis" says what the verdict rests on
    confidence: float = 1.0  # how sure the verdict is, 0-1
    status_since: datetime
    computed_at: datetime


class StayOut(_Out):
    """A stay of a truck as the alerts found it (fleet/alerts/visits.py): standing still
    from `arrived_at` to `departed_at`, matched to the site whose fence holds it (none:
    a stop at no known site)."""

    district_id: str  # the truck's
    arrived_at: datetime
    departed_at: datetime
    dwell_s: float
    is_open: bool  # the track ends in it: the truck is still there
    end_seen: bool  # False: it ends in a silence of the terminal
    fixes: int
    site_kind: Literal["point", "station", "depot"] | None
    site_id: str | None
    site_name: str | None
    distance_m: float | None  # from the stay's median position to the site
    confidence: float  # 1: in the fence; less: a drifted stay beside it


class AlertOut(_Out):
    alert_id: int
    kind: AlertKindName
    severity: Literal["normal", "high"]
    district_id: str
    service_date: date
    subject: str
    point_id: str | None
    truck_id: str | None
    condition_at: datetime
    raised_at: datetime
    message: str
    details: dict[str, Any]
    case_id: int | None
    resolved_at: datetime | None
    resolution: str | None


class CaseEventOut(_Out):
    case_event_id: int
    at: datetime
    actor: str
    action: str
    from_state: CaseStateName
    to_state: CaseStateName
    assignee: str | None
    note: str | None
    alert_id: int | None


class CaseOut(_Out):
    case_id: int
    district_id: str
    service_date: date
    subject: str
    point_id: str | None
    truck_id: str | None
    state: CaseStateName
    severity: Literal["normal", "high"]
    title: str
    assignee: str | None
    opened_at: datetime
    due_at: datetime
    escalation_level: int
    escalated_at: datetime | None
    closed_at: datetime | None
    closed_by: str | None
    close_note: str | None
    auto_closed: bool
    updated_at: datetime
    overdue: bool


class CaseDetailOut(CaseOut):
    events: list[CaseEventOut]
    alerts: list[AlertOut]


class ClearanceRow(_Out):
    """日清率 for one group (district, truck or stream) on one service date."""

    service_date: date
    group: str
    due: int
    cleared: int
    cleared_and_delivered: int
    partial: int
    missed: int
    unverifiable: int
    pending: int
    not_delivered: int
    clearance_rate: float | None  # cleared and delivered / due
    verified_rate: float | None  # the same, leaving out the unverifiable


class MissedRow(_Out):
    service_date: date
    district_id: str
    point_id: str
    point_name: str
    stream: str
    planned_truck_id: str | None
    status: LedgerStatus
    delivery: DeliveryState
    reason: str | None
    reason_text: str
    window_end_at: datetime
    case_id: int | None
    case_state: str | None


class ClosureRow(_Out):
    """按期结案率 for one district over a date range."""

    district_id: str
    cases: int
    closed: int
    closed_on_time: int
    closed_late: int
    auto_closed: int
    open_overdue: int
    open_not_due: int
    on_time_rate: float | None  # closed on time / (closed + open overdue)


class AlertCountRow(_Out):
    district_id: str
    kind: AlertKindName
    alerts: int


class PointMissCount(_Out):
    district_id: str
    point_id: str
    point_name: str
    days_not_cleared: int


class PeriodSummary(_Out):
    """周小结 / 月通报."""

    period: Period
    date_from: date
    date_to: date
    clearance: list[ClearanceRow]  # one row per district, summed over the period
    daily: list[ClearanceRow]  # one row per district and day
    closure: list[ClosureRow]
    alerts: list[AlertCountRow]
    worst_points: list[PointMissCount]
