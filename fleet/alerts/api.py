"""/api/v1/ledger, /api/v1/alerts, /api/v1/cases: supervision (监管) over the alerts
service (fleet/alerts/service.py); a case's record as PDF (fleet/reports/documents.py).
Cases outside the caller's districts are not found."""

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

from fleet import pdf
from fleet.alerts import repo, service
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
from fleet.reports import documents
from fleet.reports.columns import Lang
from fleet.trucks import repo as trucks_repo
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
from fleet.web.downloads import PDF_RESPONSES, attachment
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
    key = (day, None if scope is None else tuple(scope), status, truck_id, limit, offset)
    version = repo.ledger_version(conn, service_date=day, district_ids=scope)
    body = _ledger_cache.get(key, version)
    if body is None:
        body = repo.ledger_json(
            conn,
            repo.LedgerFilter(
                day, None if scope is None else tuple(scope), status, truck_id, limit, offset
            ),
        ).encode()
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


# Declared before /cases/{case_id}, whose path would otherwise take "12.pdf" as the id.
@router.get(
    "/cases/{case_id}.pdf",
    summary="A case's record (一单四制) as PDF: the case, its timeline and alerts",
    response_class=Response,
    responses=PDF_RESPONSES,
)
def case_pdf(
    conn: Conn,
    principal: Anyone,
    case_id: CaseId,
    lang: Annotated[Lang, Query(description="zh (default) or en")] = "zh",
) -> Response:
    """Every time in the case's district's zone."""
    try:
        case = service.get_case(conn=conn, case_id=case_id, district_ids=principal.district_filter)
    except service.CaseNotFound:
        raise ApiError(404, f"case {case_id} not found") from None
    trucks = sorted({t for t in [case.truck_id, *(a.truck_id for a in case.alerts)] if t})
    document = documents.case_document(
        case=case,
        lang=lang,
        plates=trucks_repo.plates(conn, truck_ids=trucks) if trucks else {},
        made_at=now_utc().astimezone(case.opened_at.tzinfo),
    )
    return attachment(
        pdf.to_pdf(document), media_type="application/pdf", filename=f"clearday-case-{case_id}.pdf"
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
