"""The editor's buttons report a refused run with the server's message, not "network error"."""

from __future__ import annotations

import pytest

from tests.browser.test_editor_browser import login_and_edit

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

BUTTON = '[data-llm-action-field-value="summary"] [data-llm-action-target="run"]'
ERROR = '[data-llm-action-field-value="summary"] [data-llm-action-target="error"]'


def test_too_large_form_and_html_error_pages_are_explained(
    live_server, browser_page, post, action, superuser
):
    page = browser_page
    login_and_edit(page, live_server, post)
    page.locator("textarea[name=summary]").wait_for()

    # A form over DATA_UPLOAD_MAX_MEMORY_SIZE: the server answers a JSON 413.
    page.eval_on_selector("#id_intro", "el => { el.value = 'x'.repeat(3 * 1024 * 1024); }")
    page.locator(BUTTON).first.click()
    error = page.locator(ERROR)
    error.wait_for(state="visible")
    text = error.inner_text()
    assert "too large" in text
    assert "could not be reached" not in text

    # A proxy's HTML error page: the status is reported, not a network failure.
    page.eval_on_selector("#id_intro", "el => { el.value = 'short'; }")
    page.route(
        "**/run/**",
        lambda route: route.fulfill(
            status=502, content_type="text/html", body="<html><body>Bad gateway</body></html>"
        ),
    )
    page.locator(BUTTON).first.click()
    page.wait_for_function(
        "(sel) => document.querySelector(sel).innerText.includes('502')", arg=ERROR
    )
    text = error.inner_text()
    assert "HTTP 502" in text
    assert "could not be reached" not in text


def test_a_run_whose_worker_died_stops_the_spinner_and_says_why(
    live_server, browser_page, post, action, superuser
):
    """The worker running the click died (twice: no more tries) and its lease ran out: the
    button's polling stops and shows why, instead of "Generating…" for ever."""
    from datetime import timedelta

    from django.db.models.functions import Now

    from tests.workers import wait_for
    from wagtail_llm_actions.models import LLMJobItem

    page = browser_page
    login_and_edit(page, live_server, post)
    page.locator(BUTTON).first.click()
    wait_for(LLMJobItem.objects.exists, timeout=20, message="the click queued no job")
    # No worker runs here: play one that claimed the run, died, was replaced and died again.
    LLMJobItem.objects.update(
        status="running",
        attempts=2,
        claimed_by="editor:dead-worker",
        lease_expires_at=Now() - timedelta(seconds=1),
    )

    error = page.locator(ERROR)
    error.wait_for(state="visible")
    assert "background task running this stopped before it finished" in error.inner_text()
    button = page.locator(BUTTON).first
    assert button.is_enabled() and button.get_attribute("aria-busy") == "false"
    assert LLMJobItem.objects.get().status == "failed"
