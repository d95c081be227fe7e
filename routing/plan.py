"""The planner's result: a :class:`Plan` value, JSON-serialisable.

A plan holds one :class:`Route` per truck that works, each an ordered tuple of
:class:`Stop` (``start``, ``point``, ``station``, ``break``, ``end``), the points left
unassigned with the constraint that blocked each, and solver statistics. Times are
seconds since local midnight of the service date.

A ``break`` stop has no location: the driver takes it en route between the stops
around it (``distance_from_prev_m`` of the next stop is the whole leg).

``Plan.to_dict()`` / ``Plan.from_dict()`` (and ``to_json`` / ``from_json``) round-trip
exactly, so a plan can be stored as JSON and read back.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

StopKind = Literal["start", "point", "station", "break", "end"]
Reason = Literal[
    "capacity",
    "time_window",
    "stream",
    "access",
    "station_hours",
    "shift",
    "unreachable",
    "no_truck",
]
REASONS: tuple[str, ...] = (
    "capacity",
    "time_window",
    "stream",
    "access",
    "station_hours",
    "shift",
    "unreachable",
    "no_truck",
)


class Stop(msgspec.Struct, frozen=True, kw_only=True):
    kind: StopKind
    ref_id: str | None
    arrival_s: float
    departure_s: float
    load_after_kg: float
    distance_from_prev_m: float


class Route(msgspec.Struct, frozen=True, kw_only=True):
    truck_id: str
    stops: tuple[Stop, ...]
    distance_m: float
    duration_s: float

    @property
    def point_ids(self) -> list[str]:
        return [s.ref_id for s in self.stops if s.kind == "point" and s.ref_id is not None]


class Unassigned(msgspec.Struct, frozen=True, kw_only=True):
    point_id: str
    reason: Reason


class SolveStats(msgspec.Struct, frozen=True, kw_only=True):
    objective: float
    distance_m: float
    duration_s: float
    solve_time_s: float
    solver: str
    seed: int
    status: str = ""
    num_points: int = 0
    num_assigned: int = 0
    num_routes: int = 0
    pieces: int = 1
    notes: tuple[str, ...] = ()


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    routes: tuple[Route, ...]
    unassigned: tuple[Unassigned, ...]
    stats: SolveStats

    @property
    def distance_m(self) -> float:
        return sum(r.distance_m for r in self.routes)

    def route_for(self, truck_id: str) -> Route | None:
        for route in self.routes:
            if route.truck_id == truck_id:
                return route
        return None

    def assigned_point_ids(self) -> set[str]:
        return {pid for r in self.routes for pid in r.point_ids}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (dicts, lists, strings, numbers)."""
        out = msgspec.json.decode(msgspec.json.encode(self))
        assert isinstance(out, dict)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return msgspec.convert(data, cls)

    def to_json(self) -> bytes:
        return msgspec.json.encode(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> Plan:
        return msgspec.json.decode(data, type=cls)
