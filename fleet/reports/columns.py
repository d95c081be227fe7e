"""Reports as a person reads them in Excel or on paper: column headers and codes as words
(Chinese, or English for the printed reports), instants as local times, a plate beside
each truck id. The rows come from fleet/alerts/reports.py; the cells are written by
`fleet.spreadsheet.to_csv` and printed by fleet/reports/documents.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from fleet.alerts.reports import reason_text

Lang = Literal["zh", "en"]

# The same words as the dashboard (fleet/web/static/js/i18n.js), by language.
STREAM = {
    "zh": {"other": "其他垃圾", "kitchen": "厨余垃圾", "recyclable": "可回收物",
           "hazardous": "有害垃圾", "mixed": "混合垃圾"},
    "en": {"other": "Residual", "kitchen": "Kitchen", "recyclable": "Recyclable",
           "hazardous": "Hazardous", "mixed": "Mixed"},
}  # fmt: skip
LEDGER_STATUS = {
    "zh": {"cleared": "已清运", "partial": "不完整", "missed": "漏收",
           "unverifiable": "无法核实", "pending": "待收运"},
    "en": {"cleared": "cleared", "partial": "partial", "missed": "missed",
           "unverifiable": "unverifiable", "pending": "pending"},
}  # fmt: skip
DELIVERY = {
    "zh": {"none": "无", "on_truck": "在车上", "delivered": "已卸料", "not_delivered": "未卸料"},
    "en": {"none": "none", "on_truck": "on the truck", "delivered": "unloaded",
           "not_delivered": "not unloaded"},
}  # fmt: skip
CASE_STATE = {
    "zh": {"open": "待交办", "assigned": "已交办", "feedback": "已反馈", "closed": "已销号"},
    "en": {"open": "open", "assigned": "assigned", "feedback": "feedback", "closed": "closed"},
}  # fmt: skip
ALERT_KIND = {
    "zh": {"missed": "漏收", "drive_by": "驶过未停", "not_cleared_by_deadline": "未日清",
           "not_unloaded": "未卸料", "offline": "终端离线", "stationary": "异常停留"},
    "en": {"missed": "missed", "drive_by": "drove past",
           "not_cleared_by_deadline": "not cleared by deadline", "not_unloaded": "not unloaded",
           "offline": "terminal offline", "stationary": "stationary"},
}  # fmt: skip
SEVERITY = {"zh": {"high": "严重", "normal": "一般"}, "en": {"high": "high", "normal": "normal"}}
CASE_ACTION = {
    "zh": {"open": "立案", "attach": "追加告警", "assign": "交办", "feedback": "反馈",
           "close": "销号", "auto_close": "自动销号（后续证据证明已清运）",
           "escalate": "升级督办"},
    "en": {"open": "opened", "attach": "alert added", "assign": "assigned",
           "feedback": "feedback", "close": "closed",
           "auto_close": "closed automatically (later evidence shows it was cleared)",
           "escalate": "escalated"},
}  # fmt: skip
YES_NO = {"zh": ("是", "否"), "en": ("yes", "no")}
# Points no truck was planned for, in a report by truck.
UNPLANNED = {"zh": "未排入计划", "en": "not planned"}

_CLEARANCE = {
    "zh": {
        "service_date": "作业日期", "group": "分组", "due": "应收", "cleared": "已清运",
        "cleared_and_delivered": "清运并卸料", "partial": "不完整", "missed": "漏收",
        "unverifiable": "无法核实", "pending": "待收运", "not_delivered": "未卸料",
        "clearance_rate": "日清率", "verified_rate": "核实日清率",
    },
    "en": {
        "service_date": "Service date", "group": "Group", "due": "Due", "cleared": "Cleared",
        "cleared_and_delivered": "Cleared and unloaded", "partial": "Partial",
        "missed": "Missed", "unverifiable": "Unverifiable", "pending": "Pending",
        "not_delivered": "Not unloaded", "clearance_rate": "Clearance rate",
        "verified_rate": "Verified rate",
    },
}  # fmt: skip
_MISSED = {
    "zh": {
        "service_date": "作业日期", "district_id": "区域", "point_id": "收集点编号",
        "point_name": "收集点名称", "stream": "垃圾类别", "planned_plate": "计划车辆",
        "planned_truck_id": "车辆编号", "status": "状态", "reason_text": "原因",
        "window_end_at": "收运时限", "delivery": "卸料", "case_id": "案件号",
        "case_state": "案件状态",
    },
    "en": {
        "service_date": "Service date", "district_id": "District", "point_id": "Point",
        "point_name": "Point name", "stream": "Stream", "planned_plate": "Planned truck",
        "planned_truck_id": "Truck id", "status": "Status", "reason_text": "Reason",
        "window_end_at": "Due by", "delivery": "Unloading", "case_id": "Case",
        "case_state": "Case state",
    },
}  # fmt: skip
_CLOSURE = {
    "zh": {
        "district_id": "区域", "cases": "案件数", "closed": "已销号",
        "closed_on_time": "按期销号", "closed_late": "超期销号", "auto_closed": "自动销号",
        "open_overdue": "超期未结", "open_not_due": "未到期", "on_time_rate": "按期结案率",
    },
    "en": {
        "district_id": "District", "cases": "Cases", "closed": "Closed",
        "closed_on_time": "Closed on time", "closed_late": "Closed late",
        "auto_closed": "Closed automatically", "open_overdue": "Open, overdue",
        "open_not_due": "Open, not due", "on_time_rate": "On-time rate",
    },
}  # fmt: skip
ALERT_COUNT_HEADERS = {
    "zh": {"district_id": "区域", "kind": "告警类型", "alerts": "告警数"},
    "en": {"district_id": "District", "kind": "Alert", "alerts": "Alerts"},
}
WORST_POINT_HEADERS = {
    "zh": {"district_id": "区域", "point_id": "收集点编号", "point_name": "收集点名称",
           "days_not_cleared": "未日清天数"},
    "en": {"district_id": "District", "point_id": "Point", "point_name": "Point name",
           "days_not_cleared": "Days not cleared"},
}  # fmt: skip
UNPLANNED_GROUP = "-"  # fleet/alerts/reports.py: points no truck was planned for
_HEADERS: dict[str, dict[str, dict[str, str]]] = {
    "clearance": _CLEARANCE,
    "week": _CLEARANCE,
    "month": _CLEARANCE,
    "missed": _MISSED,
    "closure": _CLOSURE,
}
_VALUES: dict[str, dict[str, dict[str, str]]] = {
    "stream": STREAM,
    "status": LEDGER_STATUS,
    "delivery": DELIVERY,
    "case_state": CASE_STATE,
    "kind": ALERT_KIND,
}
LOCAL_TIME_FORMAT = "%Y-%m-%d %H:%M"


def headers(report: str, by: str, lang: Lang) -> dict[str, str]:
    """Field → header text of a report's columns, in their order."""
    found = _HEADERS[report][lang]
    if report == "clearance" and by == "truck":
        # A clearance report by truck names each truck by its plate, its id beside it.
        truck = {"zh": ("车辆", "车辆编号"), "en": ("Truck", "Truck id")}[lang]
        rest = {k: v for k, v in found.items() if k not in ("service_date", "group")}
        return {
            "service_date": found["service_date"],
            "group": truck[0],
            "truck_id": truck[1],
            **rest,
        }
    return found


def by_truck_rows(
    rows: Sequence[BaseModel], *, plates: Mapping[str, str], unplanned: str
) -> list[dict[str, Any]]:
    """Clearance rows grouped by truck with the plate in `group` (the id when the truck
    has none) and the id in `truck_id`; `unplanned` names the group of points no truck
    was planned for."""
    out = []
    for row in rows:
        cells: dict[str, Any] = row.model_dump()
        truck = cells["group"]
        planned = truck != UNPLANNED_GROUP
        out.append(
            {
                "service_date": cells.pop("service_date"),
                "group": (plates.get(truck) or truck) if planned else unplanned,
                "truck_id": truck if planned else None,
                **{k: v for k, v in cells.items() if k != "group"},
            }
        )
    return out


def local_time(value: datetime) -> str:
    """An instant as a person reads it, in the zone it carries (the service gives every
    instant in its district's zone)."""
    return value.strftime(LOCAL_TIME_FORMAT)


def labelled_rows(
    rows: Sequence[BaseModel | dict[str, Any]],
    *,
    lang: Lang,
    plates: Mapping[str, str],
    by: str = "district",
) -> list[dict[str, Any]]:
    """Rows with codes as words of `lang`, instants as local times, the reason in `lang`
    and the planned truck's plate (`planned_plate`) when a row names one; a clearance
    report's groups by stream as words."""
    out = []
    for row in rows:
        cells: dict[str, Any] = row.model_dump() if isinstance(row, BaseModel) else dict(row)
        if "reason_text" in cells:
            cells["reason_text"] = reason_text(
                cells["status"], cells["reason"], cells["delivery"], lang=lang
            )
        if by == "stream" and isinstance(cells.get("group"), str):
            cells["group"] = STREAM[lang].get(cells["group"], cells["group"])
        for name, labels in _VALUES.items():
            if isinstance(cells.get(name), str):
                cells[name] = labels[lang].get(cells[name], cells[name])
        for name, value in cells.items():
            if isinstance(value, datetime):
                cells[name] = local_time(value)
        if "planned_truck_id" in cells:
            truck = cells["planned_truck_id"]
            cells["planned_plate"] = plates.get(truck, truck) if truck else None
        out.append(cells)
    return out
