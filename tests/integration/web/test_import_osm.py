"""POST /api/v1/import with an OpenStreetMap extract: XML as text, .osm.pbf as base64;
the answer says what the import kept; refusals carry codes and name the places."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.integration.web.conftest import Users
from tests.osm_district import REPORT, district_csvs, osm_pbf, osm_xml


def body(district: str, *files: dict[str, str], dry_run: bool = False) -> dict[str, Any]:
    return {"district": district, "dry_run": dry_run, "files": list(files)}


def csv_files() -> list[dict[str, str]]:
    return [{"name": name, "content": data.decode()} for name, data in district_csvs()]


def pbf_file(tmp_path: Path) -> dict[str, str]:
    content = base64.b64encode(osm_pbf(tmp_path)).decode()
    return {"name": "osmtown.osm.pbf", "content": content, "encoding": "base64"}


def road_count(client: TestClient, users: Users, district: str) -> int:
    answer = client.get(f"/api/v1/map/roads?district_id={district}", headers=users.headers("admin"))
    return len(answer.json()["features"]) if answer.status_code == 200 else -1


def test_an_extract_is_imported_as_xml_text_and_as_base64_pbf(
    client: TestClient, users: Users, tmp_path: Path
) -> None:
    xml = {"name": "osmtown.osm", "content": osm_xml().decode()}
    answer = client.post(
        "/api/v1/import", json=body("osmtown", *csv_files(), xml), headers=users.headers("admin")
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["osm"] == {"osmtown.osm": REPORT}
    assert answer.json()["inserted"]["roads"] == 41
    again = client.post(
        "/api/v1/import",
        json=body("osmtown", pbf_file(tmp_path), dry_run=True),
        headers=users.headers("admin"),
    )
    assert again.status_code == 200, again.text
    assert again.json()["osm"] == {"osmtown.osm.pbf": REPORT}
    assert again.json()["updated"]["roads"] == 41 and again.json()["roads_removed"] == 0


def test_an_extract_that_misses_the_districts_places_is_refused_by_code(
    client: TestClient, users: Users, tmp_path: Path
) -> None:
    """North's depot, station and points lie 6 km from the extract's streets."""
    answer = client.post(
        "/api/v1/import",
        json=body("north", pbf_file(tmp_path)),
        headers=users.headers("dispatcher"),
    )
    assert answer.status_code == 422, answer.text
    errors = answer.json()["errors"]
    assert {e["field"] for e in errors} == {"osmtown.osm.pbf:0"}
    assert {(e["code"], e["params"]["kind"], e["params"]["id"]) for e in errors} == {
        ("osm_place_outside", "depot", "N-D1"),
        ("osm_place_outside", "station", "N-S1"),
        ("osm_place_outside", "point", "N-P1"),
        ("osm_place_outside", "point", "N-P2"),
    }
    assert road_count(client, users, "north") == 1  # north's own road, untouched


def test_an_extract_for_a_district_not_yours_is_one_refusal(
    client: TestClient, users: Users, tmp_path: Path
) -> None:
    answer = client.post(
        "/api/v1/import",
        json=body("south", pbf_file(tmp_path)),
        headers=users.headers("north_dispatcher"),
    )
    assert answer.status_code == 403, answer.text
    assert [(e["field"], e["code"]) for e in answer.json()["errors"]] == [
        ("osmtown.osm.pbf:0", "district_not_yours")
    ]


def test_bad_base64_and_a_cut_pbf_are_refused_with_codes(
    client: TestClient, users: Users, tmp_path: Path
) -> None:
    for content in ("not base64!", "ß"):
        bad = {"name": "osmtown.osm.pbf", "content": content, "encoding": "base64"}
        answer = client.post(
            "/api/v1/import", json=body("north", bad), headers=users.headers("dispatcher")
        )
        assert answer.status_code == 422
        assert [e["code"] for e in answer.json()["errors"]] == ["base64_bad"]
    cut = pbf_file(tmp_path)
    cut["content"] = base64.b64encode(osm_pbf(tmp_path)[:-5]).decode()
    answer = client.post(
        "/api/v1/import", json=body("north", cut), headers=users.headers("dispatcher")
    )
    assert answer.status_code == 422
    assert [e["code"] for e in answer.json()["errors"]] == ["osm_unreadable"]
