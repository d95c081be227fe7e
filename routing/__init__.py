"""Route planning for waste collection: frozen, validated data in, a ``Plan`` out.

The public API; callers outside ``routing/`` import from here, or from the public
modules ``routing.vocab`` (the domain's words, default speeds, ``haversine_m``),
``routing.graph`` (the road graph, ``RoadPaths``, snapping, travel matrices),
``routing.instances`` and ``routing.replan`` (``replan``, ``TruckState``). ``solve`` (and the OR-Tools it needs) is loaded on first use, so
reading plans and problems does not import the solver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from routing.check import LivePosition, Violation, check_plan, check_references
from routing.finish import finish_plan, make_plan, normalise
from routing.matrix import TravelMatrix
from routing.options import SolverOptions
from routing.plan import Plan, Route, SolveStats, Stop, Unassigned
from routing.problem import (
    Depot,
    Point,
    Problem,
    Station,
    Truck,
    build_problem,
    depot_key,
    point_key,
    station_key,
    truck_key,
)
from routing.schedule import Schedule, Start, Visit, fold_break, schedule_route
from routing.vocab import (
    ACCESS_CLASSES,
    DEFAULT_SPEED_KMH,
    ROAD_CLASSES,
    STREAMS,
    TRUCK_TYPES,
    AccessClass,
    RoadClass,
    Stream,
    TruckType,
    haversine_m,
)

if TYPE_CHECKING:
    from routing.solver import solve

__all__ = [
    "ACCESS_CLASSES",
    "DEFAULT_SPEED_KMH",
    "ROAD_CLASSES",
    "STREAMS",
    "TRUCK_TYPES",
    "AccessClass",
    "Depot",
    "LivePosition",
    "Plan",
    "Point",
    "Problem",
    "RoadClass",
    "Route",
    "Schedule",
    "SolveStats",
    "SolverOptions",
    "Start",
    "Station",
    "Stop",
    "Stream",
    "TravelMatrix",
    "Truck",
    "TruckType",
    "Unassigned",
    "Violation",
    "Visit",
    "build_problem",
    "check_plan",
    "check_references",
    "depot_key",
    "finish_plan",
    "fold_break",
    "haversine_m",
    "make_plan",
    "normalise",
    "point_key",
    "schedule_route",
    "solve",
    "station_key",
    "truck_key",
]


def __getattr__(name: str) -> Any:
    if name == "solve":
        from routing.solver import solve

        return solve
    raise AttributeError(f"module 'routing' has no attribute {name!r}")
