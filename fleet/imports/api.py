"""/api/v1/import: the files of docs/import.md in a JSON body, all or nothing."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field, StringConstraints

from fleet import importer
from fleet.auth.models import Principal
from fleet.web.deps import Conn, Dispatcher
from fleet.web.errors import ApiError, FieldError
from fleet.web.fields import DistrictId

router = APIRouter(tags=["import"])
MAX_FILE_CHARS = 20_000_000


class ImportFile(BaseModel):
    name: Annotated[
        str,
        StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,100}$"),
        Field(examples=["points.csv"], description="decides the kind, as in docs/import.md"),
    ]
    content: str = Field(max_length=MAX_FILE_CHARS, description="the file's text (UTF-8)")


class ImportRequest(BaseModel):
    files: list[ImportFile] = Field(min_length=1, max_length=10)
    district: DistrictId = Field(
        "default", description="district code for rows without a `district` column"
    )
    dry_run: bool = Field(False, description="validate only; write nothing")


class ImportResult(BaseModel):
    dry_run: bool
    rows: dict[str, int] = Field(description="valid rows per kind")
    inserted: dict[str, int]
    updated: dict[str, int]


def _check_scope(principal: Principal, parsed: importer.Parsed) -> None:
    errors = [
        FieldError(
            field=f"{row['__where__'][0]}:{row['__where__'][1]}",
            location="body",
            message=f"district {row['district']} is not one you may change",
        )
        for rows in parsed.rows.values()
        for row in rows
        if not principal.can_see(row["district"])
    ]
    if errors:
        raise ApiError(
            403, f"{len(errors)} row(s) belong to districts you may not change", errors=errors[:100]
        )


@router.post(
    "/import", summary="Import depots, stations, points, trucks and roads (all or nothing)"
)
def import_files(conn: Conn, principal: Dispatcher, body: ImportRequest) -> ImportResult:
    files = [(f.name, f.content.encode("utf-8")) for f in body.files]
    try:
        parsed = importer.parse_files(files, default_district=body.district)
        _check_scope(principal, parsed)
        if body.dry_run:
            return ImportResult(dry_run=True, rows=parsed.count(), inserted={}, updated={})
        summary = importer.load(conn, parsed)
    except importer.ImportRejected as rejected:
        errors = [
            FieldError(field=f"{e.file}:{e.line}", location="body", message=e.message)
            for e in rejected.errors
        ]
        raise ApiError(422, f"import rejected: {rejected}", errors=errors) from None
    return ImportResult(
        dry_run=False, rows=parsed.count(), inserted=summary.inserted, updated=summary.updated
    )
