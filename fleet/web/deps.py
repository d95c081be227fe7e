"""Dependencies every endpoint declares: the database connection, the caller and the
roles it admits. `Allow(...)` is the one place where an endpoint says who may call it;
tests/integration/web/test_access.py walks every route to prove each one does."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

import procrastinate
import psycopg
from fastapi import Depends, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import ConnectionPool

from fleet.auth import service as auth_service
from fleet.auth.models import ALL_ROLES, Principal, Role
from fleet.config import Settings
from fleet.web.errors import ApiError, FieldError

bearer = HTTPBearer(
    auto_error=False,
    description="`Authorization: Bearer <token>` with a token from POST /api/v1/auth/login",
)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_pool(request: Request) -> ConnectionPool:
    pool: ConnectionPool = request.app.state.pool
    return pool


def db_conn(pool: Annotated[ConnectionPool, Depends(get_pool)]) -> Iterator[psycopg.Connection]:
    """A pooled connection in autocommit mode; writes that span several statements wrap
    them in `conn.transaction()`."""
    with pool.connection() as conn:
        yield conn


def get_jobs(request: Request) -> procrastinate.App:
    """The job engine (queue, cancel), opened for the app's lifespan."""
    jobs: procrastinate.App = request.app.state.jobs
    return jobs


SettingsDep = Annotated[Settings, Depends(get_settings)]
JobsDep = Annotated[procrastinate.App, Depends(get_jobs)]
Conn = Annotated[psycopg.Connection, Depends(db_conn)]

_UNAUTHENTICATED = {"WWW-Authenticate": "Bearer"}


def now_utc() -> datetime:
    return datetime.now(UTC)


def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The caller, from a live bearer token; 401 otherwise."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(
            401, "log in first: send Authorization: Bearer <token>", headers=_UNAUTHENTICATED
        )
    pool: ConnectionPool = request.app.state.pool
    with pool.connection() as conn:
        principal = auth_service.resolve_token(conn, token=credentials.credentials, now=now_utc())
    if principal is None:
        raise ApiError(
            401, "the token is invalid, expired or revoked; log in again", headers=_UNAUTHENTICATED
        )
    request.state.principal = principal
    return principal


class Allow:
    """Admit callers whose role is one of `roles` (403 for the others).

    Used as `Depends(Allow(Role.admin, Role.dispatcher))`; the instance keeps the
    roles so that tests and docs can read them off each route.
    """

    def __init__(self, *roles: Role, unlimited_only: bool = False) -> None:
        self.roles = frozenset(roles)
        # Only callers that see every district (user administration).
        self.unlimited_only = unlimited_only

    def __call__(self, principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if principal.role not in self.roles:
            allowed = ", ".join(sorted(r.value for r in self.roles))
            raise ApiError(
                403,
                f"role {principal.role.value} may not do this (allowed: {allowed})",
                code="role_forbidden",
                params={"role": principal.role.value},
            )
        if self.unlimited_only and principal.districts is not None:
            raise ApiError(
                403, "only users who see every district may do this", code="needs_all_districts"
            )
        return principal

    def __repr__(self) -> str:
        return f"Allow({', '.join(sorted(r.value for r in self.roles))})"


# The usual combinations.
Anyone = Annotated[Principal, Depends(Allow(*ALL_ROLES))]
Dispatcher = Annotated[Principal, Depends(Allow(Role.admin, Role.dispatcher))]
Supervisor = Annotated[Principal, Depends(Allow(Role.admin, Role.supervisor))]
Admin = Annotated[Principal, Depends(Allow(Role.admin, unlimited_only=True))]


def ensure_district(principal: Principal, district_id: str, *, writing: bool = False) -> None:
    """A caller limited to other districts: 404 when reading (the id does not exist for
    them), 403 when writing into a district that is not theirs."""
    if principal.can_see(district_id):
        return
    if writing:
        raise ApiError(
            403,
            f"you may not change data of district {district_id}",
            code="district_not_yours",
            params={"district": district_id},
        )
    raise ApiError(404, f"district {district_id} not found")


def district_scope(principal: Principal, requested: str | None) -> list[str] | None:
    """The districts a list query may return: the caller's, narrowed to `requested`."""
    if requested is None:
        return principal.district_filter
    if not principal.can_see(requested):
        return []  # an empty list, not an error: nothing there for this caller
    return [requested]


class Paging:
    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 100,
        offset: Annotated[int, Query(ge=0, le=10_000_000, description="rows to skip")] = 0,
    ) -> None:
        self.limit = limit
        self.offset = offset


PagingDep = Annotated[Paging, Depends(Paging)]


_QUERY_NAMES: dict[int, frozenset[str]] = {}


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def reject_unknown_query(request: Request) -> None:
    """A misspelt filter (`?distrct_id=south`) is an error, not a silent "everything"."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    allowed = _QUERY_NAMES.get(id(route))
    if allowed is None:
        allowed = _QUERY_NAMES[id(route)] = frozenset(_query_names(route.dependant))
    unknown = sorted(set(request.query_params.keys()) - allowed)
    if unknown:
        raise ApiError(
            422,
            f"unknown query parameter(s): {', '.join(repr(u[:40]) for u in unknown[:5])}",
            errors=[
                FieldError(
                    field=name[:100],
                    location="query",
                    message="is not a parameter here",
                    code="unknown_parameter",
                )
                for name in unknown[:20]
            ],
        )
