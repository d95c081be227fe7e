"""Fastest paths on a city's road graph, for the trucks the simulator drives.

Two profiles: all roads (small trucks) and roads without narrow lanes (the rest).
Single-source Dijkstra runs in scipy (about 1 ms on a 10,000-node district) and the
last few sources are cached, since a truck leaves from the same station or depot
several times a day.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from simulator import geo
from simulator.city import City

CACHE_SOURCES = 256
QUIET_RADIUS_M = 60.0  # a break is taken this far from every depot / station / point


class NoPath(RuntimeError):
    pass


class RoadNetwork:
    def __init__(self, city: City) -> None:
        self.city = city
        g = city.graph
        self.nodes: list[int] = list(g.nodes)
        self.index = {node: i for i, node in enumerate(self.nodes)}
        n = len(self.nodes)
        rows: dict[bool, list[int]] = {True: [], False: []}
        cols: dict[bool, list[int]] = {True: [], False: []}
        weights: dict[bool, list[float]] = {True: [], False: []}
        for u, v, d in g.edges(data=True):
            t = float(d["length_m"]) / (float(d["speed_kmh"]) / 3.6)
            for narrow_ok in (True, False):
                if d["narrow"] and not narrow_ok:
                    continue
                rows[narrow_ok].append(self.index[u])
                cols[narrow_ok].append(self.index[v])
                weights[narrow_ok].append(t)
        self._matrix = {
            ok: sp.csr_matrix((weights[ok], (rows[ok], cols[ok])), shape=(n, n))
            for ok in (True, False)
        }
        self._cache: OrderedDict[
            tuple[bool, int], tuple[npt.NDArray[np.float64], npt.NDArray[np.int32]]
        ] = OrderedDict()
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

    def _sssp(
        self, source: int, narrow_ok: bool
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int32]]:
        key = (narrow_ok, source)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        dist, pred = dijkstra(
            self._matrix[narrow_ok], indices=self.index[source], return_predecessors=True
        )
        self._cache[key] = (dist, pred)
        if len(self._cache) > CACHE_SOURCES:
            self._cache.popitem(last=False)
        return dist, pred

    def travel_time_s(self, source: int, target: int, *, narrow_ok: bool) -> float:
        dist, _ = self._sssp(source, narrow_ok)
        t = float(dist[self.index[target]])
        if not np.isfinite(t):
            raise NoPath(f"no road from node {source} to node {target}")
        return t

    def path(self, source: int, target: int, *, narrow_ok: bool) -> list[int]:
        """Nodes of the fastest path from source to target (both included)."""
        if source == target:
            return [source]
        dist, pred = self._sssp(source, narrow_ok)
        j = self.index[target]
        if not np.isfinite(dist[j]):
            raise NoPath(f"no road from node {source} to node {target}")
        out = [target]
        while j != self.index[source]:
            j = int(pred[j])
            out.append(self.nodes[j])
        out.reverse()
        return out

    def path_length_m(self, path: Sequence[int]) -> float:
        """Length of a path of nodes (as `path` returns it), in metres."""
        edges = self.city.graph.edges
        return sum(float(edges[u, v]["length_m"]) for u, v in itertools.pairwise(path))

    def xy(self, node: int) -> tuple[float, float]:
        """Node position in metres east/north of the city centre."""
        x, y = self._xy[self.index[node]]
        return float(x), float(y)
