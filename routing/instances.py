"""Benchmark instance readers and a synthetic district, as :class:`Problem` values.

* CVRPLIB (``.vrp``, EUC_2D, distances rounded to the nearest integer) and its
  ``.sol`` ("Cost N");
* Solomon / Gehring–Homberger text format (DIMACS convention: Euclidean distance
  truncated to one decimal, travel time = distance, objective = distance);
* Kim, Kim & Sahoo (2006) waste collection (``*_stop.txt``): Manhattan distance in
  feet at 40 mph, landfills (stop type 2) as stations, a one-hour lunch break
  starting 11:00–12:00, vehicle capacity and a daily "route capacity" in yards;
* :func:`synthetic_district`: a seeded grid city (networkx road graph in the shape the
  simulator produces) with depots, stations, points and trucks — for tests and the
  3,000-point benchmark.

Benchmark units are carried in the problem's fields as they are (CVRPLIB "distance"
in ``distance_m``, yards in ``amount_kg``); Kim's feet are converted to metres.
Coordinates become fake WGS-84 positions near (0, 0) so that decomposition by
geography works; travel comes from the explicit matrices, not from those positions.
This module never imports PyVRP.
"""

from __future__ import annotations

import csv
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np

from routing.matrix import TravelMatrix
from routing.problem import (
    DAY_S,
    MAX_TIME_S,
    Depot,
    Point,
    Problem,
    Station,
    Truck,
    build_problem,
    depot_key,
    point_key,
    station_key,
)
from routing.vocab import DEFAULT_SPEED_KMH, EARTH_RADIUS_M

FEET_M = 0.3048
MILE_M = 1609.344
ALL_STREAMS = frozenset({"other"})


@dataclass(frozen=True, slots=True)
class Instance:
    """A benchmark instance: the problem, its best-known value (in the instance's own
    distance unit) and how to turn plan metres into that unit."""

    name: str
    kind: str  # cvrp | vrptw | wcvrptw | synthetic
    problem: Problem
    bks: float | None = None
    bks_convention: str = ""
    unit_per_m: float = 1.0  # multiply plan distance_m by this to get the instance unit
    notes: str = ""


def _fake_latlon(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    span = max(float(np.ptp(x)), float(np.ptp(y)), 1e-9)
    lat = (y - float(np.mean(y))) / span * 1.0
    lon = (x - float(np.mean(x))) / span * 1.0
    return lat, lon


def _problem_from_xy(
    name: str,
    xy: np.ndarray,
    distance: np.ndarray,
    duration: np.ndarray,
    depot_idx: int,
    points: list[dict[str, float]],
    station_idx: list[tuple[int, dict[str, float]]],
    trucks: list[Truck],
) -> Problem:
    lat, lon = _fake_latlon(xy[:, 0], xy[:, 1])
    keys: list[str] = []
    order: list[int] = []
    depot = Depot("D0", float(lat[depot_idx]), float(lon[depot_idx]))
    keys.append(depot_key("D0"))
    order.append(depot_idx)
    stations = []
    for k, (idx, attrs) in enumerate(station_idx):
        sid = f"S{k + 1}"
        stations.append(
            Station(
                sid,
                float(lat[idx]),
                float(lon[idx]),
                frozenset(ALL_STREAMS),
                opens_s=attrs["opens_s"],
                closes_s=attrs["closes_s"],
                tipping_time_s=attrs["tipping_time_s"],
            )
        )
        keys.append(station_key(sid))
        order.append(idx)
    pts = []
    for attrs in points:
        idx = int(attrs["idx"])
        pid = str(int(attrs["id"]))
        pts.append(
            Point(
                pid,
                float(lat[idx]),
                float(lon[idx]),
                "other",
                attrs["amount"],
                service_time_s=attrs["service"],
                window_start_s=attrs["ready"],
                window_end_s=attrs["due"],
            )
        )
        keys.append(point_key(pid))
        order.append(idx)
    o = np.array(order)
    matrix = TravelMatrix(tuple(keys), distance[np.ix_(o, o)], duration[np.ix_(o, o)])
    return Problem(
        points=tuple(pts),
        stations=tuple(stations),
        depots=(depot,),
        trucks=tuple(trucks),
        matrix=matrix,
        name=name,
    )


# --------------------------------------------------------------------------- CVRPLIB


def read_cvrplib(path: str | Path, *, extra_vehicles: float = 0.2) -> Instance:
    """A CVRPLIB ``.vrp`` (EUC_2D) with its ``.sol`` next to it if present."""
    path = Path(path)
    text = path.read_text()
    header: dict[str, str] = {}
    sections: dict[str, list[list[str]]] = {}
    current: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line == "EOF":
            continue
        if line.endswith("SECTION"):
            current = line
            sections[current] = []
            continue
        if current is None and ":" in line:
            field, value = line.split(":", 1)
            header[field.strip().upper()] = value.strip().strip('"')
            continue
        if current is not None:
            sections[current].append(line.split())
    if header.get("EDGE_WEIGHT_TYPE", "EUC_2D") != "EUC_2D":
        raise ValueError(f"{path}: only EUC_2D instances are supported")
    coords = np.array([[float(r[1]), float(r[2])] for r in sections["NODE_COORD_SECTION"]])
    demand = [float(r[1]) for r in sections["DEMAND_SECTION"]]
    depot_rows = [int(r[0]) for r in sections.get("DEPOT_SECTION", [["1"]]) if r[0] != "-1"]
    depot_idx = depot_rows[0] - 1
    capacity = float(header["CAPACITY"])
    diff = coords[:, None, :] - coords[None, :, :]
    dist = np.floor(np.sqrt((diff**2).sum(-1)) + 0.5)  # nint
    duration = np.zeros_like(dist)
    name = header.get("NAME", path.stem)
    match = re.search(r"-k(\d+)", name)
    k = int(match.group(1)) if match else math.ceil(sum(demand) / capacity)
    n_trucks = k + max(3, math.ceil(k * extra_vehicles))
    points = [
        {"idx": i, "id": i, "amount": demand[i], "service": 0.0, "ready": 0.0, "due": MAX_TIME_S}
        for i in range(len(coords))
        if i != depot_idx
    ]
    trucks = [
        Truck(
            f"V{v + 1}",
            capacity,
            frozenset(ALL_STREAMS),
            "D0",
            "D0",
            shift_start_s=0.0,
            shift_end_s=MAX_TIME_S,
        )
        for v in range(n_trucks)
    ]
    problem = _problem_from_xy(name, coords, dist, duration, depot_idx, points, [], trucks)
    bks = _sol_cost(path.with_suffix(".sol"))
    return Instance(name, "cvrp", problem, bks, "distance" if bks else "")


def _sol_cost(path: Path) -> float | None:
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        if line.strip().lower().startswith("cost"):
            return float(line.split()[1])
    return None


# --------------------------------------------------------------------------- Solomon


def read_solomon(path: str | Path, *, bks_csv: str | Path | None = None) -> Instance:
    """A Solomon / Gehring–Homberger instance (DIMACS: distance truncated to 0.1)."""
    path = Path(path)
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    name = lines[0]
    vi = next(i for i, ln in enumerate(lines) if ln.upper().startswith("NUMBER"))
    n_vehicles, capacity = (float(x) for x in lines[vi + 1].split()[:2])
    rows = []
    ci = next(i for i, ln in enumerate(lines) if ln.upper().startswith("CUST"))
    for ln in lines[ci + 1 :]:
        parts = ln.split()
        if len(parts) >= 7 and parts[0].isdigit():
            rows.append([float(x) for x in parts[:7]])
    data = np.array(rows)
    coords = data[:, 1:3]
    diff = coords[:, None, :] - coords[None, :, :]
    dist = np.floor(np.sqrt((diff**2).sum(-1)) * 10.0) / 10.0
    depot = data[0]
    points = [
        {
            "idx": i,
            "id": int(data[i, 0]),
            "amount": data[i, 3],
            "ready": data[i, 4],
            "due": data[i, 5],
            "service": data[i, 6],
        }
        for i in range(1, len(data))
    ]
    trucks = [
        Truck(
            f"V{v + 1}",
            capacity,
            frozenset(ALL_STREAMS),
            "D0",
            "D0",
            shift_start_s=float(depot[4]),
            shift_end_s=float(depot[5]),
        )
        for v in range(int(n_vehicles))
    ]
    problem = _problem_from_xy(name, coords, dist, dist.copy(), 0, points, [], trucks)
    bks, conv = _vrptw_bks(path, name, bks_csv)
    return Instance(name, "vrptw", problem, bks, conv)


def _vrptw_bks(path: Path, name: str, bks_csv: str | Path | None) -> tuple[float | None, str]:
    """Distance-only best-known value: the instance's ``.sol`` (or
    ``NAME.dimacs.sol``), else the distance-only row of ``bks.csv``; hierarchical
    (vehicles first) values are returned with convention ``hierarchical``."""
    for candidate in (
        path.with_suffix(".sol"),
        path.parent / f"{name.upper()}.sol",
        path.parent / f"{name}.sol",
        path.parent / f"{name.upper()}.dimacs.sol",
    ):
        cost = _sol_cost(candidate)
        if cost is not None:
            return cost, "distance"
    rows = _bks_rows(path, bks_csv)
    hier = None
    for row in rows:
        if row["instance"].lower() != name.lower():
            continue
        conv = row.get("convention", "")
        if "HIERARCHICAL" in conv.upper():
            hier = float(row["bks"])
        else:
            return float(row["bks"]), "distance"
    if hier is not None:
        return hier, "hierarchical"
    return None, ""


def _bks_rows(path: Path, bks_csv: str | Path | None) -> list[dict[str, str]]:
    candidates = [Path(bks_csv)] if bks_csv else []
    for parent in path.parents:
        candidates.append(parent / "bks.csv")
    for c in candidates:
        if c.exists():
            with c.open() as fh:
                return list(csv.DictReader(fh))
    return []


# --------------------------------------------------------------------------- Kim et al.


def _hhmm(value: str) -> float:
    v = int(float(value))
    return (v // 100) * 3600.0 + (v % 100) * 60.0


def read_kim(
    path: str | Path,
    *,
    n_trucks: int | None = None,
    bks_csv: str | Path | None = None,
) -> Instance:
    """A Kim et al. (2006) ``*_stop.txt`` waste-collection instance.

    Distances: Manhattan, feet converted to metres; travel at the file's speed (mph).
    Stop type 0 is the depot (its window is the trucks' shift), 2 a landfill
    (station, its service time is the tipping time), 1 a collection stop (window on the
    service start). Every truck has the file's vehicle capacity, its daily yardage as
    ``max_day_load_kg`` and a lunch break of the given duration starting 11:00–12:00.
    The fleet size is not given by the format: by default the lower bound from the
    daily yardage plus two.
    """
    path = Path(path)
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    capacity, day_cap, _max_stops, lunch_s, speed_mph = _kim_header(lines)
    rows = _kim_rows(lines[6:])
    xy = np.array([[r["x"], r["y"]] for r in rows])
    feet = np.abs(xy[:, None, 0] - xy[None, :, 0]) + np.abs(xy[:, None, 1] - xy[None, :, 1])
    metres = feet * FEET_M
    seconds = feet / 5280.0 / speed_mph * 3600.0
    depot_idx = next(i for i, r in enumerate(rows) if r["type"] == 0)
    station_idx = _kim_landfills(rows)
    points = _kim_stops(rows)
    if n_trucks is None:
        n_trucks = _kim_fleet(rows, depot_idx, station_idx, seconds, capacity, day_cap, lunch_s)
    trucks = _kim_trucks(n_trucks, rows[depot_idx], capacity, day_cap, lunch_s)
    name = path.stem
    problem = _problem_from_xy(name, xy, metres, seconds, depot_idx, points, station_idx, trucks)
    bks = None
    for row in _bks_rows(path, bks_csv):
        if row["instance"] == name:
            bks = float(row["bks"])
    return Instance(
        name,
        "wcvrptw",
        problem,
        bks,
        "kim2006-miles" if bks else "",
        unit_per_m=1.0 / MILE_M,
        notes=f"{n_trucks} trucks; route max stops/day not modelled (never binding)",
    )


def _kim_header(lines: list[str]) -> tuple[float, ...]:
    """Vehicle capacity, daily yardage, max stops, lunch (s), speed (mph): the first
    figure of each of the first five lines."""
    return tuple(float(re.split(r"[\s/]+", lines[i].strip())[0]) for i in range(5))


def _kim_rows(lines: list[str]) -> list[dict[str, float]]:
    """The stop table; short or unreadable lines are skipped."""
    rows: list[dict[str, float]] = []
    for ln in lines:
        parts = ln.split()
        if len(parts) < 8:
            continue
        try:
            rows.append(
                {
                    "id": int(float(parts[0])),
                    "x": float(parts[1]),
                    "y": float(parts[2]),
                    "early": _hhmm(parts[3]),
                    "late": _hhmm(parts[4]),
                    "service": float(parts[5]),
                    "load": float(parts[6]),
                    "type": int(float(parts[7])),
                }
            )
        except ValueError:
            continue
    return rows


def _kim_landfills(rows: list[dict[str, float]]) -> list[tuple[int, dict[str, float]]]:
    """Type-2 rows as stations: open over their window, tipping for their service."""
    return [
        (
            i,
            {
                "opens_s": r["early"],
                "closes_s": min(max(r["late"], r["early"] + r["service"]), DAY_S),
                "tipping_time_s": r["service"],
            },
        )
        for i, r in enumerate(rows)
        if r["type"] == 2
    ]


def _kim_stops(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    """Type-1 rows as collection points, their window on the service start."""
    return [
        {
            "idx": i,
            "id": r["id"],
            "amount": r["load"],
            "service": r["service"],
            "ready": r["early"],
            "due": min(r["late"], DAY_S),
        }
        for i, r in enumerate(rows)
        if r["type"] == 1
    ]


def _kim_trucks(
    n_trucks: int, depot: dict[str, float], capacity: float, day_cap: float, lunch_s: float
) -> list[Truck]:
    """Identical trucks on the depot's window, lunch starting 11:00–12:00."""
    return [
        Truck(
            f"V{v + 1}",
            capacity,
            frozenset(ALL_STREAMS),
            "D0",
            "D0",
            shift_start_s=depot["early"],
            shift_end_s=depot["late"],
            break_duration_s=lunch_s,
            break_earliest_s=11 * 3600.0,
            break_latest_s=12 * 3600.0,
            can_enter_narrow=True,
            max_day_load_kg=day_cap,
        )
        for v in range(n_trucks)
    ]


def _kim_fleet(
    rows: list[dict[str, float]],
    depot_idx: int,
    station_idx: list[tuple[int, dict[str, float]]],
    seconds: np.ndarray,
    capacity: float,
    day_cap: float,
    lunch_s: float,
) -> int:
    """Trucks for a Kim instance: a lower bound from the daily yardage and from the
    working time (service, tipping, landfill round trips, lunch), plus two."""
    stops = [i for i, r in enumerate(rows) if r["type"] == 1]
    total = sum(rows[i]["load"] for i in stops)
    trips = math.ceil(total / capacity - 1e-9)
    tip = min((a["tipping_time_s"] for _, a in station_idx), default=0.0)
    to_landfill = (
        float(np.median([min(seconds[i, s] for s, _ in station_idx) for i in stops]))
        if station_idx
        else 0.0
    )
    work = sum(rows[i]["service"] for i in stops) + trips * (tip + 2 * to_landfill)
    shift = rows[depot_idx]["late"] - rows[depot_idx]["early"] - lunch_s
    by_time = math.ceil(work / max(shift, 1.0))
    by_load = math.ceil(total / day_cap - 1e-9)
    return max(by_time, by_load) + 2


def read_instance(path: str | Path) -> Instance:
    """Pick the reader from the file name and contents."""
    path = Path(path)
    if path.suffix == ".vrp":
        return read_cvrplib(path)
    if path.name.endswith("_stop.txt"):
        return read_kim(path)
    if path.suffix == ".txt":
        return read_solomon(path)
    raise ValueError(f"{path}: unknown instance format (expected .vrp, *_stop.txt or .txt)")


# --------------------------------------------------------------------------- synthetic


def synthetic_graph(
    *,
    blocks: int = 12,
    block_m: float = 250.0,
    seed: int = 0,
    lat0: float = 31.82,
    lon0: float = 117.28,
    narrow_share: float = 0.1,
    oneway_share: float = 0.1,
) -> nx.DiGraph:
    """A seeded grid city: arterials every fourth street, some one-way and some
    narrow (背街小巷) streets; strongly connected without the narrow ones."""
    rng = random.Random(seed)
    g = nx.DiGraph()
    dlat = block_m / 111_320.0
    dlon = block_m / (111_320.0 * math.cos(math.radians(lat0)))

    def nid(i: int, j: int) -> int:
        return i * (blocks + 1) + j

    for i in range(blocks + 1):
        for j in range(blocks + 1):
            jitter_lat = rng.uniform(-0.1, 0.1) * dlat
            jitter_lon = rng.uniform(-0.1, 0.1) * dlon
            g.add_node(
                nid(i, j), lat=lat0 + i * dlat + jitter_lat, lon=lon0 + j * dlon + jitter_lon
            )

    def add(a: int, b: int, arterial: bool) -> None:
        la, lb = g.nodes[a], g.nodes[b]
        length = float(
            EARTH_RADIUS_M
            * math.hypot(
                math.radians(lb["lat"] - la["lat"]),
                math.radians(lb["lon"] - la["lon"]) * math.cos(math.radians(la["lat"])),
            )
        )
        narrow = not arterial and rng.random() < narrow_share
        road_class = "arterial" if arterial else ("lane" if narrow else "local")
        speed = DEFAULT_SPEED_KMH[road_class]
        attrs = {"length_m": length, "speed_kmh": speed, "narrow": narrow, "road_class": road_class}
        oneway = not arterial and not narrow and rng.random() < oneway_share
        if oneway and rng.random() < 0.5:
            a, b = b, a
        g.add_edge(a, b, **attrs)
        if not oneway:
            g.add_edge(b, a, **attrs)

    for i in range(blocks + 1):
        for j in range(blocks + 1):
            if j < blocks:
                add(nid(i, j), nid(i, j + 1), arterial=i % 4 == 0)
            if i < blocks:
                add(nid(i, j), nid(i + 1, j), arterial=j % 4 == 0)
    return g


def synthetic_district(
    *,
    n_points: int = 60,
    n_trucks: int = 4,
    n_stations: int = 1,
    n_depots: int = 1,
    seed: int = 0,
    blocks: int | None = None,
    kitchen_share: float = 0.0,
    narrow_point_share: float = 0.05,
    windows: bool = True,
    breaks: bool = True,
) -> tuple[Problem, nx.DiGraph]:
    """A seeded district: a grid road graph, depots and stations on arterials,
    collection points at junctions, compactor trucks (and kitchen-waste trucks if
    ``kitchen_share`` > 0), a 05:00–17:00 shift and a 30-minute lunch break."""
    rng = random.Random(seed)
    if blocks is None:
        blocks = max(6, int(math.sqrt(n_points) * 1.2))
    graph = synthetic_graph(blocks=blocks, seed=seed)
    arterial_nodes = [
        n for n in graph.nodes if (n // (blocks + 1)) % 4 == 0 or (n % (blocks + 1)) % 4 == 0
    ]
    # One generator drawn in this order: depots, stations, points.
    depots = []
    for d in range(n_depots):
        n = rng.choice(arterial_nodes)
        depots.append(Depot(f"D{d + 1}", graph.nodes[n]["lat"], graph.nodes[n]["lon"]))
    stations = _synthetic_stations(rng, graph, arterial_nodes, n_stations, kitchen_share > 0)
    points = _synthetic_points(
        rng, graph, blocks, n_points, kitchen_share, narrow_point_share, windows=windows
    )
    trucks = _synthetic_fleet(points, depots, n_trucks, breaks=breaks)
    problem = build_problem(
        points=points,
        stations=stations,
        depots=depots,
        trucks=trucks,
        graph=graph,
        name=f"synthetic-{n_points}-{n_trucks}-s{seed}",
    )
    return problem, graph


_MAIN_STREAMS = frozenset({"other", "recyclable", "mixed"})


def _synthetic_stations(
    rng: random.Random, graph: nx.DiGraph, arterial_nodes: list[int], n: int, kitchen: bool
) -> list[Station]:
    """Transfer stations beside arterial junctions; the first also takes kitchen waste
    when the district has any."""
    stations = []
    for s in range(n):
        node = rng.choice(arterial_nodes)
        accepts = _MAIN_STREAMS | {"kitchen"} if kitchen and s == 0 else _MAIN_STREAMS
        stations.append(
            Station(
                f"S{s + 1}",
                graph.nodes[node]["lat"] + rng.uniform(-1e-4, 1e-4),
                graph.nodes[node]["lon"] + rng.uniform(-1e-4, 1e-4),
                accepts,
                opens_s=4 * 3600.0,
                closes_s=22 * 3600.0,
                tipping_time_s=600.0,
            )
        )
    return stations


def _synthetic_points(
    rng: random.Random,
    graph: nx.DiGraph,
    blocks: int,
    n: int,
    kitchen_share: float,
    narrow_point_share: float,
    *,
    windows: bool,
) -> list[Point]:
    """Collection points near junctions; 30% with a 2–4 h window when ``windows``,
    the rest open 05:00–20:00."""
    nodes = list(graph.nodes)
    lats = [graph.nodes[node]["lat"] for node in nodes]
    lat_span = max(lats) - min(lats)
    points = []
    for k in range(n):
        node = rng.choice(nodes)
        kitchen = rng.random() < kitchen_share
        if windows and rng.random() < 0.3:
            start = rng.choice([6, 7, 8, 9, 13, 14]) * 3600.0
            window = (start, start + rng.choice([2, 3, 4]) * 3600.0)
        else:
            window = (5 * 3600.0, 20 * 3600.0)
        points.append(
            Point(
                f"P{k + 1:04d}",
                graph.nodes[node]["lat"] + rng.uniform(-0.02, 0.02) * lat_span / blocks,
                graph.nodes[node]["lon"] + rng.uniform(-0.02, 0.02) * lat_span / blocks,
                "kitchen" if kitchen else rng.choice(["other", "other", "recyclable", "mixed"]),
                float(rng.choice([150, 200, 300, 400, 600, 800])),
                service_time_s=float(rng.choice([120, 180, 240, 300])),
                window_start_s=window[0],
                window_end_s=window[1],
                access_class=(
                    "narrow" if not kitchen and rng.random() < narrow_point_share else "normal"
                ),
            )
        )
    return points


def _synthetic_fleet(
    points: list[Point], depots: list[Depot], n_trucks: int, *, breaks: bool
) -> list[Truck]:
    """A fleet mix sized to the work: kitchen trucks for the kitchen points (they carry
    less), small trucks for the narrow-lane points, compactors for the rest; trucks
    shared out over the depots in turn."""
    n_points = len(points)
    n_kitchen_points = sum(1 for p in points if p.stream == "kitchen")
    n_narrow_points = sum(1 for p in points if p.access_class == "narrow")
    n_kitchen = (
        min(n_trucks - 1, max(1, math.ceil(n_trucks * n_kitchen_points / n_points * 1.5)))
        if n_kitchen_points and n_trucks > 1
        else 0
    )
    n_small = (
        min(n_trucks - n_kitchen - 1, max(1, math.ceil(n_narrow_points / 12)))
        if n_narrow_points and n_trucks - n_kitchen > 1
        else 0
    )
    trucks = []
    for t in range(n_trucks):
        depot = depots[t % len(depots)].depot_id
        if t < n_kitchen:
            streams, cap, narrow = frozenset({"kitchen"}), 5000.0, False
        elif t < n_kitchen + n_small:
            streams, cap, narrow = _MAIN_STREAMS, 2000.0, True
        else:
            streams, cap, narrow = _MAIN_STREAMS, 8000.0, False
        trucks.append(
            Truck(
                f"T{t + 1:02d}",
                cap,
                streams,
                depot,
                depot,
                shift_start_s=5 * 3600.0,
                shift_end_s=17 * 3600.0,
                max_route_duration_s=11 * 3600.0,
                break_duration_s=1800.0 if breaks else 0.0,
                break_earliest_s=11 * 3600.0,
                break_latest_s=13 * 3600.0,
                can_enter_narrow=narrow,
            )
        )
    return trucks
