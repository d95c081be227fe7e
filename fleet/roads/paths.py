"""Paths along the district's roads between two places, as coordinates: how a plan's
route is drawn "following the roads". The `road` rows make the routing road graph
(`routing.graph`), paths are the fastest at free-flow speeds (ties by length), each
road drawn with its full geometry; big trucks keep out of narrow lanes, as in planning."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import psycopg

from fleet.roads import repo
from routing.graph import NoPath, RoadPaths, RoadRow, graph_from_edges

Coord = list[float]  # [lon, lat] as in GeoJSON


class RoadLines:
    """The district's road graph (`routing.graph`) with each road's drawn geometry:
    `path` is the fastest route between two places as GeoJSON coordinates."""

    def __init__(self, rows: Iterable[Mapping[str, Any]]) -> None:
        rows = list(rows)
        graph = graph_from_edges(
            RoadRow(
                from_node=int(r["from_node"]),
                to_node=int(r["to_node"]),
                from_lat=float(r["coordinates"][0][1]),
                from_lon=float(r["coordinates"][0][0]),
                to_lat=float(r["coordinates"][-1][1]),
                to_lon=float(r["coordinates"][-1][0]),
                length_m=float(r["length_m"]),
                speed_kmh=float(r["speed_kmh"]),
                narrow=bool(r["narrow"]),
                oneway=bool(r["oneway"]),
            )
            for r in rows
        )
        # The geometry of the road the graph kept between two junctions (the faster
        # of parallel roads), in the direction of travel.
        self._coords: dict[tuple[int, int], list[Coord]] = {}
        for r in rows:
            coords = [[float(c[0]), float(c[1])] for c in r["coordinates"]]
            u, v = int(r["from_node"]), int(r["to_node"])
            ways = [(u, v, coords)] if r["oneway"] else [(u, v, coords), (v, u, coords[::-1])]
            for a, b, line in ways:
                kept = graph.get_edge_data(a, b)
                if (
                    (a, b) not in self._coords
                    and kept is not None
                    and kept["length_m"] == float(r["length_m"])
                    and kept["speed_kmh"] == float(r["speed_kmh"])
                ):
                    self._coords[a, b] = line
        self._paths = (
            {ok: RoadPaths(graph, allow_narrow=ok) for ok in (True, False)}
            if graph.number_of_nodes()
            else {}
        )

    @property
    def empty(self) -> bool:
        return not self._paths

    def path(
        self, start: tuple[float, float], end: tuple[float, float], *, allow_narrow: bool
    ) -> list[Coord]:
        """[lon, lat] points from `start` to `end` (lat, lon pairs) along the roads; a
        straight line when there are no roads or no way through."""
        straight = [[start[1], start[0]], [end[1], end[0]]]
        if self.empty:
            return straight
        paths = self._paths[allow_narrow]
        a, b = paths.nearest(*start), paths.nearest(*end)
        if a == b:
            return straight
        try:
            nodes = paths.path(a, b)
        except NoPath:
            return straight
        line: list[Coord] = [[start[1], start[0]]]
        for u, v in itertools.pairwise(nodes):
            for coord in self._coords[u, v]:
                if coord != line[-1]:
                    line.append(coord)
        if line[-1] != straight[1]:
            line.append(straight[1])
        return line


class NetworkCache:
    """One RoadLines per district, rebuilt when its roads change."""

    def __init__(self) -> None:
        self._networks: dict[str, tuple[tuple[Any, ...], RoadLines]] = {}
        self._lock = threading.Lock()

    def get(self, conn: psycopg.Connection, district_id: str) -> RoadLines:
        key = repo.roads_version(conn, district_id=district_id)
        cached = self._networks.get(district_id)
        if cached and cached[0] == key:
            return cached[1]
        with self._lock:
            network = RoadLines(repo.road_rows(conn, district_id=district_id))
            self._networks[district_id] = (key, network)
        return network
