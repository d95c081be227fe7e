"""The ground truth of a simulated day, as typed records.

A truck's day records what really happened — its route's start and end, each
service (收集点清运), unload at a station (中转站卸载), break, signal loss and fault —
as one of the records below. ``as_json()`` gives the record's line in the truth file
(``SimDay.write_truth``): ``type``, ``truck_id``, for a fault its ``kind``, then the
record's own fields in the order they are declared. Times are local ISO strings.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class TruthRecord:
    truck_id: str
    TYPE: ClassVar[str]

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.TYPE}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True, slots=True)
class RouteStart(TruthRecord):
    TYPE = "route_start"
    terminal_id: str
    depot_id: str
    at: str


@dataclass(frozen=True, slots=True)
class RouteEnd(TruthRecord):
    TYPE = "route_end"
    terminal_id: str
    at: str
    depot_id: str | None  # None: the truck broke down
    load_kg: float
    broken_down: bool
    fixes_generated: int
    fixes_dropped: int
    asleep_at: str


@dataclass(frozen=True, slots=True)
class Service(TruthRecord):
    TYPE = "service"
    point_id: str
    arrival_at: str
    service_start_at: str
    departure_at: str
    dwell_s: float
    amount_kg: float
    bin_lifts: int


@dataclass(frozen=True, slots=True)
class Unload(TruthRecord):
    TYPE = "unload"
    station_id: str
    arrival_at: str
    departure_at: str
    weight_kg: float


@dataclass(frozen=True, slots=True)
class Break(TruthRecord):
    TYPE = "break"
    start_at: str
    end_at: str
    lat: float
    lon: float
    at_site: bool  # at a point, station or depot (not a quiet roadside node)


@dataclass(frozen=True, slots=True)
class SignalLoss(TruthRecord):
    """A blind zone: the terminal buffered its fixes and events and sent them late."""

    TYPE = "signal_loss"
    terminal_id: str
    start_at: str
    end_at: str
    released_at: str
    fixes_buffered: int
    events_buffered: int


# ---- faults: what the alerts should notice -------------------------------------------
@dataclass(frozen=True, slots=True)
class Fault(TruthRecord):
    TYPE = "fault"
    KIND: ClassVar[str]

    def as_json(self) -> dict[str, Any]:
        out = TruthRecord.as_json(self)
        return {"type": self.TYPE, "truck_id": self.truck_id, "kind": self.KIND, **out}


@dataclass(frozen=True, slots=True)
class PointFault(Fault):
    """A fault at a collection point (收集点): the point counts as handled."""

    point_id: str


@dataclass(frozen=True, slots=True)
class Skip(PointFault):
    KIND = "skip"
    at: str


@dataclass(frozen=True, slots=True)
class DriveBy(PointFault):
    KIND = "drive_by"
    at: str
    speed_kmh: float


@dataclass(frozen=True, slots=True)
class TooShort(PointFault):
    KIND = "too_short"
    arrival_at: str
    departure_at: str
    dwell_s: float
    min_dwell_s: float


@dataclass(frozen=True, slots=True)
class Drift(PointFault):
    KIND = "drift"
    at: str
    end_at: str
    offset_m: float


@dataclass(frozen=True, slots=True)
class Jump(PointFault):
    KIND = "jump"
    at: str
    beside_point_id: str | None


@dataclass(frozen=True, slots=True)
class IdleBeside(PointFault):
    KIND = "idle_beside"
    at: str
    departure_at: str
    distance_m: float
    from_node: int


@dataclass(frozen=True, slots=True)
class NoUnload(Fault):
    KIND = "no_unload"
    station_id: str
    at: str
    load_kg: float


@dataclass(frozen=True, slots=True)
class Breakdown(Fault):
    KIND = "breakdown"
    at: str
    lat: float
    lon: float
    load_kg: float
    unserved_point_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Offline(Fault):
    KIND = "offline"
    terminal_id: str
    start_at: str
    end_at: str
    duration_s: float
