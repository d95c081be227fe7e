"""Walks every route of the OpenAPI document: anonymous calls get 401, callers whose role
the route does not admit get 403, and a user limited to the north district can neither
read nor change the south's things by guessing their ids."""

from __future__ import annotations

import json
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


# --- writes across districts: nothing of another district changes --------------------

# Tables a request may change whoever makes it: the users' own sessions and throttles.
SESSION_TABLES = ("app_user", "user_district", "auth_token")
# Workers' own bookkeeping, which moves on whatever a request does: the engine's tables
# (periodic jobs, heartbeats) and the piece workers' announcements.
WORKER_TABLES = ("plan_piece_worker",)
NEW_TRUCK = {
    "truck_id": "N-T9",
    "district_id": "north",
    "plate": "皖A N999",
    "truck_type": "small",
    "capacity_kg": 1500,
    "streams": ["other"],
    "depot_id": "N-D1",
    "terminal_id": "N-T9-GPS",
}
NEW_POINT = {
    "point_id": "N-P9",
    "district_id": "north",
    "name": "新点",
    "lat": 31.91,
    "lon": 117.3,
    "stream": "other",
    "daily_amount_kg": 10,
}
NEW_SITE = {"district_id": "north", "name": "新", "lat": 31.91, "lon": 117.31}
TRUCKS_CSV = "id,plate,truck_type,capacity_kg,streams,depot_id,terminal_id\n"
POINTS_CSV = "id,name,lat,lon,stream,daily_amount_kg\n"


def _import(*files: tuple[str, str], district: str = "north") -> dict[str, Any]:
    return {"district": district, "files": [{"name": n, "content": c} for n, c in files]}


# (method, path template, body, status a district-limited admin gets). The ids are other
# districts' (south's catalogue; d1's plan and case) unless the attempt is to drag one of
# them into the north, or a north row out of it.
WRITE_ATTEMPTS: list[tuple[str, str, dict[str, Any] | None, int]] = [
    ("POST", "/api/v1/users", {"username": "mole", "role": "admin", "password": "x" * 12}, 403),
    ("PATCH", "/api/v1/users/{user_id}", {"districts": []}, 403),
    ("POST", "/api/v1/districts", {"district_id": "east", "name": "东区"}, 403),
    ("PATCH", "/api/v1/districts/{district_id}", {"name": "北区的南区"}, 403),
    ("POST", "/api/v1/depots", {**NEW_SITE, "depot_id": "S-D1"}, 409),
    ("POST", "/api/v1/depots", {**NEW_SITE, "depot_id": "D1"}, 409),
    ("POST", "/api/v1/depots", {**NEW_SITE, "depot_id": "N-D9", "district_id": "south"}, 403),
    ("PATCH", "/api/v1/depots/{depot_id}", {"name": "北"}, 404),
    ("PATCH", "/api/v1/depots/N-D1", {"district_id": "south"}, 422),
    ("POST", "/api/v1/depots/{depot_id}/deactivate", None, 404),
    ("POST", "/api/v1/stations", {**NEW_SITE, "station_id": "S-S1", "streams": ["other"]}, 409),
    ("PATCH", "/api/v1/stations/{station_id}", {"tipping_time_s": 1}, 404),
    ("PATCH", "/api/v1/stations/N-S1", {"district_id": "south"}, 422),
    ("POST", "/api/v1/stations/{station_id}/deactivate", None, 404),
    ("POST", "/api/v1/points", {**NEW_POINT, "point_id": "S-P1"}, 409),
    ("POST", "/api/v1/points", {**NEW_POINT, "point_id": "P4"}, 409),
    ("POST", "/api/v1/points", {**NEW_POINT, "district_id": "south"}, 403),
    ("PATCH", "/api/v1/points/{point_id}", {"lat": 31.95, "window_end": "23:59"}, 404),
    ("PATCH", "/api/v1/points/N-P1", {"district_id": "south"}, 422),
    ("POST", "/api/v1/points/{point_id}/deactivate", None, 404),
    ("POST", "/api/v1/trucks", {**NEW_TRUCK, "truck_id": "S-T1"}, 409),
    ("POST", "/api/v1/trucks", {**NEW_TRUCK, "truck_id": "T1"}, 409),
    ("POST", "/api/v1/trucks", {**NEW_TRUCK, "district_id": "south", "depot_id": "S-D1"}, 403),
    ("POST", "/api/v1/trucks", {**NEW_TRUCK, "depot_id": "S-D1"}, 422),
    ("POST", "/api/v1/trucks", {**NEW_TRUCK, "terminal_id": "S-T1-GPS"}, 409),
    ("PATCH", "/api/v1/trucks/{truck_id}", {"plate": "皖A N001", "capacity_kg": 1}, 404),
    ("PATCH", "/api/v1/trucks/N-T1", {"terminal_id": "S-T1-GPS"}, 409),
    ("PATCH", "/api/v1/trucks/N-T1", {"depot_id": "S-D1"}, 422),
    ("PATCH", "/api/v1/trucks/N-T1", {"district_id": "south"}, 422),
    ("POST", "/api/v1/trucks/{truck_id}/deactivate", None, 404),
    (
        "POST",
        "/api/v1/import",
        _import(
            ("trucks.csv", TRUCKS_CSV + "S-T1,皖A N001,compactor,9000,other,N-D1,N-T7-GPS\n"),
            ("points.csv", POINTS_CSV + "S-P1,北,31.93,117.3,other,1\n"),
        ),
        409,
    ),
    (
        "POST",
        "/api/v1/import",
        _import(("points.csv", POINTS_CSV + "P4,北,31.9,117.3,其他,1\n")),
        409,
    ),
    (
        "POST",
        "/api/v1/import",
        _import(("trucks.csv", TRUCKS_CSV + "N-T9,皖A N9,small,900,other,N-D1,S-T2-GPS\n")),
        409,
    ),
    (
        "POST",
        "/api/v1/import",
        _import(("trucks.csv", TRUCKS_CSV + "N-T9,皖A N9,small,900,other,S-D1,N-T9-GPS\n")),
        422,
    ),
    (
        "POST",
        "/api/v1/import",
        _import(("depots.csv", "id,name,lat,lon,district\nN-D1,北,31.9,117.3,south\n")),
        403,
    ),
    ("POST", "/api/v1/import", _import(("depots.csv", "id,name,lat,lon\nS-D1,北,1,1\n")), 409),
    (
        "POST",
        "/api/v1/import",
        _import(("depots.csv", "id,name,lat,lon\nS-D1,北,1,1\n"), district="south"),
        403,
    ),
    (
        "POST",
        "/api/v1/import",
        _import(("depots.csv", "id,name,lat,lon\nE-D1,东,1,1\n"), district="east"),
        403,
    ),
    ("POST", "/api/v1/plans/jobs", {"district_id": "south", "service_date": "2026-03-02"}, 403),
    ("POST", "/api/v1/plans/jobs", {"district_id": "d1", "service_date": "2026-03-02"}, 403),
    (
        "POST",
        "/api/v1/plans/jobs/all-districts",
        {"service_date": "2026-03-02", "district_ids": ["north", "south"]},
        403,
    ),
    ("POST", "/api/v1/plans/jobs/{job_id}/cancel", None, 404),
    ("POST", "/api/v1/plans/{plan_id}/replan", {"unavailable_truck_ids": ["T1"]}, 404),
    ("POST", "/api/v1/plans/{plan_id}/publish", None, 404),
    ("POST", "/api/v1/cases/{case_id}/assign", {"assignee": "北区二班"}, 404),
    ("POST", "/api/v1/cases/{case_id}/feedback", {"note": "已处理"}, 404),
    ("POST", "/api/v1/cases/{case_id}/close", {"note": "已处理"}, 404),
]


def table_digests(url: str) -> dict[str, tuple[int, str]]:
    """(rows, digest of every row) per table, sessions left out."""
    with psycopg.connect(url) as conn:
        tables = [
            str(r[0])
            for r in conn.execute(
                """SELECT table_name FROM information_schema.tables
                   WHERE table_schema = 'public' AND table_type = 'BASE TABLE'
                   ORDER BY table_name"""
            ).fetchall()
            if r[0] not in SESSION_TABLES + WORKER_TABLES
            and not str(r[0]).startswith("procrastinate_")
        ]
        digests = {}
        for table in tables:
            row = conn.execute(
                psycopg.sql.SQL(
                    "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), ''))"
                    " FROM {} t"
                ).format(psycopg.sql.Identifier(table))
            ).fetchone()
            assert row is not None
            digests[table] = (int(row[0]), str(row[1]))
        return digests


def all_rows(url: str, tables: list[str]) -> dict[str, list[str]]:
    with psycopg.connect(url) as conn:
        return {
            table: sorted(
                str(r[0])
                for r in conn.execute(
                    psycopg.sql.SQL("SELECT t::text FROM {} t").format(
                        psycopg.sql.Identifier(table)
                    )
                ).fetchall()
            )
            for table in tables
        }


def test_writes_from_another_district_change_nothing_there(
    client: TestClient, users: Users, other_ids: dict[str, Any]
) -> None:
    """Every mutating route, through import, PATCH, POST and the plan and case actions, tried
    by a district-limited dispatcher and admin of the north on the south's and d1's rows
    (and to drag them into the north): each is refused, and a snapshot of every table
    (sessions aside) is the same after the walk, row for row."""
    mutating = {
        (method, path): set(op["x-roles"])
        for method, path, op in operations(client)
        if method != "GET" and (method, path) not in PUBLIC | WRITES_FOR_EVERYONE
    }

    def route_of(method: str, path: str) -> tuple[str, str]:
        if (method, path) in mutating:
            return method, path
        return next(
            (m, p)
            for m, p in mutating
            if m == method and re.fullmatch(re.sub(r"\{\w+\}", "[^/]+", p), path)
        )

    tried = {route_of(method, path) for method, path, _, _ in WRITE_ATTEMPTS}
    assert tried == set(mutating), f"add attempts for {sorted(set(mutating) - tried)}"
    ids = {**other_ids, "user_id": users.ids["north_dispatcher"]}
    tables = list(table_digests(users.url))
    before_rows = all_rows(users.url, tables)
    statuses: dict[str, int] = {}
    attempts = 0
    for method, template, body, admin_status in WRITE_ATTEMPTS:
        admitted = mutating[route_of(method, template)]
        for who in ("north_dispatcher", "north_admin"):
            expected = admin_status if who.removeprefix("north_") in admitted else 403
            before = table_digests(users.url)
            response = client.request(
                method, fill(template, ids), headers=users.headers(who), json=body
            )
            attempts += 1
            assert response.status_code == expected, (method, template, body, who, response.text)
            statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
            changed = {t for t, d in table_digests(users.url).items() if before[t] != d}
            assert not changed, (method, template, who, changed)
    after_rows = all_rows(users.url, tables)
    rows_changed = sum(
        len(set(before_rows[t]) ^ set(after_rows[t]))
        + abs(len(before_rows[t]) - len(after_rows[t]))
        for t in tables
    )
    assert rows_changed == 0
    figures = {
        "mutating_routes": len(mutating),
        "routes_tried": len(tried),
        "attempts": attempts,
        "refusals": sum(statuses.values()),
        "by_status": dict(sorted(statuses.items())),
        "tables_compared": len(tables),
        "rows_compared": sum(len(rows) for rows in before_rows.values()),
        "rows_changed": rows_changed,
    }
    print("tenancy walk:", json.dumps(figures))
