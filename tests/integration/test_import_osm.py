"""`clearday import` of an OpenStreetMap extract against a real PostgreSQL: both formats
become the district's road network, the import says what it kept, an extract that
misses the district's places or cannot be read is refused whole, and the district is
planned on the imported streets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from fleet import db, importer
from fleet.imports import osm
from fleet.plans import service
from routing.check import check_plan
from routing.graph import read_osm, travel_matrix
from routing.plan import Plan
from routing.vocab import haversine_m
from tests.integration.test_foundation import run_cli
from tests.integration.test_import import snapshot
from tests.osm_district import (
    MISSING,
    NODES,
    REPORT,
    Way,
    district_csvs,
    near,
    node_id,
    osm_pbf,
    osm_xml,
)

DAY = date(2026, 3, 3)


def extract(fmt: str, folder: Path) -> tuple[str, bytes]:
    return ("osmtown.osm", osm_xml()) if fmt == "xml" else ("osmtown.osm.pbf", osm_pbf(folder))


def load(url: str, files: list[tuple[str, bytes]]) -> importer.ImportSummary:
    parsed = importer.parse_files(files, default_district="osmtown")
    with psycopg.connect(url) as conn:
        return importer.load(conn, parsed)


def refused(url: str, files: list[tuple[str, bytes]]) -> list[importer.RowError]:
    with pytest.raises(importer.ImportRejected) as rejected:
        load(url, files)
    return rejected.value.errors


@pytest.mark.parametrize("fmt", ["xml", "pbf"])
def test_an_extract_becomes_the_districts_road_network(
    database_url: str, tmp_path: Path, fmt: str
) -> None:
    """Both formats: the reported counts, and the planner's graph read back from the
    `road` rows is the extract's graph, edge for edge."""
    name, data = extract(fmt, tmp_path)
    parsed = importer.parse_files([*district_csvs(), (name, data)], default_district="osmtown")
    assert [e.report() for e in parsed.extracts] == [REPORT]
    with psycopg.connect(database_url) as conn:
        summary = importer.load(conn, parsed)
    assert summary.inserted["roads"] == 41  # 20 grid streets × 2 + the cut diagonal
    with db.connect(database_url) as conn:
        _, graph = service._build_problem(conn, district_id="osmtown", service_date=DAY)
    expected = read_osm(data, file_format="pbf" if fmt == "pbf" else "osm").graph
    assert sorted(graph.edges) == sorted(expected.edges)
    for u, v, attrs in expected.edges(data=True):
        assert graph.edges[u, v]["speed_kmh"] == attrs["speed_kmh"]
        assert graph.edges[u, v]["narrow"] == attrs["narrow"]
        assert graph.edges[u, v]["length_m"] == pytest.approx(attrs["length_m"])
    # oneway=yes runs with the nodes, oneway=-1 against them; the service way is narrow.
    assert graph.has_edge(node_id(1, 0), node_id(1, 1))
    assert not graph.has_edge(node_id(1, 1), node_id(1, 0))
    assert graph.has_edge(node_id(3, 1), node_id(3, 0))
    assert not graph.has_edge(node_id(3, 0), node_id(3, 1))
    assert graph.edges[node_id(0, 4), node_id(1, 4)]["narrow"] is True
    # maxspeed walk / 0 / 1e999 keep the class speed; 40 is taken.
    assert graph.edges[node_id(2, 0), node_id(2, 1)]["speed_kmh"] == 30.0
    assert graph.edges[node_id(0, 1), node_id(1, 1)]["speed_kmh"] == 40.0
    assert graph.edges[node_id(4, 0), node_id(4, 1)]["speed_kmh"] == 30.0
    # A missing node cuts a way; it is never bridged by a straight line.
    assert not graph.has_edge(node_id(3, 3), node_id(4, 4))
    assert MISSING not in graph


def test_an_extract_replaces_the_districts_roads_and_reimports_in_place(
    database_url: str, tmp_path: Path
) -> None:
    old_road = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": [[117.25, 31.85], [117.3, 31.9]]},
                "properties": {"id": "osmtown-R1", "from_node": 1, "to_node": 2},
            }
        ],
    }
    load(database_url, [("roads.geojson", json.dumps(old_road).encode())])
    first = load(database_url, [*district_csvs(), extract("pbf", tmp_path)])
    assert first.roads_removed == 1
    again = load(database_url, [extract("xml", tmp_path)])
    assert again.inserted["roads"] == 0 and again.updated["roads"] == 41
    assert again.roads_removed == 0
    with psycopg.connect(database_url) as conn:
        roads = conn.execute("SELECT count(*) FROM road WHERE district_id = 'osmtown'").fetchone()
    assert roads == (41,)


def test_an_extract_that_misses_the_districts_places_is_refused_naming_them(
    database_url: str, tmp_path: Path
) -> None:
    """Places stored earlier count too; each place outside is named; nothing is written."""
    load(database_url, district_csvs())
    far_lat, far_lon = near(4, 4, 3000)
    outside_csv = (
        "id,name,lat,lon,stream,daily_amount_kg\n"
        f"osmtown-P99,远处,{far_lat},{far_lon},其他,100\n"
        f"osmtown-P1,搬走的,{far_lat + 0.1},{far_lon},其他,100\n"  # moves a stored point away
    ).encode()
    before = snapshot(database_url)
    errors = refused(database_url, [("points.csv", outside_csv), extract("pbf", tmp_path)])
    outside = [e for e in errors if e.code == "osm_place_outside"]
    assert {(e.params["kind"], e.params["id"]) for e in outside} == {
        ("point", "osmtown-P99"),
        ("point", "osmtown-P1"),
    }
    assert all(e.file == "osmtown.osm.pbf" and e.params["district"] == "osmtown" for e in outside)
    far = next(e for e in outside if e.params["id"] == "osmtown-P99")
    assert 2500 < float(far.params["distance_m"]) < 3500
    assert "osmtown-P99" in str(far) and "m from the nearest road" in str(far)
    assert snapshot(database_url) == before


def _bomb() -> bytes:
    entities = '<!ENTITY a0 "ha">' + "".join(
        f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10)
    )
    return (
        f'<?xml version="1.0"?><!DOCTYPE osm [{entities}]><osm version="0.6">'
        '<node id="1" version="1" lat="31.85" lon="117.25"><tag k="name" v="&a9;"/></node></osm>'
    ).encode()


HOSTILE_XML = {
    "billion laughs": _bomb(),
    "external entity": (
        b'<?xml version="1.0"?><!DOCTYPE osm [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<osm version="0.6"><node id="1" version="1" lat="31.85" lon="117.25">'
        b'<tag k="name" v="&x;"/></node></osm>'
    ),
    "cut short": osm_xml()[: len(osm_xml()) // 2],
    "id beyond 64 bits": osm_xml().replace(
        f'<node id="{node_id(0, 0)}"'.encode(), b'<node id="99999999999999999999999"'
    ),
    "not xml": b"\x89PNG\r\n\x1a\n\x00\x00",
    "empty": b"",
    "utf-16": osm_xml().decode().encode("utf-16"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_XML))
def test_hostile_xml_is_refused_whole(database_url: str, case: str) -> None:
    before = snapshot(database_url)
    errors = refused(database_url, [*district_csvs(), ("osmtown.osm", HOSTILE_XML[case])])
    assert [(e.file, e.line, e.code) for e in errors] == [("osmtown.osm", 0, "osm_unreadable")]
    assert "export the extract again" in errors[0].message
    assert snapshot(database_url) == before


def test_a_truncated_or_garbled_pbf_is_refused_whole(database_url: str, tmp_path: Path) -> None:
    data = osm_pbf(tmp_path)
    before = snapshot(database_url)
    for cut in (b"", data[:10], data[: len(data) // 2], data[:-1], b"\xff" * 64 + data):
        errors = refused(database_url, [("osmtown.osm.pbf", cut)])
        assert [e.code for e in errors] == ["osm_unreadable"], cut[:20]
    assert snapshot(database_url) == before


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_any_damage_to_a_pbf_is_imported_whole_or_refused_by_file(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """Bytes overwritten anywhere in the file: a clean refusal naming the file, or an
    import whose every road row is sane; never another exception."""
    good = _good_pbf(tmp_path_factory)
    at = data.draw(st.integers(0, len(good) - 1))
    junk = data.draw(st.binary(min_size=1, max_size=8))
    damaged = good[:at] + junk + good[at + len(junk) :]
    try:
        parsed = importer.parse_files([("osmtown.osm.pbf", damaged)], default_district="osmtown")
    except importer.ImportRejected as rejected:
        assert all(e.file == "osmtown.osm.pbf" and e.line == 0 for e in rejected.errors)
        return
    for row in parsed.rows["roads"]:
        assert row["length_m"] > 0 and 0 < row["speed_kmh"] <= 200
        assert all(-180 <= lon <= 180 and -90 <= lat <= 90 for lon, lat in row["coordinates"])


_PBF: dict[str, bytes] = {}


def _good_pbf(factory: pytest.TempPathFactory) -> bytes:
    if "good" not in _PBF:
        _PBF["good"] = osm_pbf(factory.mktemp("pbf"))
    return _PBF["good"]


def test_an_extract_without_roads_is_refused(database_url: str, tmp_path: Path) -> None:
    only_paths = [Way(1, [node_id(0, 0), node_id(0, 1)], {"highway": "footway"})]
    errors = refused(database_url, [("osmtown.osm.pbf", osm_pbf(tmp_path, NODES, only_paths))])
    assert [e.code for e in errors] == ["osm_no_roads"]


def test_two_extracts_for_one_district_are_refused(database_url: str, tmp_path: Path) -> None:
    errors = refused(database_url, [extract("xml", tmp_path), extract("pbf", tmp_path)])
    assert [(e.file, e.code) for e in errors] == [("osmtown.osm.pbf", "osm_twice")]


def test_cli_imports_an_extract_and_reports_what_it_kept(database_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "osmtown"
    folder.mkdir()
    for name, content in [*district_csvs(), extract("pbf", tmp_path)]:
        (folder / name).write_bytes(content)
    env = {"CLEARDAY_DATABASE_URL": database_url}
    done = run_cli("import", str(folder), "--district", "osmtown", env=env)
    assert done.returncode == 0, done.stderr
    assert "osmtown.osm.pbf (district osmtown): drivable_ways 11, oneway_ways 2" in done.stdout
    assert "dropped_not_drivable 2" in done.stdout
    (folder / "osmtown.osm.pbf").write_bytes(osm_pbf(tmp_path)[:-7])
    (folder / "points.csv").unlink()
    broken = run_cli("import", str(folder), "--district", "osmtown", env=env)
    assert broken.returncode == 1
    assert "osmtown.osm.pbf: cannot read the extract" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_the_district_is_planned_on_the_imported_streets(database_url: str, tmp_path: Path) -> None:
    """Import the district with its extract, plan it with `clearday plan` (bounded by
    solutions), check the plan independently; the legs follow the grid, not straight
    lines."""
    name, data = extract("pbf", tmp_path)
    load(database_url, [*district_csvs(), (name, data)])
    done = subprocess.run(
        [sys.executable, "-c", "from fleet.cli import main; main()", "plan", "--date", DAY.isoformat(),
         "--district", "osmtown", "--solution-limit", "50", "--time-limit", "600", "--publish", "--here"],
        capture_output=True, text=True, env={**os.environ, "CLEARDAY_DATABASE_URL": database_url}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "8/8 points" in done.stdout
    with db.connect(database_url) as conn:
        problem = service.build_problem(conn, district_id="osmtown", service_date=DAY)
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute("SELECT document FROM plan").fetchone()
    assert row is not None
    plan = Plan.from_dict(row["document"])
    assert check_plan(problem, plan) == []
    assert not plan.unassigned
    # The legs are measured on the extract's streets: depot (corner 0,0) to the point by
    # corner (4,3) is the street path, well above the straight line.
    depot, point = near(0, 0, 20), near(4, 3, 15 + 3 * 7)
    streets = travel_matrix(read_osm(data, file_format="pbf").graph, {"d": depot, "p": point})
    road = problem.matrix.distance("depot/osmtown-D1", "point/osmtown-P8")
    assert road == pytest.approx(streets.distance("d", "p"))
    assert road > 1.25 * float(haversine_m(*depot, *point))


def test_max_off_road_is_what_the_refusal_says() -> None:
    """A place just inside the limit is on the map, one just outside is not."""
    parsed = osm.read_extract("x.osm", osm_xml(), "osmtown")
    lat, lon = NODES[node_id(0, 2)]  # on the grid's southern edge
    metres_per_degree = float(haversine_m(lat, lon, lat + 1, lon))
    inside = (lat - (osm.MAX_OFF_ROAD_M - 5) / metres_per_degree, lon)
    beyond = (lat - (osm.MAX_OFF_ROAD_M + 5) / metres_per_degree, lon)
    found = osm.places_outside(parsed, {("point", "in"): inside, ("point", "out"): beyond})
    assert [(kind, pid) for kind, pid, _ in found] == [("point", "out")]
