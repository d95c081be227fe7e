"""Reports as a person reads them in Excel: Chinese column headers, codes as Chinese
words, instants as local times, a plate beside each truck id. The rows come from
fleet/alerts/reports.py; the cells are written by `fleet.spreadsheet.to_csv`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel

# The same words as the dashboard's Chinese UI (fleet/web/static/js/i18n.js).
STREAM_ZH = {
    "other": "其他垃圾", "kitchen": "厨余垃圾", "recyclable": "可回收物",
    "hazardous": "有害垃圾", "mixed": "混合垃圾",
}  # fmt: skip
LEDGER_STATUS_ZH = {
    "cleared": "已清运", "partial": "不完整", "missed": "漏收",
    "unverifiable": "无法核实", "pending": "待收运",
}  # fmt: skip
DELIVERY_ZH = {
    "none": "无", "on_truck": "在车上", "delivered": "已卸料", "not_delivered": "未卸料",
}  # fmt: skip
CASE_STATE_ZH = {"open": "待交办", "assigned": "已交办", "feedback": "已反馈", "closed": "已销号"}

_CLEARANCE_ZH = {
    "service_date": "作业日期", "group": "分组", "due": "应收", "cleared": "已清运",
    "cleared_and_delivered": "清运并卸料", "partial": "不完整", "missed": "漏收",
    "unverifiable": "无法核实", "pending": "待收运", "not_delivered": "未卸料",
    "clearance_rate": "日清率", "verified_rate": "核实日清率",
}  # fmt: skip
_MISSED_ZH = {
    "service_date": "作业日期", "district_id": "区域", "point_id": "收集点编号",
    "point_name": "收集点名称", "stream": "垃圾类别", "planned_plate": "计划车辆",
    "planned_truck_id": "车辆编号", "status": "状态", "reason_text": "原因",
    "window_end_at": "收运时限", "delivery": "卸料", "case_id": "案件号",
    "case_state": "案件状态",
}  # fmt: skip
_CLOSURE_ZH = {
    "district_id": "区域", "cases": "案件数", "closed": "已销号",
    "closed_on_time": "按期销号", "closed_late": "超期销号", "auto_closed": "自动销号",
    "open_overdue": "超期未结", "open_not_due": "未到期", "on_time_rate": "按期结案率",
}  # fmt: skip
# A clearance report by truck names each truck by its plate, its id beside it.
_CLEARANCE_BY_TRUCK_ZH = {
    "service_date": "作业日期", "group": "车辆", "truck_id": "车辆编号",
    **{k: v for k, v in _CLEARANCE_ZH.items() if k not in ("service_date", "group")},
}  # fmt: skip
UNPLANNED_GROUP = "-"  # fleet/alerts/reports.py: points no truck was planned for
HEADERS_ZH: dict[str, dict[str, str]] = {
    "clearance": _CLEARANCE_ZH,
    "week": _CLEARANCE_ZH,
    "month": _CLEARANCE_ZH,
    "missed": _MISSED_ZH,
    "closure": _CLOSURE_ZH,
}
_VALUES_ZH: dict[str, Mapping[str, str]] = {
    "stream": STREAM_ZH,
    "status": LEDGER_STATUS_ZH,
    "delivery": DELIVERY_ZH,
    "case_state": CASE_STATE_ZH,
}
LOCAL_TIME_FORMAT = "%Y-%m-%d %H:%M"


def headers_zh(report: str, by: str) -> dict[str, str]:
    if report == "clearance" and by == "truck":
        return _CLEARANCE_BY_TRUCK_ZH
    return HEADERS_ZH[report]


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


def chinese_rows(
    rows: Sequence[BaseModel | dict[str, Any]],
    *,
    tz: ZoneInfo,
    plates: Mapping[str, str],
    by: str = "district",
) -> list[dict[str, Any]]:
    """Rows with codes as Chinese words, instants as local times and the planned
    truck's plate (`planned_plate`) when a row names one; a clearance report's groups
    by stream as words."""
    out = []
    for row in rows:
        cells: dict[str, Any] = row.model_dump() if isinstance(row, BaseModel) else dict(row)
        if by == "stream" and isinstance(cells.get("group"), str):
            cells["group"] = STREAM_ZH.get(cells["group"], cells["group"])
        for field, labels in _VALUES_ZH.items():
            if isinstance(cells.get(field), str):
                cells[field] = labels.get(cells[field], cells[field])
        for field, value in cells.items():
            if isinstance(value, datetime):
                cells[field] = value.astimezone(tz).strftime(LOCAL_TIME_FORMAT)
        if "planned_truck_id" in cells:
            truck = cells["planned_truck_id"]
            cells["planned_plate"] = plates.get(truck, truck) if truck else None
        out.append(cells)
    return out
