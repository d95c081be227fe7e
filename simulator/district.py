"""A district given as import files (docs/import.md) as a simulator `City`.

`read_district(dir)` (and `load_city(dir)` when the folder has no city.json) reads exactly what `clearday import` reads —
depots, stations, points, trucks (CSV or GeoJSON) and roads.geojson — through the
importer's own parser, so a file that imports is a file that drives, and builds:

* **the road graph** (the contract of `simulator.city`): a junction is a node with
  the file's own id (`from_node` / `to_node`) at the LineString's end; interior
  vertices of a LineString become nodes of their own (ids above the largest junction
  id) so that trucks follow the road's shape; `oneway`, `narrow`, `speed_kmh`,
  `road_class` and `length_m` (spread over the pieces by their geometric length) are
  honoured. Parallel roads between two nodes keep the faster one (as
  `routing.graph` does); a two-point road from a node to itself is left out. A road
  cut into pieces (at its vertices or at sites) gives them ids `{id}#1`, `{id}#2`, …
* **sites on the roads**: each depot, station and point is attached to the nearest
  road a truck that serves it may use (depots, stations and normal points: roads
  without narrow lanes; narrow points: any road). Within `SNAP_NODE_M` of a node it
  stops at that node, else the road is split there by a new node, so a truck that
  drives to the site stops at the kerb nearest to it. A site keeps its own
  coordinates (those in the database); its node is where the truck stops.
* **points** carry `bin_count` (one bin-lift event per bin): 0 without bins, else
  a count drawn from the point id (1–6; kitchen waste 2–8), the same on every load.

Every problem is reported with its file and row (`DistrictError`): rows the
importer rejects, a junction placed at two spots, a site farther from a road than a
truck could stop from (a point: its geofence radius; a station 50 m, a depot 60 m:
the alert rules' radii), a truck whose depot is missing, and sites a truck type
cannot reach and leave again (the roads it may use are not strongly connected
between its depot, the stations and the points it may serve).
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Any, cast

import networkx as nx
import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from fleet import importer
from fleet.importer import RowError
from routing.vocab import AccessClass, RoadClass, TruckType
from simulator import geo
from simulator.city import CITY_SIDECAR, City, Depot, Point, Station, Truck
from simulator.city import Road as CityRoad

SNAP_NODE_M = 3.0  # a site this close to a node stops at that node
MERGE_M = 1.0  # sites this close along one road share a node
NODE_MISMATCH_M = 5.0  # ends of two roads that name the same node must be this close
STATION_OFFSET_M = 50.0  # farthest a station may be from a road (alert_station_radius_m)
DEPOT_OFFSET_M = 60.0  # farthest a depot may be from a road (alert_depot_radius_m)
SAMPLE_STEP_M = 10.0  # spacing of the samples that find the nearest road
REQUIRED_KINDS = {  # kind -> the files that may give it
    "depots": "depots.csv or depots.geojson",
    "stations": "stations.csv or stations.geojson",
    "points": "points.csv or points.geojson",
    "trucks": "trucks.csv",
    "roads": "roads.geojson",
}
MAX_SHOWN = 30


class DistrictError(ValueError):
    """The files do not make a drivable district; `errors` lists every problem."""

    def __init__(self, directory: Path, errors: list[RowError]) -> None:
        self.errors = errors
        lines = [
            f"  {e.file}: {e.message}" if e.line == 0 else f"  {e}" for e in errors[:MAX_SHOWN]
        ]
        if len(errors) > MAX_SHOWN:
            lines.append(f"  … and {len(errors) - MAX_SHOWN} more")
        super().__init__(
            f"{directory}: {len(errors)} problem(s) in the district files:\n" + "\n".join(lines)
        )


@dataclass(slots=True)
class _Piece:
    """One straight piece of a road, between two nodes of the graph."""

    a: int
    b: int
    road: dict[str, Any]  # the parsed roads.geojson row
    length_m: float  # driving length (the row's length_m spread by geometry)


def load_city(directory: str | Path) -> City:
    """The city in a folder: rebuilt from its city.json generator settings
    (`City.write`), or, without one, read from its import files (`read_district`)."""
    folder = Path(directory)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    if (folder / CITY_SIDECAR).is_file():
        return City.from_sidecar(folder)
    return read_district(folder)


def read_district(directory: str | Path) -> City:
    """A real district's import files as a City; DistrictError lists what is wrong."""
    folder = Path(directory)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    rows = _import_rows(folder)
    errors: list[RowError] = []
    names = _road_names(folder, rows["roads"])
    nodes, pieces = _road_pieces(rows["roads"], errors)
    if errors:
        raise DistrictError(folder, errors)

    sites = _Sites(nodes, pieces)
    depot_nodes = [
        sites.attach(r, DEPOT_OFFSET_M, narrow_ok=False, errors=errors) for r in rows["depots"]
    ]
    station_nodes = [
        sites.attach(r, STATION_OFFSET_M, narrow_ok=False, errors=errors) for r in rows["stations"]
    ]
    point_nodes = [
        sites.attach(
            r, r["geofence_radius_m"], narrow_ok=r["access_class"] == "narrow", errors=errors
        )
        for r in rows["points"]
    ]
    if errors:
        raise DistrictError(folder, errors)
    graph, roads = sites.build(names)

    depots = tuple(
        Depot(id=r["id"], name=r["name"], lat=r["lat"], lon=r["lon"], node=n)
        for r, n in zip(rows["depots"], depot_nodes, strict=True)
    )
    stations = tuple(_station(r, n) for r, n in zip(rows["stations"], station_nodes, strict=True))
    points = tuple(_point(r, n) for r, n in zip(rows["points"], point_nodes, strict=True))
    trucks = tuple(_truck(r) for r in rows["trucks"])
    where = {
        (kind, row["id"]): row["__where__"]
        for kind in ("depots", "stations", "points", "trucks")
        for row in rows[kind]
    }
    _check_ids(rows, errors)
    depot_ids = {d.id for d in depots}
    for t in trucks:
        if t.depot_id not in depot_ids:
            errors.append(
                _row_error(where[("trucks", t.id)], f"depot_id {t.depot_id!r} is not in the depots")
            )
    if errors:
        raise DistrictError(folder, errors)
    _check_reachable(graph, depots, stations, points, trucks, where, errors)
    if errors:
        raise DistrictError(folder, errors)
    districts = {
        row["district"] for kind in ("depots", "stations", "points", "trucks") for row in rows[kind]
    }
    return City(
        config=None,
        graph=graph,
        roads=roads,
        depots=depots,
        stations=stations,
        points=points,
        trucks=trucks,
        source=folder,
        district=districts.pop() if len(districts) == 1 else None,
    )


def _import_rows(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """The folder's import files, each kind present and every row valid, by kind."""
    files = importer.read_paths([folder])
    present = {importer.kind_of(name) for name, _ in files}
    missing = [
        RowError(
            REQUIRED_KINDS[kind].split()[0],
            0,
            f"missing: the district's {kind} ({REQUIRED_KINDS[kind]})",
        )
        for kind in REQUIRED_KINDS
        if kind not in present
    ]
    if missing:
        raise DistrictError(folder, missing)
    try:
        return importer.parse_files(files).rows
    except importer.ImportRejected as exc:
        raise DistrictError(folder, exc.errors) from None


def _row_error(where: tuple[str, int], message: str) -> RowError:
    return RowError(where[0], where[1], message)


# ---- roads -----------------------------------------------------------------------------
def _road_names(folder: Path, roads: list[dict[str, Any]]) -> dict[int, str]:
    """Road names by feature index (the importer keeps only the columns it stores)."""
    if not roads:
        return {}
    filename = roads[0]["__where__"][0]
    document = json.loads((folder / filename).read_text(encoding="utf-8-sig"))
    out = {}
    for index, feature in enumerate(document.get("features") or []):
        name = (feature.get("properties") or {}).get("name")
        if name not in (None, ""):
            out[index] = str(name)
    return out


def _road_pieces(
    roads: list[dict[str, Any]], errors: list[RowError]
) -> tuple[dict[int, tuple[float, float]], list[_Piece]]:
    """Node coordinates (node -> (lat, lon)) and the straight pieces of every road."""
    nodes: dict[int, tuple[float, float]] = {}
    first_seen: dict[int, int] = {}
    for row in roads:
        coords = row["coordinates"]
        for node, (lon, lat) in ((row["from_node"], coords[0]), (row["to_node"], coords[-1])):
            known = nodes.get(node)
            if known is None:
                nodes[node] = (float(lat), float(lon))
                first_seen[node] = row["__where__"][1]
                continue
            apart = geo.haversine_m(known[0], known[1], lat, lon)
            if apart > NODE_MISMATCH_M:
                errors.append(
                    _row_error(
                        row["__where__"],
                        f"node {node} ends this road at ({lat}, {lon}) but feature "
                        f"{first_seen[node]} puts it {apart:.0f} m away; a junction id "
                        "must name one place",
                    )
                )
    next_id = max(nodes, default=-1) + 1
    pieces: list[_Piece] = []
    for row in roads:
        coords = row["coordinates"]
        chain: list[int] = [row["from_node"]]
        shape: list[tuple[float, float]] = [nodes[row["from_node"]]]
        for lon, lat in coords[1:-1]:
            here = (float(lat), float(lon))
            if here == shape[-1]:
                continue
            nodes[next_id] = here
            chain.append(next_id)
            shape.append(here)
            next_id += 1
        chain.append(row["to_node"])
        shape.append(nodes[row["to_node"]])
        if len(chain) == 2 and chain[0] == chain[1]:
            continue  # a two-point road from a node to itself: no way anywhere
        geometric = [geo.haversine_m(*shape[k], *shape[k + 1]) for k in range(len(shape) - 1)]
        total = sum(geometric)
        for k in range(len(chain) - 1):
            share = geometric[k] / total if total > 0 else 1.0 / (len(chain) - 1)
            pieces.append(_Piece(chain[k], chain[k + 1], row, float(row["length_m"]) * share))
    return nodes, pieces


class _Sites:
    """Attaches sites to the nearest usable road piece, then splits the pieces."""

    def __init__(self, nodes: dict[int, tuple[float, float]], pieces: list[_Piece]) -> None:
        self.nodes = nodes
        self.pieces = pieces
        self.next_id = max(nodes, default=-1) + 1
        lats = [lat for lat, _ in nodes.values()]
        lons = [lon for _, lon in nodes.values()]
        self.lat0, self.lon0 = sum(lats) / len(lats), sum(lons) / len(lons)
        self.kx, self.ky = geo.m_per_deg_lon(self.lat0), geo.M_PER_DEG_LAT
        self.ends = [(*self.xy(*nodes[p.a]), *self.xy(*nodes[p.b])) for p in pieces]
        self.trees: dict[bool, tuple[cKDTree, np.ndarray]] = {}
        ends = np.array(self.ends, dtype=np.float64).reshape(-1, 4)
        narrow = np.array([bool(p.road["narrow"]) for p in pieces], dtype=bool)
        steps = np.maximum(
            1, np.ceil(np.hypot(ends[:, 2] - ends[:, 0], ends[:, 3] - ends[:, 1]) / SAMPLE_STEP_M)
        ).astype(np.int64)
        for narrow_ok in (True, False):
            # Samples every <= SAMPLE_STEP_M along each usable piece, ends included.
            usable = ~narrow | narrow_ok
            owner = np.repeat(np.flatnonzero(usable), steps[usable] + 1)
            if owner.size == 0:
                continue
            starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
            k = np.arange(owner.size) - np.repeat(starts, np.diff(np.r_[starts, owner.size]))
            f = (k / steps[owner])[:, None]
            e = ends[owner]
            samples = e[:, 0:2] + (e[:, 2:4] - e[:, 0:2]) * f
            self.trees[narrow_ok] = (cKDTree(samples), owner)
        # piece -> [(metres from a, node)], filled by attach()
        self.splits: dict[int, list[tuple[float, int]]] = defaultdict(list)

    def xy(self, lat: float, lon: float) -> tuple[float, float]:
        return (lon - self.lon0) * self.kx, (lat - self.lat0) * self.ky

    def length(self, i: int) -> float:
        ax, ay, bx, by = self.ends[i]
        return math.hypot(bx - ax, by - ay)

    def project(self, i: int, px: float, py: float) -> tuple[float, float]:
        """Distance from (px, py) to piece i, and how far along the piece its foot is."""
        ax, ay, bx, by = self.ends[i]
        sx, sy = bx - ax, by - ay
        seg2 = sx * sx + sy * sy
        t = 0.0 if seg2 == 0 else max(0.0, min(1.0, ((px - ax) * sx + (py - ay) * sy) / seg2))
        return math.hypot(px - ax - t * sx, py - ay - t * sy), t * math.sqrt(seg2)

    def attach(
        self, row: dict[str, Any], limit_m: float, *, narrow_ok: bool, errors: list[RowError]
    ) -> int:
        """The node a truck stops at for this site (-1 and an error if none is near)."""
        kind = "road" if narrow_ok else "road without narrow lanes"
        tree = self.trees.get(narrow_ok)
        if tree is None:
            errors.append(_row_error(row["__where__"], f"{row['id']}: there is no {kind} at all"))
            return -1
        px, py = self.xy(row["lat"], row["lon"])
        candidates = {
            int(tree[1][i]) for i in tree[0].query_ball_point((px, py), limit_m + SAMPLE_STEP_M)
        }
        best: tuple[float, int, float] | None = None  # (distance, piece, metres from a)
        for i in sorted(candidates):
            d, along = self.project(i, px, py)
            if best is None or d < best[0]:
                best = (d, i, along)
        if best is None or best[0] > limit_m:
            _, sample = tree[0].query((px, py))
            nearest, _ = self.project(int(tree[1][sample]), px, py)
            what = "its geofence radius" if "geofence_radius_m" in row else "where a truck can stop"
            errors.append(
                _row_error(
                    row["__where__"],
                    f"{row['id']} ({row['name']}) is {nearest:.0f} m from the nearest {kind}, "
                    f"farther than {limit_m:g} m ({what}); add the road that leads to it or "
                    "correct its lat/lon",
                )
            )
            return -1
        _, i, along = best
        piece = self.pieces[i]
        length = self.length(i)
        if along <= SNAP_NODE_M:
            return piece.a
        if along >= length - SNAP_NODE_M:
            return piece.b
        for at, node in self.splits[i]:
            if abs(at - along) <= MERGE_M:
                return node
        node = self.next_id
        self.next_id += 1
        f = along / length
        (lat1, lon1), (lat2, lon2) = self.nodes[piece.a], self.nodes[piece.b]
        self.nodes[node] = (round(lat1 + f * (lat2 - lat1), 7), round(lon1 + f * (lon2 - lon1), 7))
        self.splits[i].append((along, node))
        return node

    def build(self, names: dict[int, str]) -> tuple[nx.DiGraph, tuple[CityRoad, ...]]:
        """The graph and the road pieces, the pieces split at the sites' nodes. A road
        cut into pieces gives them ids `{id}#1`, `{id}#2`, … (written back, they stay
        unique); a road in one piece keeps its id."""
        graph = nx.DiGraph()
        spans: list[tuple[_Piece, int, int, float]] = []  # (piece, from, to, length_m)
        for i, piece in enumerate(self.pieces):
            length = self.length(i)
            cuts = sorted(self.splits.get(i, []))
            chain = [(0.0, piece.a), *cuts, (length, piece.b)]
            for (at1, u), (at2, v) in itertools.pairwise(chain):
                share = (at2 - at1) / length if length > 0 else 1.0
                spans.append((piece, u, v, piece.length_m * share))
        per_road: dict[int, int] = defaultdict(int)
        for piece, *_ in spans:
            per_road[piece.road["__where__"][1]] += 1
        seen: dict[int, int] = defaultdict(int)
        roads: list[CityRoad] = []
        for piece, u, v, length_m in spans:
            row = piece.road
            feature = row["__where__"][1]
            seen[feature] += 1
            roads.append(
                CityRoad(
                    id=row["id"] if per_road[feature] == 1 else f"{row['id']}#{seen[feature]}",
                    from_node=u,
                    to_node=v,
                    road_class=cast(RoadClass, row["road_class"]),
                    speed_kmh=float(row["speed_kmh"]),
                    oneway=bool(row["oneway"]),
                    narrow=bool(row["narrow"]),
                    name=names.get(feature, ""),
                    length_m=max(round(length_m, 1), 0.1),
                )
            )
        used = {n for r in roads for n in (r.from_node, r.to_node)}
        for node in sorted(used):
            lat, lon = self.nodes[node]
            graph.add_node(node, lat=lat, lon=lon)
        for r in roads:
            attrs = {
                "length_m": r.length_m,
                "speed_kmh": r.speed_kmh,
                "narrow": r.narrow,
                "road_class": r.road_class,
                "road_id": r.id,
                "name": r.name,
            }
            _add_edge(graph, r.from_node, r.to_node, attrs)
            if not r.oneway:
                _add_edge(graph, r.to_node, r.from_node, attrs)
        return graph, tuple(roads)


def _add_edge(graph: nx.DiGraph, u: int, v: int, attrs: dict[str, Any]) -> None:
    if u == v:
        return
    old = graph.get_edge_data(u, v)
    # Parallel roads between two nodes: keep the faster one (as routing.graph does).
    if old is None or attrs["length_m"] / attrs["speed_kmh"] < old["length_m"] / old["speed_kmh"]:
        graph.add_edge(u, v, **attrs)


# ---- sites and fleet -------------------------------------------------------------------
def _s(t: time) -> int:
    return t.hour * 3600 + t.minute * 60


def _station(row: dict[str, Any], node: int) -> Station:
    capacity = row["daily_capacity_kg"]
    return Station(
        id=row["id"],
        name=row["name"],
        lat=row["lat"],
        lon=row["lon"],
        node=node,
        streams=tuple(row["streams"]),
        opens_s=_s(row["opens_at"]),
        closes_s=_s(row["closes_at"]),
        tipping_time_s=row["tipping_time_s"],
        daily_capacity_kg=None if capacity is None else round(capacity),
    )


def bin_count(point_id: str, stream: str, has_bins: bool) -> int:
    """Bins at a point the files do not count: drawn from its id, so stable."""
    if not has_bins:
        return 0
    rng = random.Random(f"clearday-bins:{point_id}")
    return rng.randint(2, 8) if stream == "kitchen" else rng.randint(1, 6)


def _point(row: dict[str, Any], node: int) -> Point:
    service = row["service_time_s"]
    min_dwell = row["min_dwell_s"]
    return Point(
        id=row["id"],
        name=row["name"],
        lat=row["lat"],
        lon=row["lon"],
        node=node,
        stream=row["stream"],
        daily_amount_kg=round(row["daily_amount_kg"]),
        service_time_s=service,
        window_start_s=_s(row["window_start"]),
        window_end_s=_s(row["window_end"]),
        geofence_radius_m=round(row["geofence_radius_m"]),
        min_dwell_s=service // 2 if min_dwell is None else min_dwell,
        clearance_deadline_s=_s(row["clearance_deadline"]),
        access_class=cast(AccessClass, row["access_class"]),
        has_bins=row["has_bins"],
        bin_count=bin_count(row["id"], row["stream"], row["has_bins"]),
    )


def _truck(row: dict[str, Any]) -> Truck:
    return Truck(
        id=row["id"],
        plate=row["plate"],
        truck_type=cast(TruckType, row["truck_type"]),
        capacity_kg=round(row["capacity_kg"]),
        streams=tuple(row["streams"]),
        depot_id=row["depot_id"],
        terminal_id=row["terminal_id"],
        shift_start_s=_s(row["shift_start"]),
        shift_end_s=_s(row["shift_end"]),
        break_duration_s=row["break_duration_s"],
        break_earliest_s=_s(row["break_earliest"]),
        break_latest_s=_s(row["break_latest"]),
        can_enter_narrow=row["can_enter_narrow"],
    )


def _check_ids(rows: dict[str, list[dict[str, Any]]], errors: list[RowError]) -> None:
    """A plan names depots, stations and points by id alone: one namespace."""
    seen: dict[str, tuple[str, int]] = {}
    for kind in ("depots", "stations", "points"):
        for row in rows[kind]:
            name, line = row["__where__"]
            first = seen.setdefault(row["id"], (name, line))
            if first != (name, line):
                errors.append(
                    RowError(name, line, f"id {row['id']!r} is already used in {first[0]}")
                )


def _main_part(graph: nx.DiGraph, relevant: list[int], *, narrow_ok: bool) -> set[int]:
    """The nodes of the strongly connected part of the roads (with or without narrow
    lanes) that holds most of the `relevant` nodes; the first one's part wins a tie."""
    index = {node: i for i, node in enumerate(graph.nodes)}
    usable = [
        (index[u], index[v])
        for u, v, d in graph.edges(data=True)
        if narrow_ok or not bool(d["narrow"])
    ]
    rows, cols = zip(*usable, strict=True) if usable else ((), ())
    matrix = csr_matrix((np.ones(len(usable)), (rows, cols)), shape=(len(index),) * 2)
    _, labels = connected_components(matrix, directed=True, connection="strong")
    comp = {node: int(labels[i]) for node, i in index.items()}
    counts: dict[int, int] = defaultdict(int)
    for node in relevant:
        counts[comp[node]] += 1
    home = comp[relevant[0]]
    main = max(counts, key=lambda k: (counts[k], k == home))
    return {node for node, label in comp.items() if label == main}


def _check_reachable(
    graph: nx.DiGraph,
    depots: Iterable[Depot],
    stations: Iterable[Station],
    points: Iterable[Point],
    trucks: Iterable[Truck],
    where: dict[tuple[str, str], tuple[str, int]],
    errors: list[RowError],
) -> None:
    """Every truck type's roads must join its depots, the stations that take what it
    carries and the points it may serve in one strongly connected part: there and back."""
    depot_by_id = {d.id: d for d in depots}
    trucks = list(trucks)
    stations = list(stations)
    points = list(points)
    users: dict[tuple[str, str], list[Truck]] = {}

    def users_of(p: Point) -> list[Truck]:
        """The trucks that may serve a point (by stream and access class)."""
        key = (p.stream, p.access_class)
        if key not in users:
            users[key] = [t for t in trucks if t.can_serve(p)]
        return users[key]

    main_part: dict[bool, set[int]] = {}
    for narrow_ok in sorted({t.can_enter_narrow for t in trucks}):
        relevant = [depot_by_id[t.depot_id].node for t in trucks if t.can_enter_narrow == narrow_ok]
        relevant += [s.node for s in stations]
        relevant += [
            p.node for p in points if any(t.can_enter_narrow == narrow_ok for t in users_of(p))
        ]
        main_part[narrow_ok] = _main_part(graph, relevant, narrow_ok=narrow_ok)

    def inside(node: int, narrow_ok: bool) -> bool:
        return node in main_part[narrow_ok]

    def profile(narrow_ok: bool) -> str:
        return "any road" if narrow_ok else "the roads without narrow lanes (big trucks)"

    reported_depots: set[str] = set()
    for t in trucks:
        depot = depot_by_id[t.depot_id]
        if not inside(depot.node, t.can_enter_narrow) and depot.id not in reported_depots:
            reported_depots.add(depot.id)
            errors.append(
                _row_error(
                    where[("depots", depot.id)],
                    f"depot {depot.id} (home of {t.id}) is cut off from the rest of the district "
                    f"on {profile(t.can_enter_narrow)}: the road graph is not strongly "
                    "connected there (check one-way roads near it)",
                )
            )
    for s in stations:
        carriers = [t for t in trucks if set(t.streams) & set(s.streams)]
        if carriers and not any(inside(s.node, t.can_enter_narrow) for t in carriers):
            errors.append(
                _row_error(
                    where[("stations", s.id)],
                    f"station {s.id} ({s.name}) cannot be reached and left again from the "
                    f"depots on {profile(carriers[0].can_enter_narrow)}: the road graph is not "
                    "strongly connected there (check one-way roads near it)",
                )
            )
    for p in points:
        servers = users_of(p)
        if servers and not any(inside(p.node, t.can_enter_narrow) for t in servers):
            errors.append(
                _row_error(
                    where[("points", p.id)],
                    f"point {p.id} ({p.name}) cannot be reached and left again by the trucks "
                    f"that may serve it ({', '.join(t.id for t in servers)}) on "
                    f"{profile(any(t.can_enter_narrow for t in servers))}: the road graph is not "
                    "strongly connected there (check one-way roads near it)",
                )
            )
