"""Roles, the authenticated principal, and the user records the API returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class Role(StrEnum):
    """What a user may do. Every API route names the roles it admits."""

    admin = "admin"  # everything, including users
    dispatcher = "dispatcher"  # domain data and plans (调度)
    supervisor = "supervisor"  # ledger, alerts, cases and reports (监管)
    viewer = "viewer"  # read only


ALL_ROLES: frozenset[Role] = frozenset(Role)


@dataclass(frozen=True)
class Principal:
    """The caller of one request, resolved from its bearer token."""

    user_id: int
    username: str
    role: Role
    # None: every district. Otherwise only these (possibly none left, if they were removed).
    districts: frozenset[str] | None
    token_hash: bytes = b""

    @property
    def district_filter(self) -> list[str] | None:
        """For SQL `(%s::text[] IS NULL OR district_id = ANY(%s))`."""
        return None if self.districts is None else sorted(self.districts)

    def can_see(self, district_id: str) -> bool:
        return self.districts is None or district_id in self.districts

    @property
    def may_create_districts(self) -> bool:
        """The right POST /districts needs (`Admin` in fleet/web/deps.py): an admin who
        sees every district. An import that names a new district needs it too."""
        return self.role is Role.admin and self.districts is None


class UserOut(BaseModel):
    user_id: int
    username: str
    display_name: str
    role: Role
    districts: list[str] = Field(description="empty: the user sees every district")
    active: bool
    created_at: datetime


USERNAME_PATTERN = r"^[A-Za-z0-9_.@-]{2,64}$"
PASSWORD_MIN_LENGTH = 10
PASSWORD_MAX_LENGTH = 256


class AssigneeOut(BaseModel):
    """Someone a case can be handed to (交办): a name to pick, nothing more."""

    username: str
    display_name: str
    role: Role


class UserCreate(BaseModel):
    username: str = Field(pattern=USERNAME_PATTERN, examples=["wang.li"])
    display_name: str = Field("", max_length=100)
    role: Role
    password: str = Field(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH)
    districts: list[str] = Field(default_factory=list, max_length=100)


class UserPatch(BaseModel):
    display_name: str | None = Field(None, max_length=100)
    role: Role | None = None
    password: str | None = Field(
        None, min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH
    )
    districts: list[str] | None = Field(None, max_length=100)
    active: bool | None = None


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=PASSWORD_MAX_LENGTH)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: datetime
    user: UserOut
