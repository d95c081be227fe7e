"""Errors as `application/problem+json` (RFC 9457). No stack trace ever reaches a client:
unexpected exceptions are logged with an id and answered with that id only.

Every problem, and every field error in it, has a stable `code` and the `params` that
fill its words (fleet/refusal.py): the English `detail` is for API clients, the
dashboard says the code in the user's language."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import psycopg
import psycopg.errors
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from fleet.refusal import Param, Refused

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("fleet.web")

_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    422: "Invalid input",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}
_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "invalid",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}


Params = dict[str, Param]


class FieldError(BaseModel):
    field: str = Field(description="dotted path of the offending field, e.g. `capacity_kg`")
    location: str = Field(description="body, query, path or header")
    message: str
    code: str | None = Field(
        None, description="stable machine-readable code of the message, e.g. `string_too_short`"
    )
    params: Params | None = Field(None, description="the values the message names")


class Problem(BaseModel):
    """The body of every error response."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str = Field(description="stable machine-readable code, e.g. `not_found`")
    params: Params | None = Field(None, description="the values the detail names")
    errors: list[FieldError] | None = None
    error_id: str | None = Field(None, description="quote it when reporting a 500")


class ApiError(Exception):
    """Raised by endpoints and services' adapters for an expected failure."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str | None = None,
        params: Params | None = None,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code or _CODES.get(status, "error")
        self.params = params
        self.errors = errors
        self.headers = headers

    @classmethod
    def refused(cls, status: int, refusal: Refused, **kwargs: Any) -> ApiError:
        """The answer to a domain refusal: its text, code and params."""
        return cls(status, str(refusal), code=refusal.code, params=dict(refusal.params), **kwargs)


def not_found(what: str, key: object) -> ApiError:
    return ApiError(404, f"{what} {key!s} not found")


def problem(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    params: Params | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    error_id: str | None = None,
) -> JSONResponse:
    body = Problem(
        title=_TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        code=code or _CODES.get(status, "error"),
        params=params,
        errors=errors,
        error_id=error_id,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _field_errors(raw: Any) -> list[FieldError]:
    errors = []
    for error in raw:
        loc = [str(part) for part in error.get("loc", ())]
        location = loc[0] if loc and loc[0] in ("body", "query", "path", "header", "cookie") else ""
        path = loc[1:] if location else loc
        context = error.get("ctx") or {}
        errors.append(
            FieldError(
                field=".".join(path) or location or "request",
                location=location or "body",
                message=str(error.get("msg", "is invalid")),
                # pydantic's error type, with the limits it names (min_length, pattern …)
                code=error.get("type"),
                params={
                    k: v
                    for k, v in context.items()
                    if isinstance(v, str | int | float) and not isinstance(v, bool)
                },
            )
        )
    return errors


def _constraint_message(exc: psycopg.Error) -> str:
    diag = exc.diag
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return f"already exists ({diag.message_detail or diag.constraint_name})"
    if isinstance(exc, psycopg.errors.ForeignKeyViolation):
        detail = diag.message_detail or ""
        if "is still referenced" in detail:
            return f"still in use: {detail}"
        return f"refers to something that does not exist: {detail}".rstrip(": ")
    if isinstance(exc, psycopg.errors.CheckViolation):
        return f"breaks the rule {diag.constraint_name} of {diag.table_name}"
    return (diag.message_primary or str(exc)).split("\n")[0]


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return problem(
            exc.status,
            exc.detail,
            code=exc.code,
            params=exc.params,
            errors=exc.errors,
            headers=exc.headers,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "")
        return problem(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc.errors())
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
        if len(errors) > 5:
            detail += f"; and {len(errors) - 5} more"
        return problem(422, detail or "invalid input", errors=errors)

    @app.exception_handler(psycopg.errors.IntegrityError)
    async def _integrity(request: Request, exc: psycopg.errors.IntegrityError) -> JSONResponse:
        status = 409 if isinstance(exc, psycopg.errors.UniqueViolation) else 422
        if isinstance(exc, psycopg.errors.ForeignKeyViolation) and "still referenced" in (
            exc.diag.message_detail or ""
        ):
            status = 409
        return problem(status, _constraint_message(exc))

    @app.exception_handler(psycopg.DataError)
    async def _data_error(request: Request, exc: psycopg.DataError) -> JSONResponse:
        return problem(422, f"a value is not acceptable: {_constraint_message(exc)}")

    @app.exception_handler(psycopg.OperationalError)
    async def _db_down(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        error_id = uuid.uuid4().hex[:12]
        log.error("database unavailable [%s]: %s", error_id, str(exc).splitlines()[0])
        return problem(503, "the database is unavailable; try again shortly", error_id=error_id)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        error_id = uuid.uuid4().hex[:12]
        log.exception("unhandled error [%s] on %s %s", error_id, request.method, request.url.path)
        return problem(500, "internal error; it has been logged", error_id=error_id)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the error statuses a route may answer."""
    return {
        status: {
            "description": _TITLES.get(status, "Error"),
            "model": Problem,
            "content": {PROBLEM_JSON: {}},
        }
        for status in statuses
    }
