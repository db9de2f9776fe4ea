"""Browser tests run against ``live_server``, so the database is flushed after each one.

The flush also removes what migrations created (Wagtail's root page, default locale and
site) that every later test needs. ``test_editor_browser`` marks its tests
``serialized_rollback=True``, which makes pytest-django keep a copy of that data; this
fixture restores the copy before every browser test, whatever its own marker says.
"""

import os
import shutil

import pytest

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


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
        try:
            yield page
        finally:
            context.close()
            browser.close()
