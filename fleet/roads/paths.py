"""Paths along the district's roads between two places, as coordinates: how a plan's
route is drawn "following the roads". Built from the `road` rows (their full geometry),
shortest by free-flow travel time; big trucks keep out of narrow lanes, as in planning."""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import networkx as nx
import numpy as np
import psycopg

Coord = list[float]  # [lon, lat] as in GeoJSON


class RoadNetwork:
    def __init__(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self.graph: nx.DiGraph = nx.DiGraph()
        positions: dict[int, tuple[float, float]] = {}
        for row in rows:
            coords = [[float(c[0]), float(c[1])] for c in row["coordinates"]]
            time_s = float(row["length_m"]) / (float(row["speed_kmh"]) / 3.6)
            u, v = int(row["from_node"]), int(row["to_node"])
            positions.setdefault(u, (coords[0][1], coords[0][0]))
            positions.setdefault(v, (coords[-1][1], coords[-1][0]))
            self._add(u, v, time_s, coords, bool(row["narrow"]))
            if not row["oneway"]:
                self._add(v, u, time_s, coords[::-1], bool(row["narrow"]))
        self._wide = nx.DiGraph(
            (u, v, d) for u, v, d in self.graph.edges(data=True) if not d["narrow"]
        )
        self._ids = np.array(list(positions), dtype=np.int64)
        latlon = np.array([positions[n] for n in self._ids], dtype=float).reshape(-1, 2)
        self._lat = latlon[:, 0]
        self._lon = latlon[:, 1]
        self._wide_mask = np.isin(self._ids, np.fromiter(self._wide.nodes, dtype=np.int64))
        self._cos = math.cos(math.radians(float(self._lat.mean()))) if len(self._lat) else 1.0

    def _add(self, u: int, v: int, time_s: float, coords: list[Coord], narrow: bool) -> None:
        old = self.graph.get_edge_data(u, v)
        if old is None or old["time_s"] > time_s:
            self.graph.add_edge(u, v, time_s=time_s, coords=coords, narrow=narrow)

    @property
    def empty(self) -> bool:
        return len(self._ids) == 0

    def nearest_node(self, lat: float, lon: float, *, wide_only: bool = False) -> int | None:
        if self.empty:
            return None
        d2 = (self._lat - lat) ** 2 + ((self._lon - lon) * self._cos) ** 2
        if wide_only:
            if not self._wide_mask.any():
                return None
            d2 = np.where(self._wide_mask, d2, np.inf)
        return int(self._ids[int(np.argmin(d2))])

    def path(
        self, start: tuple[float, float], end: tuple[float, float], *, allow_narrow: bool
    ) -> list[Coord]:
        """[lon, lat] points from `start` to `end` (lat, lon pairs) along the roads; a
        straight line when there are no roads or no way through."""
        straight = [[start[1], start[0]], [end[1], end[0]]]
        graph = self.graph if allow_narrow else self._wide
        a = self.nearest_node(*start, wide_only=not allow_narrow)
        b = self.nearest_node(*end, wide_only=not allow_narrow)
        if a is None or b is None:
            return straight
        if a == b:
            return straight
        try:
            _, nodes = nx.bidirectional_dijkstra(graph, a, b, weight="time_s")
        except (nx.NetworkXNoPath, nx.NodeNotFound):
            return straight
        line: list[Coord] = [[start[1], start[0]]]
        for u, v in itertools.pairwise(nodes):
            for coord in graph[u][v]["coords"]:
                if coord != line[-1]:
                    line.append(coord)
        if line[-1] != straight[1]:
            line.append(straight[1])
        return line


class NetworkCache:
    """One RoadNetwork per district, rebuilt when its roads change."""

    def __init__(self) -> None:
        self._networks: dict[str, tuple[tuple[Any, ...], RoadNetwork]] = {}
        self._lock = threading.Lock()

    def get(self, conn: psycopg.Connection, district_id: str) -> RoadNetwork:
        version = conn.execute(
            "SELECT count(*), max(updated_at) FROM road WHERE district_id = %s", (district_id,)
        ).fetchone()
        key = tuple(version or ())
        cached = self._networks.get(district_id)
        if cached and cached[0] == key:
            return cached[1]
        with self._lock:
            rows = conn.execute(
                """SELECT from_node, to_node, speed_kmh, oneway, narrow, length_m, coordinates
                   FROM road WHERE district_id = %s""",
                (district_id,),
            ).fetchall()
            names = (
                "from_node",
                "to_node",
                "speed_kmh",
                "oneway",
                "narrow",
                "length_m",
                "coordinates",
            )
            network = RoadNetwork(dict(zip(names, r, strict=True)) for r in rows)
            self._networks[district_id] = (key, network)
        return network
