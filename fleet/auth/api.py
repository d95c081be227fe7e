"""/api/v1/auth (login, logout, me) and /api/v1/users (administration)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from fleet.auth import repo, service, throttle
from fleet.auth.models import (
    AssigneeOut,
    LoginIn,
    Principal,
    Role,
    TokenOut,
    UserCreate,
    UserOut,
    UserPatch,
)
from fleet.web.deps import Admin, Allow, Anyone, Conn, SettingsDep, district_scope, now_utc
from fleet.web.errors import ApiError, not_found

router = APIRouter(tags=["auth"])
UserId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.post("/auth/login", summary="Log in: exchange a username and password for a token")
def login(request: Request, conn: Conn, settings: SettingsDep, body: LoginIn) -> TokenOut:
    policy = throttle.ThrottlePolicy.from_settings(settings)
    address = request.client.host if request.client else None
    now = now_utc()
    wait_s = throttle.claim(conn, username=body.username, address=address, now=now, policy=policy)
    if wait_s:
        throttle.forget_expired(conn, now=now, policy=policy)
        raise ApiError(
            429,
            f"too many failed logins from this address; try again in {wait_s:.0f} s",
            code="login_throttled",
            params={"wait_s": round(wait_s)},
            headers={"Retry-After": str(int(wait_s))},
        )
    user = service.authenticate(conn, username=body.username, password=body.password)
    if user is None:
        throttle.forget_expired(conn, now=now, policy=policy)
        raise ApiError(
            401,
            "wrong username or password",
            code="login_failed",
            headers={"WWW-Authenticate": "Bearer"},
        )
    throttle.succeeded(conn, username=body.username, address=address)
    issued = service.issue_token(
        conn,
        user_id=user.user_id,
        now=now_utc(),
        ttl_s=settings.web.auth_token_ttl_s,
        user_agent=request.headers.get("user-agent"),
    )
    return TokenOut(access_token=issued.token, expires_at=issued.expires_at, user=user)


@router.post("/auth/logout", status_code=204, summary="Log out: revoke the token of this request")
def logout(conn: Conn, principal: Anyone) -> None:
    service.revoke_token(conn, token_hash=principal.token_hash, now=now_utc())


@router.get("/auth/me", summary="The user of this token")
def me(conn: Conn, principal: Anyone) -> UserOut:
    return service.get_user(conn, user_id=principal.user_id)


@router.get("/users", summary="List users")
def list_users(conn: Conn, principal: Admin) -> list[UserOut]:
    return service.list_users(conn)


# Whoever works cases picks the assignee (交办) from these.
CaseWorker = Annotated[Principal, Depends(Allow(Role.admin, Role.supervisor, Role.dispatcher))]


@router.get("/assignees", summary="People a case can be assigned to, by name")
def list_assignees(
    conn: Conn,
    principal: CaseWorker,
    district_id: Annotated[str | None, Query(max_length=64)] = None,
) -> list[AssigneeOut]:
    scope = district_scope(principal, district_id)
    if scope == []:
        return []
    return [AssigneeOut(**row) for row in repo.assignees(conn, districts=scope)]


@router.post("/users", status_code=201, summary="Create a user")
def create_user(conn: Conn, principal: Admin, body: UserCreate) -> UserOut:
    try:
        return service.create_user(
            conn,
            username=body.username,
            password=body.password,
            role=body.role,
            districts=body.districts,
            display_name=body.display_name,
        )
    except service.DuplicateUser as exc:
        raise ApiError.refused(409, exc) from None
    except service.AuthError as exc:
        raise ApiError.refused(422, exc) from None


@router.get("/users/{user_id}", summary="Get a user")
def get_user(conn: Conn, principal: Admin, user_id: UserId) -> UserOut:
    try:
        return service.get_user(conn, user_id=user_id)
    except LookupError:
        raise not_found("user", user_id) from None


@router.patch(
    "/users/{user_id}",
    summary="Change a user (a new password, role or districts, or deactivation, revokes "
    "the user's tokens)",
)
def update_user(conn: Conn, principal: Admin, user_id: UserId, body: UserPatch) -> UserOut:
    if user_id == principal.user_id and (body.active is False or body.role not in (None, "admin")):
        raise ApiError(409, "you cannot demote or deactivate yourself", code="demote_self")
    try:
        return service.update_user(
            conn, user_id=user_id, now=now_utc(), **body.model_dump(exclude_unset=True)
        )
    except LookupError:
        raise not_found("user", user_id) from None
    except service.AuthError as exc:
        raise ApiError.refused(422, exc) from None
