"""Schemathesis fuzzes every operation of the OpenAPI document against the real server
(uvicorn + PostgreSQL), as an admin who sees every district: no 5xx, every response
matches its declared status, content type and schema, and invalid input is refused.
Each operation gets valid and invalid input, with random ids and with real ones."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, cast

import psycopg
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from fleet.auth import service as auth_service
from tests.integration.web.conftest import LiveServer, Users

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]
SKIP = {
    "/api/v1/positions/stream",  # endless by design (tested in test_positions.py)
    "/api/v1/auth/logout",  # would revoke the run's token (tested in test_auth.py)
    "/api/v1/plans/jobs",  # queues solves that outlive the run (test_plans.py)
    "/api/v1/plans/jobs/all-districts",  # the same, for every district
}
REAL_IDS = {
    "truck_id": "N-T1",
    "point_id": "N-P1",
    "station_id": "N-S1",
    "depot_id": "N-D1",
    "district_id": "north",
}
EXAMPLES = {GenerationMode.POSITIVE: 10, GenerationMode.NEGATIVE: 6}


def test_api_fuzz(live_server: LiveServer, users: Users, supervised_day: int) -> None:
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/v1/openapi.json")
    conn = psycopg.connect(users.url, autocommit=True)

    def headers() -> dict[str, str]:
        # A fresh token per case: a fuzzed PATCH /users/{id} may change the admin's
        # password, which (rightly) revokes the admin's tokens.
        token = auth_service.issue_token(
            conn, user_id=users.ids["admin"], now=datetime.now(UTC), ttl_s=600
        ).token
        return {"Authorization": f"Bearer {token}"}

    plan = conn.execute("SELECT plan_id FROM plan").fetchone()
    assert plan is not None
    plan_id = plan[0]
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = cast(Any, result).ok()
        if operation.path in SKIP:
            continue
        operations += 1
        names = re.findall(r"\{(\w+)\}", operation.path)
        variants: list[dict[str, Any] | None] = [None]
        real = {**REAL_IDS, "case_id": supervised_day, "report": "clearance", "plan_id": plan_id}
        if names and all(n in real for n in names):
            variants.append({n: real[n] for n in names})
        for mode, examples in EXAMPLES.items():
            for path_parameters in variants if mode == GenerationMode.POSITIVE else variants[:1]:
                strategy = operation.as_strategy(mode, path_parameters=path_parameters)

                @given(case=strategy)
                @settings(
                    max_examples=examples,
                    deadline=None,
                    suppress_health_check=list(HealthCheck),
                    derandomize=True,
                    database=None,
                )
                def run(case: Any) -> None:
                    case.call_and_validate(
                        base_url=live_server.url, headers=headers(), checks=CHECKS, timeout=30
                    )

                try:
                    run()
                except Unsatisfiable:
                    pass  # no invalid input exists for an operation without parameters
                except (Exception, BaseExceptionGroup) as exc:  # collect them all, then report
                    failures.append(f"{operation.method.upper()} {operation.path} [{mode}]: {exc}")
    conn.close()
    print(f"fuzzed {operations} operations")
    assert operations >= 30
    assert not failures, "\n\n".join(failures)
