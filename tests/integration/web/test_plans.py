"""Planning over the API: start a job, watch its progress, read the plan, its routes on
the roads, a route sheet, publish — on a small generated district with the real solver."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fleet.plans import service
from tests.integration.web.conftest import Users

DAY = date(2026, 11, 23)


def wait_for_job(
    client: TestClient, users: Users, job_id: int, timeout_s: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/plans/jobs/{job_id}", headers=users.headers("viewer")).json()
        seen.append(job["progress"])
        if job["state"] in ("done", "failed", "cancelled"):
            job["seen_progress"] = seen
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {seen[-5:]}")


@pytest.fixture
def planned(client: TestClient, users: Users, city: str) -> int:
    started = client.post(
        "/api/v1/plans/jobs",
        headers=users.headers("dispatcher"),
        # No budget asked for: the server's default for the district's size.
        json={"district_id": city, "service_date": DAY.isoformat(), "solution_limit": 100},
    )
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["state"] in ("queued", "running", "done") and job["requested_by"] == "dispatcher"
    done = wait_for_job(client, users, job["job_id"])
    assert done["state"] == "done", done["message"]
    assert done["progress"] == 1.0 and done["plan_id"]
    return int(done["plan_id"])


def test_a_plan_has_routes_with_etas_and_explains_left_out_points(
    client: TestClient, users: Users, planned: int
) -> None:
    plan = client.get(f"/api/v1/plans/{planned}", headers=users.headers("viewer")).json()
    assert plan["status"] == "draft" and plan["district_id"] == "city"
    assert plan["points"] + plan["unassigned"] == 30
    assert plan["time_limit_s"] == service.default_budget_s(30) == service.BUDGET_MIN_S
    assert all(u["reason"] for u in plan["unassigned_points"])
    for route in plan["routes"]:
        kinds = [s["kind"] for s in route["stops"]]
        assert kinds[0] == "start" and kinds[-1] == "end"
        if route["points"]:
            assert "station" in kinds[kinds.index("point") :]  # unloads before going home
        times = [s["arrival_at"] for s in route["stops"]]
        assert times == sorted(times)
        assert all(s["name"] for s in route["stops"] if s["kind"] != "break")
    listed = client.get(
        "/api/v1/plans", params={"district_id": "city"}, headers=users.headers("viewer")
    ).json()
    assert [p["plan_id"] for p in listed] == [planned]


def test_routes_follow_the_roads(client: TestClient, users: Users, planned: int) -> None:
    response = client.get(
        f"/api/v1/plans/{planned}/routes.geojson", headers=users.headers("viewer")
    )
    assert response.headers["content-type"] == "application/geo+json"
    features = response.json()["features"]
    plan = client.get(f"/api/v1/plans/{planned}", headers=users.headers("viewer")).json()
    assert {f["properties"]["truck_id"] for f in features} == {
        r["truck_id"] for r in plan["routes"]
    }
    busiest = max(plan["routes"], key=lambda r: r["points"])
    line = next(f for f in features if f["id"] == busiest["truck_id"])["geometry"]["coordinates"]
    # Following the roads: many more vertices than stops, and every stop is on the line.
    assert len(line) > 2 * len(busiest["stops"])
    vertices = {(round(x, 6), round(y, 6)) for x, y in line}
    for stop in busiest["stops"]:
        if stop["lat"] is not None:
            assert (round(stop["lon"], 6), round(stop["lat"], 6)) in vertices


def test_route_sheet_and_publish(client: TestClient, users: Users, planned: int) -> None:
    plan = client.get(f"/api/v1/plans/{planned}", headers=users.headers("viewer")).json()
    truck = max(plan["routes"], key=lambda r: r["points"])["truck_id"]
    sheet = client.get(
        f"/api/v1/plans/{planned}/sheet/{truck}", headers=users.headers("viewer")
    ).json()
    assert sheet["truck_id"] == truck and sheet["timezone"] == "Asia/Shanghai"
    assert sheet["stops"][0]["kind"] == "start" and len(sheet["stops"][0]["depart"]) == 5
    assert sheet["collected_kg"] > 0 and sheet["station_trips"] >= 1
    assert (
        client.get(
            f"/api/v1/plans/{planned}/sheet/nobody", headers=users.headers("viewer")
        ).status_code
        == 404
    )
    assert (
        client.post(f"/api/v1/plans/{planned}/publish", headers=users.headers("viewer")).status_code
        == 403
    )
    published = client.post(f"/api/v1/plans/{planned}/publish", headers=users.headers("dispatcher"))
    assert published.status_code == 200 and published.json()["status"] == "published"


def test_planning_refusals(client: TestClient, users: Users, city: str) -> None:
    body = {"district_id": "nowhere", "service_date": DAY.isoformat(), "time_limit_s": 1}
    assert (
        client.post(
            "/api/v1/plans/jobs", headers=users.headers("dispatcher"), json=body
        ).status_code
        == 422
    )
    north_only = client.post(
        "/api/v1/plans/jobs",
        headers=users.headers("north_dispatcher"),
        json={**body, "district_id": "city"},
    )
    assert north_only.status_code == 403
    too_long = client.post(
        "/api/v1/plans/jobs",
        headers=users.headers("dispatcher"),
        json={**body, "district_id": "city", "time_limit_s": 5000},
    )
    assert too_long.status_code == 422 and too_long.json()["errors"][0]["field"] == "time_limit_s"


def test_a_failing_job_says_why(client: TestClient, users: Users) -> None:
    # A district with nothing in it cannot be planned: the job fails and says why.
    client.post(
        "/api/v1/districts",
        headers=users.headers("admin"),
        json={"district_id": "empty", "name": "空"},
    )
    started = client.post(
        "/api/v1/plans/jobs",
        headers=users.headers("dispatcher"),
        json={"district_id": "empty", "service_date": DAY.isoformat(), "time_limit_s": 1},
    ).json()
    job = wait_for_job(client, users, started["job_id"], timeout_s=30)
    assert job["state"] == "failed" and "no active" in job["message"]


def test_a_dispatcher_cancels_a_running_job_and_one_job_per_district_and_date(
    client: TestClient, users: Users, city: str
) -> None:
    body = {"district_id": city, "service_date": DAY.isoformat(), "time_limit_s": 900,
            "solution_limit": 1_000_000}  # fmt: skip
    job = client.post("/api/v1/plans/jobs", headers=users.headers("dispatcher"), json=body).json()
    again = client.post("/api/v1/plans/jobs", headers=users.headers("dispatcher"), json=body)
    assert again.status_code == 409 and f"job {job['job_id']}" in again.json()["detail"]
    deadline = time.monotonic() + 120
    while True:
        now = client.get(f"/api/v1/plans/jobs/{job['job_id']}", headers=users.headers("viewer"))
        if now.json()["state"] == "running" and now.json()["progress"] >= 0.2:
            break
        assert time.monotonic() < deadline, now.json()
        time.sleep(0.2)
    assert now.json()["worker"] and now.json()["attempt"] == 1
    listed = client.get("/api/v1/plans/jobs?active=true", headers=users.headers("viewer")).json()
    assert [j["job_id"] for j in listed] == [job["job_id"]]
    cancel = f"/api/v1/plans/jobs/{job['job_id']}/cancel"
    assert client.post(cancel, headers=users.headers("viewer")).status_code == 403
    assert client.post(cancel, headers=users.headers("north_dispatcher")).status_code == 404
    assert client.post(cancel, headers=users.headers("dispatcher")).status_code == 202
    ended = wait_for_job(client, users, job["job_id"])
    assert ended["state"] == "cancelled" and ended["plan_id"] is None
    assert client.post(cancel, headers=users.headers("dispatcher")).status_code == 409
    plans = client.get(f"/api/v1/plans?district_id={city}", headers=users.headers("viewer"))
    assert plans.json() == []


def test_all_districts_queues_each_district_the_caller_may_plan(
    client: TestClient, users: Users, city: str
) -> None:
    long = client.post(
        "/api/v1/plans/jobs",
        headers=users.headers("dispatcher"),
        json={"district_id": "north", "service_date": DAY.isoformat(), "time_limit_s": 900,
              "solution_limit": 1_000_000},
    ).json()  # fmt: skip
    body = {"service_date": DAY.isoformat(), "time_limit_s": 120, "solution_limit": 20}
    north = client.post(
        "/api/v1/plans/jobs/all-districts", headers=users.headers("north_dispatcher"), json=body
    )
    # Only the caller's district is tried, and it is already being planned: refused.
    assert north.status_code == 202, north.text
    assert north.json()["queued"] == [] and set(north.json()["refused"]) == {"north"}
    everyone = client.post(
        "/api/v1/plans/jobs/all-districts", headers=users.headers("dispatcher"), json=body
    ).json()
    assert sorted(j["district_id"] for j in everyone["queued"]) == [city, "south"]
    assert set(everyone["refused"]) == {"north"}
    cancel = f"/api/v1/plans/jobs/{long['job_id']}/cancel"
    assert client.post(cancel, headers=users.headers("dispatcher")).status_code == 202
    for job in everyone["queued"]:
        assert wait_for_job(client, users, job["job_id"])["state"] == "done"
