from __future__ import annotations

from datetime import datetime, time

from pydantic import BaseModel, Field

from fleet.fields import (
    Clock,
    DistrictId,
    Id,
    Lat,
    Lon,
    Name,
    PositiveKg,
    Seconds,
    Stream,
    Streams,
)


class StationIn(BaseModel):
    station_id: Id
    district_id: DistrictId
    name: Name
    lat: Lat
    lon: Lon
    streams: Streams = Field(description="waste streams the station accepts")
    opens_at: Clock = time(0, 0)
    closes_at: Clock = time(23, 59)
    tipping_time_s: Seconds = 900
    daily_capacity_kg: PositiveKg | None = None


class StationPatch(BaseModel):
    district_id: DistrictId | None = Field(
        None, description="the row's own district, if given: a row never moves between districts"
    )
    name: Name | None = None
    lat: Lat | None = None
    lon: Lon | None = None
    streams: Streams | None = None
    opens_at: Clock | None = None
    closes_at: Clock | None = None
    tipping_time_s: Seconds | None = None
    daily_capacity_kg: PositiveKg | None = Field(None, description="null: unlimited")
    active: bool | None = None


class Station(BaseModel):
    station_id: str
    district_id: str
    name: str
    lat: float
    lon: float
    streams: list[Stream]
    opens_at: Clock
    closes_at: Clock
    tipping_time_s: int
    daily_capacity_kg: float | None
    active: bool
    updated_at: datetime
