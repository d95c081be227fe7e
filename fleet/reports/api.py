"""/api/v1/reports: 日清率, missed points, 按期结案率, weekly and monthly summaries; each
as CSV and as PDF."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel

from fleet import pdf, spreadsheet
from fleet.alerts import service
from fleet.alerts.models import ClearanceRow, ClosureRow, MissedRow, Period, PeriodSummary, ReportBy
from fleet.reports import documents
from fleet.reports.columns import UNPLANNED, Lang, by_truck_rows, headers, labelled_rows
from fleet.web.deps import Anyone, Conn, SettingsDep, district_scope, now_utc
from fleet.web.downloads import PDF_RESPONSES, attachment
from fleet.web.errors import ApiError

router = APIRouter(prefix="/reports", tags=["reports"])
MAX_RANGE = timedelta(days=366)
DistrictQuery = Annotated[str | None, Query(max_length=64)]
DateFrom = Annotated[date | None, Query(description="first service date; default: today")]
DateTo = Annotated[
    date | None, Query(description="last service date (inclusive); default: date_from")
]


def _range(
    settings: SettingsDep, date_from: date | None, date_to: date | None
) -> tuple[date, date]:
    start = date_from or now_utc().astimezone(settings.tz).date()
    end = date_to or start
    if end < start:
        raise ApiError(422, "date_to must not be before date_from", code="range_reversed")
    if end - start > MAX_RANGE:
        raise ApiError(
            422,
            f"a report spans at most {MAX_RANGE.days} days",
            code="range_too_long",
            params={"days": MAX_RANGE.days},
        )
    return start, end


@router.get("/clearance", summary="日清率 by district, truck or waste stream, per day")
def clearance(
    conn: Conn,
    principal: Anyone,
    settings: SettingsDep,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    by: ReportBy = "district",
    district_id: DistrictQuery = None,
) -> list[ClearanceRow]:
    start, end = _range(settings, date_from, date_to)
    return service.clearance_report(
        conn=conn, date_from=start, date_to=end, by=by,
        district_ids=district_scope(principal, district_id),
    )  # fmt: skip


@router.get("/missed", summary="Points that broke 日清, with the reason")
def missed(
    conn: Conn,
    principal: Anyone,
    settings: SettingsDep,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    district_id: DistrictQuery = None,
) -> list[MissedRow]:
    start, end = _range(settings, date_from, date_to)
    return service.missed_report(
        conn=conn, date_from=start, date_to=end, district_ids=district_scope(principal, district_id)
    )


@router.get("/closure", summary="按期结案率: cases closed on time, by district")
def closure(
    conn: Conn,
    principal: Anyone,
    settings: SettingsDep,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    district_id: DistrictQuery = None,
) -> list[ClosureRow]:
    start, end = _range(settings, date_from, date_to)
    return service.closure_report(
        conn=conn, date_from=start, date_to=end, district_ids=district_scope(principal, district_id)
    )


@router.get("/period", summary="周小结 (week) or 月通报 (month) containing a date")
def period(
    conn: Conn,
    principal: Anyone,
    settings: SettingsDep,
    period: Period = "week",
    anchor: Annotated[
        date | None, Query(description="a date in the period; default: today")
    ] = None,
    district_id: DistrictQuery = None,
) -> PeriodSummary:
    day = anchor or now_utc().astimezone(settings.tz).date()
    return service.period_report(
        conn=conn, period=period, anchor=day, district_ids=district_scope(principal, district_id)
    )


LangQuery = Annotated[
    Lang, Query(description="zh: Chinese headers, words for codes, local times, plates")
]


def _filename(report: str, start: date, end: date, extension: str) -> str:
    last = f"-{end.isoformat()}" if end != start else ""
    return f"clearday-{report}-{start.isoformat()}{last}.{extension}"


@router.get(
    "/{report}.csv",
    summary="Any report as CSV (UTF-8 with BOM, opens in Excel)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def report_csv(
    conn: Conn,
    principal: Anyone,
    settings: SettingsDep,
    report: service.ReportName,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    by: ReportBy = "district",
    district_id: DistrictQuery = None,
    lang: LangQuery = "en",
) -> Response:
    start, end = _range(settings, date_from, date_to)
    rows = service.report_rows(
        conn=conn, report=report, date_from=start, date_to=end, by=by,
        district_ids=district_scope(principal, district_id),
    )  # fmt: skip
    by_truck = report == "clearance" and by == "truck"
    plates = documents.plates_named(conn, rows, by_truck)
    cells: Sequence[BaseModel | dict[str, Any]] = rows
    if by_truck:
        cells = by_truck_rows(rows, plates=plates, unplanned=UNPLANNED[lang])
    if lang == "zh":
        text = spreadsheet.to_csv(
            labelled_rows(cells, lang="zh", plates=plates, by=by),
            bom=True,
            headers=headers(report, by, "zh"),
        )
    else:
        text = spreadsheet.to_csv(cells, bom=True)
    return attachment(
        text.encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        filename=_filename(report, start, end, "csv"),
    )


@router.get(
    "/{report}.pdf",
    summary="Any report as PDF to print and file (Chinese; `lang=en`: English)",
    response_class=Response,
    responses=PDF_RESPONSES,
)
def report_pdf(
    conn: Conn,
    principal: Anyone,
    settings: SettingsDep,
    report: service.ReportName,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    by: ReportBy = "district",
    district_id: DistrictQuery = None,
    lang: Annotated[Lang, Query(description="zh (default): Chinese; en: English")] = "zh",
) -> Response:
    """The same rows as the CSV, in the district's local time; a week or a month
    (anchored on `date_from`) prints the whole 周小结 / 月通报. Refused (422) past
    `pdf.MAX_ROWS` rows."""
    start, end = _range(settings, date_from, date_to)
    document = documents.printed_report(
        conn, report=report, date_from=start, date_to=end, by=by,
        district_ids=district_scope(principal, district_id), lang=lang,
        made_at=now_utc().astimezone(settings.tz),
    )  # fmt: skip
    if (printed := pdf.rows_in(document)) > pdf.MAX_ROWS:
        raise ApiError(
            422,
            f"the report has {printed} rows and a PDF prints at most {pdf.MAX_ROWS}: "
            "choose fewer days or one district, or export CSV",
            code="too_many_rows_to_print",
            params={"rows": printed, "max": pdf.MAX_ROWS},
        )
    return attachment(
        pdf.to_pdf(document), media_type="application/pdf",
        filename=_filename(report, start, end, "pdf"),
    )  # fmt: skip
