"""/api/v1/districts"""

from __future__ import annotations

from fastapi import APIRouter

from fleet.districts import repo
from fleet.districts.models import District, DistrictIn, DistrictPatch
from fleet.web.crud import changes_of
from fleet.web.deps import Admin, Anyone, Conn
from fleet.web.errors import ApiError, not_found
from fleet.web.fields import PathId

router = APIRouter(prefix="/districts", tags=["districts"])


@router.get("", summary="Districts the caller may see")
def list_districts(conn: Conn, principal: Anyone) -> list[District]:
    return [District(**r) for r in repo.list_districts(conn, districts=principal.district_filter)]


@router.get("/{district_id}", summary="Get a district")
def get_district(conn: Conn, principal: Anyone, district_id: PathId) -> District:
    row = repo.get_district(conn, district_id=district_id, districts=principal.district_filter)
    if row is None:
        raise not_found("district", district_id)
    return District(**row)


@router.post("", status_code=201, summary="Create a district")
def create_district(conn: Conn, principal: Admin, body: DistrictIn) -> District:
    if not repo.insert_district(
        conn, district_id=body.district_id, name=body.name, timezone=body.timezone
    ):
        raise ApiError(
            409,
            f"district {body.district_id} already exists",
            code="district_exists",
            params={"district": body.district_id},
        )
    return get_district(conn, principal, body.district_id)


@router.patch(
    "/{district_id}",
    summary="Rename a district, change its time zone or the hour its next day is planned",
)
def update_district(
    conn: Conn, principal: Admin, district_id: PathId, body: DistrictPatch
) -> District:
    if repo.get_district(conn, district_id=district_id, districts=None) is None:
        raise not_found("district", district_id)
    repo.update_district(
        conn, district_id=district_id, changes=changes_of(body, nullable=("plan_at_hour",))
    )
    return get_district(conn, principal, district_id)
