"""Users, passwords and tokens: keyword-only functions over a connection.

Passwords are hashed with argon2id. Tokens are 256-bit random strings given to the
client once; the database keeps only their SHA-256 digest (a fast hash is right for
a high-entropy secret), with an expiry and a revocation time.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from fleet.auth import repo
from fleet.auth.models import (
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    Principal,
    Role,
    UserOut,
)
from fleet.refusal import Refused

TOKEN_PREFIX = "cd_"
_hasher = PasswordHasher()  # argon2id, library defaults (RFC 9106 low-memory profile)
# Verified when the username is unknown, so that a login takes as long either way.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class AuthError(Refused):
    """A user or password request that cannot be honoured; the message says why."""


class UnknownDistrict(AuthError):
    pass


class DuplicateUser(AuthError):
    pass


@functools.cache
def _common_passwords() -> frozenset[str]:
    """zxcvbn's list of the 30,000 most frequent passwords in public leaks."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def check_password_policy(password: str, *, username: str) -> None:
    """Raise AuthError saying what to change when a password is too weak."""
    if len(password) < PASSWORD_MIN_LENGTH:
        raise AuthError(
            "password_too_short",
            f"password must have at least {PASSWORD_MIN_LENGTH} characters",
            min=PASSWORD_MIN_LENGTH,
        )
    if len(password) > PASSWORD_MAX_LENGTH:
        raise AuthError(
            "password_too_long",
            f"password must have at most {PASSWORD_MAX_LENGTH} characters",
            max=PASSWORD_MAX_LENGTH,
        )
    if password.strip().lower() == username.strip().lower():
        raise AuthError("password_is_username", "password must not be the username")
    if len(set(password)) < 4:
        raise AuthError(
            "password_too_simple", "password is too simple (fewer than 4 different characters)"
        )
    if password.replace(" ", "").isdigit():
        raise AuthError(
            "password_digits_only", "password must not be digits only; use words or mix in letters"
        )
    if password.strip().lower() in _common_passwords():
        raise AuthError(
            "password_common",
            "password is one of the most common leaked passwords; choose another "
            "(a few unrelated words make a good one)",
        )


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _user_out(row: dict[str, Any]) -> UserOut:
    return UserOut(
        user_id=row["user_id"],
        username=row["username"],
        display_name=row["display_name"],
        role=Role(row["role"]),
        districts=list(row["districts"] or []),
        active=row["active"],
        created_at=row["created_at"],
    )


def _check_districts(conn: psycopg.Connection, districts: Iterable[str]) -> list[str]:
    wanted = sorted(set(districts))
    missing = set(wanted) - repo.known_districts(conn, wanted)
    if missing:
        listed = ", ".join(sorted(missing))
        raise UnknownDistrict("unknown_districts", f"unknown district(s): {listed}", ids=listed)
    return wanted


def create_user(
    conn: psycopg.Connection,
    *,
    username: str,
    password: str,
    role: Role,
    districts: Iterable[str] = (),
    display_name: str = "",
) -> UserOut:
    check_password_policy(password, username=username)
    with conn.transaction():
        if repo.get_user(conn, username=username) is not None:
            raise DuplicateUser("user_exists", f"user {username!r} already exists", user=username)
        wanted = _check_districts(conn, districts)
        user_id = repo.insert_user(
            conn,
            username=username,
            display_name=display_name,
            role=role.value,
            password_hash=hash_password(password),
        )
        repo.set_districts(conn, user_id=user_id, districts=wanted)
    return get_user(conn, user_id=user_id)


def get_user(conn: psycopg.Connection, *, user_id: int) -> UserOut:
    row = repo.get_user(conn, user_id=user_id)
    if row is None:
        raise LookupError(f"no user {user_id}")
    return _user_out(row)


def find_user(conn: psycopg.Connection, *, username: str) -> UserOut | None:
    row = repo.get_user(conn, username=username)
    return _user_out(row) if row else None


def list_users(conn: psycopg.Connection) -> list[UserOut]:
    return [_user_out(row) for row in repo.list_users(conn)]


def update_user(
    conn: psycopg.Connection,
    *,
    user_id: int,
    now: datetime,
    display_name: str | None = None,
    role: Role | None = None,
    password: str | None = None,
    districts: list[str] | None = None,
    active: bool | None = None,
) -> UserOut:
    """Change a user; a new password, a new role, new districts or deactivation also
    revoke the user's tokens, so that the change takes effect at once."""
    with conn.transaction():
        current = repo.get_user(conn, user_id=user_id)
        if current is None:
            raise LookupError(f"no user {user_id}")
        changes: dict[str, Any] = {}
        if display_name is not None:
            changes["display_name"] = display_name
        if role is not None:
            changes["role"] = role.value
        if active is not None:
            changes["active"] = active
        if password is not None:
            check_password_policy(password, username=current["username"])
            changes["password_hash"] = hash_password(password)
        repo.update_user(conn, user_id=user_id, changes=changes)
        if districts is not None:
            repo.set_districts(conn, user_id=user_id, districts=_check_districts(conn, districts))
        security_change = (
            password is not None
            or (role is not None and role.value != current["role"])
            or districts is not None
            or active is False
        )
        if security_change:
            repo.revoke_user_tokens(conn, user_id=user_id, now=now)
    return get_user(conn, user_id=user_id)


def authenticate(conn: psycopg.Connection, *, username: str, password: str) -> UserOut | None:
    """The user if the password is right and the user active, else None (no hint why)."""
    row = repo.get_user(conn, username=username)
    if row is None:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_DUMMY_HASH, password)
        return None
    try:
        _hasher.verify(row["password_hash"], password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if not row["active"]:
        return None
    if _hasher.check_needs_rehash(row["password_hash"]):
        repo.update_user(
            conn, user_id=row["user_id"], changes={"password_hash": hash_password(password)}
        )
    return _user_out(row)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime


# How long an expired token's row stays for audit before a login purges it.
EXPIRED_TOKENS_KEPT = timedelta(days=1)


def issue_token(
    conn: psycopg.Connection,
    *,
    user_id: int,
    now: datetime,
    ttl_s: int,
    user_agent: str | None = None,
) -> IssuedToken:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = now + timedelta(seconds=ttl_s)
    repo.insert_token(
        conn,
        token_hash=token_digest(token),
        user_id=user_id,
        expires_at=expires_at,
        user_agent=(user_agent or "")[:200] or None,
    )
    # Each login clears out the tokens that died long ago: the table stays as small as
    # the number of live sessions, with no scheduler to run.
    purge_expired_tokens(conn, now=now)
    return IssuedToken(token, expires_at)


def resolve_token(conn: psycopg.Connection, *, token: str, now: datetime) -> Principal | None:
    """The principal of a live token (not expired, not revoked, user active), else None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    digest = token_digest(token)
    row = repo.principal_for_token(conn, token_hash=digest, now=now)
    if row is None:
        return None
    user_id, username, role, districts = row
    return Principal(
        user_id=int(user_id),
        username=str(username),
        role=Role(role),
        districts=None if districts is None else frozenset(districts),
        token_hash=digest,
    )


def token_alive(conn: psycopg.Connection, *, token_hash: bytes, now: datetime) -> bool:
    """Whether a token resolved earlier is still valid (long-lived streams recheck)."""
    return repo.principal_for_token(conn, token_hash=token_hash, now=now) is not None


def revoke_token(conn: psycopg.Connection, *, token_hash: bytes, now: datetime) -> bool:
    return repo.revoke_token(conn, token_hash=token_hash, now=now)


def revoke_user_tokens(conn: psycopg.Connection, *, user_id: int, now: datetime) -> int:
    return repo.revoke_user_tokens(conn, user_id=user_id, now=now)


def purge_expired_tokens(conn: psycopg.Connection, *, now: datetime) -> int:
    """Delete tokens that expired more than EXPIRED_TOKENS_KEPT ago (kept a while for
    audit); runs at every login (`issue_token`)."""
    return repo.delete_expired_tokens(conn, before=now - EXPIRED_TOKENS_KEPT)
