"""Field types of the catalogue's models (units in the names, WGS-84), shared by the
domain models, the importer and the API (``fleet.web.fields`` re-exports them)."""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainSerializer, StringConstraints, WithJsonSchema

from routing.vocab import AccessClass, Stream, TruckType

# The zone of a district that names none (also the default of district.timezone in
# fleet/migrations/0001_domain.sql, and of CLEARDAY_TIMEZONE).
DEFAULT_TIMEZONE = "Asia/Shanghai"

__all__ = [
    "DEFAULT_TIMEZONE",
    "AccessClass",
    "Clock",
    "DistrictId",
    "Id",
    "Kg",
    "Lat",
    "Lon",
    "Name",
    "PathId",
    "PositiveKg",
    "Seconds",
    "Stream",
    "Streams",
    "TruckType",
]


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
_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$")


def _parse_clock(value: Any) -> Any:
    if isinstance(value, time):
        return value
    if not isinstance(value, str) or not _CLOCK.match(value):
        raise ValueError("must be a local time of day HH:MM (24-hour, no time zone)")
    return time.fromisoformat(value)


def _format_clock(value: time) -> str:
    return value.strftime("%H:%M:%S" if value.second else "%H:%M")


# A local time of day in the district's time zone. Not JSON Schema's `format: time`,
# which is an RFC 3339 time with an offset: these are wall-clock times.
Clock = Annotated[
    time,
    BeforeValidator(_parse_clock),
    PlainSerializer(_format_clock, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _CLOCK.pattern,
            "description": "local time of day, HH:MM",
            "examples": ["05:30"],
        }
    ),
]
Streams = Annotated[list[Stream], Field(min_length=1, max_length=5)]
PathId = Annotated[str, Field(min_length=1, max_length=200)]
