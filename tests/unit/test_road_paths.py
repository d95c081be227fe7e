"""One road network: RoadPaths on routing's graph, and the views other layers take of it."""

from __future__ import annotations

import pytest

from fleet.roads.paths import RoadLines
from routing.graph import NoPath, RoadPaths, RoadRow, graph_from_edges

# Four junctions on a line of latitude, ~100 m apart; 1 → 3 has a slow direct lane
# and a fast detour through 2; 3 → 4 is one-way.
LAT = 31.8
LON = {1: 117.200, 2: 117.201, 3: 117.202, 4: 117.203}


def _row(a: int, b: int, length_m: float, speed_kmh: float, **kw: bool) -> RoadRow:
    return RoadRow(a, b, LAT, LON[a], LAT, LON[b], length_m, speed_kmh, **kw)


ROWS = [
    _row(1, 3, 190.0, 10.0, narrow=True),
    _row(1, 2, 100.0, 50.0),
    _row(2, 3, 100.0, 50.0),
    _row(3, 4, 100.0, 30.0, oneway=True),
]


def test_fastest_path_and_its_duration() -> None:
    """The faster detour beats the shorter slow lane; the duration is its driving time."""
    paths = RoadPaths(graph_from_edges(ROWS), allow_narrow=True)
    assert paths.path(1, 3) == [1, 2, 3]
    assert paths.duration_s(1, 3) == pytest.approx(2 * 100.0 / (50 / 3.6), abs=1e-3)
    assert paths.path(2, 2) == [2]


def test_one_way_roads_and_the_narrow_profile() -> None:
    """No way back against a one-way road; a profile without lanes never uses one."""
    graph = graph_from_edges(ROWS[:1] + ROWS[3:])
    with pytest.raises(NoPath):
        RoadPaths(graph, allow_narrow=True).path(4, 3)
    assert RoadPaths(graph, allow_narrow=True).path(1, 4) == [1, 3, 4]
    with pytest.raises(NoPath):
        RoadPaths(graph, allow_narrow=False).duration_s(1, 3)


def _line(a: int, b: int, length_m: float, speed_kmh: float, bend: float) -> dict[str, object]:
    middle = [(LON[a] + LON[b]) / 2, LAT + bend]
    return {
        "from_node": a,
        "to_node": b,
        "speed_kmh": speed_kmh,
        "oneway": False,
        "narrow": False,
        "length_m": length_m,
        "coordinates": [[LON[a], LAT], middle, [LON[b], LAT]],
    }


def test_route_lines_follow_the_faster_of_parallel_roads() -> None:
    """Two roads join the same junctions: the line is drawn along the faster one, both ways."""
    lines = RoadLines([_line(1, 2, 120.0, 20.0, 0.001), _line(1, 2, 130.0, 50.0, -0.001)])
    there = lines.path((LAT, LON[1]), (LAT, LON[2]), allow_narrow=False)
    assert there == [[LON[1], LAT], [(LON[1] + LON[2]) / 2, LAT - 0.001], [LON[2], LAT]]
    back = lines.path((LAT, LON[2]), (LAT, LON[1]), allow_narrow=False)
    assert back == there[::-1]


def test_route_lines_without_roads_are_straight() -> None:
    """No roads at all: a straight line between the two places."""
    assert RoadLines([]).path((31.8, 117.2), (31.9, 117.3), allow_narrow=True) == [
        [117.2, 31.8],
        [117.3, 31.9],
    ]
