"""`clearday import`: depots, stations, points, trucks and roads from CSV / GeoJSON.

Parsing is pure (files in, validated rows or every error out); loading writes all
kinds in one transaction, so a bad row anywhere means nothing is written. The
format is documented in docs/import.md; the API's bulk import uses the same code.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

KINDS = ("depots", "stations", "points", "trucks", "roads")

STREAMS = {
    "other": "other", "其他": "other", "其他垃圾": "other",
    "kitchen": "kitchen", "厨余": "kitchen", "厨余垃圾": "kitchen", "湿垃圾": "kitchen",
    "recyclable": "recyclable", "可回收": "recyclable", "可回收物": "recyclable",
    "hazardous": "hazardous", "有害": "hazardous", "有害垃圾": "hazardous",
    "mixed": "mixed", "混合": "mixed", "混合垃圾": "mixed",
}  # fmt: skip
TRUCK_TYPES = ("compactor", "kitchen", "small")
ROAD_CLASSES = {"arterial": 50.0, "secondary": 40.0, "local": 30.0, "lane": 15.0}


@dataclass(frozen=True)
class RowError:
    file: str
    line: int  # CSV: line in the file (header is line 1); GeoJSON: feature index
    message: str

    def __str__(self) -> str:
        where = "feature" if self.file.endswith(".geojson") else "line"
        return f"{self.file}, {where} {self.line}: {self.message}"


class ImportRejected(ValueError):
    """The files were rejected whole; `errors` lists every problem found."""

    def __init__(self, errors: list[RowError]) -> None:
        self.errors = errors
        super().__init__(f"{len(errors)} error(s); nothing was imported")


@dataclass
class Parsed:
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {k: [] for k in KINDS})

    def count(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.rows.items() if v}


class _Bad(ValueError):
    pass


# --- field parsers: each turns one raw value into a typed one or raises _Bad ----------


def _text(value: Any) -> str:
    text = str(value).strip()
    if not text:
        raise _Bad("is empty")
    return text


def _float(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _Bad(f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise _Bad(f"{value!r} is not a finite number")
    return number


def _nonneg(value: Any) -> float:
    number = _float(value)
    if number < 0:
        raise _Bad(f"{number} is negative")
    return number


def _positive(value: Any) -> float:
    number = _float(value)
    if number <= 0:
        raise _Bad(f"{number} must be greater than 0")
    return number


def _seconds(value: Any) -> int:
    number = _nonneg(value)
    if number != int(number):
        raise _Bad(f"{value!r} is not a whole number of seconds")
    return int(number)


def _lat(value: Any) -> float:
    number = _float(value)
    if not -90 <= number <= 90:
        raise _Bad(f"latitude {number} is outside -90..90")
    return number


def _lon(value: Any) -> float:
    number = _float(value)
    if not -180 <= number <= 180:
        raise _Bad(f"longitude {number} is outside -180..180")
    return number


def _clock(value: Any) -> time:
    text = str(value).strip()
    try:
        hours, minutes = text.split(":")[:2]
        return time(int(hours), int(minutes))
    except (ValueError, TypeError):
        raise _Bad(f"{text!r} is not a time of day HH:MM") from None


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "y", "是"):
        return True
    if text in ("false", "0", "no", "n", "否"):
        return False
    raise _Bad(f"{value!r} is not true/false")


def _stream(value: Any) -> str:
    text = str(value).strip()
    if text.lower() in STREAMS:
        return STREAMS[text.lower()]
    if text in STREAMS:
        return STREAMS[text]
    raise _Bad(
        f"unknown waste stream {text!r} (use one of other, kitchen, recyclable, hazardous, mixed)"
    )


def _streams(value: Any) -> list[str]:
    items = value if isinstance(value, list) else str(value).replace("；", ";").split(";")
    streams = [_stream(item) for item in items if str(item).strip()]
    if not streams:
        raise _Bad("lists no waste stream")
    return sorted(set(streams))


def _one_of(*allowed: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in allowed:
            raise _Bad(f"{value!r} is not one of {', '.join(allowed)}")
        return text

    return parse


def _node(value: Any) -> int:
    number = _float(value)
    if number != int(number):
        raise _Bad(f"{value!r} is not an integer node id")
    return int(number)


Spec = dict[str, tuple[Callable[[Any], Any], Any]]  # column -> (parser, default; REQUIRED)
REQUIRED = object()

SPECS: dict[str, Spec] = {
    "depots": {
        "id": (_text, REQUIRED), "name": (_text, REQUIRED),
        "lat": (_lat, REQUIRED), "lon": (_lon, REQUIRED),
    },
    "stations": {
        "id": (_text, REQUIRED), "name": (_text, REQUIRED),
        "lat": (_lat, REQUIRED), "lon": (_lon, REQUIRED),
        "streams": (_streams, REQUIRED),
        "opens_at": (_clock, time(0, 0)), "closes_at": (_clock, time(23, 59)),
        "tipping_time_s": (_seconds, 900), "daily_capacity_kg": (_positive, None),
    },
    "points": {
        "id": (_text, REQUIRED), "name": (_text, REQUIRED),
        "lat": (_lat, REQUIRED), "lon": (_lon, REQUIRED),
        "stream": (_stream, REQUIRED), "daily_amount_kg": (_nonneg, REQUIRED),
        "service_time_s": (_seconds, 300),
        "window_start": (_clock, time(0, 0)), "window_end": (_clock, time(23, 59)),
        "geofence_radius_m": (_positive, 30.0), "min_dwell_s": (_seconds, None),
        "clearance_deadline": (_clock, time(20, 0)),
        "access_class": (_one_of("normal", "narrow"), "normal"),
        "has_bins": (_bool, True), "schedule": (_one_of("daily"), "daily"),
    },
    "trucks": {
        "id": (_text, REQUIRED), "plate": (_text, REQUIRED),
        "truck_type": (_one_of(*TRUCK_TYPES), REQUIRED), "capacity_kg": (_positive, REQUIRED),
        "streams": (_streams, REQUIRED), "depot_id": (_text, REQUIRED),
        "terminal_id": (_text, REQUIRED),
        "shift_start": (_clock, time(5, 0)), "shift_end": (_clock, time(17, 0)),
        "max_route_duration_s": (_seconds, None), "break_duration_s": (_seconds, 1800),
        "break_earliest": (_clock, time(11, 0)), "break_latest": (_clock, time(13, 0)),
        "can_enter_narrow": (_bool, None),
    },
    "roads": {
        "id": (_text, REQUIRED), "from_node": (_node, REQUIRED), "to_node": (_node, REQUIRED),
        "road_class": (_one_of(*ROAD_CLASSES), "local"), "speed_kmh": (_positive, None),
        "oneway": (_bool, False), "narrow": (_bool, False), "length_m": (_positive, None),
    },
}  # fmt: skip


def kind_of(filename: str) -> str | None:
    stem = Path(filename).name.lower()
    for kind in KINDS:
        if stem.startswith(kind[:-1]):  # depot*, station*, point*, truck*, road*
            return kind
    return None


def _csv_records(data: bytes) -> Iterator[tuple[int, dict[str, Any]]]:
    text = data.decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames:
        reader.fieldnames = [name.strip() for name in reader.fieldnames]
    for record in reader:
        # DictReader counts physical lines; the header is line 1.
        cleaned = {k: v for k, v in record.items() if k is not None and v not in (None, "")}
        yield reader.line_num, cleaned


def _geojson_records(data: bytes, kind: str) -> Iterator[tuple[int, dict[str, Any]]]:
    document = json.loads(data.decode("utf-8-sig"))
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        raise _Bad("is not a GeoJSON FeatureCollection")
    for index, feature in enumerate(document.get("features") or []):
        properties = dict(feature.get("properties") or {})
        geometry = feature.get("geometry") or {}
        coords = geometry.get("coordinates")
        if kind == "roads":
            if (
                geometry.get("type") != "LineString"
                or not isinstance(coords, list)
                or len(coords) < 2
            ):
                properties["__error__"] = "geometry must be a LineString with at least 2 points"
            else:
                properties["coordinates"] = coords
        elif geometry.get("type") == "Point" and isinstance(coords, list) and len(coords) >= 2:
            properties.setdefault("lon", coords[0])
            properties.setdefault("lat", coords[1])
        else:
            properties["__error__"] = "geometry must be a Point [lon, lat]"
        yield index, {k: v for k, v in properties.items() if v not in (None, "")}


def _haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    rlat1, rlat2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((rlat2 - rlat1) / 2) ** 2
        + math.cos(rlat1) * math.cos(rlat2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6_371_000 * math.asin(math.sqrt(a))


def _validate(
    kind: str, record: dict[str, Any], default_district: str
) -> tuple[dict[str, Any], list[str]]:
    problems = []
    if "__error__" in record:
        problems.append(record.pop("__error__"))
    row: dict[str, Any] = {}
    for column, (parse, default) in SPECS[kind].items():
        if column in record:
            try:
                row[column] = parse(record[column])
            except _Bad as bad:
                problems.append(f"{column}: {bad}")
        elif default is REQUIRED:
            problems.append(f"missing required field {column!r}")
        else:
            row[column] = default
    row["district"] = str(record.get("district") or default_district).strip()
    if kind in ("depots", "stations", "points") and row.get("lat") == 0 and row.get("lon") == 0:
        problems.append("coordinates (0, 0) look like a missing location")
    window = (row.get("window_start"), row.get("window_end"))
    if kind == "points" and None not in window and window[0] > window[1]:  # type: ignore[operator]
        problems.append("window_start is after window_end")
    if kind == "trucks" and not problems:
        if row["shift_start"] >= row["shift_end"]:
            problems.append("shift_start must be before shift_end")
        if row["can_enter_narrow"] is None:
            row["can_enter_narrow"] = row["truck_type"] == "small"
    if kind == "roads" and not problems:
        coords = record.get("coordinates") or []
        try:
            row["coordinates"] = [[_lon(c[0]), _lat(c[1])] for c in coords]
        except (_Bad, TypeError, IndexError) as bad:
            problems.append(f"geometry: {bad}")
        else:
            if row["speed_kmh"] is None:
                row["speed_kmh"] = ROAD_CLASSES[row["road_class"]]
            if row["length_m"] is None:
                pts = row["coordinates"]
                length = sum(_haversine_m(*pts[i], *pts[i + 1]) for i in range(len(pts) - 1))
                row["length_m"] = max(length, 0.1)
    return row, problems


def parse_files(files: Iterable[tuple[str, bytes]], *, default_district: str = "default") -> Parsed:
    """Validate every row of every file; raise ImportRejected listing all errors."""
    parsed = Parsed()
    errors: list[RowError] = []
    seen: dict[tuple[str, str], str] = {}
    for name, data in files:
        kind = kind_of(name)
        if kind is None:
            errors.append(
                RowError(
                    name,
                    0,
                    "unknown file: name it depots/stations/points/trucks.csv or .geojson, roads.geojson",
                )
            )
            continue
        is_geojson = name.lower().endswith((".geojson", ".json"))
        if kind == "roads" and not is_geojson:
            errors.append(RowError(name, 0, "roads must be GeoJSON LineStrings (roads.geojson)"))
            continue
        try:
            records = list(_geojson_records(data, kind) if is_geojson else _csv_records(data))
        except (UnicodeDecodeError, json.JSONDecodeError, csv.Error, _Bad) as exc:
            errors.append(RowError(name, 0, f"cannot read file: {exc}"))
            continue
        if not records:
            errors.append(RowError(name, 0, "has no rows"))
        for line, record in records:
            row, problems = _validate(kind, record, default_district)
            key = (kind, str(row.get("id")))
            if "id" in row and key in seen:
                problems.append(f"duplicate id {row['id']!r} (first at {seen[key]})")
            elif "id" in row:
                seen[key] = f"{name} {'feature' if is_geojson else 'line'} {line}"
            if not problems and not _district_ok(row["district"]):
                problems.append(
                    f"district code {row['district']!r} must be 1-64 letters, digits, _ or -"
                )
            errors.extend(RowError(name, line, p) for p in problems)
            if not problems:
                row["__where__"] = (name, line)
                parsed.rows[kind].append(row)
    # Terminal ids must be unique across trucks too: one terminal, one truck.
    terminals: dict[str, str] = {}
    for row in parsed.rows["trucks"]:
        other = terminals.setdefault(row["terminal_id"], row["id"])
        if other != row["id"]:
            name, line = row["__where__"]
            errors.append(
                RowError(
                    name,
                    line,
                    f"terminal_id {row['terminal_id']!r} is already used by truck {other!r}",
                )
            )
    if errors:
        raise ImportRejected(errors)
    return parsed


def _district_ok(code: str) -> bool:
    return (
        bool(code)
        and len(code) <= 64
        and all(c.isascii() and (c.isalnum() or c in "_-") for c in code)
    )


def read_paths(paths: Iterable[Path]) -> list[tuple[str, bytes]]:
    """Files to import from paths that are files or folders (folders: known names only)."""
    files = []
    for path in paths:
        if path.is_dir():
            for child in sorted(path.iterdir()):
                if (
                    child.is_file()
                    and kind_of(child.name)
                    and child.suffix.lower() in (".csv", ".geojson")
                ):
                    files.append((child.name, child.read_bytes()))
        elif path.is_file():
            files.append((path.name, path.read_bytes()))
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return files


# kind -> (table, key column, columns that come from the row under the same name)
_TABLES = {
    "depots": ("depot", "depot_id", ["name", "lat", "lon"]),
    "stations": (
        "transfer_station", "station_id",
        ["name", "lat", "lon", "streams", "opens_at", "closes_at", "tipping_time_s", "daily_capacity_kg"],
    ),
    "points": (
        "collection_point", "point_id",
        ["name", "lat", "lon", "stream", "daily_amount_kg", "service_time_s", "window_start",
         "window_end", "geofence_radius_m", "min_dwell_s", "clearance_deadline", "access_class",
         "has_bins", "schedule"],
    ),
    "trucks": (
        "truck", "truck_id",
        ["plate", "truck_type", "capacity_kg", "streams", "depot_id", "terminal_id", "shift_start",
         "shift_end", "max_route_duration_s", "break_duration_s", "break_earliest", "break_latest",
         "can_enter_narrow"],
    ),
    "roads": (
        "road", "road_id",
        ["from_node", "to_node", "road_class", "speed_kmh", "oneway", "narrow", "length_m", "coordinates"],
    ),
}  # fmt: skip


@dataclass(frozen=True)
class ImportSummary:
    inserted: dict[str, int]
    updated: dict[str, int]


def load(conn: psycopg.Connection, parsed: Parsed) -> ImportSummary:
    """Write everything in one transaction (all or nothing); re-imports update in place."""
    inserted: dict[str, int] = {}
    updated: dict[str, int] = {}
    with conn.transaction():
        districts = {row["district"] for rows in parsed.rows.values() for row in rows}
        for code in sorted(districts):
            conn.execute(
                "INSERT INTO district (district_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (code, code),
            )
        _check_depots_exist(conn, parsed)
        for kind in KINDS:  # depots before trucks (foreign key)
            rows = parsed.rows[kind]
            if not rows:
                continue
            table, key, columns = _TABLES[kind]
            sql = (
                f"INSERT INTO {table} ({key}, district_id, {', '.join(columns)}) "
                f"VALUES ({', '.join(['%s'] * (len(columns) + 2))}) "
                f"ON CONFLICT ({key}) DO UPDATE SET "
                + ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
                + ", updated_at = now() RETURNING (xmax = 0)"
            )
            with conn.cursor() as cur:
                values = [
                    [row["id"], row["district"], *(_sql_value(row[c]) for c in columns)]
                    for row in rows
                ]
                cur.executemany(sql, values, returning=True)
                fresh = 0
                while True:
                    result = cur.fetchone()
                    fresh += bool(result and result[0])
                    if not cur.nextset():
                        break
            inserted[kind] = fresh
            updated[kind] = len(rows) - fresh
    return ImportSummary(inserted, updated)


def _sql_value(value: Any) -> Any:
    return (
        Jsonb(value) if isinstance(value, list) and value and isinstance(value[0], list) else value
    )


def _check_depots_exist(conn: psycopg.Connection, parsed: Parsed) -> None:
    wanted = {row["depot_id"] for row in parsed.rows["trucks"]}
    known = {row["id"] for row in parsed.rows["depots"]}
    missing = wanted - known
    if missing:
        found = conn.execute(
            "SELECT depot_id FROM depot WHERE depot_id = ANY(%s)", (list(missing),)
        ).fetchall()
        missing -= {r[0] for r in found}
    if missing:
        errors = [
            RowError(
                row["__where__"][0],
                row["__where__"][1],
                f"depot_id {row['depot_id']!r} is not in this import nor in the database",
            )
            for row in parsed.rows["trucks"]
            if row["depot_id"] in missing
        ]
        raise ImportRejected(errors)
