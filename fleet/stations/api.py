"""/api/v1/stations"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from fleet.stations.models import Station, StationIn, StationPatch
from fleet.stations.repo import TABLE
from fleet.web import crud
from fleet.web.crud import Page
from fleet.web.deps import Anyone, Conn, Dispatcher, PagingDep, district_scope
from fleet.web.fields import PathId, Stream

router = APIRouter(prefix="/stations", tags=["stations"])
WHAT = "station"
NULLABLE = ("daily_capacity_kg",)


@router.get("", summary="List transfer stations")
def list_stations(
    conn: Conn,
    principal: Anyone,
    paging: PagingDep,
    district_id: Annotated[str | None, Query(max_length=64)] = None,
    active: bool | None = None,
    stream: Annotated[Stream | None, Query(description="accepts this stream")] = None,
    q: Annotated[str | None, Query(max_length=100, description="id or name contains")] = None,
) -> Page[Station]:
    rows, total = TABLE.page(
        conn,
        districts=district_scope(principal, district_id),
        active=active,
        q=q,
        filters={"stream": stream},
        limit=paging.limit,
        offset=paging.offset,
    )
    return Page(
        items=[Station(**r) for r in rows], total=total, limit=paging.limit, offset=paging.offset
    )


@router.get("/{station_id}", summary="Get a transfer station")
def get_station(conn: Conn, principal: Anyone, station_id: PathId) -> Station:
    return Station(**crud.get_row(conn, TABLE, principal=principal, key=station_id, what=WHAT))


@router.post("", status_code=201, summary="Create a transfer station")
def create_station(conn: Conn, principal: Dispatcher, body: StationIn) -> Station:
    row = crud.create_row(conn, TABLE, principal=principal, values=body.model_dump(), what=WHAT)
    return Station(**row)


@router.patch("/{station_id}", summary="Change a transfer station")
def update_station(
    conn: Conn, principal: Dispatcher, station_id: PathId, body: StationPatch
) -> Station:
    changes = crud.changes_of(body, nullable=NULLABLE)
    row = crud.update_row(
        conn, TABLE, principal=principal, key=station_id, changes=changes, what=WHAT
    )
    return Station(**row)


@router.post("/{station_id}/deactivate", summary="Deactivate a transfer station")
def deactivate_station(conn: Conn, principal: Dispatcher, station_id: PathId) -> Station:
    row = crud.update_row(
        conn, TABLE, principal=principal, key=station_id, changes={"active": False}, what=WHAT
    )
    return Station(**row)
