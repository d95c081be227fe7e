"""Browser tests: Playwright driving Debian's Chromium (headless) against the real app
(uvicorn + PostgreSQL, and for the live map the real broker, ingestor and simulator).
Screenshots of every page are kept under test-artifacts/e2e/."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The API test fixtures: a migrated database with districts, users of every role, the app
# on a real port, the alerts team's hand-computed day, a generated district.
from tests.integration.web.conftest import (  # noqa: F401
    _cheap_password_hash,
    app,
    city,
    live_server,
    supervised_day,
    users,
    web_settings,
)

CHROMIUM = os.environ.get("CLEARDAY_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        # Fail (never skip) the browser tests, and let the rest of the run go on.
        pytest.fail(
            f"no Chromium at {CHROMIUM}: `apt-get install chromium` (or set CLEARDAY_CHROMIUM)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    # The server starts before the page and stops after the page is closed: a page left
    # open while the server stops logs its polls' refused connections as errors.
    request.getfixturevalue("live_server")
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    # Nothing may come from another host: the dashboard works offline.
    outside: list[str] = []
    page.on(
        "request",
        lambda r: (
            outside.append(r.url)
            if not r.url.startswith(("http://127.0.0.1", "data:", "blob:"))
            else None
        ),
    )
    yield page
    context.close()
    assert outside == [], f"requests left the machine: {outside}"
    # HTTP errors the UI shows on purpose (a wrong password, a close without a note) are
    # logged by Chromium as "Failed to load resource"; anything else is a defect.
    assert not [e for e in errors if "Failed to load resource" not in e], (
        f"browser errors: {errors}"
    )


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)
