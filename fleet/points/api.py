"""/api/v1/points"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from fleet.points.models import Point, PointIn, PointPatch
from fleet.points.repo import TABLE
from fleet.web import crud
from fleet.web.crud import Page
from fleet.web.deps import Anyone, Conn, Dispatcher, PagingDep, district_scope
from fleet.web.fields import AccessClass, PathId, Stream

router = APIRouter(prefix="/points", tags=["points"])
WHAT = "collection point"
NULLABLE = ("min_dwell_s",)


@router.get("", summary="List collection points")
def list_points(
    conn: Conn,
    principal: Anyone,
    paging: PagingDep,
    district_id: Annotated[str | None, Query(max_length=64)] = None,
    active: bool | None = None,
    stream: Stream | None = None,
    access_class: AccessClass | None = None,
    q: Annotated[str | None, Query(max_length=100, description="id or name contains")] = None,
) -> Page[Point]:
    rows, total = TABLE.page(
        conn,
        districts=district_scope(principal, district_id),
        active=active,
        q=q,
        filters={"stream": stream, "access_class": access_class},
        limit=paging.limit,
        offset=paging.offset,
    )
    return Page(
        items=[Point(**r) for r in rows], total=total, limit=paging.limit, offset=paging.offset
    )


@router.get("/{point_id}", summary="Get a collection point")
def get_point(conn: Conn, principal: Anyone, point_id: PathId) -> Point:
    return Point(**crud.get_row(conn, TABLE, principal=principal, key=point_id, what=WHAT))


@router.post("", status_code=201, summary="Create a collection point")
def create_point(conn: Conn, principal: Dispatcher, body: PointIn) -> Point:
    row = crud.create_row(conn, TABLE, principal=principal, values=body.model_dump(), what=WHAT)
    return Point(**row)


@router.patch("/{point_id}", summary="Change a collection point")
def update_point(conn: Conn, principal: Dispatcher, point_id: PathId, body: PointPatch) -> Point:
    changes = crud.changes_of(body, nullable=NULLABLE)
    row = crud.update_row(
        conn, TABLE, principal=principal, key=point_id, changes=changes, what=WHAT
    )
    return Point(**row)


@router.post("/{point_id}/deactivate", summary="Deactivate a collection point")
def deactivate_point(conn: Conn, principal: Dispatcher, point_id: PathId) -> Point:
    row = crud.update_row(
        conn, TABLE, principal=principal, key=point_id, changes={"active": False}, what=WHAT
    )
    return Point(**row)
