"""/api/v1/map/roads and /api/v1/map/sites (GeoJSON)"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from fleet.roads import repo
from fleet.web.deps import Anyone, Conn, district_scope

router = APIRouter(prefix="/map", tags=["map"])
GEOJSON = "application/geo+json"


def _collection(geometry: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": "GeoJSON FeatureCollection",
        "content": {
            GEOJSON: {
                "schema": {
                    "type": "object",
                    "required": ["type", "features"],
                    "properties": {
                        "type": {"const": "FeatureCollection"},
                        "features": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["type", "geometry", "properties"],
                                "properties": {
                                    "type": {"const": "Feature"},
                                    "id": {"type": "string"},
                                    "geometry": {
                                        "type": "object",
                                        "properties": {"type": {"const": geometry}},
                                    },
                                    "properties": {"type": "object", "properties": properties},
                                },
                            },
                        },
                    },
                }
            }
        },
    }


@router.get(
    "/roads",
    summary="The road network as GeoJSON LineStrings (the dashboard's base layer)",
    response_class=Response,
    responses={200: _collection("LineString", {"road_class": {"type": "string"}})},
)
def roads(
    conn: Conn,
    principal: Anyone,
    district_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    body = repo.roads_geojson(conn, districts=district_scope(principal, district_id))
    return Response(body, media_type=GEOJSON, headers={"Cache-Control": "private, max-age=60"})


@router.get(
    "/sites",
    summary="Active depots, stations and points as GeoJSON Points",
    response_class=Response,
    responses={
        200: _collection(
            "Point", {"kind": {"enum": ["depot", "station", "point"]}, "id": {"type": "string"}}
        )
    },
)
def sites(
    conn: Conn,
    principal: Anyone,
    district_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    body = repo.sites_geojson(conn, districts=district_scope(principal, district_id))
    return Response(body, media_type=GEOJSON, headers={"Cache-Control": "private, max-age=30"})
