"""The catalogue's endpoints share these: a `Page` of rows, and create / get / update
of a row of a `fleet.catalogue.Table` within the caller's districts, with the API's
answers to an unknown district, a taken id, a row that would move district."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import psycopg
from pydantic import BaseModel

from fleet.auth.models import Principal
from fleet.catalogue import Table
from fleet.districts.repo import district_exists
from fleet.web.deps import ensure_district
from fleet.web.errors import ApiError, FieldError, not_found

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


# --- endpoint helpers shared by the catalogue's api.py modules ------------------------


def id_not_available(what: str, key: str, district_id: str) -> ApiError:
    """The one answer to an id that is taken — in the caller's district or another one, so
    that it tells nothing about other districts."""
    return ApiError(
        409,
        f"{what} id {key} is not available: ids are unique across the deployment — prefix "
        f"them with your district's code, e.g. {district_id}-{key}",
        code="id_not_available",
    )


def create_row(
    conn: psycopg.Connection,
    table: Table,
    *,
    principal: Principal,
    values: dict[str, Any],
    what: str,
) -> dict[str, Any]:
    ensure_district(principal, values["district_id"], writing=True)
    if not district_exists(conn, values["district_id"]):
        raise ApiError(
            422,
            f"unknown district {values['district_id']}; create it first",
            code="district_unknown",
            params={"district": values["district_id"]},
        )
    if table.get(conn, key=values[table.key], districts=None) is not None:
        raise id_not_available(what, values[table.key], values["district_id"])
    return table.insert(conn, values=values)


def get_row(
    conn: psycopg.Connection, table: Table, *, principal: Principal, key: str, what: str
) -> dict[str, Any]:
    row = table.get(conn, key=key, districts=principal.district_filter)
    if row is None:
        raise not_found(what, key)
    return row


def update_row(
    conn: psycopg.Connection,
    table: Table,
    *,
    principal: Principal,
    key: str,
    changes: dict[str, Any],
    what: str,
) -> dict[str, Any]:
    """Change a row of the caller's districts (404 for any other id). A row never moves
    between districts: a different `district_id` is refused (the database refuses it too,
    migration 0009)."""
    current = get_row(conn, table, principal=principal, key=key, what=what)
    changes = dict(changes)
    moved_to = changes.pop("district_id", current["district_id"])
    if moved_to != current["district_id"]:
        raise ApiError(
            422,
            f"district_id: a {what} stays in its district ({current['district_id']}); to have "
            f"one in {moved_to}, create it there under a new id and deactivate this one",
            code="district_fixed",
            params={"district": current["district_id"]},
            errors=[
                FieldError(
                    field="district_id",
                    location="body",
                    message="cannot change",
                    code="district_fixed",
                    params={"district": current["district_id"]},
                )
            ],
        )
    row = table.update(conn, key=key, changes=changes, districts=principal.district_filter)
    if row is None:
        raise not_found(what, key)
    return row


def changes_of(patch: BaseModel, *, nullable: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields a PATCH body set; an explicit null clears only nullable columns."""
    return {
        k: v
        for k, v in patch.model_dump(exclude_unset=True).items()
        if v is not None or k in nullable
    }
