"""Bulk translation as a job (issue 23 §1): one item per page and locale, exactly once across
dead workers, parents before children, bad input refused, estimates that match the run."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from wagtail.models import Page, PageLogEntry

from tests.fakeserver import sent_segments
from tests.translation_site import i18n
from wagtail_llm_actions import jobs
from wagtail_llm_actions.jobs.translating import (
    create_translation_job,
    item_locale,
    plan_translation,
)
from wagtail_llm_actions.models import LLMJob, LLMJobItem
from wagtail_llm_actions.service import LOG_ACTION
from wagtail_llm_actions.translation.run import TranslationProblem

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_retries(settings):
    settings.WAGTAIL_LLM_ACTIONS = {
        **settings.WAGTAIL_LLM_ACTIONS,
        "RETRY_BACKOFF": 0,
        "MAX_ATTEMPTS": 3,
    }


def three_pages(site) -> list[Page]:
    return [site["chili"], site["recipe"], site["home"]]


def translations(pages, site) -> dict:
    """(page id, locale code) -> the page's translation in that locale (None: none yet)."""
    return {
        (page.pk, code): page.get_translation_or_none(site[code])
        for page in pages
        for code in ("de", "fr")
    }


def revisions_of(page) -> int:
    """Drafts written by the app for ``page`` (a log entry each)."""
    return PageLogEntry.objects.filter(page_id=page.pk, action=LOG_ACTION).count() if page else 0


def test_three_pages_into_two_locales_make_six_items_and_six_drafts(
    translation_site, translate_action, fake_llm, superuser
):
    fake_llm.configure(translate="reverse")
    pages = three_pages(translation_site)
    before = {key: revisions_of(t) for key, t in translations(pages, translation_site).items()}
    job = create_translation_job(translate_action, superuser, [p.pk for p in pages], ["de", "fr"])
    items = list(job.items.order_by("pk"))
    assert len(items) == 6
    assert sorted((i.page_id, item_locale(i)) for i in items) == sorted(
        (p.pk, code) for p in pages for code in ("de", "fr")
    )
    assert jobs.run_job(job.pk) == "completed"
    assert set(job.items.values_list("status", flat=True)) == {"succeeded"}
    assert fake_llm.request_count == 6  # one request per page and locale
    after = translations(pages, translation_site)
    for key, target in after.items():
        assert target is not None
        assert revisions_of(target) == before[key] + 1  # exactly one new draft
    for item in job.items.all():
        target = after[(item.page_id, item_locale(item))]
        assert item.result["locale"] == item_locale(item) and item.result["page_id"] == target.pk
        assert not (item.result["created"] and target.live)  # a new translation: a draft
    # chili had a German copy and home both: the other three are new pages
    assert job.items.filter(result__created=True).count() == 3


def test_a_dead_worker_mid_job_still_gives_one_draft_per_page_and_locale(
    translation_site, translate_action, fake_llm, superuser
):
    fake_llm.configure(translate="reverse")
    pages = three_pages(translation_site)
    before = {key: revisions_of(t) for key, t in translations(pages, translation_site).items()}
    job = create_translation_job(translate_action, superuser, [p.pk for p in pages], ["de", "fr"])
    # A worker translated two items, claimed two more and died: its leases run out.
    lease = jobs.lease_seconds(translate_action)
    ctx = jobs._RunContext(
        job=job,
        action=translate_action,
        trigger="bulk",
        token="dead",
        lease=lease,
        limit=4,
        max_attempts=3,
    )
    for n in range(2):
        item = jobs.claim_item(job, f"dead:{n}", lease=lease)
        assert jobs.process_item(ctx, item, f"dead:{n}") == "succeeded"
    for n in range(2, 4):
        jobs.claim_item(job, f"dead:{n}", lease=60)
    past = timezone.now() - timedelta(seconds=1)
    job.items.filter(status="running").update(lease_expires_at=past)
    LLMJob.objects.filter(pk=job.pk).update(
        status="running", runner_token="dead", runner_lease_expires_at=past
    )
    assert jobs.run_job(job.pk) == "completed"
    assert set(job.items.values_list("status", flat=True)) == {"succeeded"}
    assert fake_llm.request_count == 6
    for key, target in translations(pages, translation_site).items():
        assert revisions_of(target) == before[key] + 1


def test_a_lease_taken_over_rolls_the_slow_workers_draft_back(
    translation_site, translate_action, fake_llm, superuser
):
    fake_llm.configure(translate="reverse")
    recipe = translation_site["recipe"]
    job = create_translation_job(translate_action, superuser, [recipe.pk], ["fr"])
    lease = jobs.lease_seconds(translate_action)
    first = jobs.claim_item(job, "slow:1", lease=lease)
    LLMJobItem.objects.filter(pk=first.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    second = jobs.claim_item(job, "fast:1", lease=lease)
    ctx = jobs._RunContext(
        job=job,
        action=translate_action,
        trigger="bulk",
        token="x",
        lease=lease,
        limit=4,
        max_attempts=3,
    )
    assert jobs.process_item(ctx, second, "fast:1") == "succeeded"
    assert jobs.process_item(ctx, first, "slow:1") == "lost"
    target = recipe.get_translation(translation_site["fr"])
    assert revisions_of(target) == 1
    assert job.items.get().status == "succeeded"


def test_a_child_waits_for_its_parent_in_the_same_job(
    translation_site, translate_action, fake_llm, superuser
):
    fake_llm.configure(translate="reverse")
    orphan = translation_site["orphan"]
    section = orphan.get_parent()
    job = create_translation_job(translate_action, superuser, [orphan.pk, section.pk], ["fr"])
    assert [i.page_id for i in job.items.order_by("pk")] == [section.pk, orphan.pk]
    assert jobs.run_job(job.pk) == "completed"
    assert set(job.items.values_list("status", flat=True)) == {"succeeded"}
    assert orphan.get_translation_or_none(translation_site["fr"]) is not None


def test_a_page_whose_parent_is_not_translated_is_skipped_with_the_reason(
    translation_site, translate_action, fake_llm, superuser
):
    fake_llm.configure(translate="reverse")
    orphan = translation_site["orphan"]
    job = create_translation_job(translate_action, superuser, [orphan.pk], ["fr"])
    assert jobs.run_job(job.pk) == "completed"
    item = job.items.get()
    assert item.status == "skipped" and item.skip_reason == "parent_not_translated"
    assert "“Untranslated section” has no translation in French" in item.error
    assert "Translate the parent first" in item.error
    assert fake_llm.request_count == 0
    assert "translate the parent first" in jobs.skip_reason_label(item.skip_reason)


def test_bad_input_is_refused_before_anything_is_written(
    translation_site, translate_action, fake_llm, superuser
):
    recipe = translation_site["recipe"]
    with pytest.raises(TranslationProblem, match="in English \\(en\\) already"):
        create_translation_job(translate_action, superuser, [recipe.pk], ["de", "en"])
    with pytest.raises(TranslationProblem, match="no locale “es”"):
        create_translation_job(translate_action, superuser, [recipe.pk], ["es"])
    with i18n(enabled=False), pytest.raises(TranslationProblem, match="WAGTAIL_I18N_ENABLED"):
        create_translation_job(translate_action, superuser, [recipe.pk], ["de"])
    assert not LLMJob.objects.exists()
    plan = plan_translation(translate_action, superuser, [recipe.pk], ["en"])
    assert "already" in plan.refusal and plan.will_run == 0


def test_the_per_locale_estimate_matches_what_the_run_sends(
    translation_site, translate_action, fake_llm, superuser
):
    fake_llm.configure(translate="reverse")
    pages = three_pages(translation_site)
    ids = [p.pk for p in pages]
    # German already has one run behind it for the recipe: part unchanged next time.
    jobs.run_job(create_translation_job(translate_action, superuser, [pages[1].pk], ["de"]).pk)
    recipe_de = pages[1].get_translation(translation_site["de"])
    fake_llm.reset()
    fake_llm.configure(translate="reverse")
    plan = plan_translation(translate_action, superuser, ids, ["de", "fr"])
    rows = {row.code: row for row in plan.rows}
    assert set(rows) == {"de", "fr"} and plan.is_exact
    assert rows["de"].unchanged > 0 and rows["fr"].unchanged == 0
    job = create_translation_job(translate_action, superuser, ids, ["de", "fr"])
    assert jobs.run_job(job.pk) == "completed"
    sent = {"de": 0, "fr": 0}
    for request in fake_llm.requests:
        code = "de" if "German" in str(request["json"]["messages"]) else "fr"
        sent[code] += len(sent_segments(request))
    assert sent == {"de": rows["de"].send, "fr": rows["fr"].send}
    assert recipe_de.pk == pages[1].get_translation(translation_site["de"]).pk


def test_a_budget_reached_pauses_the_translation_job_and_the_rest_waits(
    translation_site,
    translate_action,
    fake_llm,
    superuser,
    monkeypatch,
    django_capture_on_commit_callbacks,
):
    from wagtail_llm_actions.jobs import pauses
    from wagtail_llm_actions.models import LLMBudget

    monkeypatch.setattr(pauses, "enqueue_job", lambda job, **kw: None)
    fake_llm.configure(translate="reverse")
    # A cap the first translation already spends: the next calls are refused before sending.
    budget = LLMBudget.objects.create(name="Translations", max_tokens=10)
    pages = three_pages(translation_site)
    job = create_translation_job(translate_action, superuser, [p.pk for p in pages], ["de"])
    assert jobs.run_job(job.pk) == "paused"
    assert fake_llm.request_count == 0  # refused before any call
    assert pauses.pause_of(LLMJob.objects.get(pk=job.pk)) is not None
    assert job.items.filter(status="queued").count() == 3
    # Raised: the job resumes where it stopped, one draft per page and locale.
    with django_capture_on_commit_callbacks(execute=True):
        budget.max_tokens = 1_000_000
        budget.save()
    assert pauses.pause_of(LLMJob.objects.get(pk=job.pk)) is None
    assert jobs.run_job(job.pk) == "completed"
    assert set(job.items.values_list("status", flat=True)) == {"succeeded"}
    assert fake_llm.request_count == 3
