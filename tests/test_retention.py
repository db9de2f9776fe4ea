"""purge_llm_interactions: delete old interactions, or keep their metrics and blank bodies."""

from __future__ import annotations

import datetime
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from tests.interactions_factory import make_interactions
from wagtail_llm_actions.models import LLMInteraction
from wagtail_llm_actions.reports import interaction_totals

pytestmark = pytest.mark.django_db


@pytest.fixture
def aged(post, action):
    """3 interactions 100 days old, 2 that are 40 days old and 4 from today."""
    now = timezone.now()
    old = make_interactions(
        3,
        action=action,
        page=post,
        start=now - datetime.timedelta(days=100),
        messages=[{"role": "user", "content": "Private draft text"}],
        response_text="Secret plans",
        previous_value="Before",
        output_value="Secret plans",
    )
    middle = make_interactions(2, action=action, page=post, start=now - datetime.timedelta(days=40))
    recent = make_interactions(4, action=action, page=post, start=now)
    return old, middle, recent


def purge(*args):
    out = StringIO()
    call_command("purge_llm_interactions", *args, stdout=out)
    return out.getvalue()


def ids(rows):
    return {row.pk for row in rows}


def test_deletes_interactions_older_than_days(aged):
    old, middle, recent = aged
    output = purge("--days", "60")
    assert "Deleted 3 interaction(s)" in output
    assert set(LLMInteraction.objects.values_list("pk", flat=True)) == ids(middle) | ids(recent)


def test_defaults_to_the_retention_setting(aged, settings):
    _old, _middle, recent = aged
    settings.WAGTAIL_LLM_ACTIONS = {"RETENTION_DAYS": 30}
    purge()
    assert set(LLMInteraction.objects.values_list("pk", flat=True)) == ids(recent)


def test_without_days_or_setting_it_refuses(aged, settings):
    settings.WAGTAIL_LLM_ACTIONS = {}
    with pytest.raises(CommandError, match="RETENTION_DAYS"):
        purge()
    with pytest.raises(CommandError, match="at least 1"):
        purge("--days", "0")
    assert LLMInteraction.objects.count() == 9


def test_dry_run_changes_nothing(aged):
    output = purge("--days", "30", "--dry-run")
    assert "Would delete 5 interaction(s)" in output
    assert LLMInteraction.objects.count() == 9


def test_keep_metrics_blanks_bodies_but_keeps_usage_and_cost(aged):
    old, middle, recent = aged
    before = interaction_totals(LLMInteraction.objects.all())
    output = purge("--days", "60", "--keep-metrics")
    assert "Blanked the messages and answers of 3 interaction(s)" in output
    assert LLMInteraction.objects.count() == 9
    for row in LLMInteraction.objects.filter(pk__in=ids(old)):
        assert row.messages == []
        assert row.response_text == row.output_value == row.previous_value == ""
        assert row.prompt_tokens == 100 and row.completion_tokens == 20
        assert row.cost == Decimal("0.001")
        assert row.status == "success" and row.model == "local/extractive"
    kept = LLMInteraction.objects.get(pk=recent[0].pk)
    assert kept.response_text == "A summary."
    after = interaction_totals(LLMInteraction.objects.all())
    for key in ("calls", "errors", "total_tokens", "cost"):
        assert after[key] == before[key]
    # running it again finds nothing left to blank
    assert "of 0 interaction(s)" in purge("--days", "60", "--keep-metrics")


def test_purges_in_batches(post, action, monkeypatch):
    from wagtail_llm_actions.management.commands import purge_llm_interactions

    monkeypatch.setattr(purge_llm_interactions, "BATCH_SIZE", 4)
    make_interactions(
        10, action=action, page=post, start=timezone.now() - datetime.timedelta(days=9)
    )
    assert "Deleted 10 interaction(s)" in purge("--days", "5")
    assert not LLMInteraction.objects.exists()


def test_old_finished_editor_jobs_and_their_form_copies_go_too(post, action, superuser):
    from wagtail_llm_actions.models import LLMJob, LLMJobItem

    def job(status, age_days):
        j = LLMJob.objects.create(action=action, user=superuser, kind="editor", status=status)
        LLMJobItem.objects.create(job=j, page=post, payload={"body": "unsaved text"})
        LLMJob.objects.filter(pk=j.pk).update(
            created_at=timezone.now() - datetime.timedelta(days=age_days)
        )
        return j

    old_done, old_running, recent = job("completed", 40), job("running", 40), job("completed", 1)
    bulk = LLMJob.objects.create(action=action, user=superuser, kind="bulk", status="completed")
    LLMJob.objects.filter(pk=bulk.pk).update(created_at=timezone.now() - datetime.timedelta(40))
    out = StringIO()
    call_command("purge_llm_interactions", "--days", "30", stdout=out)
    remaining = set(LLMJob.objects.values_list("pk", flat=True))
    assert remaining == {old_running.pk, recent.pk, bulk.pk}
    assert not LLMJobItem.objects.filter(job_id=old_done.pk).exists()
    assert "Deleted 1 finished editor job(s)" in out.getvalue()


def test_old_runs_go_once_none_of_their_interactions_is_left(post, action):
    from wagtail_llm_actions.models import LLMRun, RunKind

    now = timezone.now()
    old_day = now - datetime.timedelta(days=100)

    def run_with(*starts):
        run = LLMRun.objects.create(kind=RunKind.PIPELINE, name="Pipe", page=post)
        LLMRun.objects.filter(pk=run.pk).update(created_at=starts[0])
        for start in starts:
            make_interactions(1, action=action, page=post, start=start, run=run)
        return run

    gone = run_with(old_day, old_day)
    straddling = run_with(old_day, now)  # a step still recent: the run stays
    recent = run_with(now)

    assert "Would delete 1 run(s)" in purge("--days", "30", "--dry-run")
    assert LLMRun.objects.count() == 3

    output = purge("--days", "30")

    assert "Deleted 1 run(s)" in output
    assert set(LLMRun.objects.values_list("pk", flat=True)) == {straddling.pk, recent.pk}
    assert not LLMRun.objects.filter(pk=gone.pk).exists()
    assert straddling.interactions.count() == 1

    purge("--days", "30", "--keep-metrics")  # keeps every row, so every run
    assert LLMRun.objects.count() == 2
