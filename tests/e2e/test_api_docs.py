"""The API documentation works offline: Swagger UI loads from this server only (the
page fixture fails on any request that leaves the machine and on any CSP violation)
and renders the API's operations; /docs leads there."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import shot
from tests.integration.web.conftest import LiveServer

pytestmark = pytest.mark.slow


def test_swagger_ui_renders_operations_offline(page: Any, live_server: LiveServer) -> None:
    page.goto(live_server.url + "/docs")
    assert page.url == live_server.url + "/api/docs"
    page.wait_for_selector(".opblock-summary", timeout=20_000)
    assert page.locator(".opblock").count() >= 40
    assert page.locator(".opblock-summary-path", has_text="/api/v1/auth/login").count() >= 1
    shot(page, "50-swagger-ui")
