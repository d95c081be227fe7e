"""Issue 14's attacks, replayed: a north dispatcher writing south's rows through import
and PATCH, a dispatcher creating a district through import, and answers that would tell
whether an id exists in another district."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from tests.integration.web.conftest import Users

SOUTH = {
    "trucks": ("S-T1", "S-T2"),
    "points": ("S-P1", "S-P2"),
    "depots": ("S-D1",),
    "stations": ("S-S1",),
}


def south_rows(client: TestClient, users: Users) -> dict[str, Any]:
    """South's catalogue as an unlimited admin reads it."""
    return {
        f"{kind}/{key}": client.get(f"/api/v1/{kind}/{key}", headers=users.headers("admin")).json()
        for kind, keys in SOUTH.items()
        for key in keys
    }


def test_importing_south_ids_as_a_north_dispatcher_is_refused(
    client: TestClient, users: Users
) -> None:
    """The issue's import: south's truck given the north user's plate, capacity and
    terminal; south's point moved 25 km with a 23:58–23:59 window. Was 200 "updated"."""
    before = south_rows(client, users)
    files = [
        {
            "name": "trucks.csv",
            "content": "id,plate,truck_type,capacity_kg,streams,depot_id,terminal_id\n"
            "S-T1,皖A N666,compactor,12000,other,N-D1,N-T6-GPS\n",
        },
        {
            "name": "points.csv",
            "content": "id,name,lat,lon,stream,daily_amount_kg,window_start,window_end\n"
            "S-P1,北区新点,31.925,117.30,其他,10,23:58,23:59\n",
        },
    ]
    for dry_run in (True, False):
        response = client.post(
            "/api/v1/import",
            headers=users.headers("north_dispatcher"),
            json={"files": files, "district": "north", "dry_run": dry_run},
        )
        assert response.status_code == 409, response.text
        problem = response.json()
        assert problem["code"] == "import_conflict"
        assert sorted((e["field"], e["message"]) for e in problem["errors"]) == [
            (
                "points.csv:2",
                "point id 'S-P1' is already used outside district north; ids are unique across "
                "the deployment — prefix them with your district's code, e.g. north-S-P1",
            ),
            (
                "trucks.csv:2",
                "truck id 'S-T1' is already used outside district north; ids are unique across "
                "the deployment — prefix them with your district's code, e.g. north-S-T1",
            ),
        ]
        assert "south" not in response.text and "一号收集点" not in response.text
    assert south_rows(client, users) == before


def test_patching_a_truck_onto_another_districts_terminal_is_refused(
    client: TestClient, users: Users
) -> None:
    """The issue's PATCH /trucks/T01 {"terminal_id": <a south terminal>}: refused exactly
    as a terminal another north truck holds is refused, so it tells nothing either."""
    north = users.headers("north_dispatcher")
    before = south_rows(client, users)
    south_terminal = client.patch(
        "/api/v1/trucks/N-T1", headers=north, json={"terminal_id": "S-T1-GPS"}
    )
    own_terminal = client.patch(
        "/api/v1/trucks/N-T1", headers=north, json={"terminal_id": "N-T2-GPS"}
    )
    assert south_terminal.status_code == own_terminal.status_code == 409
    assert south_terminal.json() == {
        **own_terminal.json(),
        "detail": own_terminal.json()["detail"].replace("N-T2-GPS", "S-T1-GPS"),
    }
    assert client.get("/api/v1/trucks/N-T1", headers=north).json()["terminal_id"] == "N-T1-GPS"
    assert south_rows(client, users) == before
    # A free terminal is fine (the refusal above is about the holder, not the change).
    freed = client.patch("/api/v1/trucks/N-T1", headers=north, json={"terminal_id": "N-T1-NEW"})
    assert freed.status_code == 200 and freed.json()["terminal_id"] == "N-T1-NEW"


def test_creating_a_district_through_import_needs_the_right_post_districts_needs(
    client: TestClient, users: Users
) -> None:
    content = "id,name,lat,lon\nE-D1,东区车场,31.8,117.4\n"
    body = {"district": "east", "files": [{"name": "depots.csv", "content": content}]}
    for who in ("dispatcher", "north_dispatcher", "north_admin"):
        refused = client.post("/api/v1/import", headers=users.headers(who), json=body)
        assert refused.status_code == 403, (who, refused.text)
        assert refused.json()["errors"][0]["field"] == "depots.csv:2"
        # Refused like POST /districts refuses the same caller.
        direct = client.post(
            "/api/v1/districts",
            headers=users.headers(who),
            json={"district_id": "east", "name": "东区"},
        )
        assert direct.status_code == 403
    assert client.get("/api/v1/districts/east", headers=users.headers("admin")).status_code == 404
    assert (
        "district east does not exist"
        in client.post("/api/v1/import", headers=users.headers("dispatcher"), json=body).json()[
            "errors"
        ][0]["message"]
    )
    made = client.post("/api/v1/import", headers=users.headers("admin"), json=body)
    assert made.status_code == 200 and made.json()["created_districts"] == ["east"]


CREATES = {
    "depots": ("depot_id", {"name": "新", "lat": 31.9, "lon": 117.3}, "S-D1", "N-D1"),
    "stations": (
        "station_id",
        {"name": "新", "lat": 31.9, "lon": 117.3, "streams": ["other"]},
        "S-S1",
        "N-S1",
    ),
    "points": (
        "point_id",
        {"name": "新", "lat": 31.9, "lon": 117.3, "stream": "other", "daily_amount_kg": 1},
        "S-P1",
        "N-P1",
    ),
    "trucks": (
        "truck_id",
        {
            "plate": "皖A N777",
            "truck_type": "small",
            "capacity_kg": 900,
            "streams": ["other"],
            "depot_id": "N-D1",
            "terminal_id": "N-T7-GPS",
        },
        "S-T1",
        "N-T1",
    ),
}


def same_answer(other: Any, own: Any, other_id: str, own_id: str) -> None:
    assert other.status_code == own.status_code
    assert other.json() == {**own.json(), "detail": own.json()["detail"].replace(own_id, other_id)}
    assert "south" not in other.text


def test_conflicts_and_not_found_do_not_tell_whether_another_district_has_the_id(
    client: TestClient, users: Users
) -> None:
    """Was `409 "depot SD1 already exists"` for another district's id. Now an id that is
    taken gets one answer, and an id outside the caller's districts answers as an id that
    never existed."""
    north = users.headers("north_dispatcher")
    for kind, (key, fields, south_id, north_id) in CREATES.items():
        body = {**fields, "district_id": "north"}
        other = client.post(f"/api/v1/{kind}", headers=north, json={**body, key: south_id})
        own = client.post(f"/api/v1/{kind}", headers=north, json={**body, key: north_id})
        assert own.status_code == 409 and own.json()["code"] == "id_not_available", own.text
        same_answer(other, own, south_id, north_id)
        hidden = client.patch(f"/api/v1/{kind}/{south_id}", headers=north, json={"name": "x"})
        absent = client.patch(f"/api/v1/{kind}/NO-{north_id}", headers=north, json={"name": "x"})
        assert hidden.status_code == 404
        same_answer(hidden, absent, south_id, f"NO-{north_id}")


def test_hostile_bytes_through_the_api_are_refused_by_line(
    client: TestClient, users: Users
) -> None:
    """A NUL and a bidi override are refused by file and line; a lone surrogate (invalid
    JSON text) by the request's field. 422 each time, nothing written."""
    header = "id,name,lat,lon,stream,daily_amount_kg\n"
    cases = {
        "N-P9,a\u0000b,31.9,117.3,other,1\n": "points.csv:2",
        "N-P9,\u202eb,31.9,117.3,other,1\n": "points.csv:2",
        "N-P9,a\ud800b,31.9,117.3,other,1\n": "files.0.content",
    }
    for bad, field in cases.items():
        body = {"district": "north", "files": [{"name": "points.csv", "content": header + bad}]}
        response = client.post(
            "/api/v1/import",
            headers={**users.headers("north_dispatcher"), "Content-Type": "application/json"},
            content=json.dumps(body),  # ASCII with \u escapes, as any JSON client may send
        )
        assert response.status_code == 422, response.text
        assert [e["field"] for e in response.json()["errors"]] == [field]
    assert client.get("/api/v1/points/N-P9", headers=users.headers("admin")).status_code == 404
