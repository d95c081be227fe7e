"""Depots, stations, points, trucks, districts, bulk import and the map layers over the API."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from tests.integration.web.conftest import Users

TRUCK = {
    "truck_id": "N-T9",
    "district_id": "north",
    "plate": "皖A N999",
    "truck_type": "small",
    "capacity_kg": 1500,
    "streams": ["other", "hazardous"],
    "depot_id": "N-D1",
    "terminal_id": "N-T9-GPS",
}


def test_lists_are_paginated_filtered_and_scoped(client: TestClient, users: Users) -> None:
    everyone = client.get("/api/v1/points", headers=users.headers("viewer")).json()
    assert everyone["total"] == 4 and len(everyone["items"]) == 4
    page = client.get("/api/v1/points?limit=1&offset=1", headers=users.headers("viewer")).json()
    assert page["total"] == 4 and [p["point_id"] for p in page["items"]] == ["N-P2"]
    kitchen = client.get("/api/v1/points?stream=kitchen", headers=users.headers("viewer")).json()
    assert {p["point_id"] for p in kitchen["items"]} == {"N-P2", "S-P2"}
    search = client.get(
        "/api/v1/points", params={"q": "一号"}, headers=users.headers("viewer")
    ).json()
    assert {p["point_id"] for p in search["items"]} == {"N-P1", "S-P1"}
    north = client.get("/api/v1/trucks", headers=users.headers("north_viewer")).json()
    assert {t["truck_id"] for t in north["items"]} == {"N-T1", "N-T2"} and north["total"] == 2
    asked_south = client.get(
        "/api/v1/trucks?district_id=south", headers=users.headers("north_viewer")
    ).json()
    assert asked_south["items"] == [] and asked_south["total"] == 0
    streams = client.get("/api/v1/stations?stream=kitchen", headers=users.headers("viewer")).json()
    assert streams["total"] == 2 and streams["items"][0]["streams"] == ["kitchen", "other"]
    beyond = client.get("/api/v1/points?offset=100", headers=users.headers("viewer")).json()
    assert beyond["items"] == [] and beyond["total"] == 4


def test_truck_lifecycle(client: TestClient, users: Users) -> None:
    dispatcher = users.headers("dispatcher")
    created = client.post("/api/v1/trucks", headers=dispatcher, json=TRUCK)
    assert created.status_code == 201, created.text
    truck = created.json()
    assert truck["can_enter_narrow"] is True and truck["shift_start"] == "05:00"
    assert client.post("/api/v1/trucks", headers=dispatcher, json=TRUCK).status_code == 409
    same_terminal = client.post(
        "/api/v1/trucks", headers=dispatcher, json={**TRUCK, "truck_id": "N-T10"}
    )
    assert same_terminal.status_code == 409 and "terminal_id" in same_terminal.json()["detail"]
    changed = client.patch(
        "/api/v1/trucks/N-T9",
        headers=dispatcher,
        json={"capacity_kg": 1800, "max_route_duration_s": 30000},
    )
    assert changed.json()["capacity_kg"] == 1800 and changed.json()["max_route_duration_s"] == 30000
    cleared = client.patch(
        "/api/v1/trucks/N-T9",
        headers=dispatcher,
        json={"max_route_duration_s": None, "plate": None},
    )
    assert cleared.json()["max_route_duration_s"] is None and cleared.json()["plate"] == "皖A N999"
    bad_shift = client.patch("/api/v1/trucks/N-T9", headers=dispatcher, json={"shift_end": "04:00"})
    assert bad_shift.status_code == 422
    deactivated = client.post("/api/v1/trucks/N-T9/deactivate", headers=dispatcher)
    assert deactivated.json()["active"] is False
    active = client.get("/api/v1/trucks?active=true&district_id=north", headers=dispatcher).json()
    assert "N-T9" not in {t["truck_id"] for t in active["items"]}
    assert client.get("/api/v1/trucks/N-T9", headers=dispatcher).json()["active"] is False


def test_jt808_phone_is_set_cleared_and_held_by_one_truck_only(
    client: TestClient, users: Users
) -> None:
    """The JT/T 808 phone number goes through the API as through the import: stored
    without the header's zero padding, unique across trucks of every district, digits
    only, and clearable."""
    dispatcher = users.headers("dispatcher")
    north = users.headers("north_dispatcher")
    created = client.post(
        "/api/v1/trucks", headers=dispatcher, json={**TRUCK, "jt808_phone": "013912345678"}
    )
    assert created.status_code == 201, created.text
    assert created.json()["jt808_phone"] == "13912345678"
    taken = client.patch(
        "/api/v1/trucks/N-T1", headers=north, json={"jt808_phone": "00000000013912345678"}
    )
    assert taken.status_code == 409 and taken.json()["code"] == "id_not_available", taken.text
    assert "jt808_phone" in taken.json()["detail"]
    south = client.patch(
        "/api/v1/trucks/S-T1", headers=dispatcher, json={"jt808_phone": "13912345678"}
    )
    assert south.status_code == 409  # another district's truck cannot take it either
    for bad in ("1391234567a", "000", "１３９", "1" * 21, ""):
        refused = client.patch("/api/v1/trucks/N-T1", headers=north, json={"jt808_phone": bad})
        assert refused.status_code == 422, (bad, refused.text)
    found = client.get("/api/v1/trucks", params={"q": "3912345"}, headers=dispatcher).json()
    assert [t["truck_id"] for t in found["items"]] == ["N-T9"]
    cleared = client.patch("/api/v1/trucks/N-T9", headers=dispatcher, json={"jt808_phone": None})
    assert cleared.status_code == 200 and cleared.json()["jt808_phone"] is None
    moved = client.patch("/api/v1/trucks/N-T1", headers=north, json={"jt808_phone": "13912345678"})
    assert moved.status_code == 200 and moved.json()["jt808_phone"] == "13912345678"
    assert client.get("/api/v1/trucks/N-T1", headers=north).json()["jt808_phone"] == "13912345678"


def test_create_refuses_unknown_references(client: TestClient, users: Users) -> None:
    dispatcher = users.headers("dispatcher")
    no_depot = client.post("/api/v1/trucks", headers=dispatcher, json={**TRUCK, "depot_id": "X-D9"})
    assert no_depot.status_code == 422 and "depot_id" in no_depot.json()["detail"]
    no_district = client.post(
        "/api/v1/depots",
        headers=dispatcher,
        json={"depot_id": "D9", "district_id": "east", "name": "东", "lat": 31, "lon": 117},
    )
    assert no_district.status_code == 422 and "east" in no_district.json()["detail"]


def test_district_limited_dispatcher_writes_only_its_district(
    client: TestClient, users: Users
) -> None:
    north = users.headers("north_dispatcher")
    into_south = client.post(
        "/api/v1/trucks", headers=north, json={**TRUCK, "district_id": "south", "depot_id": "S-D1"}
    )
    assert into_south.status_code == 403
    south_truck = client.patch("/api/v1/trucks/S-T1", headers=north, json={"capacity_kg": 1})
    assert south_truck.status_code == 404
    move_away = client.patch("/api/v1/points/N-P1", headers=north, json={"district_id": "south"})
    assert move_away.status_code == 422 and move_away.json()["errors"][0]["field"] == "district_id"
    admin_move = client.patch(
        "/api/v1/points/N-P1", headers=users.headers("admin"), json={"district_id": "south"}
    )
    assert admin_move.status_code == 422  # nobody moves a row between districts
    stay = client.patch("/api/v1/points/N-P1", headers=north, json={"district_id": "north"})
    assert stay.status_code == 200 and stay.json()["district_id"] == "north"
    south_depot = client.post("/api/v1/trucks", headers=north, json={**TRUCK, "depot_id": "S-D1"})
    assert south_depot.status_code == 422
    ok = client.patch(
        "/api/v1/points/N-P1", headers=north, json={"daily_amount_kg": 500, "min_dwell_s": 90}
    )
    assert ok.status_code == 200 and ok.json()["min_dwell_s"] == 90


def test_point_and_station_validation_name_the_field(client: TestClient, users: Users) -> None:
    dispatcher = users.headers("dispatcher")
    point = {
        "point_id": "N-P9",
        "district_id": "north",
        "name": "新点",
        "lat": 123,
        "lon": 117.3,
        "stream": "其他",
        "daily_amount_kg": -1,
    }
    response = client.post("/api/v1/points", headers=dispatcher, json=point)
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"lat", "stream", "daily_amount_kg"}
    window = {
        **point,
        "lat": 31.9,
        "stream": "other",
        "daily_amount_kg": 10,
        "window_start": "10:00",
        "window_end": "08:00",
    }
    response = client.post("/api/v1/points", headers=dispatcher, json=window)
    assert response.status_code == 422 and "window_start" in response.json()["detail"]
    station = {
        "station_id": "N-S9",
        "district_id": "north",
        "name": "站",
        "lat": 31.9,
        "lon": 117.3,
        "streams": [],
    }
    response = client.post("/api/v1/stations", headers=dispatcher, json=station)
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "streams"
    created = client.post(
        "/api/v1/stations",
        headers=dispatcher,
        json={**station, "streams": ["kitchen"], "opens_at": "05:30"},
    )
    assert created.status_code == 201 and created.json()["opens_at"] == "05:30"


def test_districts(client: TestClient, users: Users) -> None:
    listed = client.get("/api/v1/districts", headers=users.headers("north_viewer")).json()
    assert [d["district_id"] for d in listed] == ["north"] and listed[0]["points"] == 2
    assert (
        client.get("/api/v1/districts/south", headers=users.headers("north_viewer")).status_code
        == 404
    )
    made = client.post(
        "/api/v1/districts",
        headers=users.headers("admin"),
        json={"district_id": "east", "name": "东区"},
    )
    assert made.status_code == 201 and made.json()["timezone"] == "Asia/Shanghai"
    bad_zone = client.patch(
        "/api/v1/districts/east", headers=users.headers("admin"), json={"timezone": "Mars/Base"}
    )
    assert bad_zone.status_code == 422 and bad_zone.json()["errors"][0]["field"] == "timezone"


def test_bulk_import_validates_like_the_cli(client: TestClient, users: Users) -> None:
    dispatcher = users.headers("admin")  # district east is new: only an admin may create it
    bad = "id,name,lat,lon,stream,daily_amount_kg\nE-P1,好,31.8,117.2,其他,100\nE-P2,坏,123,117.2,塑料,100\n"
    rejected = client.post(
        "/api/v1/import",
        headers=dispatcher,
        json={"district": "east", "files": [{"name": "points.csv", "content": bad}]},
    )
    assert rejected.status_code == 422
    messages = [(e["field"], e["message"]) for e in rejected.json()["errors"]]
    assert ("points.csv:3", "lat: latitude 123.0 is outside -90..90") in messages
    assert any(f == "points.csv:3" and "塑料" in m for f, m in messages)
    assert (
        client.get("/api/v1/districts/east", headers=dispatcher).status_code == 404
    )  # nothing written
    good = bad.replace("123,117.2,塑料", "31.81,117.2,厨余")
    files = [{"name": "points.csv", "content": good}]
    dry = client.post(
        "/api/v1/import",
        headers=dispatcher,
        json={"district": "east", "files": files, "dry_run": True},
    )
    assert dry.json() == {
        "dry_run": True,
        "rows": {"points": 2},
        "inserted": {"points": 2},
        "updated": {"points": 0},
        "created_districts": ["east"],
        "osm": {},
        "roads_removed": 0,
    }
    assert client.get("/api/v1/districts/east", headers=dispatcher).status_code == 404
    first = client.post(
        "/api/v1/import", headers=dispatcher, json={"district": "east", "files": files}
    )
    assert first.status_code == 200 and first.json()["inserted"] == {"points": 2}
    assert first.json()["created_districts"] == ["east"]
    again = client.post(
        "/api/v1/import", headers=dispatcher, json={"district": "east", "files": files}
    )
    assert again.json()["updated"] == {"points": 2} and again.json()["inserted"] == {"points": 0}


def test_bulk_import_respects_district_limits(client: TestClient, users: Users) -> None:
    content = "id,name,lat,lon,district\nS-D7,南,31.7,117.3,south\n"
    response = client.post(
        "/api/v1/import",
        headers=users.headers("north_dispatcher"),
        json={"files": [{"name": "depots.csv", "content": content}]},
    )
    assert response.status_code == 403 and response.json()["errors"][0]["field"] == "depots.csv:2"
    assert (
        client.post(
            "/api/v1/import",
            headers=users.headers("supervisor"),
            json={"files": [{"name": "depots.csv", "content": content}]},
        ).status_code
        == 403
    )


def test_map_layers_are_geojson(client: TestClient, users: Users) -> None:
    roads = client.get("/api/v1/map/roads", headers=users.headers("north_viewer"))
    assert roads.headers["content-type"] == "application/geo+json"
    features = json.loads(roads.text)["features"]
    assert [f["id"] for f in features] == ["N-R1"]
    assert features[0]["geometry"]["coordinates"][0] == [117.3, 31.9]
    sites = client.get("/api/v1/map/sites", headers=users.headers("viewer")).json()
    kinds = sorted((f["properties"]["kind"], f["properties"]["id"]) for f in sites["features"])
    assert (
        ("point", "S-P2") in kinds and ("station", "N-S1") in kinds and ("depot", "S-D1") in kinds
    )
    point = next(f for f in sites["features"] if f["id"] == "point:N-P2")
    assert point["properties"]["stream"] == "kitchen"
    assert point["geometry"]["coordinates"] == pytest.approx([117.302, 31.904])
