""" "Translate into…" for a translatable snippet in a real browser (issue 23 §2): the snippet
editor's action menu opens the choice of locales; confirmed, the translation is queued and its
progress shown, and the editor comes back with a button to open each translation. In the
snippet listing's bulk actions, choosing the action and two locales refreshes the per-locale
estimate, whose numbers are what Start then sends."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from django.urls import reverse
from wagtail.admin.admin_url_finder import AdminURLFinder

from tests.browser import test_editor_browser
from tests.browser.test_queued_runs_browser import log_in
from tests.fakeserver import sent_segments
from wagtail_llm_actions import jobs
from wagtail_llm_actions.models import LLMJob

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

worker = test_editor_browser.worker  # the in-process django-q2 worker fixture


def test_translate_a_snippet_into_two_locales_from_its_editor(
    live_server,
    browser_page,
    worker,
    snippet_translation_site,
    dish_translate_action,
    fake_llm,
    superuser,
):
    page = browser_page
    site = snippet_translation_site
    dish = site["dish"]
    fake_llm.configure(translate="reverse", latency=1.0)
    log_in(page, live_server)
    edit_url = AdminURLFinder(superuser).get_edit_url(dish)
    page.goto(live_server.url + edit_url)

    # The action menu's "Translate into…" opens the choice of locales
    page.locator("[data-w-dropdown-target=toggle]").last.click()
    page.get_by_role("link", name="Translate into…").click()
    page.locator("[data-llm-translate]").wait_for()
    assert "(new snippet, as a draft)" in page.locator("[data-llm-translate]").inner_text()
    page.get_by_label("German (de)").check()
    page.get_by_label("French (fr)").check()
    page.locator("[data-llm-translate-button]").click()

    # Queued: the progress page, then back in the snippet's editor with the drafts saved
    page.locator("[data-llm-queued-run]").wait_for()
    page.wait_for_url(re.compile(re.escape(edit_url) + "$"), timeout=60_000)
    message = page.locator(".messages").inner_text()
    assert "translated into de, fr: drafts saved, nothing published" in message
    assert fake_llm.request_count == 2
    german = dish.get_translation(site["de"])
    assert not german.live
    page.get_by_role("link", name="Open de").click()
    german_url = AdminURLFinder(superuser).get_edit_url(german)
    page.wait_for_url(re.compile(re.escape(german_url) + "$"))


def number(page, code: str, name: str) -> int:
    cell = page.locator(f'[data-llm-locale-row="{code}"] [data-llm-locale-{name}]')
    return int(cell.get_attribute(f"data-llm-locale-{name}"))


def test_the_snippet_bulk_screen_estimates_each_locale_and_the_run_sends_that(
    live_server, browser_page, snippet_translation_site, dish_translate_action, fake_llm, superuser
):
    from tests.testapp.models import Dish
    from wagtail_llm_actions.jobs.translating import plan_snippet_translation

    page = browser_page
    site = snippet_translation_site
    soup = Dish.objects.create(
        name="Onion soup", description="Brown the onions slowly.", locale=site["en"], live=True
    )
    soup.save_revision()
    dishes = [site["dish"], soup]
    fake_llm.configure(translate="reverse")
    log_in(page, live_server)
    listing = reverse("wagtailsnippets_testapp_dish:list")
    base = reverse("wagtail_bulk_action", args=("testapp", "dish", "translate_snippets"))
    params = [("id", d.pk) for d in dishes] + [("next", listing)]
    page.goto(f"{live_server.url}{base}?{urlencode(params)}")
    assert page.locator("[data-llm-choose-first]").is_visible()
    assert page.locator("[data-llm-start]").is_disabled()

    # choosing the action and the locales refreshes the preview (no "Check" round trip)
    page.select_option("select[name=action]", label="Translate")
    page.get_by_label("German (de)").check()
    page.locator('[data-llm-locale-row="de"]').wait_for()
    page.get_by_label("French (fr)").check()
    page.locator('[data-llm-locale-row="fr"]').wait_for()
    assert page.locator("[data-llm-will-run]").get_attribute("data-llm-will-run") == "4"
    plan = plan_snippet_translation(
        dish_translate_action, superuser, Dish, [d.pk for d in dishes], ["de", "fr"]
    )
    shown = {}
    for row in plan.rows:
        shown[row.code] = number(page, row.code, "send")
        assert shown[row.code] == row.send == 5  # 3 segments of the dumplings, 2 of the soup
        assert number(page, row.code, "pages") == row.pages == 2
        assert number(page, row.code, "tokens") == row.total_tokens > 0
    text = page.locator("[data-llm-locale-estimates]").inner_text()
    assert "German (de)" in text and "French (fr)" in text and "Snippets" in text

    # Start: one job of four items; what it sends is what the screen said
    page.locator("[data-llm-start]").click()
    page.wait_for_url(re.compile(re.escape(listing)))
    job = LLMJob.objects.get()
    assert jobs.run_job(job.pk) == "completed"
    sent = {"de": 0, "fr": 0}
    for request in fake_llm.requests:
        sent["de" if "German" in str(request["json"]["messages"]) else "fr"] += len(
            sent_segments(request)
        )
    assert sent == shown


def test_the_snippet_translate_screen_has_no_serious_violations(
    live_server, browser_page, snippet_translation_site, dish_translate_action, fake_llm, superuser
):
    from tests.browser.test_a11y_browser import check_screens
    from wagtail_llm_actions.translation.run import translate_page
    from wagtail_llm_actions.views.translate import snippet_translate_url

    fake_llm.configure(translate="reverse")
    dish = snippet_translation_site["dish"]
    translate_page(dish_translate_action, dish, snippet_translation_site["de"])  # both kinds
    log_in(browser_page, live_server)
    check_screens(
        browser_page,
        superuser,
        live_server,
        [("snippet-translate", snippet_translate_url(dish), "[data-llm-translate]")],
    )
