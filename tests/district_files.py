"""A small hand-written district in the import format (docs/import.md), as a GIS export
would give it: its own node ids, text road ids, Chinese names, no city.json.

Junctions (metres east, north of the origin) and their ids:

    15 (0,400) ──── 63 (200,400) ────╮ (300,430) ── 500 (400,400)
     │               │                                │
     7 (0,200) ──── 88 (200,200) ───▶ 240 (400,200) ═══ 777 (520,200)  (narrow lane)
     │               │                 │
    31 (0,0) ═════ 57 (200,0) ═════ 102 (400,0)   (arterial)

88 → 240 is one-way; 63 – 500 bends through (300, 430); 240 – 777 is a dead-end
背街小巷 lane. The depot is by junction 31, the station beside 102 – 240, the points
beside the roads (split there), at junction 15, at the bend and at the lane's end.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from simulator import geo

ORIGIN = (31.86, 117.28)

JUNCTIONS = {
    31: (0, 0), 57: (200, 0), 102: (400, 0),
    7: (0, 200), 88: (200, 200), 240: (400, 200),
    15: (0, 400), 63: (200, 400), 500: (400, 400),
    777: (520, 200),
}  # fmt: skip

# id, from, to, class, oneway, narrow, name, interior vertices (metres)
ROADS: list[tuple[str, int, int, str, bool, bool, str, list[tuple[float, float]]]] = [
    ("RD-A1", 31, 57, "arterial", False, False, "徽州大道", []),
    ("RD-A2", 57, 102, "arterial", False, False, "徽州大道", []),
    ("RD-L1", 7, 88, "local", False, False, "芜湖街", []),
    ("RD-L2", 88, 240, "local", True, False, "芜湖街", []),
    ("RD-S1", 15, 63, "secondary", False, False, "望江路", []),
    ("RD-S2", 63, 500, "secondary", False, False, "望江路", [(300, 430)]),
    ("RD-V1", 31, 7, "local", False, False, "宁国街", []),
    ("RD-V2", 7, 15, "local", False, False, "宁国街", []),
    ("RD-V3", 57, 88, "local", False, False, "屯溪街", []),
    ("RD-V4", 88, 63, "local", False, False, "屯溪街", []),
    ("RD-V5", 102, 240, "secondary", False, False, "马鞍山路", []),
    ("RD-V6", 240, 500, "secondary", False, False, "马鞍山路", []),
    ("RD-LANE", 240, 777, "lane", False, True, "马鞍山路1号巷", []),
]

DEPOT = {"id": "BH-D01", "name": "包河车场", "at": (0, -15)}
STATION = {"id": "BH-S01", "name": "东部中转站", "at": (420, 100)}
# id, name, at (metres), stream, amount, access, has_bins
POINTS: list[tuple[str, str, tuple[float, float], str, int, str, str]] = [
    ("HF-0001", "徽州大道1号垃圾房", (100, 8), "其他", 300, "normal", "true"),
    ("HF-0002", "屯溪街小区桶站", (190, 300), "可回收", 120, "normal", "true"),
    ("HF-0003", "宁国街望江路口收集点", (0, 400), "其他", 250, "normal", "false"),
    ("HF-0004", "芜湖街菜市场", (300, 210), "其他", 400, "normal", "true"),
    ("HF-0005", "望江路学校", (300, 440), "可回收", 90, "normal", "true"),
    ("HF-0006", "马鞍山路1号巷桶站", (520, 205), "有害", 20, "narrow", "true"),
]
TRUCKS = [
    ("BH-T1", "皖A·D1234", "compactor", 8000, "other;recyclable", "BH-T1-GPS"),
    ("BH-T2", "皖A·X0007", "small", 1500, "other;recyclable;hazardous", "BH-T2-GPS"),
]


def latlon(x: float, y: float) -> tuple[float, float]:
    lat, lon = geo.offset(*ORIGIN, x, y)
    return round(lat, 7), round(lon, 7)


def write_csv(path: Path, header: list[str], rows: list[list[Any]], *, bom: bool = False) -> None:
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def road_features(district: str | None = None) -> list[dict[str, Any]]:
    features = []
    for road_id, a, b, cls, oneway, narrow, name, bends in ROADS:
        shape = [JUNCTIONS[a], *bends, JUNCTIONS[b]]
        coords = [[latlon(*xy)[1], latlon(*xy)[0]] for xy in shape]
        props: dict[str, Any] = {"id": road_id, "from_node": a, "to_node": b, "road_class": cls,
                                 "name": name}  # fmt: skip
        if oneway:
            props["oneway"] = True
        if narrow:
            props["narrow"] = True
        if district:
            props["district"] = district
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": coords},
                "properties": props,
            }
        )
    return features


def write_roads(folder: Path, features: list[dict[str, Any]]) -> None:
    document = {"type": "FeatureCollection", "features": features}
    (folder / "roads.geojson").write_text(json.dumps(document, ensure_ascii=False), "utf-8")


def write_district(folder: Path, *, district: str | None = "shushan") -> Path:
    """Write the district's five files into `folder` (created); returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    extra = ["district"] if district else []
    tail = [district] if district else []
    d = latlon(*DEPOT["at"])  # type: ignore[arg-type]
    write_csv(folder / "depots.csv", ["id", "name", "lat", "lon", *extra],
              [[DEPOT["id"], DEPOT["name"], d[0], d[1], *tail]])  # fmt: skip
    s = latlon(*STATION["at"])  # type: ignore[arg-type]
    write_csv(
        folder / "stations.csv",
        ["id", "name", "lat", "lon", "streams", "opens_at", "closes_at", "tipping_time_s", *extra],
        [[STATION["id"], STATION["name"], s[0], s[1], "其他;可回收;有害", "05:00", "22:00", 600,
          *tail]],
    )  # fmt: skip
    write_csv(
        folder / "points.csv",
        ["id", "name", "lat", "lon", "stream", "daily_amount_kg", "service_time_s",
         "access_class", "has_bins", *extra],
        [[pid, name, *latlon(*xy), stream, kg, 180, access, bins, *tail]
         for pid, name, xy, stream, kg, access, bins in POINTS],
        bom=True,  # as Excel writes it
    )  # fmt: skip
    write_csv(
        folder / "trucks.csv",
        ["id", "plate", "truck_type", "capacity_kg", "streams", "depot_id", "terminal_id",
         "shift_start", "shift_end", *extra],
        [[tid, plate, kind, cap, streams, DEPOT["id"], terminal, "06:00", "14:00", *tail]
         for tid, plate, kind, cap, streams, terminal in TRUCKS],
    )  # fmt: skip
    write_roads(folder, road_features(district))
    return folder
