"""Route planning for waste collection: frozen, validated data in, a ``Plan`` out.

The public API; callers outside ``routing/`` import from here, or from the public
modules ``routing.vocab`` (the domain's words, default speeds, ``haversine_m``),
``routing.graph`` (the road graph, ``RoadPaths``, snapping, travel matrices),
``routing.instances`` and ``routing.replan`` (``replan``, ``TruckState``).

Each name is loaded from its module on first use (PEP 562), so importing a light
module such as ``routing.vocab`` (the gateway and the ingestor do, through
``fleet.config``) does not import numpy, scipy, networkx or OR-Tools.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from routing.solver import solve
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

# Each public name and the module that defines it.
_HOME: dict[str, str] = {
    **dict.fromkeys(
        ("LivePosition", "Violation", "check_plan", "check_references"), "routing.check"
    ),
    **dict.fromkeys(("finish_plan", "make_plan", "normalise"), "routing.finish"),
    "TravelMatrix": "routing.matrix",
    "SolverOptions": "routing.options",
    **dict.fromkeys(("Plan", "Route", "SolveStats", "Stop", "Unassigned"), "routing.plan"),
    **dict.fromkeys(
        (
            "Depot",
            "Point",
            "Problem",
            "Station",
            "Truck",
            "build_problem",
            "depot_key",
            "point_key",
            "station_key",
            "truck_key",
        ),
        "routing.problem",
    ),
    **dict.fromkeys(
        ("Schedule", "Start", "Visit", "fold_break", "schedule_route"), "routing.schedule"
    ),
    "solve": "routing.solver",
    **dict.fromkeys(
        (
            "ACCESS_CLASSES",
            "DEFAULT_SPEED_KMH",
            "ROAD_CLASSES",
            "STREAMS",
            "TRUCK_TYPES",
            "AccessClass",
            "RoadClass",
            "Stream",
            "TruckType",
            "haversine_m",
        ),
        "routing.vocab",
    ),
}

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
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'routing' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
