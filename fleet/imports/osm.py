"""An OpenStreetMap extract (`.osm.pbf`, `.osm`) as a district's road network.

The extract is read with `routing.graph.read_osm` into the planner's road graph and
stored as rows of the `road` table, the same rows `roads.geojson` gives: one row per
edge between consecutive OSM nodes (two-way when both directions are alike). An
extract must cover the district: every depot, station and collection point lies
within MAX_OFF_ROAD_M of a road the planner can reach, or the import is refused
naming the places outside it (docs/import.md, "roads")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fleet.refusal import Refused
from routing.graph import OsmRoads, read_osm, snap

# File name ending -> the format libosmium reads.
OSM_FORMATS = {".osm.pbf": "pbf", ".osm": "osm"}
# Farther than this from the extract's connected roads, a place is not on the map.
MAX_OFF_ROAD_M = 500.0


def osm_format(filename: str) -> str | None:
    name = filename.lower()
    return next((fmt for end, fmt in OSM_FORMATS.items() if name.endswith(end)), None)


@dataclass(frozen=True)
class Extract:
    file: str
    district: str
    roads: OsmRoads

    def report(self) -> dict[str, int]:
        """What the import kept and dropped, by name."""
        return {
            "drivable_ways": self.roads.ways,
            "oneway_ways": self.roads.oneway_ways,
            "narrow_ways": self.roads.narrow_ways,
            "ways_cut_at_missing_nodes": self.roads.ways_cut,
            **{f"dropped_{reason}": n for reason, n in self.roads.dropped.items()},
            "junctions": self.roads.graph.number_of_nodes(),
        }

    def road_rows(self) -> list[dict[str, Any]]:
        """`road` rows: a pair of alike opposite edges is one two-way row."""
        graph = self.roads.graph
        rows = []
        for u, v, data in graph.edges(data=True):
            back = graph.get_edge_data(v, u)
            two_way = back == data
            if two_way and u > v:
                continue  # written with (v, u)
            ends = [graph.nodes[u], graph.nodes[v]]
            rows.append(
                {
                    "id": f"{self.district}-osm-{u}-{v}",
                    "district": self.district,
                    "from_node": u,
                    "to_node": v,
                    "road_class": data["road_class"],
                    "speed_kmh": data["speed_kmh"],
                    "oneway": not two_way,
                    "narrow": data["narrow"],
                    "length_m": data["length_m"],
                    "coordinates": [[end["lon"], end["lat"]] for end in ends],
                    "__where__": (self.file, 0),
                }
            )
        return rows


def read_extract(file: str, data: bytes, district: str) -> Extract:
    """Read the extract's bytes; raise Refused when there is nothing to plan on."""
    file_format = osm_format(file)
    if file_format is None:
        raise Refused("osm_unreadable", "is not named .osm.pbf or .osm")
    try:
        roads = read_osm(data, file_format=file_format)
    except ValueError as exc:
        raise Refused("osm_unreadable", f"{exc}; export the extract again") from None
    if roads.graph.number_of_edges() == 0:
        raise Refused(
            "osm_no_roads", "holds no road a truck may drive (highway=residential, service, …)"
        )
    return Extract(file, district, roads)


def places_outside(
    extract: Extract, places: Mapping[tuple[str, str], tuple[float, float]]
) -> list[tuple[str, str, float]]:
    """(kind, id, metres to the nearest road) of each place (kind, id) -> (lat, lon)
    farther than MAX_OFF_ROAD_M from the extract's connected roads."""
    far = []
    for (kind, place_id), (lat, lon) in sorted(places.items()):
        _, offset_m = snap(extract.roads.graph, lat, lon)
        if offset_m > MAX_OFF_ROAD_M:
            far.append((kind, place_id, offset_m))
    return far
