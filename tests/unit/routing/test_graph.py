"""Road graph: building, snapping, matrices, fallback, OSM import."""

from __future__ import annotations

import math
from pathlib import Path

import networkx as nx
import pytest

from routing import graph as g

# Four junctions on a square of ~1 km sides near Hefei.
LAT0, LON0 = 31.82, 117.28
DLAT = 1000.0 / 111_320.0
DLON = 1000.0 / (111_320.0 * math.cos(math.radians(LAT0)))
NODES = {
    1: (LAT0, LON0),
    2: (LAT0, LON0 + DLON),
    3: (LAT0 + DLAT, LON0 + DLON),
    4: (LAT0 + DLAT, LON0),
}


def row(a: int, b: int, length: float, speed: float, **kw: object) -> dict[str, object]:
    return {
        "from_node": a,
        "to_node": b,
        "from_lat": NODES[a][0],
        "from_lon": NODES[a][1],
        "to_lat": NODES[b][0],
        "to_lon": NODES[b][1],
        "length_m": length,
        "speed_kmh": speed,
        **kw,
    }


def square() -> nx.DiGraph:
    """1-2 fast two-way, 2-3 one-way north, 3-4 two-way, 4-1 narrow two-way, and a
    slow diagonal 1-3."""
    return g.graph_from_edges(
        [
            row(1, 2, 1000, 36),
            row(2, 3, 1000, 36, oneway=True),
            row(3, 4, 1000, 36),
            row(4, 1, 1000, 36, narrow=True, road_class="lane"),
            row(1, 3, 1414, 10),
        ]
    )


def test_edges_two_way_and_one_way() -> None:
    """A two-way row gives two directed edges, a one-way row one."""
    graph = square()
    assert graph.has_edge(1, 2) and graph.has_edge(2, 1)
    assert graph.has_edge(2, 3) and not graph.has_edge(3, 2)
    assert graph.edges[4, 1]["narrow"] is True
    assert graph.nodes[3]["lat"] == pytest.approx(LAT0 + DLAT)


def test_bad_row_names_the_field() -> None:
    """A road row with a bad length or a missing field says which."""
    with pytest.raises(ValueError, match=r"roads\[0\]\.length_m"):
        g.graph_from_edges([row(1, 2, -5, 30)])
    bad = row(1, 2, 100, 30)
    del bad["to_lat"]
    with pytest.raises(ValueError, match=r"roads\[0\]\.to_lat"):
        g.graph_from_edges([bad])


def test_matrix_is_the_fastest_path() -> None:
    """Durations and lengths follow the fastest path, like networkx's Dijkstra."""
    graph = square()
    locs = {f"n{n}": NODES[n] for n in NODES}
    m = g.travel_matrix(graph, locs, allow_narrow=True)
    for a in NODES:
        for b in NODES:
            expected = nx.shortest_path_length(
                graph, a, b, weight=lambda u, v, d: d["length_m"] / (d["speed_kmh"] / 3.6)
            )
            assert m.duration(f"n{a}", f"n{b}") == pytest.approx(expected, abs=0.01)
    # 3 -> 2 must go around (one-way 2->3): 3-4-1-2 = 3 km at 10 m/s.
    assert m.distance("n3", "n2") == pytest.approx(3000.0, abs=0.5)


def test_narrow_lanes_only_for_trucks_that_may_enter() -> None:
    """Without the narrow lane 4-1, going 4 -> 1 takes the long way."""
    graph = square()
    locs = {f"n{n}": NODES[n] for n in NODES}
    wide = g.travel_matrix(graph, locs, allow_narrow=True)
    big = g.travel_matrix(graph, locs, allow_narrow=False)
    assert wide.distance("n4", "n1") == pytest.approx(1000.0, abs=0.5)
    assert big.distance("n4", "n1") > 2000.0


def test_snap_and_off_road_leg() -> None:
    """A location snaps to the nearest junction; its off-road leg is added."""
    graph = square()
    node, offset = g.snap(graph, LAT0 + 50 / 111_320.0, LON0)
    assert node == 1
    assert offset == pytest.approx(50.0, rel=0.01)
    m = g.travel_matrix(graph, {"x": (LAT0 + 50 / 111_320.0, LON0), "n2": NODES[2]})
    assert m.distance("x", "n2") == pytest.approx(1050.0, abs=1.0)


def test_straight_line_fallback() -> None:
    """Without a graph: great-circle distance times the detour factor."""
    m = g.straight_line_matrix({"a": NODES[1], "b": NODES[2]}, detour_factor=1.5, speed_kmh=36)
    assert m.distance("a", "b") == pytest.approx(1500.0, rel=0.01)
    assert m.duration("a", "b") == pytest.approx(150.0, rel=0.01)
    with pytest.raises(ValueError, match="detour_factor"):
        g.straight_line_matrix({"a": NODES[1]}, detour_factor=0.5)


def test_osm_import(tmp_path: Path) -> None:
    """An OSM extract becomes the same kind of graph: one-way, narrow, speeds."""
    osm = tmp_path / "tiny.osm"
    nodes = "\n".join(
        f'<node id="{n}" version="1" lat="{lat}" lon="{lon}"/>' for n, (lat, lon) in NODES.items()
    )
    osm.write_text(
        f"""<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6" generator="test">
{nodes}
<way id="10" version="1"><nd ref="1"/><nd ref="2"/><tag k="highway" v="primary"/></way>
<way id="11" version="1"><nd ref="2"/><nd ref="3"/><tag k="highway" v="residential"/>
  <tag k="oneway" v="yes"/></way>
<way id="12" version="1"><nd ref="3"/><nd ref="4"/><tag k="highway" v="service"/></way>
<way id="13" version="1"><nd ref="4"/><nd ref="1"/><tag k="highway" v="footway"/></way>
</osm>
"""
    )
    graph = g.graph_from_osm(osm)
    assert graph.has_edge(1, 2) and graph.has_edge(2, 1)
    assert graph.has_edge(2, 3) and not graph.has_edge(3, 2)
    assert graph.edges[3, 4]["narrow"] is True
    assert not graph.has_edge(4, 1)  # footways are not roads for trucks
    assert graph.edges[1, 2]["road_class"] == "arterial"
    assert graph.edges[1, 2]["length_m"] == pytest.approx(1000.0, rel=0.01)
