"""The API documentation works offline: Swagger UI and ReDoc load from this server
only (the page fixture fails on any request that leaves the machine and on any CSP
violation) and render the API's operations; /docs leads to Swagger UI."""

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


def test_redoc_renders_operations_offline(browser: Any, live_server: LiveServer) -> None:
    """ReDoc's bundle always adds a decorative Redocly logo from its CDN; the CSP blocks
    it and the page renders without it. Every other request stays on this server."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    outside: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "request",
        lambda r: (
            None
            if r.url.startswith(("http://127.0.0.1", "data:", "blob:"))
            else outside.append(r.url)
        ),
    )
    try:
        page.goto(live_server.url + "/api/redoc")
        page.wait_for_selector("[data-section-id^='tag/']", timeout=20_000)
        page.wait_for_selector("[data-section-id*='login']", state="attached", timeout=20_000)
        shot(page, "51-redoc")
    finally:
        context.close()
    assert errors == []
    assert set(outside) <= {"https://cdn.redoc.ly/redoc/logo-mini.svg"}, outside
