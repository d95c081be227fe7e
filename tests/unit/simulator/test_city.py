"""The synthetic city: reproducible, connected for every truck, in the import format."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from pathlib import Path

import networkx as nx
import pytest

from fleet.importer import parse_files, read_paths
from simulator import geo
from simulator.city import (
    SITE_SPACING_M,
    City,
    CityConfig,
    Depot,
    Point,
    Station,
    check_connectivity,
    generate,
)
from simulator.district import load_city
from simulator.roads import RoadNetwork


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_writes_identical_files(tmp_path: Path) -> None:
    generate(n_points=120, n_trucks=5, seed=9).write(tmp_path / "a")
    generate(n_points=120, n_trucks=5, seed=9).write(tmp_path / "b")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


def test_another_seed_gives_another_city() -> None:
    a = generate(n_points=120, n_trucks=5, seed=1)
    b = generate(n_points=120, n_trucks=5, seed=2)
    assert [(p.lat, p.lon) for p in a.points] != [(p.lat, p.lon) for p in b.points]


def test_graph_has_the_agreed_attributes(small_city: City) -> None:
    g = small_city.graph
    assert isinstance(g, nx.DiGraph)
    for _, data in g.nodes(data=True):
        assert 31.7 < data["lat"] < 31.95 and 117.1 < data["lon"] < 117.4
    classes = set()
    for u, v, data in g.edges(data=True):
        assert data["length_m"] > 0 and data["speed_kmh"] > 0
        assert isinstance(data["narrow"], bool)
        assert data["road_class"] in ("arterial", "secondary", "local", "lane")
        classes.add(data["road_class"])
        a, b = small_city.node_latlon(u), small_city.node_latlon(v)
        assert data["length_m"] == pytest.approx(geo.haversine_m(*a, *b), abs=0.2)
    assert classes == {"arterial", "secondary", "local", "lane"}


def test_has_one_way_streets_and_narrow_lanes(small_city: City) -> None:
    g = small_city.graph
    oneway = [(u, v) for u, v in g.edges if not g.has_edge(v, u)]
    assert oneway, "expected some one-way streets"
    narrow = [(u, v) for u, v, d in g.edges(data=True) if d["narrow"]]
    assert narrow and all(g.edges[e]["road_class"] == "lane" for e in narrow)
    narrow_points = [p for p in small_city.points if p.access_class == "narrow"]
    assert narrow_points
    for p in narrow_points:  # a narrow point can only be reached through a lane
        assert all(g.edges[u, p.node]["narrow"] for u in g.predecessors(p.node))


def test_strongly_connected_for_every_truck_that_serves_each_point(small_city: City) -> None:
    check_connectivity(small_city)
    assert nx.is_strongly_connected(small_city.graph)
    net = RoadNetwork(small_city)
    for point in small_city.points:
        servers = [t for t in small_city.trucks if t.can_serve(point)]
        assert servers, f"{point.id} ({point.stream}, {point.access_class}) has no truck"
        for truck in servers:
            ok = truck.can_enter_narrow
            depot = small_city.depot(truck.depot_id)
            stations = [s for s in small_city.stations if point.stream in s.streams]
            assert stations
            for station in stations:
                total = (
                    net.travel_time_s(depot.node, point.node, narrow_ok=ok)
                    + net.travel_time_s(point.node, station.node, narrow_ok=ok)
                    + net.travel_time_s(station.node, depot.node, narrow_ok=ok)
                )
                assert math.isfinite(total)


def test_big_trucks_never_need_a_narrow_lane(small_city: City) -> None:
    big = next(t for t in small_city.trucks if not t.can_enter_narrow)
    view = small_city.truck_graph(big)
    assert not any(d["narrow"] for _, _, d in view.edges(data=True))
    net = RoadNetwork(small_city)
    for p in small_city.points:
        if p.access_class == "normal":
            path = net.path(small_city.depots[0].node, p.node, narrow_ok=False)
            assert all(
                not small_city.graph.edges[u, v]["narrow"] for u, v in itertools.pairwise(path)
            )


def test_points_are_on_the_road_and_apart(small_city: City) -> None:
    sites: list[Depot | Station | Point] = [
        *small_city.depots,
        *small_city.stations,
        *small_city.points,
    ]
    for s in sites:
        assert (s.lat, s.lon) == small_city.node_latlon(s.node)
    for i, a in enumerate(sites):
        for b in sites[i + 1 :]:
            assert geo.haversine_m(a.lat, a.lon, b.lat, b.lon) > SITE_SPACING_M - 1


def test_fleet_and_sites_have_plausible_values(small_city: City) -> None:
    assert {t.truck_type for t in small_city.trucks} == {"compactor", "kitchen", "small"}
    assert len({t.terminal_id for t in small_city.trucks}) == len(small_city.trucks)
    assert all(t.plate.startswith("皖A") for t in small_city.trucks)
    assert len(small_city.stations) >= 2
    streams = {p.stream for p in small_city.points}
    assert streams <= {"other", "kitchen", "recyclable", "hazardous"}
    assert {"other", "kitchen"} <= streams
    for s in small_city.stations:
        assert s.opens_s < s.closes_s


def test_written_city_passes_the_importer(tmp_path: Path, small_city: City) -> None:
    small_city.write(tmp_path)
    parsed = parse_files(read_paths([tmp_path]))
    assert parsed.count() == {
        "depots": len(small_city.depots),
        "stations": len(small_city.stations),
        "points": len(small_city.points),
        "trucks": len(small_city.trucks),
        "roads": len(small_city.roads),
    }
    points = {row["id"]: row for row in parsed.rows["points"]}
    p = small_city.points[0]
    assert points[p.id]["stream"] == p.stream
    assert points[p.id]["lat"] == pytest.approx(p.lat, abs=1e-7)


def test_roads_geojson_describes_the_graph(tmp_path: Path, small_city: City) -> None:
    small_city.write(tmp_path)
    features = json.loads((tmp_path / "roads.geojson").read_text())["features"]
    directed = 0
    for f in features:
        props = f["properties"]
        (lon1, lat1), (lon2, lat2) = f["geometry"]["coordinates"]
        u, v = props["from_node"], props["to_node"]
        assert small_city.node_latlon(u) == (lat1, lon1)
        assert small_city.node_latlon(v) == (lat2, lon2)
        assert small_city.graph.has_edge(u, v)
        assert small_city.graph.has_edge(v, u) != props["oneway"]
        directed += 1 if props["oneway"] else 2
    assert directed == small_city.graph.number_of_edges()


def test_load_rebuilds_the_written_city(tmp_path: Path) -> None:
    city = generate(n_points=80, n_trucks=4, seed=5, district="baohe")
    city.write(tmp_path)
    again = load_city(tmp_path)
    assert again.config == city.config
    assert again.points == city.points and again.trucks == city.trucks
    assert "district" in (tmp_path / "points.csv").read_text().splitlines()[0]


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="n_points"):
        CityConfig(n_points=0)
    with pytest.raises(ValueError, match="block_m"):
        CityConfig(block_m=10)


def test_large_district_is_built_and_connected() -> None:
    city = generate(n_points=5000, n_trucks=100, seed=3)
    assert len(city.points) == 5000 and len(city.trucks) == 100
    assert len(city.stations) >= 2 and len(city.depots) >= 2
    assert nx.is_strongly_connected(city.graph)
