"""Fastest paths on a city's road graph, for the trucks the simulator drives.

A thin view of `routing.graph.RoadPaths` on the city's graph with the simulator's
words: two profiles (all roads for small trucks, roads without narrow lanes for the
rest), node positions in metres from the city centre, and the quiet nodes where a
driver may take a break.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

from routing.graph import NoPath, RoadPaths
from simulator import geo
from simulator.city import City

__all__ = ["NoPath", "RoadNetwork"]

CACHE_SOURCES = 256
QUIET_RADIUS_M = 60.0  # a break is taken this far from every depot / station / point


class RoadNetwork:
    def __init__(self, city: City) -> None:
        self.city = city
        g = city.graph
        self.nodes: list[int] = list(g.nodes)
        self.index = {node: i for i, node in enumerate(self.nodes)}
        self._paths = {
            narrow_ok: RoadPaths(g, allow_narrow=narrow_ok, cache_sources=CACHE_SOURCES)
            for narrow_ok in (True, False)
        }
        lat0, lon0 = city.center
        kx, ky = geo.m_per_deg_lon(lat0), geo.M_PER_DEG_LAT
        self._xy = np.array(
            [((g.nodes[v]["lon"] - lon0) * kx, (g.nodes[v]["lat"] - lat0) * ky) for v in self.nodes]
        )
        sites = [s.node for s in city.depots] + [s.node for s in city.stations]
        sites += [p.node for p in city.points]
        tree = cKDTree(self._xy[[self.index[s] for s in sites]])
        dist, _ = tree.query(self._xy, k=1)
        self.quiet: frozenset[int] = frozenset(
            node for node, d in zip(self.nodes, dist, strict=True) if d >= QUIET_RADIUS_M
        )

    def travel_time_s(self, source: int, target: int, *, narrow_ok: bool) -> float:
        return self._paths[narrow_ok].duration_s(source, target)

    def path(self, source: int, target: int, *, narrow_ok: bool) -> list[int]:
        """Nodes of the fastest path from source to target (both included)."""
        return self._paths[narrow_ok].path(source, target)

    def path_length_m(self, path: Sequence[int]) -> float:
        """Length of a path of nodes (as `path` returns it), in metres."""
        edges = self.city.graph.edges
        return sum(float(edges[u, v]["length_m"]) for u, v in itertools.pairwise(path))

    def xy(self, node: int) -> tuple[float, float]:
        """Node position in metres east/north of the city centre."""
        x, y = self._xy[self.index[node]]
        return float(x), float(y)
