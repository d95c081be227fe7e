from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from fleet.fields import DistrictId, Id, Lat, Lon, Name


class DepotIn(BaseModel):
    depot_id: Id
    district_id: DistrictId
    name: Name
    lat: Lat
    lon: Lon


class DepotPatch(BaseModel):
    district_id: DistrictId | None = Field(
        None, description="the row's own district, if given: a row never moves between districts"
    )
    name: Name | None = None
    lat: Lat | None = None
    lon: Lon | None = None
    active: bool | None = None


class Depot(BaseModel):
    depot_id: str
    district_id: str
    name: str
    lat: float
    lon: float
    active: bool
    updated_at: datetime
