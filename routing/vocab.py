"""The domain's words and the one distance formula, imported by every layer.

Waste streams (垃圾类别), truck types, road classes and access classes are written
here once, as ``Literal`` types with the tuple of their members; the database's CHECK
constraints spell the same lists (fleet/migrations/0001_domain.sql) and a test holds
the two equal. ``DEFAULT_SPEED_KMH`` is the speed of a road of each class when its
row or OpenStreetMap way gives none. ``haversine_m`` is the great-circle distance,
arguments in (lat, lon) order, on a sphere of radius ``EARTH_RADIUS_M``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal, get_args, overload

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]

Stream = Literal["other", "kitchen", "recyclable", "hazardous", "mixed"]
TruckType = Literal["compactor", "kitchen", "small"]
RoadClass = Literal["arterial", "secondary", "local", "lane"]
# Narrow points lie on lanes (背街小巷) that only trucks allowed into narrow lanes reach.
AccessClass = Literal["normal", "narrow"]

STREAMS: Final[tuple[Stream, ...]] = get_args(Stream)
TRUCK_TYPES: Final[tuple[TruckType, ...]] = get_args(TruckType)
ROAD_CLASSES: Final[tuple[RoadClass, ...]] = get_args(RoadClass)
ACCESS_CLASSES: Final[tuple[AccessClass, ...]] = get_args(AccessClass)

DEFAULT_SPEED_KMH: Final[Mapping[str, float]] = MappingProxyType(
    {"arterial": 50.0, "secondary": 40.0, "local": 30.0, "lane": 15.0}
)

# The mean Earth radius (IUGG), in metres.
EARTH_RADIUS_M: Final = 6_371_008.8


@overload
def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float: ...
@overload
def haversine_m(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> FloatArray: ...
def haversine_m(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> Any:
    """Great-circle distance in metres between (lat1, lon1) and (lat2, lon2), WGS-84
    degrees. Plain numbers give a float (the hot loops of the simulator and the alert
    worker call it per fix); numpy arrays broadcast and give an array."""
    scalar = (float, int)
    if (
        isinstance(lat1, scalar)
        and isinstance(lon1, scalar)
        and isinstance(lat2, scalar)
        and isinstance(lon2, scalar)
    ):
        lib: Any = math
        at_most: Any = min
    else:
        # Arrays come from callers that loaded numpy already; importing it here keeps
        # this module, which every layer imports, free of it.
        import numpy as np

        lib, at_most = np, np.minimum
    p1, p2 = lib.radians(lat1), lib.radians(lat2)
    a = (
        lib.sin((p2 - p1) / 2) ** 2
        + lib.cos(p1) * lib.cos(p2) * lib.sin(lib.radians(lon2 - lon1) / 2) ** 2
    )
    # Rounding can push the root a hair above 1 for antipodal points.
    return 2 * EARTH_RADIUS_M * lib.asin(at_most(1.0, lib.sqrt(a)))
