"""/api/v1/depots"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from fleet.depots.models import Depot, DepotIn, DepotPatch
from fleet.depots.repo import TABLE
from fleet.web import crud
from fleet.web.crud import Page
from fleet.web.deps import Anyone, Conn, Dispatcher, PagingDep, district_scope
from fleet.web.fields import PathId

router = APIRouter(prefix="/depots", tags=["depots"])
WHAT = "depot"


@router.get("", summary="List depots")
def list_depots(
    conn: Conn,
    principal: Anyone,
    paging: PagingDep,
    district_id: Annotated[str | None, Query(max_length=64)] = None,
    active: bool | None = None,
    q: Annotated[str | None, Query(max_length=100, description="id or name contains")] = None,
) -> Page[Depot]:
    rows, total = TABLE.page(
        conn,
        districts=district_scope(principal, district_id),
        active=active,
        q=q,
        filters={},
        limit=paging.limit,
        offset=paging.offset,
    )
    return Page(
        items=[Depot(**r) for r in rows], total=total, limit=paging.limit, offset=paging.offset
    )


@router.get("/{depot_id}", summary="Get a depot")
def get_depot(conn: Conn, principal: Anyone, depot_id: PathId) -> Depot:
    return Depot(**crud.get_row(conn, TABLE, principal=principal, key=depot_id, what=WHAT))


@router.post("", status_code=201, summary="Create a depot")
def create_depot(conn: Conn, principal: Dispatcher, body: DepotIn) -> Depot:
    row = crud.create_row(conn, TABLE, principal=principal, values=body.model_dump(), what=WHAT)
    return Depot(**row)


@router.patch("/{depot_id}", summary="Change a depot")
def update_depot(conn: Conn, principal: Dispatcher, depot_id: PathId, body: DepotPatch) -> Depot:
    changes = crud.changes_of(body)
    row = crud.update_row(
        conn, TABLE, principal=principal, key=depot_id, changes=changes, what=WHAT
    )
    return Depot(**row)


@router.post("/{depot_id}/deactivate", summary="Deactivate a depot (kept for history)")
def deactivate_depot(conn: Conn, principal: Dispatcher, depot_id: PathId) -> Depot:
    row = crud.update_row(
        conn, TABLE, principal=principal, key=depot_id, changes={"active": False}, what=WHAT
    )
    return Depot(**row)
