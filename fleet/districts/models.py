from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, Field
from pydantic_core import PydanticCustomError

from fleet.fields import DEFAULT_TIMEZONE, DistrictId, Name


def _zone(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+){0,2}", value) or len(value) > 64:
        raise PydanticCustomError(
            "timezone_unknown",
            "{value} is not an IANA time zone name such as Asia/Shanghai",
            {"value": repr(value[:80])},
        )
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise PydanticCustomError(
            "timezone_unknown",
            "unknown time zone {value}; use an IANA name such as Asia/Shanghai",
            {"value": repr(value)},
        ) from exc
    return value


TimeZone = Annotated[str, AfterValidator(_zone)]


class DistrictIn(BaseModel):
    district_id: DistrictId
    name: Name
    timezone: TimeZone = DEFAULT_TIMEZONE


class DistrictPatch(BaseModel):
    name: Name | None = None
    timezone: TimeZone | None = None
    plan_at_hour: int | None = Field(
        None,
        ge=0,
        le=23,
        description="local hour at which tomorrow's plan is queued every day (null: never)",
    )


class District(BaseModel):
    district_id: str
    name: str
    timezone: str
    plan_at_hour: int | None
    created_at: datetime
    points: int
    trucks: int
