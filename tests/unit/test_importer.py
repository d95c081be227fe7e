"""The importer's parsing and validation, without a database."""

from __future__ import annotations

import json
from datetime import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.importer import ImportRejected, parse_files

POINTS_HEADER = "id,name,lat,lon,stream,daily_amount_kg,service_time_s,window_start,window_end\n"


def test_chinese_names_and_stream_names_are_accepted() -> None:
    csv = POINTS_HEADER + "P1,芜湖路小区,31.82,117.29,厨余,420,240,06:00,10:00\n"
    parsed = parse_files([("points.csv", csv.encode())])
    (row,) = parsed.rows["points"]
    assert row["name"] == "芜湖路小区"
    assert row["stream"] == "kitchen"
    assert row["window_start"] == time(6, 0)
    assert row["geofence_radius_m"] == 30.0  # documented default


def test_every_bad_row_is_reported_with_its_line() -> None:
    csv = (
        POINTS_HEADER
        + "P1,ok,31.82,117.29,other,100,300,06:00,10:00\n"
        + "P2,bad lat,123,117.29,other,100,300,06:00,10:00\n"
        + "P3,bad stream,31.8,117.2,plutonium,100,300,06:00,10:00\n"
        + "P1,duplicate,31.8,117.2,other,100,300,06:00,10:00\n"
        + "P5,,31.8,117.2,other,100,300,06:00,10:00\n"
    )
    with pytest.raises(ImportRejected) as caught:
        parse_files([("points.csv", csv.encode())])
    lines = {(e.line, e.message.split(":")[0]) for e in caught.value.errors}
    assert (3, "lat") in lines
    assert (4, "stream") in lines
    assert any(e.line == 5 and "duplicate id 'P1'" in e.message for e in caught.value.errors)
    assert any(e.line == 6 and "name" in e.message for e in caught.value.errors)
    assert len(caught.value.errors) == 4


def test_missing_required_column_is_named() -> None:
    csv = "id,name,lat,lon\nP1,x,31.8,117.2\n"
    with pytest.raises(ImportRejected) as caught:
        parse_files([("points.csv", csv.encode())])
    messages = [e.message for e in caught.value.errors]
    assert "missing required field 'stream'" in messages
    assert "missing required field 'daily_amount_kg'" in messages


def test_geojson_points_take_coordinates_from_geometry() -> None:
    doc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [117.3, 31.8]},
                "properties": {"id": "S1", "name": "东部中转站", "streams": "其他;厨余"},
            }
        ],
    }
    parsed = parse_files([("stations.geojson", json.dumps(doc).encode())])
    (row,) = parsed.rows["stations"]
    assert (row["lat"], row["lon"]) == (31.8, 117.3)
    assert row["streams"] == ["kitchen", "other"]


def test_road_length_defaults_to_geometry_length() -> None:
    doc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": [[117.0, 31.0], [117.0, 31.01]]},
                "properties": {"id": "r1", "from_node": 1, "to_node": 2, "road_class": "arterial"},
            }
        ],
    }
    (row,) = parse_files([("roads.geojson", json.dumps(doc).encode())]).rows["roads"]
    assert row["length_m"] == pytest.approx(1112, rel=0.01)  # 0.01° of latitude
    assert row["speed_kmh"] == 50.0


def test_truck_terminal_ids_must_be_unique() -> None:
    csv = (
        "id,plate,truck_type,capacity_kg,streams,depot_id,terminal_id\n"
        "T1,皖A1,compactor,8000,other,D1,GPS1\n"
        "T2,皖A2,small,2000,other,D1,GPS1\n"
    )
    with pytest.raises(ImportRejected) as caught:
        parse_files([("trucks.csv", csv.encode())])
    assert [e.line for e in caught.value.errors] == [3]
    assert "already used by truck 'T1'" in caught.value.errors[0].message


def test_jt808_phone_is_optional_stored_without_leading_zeros_and_unique() -> None:
    csv = (
        "id,plate,truck_type,capacity_kg,streams,depot_id,terminal_id,jt808_phone\n"
        "T1,皖A1,compactor,8000,other,D1,GPS1,013912345678\n"
        "T2,皖A2,small,2000,other,D1,GPS2,\n"
    )
    rows = parse_files([("trucks.csv", csv.encode())]).rows["trucks"]
    assert [r["jt808_phone"] for r in rows] == ["13912345678", None]
    bad = (
        "id,plate,truck_type,capacity_kg,streams,depot_id,terminal_id,jt808_phone\n"
        "T1,皖A1,compactor,8000,other,D1,GPS1,13912345678\n"
        "T2,皖A2,small,2000,other,D1,GPS2,00000000013912345678\n"
        "T3,皖A3,small,2000,other,D1,GPS3,139-1234\n"
        "T4,皖A4,small,2000,other,D1,GPS4,000\n"
    )
    with pytest.raises(ImportRejected) as caught:
        parse_files([("trucks.csv", bad.encode())])
    messages = {e.line: e.message for e in caught.value.errors}
    assert sorted(messages) == [3, 4, 5]
    assert "already used by truck 'T1'" in messages[3]
    assert "not a phone number" in messages[4] and "all zeros" in messages[5]


def test_small_trucks_may_enter_narrow_lanes_by_default() -> None:
    csv = (
        "id,plate,truck_type,capacity_kg,streams,depot_id,terminal_id\n"
        "T1,皖A1,compactor,8000,other,D1,GPS1\n"
        "T2,皖A2,small,2000,other,D1,GPS2\n"
    )
    rows = parse_files([("trucks.csv", csv.encode())]).rows["trucks"]
    assert [r["can_enter_narrow"] for r in rows] == [False, True]


def test_unknown_file_name_is_an_error() -> None:
    with pytest.raises(ImportRejected, match="1 error"):
        parse_files([("bins.csv", b"id\n1\n")])


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["\ud800", "P1", "其他", "31.8", "117.2", "Point", "LineString"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
FEATURE = st.fixed_dictionaries(
    {
        "type": st.just("Feature"),
        "geometry": st.one_of(
            JSON_VALUES,
            st.fixed_dictionaries(
                {"type": st.sampled_from(["Point", "LineString"]), "coordinates": JSON_VALUES}
            ),
        ),
        "properties": st.one_of(
            JSON_VALUES,
            st.dictionaries(
                st.sampled_from(
                    ["id", "name", "streams", "district", "from_node", "to_node", "lat"]
                ),
                JSON_VALUES,
            ),
        ),
    }
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    name=st.sampled_from(["stations.geojson", "roads.geojson", "points.geojson"]),
    features=st.lists(st.one_of(FEATURE, JSON_VALUES), max_size=5),
)
def test_any_geojson_is_parsed_or_refused_by_feature(name: str, features: list[object]) -> None:
    """Whatever the JSON holds: rows, or errors naming the file — printable as UTF-8."""
    data = json.dumps({"type": "FeatureCollection", "features": features}).encode()
    try:
        parse_files([(name, data)])
    except ImportRejected as rejected:
        for error in rejected.errors:
            assert error.file == name
            str(error).encode("utf-8")  # the CLI prints it


@pytest.mark.parametrize(
    "data",
    [b"[" * 100_000, b'{"type": "FeatureCollection", "features": [' + b"9" * 5000 + b"]}", b"\xff"],
)
def test_unreadable_geojson_is_refused_not_raised(data: bytes) -> None:
    with pytest.raises(ImportRejected) as caught:
        parse_files([("roads.geojson", data)])
    assert caught.value.errors[0].file == "roads.geojson"
