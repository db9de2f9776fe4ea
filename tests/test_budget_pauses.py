"""A job that reaches a budget's cap pauses, and resumes when the budget fits again
(issue 22 §1): each page still runs once, no paid answer is lost."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone
from wagtail.models import PageLogEntry

from wagtail_llm_actions import jobs, tasks
from wagtail_llm_actions.jobs import pauses
from wagtail_llm_actions.models import LLMBudget, LLMInteraction, LLMJob
from wagtail_llm_actions.service import LOG_ACTION, LLMService

pytestmark = pytest.mark.django_db

#: Every call uses this much (the fake server reports it), far above a call's estimate
#: difference between pages, so a cap fits an exact number of calls.
USAGE = {"prompt_tokens": 900, "completion_tokens": 100, "total_tokens": 1000}


@pytest.fixture
def queued(monkeypatch):
    """Worker tasks the code queued (run here in the foreground by the test)."""
    calls: list[int] = []
    monkeypatch.setattr(pauses, "enqueue_job", lambda job, **kw: calls.append(job.pk))
    monkeypatch.setattr(jobs.control, "enqueue_job", lambda job, **kw: calls.append(job.pk))
    return calls


def estimate_of(action, page, user) -> int:
    from wagtail_llm_actions.estimates import count_message_tokens

    prepared = LLMService().prepare(action, page, user)
    return count_message_tokens(prepared.messages) + action.max_tokens


def cap_for(calls: int, action, pages, user) -> int:
    """A token cap that lets exactly ``calls`` calls through (each settles 1000 tokens)."""
    return max(estimate_of(action, p, user) for p in pages) + 1000 * (calls - 1) + 10


@pytest.fixture
def paused_job(server_action, make_post, fake_llm, superuser):
    fake_llm.configure(usage=USAGE)
    posts = [make_post() for _ in range(5)]
    budget = LLMBudget.objects.create(
        name="Monthly team", max_tokens=cap_for(2, server_action, posts, superuser)
    )
    job = jobs.create_job(server_action, superuser, [p.pk for p in posts])
    assert jobs.run_job(job.pk) == "paused"
    job.refresh_from_db()
    return job, budget, posts


def counts(job) -> dict[str, int]:
    out: dict[str, int] = {}
    for status in job.items.values_list("status", flat=True):
        out[status] = out.get(status, 0) + 1
    return out


def answered(page) -> int:
    return LLMInteraction.objects.filter(page=page, status="success").count()


def drafts(page) -> int:
    return PageLogEntry.objects.filter(page=page, action=LOG_ACTION).count()


def test_a_job_that_reaches_a_cap_pauses_with_the_reason_and_keeps_the_rest_queued(
    paused_job, fake_llm, queued
):
    job, budget, posts = paused_job
    assert counts(job) == {"succeeded": 2, "queued": 3}
    assert fake_llm.request_count == 2
    pause = pauses.pause_of(job)
    assert pause["budget"] == "Monthly team" and pause["budget_id"] == budget.pk
    label = pauses.pause_label(pause)
    assert label.startswith("Paused: budget “Monthly team” is exhausted (")
    assert "Nothing was sent" in label
    assert job.status in ("queued", "running")
    assert not job.items.filter(status="queued").exclude(error="").exists()
    assert not job.items.filter(status="queued", attempts__gt=0).exists()
    # Paused: no worker joins, and the periodic check queues none.
    assert jobs.run_job(job.pk) == "paused"
    assert fake_llm.request_count == 2
    assert jobs.recover_jobs() == 0 and queued == []


def test_raising_the_cap_resumes_the_job_and_every_page_runs_exactly_once(
    paused_job, fake_llm, queued, django_capture_on_commit_callbacks
):
    job, budget, posts = paused_job
    with django_capture_on_commit_callbacks(execute=True):
        budget.max_tokens = 1_000_000
        budget.save()
    assert queued == [job.pk]
    job.refresh_from_db()
    assert pauses.pause_of(job) is None
    assert jobs.run_job(job.pk) == "completed"
    job.refresh_from_db()
    assert job.status == "completed" and counts(job) == {"succeeded": 5}
    assert fake_llm.request_count == 5
    for post in posts:
        assert answered(post) == 1 and drafts(post) == 1


def test_deleting_the_budget_resumes_the_job(
    paused_job, queued, django_capture_on_commit_callbacks
):
    job, budget, _posts = paused_job
    with django_capture_on_commit_callbacks(execute=True):
        budget.delete()
    assert queued == [job.pk]


def test_a_budget_saved_that_still_does_not_fit_leaves_the_job_paused(
    paused_job, queued, django_capture_on_commit_callbacks
):
    job, budget, _posts = paused_job
    with django_capture_on_commit_callbacks(execute=True):
        budget.name = "Monthly team (renamed)"
        budget.save()
    assert queued == []
    job.refresh_from_db()
    assert pauses.pause_of(job) is not None


def test_the_period_rolling_over_resumes_the_job(paused_job, fake_llm, queued, monkeypatch):
    job, budget, posts = paused_job
    budget.period = "day"
    LLMBudget.objects.filter(pk=budget.pk).update(period="day")
    # Same day: the day's usage... is the month's row here, so start from today's spend.
    from wagtail_llm_actions.models import LLMBudgetUsage

    LLMBudgetUsage.objects.filter(budget=budget).update(period_start=timezone.localdate())
    assert tasks.keep_jobs_running() == 0 and queued == []
    tomorrow = timezone.localdate() + datetime.timedelta(days=1)
    monkeypatch.setattr(timezone, "localdate", lambda *a, **kw: tomorrow)
    tasks.keep_jobs_running()
    assert queued == [job.pk]
    assert jobs.run_job(job.pk) == "paused"  # three pages, a new day's cap fits two
    job.refresh_from_db()
    assert counts(job) == {"succeeded": 4, "queued": 1}
    for post in posts:
        assert answered(post) <= 1 and drafts(post) == answered(post)


def test_the_resume_button_is_offered_once_the_cap_fits(paused_job, client, superuser, queued):
    from django.urls import reverse

    from wagtail_llm_actions.views.jobs import job_url

    job, budget, _posts = paused_job
    client.force_login(superuser)
    page = client.get(job_url(job.pk)).content.decode()
    assert "Paused: budget “Monthly team” is exhausted" in page
    assert "data-llm-job-resume" not in page
    status = client.get(reverse("wagtail_llm_actions_jobs:status", args=[job.pk])).json()
    assert status["paused"] is True and status["status_label"] == "Paused"
    assert not status["finished"] and status["display"]["eta"] == "—"
    listing = client.get(reverse("wagtail_llm_actions_jobs:index")).content.decode()
    assert "Paused" in listing
    index = reverse("wagtail_llm_actions_jobs:index")
    assert f"/jobs/{job.pk}/" in client.get(index + "?status=paused").content.decode()
    assert f"/jobs/{job.pk}/" not in client.get(index + "?status=running").content.decode()
    LLMBudget.objects.filter(pk=budget.pk).update(max_tokens=1_000_000)  # no signal
    page = client.get(job_url(job.pk)).content.decode()
    assert "data-llm-job-resume" in page
    response = client.post(reverse("wagtail_llm_actions_jobs:resume", args=[job.pk]))
    assert response.status_code == 302
    job.refresh_from_db()
    assert pauses.pause_of(job) is None and queued == [job.pk]


def test_a_paused_job_can_be_cancelled(paused_job):
    job, _budget, _posts = paused_job
    jobs.cancel_job(job)
    job.refresh_from_db()
    assert job.status == "cancelled" and pauses.pause_of(job) is None
    assert LLMJob.objects.get(pk=job.pk).items.filter(status="queued").count() == 0


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_job_with_several_threads_pauses_and_resumes_without_running_a_page_twice(
    shared_db, server_action, make_post, fake_llm, superuser, settings, monkeypatch
):
    """Real worker threads (calls in flight when the cap is reached): whatever the timing,
    the job pauses with nothing failed, and after the cap is raised each page has exactly
    one answer and one draft."""
    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "CONCURRENCY": {"*": 3}}
    monkeypatch.setattr(pauses, "enqueue_job", lambda job, **kw: None)
    fake_llm.configure(usage=USAGE, latency=0.2)
    posts = [make_post() for _ in range(6)]
    budget = LLMBudget.objects.create(
        name="Threads", max_tokens=cap_for(3, server_action, posts, superuser)
    )
    job = jobs.create_job(server_action, superuser, [p.pk for p in posts])
    assert jobs.run_job(job.pk, threads=3) == "paused"
    job.refresh_from_db()
    done = counts(job)
    assert set(done) <= {"succeeded", "queued"} and done.get("queued", 0) >= 1
    assert fake_llm.request_count == done["succeeded"]
    assert pauses.pause_of(job)["budget"] == "Threads"
    budget.max_tokens = 10_000_000
    budget.save()  # autocommit: the resume runs now (its worker task is not queued here)
    job.refresh_from_db()
    assert pauses.pause_of(job) is None
    assert jobs.run_job(job.pk, threads=3) == "completed"
    job.refresh_from_db()
    assert counts(job) == {"succeeded": 6} and fake_llm.request_count == 6
    for post in posts:
        assert answered(post) == 1 and drafts(post) == 1


def test_the_command_says_the_job_paused_and_how_many_pages_wait(
    server_action, make_post, fake_llm, superuser
):
    from io import StringIO

    from django.core.management import CommandError, call_command

    fake_llm.configure(usage=USAGE)
    posts = [make_post() for _ in range(3)]
    LLMBudget.objects.create(
        name="Command cap", max_tokens=cap_for(1, server_action, posts, superuser)
    )
    with pytest.raises(CommandError) as caught:
        call_command("run_llm_action", server_action.slug, "--all", stdout=StringIO())
    message = str(caught.value)
    assert "Paused: budget “Command cap” is exhausted" in message
    assert "2 page(s) wait" in message
    assert fake_llm.request_count == 1


def test_a_pipeline_job_pauses_at_the_refused_step_and_resumes_from_it(
    make_post, fake_llm, server_fields, make_pipeline, superuser, queued
):
    from tests.test_pipeline_jobs import reply
    from wagtail_llm_actions.models import LLMRun

    fake_llm.configure(
        reply=reply,
        usage={"prompt_tokens": 9000, "completion_tokens": 1000, "total_tokens": 10_000},
    )
    pipeline = make_pipeline(
        {
            "name": "outline",
            "prompt_template": "OUTLINE {title}: {body}",
            "writes": False,
            **server_fields,
        },
        {
            "name": "summary",
            "prompt_template": "SUMMARY from {steps.outline}",
            "target_field": "summary",
            **server_fields,
        },
        name="Outline then summary",
        slug="own-only",
    )
    posts = [make_post() for _ in range(2)]
    budget = LLMBudget.objects.create(name="Three calls", max_tokens=30_005)
    job = jobs.create_pipeline_job(pipeline, superuser, [p.pk for p in posts])
    assert jobs.run_job(job.pk) == "paused"
    job.refresh_from_db()
    assert counts(job) == {"succeeded": 1, "queued": 1}
    assert fake_llm.request_count == 3  # both steps of one page, the first of the other
    LLMBudget.objects.filter(pk=budget.pk).update(max_tokens=1_000_000)
    assert pauses.resume_fitting_jobs() == 1
    assert jobs.run_job(job.pk) == "completed"
    assert fake_llm.request_count == 4  # the second page's outline was not asked again
    for post in posts:
        assert drafts(post) == 1
        run = LLMRun.objects.filter(page=post, status="success").get()
        assert LLMInteraction.objects.filter(run=run, status="success").count() == 2
