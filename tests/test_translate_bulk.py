"""The "Translate into…" bulk action of the page listing (issue 23 §1): the per-locale
estimate on the confirmation screen, Start as one job of page × locale items, the job page
showing each item's locale, and bad input refused."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from django.urls import reverse

from tests.fakeserver import sent_segments
from tests.translation_site import i18n
from wagtail_llm_actions import jobs
from wagtail_llm_actions.models import LLMBudget, LLMJob

pytestmark = pytest.mark.django_db


def bulk_url(pages) -> str:
    base = reverse("wagtail_bulk_action", args=("wagtailcore", "page", "translate_pages"))
    return f"{base}?{urlencode([('next', '/admin/pages/'), *(('id', p.pk) for p in pages)])}"


def cell(html: str, code: str, name: str) -> int:
    row = re.search(rf'data-llm-locale-row="{code}">(.*?)</tr>', html, re.S)
    assert row, html
    return int(re.search(rf'data-llm-locale-{name}="(\d+)"', row[1])[1])


def pages_of(site):
    return [site["chili"], site["recipe"], site["home"]]


def test_the_screen_estimates_each_locale_and_start_runs_exactly_that(
    client, translation_site, translate_action, fake_llm, superuser
):
    fake_llm.configure(translate="reverse")
    client.force_login(superuser)
    pages = pages_of(translation_site)
    url = bulk_url(pages)
    first = client.get(url).content.decode()
    assert "Translate into" in first and "data-llm-choose-first" in first
    data = {"action": translate_action.pk, "locales": ["de", "fr"]}
    html = client.post(url, {**data, "preview": "1"}).content.decode()
    assert 'data-llm-will-run="6"' in html
    expected = {code: cell(html, code, "send") for code in ("de", "fr")}
    assert all(expected.values())
    assert cell(html, "de", "pages") == 3 and cell(html, "fr", "unchanged") == 0
    response = client.post(url, data)
    assert response.status_code == 302
    job = LLMJob.objects.get()
    assert job.options["locales"] == ["de", "fr"] and job.items.count() == 6
    assert jobs.run_job(job.pk) == "completed"
    sent = {"de": 0, "fr": 0}
    for request in fake_llm.requests:
        sent["de" if "German" in str(request["json"]["messages"]) else "fr"] += len(
            sent_segments(request)
        )
    assert sent == expected
    detail = client.get(reverse("wagtail_llm_actions_jobs:detail", args=[job.pk])).content.decode()
    assert detail.count('data-llm-item-locale="de"') == 3
    assert detail.count('data-llm-item-locale="fr"') == 3
    assert "German (de)" in detail and "French (fr)" in detail
    german = translation_site["recipe"].get_translation(translation_site["de"])
    # "Review draft" opens the translation, where the draft is
    assert f'href="{reverse("wagtailadmin_pages:edit", args=[german.pk])}">Review draft' in detail


def test_a_second_run_shows_unchanged_segments_as_skipped(
    client, translation_site, translate_action, fake_llm, superuser
):
    fake_llm.configure(translate="reverse")
    client.force_login(superuser)
    recipe = translation_site["recipe"]
    url = bulk_url([recipe])
    client.post(url, {"action": translate_action.pk, "locales": ["fr"]})
    jobs.run_job(LLMJob.objects.get().pk)
    html = client.post(
        url, {"action": translate_action.pk, "locales": ["fr"], "preview": "1"}
    ).content.decode()
    assert cell(html, "fr", "send") == 0 and cell(html, "fr", "unchanged") > 0


def test_a_parent_without_translation_is_named_with_the_advice(
    client, translation_site, translate_action, fake_llm, superuser
):
    client.force_login(superuser)
    orphan = translation_site["orphan"]
    html = client.post(
        bulk_url([orphan]), {"action": translate_action.pk, "locales": ["fr"], "preview": "1"}
    ).content.decode()
    assert 'data-llm-locale-problems="fr"' in html
    assert "has no translation in French" in html and "Translate the parent first" in html


@pytest.mark.parametrize(
    ("codes", "message"),
    [(["en"], "is in English (en) already"), (["de"], "WAGTAIL_I18N_ENABLED")],
)
def test_bad_input_is_refused_and_nothing_starts(
    client, translation_site, translate_action, fake_llm, superuser, codes, message
):
    client.force_login(superuser)
    url = bulk_url([translation_site["recipe"]])
    data = {"action": translate_action.pk, "locales": codes}
    with i18n(enabled=codes != ["de"]):
        html = client.post(url, {**data, "preview": "1"}).content.decode()
        assert "data-llm-translate-refused" in html and message in html
        assert "data-llm-start disabled" in html
        response = client.post(url, data)
    assert response.status_code == 200 and not LLMJob.objects.exists()


def test_the_budget_line_shows_under_the_estimate(
    client, translation_site, translate_action, fake_llm, superuser
):
    LLMBudget.objects.create(name="Tiny", period="month", max_tokens=10)
    client.force_login(superuser)
    html = client.post(
        bulk_url(pages_of(translation_site)),
        {"action": translate_action.pk, "locales": ["de", "fr"], "preview": "1"},
    ).content.decode()
    assert 'data-llm-budget-fit="over"' in html and "data-llm-budget-problem" in html


def test_the_page_listing_offers_translate_into(client, translation_site, superuser):
    client.force_login(superuser)
    home = translation_site["home"]
    html = client.get(reverse("wagtailadmin_explore", args=[home.pk])).content.decode()
    assert "translate_pages" in html and "Translate into…" in html


def test_run_only_the_translations_that_fit_the_budget(
    client, translation_site, translate_action, fake_llm, superuser
):
    from wagtail_llm_actions.jobs.translating import plan_translation

    pages = pages_of(translation_site)
    plan = plan_translation(translate_action, superuser, [p.pk for p in pages], ["de", "fr"])
    LLMBudget.objects.create(name="Half", max_tokens=plan.estimate.total_tokens // 2)
    client.force_login(superuser)
    data = {"action": translate_action.pk, "locales": ["de", "fr"]}
    html = client.post(bulk_url(pages), {**data, "preview": "1"}).content.decode()
    assert "data-llm-within-budget" in html
    response = client.post(bulk_url(pages), {**data, "within_budget": "on"})
    assert response.status_code == 302
    job = LLMJob.objects.get()
    queued = job.items.filter(status="queued").count()
    over = job.items.filter(status="skipped", skip_reason="over_budget")
    assert 0 < queued < 6 and over.count() == 6 - queued
    assert all("Half" in item.error for item in over)
