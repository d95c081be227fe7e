"""The road graph, snapping, and travel matrices.

The road graph is a ``networkx.DiGraph``: nodes carry ``lat``, ``lon`` (WGS-84),
edges carry ``length_m``, ``speed_kmh``, ``narrow`` (only trucks that may enter
narrow lanes use it) and ``road_class``. Two-way roads are two directed edges.
The simulator's synthetic city produces exactly this; :func:`graph_from_edges` builds
it from the rows of the ``road`` table and :func:`graph_from_osm` from an
OpenStreetMap extract (``.osm.pbf`` / ``.osm`` / ``.osm.bz2``).

:func:`travel_matrix` snaps every location to the nearest node of the graph's largest
strongly connected component and runs bulk shortest paths with
``scipy.sparse.csgraph.dijkstra``: the fastest path, ties broken by length; the
matrix holds its duration and its length, plus the off-road legs from each location
to its snapped node. Compiled graphs and matrices are cached per graph object.
:class:`RoadPaths` answers one path at a time on the same compiled graph (the
simulator's trucks, the dashboard's route lines); :func:`snap` finds a location's node.
:func:`straight_line_matrix` (great-circle distance × detour factor) is the fallback
when no graph is given.
"""

from __future__ import annotations

import itertools
import math
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import networkx as nx
import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import cKDTree

from routing.matrix import TravelMatrix
from routing.vocab import DEFAULT_SPEED_KMH, EARTH_RADIUS_M, haversine_m

# Off-road legs (location to its snapped node) are driven slowly.
ACCESS_SPEED_KMH: Final = 10.0

# Fastest path with ties broken by length, in one exact float64 Dijkstra:
# weight = duration_ms * 2**_LEN_BITS + length_dm (both integers; sums stay < 2**53).
_LEN_BITS: Final = 24
_LEN_SCALE: Final = float(2**_LEN_BITS)
_MATRIX_SOURCE_CHUNK: Final = 256

# OSM highway tag -> road class. Ways without one of these tags are not roads for trucks.
OSM_HIGHWAY_CLASS: Final = {
    "motorway": "arterial",
    "motorway_link": "arterial",
    "trunk": "arterial",
    "trunk_link": "arterial",
    "primary": "arterial",
    "primary_link": "arterial",
    "secondary": "secondary",
    "secondary_link": "secondary",
    "tertiary": "secondary",
    "tertiary_link": "secondary",
    "unclassified": "local",
    "residential": "local",
    "road": "local",
    "living_street": "lane",
    "service": "lane",
    "track": "lane",
}
OSM_NARROW_HIGHWAYS: Final = frozenset({"living_street", "service", "track"})
OSM_NARROW_WIDTH_M: Final = 4.0
MAX_OSM_SPEED_KMH: Final = 200.0


# --------------------------------------------------------------------------- building


@dataclass(frozen=True, slots=True)
class RoadRow:
    """One row of the ``road`` table (or an equivalent edge list)."""

    from_node: int | str
    to_node: int | str
    from_lat: float
    from_lon: float
    to_lat: float
    to_lon: float
    length_m: float
    speed_kmh: float
    narrow: bool = False
    oneway: bool = False
    road_class: str = "local"


def graph_from_edges(rows: Iterable[RoadRow | Mapping[str, Any]]) -> nx.DiGraph:
    """Build the road graph from edge rows (``RoadRow`` or mappings with its fields).

    A two-way row gives two directed edges; a one-way row goes from ``from_node`` to
    ``to_node``. Raises ``ValueError`` naming the row and field on bad input.
    """
    graph = nx.DiGraph()
    for i, raw in enumerate(rows):
        row = raw if isinstance(raw, RoadRow) else _road_row(i, raw)
        where = f"roads[{i}]"
        for name in ("from_lat", "to_lat"):
            value = getattr(row, name)
            if not -90 <= value <= 90:
                raise ValueError(f"{where}.{name}: {value} is outside [-90, 90]")
        for name in ("from_lon", "to_lon"):
            value = getattr(row, name)
            if not -180 <= value <= 180:
                raise ValueError(f"{where}.{name}: {value} is outside [-180, 180]")
        if not (row.length_m > 0 and math.isfinite(row.length_m)):
            raise ValueError(f"{where}.length_m: must be > 0, got {row.length_m}")
        if not (row.speed_kmh > 0 and math.isfinite(row.speed_kmh)):
            raise ValueError(f"{where}.speed_kmh: must be > 0, got {row.speed_kmh}")
        graph.add_node(row.from_node, lat=float(row.from_lat), lon=float(row.from_lon))
        graph.add_node(row.to_node, lat=float(row.to_lat), lon=float(row.to_lon))
        attrs = {
            "length_m": float(row.length_m),
            "speed_kmh": float(row.speed_kmh),
            "narrow": bool(row.narrow),
            "road_class": str(row.road_class),
        }
        _add_edge(graph, row.from_node, row.to_node, attrs)
        if not row.oneway:
            _add_edge(graph, row.to_node, row.from_node, attrs)
    return graph


def _road_row(i: int, raw: Mapping[str, Any]) -> RoadRow:
    try:
        return RoadRow(
            from_node=raw["from_node"],
            to_node=raw["to_node"],
            from_lat=float(raw["from_lat"]),
            from_lon=float(raw["from_lon"]),
            to_lat=float(raw["to_lat"]),
            to_lon=float(raw["to_lon"]),
            length_m=float(raw["length_m"]),
            speed_kmh=float(raw["speed_kmh"]),
            narrow=bool(raw.get("narrow", False)),
            oneway=bool(raw.get("oneway", False)),
            road_class=str(raw.get("road_class", "local")),
        )
    except KeyError as exc:
        raise ValueError(f"roads[{i}].{exc.args[0]}: missing") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"roads[{i}]: {exc}") from None


def _add_edge(graph: nx.DiGraph, u: Any, v: Any, attrs: dict[str, Any]) -> None:
    if u == v:
        return
    old = graph.get_edge_data(u, v)
    # Parallel roads between two junctions: keep the faster one.
    if old is None or attrs["length_m"] / attrs["speed_kmh"] < old["length_m"] / old["speed_kmh"]:
        graph.add_edge(u, v, **attrs)


@dataclass(frozen=True, slots=True)
class OsmRoads:
    """The road graph read from an OpenStreetMap extract, and what was kept of it."""

    graph: nx.DiGraph
    ways: int  # drivable ways that gave at least one edge
    oneway_ways: int
    narrow_ways: int
    # Ways left out, by reason: "not_drivable" (no truck highway tag), "no_access"
    # (access=no/private, motor_vehicle=no), "nodes_missing" (fewer than two of their
    # nodes are in the extract).
    dropped: Mapping[str, int]
    # Kept ways with nodes the extract lacks: split there, never bridged by a straight line.
    ways_cut: int


def graph_from_osm(
    path: str | Path,
    *,
    speeds_kmh: Mapping[str, float] | None = None,
) -> nx.DiGraph:
    """Build the road graph from an OpenStreetMap extract (see :func:`read_osm`)."""
    return read_osm(path, speeds_kmh=speeds_kmh).graph


def read_osm(
    source: str | Path | bytes,
    *,
    file_format: str = "",
    speeds_kmh: Mapping[str, float] | None = None,
) -> OsmRoads:
    """Read an OpenStreetMap extract: a path, or the file's bytes with ``file_format``
    ``"pbf"`` or ``"osm"`` (XML).

    Every way with a drivable ``highway`` tag becomes edges between consecutive
    nodes; ``oneway`` is honoured (``-1``: against the node order); ``maxspeed``
    (km/h or mph, 1..MAX_OSM_SPEED_KMH) overrides the class speed, anything else in it
    (``walk``, ``none``) keeps the class speed; ``living_street``, ``service`` and
    ``track`` ways, and ways narrower than 4 m (``width``), are narrow lanes.
    Raises ``ValueError`` when the extract cannot be read (truncated, not OSM, XML
    with entities).
    """
    import osmium

    speeds = dict(DEFAULT_SPEED_KMH)
    if speeds_kmh:
        speeds.update(speeds_kmh)
    graph = nx.DiGraph()
    counts = dict.fromkeys(("ways", "oneway", "narrow", "cut"), 0)
    dropped = dict.fromkeys(("not_drivable", "no_access", "nodes_missing"), 0)
    if isinstance(source, bytes):
        if file_format not in ("pbf", "osm"):
            raise ValueError(f"file_format must be 'pbf' or 'osm', not {file_format!r}")
        indata: Any = osmium.io.FileBuffer(source, file_format)
    else:
        indata = str(source)
    # Nodes must be read for their locations; only ways matter below.
    processor = osmium.FileProcessor(indata, osmium.osm.NODE | osmium.osm.WAY).with_locations()
    try:
        for obj in processor:
            if isinstance(obj, osmium.osm.Way):
                _add_osm_way(graph, obj, speeds, counts, dropped)
    except (RuntimeError, ValueError) as exc:  # libosmium's parse errors
        raise ValueError(f"cannot read the extract: {exc}") from None
    return OsmRoads(
        graph, counts["ways"], counts["oneway"], counts["narrow"], dropped, counts["cut"]
    )


def _add_osm_way(
    graph: nx.DiGraph,
    way: Any,
    speeds: Mapping[str, float],
    counts: dict[str, int],
    dropped: dict[str, int],
) -> None:
    tags = way.tags
    highway = tags.get("highway")
    if highway not in OSM_HIGHWAY_CLASS:
        dropped["not_drivable"] += 1
        return
    if tags.get("access") in ("no", "private") or tags.get("motor_vehicle") == "no":
        dropped["no_access"] += 1
        return
    road_class = OSM_HIGHWAY_CLASS[highway]
    speed = _osm_speed(tags.get("maxspeed")) or speeds[road_class]
    narrow = highway in OSM_NARROW_HIGHWAYS or _osm_width(tags.get("width")) < OSM_NARROW_WIDTH_M
    oneway_tag = tags.get("oneway", "no")
    oneway = oneway_tag in ("yes", "true", "1", "-1") or highway in ("motorway", "motorway_link")
    # Runs of consecutive nodes the extract has; a missing node splits the way.
    runs: list[list[tuple[int, float, float]]] = [[]]
    for node in way.nodes:
        loc = node.location
        if loc.valid():
            runs[-1].append((node.ref, loc.lat, loc.lon))
        elif runs[-1]:
            runs.append([])
    runs = [run for run in runs if len(run) >= 2]
    if not runs:
        dropped["nodes_missing"] += 1
        return
    counts["cut"] += len(runs) > 1 or len(runs[0]) < len(way.nodes)
    attrs = {"speed_kmh": speed, "narrow": narrow, "road_class": road_class}
    for run in runs:
        if oneway_tag == "-1":
            run.reverse()
        for (a, alat, alon), (b, blat, blon) in itertools.pairwise(run):
            length = float(haversine_m(alat, alon, blat, blon))
            if length <= 0:
                continue
            graph.add_node(a, lat=alat, lon=alon)
            graph.add_node(b, lat=blat, lon=blon)
            _add_edge(graph, a, b, {"length_m": length, **attrs})
            if not oneway:
                _add_edge(graph, b, a, {"length_m": length, **attrs})
    counts["ways"] += 1
    counts["oneway"] += oneway
    counts["narrow"] += narrow


def _osm_speed(value: str | None) -> float | None:
    """km/h from a ``maxspeed`` tag; None for what is not a usable speed (``walk``,
    ``none``, ``0``, ``nan``, ``1e999``)."""
    text = (value or "").strip().lower()
    factor = 1.0
    if text.endswith("mph"):
        text, factor = text[:-3], 1.609344
    try:
        speed = float(text.split()[0]) * factor if text.split() else math.nan
    except ValueError:
        return None
    return speed if 0 < speed <= MAX_OSM_SPEED_KMH else None


def _osm_width(value: str | None) -> float:
    if not value:
        return math.inf
    try:
        return float(value.strip().rstrip("m").strip())
    except ValueError:
        return math.inf


# --------------------------------------------------------------------------- compiling


@dataclass(frozen=True, slots=True, eq=False)
class _Compiled:
    """A road graph compiled for one profile (with or without narrow lanes)."""

    nodes: list[Any]
    lat: npt.NDArray[np.float64]
    lon: npt.NDArray[np.float64]
    weights: csr_matrix  # composite weight, see _LEN_BITS
    component: npt.NDArray[np.int64]  # node positions of the largest SCC
    tree: cKDTree  # over `component`, in local metres
    origin: tuple[float, float]


_lock = threading.Lock()
_compiled: weakref.WeakKeyDictionary[nx.DiGraph, dict[Any, Any]] = weakref.WeakKeyDictionary()
_MATRIX_CACHE_SIZE: Final = 8


def _signature(graph: nx.DiGraph) -> tuple[int, int]:
    return (graph.number_of_nodes(), graph.number_of_edges())


def _cache_for(graph: nx.DiGraph) -> dict[Any, Any]:
    with _lock:
        cache = _compiled.get(graph)
        if cache is None or cache.get("signature") != _signature(graph):
            cache = {"signature": _signature(graph), "matrices": {}}
            _compiled[graph] = cache
        return cache


def _local_xy(
    lat: npt.NDArray[np.float64], lon: npt.NDArray[np.float64], origin: tuple[float, float]
) -> npt.NDArray[np.float64]:
    lat0, lon0 = origin
    x = np.radians(lon - lon0) * EARTH_RADIUS_M * math.cos(math.radians(lat0))
    y = np.radians(lat - lat0) * EARTH_RADIUS_M
    return np.column_stack([x, y])


def compile_graph(graph: nx.DiGraph, *, allow_narrow: bool) -> _Compiled:
    """Compile (and cache) the graph for shortest paths and snapping."""
    cache = _cache_for(graph)
    key = ("compiled", allow_narrow)
    if key in cache:
        return cache[key]
    if graph.number_of_nodes() == 0:
        raise ValueError("graph: the road graph has no nodes")
    nodes = list(graph.nodes)
    pos = {n: i for i, n in enumerate(nodes)}
    try:
        lat = np.array([float(graph.nodes[n]["lat"]) for n in nodes])
        lon = np.array([float(graph.nodes[n]["lon"]) for n in nodes])
    except KeyError as exc:
        raise ValueError(f"graph: a node lacks the {exc.args[0]!r} attribute") from None
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for u, v, data in graph.edges(data=True):
        if data.get("narrow", False) and not allow_narrow:
            continue
        try:
            length = float(data["length_m"])
            speed = float(data["speed_kmh"])
        except KeyError as exc:
            raise ValueError(f"graph: edge {u}->{v} lacks {exc.args[0]!r}") from None
        if length <= 0 or speed <= 0:
            raise ValueError(f"graph: edge {u}->{v} has length_m {length}, speed_kmh {speed}")
        duration_ms = round(length / (speed / 3.6) * 1000.0)
        length_dm = round(length * 10.0)
        rows.append(pos[u])
        cols.append(pos[v])
        vals.append(max(1, duration_ms) * _LEN_SCALE + length_dm)
    n = len(nodes)
    weights = csr_matrix((np.array(vals), (np.array(rows), np.array(cols))), shape=(n, n))
    _, labels = connected_components(weights, directed=True, connection="strong")
    largest = np.bincount(labels).argmax()
    component = np.flatnonzero(labels == largest)
    origin = (float(lat.mean()), float(lon.mean()))
    tree = cKDTree(_local_xy(lat[component], lon[component], origin))
    compiled = _Compiled(nodes, lat, lon, weights, component, tree, origin)
    cache[key] = compiled
    return compiled


def snap(
    graph: nx.DiGraph, lat: float, lon: float, *, allow_narrow: bool = True
) -> tuple[Any, float]:
    """The node nearest to (lat, lon) in the graph's largest strongly connected
    component, and the straight-line distance to it in metres."""
    compiled = compile_graph(graph, allow_narrow=allow_narrow)
    xy = _local_xy(np.array([lat]), np.array([lon]), compiled.origin)
    dist, idx = compiled.tree.query(xy[0])
    node_pos = int(compiled.component[int(idx)])
    offset = float(haversine_m(lat, lon, compiled.lat[node_pos], compiled.lon[node_pos]))
    del dist
    return compiled.nodes[node_pos], offset


class NoPath(RuntimeError):
    """No road leads from one node to the other on the profile asked for."""


class RoadPaths:
    """Fastest paths (ties by length) between the nodes of a road graph, on one
    profile: with or without narrow lanes. One Dijkstra per source; the last
    ``cache_sources`` sources are kept, since a truck leaves the same depot or station
    several times a day. Safe to share between threads."""

    def __init__(self, graph: nx.DiGraph, *, allow_narrow: bool, cache_sources: int = 256) -> None:
        self._graph = graph
        self._allow_narrow = allow_narrow
        self._compiled = compile_graph(graph, allow_narrow=allow_narrow)
        self._pos = {node: i for i, node in enumerate(self._compiled.nodes)}
        self._cache_sources = cache_sources
        self._cache: OrderedDict[Any, tuple[npt.NDArray[np.float64], npt.NDArray[np.int32]]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    def _from(self, source: Any) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int32]]:
        with self._lock:
            hit = self._cache.get(source)
            if hit is not None:
                self._cache.move_to_end(source)
                return hit
        weights, pred = dijkstra(
            self._compiled.weights,
            directed=True,
            indices=self._pos[source],
            return_predecessors=True,
        )
        with self._lock:
            self._cache[source] = (weights, pred)
            if len(self._cache) > self._cache_sources:
                self._cache.popitem(last=False)
        return weights, pred

    def _weight(self, source: Any, target: Any) -> float:
        weight = float(self._from(source)[0][self._pos[target]])
        if not math.isfinite(weight):
            raise NoPath(f"no road from node {source} to node {target}")
        return weight

    def duration_s(self, source: Any, target: Any) -> float:
        """Driving time of the fastest path (free-flow speeds, whole milliseconds a road)."""
        return math.floor(self._weight(source, target) / _LEN_SCALE) / 1000.0

    def path(self, source: Any, target: Any) -> list[Any]:
        """The nodes of the fastest path from source to target, both included."""
        if source == target:
            return [source]
        self._weight(source, target)
        pred = self._from(source)[1]
        nodes = self._compiled.nodes
        j, start = self._pos[target], self._pos[source]
        out = [target]
        while j != start:
            j = int(pred[j])
            out.append(nodes[j])
        out.reverse()
        return out

    def nearest(self, lat: float, lon: float) -> Any:
        """The node nearest to (lat, lon) among those every other can be reached from
        and reach (the profile's largest strongly connected part)."""
        return snap(self._graph, lat, lon, allow_narrow=self._allow_narrow)[0]


def travel_matrix(
    graph: nx.DiGraph,
    locations: Mapping[str, tuple[float, float]],
    *,
    allow_narrow: bool = True,
) -> TravelMatrix:
    """Distance/duration matrix between ``locations`` (key -> (lat, lon)) on the graph.

    Paths are the fastest ones (ties by length) on the roads the profile may use;
    each location adds its off-road leg to the snapped node at 10 km/h.
    """
    keys = list(locations)
    compiled = compile_graph(graph, allow_narrow=allow_narrow)
    if not keys:
        return TravelMatrix((), np.zeros((0, 0)), np.zeros((0, 0)))
    lat = np.array([locations[k][0] for k in keys], dtype=np.float64)
    lon = np.array([locations[k][1] for k in keys], dtype=np.float64)
    _, idx = compiled.tree.query(_local_xy(lat, lon, compiled.origin))
    node_pos = compiled.component[np.asarray(idx, dtype=np.int64)]
    offset_m = haversine_m(lat, lon, compiled.lat[node_pos], compiled.lon[node_pos])
    unique, inverse = np.unique(node_pos, return_inverse=True)
    cache = _cache_for(graph)
    cache_key = (allow_narrow, unique.tobytes())
    matrices: dict[Any, Any] = cache["matrices"]
    if cache_key in matrices:
        road_s, road_m = matrices[cache_key]
    else:
        road_s, road_m = _road_matrix(compiled, unique)
        with _lock:
            if len(matrices) >= _MATRIX_CACHE_SIZE:
                matrices.pop(next(iter(matrices)))
            matrices[cache_key] = (road_s, road_m)
    duration = road_s[np.ix_(inverse, inverse)].copy()
    distance = road_m[np.ix_(inverse, inverse)].copy()
    access_s = offset_m / (ACCESS_SPEED_KMH / 3.6)
    distance += offset_m[:, None] + offset_m[None, :]
    duration += access_s[:, None] + access_s[None, :]
    np.fill_diagonal(distance, 0.0)
    np.fill_diagonal(duration, 0.0)
    return TravelMatrix(tuple(keys), distance, duration)


def _road_matrix(
    compiled: _Compiled, sources: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    k = len(sources)
    duration = np.empty((k, k), dtype=np.float64)
    distance = np.empty((k, k), dtype=np.float64)
    for start in range(0, k, _MATRIX_SOURCE_CHUNK):
        chunk = sources[start : start + _MATRIX_SOURCE_CHUNK]
        w = dijkstra(compiled.weights, directed=True, indices=chunk)[:, sources]
        finite = np.isfinite(w)
        ms = np.where(finite, np.floor(w / _LEN_SCALE), np.inf)
        dm = np.where(finite, w - np.where(finite, ms, 0.0) * _LEN_SCALE, np.inf)
        duration[start : start + len(chunk)] = ms / 1000.0
        distance[start : start + len(chunk)] = dm / 10.0
    return duration, distance


def straight_line_matrix(
    locations: Mapping[str, tuple[float, float]],
    *,
    detour_factor: float = 1.3,
    speed_kmh: float = 25.0,
) -> TravelMatrix:
    """Fallback without a road graph: great-circle distance × ``detour_factor``,
    driven at ``speed_kmh``."""
    if detour_factor < 1.0:
        raise ValueError(f"detour_factor: must be >= 1, got {detour_factor}")
    if speed_kmh <= 0:
        raise ValueError(f"speed_kmh: must be > 0, got {speed_kmh}")
    keys = list(locations)
    lat = np.array([locations[k][0] for k in keys], dtype=np.float64)
    lon = np.array([locations[k][1] for k in keys], dtype=np.float64)
    distance = haversine_m(lat[:, None], lon[:, None], lat[None, :], lon[None, :]) * detour_factor
    duration = distance / (speed_kmh / 3.6)
    return TravelMatrix(tuple(keys), distance, duration)
