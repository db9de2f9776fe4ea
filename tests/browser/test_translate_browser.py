""" "Translate into…" in a real browser (issue 23 §1): the page editor's action menu opens the
choice of locales; confirmed, the translation is queued and its progress shown; the editor
comes back with the drafts saved and a button to open each translation."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.browser import test_editor_browser
from tests.browser.test_queued_runs_browser import log_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

worker = test_editor_browser.worker  # the in-process django-q2 worker fixture


def test_translate_into_two_locales_from_the_editor(
    live_server, browser_page, worker, translation_site, translate_action, fake_llm, superuser
):
    page = browser_page
    recipe = translation_site["recipe"]
    fake_llm.configure(translate="reverse", latency=1.0)
    log_in(page, live_server)
    edit_url = reverse("wagtailadmin_pages:edit", args=[recipe.pk])
    page.goto(live_server.url + edit_url)

    # The action menu's "Translate into…" opens the choice of locales
    page.locator("[data-w-dropdown-target=toggle]").last.click()
    page.get_by_role("link", name="Translate into…").click()
    page.locator("[data-llm-translate]").wait_for()
    assert "(new page, as a draft)" in page.locator("[data-llm-translate]").inner_text()
    page.get_by_label("German (de)").check()
    page.get_by_label("French (fr)").check()
    page.locator("[data-llm-translate-button]").click()

    # Queued: the progress page, then back in the editor with the drafts saved
    page.locator("[data-llm-queued-run]").wait_for()
    page.wait_for_url(re.compile(re.escape(edit_url) + "$"), timeout=60_000)
    message = page.locator(".messages").inner_text()
    assert "translated into de, fr: drafts saved, nothing published" in message
    assert fake_llm.request_count == 2
    german = recipe.get_translation(translation_site["de"])
    assert not german.live
    page.get_by_role("link", name="Open de").click()
    page.wait_for_url(re.compile(reverse("wagtailadmin_pages:edit", args=[german.pk]) + "$"))


def test_translate_screen_has_no_serious_violations(
    live_server, browser_page, translation_site, translate_action, fake_llm, superuser
):
    from tests.browser.test_a11y_browser import check_screens
    from wagtail_llm_actions.translation.run import translate_page

    fake_llm.configure(translate="reverse")
    recipe = translation_site["recipe"]
    translate_page(translate_action, recipe, translation_site["de"])  # an estimate of each kind
    url = reverse("wagtail_llm_actions_report:translate", args=[recipe.pk])
    log_in(browser_page, live_server)
    check_screens(
        browser_page, superuser, live_server, [("translate", url, "[data-llm-translate]")]
    )
