"""`clearday import`: depots, stations, points, trucks and roads from CSV / GeoJSON, and
a district's road network from an OpenStreetMap extract (fleet/imports/osm.py).

Parsing is pure (files in, validated rows or every error out): any byte sequence is
either accepted or answered with file, line and what to fix, never an exception of
another kind. Loading writes all kinds in one transaction, so a bad row anywhere means
nothing is written. Ids are unique across the deployment and a district owns its rows:
a row whose id (or terminal id) belongs to another district is refused, never merged.
The format is documented in docs/import.md; the API's bulk import uses the same code.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any, Literal

import psycopg
import psycopg.errors

from fleet.imports import osm, repo
from fleet.refusal import Param, Refused
from fleet.trucks.terminals import TERMINAL_COLUMNS, parse_jt808_phone
from routing.vocab import (
    DEFAULT_SPEED_KMH,
    ROAD_CLASSES,
    STREAMS,
    TRUCK_TYPES,
    Stream,
    haversine_m,
)

KINDS = ("depots", "stations", "points", "trucks", "roads")

# A stream by its English name or one of its Chinese names (垃圾分类 signage).
STREAM_NAMES: dict[str, Stream] = {s: s for s in STREAMS} | {
    "其他": "other", "其他垃圾": "other",
    "厨余": "kitchen", "厨余垃圾": "kitchen", "湿垃圾": "kitchen",
    "可回收": "recyclable", "可回收物": "recyclable",
    "有害": "hazardous", "有害垃圾": "hazardous",
    "混合": "mixed", "混合垃圾": "mixed",
}  # fmt: skip


# Bounds every value must meet; they match the API's models (fleet/fields.py), so
# what one accepts the other does, and nothing reaches the database that it refuses.
MAX_ID_CHARS = 64
MAX_NAME_CHARS = 200
MAX_PLATE_CHARS = 16
MAX_SECONDS = 7 * 24 * 3600
MAX_KG = 1e9
MAX_GEOFENCE_M = 5000.0
MAX_SPEED_KMH = 200.0
MAX_ROAD_LENGTH_M = 1e6
MAX_ERRORS = 200  # listed; the summary says how many there were in all
# Ids end up in web addresses (/api/v1/points/{id}), where a slash cannot be escaped.
_ID_FORBIDDEN = re.compile(r"[\s/\\]")
# Control, format (zero-width, bidi override, BOM) and lone surrogate characters: invisible
# in a spreadsheet, refused by PostgreSQL (NUL) or able to disguise one id as another.
_INVISIBLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f"
    "\ufeff\ufff9-\ufffb\ud800-\udfff]"
)
_WIDE_BOMS = {
    codecs.BOM_UTF32_LE: "UTF-32",
    codecs.BOM_UTF32_BE: "UTF-32",
    codecs.BOM_UTF16_LE: "UTF-16",
    codecs.BOM_UTF16_BE: "UTF-16",
}
SAVE_AS_UTF8 = 'save the file as UTF-8 (Excel: 另存为 "CSV UTF-8"; convert GBK files first)'

Refusal = Literal["invalid", "conflict", "forbidden"]


@dataclass(frozen=True)
class RowError:
    file: str
    # CSV (and JSON syntax errors): line in the file, the header is line 1; GeoJSON rows:
    # feature index. CSV line 0 or unit "file": the file as a whole.
    line: int
    message: str
    # invalid: fix the file; conflict: an id is not available; forbidden: needs a right.
    refusal: Refusal = "invalid"
    unit: Literal["line", "feature", "file"] | None = None
    # The message as a stable code and the values it names (fleet/refusal.py).
    code: str = "import_invalid"
    params: dict[str, Param] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        file: str,
        line: int,
        problem: Refused,
        refusal: Refusal = "invalid",
        unit: Literal["line", "feature", "file"] | None = None,
    ) -> RowError:
        return cls(file, line, str(problem), refusal, unit, problem.code, dict(problem.params))

    def __str__(self) -> str:
        unit = self.unit or ("feature" if self.file.endswith(".geojson") else "line")
        if unit == "file" or (unit == "line" and self.line == 0):
            return f"{self.file}: {self.message}"
        return f"{self.file}, {unit} {self.line}: {self.message}"


class ImportRejected(ValueError):
    """The files were rejected whole; `errors` lists the problems found (at most
    MAX_ERRORS of them; `total` counts them all)."""

    def __init__(self, errors: list[RowError], *, total: int | None = None) -> None:
        self.errors = errors[:MAX_ERRORS]
        self.total = max(total or 0, len(errors))
        shown = "" if self.total == len(self.errors) else f", the first {len(self.errors)} listed"
        super().__init__(f"{self.total} error(s){shown}; nothing was imported")

    @property
    def refusal(self) -> Refusal:
        """The weightiest kind of refusal among the errors (forbidden > conflict > invalid)."""
        kinds = {e.refusal for e in self.errors}
        return (
            "forbidden"
            if "forbidden" in kinds
            else "conflict"
            if "conflict" in kinds
            else "invalid"
        )


@dataclass
class Parsed:
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {k: [] for k in KINDS})
    # OpenStreetMap extracts, each a district's road network (their rows are in "roads").
    extracts: list[osm.Extract] = field(default_factory=list)

    def count(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.rows.items() if v}


class _Bad(Refused):
    pass


# --- field parsers: each turns one raw value into a typed one or raises _Bad ----------


def _show(value: Any) -> str:
    """A value quoted for a message, cut short (a field may be megabytes long)."""
    text = repr(value)
    return text if len(text) <= 42 else text[:40] + "…" + text[-1]


def _scalar(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        raise _Bad("not_single_value", f"{_show(value)} is not a single value", value=_show(value))
    return value


def _text_of(max_chars: int) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(_scalar(value)).strip()
        if not text:
            raise _Bad("value_empty", "is empty")
        if len(text) > max_chars:
            raise _Bad(
                "value_too_long",
                f"is {len(text)} characters long; at most {max_chars}",
                length=len(text),
                max=max_chars,
            )
        return text

    return parse


_text = _text_of(MAX_NAME_CHARS)


def _id(value: Any) -> str:
    text = _text_of(MAX_ID_CHARS)(value)
    if _ID_FORBIDDEN.search(text):
        raise _Bad(
            "id_bad_chars", f"{_show(text)} may not contain spaces, / or \\", value=_show(text)
        )
    return text


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise _Bad("not_a_number", f"{value!r} is not a number", value=repr(value))
    try:
        number = float(_scalar(value))
    except (TypeError, ValueError, OverflowError):
        raise _Bad("not_a_number", f"{_show(value)} is not a number", value=_show(value)) from None
    if not math.isfinite(number):
        raise _Bad("not_finite", f"{_show(value)} is not a finite number", value=_show(value))
    return number


def _bounded(low: float, high: float, *, above_low: bool = False) -> Callable[[Any], float]:
    """A finite number in low..high (above low, not equal to it, with `above_low`)."""

    def parse(value: Any) -> float:
        number = _float(value)
        shown = f"{number:g}"
        if above_low and number <= low:
            raise _Bad(
                "number_not_above", f"{shown} must be greater than {low:g}", value=shown, low=low
            )
        if number < low:
            if low == 0:
                raise _Bad("number_negative", f"{shown} is negative", value=shown)
            raise _Bad("number_below", f"{shown} is below {low:g}", value=shown, low=low)
        if number > high:
            raise _Bad("number_above", f"{shown} is more than {high:g}", value=shown, high=high)
        return number

    return parse


_kg = _bounded(0, MAX_KG)
_positive_kg = _bounded(0, MAX_KG, above_low=True)


def _seconds_of(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        number = _bounded(low, high)(value)
        if number != int(number):
            raise _Bad(
                "not_whole_seconds",
                f"{_show(value)} is not a whole number of seconds",
                value=_show(value),
            )
        return int(number)

    return parse


_seconds = _seconds_of(0, MAX_SECONDS)


def _lat(value: Any) -> float:
    number = _float(value)
    if not -90 <= number <= 90:
        raise _Bad("latitude_range", f"latitude {number} is outside -90..90", value=number)
    return number


def _lon(value: Any) -> float:
    number = _float(value)
    if not -180 <= number <= 180:
        raise _Bad("longitude_range", f"longitude {number} is outside -180..180", value=number)
    return number


def _clock(value: Any) -> time:
    text = str(_scalar(value)).strip()
    try:
        hours, minutes = text.split(":")[:2]
        if not (hours.isascii() and minutes.isascii()) or len(hours + minutes) > 4:
            raise ValueError
        return time(int(hours), int(minutes))
    except (ValueError, TypeError):
        raise _Bad(
            "not_clock", f"{_show(text)} is not a time of day HH:MM", value=_show(text)
        ) from None


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(_scalar(value)).strip().lower()
    if text in ("true", "1", "yes", "y", "是"):
        return True
    if text in ("false", "0", "no", "n", "否"):
        return False
    raise _Bad("not_bool", f"{_show(value)} is not true/false", value=_show(value))


def _jt808_phone(value: Any) -> str:
    """A JT/T 808 terminal phone number: digits, stored without leading zeros."""
    try:
        return parse_jt808_phone(str(_scalar(value)))
    except Refused as refused:
        raise _Bad(refused.code, refused.text, **refused.params) from None


def _stream(value: Any) -> str:
    text = str(_scalar(value)).strip()
    if text.lower() in STREAM_NAMES:
        return STREAM_NAMES[text.lower()]
    if text in STREAM_NAMES:
        return STREAM_NAMES[text]
    raise _Bad(
        "stream_unknown",
        f"unknown waste stream {_show(text)} (use one of {', '.join(STREAMS)})",
        value=_show(text),
    )


def _streams(value: Any) -> list[str]:
    items = value if isinstance(value, list) else str(value).replace("；", ";").split(";")
    streams = [_stream(item) for item in items if str(item).strip()]
    if not streams:
        raise _Bad("streams_none", "lists no waste stream")
    return sorted(set(streams))


def _one_of(*allowed: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(_scalar(value)).strip().lower()
        if text not in allowed:
            listed = ", ".join(allowed)
            raise _Bad(
                "not_one_of",
                f"{_show(value)} is not one of {listed}",
                value=_show(value),
                allowed=listed,
            )
        return text

    return parse


def _node(value: Any) -> int:
    number = _bounded(-(2**53), 2**53)(value)  # integers a float (and JSON) holds exactly
    if number != int(number):
        raise _Bad(
            "node_not_integer", f"{_show(value)} is not an integer node id", value=_show(value)
        )
    return int(number)


Spec = dict[str, tuple[Callable[[Any], Any], Any]]  # column -> (parser, default; REQUIRED)
REQUIRED = object()

SPECS: dict[str, Spec] = {
    "depots": {
        "id": (_id, REQUIRED), "name": (_text, REQUIRED),
        "lat": (_lat, REQUIRED), "lon": (_lon, REQUIRED),
    },
    "stations": {
        "id": (_id, REQUIRED), "name": (_text, REQUIRED),
        "lat": (_lat, REQUIRED), "lon": (_lon, REQUIRED),
        "streams": (_streams, REQUIRED),
        "opens_at": (_clock, time(0, 0)), "closes_at": (_clock, time(23, 59)),
        "tipping_time_s": (_seconds, 900), "daily_capacity_kg": (_positive_kg, None),
    },
    "points": {
        "id": (_id, REQUIRED), "name": (_text, REQUIRED),
        "lat": (_lat, REQUIRED), "lon": (_lon, REQUIRED),
        "stream": (_stream, REQUIRED), "daily_amount_kg": (_kg, REQUIRED),
        "service_time_s": (_seconds, 300),
        "window_start": (_clock, time(0, 0)), "window_end": (_clock, time(23, 59)),
        "geofence_radius_m": (_bounded(0, MAX_GEOFENCE_M, above_low=True), 30.0),
        "min_dwell_s": (_seconds, None),
        "clearance_deadline": (_clock, time(20, 0)),
        "access_class": (_one_of("normal", "narrow"), "normal"),
        "has_bins": (_bool, True), "schedule": (_one_of("daily"), "daily"),
    },
    "trucks": {
        "id": (_id, REQUIRED), "plate": (_text_of(MAX_PLATE_CHARS), REQUIRED),
        "truck_type": (_one_of(*TRUCK_TYPES), REQUIRED), "capacity_kg": (_positive_kg, REQUIRED),
        "streams": (_streams, REQUIRED), "depot_id": (_id, REQUIRED),
        "terminal_id": (_id, REQUIRED), "jt808_phone": (_jt808_phone, None),
        "shift_start": (_clock, time(5, 0)), "shift_end": (_clock, time(17, 0)),
        "max_route_duration_s": (_seconds_of(1, 24 * 3600), None), "break_duration_s": (_seconds, 1800),
        "break_earliest": (_clock, time(11, 0)), "break_latest": (_clock, time(13, 0)),
        "can_enter_narrow": (_bool, None),
    },
    "roads": {
        "id": (_id, REQUIRED), "from_node": (_node, REQUIRED), "to_node": (_node, REQUIRED),
        "road_class": (_one_of(*ROAD_CLASSES), "local"),
        "speed_kmh": (_bounded(0, MAX_SPEED_KMH, above_low=True), None),
        "oneway": (_bool, False), "narrow": (_bool, False),
        "length_m": (_bounded(0, MAX_ROAD_LENGTH_M, above_low=True), None),
    },
}  # fmt: skip


def kind_of(filename: str) -> str | None:
    if osm.osm_format(filename):
        return "roads"
    stem = Path(filename).name.lower()
    for kind in KINDS:
        if stem.startswith(kind[:-1]):  # depot*, station*, point*, truck*, road*
            return kind
    return None


class _Errors:
    """The errors found so far: the first MAX_ERRORS kept, all of them counted (a file of
    a million bad lines must not become a million error objects)."""

    def __init__(self) -> None:
        self.listed: list[RowError] = []
        self.total = 0

    def add(self, error: RowError) -> None:
        self.total += 1
        if len(self.listed) < MAX_ERRORS:
            self.listed.append(error)

    def raise_any(self) -> None:
        if self.total:
            raise ImportRejected(self.listed, total=self.total)


def _decode(name: str, data: bytes, errors: _Errors) -> str | None:
    """The file's text (a leading UTF-8 BOM dropped), or None with every line that holds a
    NUL byte or bytes that are not UTF-8 named in `errors`."""
    for bom, encoding in _WIDE_BOMS.items():
        if data.startswith(bom):
            errors.add(
                RowError.of(
                    name,
                    1,
                    Refused(
                        "file_wide_encoding",
                        f"is {encoding} text, not UTF-8; {SAVE_AS_UTF8}",
                        encoding=encoding,
                    ),
                )
            )
            return None
    try:
        text: str | None = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" not in text:
        return text.removeprefix("\ufeff")
    # UTF-8 never uses the byte 0x0A inside a character, so lines can be split as bytes.
    for number, line in enumerate(data.split(b"\n"), start=1):
        if b"\x00" in line:
            errors.add(
                RowError.of(
                    name,
                    number,
                    Refused(
                        "line_nul",
                        f"holds a NUL byte (0x00) at byte {line.index(0) + 1} of the line; "
                        "the file is binary or UTF-16: " + SAVE_AS_UTF8,
                        byte=line.index(0) + 1,
                    ),
                )
            )
            continue
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as bad:
            errors.add(
                RowError.of(
                    name,
                    number,
                    Refused(
                        "line_not_utf8",
                        f"byte 0x{line[bad.start]:02x} at byte {bad.start + 1} of the line is not "
                        f"UTF-8; {SAVE_AS_UTF8}",
                        value=f"0x{line[bad.start]:02x}",
                        byte=bad.start + 1,
                    ),
                )
            )
    return None


def _header_problem(columns: list[str]) -> Refused | None:
    for column in columns:
        if _INVISIBLE.search(column):
            return Refused(
                "header_invisible",
                f"column name {_show(column)} holds an invisible character; retype it",
                value=_show(column),
            )
    named = [c for c in columns if c]
    if not named:
        return Refused(
            "header_no_names", "the first line must name the columns (see docs/import.md)"
        )
    twice = sorted({c for c in named if named.count(c) > 1})
    if twice:
        return Refused(
            "header_duplicate",
            f"column {twice[0]!r} appears more than once in the header",
            column=twice[0],
        )
    return None


def _csv_records(name: str, text: str, errors: _Errors) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, {column: value}) per row with at least one value; blank values left out.
    Rows of the wrong width are errors (a value with an unquoted comma shifts the rest)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            errors.add(
                RowError.of(
                    name,
                    1,
                    Refused("file_empty", "is empty: the first line must name the columns"),
                )
            )
            return
        columns = [c.strip() for c in header]
        problem = _header_problem(columns)
        if problem:
            errors.add(RowError.of(name, 1, problem))
            return
        for values in reader:
            line = reader.line_num  # physical lines: a quoted value may span several
            if not any(v.strip() for v in values):
                continue
            width = f"has {len(values)} values but the header names {len(columns)} columns"
            counts: dict[str, Param] = {"values": len(values), "columns": len(columns)}
            if any(v.strip() for v in values[len(columns) :]):
                wide = Refused("row_too_wide", f"{width}; quote values that hold a comma", **counts)
                errors.add(RowError.of(name, line, wide))
                continue
            if len(values) < len(columns):
                narrow = Refused(
                    "row_too_narrow", f"{width}; a value or a comma is missing", **counts
                )
                errors.add(RowError.of(name, line, narrow))
                continue
            unnamed = [i + 1 for i, c in enumerate(columns) if not c and values[i].strip()]
            if unnamed:
                errors.add(
                    RowError.of(
                        name,
                        line,
                        Refused(
                            "column_unnamed",
                            f"column {unnamed[0]} has a value but no name in the header",
                            index=unnamed[0],
                        ),
                    )
                )
                continue
            yield line, {c: v for c, v in zip(columns, values, strict=False) if c and v.strip()}
    except csv.Error as exc:
        reason = str(exc)
        if "field limit" in reason:
            limit = csv.field_size_limit()
            unreadable = Refused(
                "csv_value_too_long",
                f"cannot be read as CSV: a value is longer than {limit} characters",
                max=limit,
            )
        else:
            unreadable = Refused("csv_unreadable", f"cannot be read as CSV: {reason}")
        errors.add(RowError.of(name, max(reader.line_num, 1), unreadable))


def _geojson_records(
    name: str, text: str, kind: str, errors: _Errors
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(feature index, properties) per feature; a bad geometry is the row's `__error__`."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        syntax = Refused(
            "json_syntax", f"is not JSON: {exc.msg} at column {exc.colno}", column=exc.colno
        )
        errors.add(RowError.of(name, exc.lineno, syntax, unit="line"))
        return
    except (ValueError, RecursionError) as exc:  # a number of 5,000 digits; deep nesting
        unreadable = Refused("json_unreadable", f"cannot be read as JSON: {str(exc)[:100]}")
        errors.add(RowError.of(name, 0, unreadable, unit="file"))
        return
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        errors.add(
            RowError.of(
                name,
                0,
                Refused("not_feature_collection", "is not a GeoJSON FeatureCollection"),
                unit="file",
            )
        )
        return
    features = document.get("features")
    if not isinstance(features, list):
        errors.add(
            RowError.of(name, 0, Refused("no_features", "has no list of features"), unit="file")
        )
        return
    for index, feature in enumerate(features):
        if not isinstance(feature, dict):
            errors.add(
                RowError.of(name, index, Refused("not_feature", "is not a GeoJSON Feature object"))
            )
            continue
        raw_properties = feature.get("properties") or {}
        geometry = feature.get("geometry") or {}
        if not isinstance(raw_properties, dict) or not isinstance(geometry, dict):
            errors.add(
                RowError.of(
                    name,
                    index,
                    Refused("feature_not_objects", "properties and geometry must be JSON objects"),
                )
            )
            continue
        properties = dict(raw_properties)
        coords = geometry.get("coordinates")
        if kind == "roads":
            if (
                geometry.get("type") != "LineString"
                or not isinstance(coords, list)
                or len(coords) < 2
            ):
                properties["__error__"] = Refused(
                    "road_geometry", "geometry must be a LineString with at least 2 points"
                )
            else:
                properties["coordinates"] = coords
        elif geometry.get("type") == "Point" and isinstance(coords, list) and len(coords) >= 2:
            properties.setdefault("lon", coords[0])
            properties.setdefault("lat", coords[1])
        else:
            properties["__error__"] = Refused(
                "point_geometry", "geometry must be a Point [lon, lat]"
            )
        yield index, {k: v for k, v in properties.items() if v not in (None, "")}


def _invisible(value: Any) -> Refused | None:
    """Why a raw value (or an item of a list) cannot be kept, if it holds an invisible
    character."""
    for text in value if isinstance(value, list) else [value]:
        if isinstance(text, str) and (found := _INVISIBLE.search(text)):
            char = f"U+{ord(found.group()):04X}"
            return Refused(
                "invisible_char",
                f"holds the invisible character {char} at position {found.start() + 1}; "
                "retype the value",
                char=char,
                position=found.start() + 1,
            )
    return None


def _in_column(column: str, problem: Refused) -> Refused:
    """A problem of one value, naming its column."""
    return Refused(problem.code, f"{column}: {problem}", column=column, **problem.params)


def _validate(
    kind: str, record: dict[str, Any], default_district: str
) -> tuple[dict[str, Any], list[Refused]]:
    problems: list[Refused] = []
    if "__error__" in record:
        problems.append(record.pop("__error__"))
    row: dict[str, Any] = {}
    for column, (parse, default) in SPECS[kind].items():
        if column in record:
            invisible = _invisible(record[column])
            if invisible:
                problems.append(_in_column(column, invisible))
                continue
            try:
                row[column] = parse(record[column])
            except _Bad as bad:
                problems.append(_in_column(column, bad))
        elif default is REQUIRED:
            problems.append(
                Refused("field_missing", f"missing required field {column!r}", column=column)
            )
        else:
            row[column] = default
    district = record.get("district") or default_district
    if not isinstance(district, str) or not _district_ok(district.strip()):
        problems.append(
            Refused(
                "district_code_bad",
                f"district code {_show(district)} must be 1-64 letters, digits, _ or -",
                value=_show(district),
            )
        )
    row["district"] = str(district).strip()
    if kind in ("depots", "stations", "points") and row.get("lat") == 0 and row.get("lon") == 0:
        problems.append(
            Refused("coordinates_zero", "coordinates (0, 0) look like a missing location")
        )
    window = (row.get("window_start"), row.get("window_end"))
    if kind == "points" and None not in window and window[0] > window[1]:  # type: ignore[operator]
        problems.append(Refused("window_reversed", "window_start is after window_end"))
    if kind == "trucks" and not problems:
        if row["shift_start"] >= row["shift_end"]:
            problems.append(Refused("shift_reversed", "shift_start must be before shift_end"))
        if row["can_enter_narrow"] is None:
            row["can_enter_narrow"] = row["truck_type"] == "small"
    if kind == "roads" and not problems:
        try:
            row["coordinates"] = _line(record.get("coordinates"))
        except _Bad as bad:
            problems.append(_in_column("geometry", bad))
        else:
            if row["speed_kmh"] is None:
                row["speed_kmh"] = DEFAULT_SPEED_KMH[row["road_class"]]
            if row["length_m"] is None:
                pts = row["coordinates"]  # GeoJSON order: [lon, lat]
                length = sum(
                    haversine_m(a[1], a[0], b[1], b[0]) for a, b in itertools.pairwise(pts)
                )
                row["length_m"] = min(max(length, 0.1), MAX_ROAD_LENGTH_M)
    return row, problems


def _line(coordinates: Any) -> list[list[float]]:
    if not isinstance(coordinates, list) or len(coordinates) < 2:
        raise _Bad("line_too_short", "a LineString needs at least 2 points")
    points = []
    for point in coordinates:
        if not isinstance(point, list) or len(point) < 2:
            raise _Bad(
                "position_bad", f"{_show(point)} is not a position [lon, lat]", value=_show(point)
            )
        points.append([_lon(point[0]), _lat(point[1])])
    return points


def parse_files(files: Iterable[tuple[str, bytes]], *, default_district: str = "default") -> Parsed:
    """Validate every row of every file; raise ImportRejected listing the errors."""
    parsed = Parsed()
    errors = _Errors()
    seen: dict[tuple[str, str], tuple[str, int]] = {}  # (kind, id) -> (file, line)
    for name, data in files:
        kind = kind_of(name)
        if kind is None:
            errors.add(RowError.of(name, 0, _UNKNOWN_FILE, unit="file"))
            continue
        if osm.osm_format(name):
            _read_extract(name, data, default_district, parsed, errors)
            continue
        if kind == "roads" and not _is_geojson(name):
            errors.add(RowError.of(name, 0, _ROADS_NOT_GEOJSON, unit="file"))
            continue
        text = _decode(name, data, errors)
        if text is not None:
            _read_rows(name, text, kind, default_district, seen, parsed, errors)
    _refuse_shared_terminals(parsed, errors)
    errors.raise_any()
    return parsed


_UNKNOWN_FILE = Refused(
    "file_unknown",
    "unknown file: name it depots/stations/points/trucks.csv or .geojson, "
    "roads.geojson, or an OpenStreetMap extract .osm.pbf / .osm",
)
_ROADS_NOT_GEOJSON = Refused(
    "roads_not_geojson",
    "roads must be GeoJSON LineStrings (roads.geojson) "
    "or an OpenStreetMap extract (.osm.pbf, .osm)",
)


def _is_geojson(name: str) -> bool:
    return name.lower().endswith((".geojson", ".json"))


def _read_rows(
    name: str,
    text: str,
    kind: str,
    default_district: str,
    seen: dict[tuple[str, str], tuple[str, int]],
    parsed: Parsed,
    errors: _Errors,
) -> None:
    """One CSV or GeoJSON file's rows: the valid ones into `parsed`, the rest (and an
    id already seen, in `seen`) into `errors`."""
    before = errors.total
    records = (
        _geojson_records(name, text, kind, errors)
        if _is_geojson(name)
        else _csv_records(name, text, errors)
    )
    rows_seen = 0
    for line, record in records:
        rows_seen += 1
        row, problems = _validate(kind, record, default_district)
        key = (kind, str(row.get("id")))
        if "id" in row and key in seen:
            first_file, first_line = seen[key]
            unit = "feature" if _is_geojson(first_file) else "line"
            problems.append(
                Refused(
                    "duplicate_id",
                    f"duplicate id {row['id']!r} (first at {first_file} {unit} {first_line})",
                    id=row["id"],
                    file=first_file,
                    line=first_line,
                )
            )
        elif "id" in row:
            seen[key] = (name, line)
        for problem in problems:
            errors.add(RowError.of(name, line, problem))
        if not problems:
            row["__where__"] = (name, line)
            parsed.rows[kind].append(row)
    if not rows_seen and errors.total == before:
        errors.add(RowError.of(name, 0, Refused("file_no_rows", "has no rows"), unit="file"))


def _refuse_shared_terminals(parsed: Parsed, errors: _Errors) -> None:
    """Terminal ids (and JT/T 808 phone numbers) are unique across trucks too: one
    terminal, one truck."""
    for column in TERMINAL_COLUMNS:
        holders: dict[str, str] = {}
        for row in parsed.rows["trucks"]:
            if row.get(column) is None:
                continue
            other = holders.setdefault(row[column], row["id"])
            if other != row["id"]:
                name, line = row["__where__"]
                errors.add(
                    RowError.of(
                        name,
                        line,
                        Refused(
                            "terminal_twice",
                            f"{column} {row[column]!r} is already used by truck {other!r}",
                            column=column,
                            value=row[column],
                            truck=other,
                        ),
                    )
                )


def _read_extract(name: str, data: bytes, district: str, parsed: Parsed, errors: _Errors) -> None:
    if any(extract.district == district for extract in parsed.extracts):
        twice = Refused(
            "osm_twice",
            f"a second OpenStreetMap extract for district {district}; cut one extract "
            "that covers the whole district",
            district=district,
        )
        errors.add(RowError.of(name, 0, twice, unit="file"))
        return
    if not _district_ok(district):
        bad = Refused("district_code_bad", f"district code {_show(district)} must be 1-64 "
                      "letters, digits, _ or -", value=_show(district))  # fmt: skip
        errors.add(RowError.of(name, 0, bad, unit="file"))
        return
    try:
        extract = osm.read_extract(name, data, district)
    except Refused as refused:
        errors.add(RowError.of(name, 0, refused, unit="file"))
        return
    parsed.extracts.append(extract)
    parsed.rows["roads"].extend(extract.road_rows())


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
                    and (child.suffix.lower() in (".csv", ".geojson") or osm.osm_format(child.name))
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
        ["plate", "truck_type", "capacity_kg", "streams", "depot_id", "terminal_id", "jt808_phone", "shift_start",
         "shift_end", "max_route_duration_s", "break_duration_s", "break_earliest", "break_latest",
         "can_enter_narrow"],
    ),
    "roads": (
        "road", "road_id",
        ["from_node", "to_node", "road_class", "speed_kmh", "oneway", "narrow", "length_m", "coordinates"],
    ),
}  # fmt: skip


# kind -> the name of one row in messages
NOUNS = {
    "depots": "depot",
    "stations": "station",
    "points": "point",
    "trucks": "truck",
    "roads": "road",
}


@dataclass(frozen=True)
class ImportSummary:
    inserted: dict[str, int]
    updated: dict[str, int]
    created_districts: list[str] = field(default_factory=list)
    # Roads of a district that an OpenStreetMap extract replaced as its road network.
    roads_removed: int = 0


def load(
    conn: psycopg.Connection,
    parsed: Parsed,
    *,
    may_create_districts: bool = True,
    dry_run: bool = False,
) -> ImportSummary:
    """Write everything in one transaction (all or nothing); re-imports update in place.

    A district owns its rows: a row whose id is used in another district, a truck whose
    depot is not one of its district's or whose terminal another truck holds, and (without
    `may_create_districts`) a row of a district that does not exist yet are all refused
    with ImportRejected, listing every such row, and nothing is written. With `dry_run`
    everything is checked and counted, then rolled back."""
    try:
        with conn.transaction() as transaction:
            created = _create_districts(conn, parsed, allowed=may_create_districts)
            errors = _Errors()
            _check_ids(conn, parsed, errors)
            _check_depots(conn, parsed, errors)
            _check_terminals(conn, parsed, errors)
            _check_coverage(conn, parsed, errors)
            errors.raise_any()
            removed = sum(
                _remove_roads_outside(conn, extract, parsed) for extract in parsed.extracts
            )
            inserted: dict[str, int] = {}
            updated: dict[str, int] = {}
            for kind in KINDS:  # depots before trucks (foreign key)
                if parsed.rows[kind]:
                    inserted[kind] = _upsert(conn, kind, parsed.rows[kind])
                    updated[kind] = len(parsed.rows[kind]) - inserted[kind]
            if dry_run:
                raise psycopg.Rollback(transaction)
    except psycopg.errors.UniqueViolation:
        # Another import took the same id or terminal between the checks and the writes.
        raced = Refused(
            "import_raced", "another import wrote the same ids at the same moment; run it again"
        )
        raise ImportRejected([RowError.of("import", 0, raced, "conflict")]) from None
    return ImportSummary(inserted, updated, created, removed)


def _check_coverage(conn: psycopg.Connection, parsed: Parsed, errors: _Errors) -> None:
    """Every depot, station and point of an extract's district, stored or imported now,
    must lie on the extract's map."""
    for extract in parsed.extracts:
        places: dict[tuple[str, str], tuple[float, float]] = {}
        for kind in ("depots", "stations", "points"):
            table, key, _ = _TABLES[kind]
            stored = repo.places(conn, table=table, key=key, district_id=extract.district)
            places.update(((NOUNS[kind], r["id"]), (r["lat"], r["lon"])) for r in stored)
            places.update(
                ((NOUNS[kind], row["id"]), (row["lat"], row["lon"]))
                for row in parsed.rows[kind]
                if row["district"] == extract.district
            )
        for noun, place_id, offset_m in osm.places_outside(extract, places):
            outside = Refused(
                "osm_place_outside",
                f"{noun} {place_id} of district {extract.district} is {offset_m:.0f} m from the "
                f"nearest road of the extract (at most {osm.MAX_OFF_ROAD_M:.0f} m): cut an "
                "extract that covers the whole district",
                kind=noun,
                id=place_id,
                district=extract.district,
                distance_m=round(offset_m),
            )
            errors.add(RowError.of(extract.file, 0, outside, unit="file"))


def _remove_roads_outside(conn: psycopg.Connection, extract: osm.Extract, parsed: Parsed) -> int:
    """An extract is the district's whole road network: its other roads go."""
    kept = [row["id"] for row in parsed.rows["roads"] if row["district"] == extract.district]
    return repo.delete_roads_except(conn, district_id=extract.district, kept_road_ids=kept)


def _where(row: dict[str, Any]) -> tuple[str, int]:
    name, line = row["__where__"]
    return str(name), int(line)


def _create_districts(conn: psycopg.Connection, parsed: Parsed, *, allowed: bool) -> list[str]:
    """Create the districts the rows name that do not exist yet, or refuse them."""
    first_row: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        for row in parsed.rows[kind]:
            first_row.setdefault(row["district"], row)
    found = repo.existing_districts(conn, district_ids=list(first_row))
    missing = sorted(set(first_row) - found)
    if missing and not allowed:
        raise ImportRejected(
            [
                RowError.of(
                    *_where(first_row[code]),
                    Refused(
                        "district_not_created",
                        f"district {code} does not exist; creating a district needs an "
                        "administrator who sees every district (as POST /api/v1/districts "
                        "does): ask one to create it, or import into a district of yours",
                        district=code,
                    ),
                    "forbidden",
                )
                for code in missing
            ]
        )
    return [code for code in missing if repo.create_district(conn, district_id=code)]


def _check_ids(conn: psycopg.Connection, parsed: Parsed, errors: _Errors) -> None:
    """Ids are unique across the deployment: one used in another district is refused
    (without saying anything about the row that holds it)."""
    for kind in KINDS:
        rows = parsed.rows[kind]
        if not rows:
            continue
        table, key, _ = _TABLES[kind]
        owner = repo.id_owners(conn, table=table, key=key, ids=[row["id"] for row in rows])
        for row in rows:
            if owner.get(row["id"], row["district"]) != row["district"]:
                errors.add(_id_taken(kind, row))


def _id_taken(kind: str, row: dict[str, Any]) -> RowError:
    district = row["district"]
    return RowError.of(
        *_where(row),
        Refused(
            "id_taken",
            f"{NOUNS[kind]} id {row['id']!r} is already used outside district {district}; ids "
            f"are unique across the deployment — prefix them with your district's code, e.g. "
            f"{district}-{row['id']}",
            kind=kind,
            id=row["id"],
            district=district,
            example=f"{district}-{row['id']}",
        ),
        "conflict",
    )


def _check_depots(conn: psycopg.Connection, parsed: Parsed, errors: _Errors) -> None:
    """A truck's depot is one of its own district's, in this import or already stored."""
    trucks = parsed.rows["trucks"]
    if not trucks:
        return
    known = {(row["id"], row["district"]) for row in parsed.rows["depots"]}
    known |= repo.depot_districts(conn, depot_ids=[row["depot_id"] for row in trucks])
    for row in trucks:
        if (row["depot_id"], row["district"]) not in known:
            errors.add(
                RowError.of(
                    *_where(row),
                    Refused(
                        "depot_not_in_district",
                        f"depot_id {row['depot_id']!r} is not a depot of district "
                        f"{row['district']} (neither in this import nor in the database)",
                        depot=row["depot_id"],
                        district=row["district"],
                    ),
                )
            )


def _check_terminals(conn: psycopg.Connection, parsed: Parsed, errors: _Errors) -> None:
    """One terminal, one truck: a terminal another truck holds is refused, whichever
    district that truck is in (the answer is the same, so it tells nothing)."""
    trucks = parsed.rows["trucks"]
    if not trucks:
        return
    for column in TERMINAL_COLUMNS:
        values = [row[column] for row in trucks if row.get(column) is not None]
        if not values:
            continue
        holder = repo.terminal_holders(conn, column=column, values=values)
        for row in trucks:
            if row.get(column) is not None and holder.get(row[column], row["id"]) != row["id"]:
                errors.add(
                    RowError.of(
                        *_where(row),
                        Refused(
                            "terminal_taken",
                            f"{column} {row[column]!r} is already used by another truck; "
                            "one terminal, one truck (free it there first)",
                            column=column,
                            value=row[column],
                        ),
                        "conflict",
                    )
                )


def _upsert(conn: psycopg.Connection, kind: str, rows: list[dict[str, Any]]) -> int:
    """Insert or update `rows`; returns how many were new. An update never crosses a
    district: a row another district took meanwhile is refused."""
    table, key, columns = _TABLES[kind]
    outcomes = repo.upsert(
        conn, table=table, key=key, columns=columns,
        rows=[[row["id"], row["district"], *(row[c] for c in columns)] for row in rows],
    )  # fmt: skip
    refused = _Errors()
    for row, fresh in zip(rows, outcomes, strict=True):
        if fresh is None:
            refused.add(_id_taken(kind, row))
    refused.raise_any()
    return sum(bool(fresh) for fresh in outcomes)
