"""The printed reports (日报 / 周小结 / 月通报, 漏收明细, 按期结案率) and a case's record
(一单四制: the case, who was responsible, its timeline, when it closed) as documents for
`fleet.pdf`: Chinese first or English, every instant in the district's local time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import psycopg
from pydantic import BaseModel

from fleet import pdf
from fleet.alerts import service
from fleet.alerts.models import CaseDetailOut, ClearanceRow, PeriodSummary, ReportBy
from fleet.alerts.service import ReportName
from fleet.reports.columns import (
    ALERT_COUNT_HEADERS,
    ALERT_KIND,
    CASE_ACTION,
    CASE_STATE,
    SEVERITY,
    UNPLANNED,
    WORST_POINT_HEADERS,
    YES_NO,
    Lang,
    by_truck_rows,
    headers,
    labelled_rows,
    local_time,
)
from fleet.trucks import repo as trucks_repo

_WORDS = {
    "zh": {
        "clearance": "日报（日清率）", "missed": "漏收明细", "closure": "按期结案率",
        "week": "周小结", "month": "月通报",
        "dates": "作业日期：{start} 至 {end}", "district": "区域：{district}",
        "all_districts": "全部", "by": "分组：{by}",
        "by_district": "按区域", "by_truck": "按车辆", "by_stream": "按垃圾类别",
        "made": "生成时间：{at}（{zone}）", "page": "第 {page} 页", "none": "暂无",
        "rows": "明细", "period_total": "日清率汇总", "daily": "每日日清率",
        "alerts": "告警统计", "worst": "未日清次数最多的收集点",
        "case": "案件记录 #{case_id}", "facts": "案件信息", "timeline": "办理过程",
        "case_alerts": "告警", "item": "项目", "value": "内容",
        "at": "时间", "actor": "操作人", "action": "操作", "state": "状态",
        "assignee": "责任人", "note": "说明", "kind": "告警类型", "severity": "严重程度",
        "message": "告警内容", "resolved_at": "解除时间", "system": "系统",
    },
    "en": {
        "clearance": "Daily report: clearance rate", "missed": "Missed points",
        "closure": "On-time case closure", "week": "Weekly summary", "month": "Monthly report",
        "dates": "Service dates: {start} to {end}", "district": "District: {district}",
        "all_districts": "all", "by": "Grouped: {by}",
        "by_district": "by district", "by_truck": "by truck", "by_stream": "by waste stream",
        "made": "Made at {at} ({zone})", "page": "Page {page}", "none": "None",
        "rows": "Rows", "period_total": "Clearance over the period", "daily": "Clearance by day",
        "alerts": "Alerts by kind", "worst": "Points most often not cleared",
        "case": "Case record #{case_id}", "facts": "The case", "timeline": "Timeline",
        "case_alerts": "Alerts", "item": "Item", "value": "Value",
        "at": "Time", "actor": "By", "action": "Action", "state": "State",
        "assignee": "Assignee", "note": "Note", "kind": "Alert", "severity": "Severity",
        "message": "Message", "resolved_at": "Resolved at", "system": "system",
    },
}  # fmt: skip
_CASE_FACTS = {
    "zh": {
        "case_id": "案件号", "district_id": "区域", "service_date": "作业日期",
        "subject": "对象", "truck": "车辆", "title": "问题", "severity": "严重程度",
        "state": "状态", "assignee": "责任人", "opened_at": "立案时间", "due_at": "办结时限",
        "overdue": "超期", "escalation_level": "督办次数", "closed_at": "销号时间",
        "closed_by": "销号人", "close_note": "销号说明", "auto_closed": "自动销号",
    },
    "en": {
        "case_id": "Case", "district_id": "District", "service_date": "Service date",
        "subject": "Subject", "truck": "Truck", "title": "Problem", "severity": "Severity",
        "state": "State", "assignee": "Assignee", "opened_at": "Opened at", "due_at": "Due at",
        "overdue": "Overdue", "escalation_level": "Escalations", "closed_at": "Closed at",
        "closed_by": "Closed by", "close_note": "Closing note", "auto_closed": "Closed automatically",
    },
}  # fmt: skip


def cell_text(name: str, value: Any, lang: Lang) -> str:
    """One value as printed: rates as percentages, yes / no, local times, nothing as
    blank."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return YES_NO[lang][0 if value else 1]
    if name.endswith("_rate") and isinstance(value, int | float):
        return f"{value * 100:.1f}%"
    if isinstance(value, datetime):
        return local_time(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _section(
    heading: str, columns: Mapping[str, str], rows: Sequence[Mapping[str, Any]], lang: Lang
) -> pdf.Section:
    return pdf.Section(
        heading=heading,
        headers=list(columns.values()),
        rows=[[cell_text(name, row.get(name), lang) for name in columns] for row in rows],
        empty=_WORDS[lang]["none"],
    )


def _made_line(lang: Lang, made_at: datetime) -> str:
    return _WORDS[lang]["made"].format(at=local_time(made_at), zone=str(made_at.tzinfo))


def report_document(
    *,
    report: ReportName,
    rows: Sequence[BaseModel],
    lang: Lang,
    plates: Mapping[str, str],
    by: str,
    date_from: date,
    date_to: date,
    district: str | None,
    made_at: datetime,
) -> pdf.Document:
    """日报 (clearance by district, truck or stream), 漏收明细 or 按期结案率 over a range
    of service dates; `made_at` in the zone the reader lives in."""
    words = _WORDS[lang]
    cells: Sequence[BaseModel | dict[str, Any]] = rows
    if report == "clearance" and by == "truck":
        cells = by_truck_rows(rows, plates=plates, unplanned=UNPLANNED[lang])
    lines = [
        words["dates"].format(start=date_from.isoformat(), end=date_to.isoformat()),
        words["district"].format(district=district or words["all_districts"]),
    ]
    if report == "clearance":
        lines.append(words["by"].format(by=words[f"by_{by}"]))
    lines.append(_made_line(lang, made_at))
    labelled = labelled_rows(cells, lang=lang, plates=plates, by=by)
    return pdf.Document(
        title=words[report],
        lines=lines,
        sections=[_section(words["rows"], headers(report, by, lang), labelled, lang)],
        page_label=words["page"],
    )


def period_document(
    *, summary: PeriodSummary, lang: Lang, district: str | None, made_at: datetime
) -> pdf.Document:
    """周小结 / 月通报: the period's 日清率 per district and per day, 按期结案率, alerts
    by kind and the points most often not cleared."""
    words = _WORDS[lang]
    clearance = headers("clearance", "district", lang)
    total = {k: v for k, v in clearance.items() if k != "service_date"}

    def rows(items: Sequence[BaseModel]) -> list[dict[str, Any]]:
        return labelled_rows(items, lang=lang, plates={})

    return pdf.Document(
        title=words[summary.period],
        lines=[
            words["dates"].format(
                start=summary.date_from.isoformat(), end=summary.date_to.isoformat()
            ),
            words["district"].format(district=district or words["all_districts"]),
            _made_line(lang, made_at),
        ],
        sections=[
            _section(words["period_total"], total, rows(summary.clearance), lang),
            _section(words["daily"], clearance, rows(summary.daily), lang),
            _section(words["closure"], headers("closure", "district", lang),
                     rows(summary.closure), lang),
            _section(words["alerts"], ALERT_COUNT_HEADERS[lang], rows(summary.alerts), lang),
            _section(words["worst"], WORST_POINT_HEADERS[lang], rows(summary.worst_points), lang),
        ],
        page_label=words["page"],
    )  # fmt: skip


def plates_named(
    conn: psycopg.Connection, rows: Sequence[BaseModel], by_truck: bool
) -> dict[str, str]:
    """Plates of the trucks the rows name (planned trucks; the groups of a report by truck)."""
    trucks = sorted(
        {t for r in rows if (t := getattr(r, "planned_truck_id", None))}
        | ({r.group for r in rows if isinstance(r, ClearanceRow)} if by_truck else set())
    )
    return trucks_repo.plates(conn, truck_ids=trucks) if trucks else {}


def printed_report(
    conn: psycopg.Connection,
    *,
    report: ReportName,
    date_from: date,
    date_to: date,
    by: ReportBy,
    district_ids: Sequence[str] | None,
    lang: Lang,
    made_at: datetime,
) -> pdf.Document:
    """Any report read from the database as a document to print: a week or a month
    (anchored on `date_from`) is the whole 周小结 / 月通报. `made_at` is shown in its
    own zone: the district's when the report covers one district."""
    if district_ids is not None and len(district_ids) == 1:
        made_at = made_at.astimezone(service.district_zone(conn=conn, district_id=district_ids[0]))
    named = ", ".join(district_ids) if district_ids else None
    if report in ("week", "month"):
        summary = service.period_report(
            conn=conn, period=report, anchor=date_from, district_ids=district_ids
        )
        return period_document(summary=summary, lang=lang, district=named, made_at=made_at)
    rows = service.report_rows(
        conn=conn, report=report, date_from=date_from, date_to=date_to, by=by,
        district_ids=district_ids,
    )  # fmt: skip
    return report_document(
        report=report, rows=rows, lang=lang, by=by, date_from=date_from, date_to=date_to,
        plates=plates_named(conn, rows, report == "clearance" and by == "truck"),
        district=named, made_at=made_at,
    )  # fmt: skip


def _case_facts(case: CaseDetailOut, lang: Lang, plates: Mapping[str, str]) -> pdf.Section:
    names = _CASE_FACTS[lang]
    words = _WORDS[lang]
    values: dict[str, Any] = case.model_dump()
    values["subject"] = case.point_id or plates.get(case.truck_id or "", case.subject)
    values["truck"] = (
        f"{plates.get(case.truck_id, case.truck_id)} ({case.truck_id})" if case.truck_id else None
    )
    values["severity"] = SEVERITY[lang].get(case.severity, case.severity)
    values["state"] = CASE_STATE[lang].get(case.state, case.state)
    if lang == "en":
        values["title"] = None  # written in Chinese by the server, as the dashboard shows it
    if case.closed_by == "system":
        values["closed_by"] = words["system"]
    rows = [
        [label, cell_text(name, values.get(name), lang)]
        for name, label in names.items()
        if values.get(name) is not None
    ]
    return pdf.Section(words["facts"], [words["item"], words["value"]], rows)  # fmt: skip


def _timeline(case: CaseDetailOut, lang: Lang) -> pdf.Section:
    words = _WORDS[lang]
    states = CASE_STATE[lang]
    rows = []
    for e in case.events:
        moved = e.from_state != e.to_state
        rows.append(
            [
                local_time(e.at),
                words["system"] if e.actor == "system" else e.actor,
                CASE_ACTION[lang].get(e.action, e.action),
                f"{states[e.from_state]} → {states[e.to_state]}" if moved else states[e.to_state],
                e.assignee or "",
                e.note or "",
            ]
        )
    columns = ["at", "actor", "action", "state", "assignee", "note"]
    return pdf.Section(words["timeline"], [words[c] for c in columns], rows, words["none"])


def _alerts(case: CaseDetailOut, lang: Lang) -> pdf.Section:
    words = _WORDS[lang]
    # The alerts' messages are written in Chinese by the server, as the dashboard shows.
    columns = ["at", "kind", "severity", *(["message"] if lang == "zh" else []), "resolved_at"]
    rows = [
        [
            local_time(a.condition_at),
            ALERT_KIND[lang].get(a.kind, a.kind),
            SEVERITY[lang].get(a.severity, a.severity),
            *([a.message] if lang == "zh" else []),
            local_time(a.resolved_at) if a.resolved_at else "",
        ]
        for a in case.alerts
    ]
    return pdf.Section(words["case_alerts"], [words[c] for c in columns], rows, words["none"])


def case_document(
    *, case: CaseDetailOut, lang: Lang, plates: Mapping[str, str], made_at: datetime
) -> pdf.Document:
    """A case's record: its facts, every step of its timeline (who, when, what, the
    note), the alerts it holds. The case's times are in its district's zone."""
    words = _WORDS[lang]
    return pdf.Document(
        title=words["case"].format(case_id=case.case_id),
        lines=[_made_line(lang, made_at)],
        sections=[_case_facts(case, lang, plates), _timeline(case, lang), _alerts(case, lang)],
        page_label=words["page"],
    )
