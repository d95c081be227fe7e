"""Field types shared by the catalogue's API models (units in the names, WGS-84)."""

from __future__ import annotations

from datetime import time
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

Stream = Literal["other", "kitchen", "recyclable", "hazardous", "mixed"]
TruckType = Literal["compactor", "kitchen", "small"]
AccessClass = Literal["normal", "narrow"]

# Ids created through the API; imported files may use a wider alphabet (docs/import.md).
Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$"), Field(examples=["T01"])]
DistrictId = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$"), Field(examples=["baohe"])
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Lat = Annotated[float, Field(ge=-90, le=90, description="WGS-84 latitude")]
Lon = Annotated[float, Field(ge=-180, le=180, description="WGS-84 longitude")]
Seconds = Annotated[int, Field(ge=0, le=7 * 24 * 3600)]
Kg = Annotated[float, Field(ge=0, le=1e9)]
PositiveKg = Annotated[float, Field(gt=0, le=1e9)]
Clock = Annotated[time, Field(description="local time of day, HH:MM")]
Streams = Annotated[list[Stream], Field(min_length=1, max_length=5)]
PathId = Annotated[str, Field(min_length=1, max_length=200)]
