""" "Translate into…" from the page listing's bulk actions in a real browser (issue 23 §1):
choosing the action and two locales refreshes the per-locale estimate; its numbers are what
Start then sends (segments counted in the fake server's log), and the job page lists each
item with its locale."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.urls import reverse

from tests.browser.test_queued_runs_browser import log_in
from tests.fakeserver import sent_segments
from wagtail_llm_actions import jobs
from wagtail_llm_actions.jobs.translating import plan_translation
from wagtail_llm_actions.models import LLMJob

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def bulk_url(live_server, pages) -> str:
    base = reverse("wagtail_bulk_action", args=("wagtailcore", "page", "translate_pages"))
    params = [("id", p.pk) for p in pages] + [("next", "/admin/pages/")]
    return f"{live_server.url}{base}?{urlencode(params)}"


def number(page, code: str, name: str) -> int:
    cell = page.locator(f'[data-llm-locale-row="{code}"] [data-llm-locale-{name}]')
    return int(cell.get_attribute(f"data-llm-locale-{name}"))


def test_the_bulk_screen_estimates_each_locale_and_the_run_sends_that(
    live_server, browser_page, translation_site, translate_action, fake_llm, superuser
):
    page = browser_page
    fake_llm.configure(translate="reverse")
    site = translation_site
    pages = [site["chili"], site["recipe"], site["home"]]
    log_in(page, live_server)
    page.goto(bulk_url(live_server, pages))
    assert page.locator("[data-llm-choose-first]").is_visible()
    assert page.locator("[data-llm-start]").is_disabled()

    # choosing the action and the locales refreshes the preview (no "Check" round trip)
    page.select_option("select[name=action]", label="Translate")
    page.get_by_label("German (de)").check()
    page.locator('[data-llm-locale-row="de"]').wait_for()
    page.get_by_label("French (fr)").check()
    page.locator('[data-llm-locale-row="fr"]').wait_for()
    assert page.locator("[data-llm-will-run]").get_attribute("data-llm-will-run") == "6"
    assert page.locator("[data-llm-start]").is_enabled()
    plan = plan_translation(translate_action, superuser, [p.pk for p in pages], ["de", "fr"])
    shown = {}
    for row in plan.rows:
        shown[row.code] = number(page, row.code, "send")
        assert shown[row.code] == row.send > 0
        assert number(page, row.code, "pages") == row.pages == 3
        assert number(page, row.code, "unchanged") == row.unchanged
        assert number(page, row.code, "tokens") == row.total_tokens > 0
    text = page.locator("[data-llm-locale-estimates]").inner_text()
    assert "German (de)" in text and "French (fr)" in text
    from tests.browser.test_a11y_browser import serious_violations_light_and_dark

    # axe, on the estimate as shown, in both themes
    found = serious_violations_light_and_dark(page, "translate-bulk")
    assert not found, "\n".join(found)

    # Start: one job of six items; what it sends is what the screen said
    page.locator("[data-llm-start]").click()
    page.wait_for_url(f"{live_server.url}/admin/pages/")
    job = LLMJob.objects.get()
    assert jobs.run_job(job.pk) == "completed"
    sent = {"de": 0, "fr": 0}
    for request in fake_llm.requests:
        sent["de" if "German" in str(request["json"]["messages"]) else "fr"] += len(
            sent_segments(request)
        )
    assert sent == shown

    # the job page: each item with its locale
    page.goto(live_server.url + reverse("wagtail_llm_actions_jobs:detail", args=[job.pk]))
    page.locator("[data-llm-job-items]").wait_for()
    assert page.locator('[data-llm-item-locale="de"]').count() == 3
    assert page.locator('[data-llm-item-locale="fr"]').count() == 3
    assert "French (fr)" in page.locator("[data-llm-job-items]").inner_text()
