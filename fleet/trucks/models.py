from __future__ import annotations

from datetime import datetime, time
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, model_validator

from fleet.fields import Clock, DistrictId, Id, PositiveKg, Seconds, Stream, Streams, TruckType
from fleet.trucks.terminals import parse_jt808_phone

Plate = Annotated[
    str,
    StringConstraints(min_length=2, max_length=16, strip_whitespace=True),
    Field(examples=["皖A12345"]),
]
TerminalId = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$"), Field(examples=["T01-GPS"])
]
# The SIM's number a JT/T 808 terminal reports under (终端手机号); stored without the
# leading zeros its headers pad it with.
Jt808Phone = Annotated[
    str,
    StringConstraints(max_length=20),
    AfterValidator(parse_jt808_phone),
    Field(examples=["13912345678"], description="JT/T 808 terminal phone number (digits)"),
]
RouteSeconds = Annotated[int, Field(gt=0, le=24 * 3600)]


class TruckIn(BaseModel):
    truck_id: Id
    district_id: DistrictId
    plate: Plate
    truck_type: TruckType
    capacity_kg: PositiveKg
    streams: Streams = Field(description="waste streams the truck may carry")
    depot_id: Id
    terminal_id: TerminalId
    jt808_phone: Jt808Phone | None = None
    shift_start: Clock = time(5, 0)
    shift_end: Clock = time(17, 0)
    max_route_duration_s: RouteSeconds | None = Field(None, description="null: the shift length")
    break_duration_s: Seconds = 1800
    break_earliest: Clock = time(11, 0)
    break_latest: Clock = time(13, 0)
    can_enter_narrow: bool | None = Field(None, description="null: true for small trucks")

    @model_validator(mode="after")
    def _shift(self) -> Self:
        if self.shift_start >= self.shift_end:
            raise ValueError("shift_start must be before shift_end")
        if self.can_enter_narrow is None:
            self.can_enter_narrow = self.truck_type == "small"
        return self


class TruckPatch(BaseModel):
    district_id: DistrictId | None = Field(
        None, description="the row's own district, if given: a row never moves between districts"
    )
    plate: Plate | None = None
    truck_type: TruckType | None = None
    capacity_kg: PositiveKg | None = None
    streams: Streams | None = None
    depot_id: Id | None = None
    terminal_id: TerminalId | None = None
    jt808_phone: Jt808Phone | None = Field(None, description="null: the truck has none")
    shift_start: Clock | None = None
    shift_end: Clock | None = None
    max_route_duration_s: RouteSeconds | None = None
    break_duration_s: Seconds | None = None
    break_earliest: Clock | None = None
    break_latest: Clock | None = None
    can_enter_narrow: bool | None = None
    active: bool | None = None


class Truck(BaseModel):
    truck_id: str
    district_id: str
    plate: str
    truck_type: TruckType
    capacity_kg: float
    streams: list[Stream]
    depot_id: str
    terminal_id: str
    jt808_phone: str | None
    shift_start: Clock
    shift_end: Clock
    max_route_duration_s: int | None
    break_duration_s: int
    break_earliest: Clock
    break_latest: Clock
    can_enter_narrow: bool
    active: bool
    updated_at: datetime
