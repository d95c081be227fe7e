from __future__ import annotations

from datetime import datetime, time
from typing import Annotated, Literal, Self

from pydantic import BaseModel, Field, model_validator

from fleet.fields import AccessClass, Clock, DistrictId, Id, Kg, Lat, Lon, Name, Seconds, Stream

Radius = Annotated[float, Field(gt=0, le=5000, description="geofence radius in metres")]


class PointIn(BaseModel):
    point_id: Id
    district_id: DistrictId
    name: Name
    lat: Lat
    lon: Lon
    stream: Stream
    daily_amount_kg: Kg
    service_time_s: Seconds = 300
    window_start: Clock = time(0, 0)
    window_end: Clock = time(23, 59)
    geofence_radius_m: Radius = 30.0
    min_dwell_s: Seconds | None = Field(None, description="null: half the service time")
    clearance_deadline: Clock = time(20, 0)
    access_class: AccessClass = "normal"
    has_bins: bool = True
    schedule: Literal["daily"] = "daily"

    @model_validator(mode="after")
    def _window(self) -> Self:
        if self.window_start > self.window_end:
            raise ValueError("window_start must not be after window_end")
        return self


class PointPatch(BaseModel):
    district_id: DistrictId | None = Field(
        None, description="the row's own district, if given: a row never moves between districts"
    )
    name: Name | None = None
    lat: Lat | None = None
    lon: Lon | None = None
    stream: Stream | None = None
    daily_amount_kg: Kg | None = None
    service_time_s: Seconds | None = None
    window_start: Clock | None = None
    window_end: Clock | None = None
    geofence_radius_m: Radius | None = None
    min_dwell_s: Seconds | None = None
    clearance_deadline: Clock | None = None
    access_class: AccessClass | None = None
    has_bins: bool | None = None
    schedule: Literal["daily"] | None = None
    active: bool | None = None


class Point(BaseModel):
    point_id: str
    district_id: str
    name: str
    lat: float
    lon: float
    stream: Stream
    daily_amount_kg: float
    service_time_s: int
    window_start: Clock
    window_end: Clock
    geofence_radius_m: float
    min_dwell_s: int | None
    clearance_deadline: Clock
    access_class: AccessClass
    has_bins: bool
    schedule: str
    active: bool
    updated_at: datetime
