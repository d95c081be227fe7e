"""/api/v1/ledger, /api/v1/alerts, /api/v1/cases: supervision (监管) over the alerts
service (fleet/alerts/service.py). Cases outside the caller's districts are not found."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from fleet.alerts import service
from fleet.alerts.cases import MAX_NAME_CHARS, MAX_NOTE_CHARS
from fleet.alerts.models import (
    AlertKindName,
    AlertOut,
    CaseDetailOut,
    CaseOut,
    CaseStateName,
    LedgerEntryOut,
    LedgerStatus,
    StayOut,
)
from fleet.auth.models import Principal, Role
from fleet.config import Settings
from fleet.positions import repo as positions_repo
from fleet.web.deps import (
    Allow,
    Anyone,
    Conn,
    PagingDep,
    SettingsDep,
    Supervisor,
    district_scope,
    ensure_district,
    now_utc,
)
from fleet.web.errors import ApiError, not_found
from fleet.web.fields import PathId

router = APIRouter(tags=["supervision"])
CaseId = Annotated[int, Path(ge=1, le=2**63 - 1)]
DistrictQuery = Annotated[str | None, Query(max_length=64)]
# 反馈 comes from whoever runs the crews: dispatchers as well as supervisors.
Responder = Annotated[Principal, Depends(Allow(Role.admin, Role.supervisor, Role.dispatcher))]


def today(settings: Settings) -> date:
    return now_utc().astimezone(settings.tz).date()


class LedgerOut(BaseModel):
    now: datetime = Field(
        description="the server's clock when it answered: what is late is judged against it"
    )
    service_date: date
    entries: list[LedgerEntryOut]


# The ledger of a big district is thousands of entries with their evidence: built as JSON
# in PostgreSQL (one round trip, no Python object per entry), it is served about four
# times faster than through `service.ledger` and pydantic. Same filters and order as
# `service.ledger`; tests/integration/web/test_supervision.py holds the two equal. Times
# are in the district's zone, as everywhere a person reads them (`iso_local`, 0014).
_LEDGER_JSON = """
SELECT json_build_object('service_date', %(d)s::date, 'entries', coalesce(json_agg(json_build_object(
    'service_date', e.service_date, 'point_id', e.point_id, 'point_name', e.point_name,
    'district_id', e.district_id, 'stream', e.stream, 'lat', e.lat, 'lon', e.lon,
    'status', e.status, 'reason', e.reason, 'planned_truck_id', e.planned_truck_id,
    'planned_seq', e.planned_seq, 'planned_arrival_at', iso_local(e.planned_arrival_at, e.tz),
    'window_start_at', iso_local(e.window_start_at, e.tz),
    'window_end_at', iso_local(e.window_end_at, e.tz),
    'deadline_at', iso_local(e.deadline_at, e.tz), 'cleared_at', iso_local(e.cleared_at, e.tz),
    'cleared_by_truck_id', e.cleared_by_truck_id, 'dwell_s', e.dwell_s,
    'delivery', e.delivery, 'delivered_at', iso_local(e.delivered_at, e.tz),
    'delivered_station_id', e.delivered_station_id, 'evidence', e.evidence,
    'confidence', e.confidence,
    'status_since', iso_local(e.status_since, e.tz), 'computed_at', iso_local(e.computed_at, e.tz))
    ORDER BY e.district_id, e.point_id), '[]'::json))::text
FROM (
    SELECT l.*, p.name AS point_name, p.lat, p.lon, d.timezone AS tz
      FROM ledger_entry l LEFT JOIN collection_point p USING (point_id)
      JOIN district d ON d.district_id = l.district_id
     WHERE l.service_date = %(d)s
       AND (%(ds)s::text[] IS NULL OR l.district_id = ANY(%(ds)s))
       AND (%(st)s::text IS NULL OR l.status = %(st)s)
       AND (%(tr)s::text IS NULL OR l.planned_truck_id = %(tr)s OR l.cleared_by_truck_id = %(tr)s)
     ORDER BY l.district_id, l.point_id LIMIT %(lim)s OFFSET %(off)s
) e
"""


# Every write of a ledger row gives it a new xmin (the writing transaction), so the
# count and the largest xmin change whenever the ledger does — even when a replay
# recomputes a day with the same `now`.
_LEDGER_VERSION = """
SELECT count(*), max(xmin::text::bigint) FROM ledger_entry
 WHERE service_date = %(d)s AND (%(ds)s::text[] IS NULL OR district_id = ANY(%(ds)s))
"""
LEDGER_CACHE_ENTRIES = 32
LEDGER_CACHE_MAX_AGE_S = 60.0  # point names and places may change without a new verdict


class _LedgerCache:
    """Built ledgers by query, reused while the day's ledger rows are unchanged (same
    number of entries, same newest row version): a cheap read decides."""

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[Any, ...], tuple[tuple[Any, ...], float, bytes]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...], version: tuple[Any, ...]) -> bytes | None:
        with self._lock:
            hit = self._entries.get(key)
            if (
                hit is None
                or hit[0] != version
                or time.monotonic() - hit[1] > LEDGER_CACHE_MAX_AGE_S
            ):
                return None
            self._entries.move_to_end(key)
            return hit[2]

    def put(self, key: tuple[Any, ...], version: tuple[Any, ...], body: bytes) -> None:
        with self._lock:
            self._entries[key] = (version, time.monotonic(), body)
            self._entries.move_to_end(key)
            while len(self._entries) > LEDGER_CACHE_ENTRIES:
                self._entries.popitem(last=False)


_ledger_cache = _LedgerCache()


@router.get(
    "/ledger",
    summary="The clearance ledger (日清台账) of a service date",
    response_model=LedgerOut,
)
def ledger(
    conn: Conn,
    principal: Anyone,
    settings: SettingsDep,
    service_date: Annotated[date | None, Query(description="default: today (local)")] = None,
    district_id: DistrictQuery = None,
    status: LedgerStatus | None = None,
    truck_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 5000,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    day = service_date or today(settings)
    scope = district_scope(principal, district_id)
    params = {"d": day, "ds": scope, "st": status, "tr": truck_id, "lim": limit, "off": offset}
    key = (day, None if scope is None else tuple(scope), status, truck_id, limit, offset)
    version = tuple(conn.execute(_LEDGER_VERSION, params, prepare=True).fetchone() or ())
    body = _ledger_cache.get(key, version)
    if body is None:
        row = conn.execute(_LEDGER_JSON, params, prepare=True).fetchone()
        assert row is not None
        body = str(row[0]).encode()
        _ledger_cache.put(key, version, body)
    # The cached object, with the server's clock of this answer as its first member.
    now = json.dumps({"now": now_utc().isoformat()}).encode()
    return Response(now[:-1] + b"," + body[1:], media_type="application/json")


@router.get(
    "/trucks/{truck_id}/stays",
    summary="Where a truck stood still on a service date, matched to sites (the alerts' stays)",
)
def truck_stays(
    conn: Conn,
    principal: Anyone,
    settings: SettingsDep,
    truck_id: PathId,
    service_date: Annotated[date | None, Query(description="default: today (local)")] = None,
) -> list[StayOut]:
    district = positions_repo.truck_district(conn, truck_id=truck_id)
    if district is None:
        raise not_found("truck", truck_id)
    ensure_district(principal, district)
    return service.truck_stays(
        conn=conn, truck_id=truck_id, service_date=service_date or today(settings)
    )


@router.get("/alerts", summary="Alerts, newest first")
def list_alerts(
    conn: Conn,
    principal: Anyone,
    paging: PagingDep,
    service_date: date | None = None,
    district_id: DistrictQuery = None,
    kind: AlertKindName | None = None,
    unresolved_only: bool = False,
) -> list[AlertOut]:
    return service.list_alerts(
        conn=conn,
        district_ids=district_scope(principal, district_id),
        service_date=service_date,
        kind=kind,
        unresolved_only=unresolved_only,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get("/cases", summary="Cases (一单四制), most recently changed first")
def list_cases(
    conn: Conn,
    principal: Anyone,
    paging: PagingDep,
    service_date: date | None = None,
    district_id: DistrictQuery = None,
    state: Annotated[
        CaseStateName | Literal["active"] | None,
        Query(description="`active`: every state but closed"),
    ] = None,
    overdue_only: bool = False,
) -> list[CaseOut]:
    return service.list_cases(
        conn=conn,
        district_ids=district_scope(principal, district_id),
        service_date=service_date,
        state=state,
        overdue_only=overdue_only,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get("/cases/{case_id}", summary="A case with its timeline and alerts")
def get_case(conn: Conn, principal: Anyone, case_id: CaseId) -> CaseDetailOut:
    try:
        return service.get_case(conn=conn, case_id=case_id, district_ids=principal.district_filter)
    except service.CaseNotFound:
        raise ApiError(404, f"case {case_id} not found") from None


Note = Annotated[str, Field(min_length=1, max_length=MAX_NOTE_CHARS)]


class AssignIn(BaseModel):
    assignee: str = Field(
        min_length=1, max_length=MAX_NAME_CHARS, description="a crew, a person or a truck"
    )
    note: str | None = Field(None, max_length=MAX_NOTE_CHARS)


class NoteIn(BaseModel):
    note: Note


def _act(
    action: str, conn: Conn, principal: Principal, case_id: int, **kwargs: str | None
) -> CaseDetailOut:
    functions = {
        "assign": service.assign_case,
        "feedback": service.feedback_case,
        "close": service.close_case,
    }
    try:
        return functions[action](  # type: ignore[operator]
            conn=conn,
            case_id=case_id,
            actor=principal.username,
            district_ids=principal.district_filter,
            **kwargs,
        )
    except service.CaseNotFound:
        raise ApiError(404, f"case {case_id} not found") from None
    except service.CaseRefused as refused:
        raise ApiError.refused(409, refused) from None


@router.post("/cases/{case_id}/assign", summary="交办: assign a case to a crew, person or truck")
def assign_case(
    conn: Conn, principal: Supervisor, case_id: CaseId, body: AssignIn
) -> CaseDetailOut:
    return _act("assign", conn, principal, case_id, assignee=body.assignee, note=body.note)


@router.post("/cases/{case_id}/feedback", summary="反馈: report what was done")
def feedback_case(conn: Conn, principal: Responder, case_id: CaseId, body: NoteIn) -> CaseDetailOut:
    return _act("feedback", conn, principal, case_id, note=body.note)


@router.post("/cases/{case_id}/close", summary="销号: close a case (a note is required)")
def close_case(conn: Conn, principal: Supervisor, case_id: CaseId, body: NoteIn) -> CaseDetailOut:
    return _act("close", conn, principal, case_id, note=body.note)
