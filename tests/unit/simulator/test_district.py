"""A district given as import files (no city.json) becomes a drivable `City`: its own
node ids, one-way and narrow roads honoured, sites attached to the roads, a day driven
over it; a generated city read back from its files alone is the same city; bad files
are refused naming the file and row."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

from simulator import geo
from simulator.city import Depot, Point, Station, generate
from simulator.district import DistrictError, load_city, read_district
from simulator.plans import greedy_plan
from simulator.roads import RoadNetwork
from simulator.trucks import DaySpec, ListSink, SimDay, TerminalConfig, run
from tests.district_files import (
    JUNCTIONS,
    POINTS,
    latlon,
    road_features,
    write_csv,
    write_district,
    write_roads,
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_district(tmp_path / "district")


def test_hand_written_district_loads_as_a_city(folder: Path) -> None:
    city = load_city(folder)  # no city.json: read from the import files
    assert not (folder / "city.json").exists()
    assert city.config is None and city.source == folder and city.district == "shushan"
    g = city.graph
    # The file's own junction ids, at the LineString ends.
    for node, xy in JUNCTIONS.items():
        assert city.node_latlon(node) == latlon(*xy)
    # One-way 88 -> 240 (split by point HF-0004 on the way): no way back along it.
    p4 = city.point("HF-0004")
    assert p4.node not in JUNCTIONS
    assert g.has_edge(88, p4.node) and g.has_edge(p4.node, 240)
    assert not g.has_edge(240, p4.node) and not g.has_edge(p4.node, 88)
    # The narrow lane, both ways, 15 km/h; the narrow point at its dead end.
    lane = g.edges[240, 777]
    assert lane["narrow"] and lane["road_class"] == "lane" and lane["speed_kmh"] == 15.0
    assert g.has_edge(777, 240) and city.point("HF-0006").node == 777
    assert city.point("HF-0006").access_class == "narrow"
    # Class speeds and names from the file; every edge carries the contract's attrs.
    assert g.edges[31, city.point("HF-0001").node]["speed_kmh"] == 50.0
    assert g.edges[31, city.point("HF-0001").node]["name"] == "徽州大道"
    for _, _, data in g.edges(data=True):
        assert set(data) >= {"length_m", "speed_kmh", "narrow", "road_class", "road_id", "name"}
        assert isinstance(data["length_m"], float) and data["length_m"] > 0
    # The bend of 望江路 is a node of its own; the point beside it stops there.
    bend = city.point("HF-0005").node
    assert city.node_latlon(bend) == latlon(300, 430)
    assert set(g.successors(bend)) == {63, 500}
    # A split keeps the road's length: 31 - P1 - 57 is as long as 31 - 57.
    p1 = city.point("HF-0001").node
    whole = geo.haversine_m(*latlon(*JUNCTIONS[31]), *latlon(*JUNCTIONS[57]))
    assert g.edges[31, p1]["length_m"] + g.edges[p1, 57]["length_m"] == pytest.approx(
        whole, abs=0.2
    )
    # Sites: at the junction, beside the road (kerb node within a few metres), own coords.
    assert city.depot("BH-D01").node == 31
    assert city.point("HF-0003").node == 15
    sites: list[Depot | Station | Point] = [*city.depots, *city.stations, *city.points]
    for site in sites:
        kerb = geo.haversine_m(site.lat, site.lon, *city.node_latlon(site.node))
        assert kerb <= 20.5, (site.id, kerb)
    station = city.station("BH-S01")
    assert g.has_edge(102, station.node) and g.has_edge(station.node, 240)
    assert station.streams == ("hazardous", "other", "recyclable")
    # Fields the simulator needs.
    assert [p.id for p in city.points] == [p[0] for p in POINTS]
    assert city.point("HF-0003").bin_count == 0 and not city.point("HF-0003").has_bins
    assert all(p.bin_count >= 1 for p in city.points if p.has_bins)
    assert city.point("HF-0001").min_dwell_s == 90 and city.point("HF-0002").stream == "recyclable"
    small = city.truck("BH-T2")
    assert small.can_enter_narrow and not city.truck("BH-T1").can_enter_narrow
    assert (small.shift_start_s, small.shift_end_s) == (6 * 3600, 14 * 3600)
    assert city.truck_graph(city.truck("BH-T1")).has_edge(240, 500)
    assert not city.truck_graph(city.truck("BH-T1")).has_edge(240, 777)
    assert g.edges[31, p1]["road_id"] == "RD-A1#1" and g.edges[240, 777]["road_id"] == "RD-LANE"
    # Same files, same city; written back (split roads and all) and read, the same graph.
    again = read_district(folder)
    assert again.points == city.points and nx.utils.graphs_equal(again.graph, city.graph)
    city.write(folder.parent / "copy")
    copy = load_city(folder.parent / "copy")
    assert [p.node for p in copy.points] == [p.node for p in city.points]
    assert set(copy.graph.edges) == set(g.edges) and copy.district == "shushan"


def test_a_day_is_driven_over_the_hand_written_district(folder: Path) -> None:
    city = load_city(folder)
    net = RoadNetwork(city)
    plan = greedy_plan(city, net=net)
    assert not plan.unassigned
    spec = DaySpec(
        city=city,
        plan=plan,
        service_date=date(2025, 3, 3),
        seed=3,
        terminal=TerminalConfig(noise_m=0.0, dropout_prob=0.0, signal_losses_per_day=0.0),
    )
    day = SimDay(spec, net=net)
    sink = ListSink()
    stats = run(day.emissions(), sink, speed=None)
    assert stats.fixes > 100
    served = {r["point_id"] for r in day.truth if r["type"] == "service"}
    assert served == {p.id for p in city.points}
    assert {r["station_id"] for r in day.truth if r["type"] == "unload"} == {"BH-S01"}
    header = day.header()
    assert header["city"]["import_files"] == str(folder)
    # Without noise every fix lies on a road of the file.
    segments = [(city.node_latlon(u), city.node_latlon(v)) for u, v in city.graph.edges]
    fixes = [f for e in sink.items if e.kind == "fixes" for f in e.fixes]
    for fix in fixes:
        off = min(geo.point_segment_distance_m(fix.lat, fix.lon, *a, *b) for a, b in segments)
        assert off < 0.5, (fix, off)
    # Services happen at the points: the truck's fixes during a service are at its kerb.
    for rec in (r for r in day.truth if r["type"] == "service"):
        p = city.point(rec["point_id"])
        assert geo.haversine_m(p.lat, p.lon, *city.node_latlon(p.node)) <= p.geofence_radius_m
    lane_trucks = {r["truck_id"] for r in day.truth if r.get("point_id") == "HF-0006"}
    assert lane_trucks == {"BH-T2"}  # only the small truck enters the lane


def test_generated_city_read_back_without_city_json_is_the_same_city(tmp_path: Path) -> None:
    city = generate(n_points=60, n_trucks=4, seed=2, district="baohe")
    city.write(tmp_path)
    (tmp_path / "city.json").unlink()
    again = load_city(tmp_path)
    assert again.config is None and again.district == "baohe"

    def same(site: Any) -> Any:
        fields: dict[str, Any] = {"bin_count": 0} if hasattr(site, "bin_count") else {}
        if hasattr(site, "streams"):
            fields["streams"] = tuple(sorted(site.streams))
        return dataclasses.replace(site, **fields)

    for mine, theirs in (
        (city.depots, again.depots),
        (city.stations, again.stations),
        (city.points, again.points),
        (city.trucks, again.trucks),
    ):
        assert [same(s) for s in mine] == [same(s) for s in theirs]  # nodes included
    assert set(again.graph.nodes) == set(city.graph.nodes)
    assert set(again.graph.edges) == set(city.graph.edges)
    for u, v, data in city.graph.edges(data=True):
        other = again.graph.edges[u, v]
        assert other["length_m"] == pytest.approx(data["length_m"], abs=0.05)
        assert (other["narrow"], other["road_class"], other["speed_kmh"]) == (
            data["narrow"], data["road_class"], data["speed_kmh"],
        )  # fmt: skip
    scc = {frozenset(c) for c in nx.strongly_connected_components(city.graph)}
    assert {frozenset(c) for c in nx.strongly_connected_components(again.graph)} == scc
    # Written back, the imported city reads back the same again (and has no sidecar).
    again.write(tmp_path / "copy")
    assert not (tmp_path / "copy" / "city.json").exists()
    third = load_city(tmp_path / "copy")
    assert third.points == again.points and set(third.graph.edges) == set(again.graph.edges)


# ---- bad files --------------------------------------------------------------------------
def _rewrite_csv(path: Path, change: Any) -> None:
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    header = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:]]
    change(header, rows)
    write_csv(path, header, rows)


def _col(header: list[str], name: str) -> int:
    return header.index(name)


def _point_far_away(folder: Path) -> None:
    def change(h: list[str], rows: list[list[str]]) -> None:
        rows[2][_col(h, "lat")], rows[2][_col(h, "lon")] = map(str, latlon(200, 700))

    _rewrite_csv(folder / "points.csv", change)


def _unknown_depot(folder: Path) -> None:
    def change(h: list[str], rows: list[list[str]]) -> None:
        rows[1][_col(h, "depot_id")] = "NOPE"

    _rewrite_csv(folder / "trucks.csv", change)


def _bad_stream(folder: Path) -> None:
    def change(h: list[str], rows: list[list[str]]) -> None:
        rows[3][_col(h, "stream")] = "塑料"

    _rewrite_csv(folder / "points.csv", change)


def _point_id_is_a_station_id(folder: Path) -> None:
    def change(h: list[str], rows: list[list[str]]) -> None:
        rows[4][_col(h, "id")] = "BH-S01"

    _rewrite_csv(folder / "points.csv", change)


def _node_in_two_places(folder: Path) -> None:
    features = road_features("shushan")
    coords = features[4]["geometry"]["coordinates"]  # RD-S1 15 -> 63
    coords[0] = [latlon(0, 480)[1], latlon(0, 480)[0]]  # node 15 moved 80 m
    write_roads(folder, features)


def _one_way_lane(folder: Path) -> None:
    features = road_features("shushan")
    features[-1]["properties"]["oneway"] = True  # into the dead-end lane, never out
    write_roads(folder, features)


def _depot_corner_a_sink(folder: Path) -> None:
    # Both roads at junction 31 (the depot) become one-way into it: trucks could get
    # home but never leave, and nor could a truck leave point HF-0001 on the way in.
    features = road_features("shushan")
    for f in features:
        if f["properties"]["id"] in ("RD-A1", "RD-V1"):  # 31 -> 57, 31 -> 7: reversed
            p = f["properties"]
            p.update({"from_node": p["to_node"], "to_node": p["from_node"], "oneway": True})
            f["geometry"]["coordinates"].reverse()
    write_roads(folder, features)


def _no_roads(folder: Path) -> None:
    (folder / "roads.geojson").unlink()


@pytest.mark.parametrize(
    ("spoil", "expected"),
    [
        (_no_roads, r"roads\.geojson: missing"),
        (_point_far_away, r"points\.csv, line 4: HF-0003 .* is 2\d\d m from the nearest road without narrow lanes, farther than 30 m"),
        (_unknown_depot, r"trucks\.csv, line 3: depot_id 'NOPE' is not in the depots"),
        (_bad_stream, r"points\.csv, line 5: stream: unknown waste stream '塑料'"),
        (_point_id_is_a_station_id, r"points\.csv, line 6: id 'BH-S01' is already used in stations\.csv"),
        (_node_in_two_places, r"roads\.geojson, feature \d+: node 15 ends this road at .* 80 m away"),
        (_one_way_lane, r"points\.csv, line 7: point HF-0006 .* not\s+strongly connected"),
    ],
)  # fmt: skip
def test_bad_files_are_refused_naming_file_and_row(folder: Path, spoil: Any, expected: str) -> None:
    spoil(folder)
    with pytest.raises(DistrictError, match=expected) as info:
        load_city(folder)
    assert info.value.errors


def test_unreachable_sites_name_every_row(folder: Path) -> None:
    _depot_corner_a_sink(folder)
    with pytest.raises(DistrictError, match="not strongly connected") as info:
        load_city(folder)
    where = {(e.file, e.line) for e in info.value.errors}
    assert where == {("depots.csv", 2), ("points.csv", 2)}, info.value
    assert "depot BH-D01 (home of BH-T1)" in str(info.value)


def test_missing_folder_and_broken_sidecar(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_city(tmp_path / "nowhere")
    folder = write_district(tmp_path / "d", district=None)
    assert load_city(folder).district == "default"
    (folder / "city.json").write_text(json.dumps({"version": 99}))
    with pytest.raises(ValueError, match=r"unsupported city\.json version"):
        load_city(folder)
