"""/api/v1/import: the files of docs/import.md in a JSON body, all or nothing.

A caller writes only inside the districts it holds; a new district needs the right
that POST /districts needs; an id that belongs to another district is refused (409),
listing every such row, and nothing is written (docs/import.md, "Districts")."""

from __future__ import annotations

import base64
from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field, StringConstraints

from fleet import importer
from fleet.auth.models import Principal
from fleet.refusal import Refused
from fleet.web.deps import Conn, Dispatcher
from fleet.web.errors import ApiError, FieldError, problem_responses
from fleet.web.fields import DistrictId

router = APIRouter(tags=["import"])
MAX_FILE_CHARS = 20_000_000
# Status per kind of refusal: files to fix, ids not available, a right the caller lacks.
STATUS = {"invalid": 422, "conflict": 409, "forbidden": 403}


class ImportFile(BaseModel):
    name: Annotated[
        str,
        StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,100}$"),
        Field(examples=["points.csv"], description="decides the kind, as in docs/import.md"),
    ]
    content: str = Field(max_length=MAX_FILE_CHARS, description="the file's text, or its bytes")
    encoding: Literal["utf-8", "base64"] = Field(
        "utf-8", description="base64 for a binary file (an OpenStreetMap .osm.pbf extract)"
    )

    def data(self) -> bytes:
        if self.encoding == "utf-8":
            # surrogatepass: a lone surrogate becomes bytes the importer names by line, not a 500.
            return self.content.encode("utf-8", "surrogatepass")
        try:
            return base64.b64decode(self.content, validate=True)
        except ValueError:  # binascii.Error, or characters outside ASCII
            refused = Refused("base64_bad", "content is not base64")
            raise importer.ImportRejected([importer.RowError.of(self.name, 0, refused)]) from None


class ImportRequest(BaseModel):
    files: list[ImportFile] = Field(min_length=1, max_length=10)
    district: DistrictId = Field(
        "default", description="district code for rows without a `district` column"
    )
    dry_run: bool = Field(False, description="check everything, count, then write nothing")


class ImportResult(BaseModel):
    dry_run: bool
    rows: dict[str, int] = Field(description="valid rows per kind")
    inserted: dict[str, int]
    updated: dict[str, int]
    created_districts: list[str] = Field(description="districts the import created")
    osm: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="per OpenStreetMap extract: drivable, one-way and narrow ways kept, "
        "ways dropped by reason",
    )
    roads_removed: int = Field(0, description="roads the extracts replaced")


def _field_errors(errors: list[importer.RowError]) -> list[FieldError]:
    """`field` is "file:line" (GeoJSON: "file:feature index"; line 0: the whole file)."""
    return [
        FieldError(
            field=f"{e.file}:{e.line}", location="body", message=e.message, code=e.code,
            params=e.params,
        )
        for e in errors
    ]  # fmt: skip


def _check_scope(principal: Principal, parsed: importer.Parsed) -> None:
    # One error per file line: an extract's road rows all stand on its line 0.
    outside = {
        (row["__where__"], row["district"]): importer.RowError.of(
            row["__where__"][0],
            row["__where__"][1],
            Refused(
                "district_not_yours",
                f"district {row['district']} is not one you may change",
                district=row["district"],
            ),
            "forbidden",
        )
        for rows in parsed.rows.values()
        for row in rows
        if not principal.can_see(row["district"])
    }
    if outside:
        raise importer.ImportRejected(list(outside.values()))


@router.post(
    "/import",
    summary="Import depots, stations, points, trucks and roads, or an OSM extract (all or nothing)",
    responses=problem_responses(403, 409, 422),
)
def import_files(conn: Conn, principal: Dispatcher, body: ImportRequest) -> ImportResult:
    try:
        files = [(f.name, f.data()) for f in body.files]
        parsed = importer.parse_files(files, default_district=body.district)
        _check_scope(principal, parsed)
        summary = importer.load(
            conn,
            parsed,
            may_create_districts=principal.may_create_districts,
            dry_run=body.dry_run,
        )
    except importer.ImportRejected as rejected:
        raise ApiError(
            STATUS[rejected.refusal],
            f"import refused: {rejected}",
            code=f"import_{rejected.refusal}",
            params={"total": rejected.total},
            errors=_field_errors(rejected.errors),
        ) from None
    return ImportResult(
        dry_run=body.dry_run,
        rows=parsed.count(),
        inserted=summary.inserted,
        updated=summary.updated,
        created_districts=summary.created_districts,
        osm={extract.file: extract.report() for extract in parsed.extracts},
        roads_removed=summary.roads_removed,
    )
