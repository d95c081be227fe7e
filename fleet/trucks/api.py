"""/api/v1/trucks (a truck's positions are under fleet/positions/api.py)"""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Query

from fleet.depots.repo import TABLE as DEPOTS
from fleet.trucks import repo
from fleet.trucks.models import Truck, TruckIn, TruckPatch
from fleet.trucks.repo import TABLE
from fleet.trucks.terminals import TERMINAL_COLUMNS
from fleet.web import crud
from fleet.web.crud import Page
from fleet.web.deps import Anyone, Conn, Dispatcher, PagingDep, district_scope, ensure_district
from fleet.web.errors import ApiError
from fleet.web.fields import PathId, Stream, TruckType

router = APIRouter(prefix="/trucks", tags=["trucks"])
WHAT = "truck"
NULLABLE = ("max_route_duration_s", "jt808_phone")


def _check_depot(conn: psycopg.Connection, *, depot_id: str, district_id: str) -> None:
    """A truck starts at a depot of its own district (one answer for any other id)."""
    if DEPOTS.get(conn, key=depot_id, districts=[district_id]) is None:
        raise ApiError(422, f"depot_id: depot {depot_id} is not a depot of district {district_id}")


def _check_terminals(conn: psycopg.Connection, *, values: dict[str, Any], truck_id: str) -> None:
    """One terminal, one truck — the same answer whichever district holds it."""
    for column in TERMINAL_COLUMNS:
        value = values.get(column)
        if value is not None and repo.terminal_holder(conn, column=column, value=value) not in (
            None,
            truck_id,
        ):
            raise ApiError(
                409,
                f"{column} {value} is not available: another truck uses it",
                code="id_not_available",
            )


@router.get("", summary="List trucks")
def list_trucks(
    conn: Conn,
    principal: Anyone,
    paging: PagingDep,
    district_id: Annotated[str | None, Query(max_length=64)] = None,
    active: bool | None = None,
    truck_type: TruckType | None = None,
    depot_id: Annotated[str | None, Query(max_length=64)] = None,
    stream: Annotated[Stream | None, Query(description="may carry this stream")] = None,
    q: Annotated[
        str | None,
        Query(max_length=100, description="id, plate, terminal id or JT/T 808 phone contains"),
    ] = None,
) -> Page[Truck]:
    rows, total = TABLE.page(
        conn,
        districts=district_scope(principal, district_id),
        active=active,
        q=q,
        filters={"truck_type": truck_type, "depot_id": depot_id, "stream": stream},
        limit=paging.limit,
        offset=paging.offset,
    )
    return Page(
        items=[Truck(**r) for r in rows], total=total, limit=paging.limit, offset=paging.offset
    )


@router.get("/{truck_id}", summary="Get a truck")
def get_truck(conn: Conn, principal: Anyone, truck_id: PathId) -> Truck:
    return Truck(**crud.get_row(conn, TABLE, principal=principal, key=truck_id, what=WHAT))


@router.post("", status_code=201, summary="Create a truck")
def create_truck(conn: Conn, principal: Dispatcher, body: TruckIn) -> Truck:
    ensure_district(principal, body.district_id, writing=True)
    _check_depot(conn, depot_id=body.depot_id, district_id=body.district_id)
    values = body.model_dump()
    _check_terminals(conn, values=values, truck_id=body.truck_id)
    row = crud.create_row(conn, TABLE, principal=principal, values=values, what=WHAT)
    return Truck(**row)


@router.patch("/{truck_id}", summary="Change a truck")
def update_truck(conn: Conn, principal: Dispatcher, truck_id: PathId, body: TruckPatch) -> Truck:
    changes = crud.changes_of(body, nullable=NULLABLE)
    truck = crud.get_row(conn, TABLE, principal=principal, key=truck_id, what=WHAT)
    if "depot_id" in changes:
        _check_depot(conn, depot_id=changes["depot_id"], district_id=truck["district_id"])
    _check_terminals(conn, values=changes, truck_id=truck_id)
    row = crud.update_row(
        conn, TABLE, principal=principal, key=truck_id, changes=changes, what=WHAT
    )
    return Truck(**row)


@router.post("/{truck_id}/deactivate", summary="Deactivate a truck")
def deactivate_truck(conn: Conn, principal: Dispatcher, truck_id: PathId) -> Truck:
    row = crud.update_row(
        conn, TABLE, principal=principal, key=truck_id, changes={"active": False}, what=WHAT
    )
    return Truck(**row)
