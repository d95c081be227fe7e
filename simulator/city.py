"""A seeded synthetic district: roads, depots, transfer stations, points, trucks.

`generate(CityConfig(n_points=300, n_trucks=10, seed=1))` builds a grid-ish district
around Hefei: arterials every few blocks, some one-way local streets, a few missing
blocks, dead-end 背街小巷 lanes that only small trucks may enter, depots and transfer
stations on main roads, collection points on the kerb of the roads. Every depot,
station and point is a node of the road graph (the road is split there), so a truck
that drives to the node stops right at the kerb.

The road graph is a `networkx.DiGraph` whose nodes carry `lat`, `lon` (WGS-84) and
whose edges carry `length_m`, `speed_kmh`, `narrow`, `road_class` (and `road_id`,
`name`). Two-way roads are two directed edges. It is strongly connected, and so is
the part of it without narrow lanes that big trucks use.

`City.write(dir)` writes the district in the import format of docs/import.md plus a
`city.json` sidecar with the generator settings; `City.from_sidecar(dir)` rebuilds it.
Same config, same city, byte for byte. `simulator.district.load_city(dir)` reads either
kind of folder: with the sidecar, the generated city; without (a real district exported
from a GIS), the district read from the import files themselves.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from routing.vocab import DEFAULT_SPEED_KMH, AccessClass, RoadClass, TruckType
from simulator import geo

STREAM_ZH: dict[str, str] = {
    "other": "其他",
    "kitchen": "厨余",
    "recyclable": "可回收",
    "hazardous": "有害",
    "mixed": "混合",
}
TRUCK_STREAMS: dict[str, tuple[str, ...]] = {
    "compactor": ("other", "recyclable", "mixed"),
    "kitchen": ("kitchen",),
    "small": ("other", "recyclable", "hazardous"),
}
TRUCK_CAPACITY_KG: dict[str, int] = {"compactor": 8000, "kitchen": 5000, "small": 1500}

CITY_SIDECAR = "city.json"
SIDECAR_VERSION = 1

# Site placement (metres).
SITE_SPACING_M = 80.0  # between any two depots / stations / points: geofences never overlap
END_MARGIN_M = 20.0  # between a site and a junction
LANE_ROOT_MARGIN_M = 25.0  # between a kerbside site and the mouth of a lane

_PLACE_NAMES_TEXT = (
    "芜湖 宁国 望江 徽州 马鞍山 屯溪 太湖 庐州 巢湖 金寨 繁华 紫云 锦绣 黄山 九华山 天鹅湖 "
    "翡翠 习友 潜山 长江 淮河 合作化 美菱 当涂 蒙城 濉溪 阜阳 亳州 宿州 六安 铜陵 池州 安庆 "
    "滁州 蚌埠 淮南 宣城 歙县 休宁 黟县 祁门 绩溪 舒城 肥西 肥东 长丰 庐江 包河 蜀山 瑶海 "
    "庐阳 政务 滨湖 高新 经开 新站 大蜀山 南淝河 董铺 紫蓬 三河 杏花 逍遥 稻香 明光 清溪 "
    "青阳 石台 东至 怀宁 桐城 枞阳 岳西 宿松 望湖 徽园 银屏 琥珀 龙岗 花冲 双岗 南七 西园"
)
_PLACE_NAMES = _PLACE_NAMES_TEXT.split()
_POINT_KINDS = ("小区桶站", "垃圾房", "收集点", "菜市场", "学校", "医院", "商场", "公厕旁", "社区")
_STATION_NAMES = ("东部", "西部", "南部", "北部", "东北", "西南", "东南", "西北", "城中", "滨湖")


@dataclass(frozen=True, slots=True)
class CityConfig:
    """What to generate. Validated at construction."""

    n_points: int = 50
    n_trucks: int = 3
    seed: int = 0
    center_lat: float = 31.82
    center_lon: float = 117.27
    block_m: float = 150.0
    narrow_share: float = 0.1
    district: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.n_points <= 50_000:
            raise ValueError(f"n_points must be in 1..50000, got {self.n_points}")
        if not 1 <= self.n_trucks <= 5_000:
            raise ValueError(f"n_trucks must be in 1..5000, got {self.n_trucks}")
        if not -80 <= self.center_lat <= 80 or not -180 <= self.center_lon <= 180:
            raise ValueError("center_lat/center_lon out of range")
        if not 80 <= self.block_m <= 500:
            raise ValueError(f"block_m must be in 80..500, got {self.block_m}")
        if not 0 <= self.narrow_share <= 0.5:
            raise ValueError(f"narrow_share must be in 0..0.5, got {self.narrow_share}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class Depot:
    id: str
    name: str
    lat: float
    lon: float
    node: int


@dataclass(frozen=True, slots=True)
class Station:
    id: str
    name: str
    lat: float
    lon: float
    node: int
    streams: tuple[str, ...]
    opens_s: int
    closes_s: int
    tipping_time_s: int
    daily_capacity_kg: int | None  # None: unlimited

    def accepts(self, streams: Iterable[str]) -> bool:
        return set(streams) <= set(self.streams)


@dataclass(frozen=True, slots=True)
class Point:
    id: str
    name: str
    lat: float
    lon: float
    node: int
    stream: str
    daily_amount_kg: int
    service_time_s: int
    window_start_s: int
    window_end_s: int
    geofence_radius_m: int
    min_dwell_s: int
    clearance_deadline_s: int
    access_class: AccessClass
    has_bins: bool
    bin_count: int  # simulator-only: one bin-lift event per bin


def jt808_phone_for(index: int) -> str:
    """The JT/T 808 phone number of the city's ``index``-th truck (trucks.csv, and the
    terminals of `clearday simulate day --protocol jt808`)."""
    return f"139{index + 1:08d}"


@dataclass(frozen=True, slots=True)
class Truck:
    id: str
    plate: str
    truck_type: TruckType
    capacity_kg: int
    streams: tuple[str, ...]
    depot_id: str
    terminal_id: str
    shift_start_s: int
    shift_end_s: int
    break_duration_s: int
    break_earliest_s: int
    break_latest_s: int
    can_enter_narrow: bool

    def can_serve(self, point: Point) -> bool:
        return point.stream in self.streams and (
            point.access_class == "normal" or self.can_enter_narrow
        )


@dataclass(frozen=True, slots=True)
class Road:
    """One road segment between two nodes, as written to roads.geojson."""

    id: int | str  # generated: a number; imported: the feature's id (its pieces share it)
    from_node: int
    to_node: int
    road_class: RoadClass
    speed_kmh: float
    oneway: bool
    narrow: bool
    name: str
    length_m: float


# The import format's columns (docs/import.md), in the order the files are written.
DEPOT_COLUMNS = ("id", "name", "lat", "lon")
STATION_COLUMNS = (
    "id", "name", "lat", "lon", "streams", "opens_at", "closes_at", "tipping_time_s",
    "daily_capacity_kg",
)  # fmt: skip
POINT_COLUMNS = (
    "id", "name", "lat", "lon", "stream", "daily_amount_kg", "service_time_s", "window_start",
    "window_end", "geofence_radius_m", "min_dwell_s", "clearance_deadline", "access_class",
    "has_bins", "schedule",
)  # fmt: skip
TRUCK_COLUMNS = (
    "id", "plate", "truck_type", "capacity_kg", "streams", "depot_id", "terminal_id",
    "jt808_phone", "shift_start", "shift_end", "max_route_duration_s", "break_duration_s",
    "break_earliest", "break_latest", "can_enter_narrow",
)  # fmt: skip


def _depot_row(d: Depot) -> list[Any]:
    return [d.id, d.name, _deg(d.lat), _deg(d.lon)]


def _station_row(s: Station) -> list[Any]:
    return [
        s.id, s.name, _deg(s.lat), _deg(s.lon), ";".join(s.streams), hhmm(s.opens_s),
        hhmm(s.closes_s), s.tipping_time_s,
        "" if s.daily_capacity_kg is None else s.daily_capacity_kg,
    ]  # fmt: skip


def _point_row(p: Point) -> list[Any]:
    return [
        p.id, p.name, _deg(p.lat), _deg(p.lon), STREAM_ZH[p.stream], p.daily_amount_kg,
        p.service_time_s, hhmm(p.window_start_s), hhmm(p.window_end_s), p.geofence_radius_m,
        p.min_dwell_s, hhmm(p.clearance_deadline_s), p.access_class,
        "true" if p.has_bins else "false", "daily",
    ]  # fmt: skip


@dataclass(slots=True)
class City:
    config: CityConfig | None  # the generator settings; None for a district read from files
    graph: nx.DiGraph
    roads: tuple[Road, ...]
    depots: tuple[Depot, ...]
    stations: tuple[Station, ...]
    points: tuple[Point, ...]
    trucks: tuple[Truck, ...]
    source: Path | None = None  # the folder of import files it was read from
    district: str | None = None  # the district code every row carries, if one
    # Added to each truck's index for its JT/T 808 phone (unique city-wide).
    phone_offset: int = 0
    _by_id: dict[str, Depot | Station | Point] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.district is None and self.config is not None:
            self.district = self.config.district
        sites: list[Depot | Station | Point] = [*self.depots, *self.stations, *self.points]
        for site in sites:
            self._by_id[site.id] = site

    def with_prefix(self, prefix: str, number: int) -> City:
        """The same district with every id (and terminal) prefixed and its trucks'
        phones numbered after those of districts 0..number-1, so that several generated
        districts can live in one database (ids are unique city-wide)."""
        r = dataclasses.replace
        return City(
            config=self.config, graph=self.graph,
            roads=tuple(r(x, id=f"{prefix}{x.id}") for x in self.roads),
            depots=tuple(r(x, id=f"{prefix}{x.id}") for x in self.depots),
            stations=tuple(r(x, id=f"{prefix}{x.id}") for x in self.stations),
            points=tuple(r(x, id=f"{prefix}{x.id}") for x in self.points),
            trucks=tuple(
                r(x, id=f"{prefix}{x.id}", depot_id=f"{prefix}{x.depot_id}",
                  terminal_id=f"{prefix}{x.terminal_id}")
                for x in self.trucks
            ),
            source=self.source, district=self.district, phone_offset=number * 10_000,
        )  # fmt: skip

    # ---- look-ups -------------------------------------------------------------------
    @property
    def center(self) -> tuple[float, float]:
        """(lat, lon) of the district's centre: the generator's, else the nodes' mean."""
        if self.config is not None:
            return self.config.center_lat, self.config.center_lon
        lats = [float(d["lat"]) for _, d in self.graph.nodes(data=True)]
        lons = [float(d["lon"]) for _, d in self.graph.nodes(data=True)]
        return sum(lats) / len(lats), sum(lons) / len(lons)

    def describe(self) -> dict[str, Any]:
        """Where the city came from, for ground-truth files and logs."""
        if self.config is not None:
            return self.config.to_dict()
        return {
            "import_files": str(self.source) if self.source else None,
            "district": self.district,
            "nodes": self.graph.number_of_nodes(),
            "points": len(self.points),
            "trucks": len(self.trucks),
        }

    def site(self, ref_id: str) -> Depot | Station | Point:
        try:
            return self._by_id[ref_id]
        except KeyError:
            raise KeyError(f"no depot, station or point with id {ref_id!r}") from None

    def point(self, point_id: str) -> Point:
        site = self.site(point_id)
        if not isinstance(site, Point):
            raise KeyError(f"{point_id!r} is not a collection point")
        return site

    def station(self, station_id: str) -> Station:
        site = self.site(station_id)
        if not isinstance(site, Station):
            raise KeyError(f"{station_id!r} is not a transfer station")
        return site

    def depot(self, depot_id: str) -> Depot:
        site = self.site(depot_id)
        if not isinstance(site, Depot):
            raise KeyError(f"{depot_id!r} is not a depot")
        return site

    def truck(self, truck_id: str) -> Truck:
        for t in self.trucks:
            if t.id == truck_id:
                return t
        raise KeyError(f"no truck with id {truck_id!r}")

    def node_latlon(self, node: int) -> tuple[float, float]:
        data = self.graph.nodes[node]
        return float(data["lat"]), float(data["lon"])

    def truck_graph(self, truck: Truck) -> nx.DiGraph:
        """The part of the road graph this truck may drive on."""
        if truck.can_enter_narrow:
            return self.graph
        g = self.graph
        return nx.subgraph_view(g, filter_edge=lambda u, v: not g.edges[u, v]["narrow"])

    # ---- output ---------------------------------------------------------------------
    def write(self, directory: str | Path) -> Path:
        """Write the district in the import format (docs/import.md) plus city.json."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tables = (
            ("depots.csv", DEPOT_COLUMNS, [_depot_row(d) for d in self.depots]),
            ("stations.csv", STATION_COLUMNS, [_station_row(s) for s in self.stations]),
            ("points.csv", POINT_COLUMNS, [_point_row(p) for p in self.points]),
            ("trucks.csv", TRUCK_COLUMNS, self._truck_rows()),
        )
        for name, header, rows in tables:
            _write_csv(out / name, self._with_district(list(header), rows))
        self._write_roads(out / "roads.geojson")
        self._write_sidecar(out / CITY_SIDECAR)
        return out

    def _with_district(self, header: list[str], rows: list[list[Any]]) -> Iterator[list[Any]]:
        """The rows under their header, each with the district's code when it has one."""
        extra = [self.district] if self.district else []
        yield header + (["district"] if self.district else [])
        for row in rows:
            yield row + extra

    def _truck_rows(self) -> list[list[Any]]:
        return [
            [
                t.id, t.plate, t.truck_type, t.capacity_kg, ";".join(t.streams), t.depot_id,
                t.terminal_id, jt808_phone_for(self.phone_offset + k), hhmm(t.shift_start_s),
                hhmm(t.shift_end_s), t.shift_end_s - t.shift_start_s, t.break_duration_s,
                hhmm(t.break_earliest_s), hhmm(t.break_latest_s),
                "true" if t.can_enter_narrow else "false",
            ]
            for k, t in enumerate(self.trucks)
        ]  # fmt: skip

    def _write_roads(self, path: Path) -> None:
        """Each road segment as a straight GeoJSON line between its two nodes."""
        features = []
        for r in self.roads:
            a, b = self.graph.nodes[r.from_node], self.graph.nodes[r.to_node]
            props: dict[str, Any] = {
                "id": r.id, "from_node": r.from_node, "to_node": r.to_node,
                "road_class": r.road_class, "speed_kmh": r.speed_kmh, "oneway": r.oneway,
                "narrow": r.narrow, "length_m": r.length_m, "name": r.name,
            }  # fmt: skip
            if self.district:
                props["district"] = self.district
            line = {
                "type": "LineString",
                "coordinates": [[a["lon"], a["lat"]], [b["lon"], b["lat"]]],
            }
            features.append({"type": "Feature", "geometry": line, "properties": props})
        with path.open("w", encoding="utf-8") as fh:
            json.dump({"type": "FeatureCollection", "features": features}, fh, ensure_ascii=False)
            fh.write("\n")

    def _write_sidecar(self, path: Path) -> None:
        """city.json: the generator's settings, so `from_sidecar` can rebuild the city."""
        if self.config is None:
            # Not generated: the files alone describe it (a stale sidecar would win).
            path.unlink(missing_ok=True)
            return
        sidecar = {
            "generator": "clearday.simulator.city",
            "version": SIDECAR_VERSION,
            "config": self.config.to_dict(),
            "counts": {
                "nodes": self.graph.number_of_nodes(),
                "edges": self.graph.number_of_edges(),
                "roads": len(self.roads),
                "depots": len(self.depots),
                "stations": len(self.stations),
                "points": len(self.points),
                "trucks": len(self.trucks),
            },
        }
        path.write_text(json.dumps(sidecar, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_sidecar(cls, directory: str | Path) -> City:
        """Rebuild a city written by `write` from its city.json generator settings
        (`simulator.district.load_city` also reads a folder without one)."""
        path = Path(directory) / CITY_SIDECAR
        meta = json.loads(path.read_text(encoding="utf-8"))
        if meta.get("version") != SIDECAR_VERSION:
            raise ValueError(f"{path}: unsupported city.json version {meta.get('version')!r}")
        city = generate(CityConfig(**meta["config"]))
        counts = meta.get("counts", {})
        if counts and counts.get("points") != len(city.points):
            raise ValueError(f"{path}: regenerated city does not match the files written")
        return city


# ---- formatting helpers ----------------------------------------------------------------
def hhmm(seconds: int) -> str:
    seconds = min(max(seconds, 0), 24 * 3600 - 60)
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def parse_hhmm(text: str) -> int:
    hours, minutes = text.strip().split(":")
    return int(hours) * 3600 + int(minutes) * 60


def _deg(value: float) -> str:
    return f"{value:.7f}"


def _write_csv(path: Path, rows: Iterable[list[Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerows(rows)


# ---- generation ------------------------------------------------------------------------
@dataclass(slots=True)
class _Seg:
    """A road segment during generation (node coordinates live in `_Builder.xy`)."""

    a: int
    b: int
    road_class: RoadClass
    oneway: bool  # travel only a -> b
    narrow: bool
    name: str
    splits: list[tuple[float, int]] = field(default_factory=list)  # (metres from a, node)


class _Builder:
    def __init__(self, config: CityConfig) -> None:
        self.config = config
        self.rng = random.Random(f"clearday-city:{config.seed}")
        self.xy: list[tuple[float, float]] = []  # node -> (east_m, north_m)
        self.segs: list[_Seg] = []
        self.site_cells: dict[tuple[int, int], list[tuple[float, float]]] = {}

    # -- nodes / geometry
    def add_node(self, x: float, y: float) -> int:
        self.xy.append((x, y))
        return len(self.xy) - 1

    def seg_len(self, s: _Seg) -> float:
        (ax, ay), (bx, by) = self.xy[s.a], self.xy[s.b]
        return math.hypot(bx - ax, by - ay)

    def along(self, s: _Seg, dist_m: float) -> tuple[float, float]:
        (ax, ay), (bx, by) = self.xy[s.a], self.xy[s.b]
        t = dist_m / self.seg_len(s)
        return ax + t * (bx - ax), ay + t * (by - ay)

    # -- spacing between sites
    def _cell(self, x: float, y: float) -> tuple[int, int]:
        return math.floor(x / SITE_SPACING_M), math.floor(y / SITE_SPACING_M)

    def site_free(self, x: float, y: float) -> bool:
        cx, cy = self._cell(x, y)
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for ox, oy in self.site_cells.get((cx + dx, cy + dy), ()):
                    if math.hypot(ox - x, oy - y) < SITE_SPACING_M:
                        return False
        return True

    def claim_site(self, x: float, y: float) -> None:
        self.site_cells.setdefault(self._cell(x, y), []).append((x, y))

    def try_split(self, seg_index: int, dist_m: float, margin_m: float) -> int | None:
        """Put a node on segment `seg_index` `dist_m` from its start, if there is room."""
        s = self.segs[seg_index]
        length = self.seg_len(s)
        if dist_m < END_MARGIN_M or dist_m > length - END_MARGIN_M:
            return None
        if any(abs(d - dist_m) < margin_m for d, _ in s.splits):
            return None
        x, y = self.along(s, dist_m)
        node = self.add_node(x, y)
        s.splits.append((dist_m, node))
        return node


def _grid_size(n_points: int, block_m: float) -> int:
    # Enough kerb for the points at SITE_SPACING_M with plenty of slack.
    road_needed_m = n_points * SITE_SPACING_M * 3.0
    n = math.ceil(math.sqrt(road_needed_m / (2 * block_m))) + 1
    return max(8, n)


def _line_class(k: int, n: int) -> RoadClass:
    if k % 6 == 3:
        return "arterial"
    if k in (0, n - 1) or k % 3 == 0:
        return "secondary"
    return "local"


def _line_names(rng: random.Random, n: int) -> list[str]:
    names = list(_PLACE_NAMES)
    rng.shuffle(names)
    out = []
    for k in range(n):
        base = names[k % len(names)]
        out.append(base if k < len(names) else f"{base}{k // len(names) + 1}")
    return out


_SUFFIX = {"arterial": "大道", "secondary": "路", "local": "街", "lane": "巷"}


def generate_districts(
    n_districts: int, *, n_points: int, n_trucks: int, seed: int = 0
) -> list[City]:
    """A city of `n_districts` generated districts side by side (codes d01, d02, …),
    ids prefixed with the code so they are unique city-wide."""
    if not 1 <= n_districts <= 99:
        raise ValueError(f"n_districts must be in 1..99, got {n_districts}")
    out = []
    for k in range(n_districts):
        code = f"d{k + 1:02d}"
        city = generate(
            n_points=n_points, n_trucks=n_trucks, seed=seed * 100 + k, district=code,
            center_lon=117.27 + 0.15 * (k % 5), center_lat=31.82 + 0.12 * (k // 5),
        )  # fmt: skip
        out.append(city.with_prefix(f"{code}-", k))
    return out


def generate(config: CityConfig | None = None, **overrides: Any) -> City:
    """Build the city for `config` (or `CityConfig(**overrides)`)."""
    if config is None:
        config = CityConfig(**overrides)
    elif overrides:
        config = dataclasses.replace(config, **overrides)
    b = _Builder(config)
    n = _grid_size(config.n_points, config.block_m)
    grid = _junctions(b, n)
    _strongly_connect(b, _streets(b, grid, n))
    grid_segs = len(b.segs)
    # Transfer stations towards the edge, depots in between, on two-way main roads.
    main_roads = [
        idx
        for idx, s in enumerate(b.segs)
        if s.road_class in ("arterial", "secondary") and not s.oneway
    ]
    n_stations = 2 + config.n_points // 2000
    n_depots = max(1, min(math.ceil(config.n_trucks / 25), math.ceil(config.n_points / 250)))
    station_nodes = [_place_site(b, n, main_roads, outer=True) for _ in range(n_stations)]
    depot_nodes = [_place_site(b, n, main_roads, outer=False) for _ in range(n_depots)]
    n_narrow = round(config.n_points * config.narrow_share)
    lanes, narrow_nodes = _narrow_lanes(b, n, n_narrow)
    kerb_nodes = _kerb_points(b, grid_segs, config.n_points - n_narrow)
    latlon = [
        (round(geo.offset(config.center_lat, config.center_lon, x, y)[0], 7),
         round(geo.offset(config.center_lat, config.center_lon, x, y)[1], 7))
        for x, y in b.xy
    ]  # fmt: skip
    roads = _roads([*b.segs, *lanes], latlon)
    depots = tuple(
        Depot(
            id=f"D{k + 1}",
            name=f"{_nearest_road_name(roads, node)}车场",
            lat=latlon[node][0],
            lon=latlon[node][1],
            node=node,
        )
        for k, node in enumerate(depot_nodes)
    )
    stations = tuple(_make_station(k, node, latlon[node]) for k, node in enumerate(station_nodes))
    points = _points(b.rng, narrow_nodes, kerb_nodes, latlon)
    trucks = _make_trucks(b.rng, config.n_trucks, depots)
    city = City(
        config=config, graph=_road_graph(latlon, roads), roads=tuple(roads), depots=depots,
        stations=stations, points=tuple(points), trucks=trucks,
    )  # fmt: skip
    check_connectivity(city)
    return city


def _junctions(b: _Builder, n: int) -> list[list[int]]:
    """n × n junctions on a jittered grid: rows south to north, columns west to east."""
    block = b.config.block_m
    half = (n - 1) / 2
    grid: list[list[int]] = []
    for i in range(n):
        row = []
        for j in range(n):
            jx = b.rng.uniform(-0.1, 0.1) * block
            jy = b.rng.uniform(-0.1, 0.1) * block
            row.append(b.add_node((j - half) * block + jx, (i - half) * block + jy))
        grid.append(row)
    return grid


def _streets(b: _Builder, grid: list[list[int]], n: int) -> list[int]:
    """The grid's street segments (rows run east-west, columns north-south), some
    local streets one-way; the indexes of the inner local blocks to leave out."""
    rng = b.rng
    row_names = _line_names(rng, n)
    col_names = _line_names(rng, n)[::-1]
    row_class = [_line_class(k, n) for k in range(n)]
    col_class = [_line_class(k, n) for k in range(n)]
    oneway_dir: dict[tuple[str, int], bool] = {}  # (axis, k) -> forward?
    for axis in ("row", "col"):
        flip = rng.random() < 0.5
        classes = row_class if axis == "row" else col_class
        for k in range(n):
            if classes[k] == "local" and rng.random() < 0.35:
                oneway_dir[(axis, k)] = flip
                flip = not flip
    dropped: list[int] = []
    for i in range(n):
        for j in range(n):
            for axis, (ni, nj) in (("row", (i, j + 1)), ("col", (i + 1, j))):
                if ni >= n or nj >= n:
                    continue
                k = i if axis == "row" else j
                cls = (row_class if axis == "row" else col_class)[k]
                name = (row_names if axis == "row" else col_names)[k] + _SUFFIX[cls]
                a, z = grid[i][j], grid[ni][nj]
                ow = (axis, k) in oneway_dir
                if ow and not oneway_dir[(axis, k)]:
                    a, z = z, a
                b.segs.append(_Seg(a, z, cls, ow, False, name))
                border = i in (0, n - 1) or j in (0, n - 1)
                if cls == "local" and not border and rng.random() < 0.04:
                    dropped.append(len(b.segs) - 1)
    return dropped


def _strongly_connect(b: _Builder, dropped: list[int]) -> None:
    """Leave out the dropped blocks, restoring those (and making one-way streets
    two-way) that join different strongly connected components, until there is one."""
    dropped_set = set(dropped)
    while True:
        g = nx.DiGraph()
        g.add_nodes_from(range(len(b.xy)))
        for idx, s in enumerate(b.segs):
            if idx in dropped_set:
                continue
            g.add_edge(s.a, s.b)
            if not s.oneway:
                g.add_edge(s.b, s.a)
        comps = list(nx.strongly_connected_components(g))
        if len(comps) == 1:
            break
        comp_of = {node: c for c, nodes in enumerate(comps) for node in nodes}
        changed = False
        for idx, s in enumerate(b.segs):
            if comp_of[s.a] == comp_of[s.b]:
                continue
            if idx in dropped_set:
                dropped_set.discard(idx)
                changed = True
            elif s.oneway:
                s.oneway = False
                changed = True
        if not changed:  # pragma: no cover - the full grid is always connected
            raise RuntimeError("could not make the road grid strongly connected")
    b.segs = [s for idx, s in enumerate(b.segs) if idx not in dropped_set]


def _place_site(
    b: _Builder, n: int, candidates: list[int], *, outer: bool, tries: int = 400
) -> int:
    """A depot or station node on one of the candidate segments, far from other sites:
    towards the edge (`outer`) or about half-way out."""
    rng = b.rng
    reach_m = (n - 1) / 2 * b.config.block_m
    best: tuple[float, int, float] | None = None
    for _ in range(tries):
        idx = rng.choice(candidates)
        s = b.segs[idx]
        d = rng.uniform(0.3, 0.7) * b.seg_len(s)
        x, y = b.along(s, d)
        if not b.site_free(x, y):
            continue
        radius = math.hypot(x, y) / reach_m
        score = radius if outer else -abs(radius - 0.45)
        score += rng.uniform(0, 0.2)
        if best is None or score > best[0]:
            best = (score, idx, d)
    if best is None:
        raise ValueError("no room for a depot or station; use a larger block_m")
    node = b.try_split(best[1], best[2], LANE_ROOT_MARGIN_M)
    assert node is not None
    b.claim_site(*b.xy[node])
    return node


def _narrow_lanes(b: _Builder, n: int, n_narrow: int) -> tuple[list[_Seg], list[tuple[int, str]]]:
    """`n_narrow` 背街小巷 lanes off local streets, a point at each dead end: the
    lanes, and each end node with the lane's name."""
    rng = b.rng
    block = b.config.block_m
    half = (n - 1) / 2
    local_segs = [idx for idx, s in enumerate(b.segs) if s.road_class == "local"]
    rng.shuffle(local_segs)
    lanes: list[_Seg] = []
    narrow_nodes: list[tuple[int, str]] = []
    for idx in local_segs:
        if len(narrow_nodes) >= n_narrow:
            break
        s = b.segs[idx]
        length = b.seg_len(s)
        (ax, ay), (bx, by) = b.xy[s.a], b.xy[s.b]
        ux, uy = (bx - ax) / length, (by - ay) / length
        side = rng.choice((-1.0, 1.0))
        depth = rng.uniform(0.45, 0.6) * block
        mx, my = b.along(s, length / 2)
        ex, ey = mx - side * uy * depth, my + side * ux * depth
        if max(abs(ex), abs(ey)) > (half - 0.1) * block or not b.site_free(ex, ey):
            continue
        root = b.try_split(idx, length / 2, LANE_ROOT_MARGIN_M)
        if root is None:
            continue
        end = b.add_node(ex, ey)
        b.claim_site(ex, ey)
        lane_name = s.name + f"{len(narrow_nodes) + 1}号" + _SUFFIX["lane"]
        lanes.append(_Seg(root, end, "lane", False, True, lane_name))
        narrow_nodes.append((end, lane_name))
    if len(narrow_nodes) < n_narrow:
        raise ValueError("no room for the narrow lanes; use a larger block_m")
    return lanes, narrow_nodes


def _kerb_points(b: _Builder, grid_segs: int, n_kerb: int) -> list[tuple[int, str]]:
    """Kerbside point nodes on the grid's streets, weighted towards local streets,
    each with its street's name."""
    rng = b.rng
    weights = []
    kerb = list(range(grid_segs))
    for idx in kerb:
        s = b.segs[idx]
        w = {"arterial": 0.5, "secondary": 1.0, "local": 1.5, "lane": 0.0}[s.road_class]
        weights.append(w * b.seg_len(s))
    cum_weights = list(itertools.accumulate(weights))
    kerb_nodes: list[tuple[int, str]] = []
    attempts = 0
    while len(kerb_nodes) < n_kerb:
        attempts += 1
        if attempts > 200 * n_kerb + 1000:
            raise ValueError("no room for the points; use a larger block_m")
        idx = rng.choices(kerb, cum_weights=cum_weights)[0]
        s = b.segs[idx]
        d = rng.uniform(0, b.seg_len(s))
        x, y = b.along(s, d)
        if not b.site_free(x, y):
            continue
        node = b.try_split(idx, d, LANE_ROOT_MARGIN_M)
        if node is None:
            continue
        b.claim_site(x, y)
        kerb_nodes.append((node, s.name))
    return kerb_nodes


def _roads(segs: list[_Seg], latlon: list[tuple[float, float]]) -> list[Road]:
    """The final roads: each segment split at the nodes placed on it."""
    roads: list[Road] = []
    for s in segs:
        chain = [s.a, *(node for _, node in sorted(s.splits)), s.b]
        for a, z in itertools.pairwise(chain):
            length = round(geo.haversine_m(*latlon[a], *latlon[z]), 1)
            roads.append(
                Road(
                    id=len(roads) + 1, from_node=a, to_node=z, road_class=s.road_class,
                    speed_kmh=DEFAULT_SPEED_KMH[s.road_class], oneway=s.oneway,
                    narrow=s.narrow, name=s.name, length_m=max(length, 0.1),
                )
            )  # fmt: skip
    return roads


def _road_graph(latlon: list[tuple[float, float]], roads: list[Road]) -> nx.DiGraph:
    graph = nx.DiGraph()
    for node, (lat, lon) in enumerate(latlon):
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
        graph.add_edge(r.from_node, r.to_node, **attrs)
        if not r.oneway:
            graph.add_edge(r.to_node, r.from_node, **attrs)
    return graph


def _points(
    rng: random.Random,
    narrow_nodes: list[tuple[int, str]],
    kerb_nodes: list[tuple[int, str]],
    latlon: list[tuple[float, float]],
) -> list[Point]:
    """The collection points in a shuffled order, each named by its street and number."""
    point_specs: list[tuple[int, str, AccessClass]] = [
        (node, name, "narrow") for node, name in narrow_nodes
    ] + [(node, name, "normal") for node, name in kerb_nodes]
    rng.shuffle(point_specs)
    numbers: dict[str, int] = {}
    points = []
    for k, (node, road_name, access) in enumerate(point_specs):
        numbers[road_name] = numbers.get(road_name, 0) + 1
        name = f"{road_name}{numbers[road_name]}号{rng.choice(_POINT_KINDS)}"
        points.append(_make_point(rng, f"P{k + 1:04d}", name, node, latlon[node], access))
    return points


def _nearest_road_name(roads: list[Road], node: int) -> str:
    for r in roads:
        if node in (r.from_node, r.to_node):
            return r.name
    return "城区"


def _make_station(k: int, node: int, latlon: tuple[float, float]) -> Station:
    # Alternate: a residual-waste station that also takes recyclables and hazardous
    # waste, and a kitchen-waste station that also takes residual waste.
    if k % 2 == 0:
        streams: tuple[str, ...] = ("other", "recyclable", "hazardous", "mixed")
        opens, closes, tipping = 5 * 3600, 22 * 3600, 600
    else:
        streams = ("kitchen", "other")
        opens, closes, tipping = 5 * 3600 + 1800, 21 * 3600, 900
    return Station(
        id=f"S{k + 1}",
        name=f"{_STATION_NAMES[k % len(_STATION_NAMES)]}中转站"
        + (f"{k // len(_STATION_NAMES) + 1}" if k >= len(_STATION_NAMES) else ""),
        lat=latlon[0],
        lon=latlon[1],
        node=node,
        streams=streams,
        opens_s=opens,
        closes_s=closes,
        tipping_time_s=tipping,
        daily_capacity_kg=2_000_000,
    )


_STREAM_SHARES_NORMAL = (("other", 55), ("kitchen", 27), ("recyclable", 13), ("hazardous", 5))
_STREAM_SHARES_NARROW = (("other", 70), ("recyclable", 20), ("hazardous", 10))
_AMOUNT_KG = {
    "other": (100, 600),
    "kitchen": (80, 400),
    "recyclable": (30, 200),
    "hazardous": (5, 40),
}
_SERVICE_S = {
    "other": (180, 360),
    "kitchen": (240, 420),
    "recyclable": (120, 240),
    "hazardous": (120, 180),
}
_FULL_DAY = (0, 23 * 3600 + 59 * 60)
_MORNING = (5 * 3600 + 1800, 10 * 3600 + 1800)
_AFTERNOON = (13 * 3600, 16 * 3600 + 1800)


def _make_point(
    rng: random.Random,
    point_id: str,
    name: str,
    node: int,
    latlon: tuple[float, float],
    access: AccessClass,
) -> Point:
    shares = _STREAM_SHARES_NARROW if access == "narrow" else _STREAM_SHARES_NORMAL
    stream = rng.choices([s for s, _ in shares], [w for _, w in shares])[0]
    lo, hi = _AMOUNT_KG[stream]
    amount = rng.randint(lo, hi)
    slo, shi = _SERVICE_S[stream]
    service = rng.randint(slo // 30, shi // 30) * 30
    u = rng.random()
    window = _FULL_DAY if u < 0.65 else _MORNING if u < 0.85 else _AFTERNOON
    has_bins = stream == "hazardous" or rng.random() < 0.85
    bins = (rng.randint(2, 8) if stream == "kitchen" else rng.randint(1, 6)) if has_bins else 0
    return Point(
        id=point_id,
        name=name,
        lat=latlon[0],
        lon=latlon[1],
        node=node,
        stream=stream,
        daily_amount_kg=amount,
        service_time_s=service,
        window_start_s=window[0],
        window_end_s=window[1],
        geofence_radius_m=25 if access == "narrow" else 30,
        min_dwell_s=service // 2,
        clearance_deadline_s=20 * 3600,
        access_class=access,
        has_bins=has_bins,
        bin_count=bins,
    )


_PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


def _make_trucks(rng: random.Random, n: int, depots: tuple[Depot, ...]) -> tuple[Truck, ...]:
    n_kitchen = max(1, round(0.25 * n)) if n >= 2 else 0
    n_small = max(1, round(0.3 * n)) if n >= 3 else 0
    n_compactor = n - n_kitchen - n_small
    compactor: TruckType = "compactor"
    kitchen: TruckType = "kitchen"
    small: TruckType = "small"
    types = [compactor] * n_compactor + [kitchen] * n_kitchen + [small] * n_small
    plates: set[str] = set()
    trucks = []
    width = max(2, len(str(n)))
    for k, truck_type in enumerate(types):
        while True:
            plate = f"皖A{rng.choice(_PLATE_LETTERS)}{rng.randint(0, 9999):04d}"
            if plate not in plates:
                plates.add(plate)
                break
        truck_id = f"T{k + 1:0{width}d}"
        start = 6 * 3600 if truck_type == "kitchen" else 5 * 3600
        trucks.append(
            Truck(
                id=truck_id,
                plate=plate,
                truck_type=truck_type,
                capacity_kg=TRUCK_CAPACITY_KG[truck_type],
                streams=TRUCK_STREAMS[truck_type],
                depot_id=depots[k % len(depots)].id,
                terminal_id=f"{truck_id}-GPS",
                shift_start_s=start,
                shift_end_s=start + 12 * 3600,
                break_duration_s=1800,
                break_earliest_s=11 * 3600,
                break_latest_s=13 * 3600,
                can_enter_narrow=truck_type == "small",
            )
        )
    return tuple(trucks)


def check_connectivity(city: City) -> None:
    """Raise if some truck cannot get from its depot to a point it may serve, on to a
    station that takes the point's stream, and home again."""
    g = city.graph
    if not nx.is_strongly_connected(g):
        raise AssertionError("road graph is not strongly connected")
    big = nx.subgraph_view(g, filter_edge=lambda u, v: not g.edges[u, v]["narrow"])
    lane_only = {n for n in g.nodes if all(g.edges[n, m]["narrow"] for m in g.successors(n))}
    core = big.subgraph([n for n in g.nodes if n not in lane_only])
    if not nx.is_strongly_connected(core):
        raise AssertionError("road graph without narrow lanes is not strongly connected")
    hubs: list[Depot | Station] = [*city.depots, *city.stations]
    for site in hubs:
        if site.node in lane_only:
            raise AssertionError(f"{site.id} is only reachable through a narrow lane")
    for p in city.points:
        if p.access_class == "normal" and p.node in lane_only:
            raise AssertionError(f"{p.id} is normal access but sits on a narrow lane")
