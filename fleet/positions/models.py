from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

# What a terminal reports besides positions (device_event.kind): a bin lift, an RFID
# bin tag read, a weighbridge ticket, or an alarm bit it raised (JT/T 808 报警标志).
EventKind = Literal["bin_lift", "rfid", "weighbridge", "alarm"]


class TruckStatus(StrEnum):
    """What the live map shows for a truck (a display status, not the ledger's verdict)."""

    moving = "moving"  # 行驶中: driving (on route)
    at_point = "at_point"  # 收运中: slow or stopped inside a point's geofence
    unloading = "unloading"  # 卸料中: at a transfer station
    parked = "parked"  # 在场: at its depot
    stopped = "stopped"  # 停留: stopped elsewhere
    offline = "offline"  # 离线: no fix for longer than live_offline_after_s
    no_data = "no_data"  # 无数据: never reported


class LatestPosition(BaseModel):
    truck_id: str
    plate: str
    district_id: str
    truck_type: str
    status: TruckStatus
    site_id: str | None = Field(None, description="the point, station or depot it is at")
    recorded_at: datetime | None = None
    age_s: float | None = Field(None, description="seconds since the fix was taken")
    lat: float | None = None
    lon: float | None = None
    speed_kmh: float | None = None
    heading_deg: float | None = None
    accuracy_m: float | None = None
    ignition: bool | None = None
    load_state: str | None = None


class LatestPositions(BaseModel):
    at: datetime
    trucks: list[LatestPosition]


class TrackPoint(BaseModel):
    recorded_at: datetime
    lat: float
    lon: float
    speed_kmh: float | None = None
    heading_deg: float | None = None


class Track(BaseModel):
    truck_id: str
    start_at: datetime
    end_at: datetime
    total_fixes: int = Field(description="fixes in the range before downsampling")
    downsampled: bool
    points: list[TrackPoint]
