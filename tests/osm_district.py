"""A small district on hand-built OpenStreetMap streets, written as `.osm` XML and as
`.osm.pbf`: a 5 × 5 grid in Hefei with one-way, narrow and speed-tagged streets and
ways the import must drop or cut."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import osmium

LAT0, LON0 = 31.85, 117.25
STEP_LAT, STEP_LON = 0.002, 0.0025  # about 222 m and 236 m
BASE = 2**33  # node ids above 32 bits, as OpenStreetMap's are today
MISSING = BASE + 999  # a node no extract holds


def node_id(row: int, col: int) -> int:
    return BASE + row * 10 + col


def grid(
    lat0: float = LAT0, lon0: float = LON0, step_lat: float = STEP_LAT, step_lon: float = STEP_LON
) -> dict[int, tuple[float, float]]:
    """The 5 × 5 junctions, row r northwards and column c eastwards from (lat0, lon0)."""
    return {
        node_id(r, c): (lat0 + r * step_lat, lon0 + c * step_lon)
        for r in range(5)
        for c in range(5)
    }


NODES = grid()


@dataclass(frozen=True)
class Way:
    way_id: int
    refs: list[int]
    tags: dict[str, str]


def _row(r: int) -> list[int]:
    return [node_id(r, c) for c in range(5)]


def _col(c: int) -> list[int]:
    return [node_id(r, c) for r in range(5)]


WAYS = [
    Way(100, _row(0), {"highway": "residential", "name": "芜湖路"}),
    Way(101, _row(1), {"highway": "residential", "oneway": "yes"}),
    Way(102, _row(2), {"highway": "residential", "maxspeed": "walk"}),
    Way(103, _row(3), {"highway": "residential", "oneway": "-1"}),
    Way(104, _row(4), {"highway": "residential", "maxspeed": "1e999"}),
    Way(200, _col(0), {"highway": "tertiary"}),
    Way(201, _col(1), {"highway": "tertiary", "maxspeed": "0"}),
    Way(202, _col(2), {"highway": "tertiary", "maxspeed": "40"}),
    Way(203, _col(3), {"highway": "tertiary", "width": "nan"}),
    Way(204, _col(4), {"highway": "service"}),  # a narrow lane (背街小巷)
    Way(300, [node_id(0, 0), node_id(1, 1)], {"highway": "footway"}),
    Way(301, [node_id(1, 1), node_id(2, 2)], {"highway": "residential", "access": "private"}),
    Way(302, [MISSING, MISSING + 1], {"highway": "residential"}),
    Way(303, [node_id(2, 2), node_id(3, 3), MISSING, node_id(4, 4)], {"highway": "unclassified"}),
    Way(304, [node_id(0, 1), node_id(0, 2), node_id(1, 2), node_id(0, 1)], {"building": "yes"}),
]
# What the import must report for WAYS.
REPORT = {
    "drivable_ways": 11,
    "oneway_ways": 2,
    "narrow_ways": 1,
    "ways_cut_at_missing_nodes": 1,
    "dropped_not_drivable": 2,
    "dropped_no_access": 1,
    "dropped_nodes_missing": 1,
    "junctions": 25,
}


def osm_xml(nodes: dict[int, tuple[float, float]] = NODES, ways: list[Way] = WAYS) -> bytes:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="test">']
    lines += [
        f'<node id="{n}" version="1" lat="{lat:.7f}" lon="{lon:.7f}"/>'
        for n, (lat, lon) in nodes.items()
    ]
    for way in ways:
        lines.append(f'<way id="{way.way_id}" version="1">')
        lines += [f'<nd ref="{ref}"/>' for ref in way.refs]
        lines += [f"<tag k={quoteattr(k)} v={quoteattr(v)}/>" for k, v in way.tags.items()]
        lines.append("</way>")
    lines.append("</osm>")
    return "\n".join(lines).encode()


def osm_pbf(
    folder: Path, nodes: dict[int, tuple[float, float]] = NODES, ways: list[Way] = WAYS
) -> bytes:
    path = folder / "written.osm.pbf"
    writer = osmium.SimpleWriter(str(path), overwrite=True)
    try:
        for n, (lat, lon) in nodes.items():
            writer.add_node(osmium.osm.mutable.Node(id=n, location=(lon, lat), version=1))
        for way in ways:
            writer.add_way(
                osmium.osm.mutable.Way(id=way.way_id, nodes=way.refs, tags=way.tags, version=1)
            )
    finally:
        writer.close()
    data = path.read_bytes()
    path.unlink()
    return data


def near(row: int, col: int, north_m: float = 0.0) -> tuple[float, float]:
    lat, lon = NODES[node_id(row, col)]
    return lat + north_m / 111_320.0, lon


def district_csvs(district: str = "osmtown") -> list[tuple[str, bytes]]:
    """A depot, a station, eight points and two trucks, each within 40 m of a street."""
    dlat, dlon = near(0, 0, 20)
    slat, slon = near(4, 4, -30)
    points = [near(r, c, 15 + 3 * i) for i, (r, c) in enumerate(
        [(0, 2), (1, 4), (2, 1), (2, 3), (3, 0), (3, 2), (4, 1), (4, 3)]
    )]  # fmt: skip
    return [
        ("depots.csv", f"id,name,lat,lon\n{district}-D1,车场,{dlat},{dlon}\n".encode()),
        (
            "stations.csv",
            f"id,name,lat,lon,streams\n{district}-S1,中转站,{slat},{slon},other\n".encode(),
        ),
        (
            "points.csv",
            (
                "id,name,lat,lon,stream,daily_amount_kg,window_start,window_end\n"
                + "".join(
                    f"{district}-P{i},收集点{i},{lat},{lon},其他,900,06:00,16:00\n"
                    for i, (lat, lon) in enumerate(points, 1)
                )
            ).encode(),
        ),
        (
            "trucks.csv",
            (
                "id,plate,truck_type,capacity_kg,streams,depot_id,terminal_id\n"
                f"{district}-T1,皖A00001,compactor,4000,other,{district}-D1,{district}-T1-GPS\n"
                f"{district}-T2,皖A00002,small,4000,other,{district}-D1,{district}-T2-GPS\n"
            ).encode(),
        ),
    ]
