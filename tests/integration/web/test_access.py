"""Walks every route of the OpenAPI document: anonymous calls get 401, callers whose role
the route does not admit get 403, and a user limited to the north district can neither
read nor change the south's things by guessing their ids."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fleet.web.app import api_routes, route_roles
from tests.integration.web.conftest import Users

PUBLIC = {("POST", "/api/v1/auth/login"), ("GET", "/healthz"), ("GET", "/readyz")}
STREAMS = {"/api/v1/positions/stream"}  # endless: checked for 401 only
ROLES = ("admin", "dispatcher", "supervisor", "viewer")
# Path parameters filled with the south district's ids (the north users must not reach them).
SOUTH_IDS = {
    "truck_id": "S-T1",
    "point_id": "S-P1",
    "station_id": "S-S1",
    "depot_id": "S-D1",
    "district_id": "south",
}
# Path parameters that are not ids of anything (filled in, never probed across districts).
NOT_IDS = {"report": "clearance"}


@pytest.fixture
def other_ids(supervised_day: int, users: Users) -> dict[str, Any]:
    """Ids of things outside the north: the south's catalogue, district d1's case, plan
    and planning job."""
    with psycopg.connect(users.url, autocommit=True) as conn:
        plan = conn.execute("SELECT plan_id FROM plan WHERE district_id = 'd1'").fetchone()
        job = conn.execute(
            """INSERT INTO plan_job (district_id, service_date, state, plan_id)
               VALUES ('d1', '2026-03-02', 'done', %s) RETURNING job_id""",
            (plan[0] if plan else None,),
        ).fetchone()
    assert plan and job
    return {**SOUTH_IDS, **NOT_IDS, "case_id": supervised_day, "plan_id": plan[0], "job_id": job[0]}


# Valid bodies for the writes probed across districts (an invalid body would be refused
# with 422 before the district is even looked at, proving nothing).
BODIES: dict[str, dict[str, Any]] = {
    "/api/v1/cases/{case_id}/assign": {"assignee": "二班"},
    "/api/v1/cases/{case_id}/feedback": {"note": "done"},
    "/api/v1/cases/{case_id}/close": {"note": "done"},
}
# Routes that change something and are still open to every role.
WRITES_FOR_EVERYONE = {("POST", "/api/v1/auth/logout")}


def operations(client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    doc = client.get("/api/v1/openapi.json").json()
    return [
        (method.upper(), path, op)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def fill(path: str, ids: dict[str, Any]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in ids, f"the access test does not know path parameter {name!r}: add it"
        return str(ids[name])

    return re.sub(r"\{(\w+)\}", value, path)


def call(client: TestClient, method: str, url: str, headers: dict[str, str], path: str = "") -> int:
    body: dict[str, Any] | None = None
    if method in ("POST", "PUT", "PATCH"):
        body = BODIES.get(path, {})
    return client.request(method, url, headers=headers, json=body).status_code


def test_every_api_route_declares_who_may_call_it(app: FastAPI) -> None:
    undeclared = [
        path
        for path, route in api_routes(app)
        for method in route.methods or ()
        if route_roles(route) is None and (method, path) not in PUBLIC and route.include_in_schema
    ]
    assert undeclared == []


def test_anonymous_calls_are_refused_everywhere(
    client: TestClient, users: Users, other_ids: dict[str, Any]
) -> None:
    checked = 0
    for method, path, _ in operations(client):
        if (method, path) in PUBLIC:
            continue
        url = fill(path, {**other_ids, "user_id": users.ids["viewer"]})
        for headers in ({}, {"Authorization": "Bearer cd_not-a-real-token"}):
            assert call(client, method, url, headers) == 401, (method, path, headers)
        checked += 1
    assert checked >= 30


def test_wrong_roles_are_refused_everywhere(
    client: TestClient, users: Users, other_ids: dict[str, Any]
) -> None:
    refused = 0
    for method, path, op in operations(client):
        if (method, path) in PUBLIC:
            continue
        allowed = set(op["x-roles"])
        assert allowed, (method, path)
        if method != "GET" and (method, path) not in WRITES_FOR_EVERYONE:
            assert "viewer" not in allowed, f"{method} {path} lets a viewer change data"
        url = fill(path, {**other_ids, "user_id": users.ids["viewer"]})
        for role in set(ROLES) - allowed:
            status = call(client, method, url, users.headers(role))
            assert status == 403, (method, path, role, status)
            refused += 1
    assert refused >= 40


def test_a_district_limited_user_cannot_reach_other_districts_by_id(
    client: TestClient, users: Users, other_ids: dict[str, Any]
) -> None:
    probed = 0
    for method, path, op in operations(client):
        params = set(re.findall(r"\{(\w+)\}", path)) - set(NOT_IDS)
        if (method, path) in PUBLIC or not params or "user_id" in params:
            continue
        url = fill(path, other_ids)
        for who in ("north_viewer", "north_dispatcher", "north_admin"):
            if who.removeprefix("north_") not in op["x-roles"]:
                continue
            status = call(client, method, url, users.headers(who), path)
            assert status != 422, f"{method} {path}: add a valid sample body to BODIES"
            assert status in (403, 404), (method, path, who, status)
            probed += 1
    assert probed >= 15
    # The same ids are there for the unlimited users (so the 404s above mean "hidden").
    for path in (
        "/api/v1/trucks/S-T1",
        f"/api/v1/cases/{other_ids['case_id']}",
        f"/api/v1/plans/{other_ids['plan_id']}",
        f"/api/v1/plans/jobs/{other_ids['job_id']}",
    ):
        assert client.get(path, headers=users.headers("viewer")).status_code == 200


def district_ids(value: Any) -> set[str]:
    if isinstance(value, dict):
        found = {value["district_id"]} if isinstance(value.get("district_id"), str) else set()
        for item in value.values():
            found |= district_ids(item)
        return found
    if isinstance(value, list):
        return set().union(*(district_ids(v) for v in value)) if value else set()
    return set()


def test_lists_show_a_limited_user_only_its_districts(
    client: TestClient, users: Users, supervised_day: int
) -> None:
    listed = 0
    for method, path, op in operations(client):
        if method != "GET" or "{" in path or path in STREAMS or (method, path) in PUBLIC:
            continue
        declared = {p["name"] for p in op.get("parameters", [])}
        variants: list[dict[str, str]] = [{}]
        if "district_id" in declared:
            variants.append({"district_id": "south"})
        for params in variants:
            response = client.get(path, params=params, headers=users.headers("north_viewer"))
            if response.status_code == 403:
                continue  # not for viewers at all
            assert response.status_code == 200, (path, params, response.text)
            assert district_ids(response.json()) <= {"north"}, (path, params)
        listed += 1
    assert listed >= 8
