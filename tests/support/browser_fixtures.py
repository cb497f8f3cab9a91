"""Pytest fixtures for the browser tests: Chromium, the live app, tabs, the ``/prod`` stage proxy.

A plugin module, loaded by each browser test module with
``pytest_plugins = ["tests.support.browser_fixtures"]`` (kept apart from the helpers in
``browser_harness.py`` so pytest can rewrite the assertions here).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.browser_harness import (
    CHROMIUM_ARGS,
    CHROMIUM_PATH,
    DESKTOP_VIEWPORT,
    PHONE_VIEWPORT,
    StagePrefixProxy,
    serve_app,
)

# The suite shares two cores with other processes: give page assertions more than the 5 s default.
expect.set_options(timeout=10_000)


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Browser]:
    """Debian's headless Chromium under Playwright, once per test module.

    Not once per session: Playwright's sync API keeps an asyncio event loop running in the main
    thread until ``stop()``, and every later test that calls ``asyncio.run`` would fail.

    ``make test`` installs it first (``make browser-deps``); the tests skip only where that was
    impossible, and say so.
    """
    if not CHROMIUM_PATH.exists():
        found = shutil.which("chromium")
        pytest.skip(
            f"Debian's chromium is not installed at {CHROMIUM_PATH} (which: {found}); "
            "`make browser-deps` installs it with apt-get, which needs root and a Debian mirror"
        )
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM_PATH), args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()
    finally:
        playwright.stop()


@pytest.fixture(scope="session")
def live_app(trained_artifacts: Path) -> Iterator[str]:
    """Base URL (ending in ``/``) of the real app serving the session's trained artifact folder."""
    with serve_app(trained_artifacts) as base_url:
        yield base_url


@pytest.fixture
def page(chromium_browser: Browser) -> Iterator[Page]:
    """A fresh desktop-sized tab in its own browser context (own sessionStorage, own cookies)."""
    context = chromium_browser.new_context(viewport=DESKTOP_VIEWPORT)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    page_errors: list[str] = []
    tab.on("pageerror", lambda error: page_errors.append(str(error)))
    yield tab
    context.close()
    assert page_errors == [], f"the page threw: {page_errors}"


@pytest.fixture
def phone_page(chromium_browser: Browser) -> Iterator[Page]:
    """A fresh tab at phone width (375 px, the narrowest common phone), with touch and 2x pixels."""
    context = chromium_browser.new_context(
        viewport=PHONE_VIEWPORT, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    yield tab
    context.close()


@pytest.fixture
def stage_proxy(live_app: str) -> Iterator[StagePrefixProxy]:
    """The live app behind a ``/prod`` stage prefix, as API Gateway's REST API serves it."""
    with StagePrefixProxy(live_app, "/prod") as proxy:
        yield proxy
