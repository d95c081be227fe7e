"""Distances and durations between the locations of a planning run.

The road graph (:mod:`routing.graph`) makes a :class:`TravelMatrix`; the problem
(:mod:`routing.problem`) carries one per truck profile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, eq=False)
class TravelMatrix:
    """Distances (m) and durations (s) between locations, keyed by location key.

    ``inf`` marks an unreachable pair. The arrays are made read-only.
    """

    location_ids: tuple[str, ...]
    distance_m: FloatArray
    duration_s: FloatArray
    index: Mapping[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ids = tuple(self.location_ids)
        object.__setattr__(self, "location_ids", ids)
        n = len(ids)
        index = {key: i for i, key in enumerate(ids)}
        if len(index) != n:
            dupes = sorted({k for k in ids if ids.count(k) > 1})
            raise ValueError(f"matrix.location_ids: duplicate keys {dupes[:5]}")
        object.__setattr__(self, "index", index)
        for name in ("distance_m", "duration_s"):
            arr = np.array(getattr(self, name), dtype=np.float64, copy=True)
            if arr.shape != (n, n):
                raise ValueError(f"matrix.{name}: shape {arr.shape} does not match {n} locations")
            if np.isnan(arr).any():
                raise ValueError(f"matrix.{name}: contains NaN")
            if (arr < 0).any():
                raise ValueError(f"matrix.{name}: contains negative values")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    def __len__(self) -> int:
        return len(self.location_ids)

    def distance(self, a: str, b: str) -> float:
        return float(self.distance_m[self.index[a], self.index[b]])

    def duration(self, a: str, b: str) -> float:
        return float(self.duration_s[self.index[a], self.index[b]])

    def subset(self, keys: Sequence[str]) -> TravelMatrix:
        """The matrix restricted to ``keys`` (in that order)."""
        idx = np.array([self.index[k] for k in keys], dtype=np.int64)
        return TravelMatrix(
            tuple(keys),
            self.distance_m[np.ix_(idx, idx)],
            self.duration_s[np.ix_(idx, idx)],
        )
