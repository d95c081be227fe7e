"""Login, tokens (expiry, revocation), users and the `clearday user` command."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import psycopg
from fastapi.testclient import TestClient

from fleet.auth import service as auth_service
from fleet.config import Settings
from tests.integration.web.conftest import PASSWORD, Users


def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    response = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_login_returns_a_token_that_identifies_the_user(client: TestClient, users: Users) -> None:
    response = client.post(
        "/api/v1/auth/login", json={"username": "Dispatcher", "password": PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer" and body["user"]["role"] == "dispatcher"
    assert datetime.fromisoformat(body["expires_at"]) > datetime.now(UTC) + timedelta(hours=11)
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.json()["username"] == "dispatcher"


def test_wrong_password_and_unknown_user_get_the_same_401(client: TestClient, users: Users) -> None:
    wrong = client.post(
        "/api/v1/auth/login", json={"username": "viewer", "password": "nope nope nope"}
    )
    unknown = client.post(
        "/api/v1/auth/login", json={"username": "ghost", "password": "nope nope nope"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.headers["content-type"] == "application/problem+json"
    assert wrong.json()["detail"] == unknown.json()["detail"] == "wrong username or password"


def test_tokens_are_stored_hashed(client: TestClient, users: Users) -> None:
    token = login(client, "viewer")
    with psycopg.connect(users.url) as conn:
        stored = [bytes(r[0]) for r in conn.execute("SELECT token_hash FROM auth_token")]
        hashes = [r[0] for r in conn.execute("SELECT password_hash FROM app_user")]
    assert auth_service.token_digest(token) in stored
    assert all(token.encode() not in h for h in stored)
    assert all(h.startswith("$argon2id$") for h in hashes)


def test_logout_revokes_the_token(client: TestClient, users: Users) -> None:
    token = login(client, "supervisor")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    again = client.get("/api/v1/auth/me", headers=headers)
    assert again.status_code == 401 and "revoked" in again.json()["detail"]
    # Other sessions of the same user are untouched.
    assert client.get("/api/v1/auth/me", headers=users.headers("supervisor")).status_code == 200


def test_expired_token_is_refused(client: TestClient, users: Users) -> None:
    with psycopg.connect(users.url, autocommit=True) as conn:
        issued = auth_service.issue_token(
            conn,
            user_id=users.ids["viewer"],
            now=datetime.now(UTC) - timedelta(hours=2),
            ttl_s=3600,
        )
    response = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {issued.token}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_login_purges_tokens_expired_more_than_a_day_before(users: Users) -> None:
    """On an injected clock: a token expired 23 h ago stays (audit), one expired a day
    and a second ago is deleted by the next token issued; live tokens stay."""
    t0 = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)

    def issue(now: datetime, ttl_s: int = 3600) -> bytes:
        with psycopg.connect(users.url, autocommit=True) as conn:
            token = auth_service.issue_token(
                conn, user_id=users.ids["viewer"], now=now, ttl_s=ttl_s
            ).token
        return auth_service.token_digest(token)

    def stored(digest: bytes) -> bool:
        with psycopg.connect(users.url) as conn:
            row = conn.execute("SELECT 1 FROM auth_token WHERE token_hash = %s", (digest,))
            return row.fetchone() is not None

    old = issue(t0)  # expires at t0 + 1 h
    long_lived = issue(t0, ttl_s=30 * 86400)
    recent = issue(t0 + timedelta(hours=23))
    kept_for_audit = auth_service.EXPIRED_TOKENS_KEPT
    issue(t0 + timedelta(hours=1) + kept_for_audit - timedelta(seconds=1))
    assert stored(old)
    issue(t0 + timedelta(hours=1) + kept_for_audit + timedelta(seconds=1))
    assert not stored(old)
    assert stored(long_lived) and stored(recent)


def test_missing_or_malformed_credentials_are_401(client: TestClient, users: Users) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer nonsense"},
        {"Authorization": "Basic dXNlcjpwdw=="},
    ):
        response = client.get("/api/v1/trucks", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["code"] == "unauthenticated"


def test_repeated_failures_are_throttled(client: TestClient, users: Users) -> None:
    for _ in range(10):
        client.post(
            "/api/v1/auth/login", json={"username": "viewer", "password": "wrong password!"}
        )
    response = client.post("/api/v1/auth/login", json={"username": "viewer", "password": PASSWORD})
    assert response.status_code == 429 and int(response.headers["retry-after"]) > 0
    # Another user is not affected.
    assert (
        client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": PASSWORD}
        ).status_code
        == 200
    )


def test_admin_manages_users_and_changes_revoke_tokens(client: TestClient, users: Users) -> None:
    admin = users.headers("admin")
    created = client.post(
        "/api/v1/users",
        headers=admin,
        json={
            "username": "li.na",
            "role": "viewer",
            "password": "a long passphrase",
            "districts": ["south"],
        },
    )
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["districts"] == ["south"] and user["role"] == "viewer"
    token = login(client, "li.na", "a long passphrase")
    duplicate = client.post(
        "/api/v1/users", headers=admin,
        json={"username": "LI.NA", "role": "viewer", "password": "another passphrase"},
    )  # fmt: skip
    assert duplicate.status_code == 409
    promoted = client.patch(
        f"/api/v1/users/{user['user_id']}", headers=admin, json={"role": "supervisor"}
    )
    assert promoted.status_code == 200 and promoted.json()["role"] == "supervisor"
    assert (
        client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code
        == 401
    )
    deactivated = client.patch(
        f"/api/v1/users/{user['user_id']}", headers=admin, json={"active": False}
    )
    assert deactivated.json()["active"] is False
    refused = client.post(
        "/api/v1/auth/login", json={"username": "li.na", "password": "a long passphrase"}
    )
    assert refused.status_code == 401


def test_user_validation(client: TestClient, users: Users) -> None:
    admin = users.headers("admin")
    short = client.post(
        "/api/v1/users",
        headers=admin,
        json={"username": "bo", "role": "viewer", "password": "short"},
    )
    assert short.status_code == 422 and short.json()["errors"][0]["field"] == "password"
    unknown = client.post(
        "/api/v1/users", headers=admin,
        json={"username": "bob", "role": "viewer", "password": "long enough pass", "districts": ["atlantis"]},
    )  # fmt: skip
    assert unknown.status_code == 422 and "atlantis" in unknown.json()["detail"]
    same = client.post(
        "/api/v1/users",
        headers=admin,
        json={"username": "bobby.tables", "role": "viewer", "password": "bobby.tables"},
    )
    assert same.status_code == 422 and "username" in same.json()["detail"]


def test_admin_cannot_demote_itself_and_limited_admin_cannot_manage_users(
    client: TestClient, users: Users
) -> None:
    me = users.ids["admin"]
    response = client.patch(
        f"/api/v1/users/{me}", headers=users.headers("admin"), json={"role": "viewer"}
    )
    assert response.status_code == 409
    assert client.get("/api/v1/users", headers=users.headers("north_admin")).status_code == 403


def run_cli(settings: Settings, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLEARDAY_DATABASE_URL": settings.storage.database_dsn()}
    return subprocess.run(
        [sys.executable, "-c", "from fleet.cli import main; main()", *args],
        input=stdin, capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip


def test_cli_creates_the_first_admin_from_stdin(web_settings: Settings) -> None:
    done = run_cli(
        web_settings,
        "user",
        "create",
        "chief",
        "--role",
        "admin",
        "--password-stdin",
        stdin="a strong secret 42\n",
    )
    assert done.returncode == 0, done.stderr
    assert "created user chief" in done.stdout and "all districts" in done.stdout
    with psycopg.connect(web_settings.storage.database_dsn(), autocommit=True) as conn:
        assert auth_service.authenticate(conn, username="chief", password="a strong secret 42")
        assert not auth_service.authenticate(conn, username="chief", password="")
    limited = run_cli(
        web_settings, "user", "create", "zhang", "--role", "viewer", "-d", "north", "--password-stdin",
        stdin="another secret 42\n",
    )  # fmt: skip
    assert limited.returncode == 0 and "north" in limited.stdout
    listing = run_cli(web_settings, "user", "list")
    assert "chief" in listing.stdout and "zhang" in listing.stdout


def test_cli_refuses_weak_or_missing_passwords(web_settings: Settings) -> None:
    empty = run_cli(
        web_settings, "user", "create", "chief", "--role", "admin", "--password-stdin", stdin=""
    )
    assert empty.returncode != 0 and "no password" in empty.stderr
    weak = run_cli(
        web_settings,
        "user",
        "create",
        "chief",
        "--role",
        "admin",
        "--password-stdin",
        stdin="short\n",
    )
    assert weak.returncode == 2 and "at least 10" in weak.stderr
    # Without --password-stdin and without a terminal, it refuses rather than inventing one.
    no_tty = run_cli(web_settings, "user", "create", "chief", "--role", "admin")
    assert no_tty.returncode != 0 and "--password-stdin" in no_tty.stderr
