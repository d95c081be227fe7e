"""The catalogue's field types for the API's request and response models; defined in
``fleet.fields``, below both the domain and the web layer."""

from fleet.fields import (
    AccessClass,
    Clock,
    DistrictId,
    Id,
    Kg,
    Lat,
    Lon,
    Name,
    PathId,
    PositiveKg,
    Seconds,
    Stream,
    Streams,
    TruckType,
)

__all__ = [
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
