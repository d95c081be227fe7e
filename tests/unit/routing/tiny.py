"""Tiny hand-checkable problems on a line: every location sits on one straight road,
x metres from the origin, driven at 10 m/s (so 1 km takes 100 s)."""

from __future__ import annotations

import numpy as np

from routing.matrix import TravelMatrix
from routing.problem import Depot, Point, Problem, Station, Truck

SPEED_MPS = 10.0
ALL = frozenset({"other", "kitchen", "recyclable", "hazardous", "mixed"})


def line_matrix(positions: dict[str, float], speed_mps: float = SPEED_MPS) -> TravelMatrix:
    keys = list(positions)
    x = np.array([positions[k] for k in keys])
    dist = np.abs(x[:, None] - x[None, :])
    return TravelMatrix(tuple(keys), dist, dist / speed_mps)


def truck(truck_id: str = "T1", **kw: object) -> Truck:
    base: dict[str, object] = {
        "capacity_kg": 1000.0,
        "streams": frozenset({"other"}),
        "start_depot_id": "D",
        "end_depot_id": "D",
        "shift_start_s": 0.0,
        "shift_end_s": 20_000.0,
    }
    base.update(kw)
    return Truck(truck_id, **base)  # type: ignore[arg-type]


def point(point_id: str, **kw: object) -> Point:
    base: dict[str, object] = {
        "lat": 0.0,
        "lon": 0.0,
        "stream": "other",
        "amount_kg": 100.0,
        "service_time_s": 60.0,
        "window_start_s": 0.0,
        "window_end_s": 20_000.0,
    }
    base.update(kw)
    return Point(point_id, **base)  # type: ignore[arg-type]


def station(station_id: str = "S", **kw: object) -> Station:
    base: dict[str, object] = {
        "lat": 0.0,
        "lon": 0.0,
        "streams": ALL,
        "opens_s": 0.0,
        "closes_s": 20_000.0,
        "tipping_time_s": 300.0,
    }
    base.update(kw)
    return Station(station_id, **base)  # type: ignore[arg-type]


def line_problem(
    points: dict[str, tuple[float, Point]],
    *,
    trucks: list[Truck] | None = None,
    stations: dict[str, tuple[float, Station]] | None = None,
    depot_x: float = 0.0,
) -> Problem:
    """Points (and stations) at given x; one depot ``D`` at ``depot_x``."""
    stations = stations if stations is not None else {"S": (0.0, station("S"))}
    positions = {"depot/D": depot_x}
    positions.update({f"station/{sid}": x for sid, (x, _) in stations.items()})
    positions.update({f"point/{pid}": x for pid, (x, _) in points.items()})
    return Problem(
        points=tuple(p for _, p in points.values()),
        stations=tuple(s for _, s in stations.values()),
        depots=(Depot("D", 0.0, 0.0),),
        trucks=tuple(trucks or [truck()]),
        matrix=line_matrix(positions),
        name="line",
    )
