"""Errors are application/problem+json with a clear message; health and readiness."""

from __future__ import annotations

import time

import psycopg
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fleet.config import Settings
from tests.conftest import PgServer
from tests.integration.web.conftest import Users


def test_validation_errors_name_each_field(client: TestClient, users: Users) -> None:
    response = client.get("/api/v1/trucks?limit=0&active=maybe", headers=users.headers("viewer"))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 422 and body["title"] == "Invalid input" and body["code"] == "invalid"
    assert {(e["field"], e["location"]) for e in body["errors"]} == {
        ("limit", "query"),
        ("active", "query"),
    }
    assert "limit:" in body["detail"]


def test_malformed_json_body_is_a_422_not_a_500(client: TestClient, users: Users) -> None:
    response = client.post(
        "/api/v1/depots",
        headers={**users.headers("admin"), "content-type": "application/json"},
        content=b'{"depot_id": "X", ',
    )
    assert response.status_code == 422 and response.json()["code"] == "invalid"


def test_nul_bytes_and_huge_numbers_are_refused_cleanly(client: TestClient, users: Users) -> None:
    nul = client.get("/api/v1/trucks/a%00b", headers=users.headers("viewer"))
    assert nul.status_code == 422
    text = client.get("/api/v1/points", params={"q": "x\x00"}, headers=users.headers("viewer"))
    assert text.status_code == 422 and "not acceptable" in text.json()["detail"]
    huge = client.get("/api/v1/users/99999999999999999999", headers=users.headers("admin"))
    assert huge.status_code == 422


def test_unknown_route_and_method(client: TestClient) -> None:
    missing = client.get("/api/v1/nothing-here")
    assert (
        missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    )
    wrong = client.delete("/healthz")
    assert wrong.status_code == 405 and wrong.json()["code"] == "method_not_allowed"


def test_unexpected_errors_hide_the_stack_trace(app: FastAPI, users: Users) -> None:
    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internal detail at /srv/app.py line 42")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    body = response.json()
    assert body["detail"] == "internal error; it has been logged" and len(body["error_id"]) == 12
    assert "secret" not in response.text and "Traceback" not in response.text


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_readiness_fails_when_the_database_goes_away(
    pg: PgServer, web_settings: Settings, app: FastAPI
) -> None:
    name = web_settings.storage.database_dsn().rsplit("/", 1)[1]
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/readyz").status_code == 200
        with psycopg.connect(pg.admin_url, autocommit=True) as admin:
            admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
        try:
            down = client.get("/readyz")
            assert (
                down.status_code == 503
                and down.headers["content-type"] == "application/problem+json"
            )
            assert client.get("/healthz").status_code == 200
        finally:
            with psycopg.connect(pg.admin_url, autocommit=True) as admin:
                admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        deadline = time.monotonic() + 15
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "never ready again after the database came back"
            time.sleep(0.2)


def test_dashboard_is_served_with_a_strict_content_security_policy(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp


def test_a_misspelt_query_parameter_is_an_error(client: TestClient, users: Users) -> None:
    response = client.get("/api/v1/trucks?distrct_id=south", headers=users.headers("viewer"))
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {
            "field": "distrct_id",
            "location": "query",
            "message": "is not a parameter here",
            "code": "unknown_parameter",
        }
    ]
    assert (
        client.get(
            "/api/v1/trucks?district_id=south&limit=5", headers=users.headers("viewer")
        ).status_code
        == 200
    )
