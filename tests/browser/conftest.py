"""Browser tests run against ``live_server``, so the database is flushed after each one.

``live_server`` here replaces pytest-django's: on SQLite the server's threads, the worker
thread and the test each open their own connection to a *plain* SQLite file (no WAL, no
OPTIONS: Django's defaults, what a real site has), instead of all sharing one in-memory
connection. So the browser tests see the locking a real site sees.

The flush also removes what migrations created (Wagtail's root page, default locale and
site) that every later test needs. ``test_editor_browser`` marks its tests
``serialized_rollback=True``, which makes pytest-django keep a copy of that data; this
fixture restores the copy before every browser test, whatever its own marker says.
"""

import os
import shutil

import pytest
from django.db import connections

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
def live_server(request, transactional_db, tmp_path):
    """A live server per test on the shared test database (see ``tests.workers``)."""
    from pytest_django.live_server_helper import LiveServer

    from tests.workers import shared_database

    addr = (
        request.config.getvalue("liveserver")
        or os.getenv("DJANGO_LIVE_TEST_SERVER_ADDRESS")
        or "localhost"
    )
    with shared_database(tmp_path):
        server = LiveServer(addr)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(autouse=True)
def _restore_migrated_data(django_db_serialized_rollback):
    """Request Django's serialized rollback for every browser test."""


@pytest.fixture
def chromium_path():
    """Debian's chromium; never a downloaded browser. REQUIRE_BROWSER=1 (CI) fails without it."""
    path = shutil.which("chromium")
    if not path:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(
                "REQUIRE_BROWSER=1 but Debian's chromium is not installed (apt install chromium)"
            )
        pytest.skip("chromium is not installed (apt install chromium); browser test skipped")
    return path


@pytest.fixture
def browser_page(chromium_path, monkeypatch):
    """A Playwright page in headless chromium."""

    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test still reads the
    # database from it between browser steps, which Django allows with this flag.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1100})
        page = context.new_page()
        page.set_default_timeout(20_000)
        # Playwright runs this thread's code in a greenlet whose context may hold another
        # test's database connection (Django's connections are context-local): close it so
        # it reconnects to this test's database.
        connections["default"].close()
        try:
            yield page
        finally:
            connections["default"].close()
            context.close()
            browser.close()
