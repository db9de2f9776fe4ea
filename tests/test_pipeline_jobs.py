"""A pipeline made only of steps with their own prompt runs as a job: from the page listing
(one item, one run, one draft a page), from ``run_llm_action <slug>``, paced by its first
step's provider and stopped when the pipeline is disabled."""

from __future__ import annotations

from io import StringIO
from urllib.parse import urlencode

import pytest
from django.core.management import call_command
from django.urls import reverse
from wagtail.models import Revision

from tests.fakeserver import last_user_message
from tests.threads import in_thread, join_checked
from tests.workers import drain
from wagtail_llm_actions import jobs
from wagtail_llm_actions.models import (
    LLMInteraction,
    LLMJob,
    LLMPipeline,
    LLMPipelineStep,
    LLMProviderSlots,
    LLMRun,
)

pytestmark = pytest.mark.django_db


def bulk_url(pages) -> str:
    base = reverse("wagtail_bulk_action", args=("wagtailcore", "page", "run_llm_pipeline"))
    params = [("id", p.pk) for p in pages] + [("next", "/admin/pages/")]
    return f"{base}?{urlencode(params)}"


def reply(payload) -> str:
    first = last_user_message(payload).split()[0]
    return {"OUTLINE": "outline-answer", "SUMMARY": "summary-answer"}.get(first, "other")


def revisions(page) -> int:
    return Revision.objects.filter(object_id=str(page.pk), base_content_type__model="page").count()


def latest(page):
    return type(page).objects.get(pk=page.pk).get_latest_revision_as_object()


@pytest.fixture
def own_pipeline(fake_llm, server_fields, make_post, make_pipeline):
    """Outline, then a summary from the outline: both steps with their own prompt."""
    fake_llm.configure(reply=reply)
    return make_pipeline(
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


def test_an_own_prompt_pipeline_runs_as_a_bulk_job_one_draft_per_page(
    client, make_post, own_pipeline, superuser, fake_llm, django_assert_max_num_queries
):
    posts = [make_post(title=f"Post {n}") for n in range(3)]
    before = {p.pk: revisions(p) for p in posts}
    client.force_login(superuser)

    # nothing is preselected: the preview of the chosen pipeline
    confirm = client.post(bulk_url(posts), {"pipeline": own_pipeline.pk, "preview": "1"})
    html = confirm.content.decode()
    assert confirm.status_code == 200
    assert "Outline then summary" in html and "3 pages will run" in html
    assert "not as a job" not in html
    assert confirm.context["plan"].estimate.calls == 6  # two steps on each of three pages

    response = client.post(bulk_url(posts), {"pipeline": own_pipeline.pk})
    assert response.status_code == 302
    job = LLMJob.objects.get()
    assert job.pipeline == own_pipeline and job.action is None
    jobs.enqueue_job(job, on_commit=False)
    assert drain() == ["completed"]

    job.refresh_from_db()
    assert job.status == "completed"
    assert fake_llm.request_count == 6
    items = list(job.items.order_by("pk"))
    assert [i.status for i in items] == ["succeeded"] * 3
    for post in posts:
        assert revisions(post) == before[post.pk] + 1  # one draft a page
        assert latest(post).summary == "summary-answer"
    runs = LLMRun.objects.filter(status="success")
    assert runs.count() == 3
    for item in items:
        run = LLMRun.objects.get(pk=item.result["run_id"])
        assert run.page_id == item.page_id
        steps = LLMInteraction.objects.filter(run=run).order_by("pk")
        assert steps.count() == 2  # one interaction per step, linked to the run
        assert item.interaction_id in {i.pk for i in steps}

    # The job page and the listing render without an action.
    with django_assert_max_num_queries(40):
        page = client.get(reverse("wagtail_llm_actions_jobs:detail", args=[job.pk]))
    assert page.status_code == 200
    assert "Outline then summary" in page.content.decode()
    listing = client.get(reverse("wagtail_llm_actions_jobs:index"))
    assert listing.status_code == 200
    assert "Outline then summary" in listing.content.decode()


def test_the_job_page_makes_no_query_per_item(
    client, make_post, own_pipeline, superuser, django_assert_max_num_queries
):
    client.force_login(superuser)
    small = jobs.create_pipeline_job(own_pipeline, superuser, [make_post().pk])
    jobs.run_job(small.pk, threads=1)
    url = reverse("wagtail_llm_actions_jobs:detail", args=[small.pk])
    client.get(url)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as one:
        client.get(url)
    big = jobs.create_pipeline_job(own_pipeline, superuser, [make_post().pk for _ in range(4)])
    jobs.run_job(big.pk, threads=1)
    with django_assert_max_num_queries(len(one)):
        assert (
            client.get(reverse("wagtail_llm_actions_jobs:detail", args=[big.pk])).status_code == 200
        )


def test_the_command_runs_an_own_prompt_pipeline_by_slug(make_post, own_pipeline, superuser):
    posts = [make_post() for _ in range(2)]
    out = StringIO()

    call_command("run_llm_action", "own-only", "--all", "--user", "admin", stdout=out)

    job = LLMJob.objects.get()
    assert job.action is None and job.kind == "command" and job.status == "completed"
    assert "Outline then summary" in out.getvalue()
    assert sorted(job.items.values_list("page_id", flat=True)) == sorted(p.pk for p in posts)
    assert set(job.items.values_list("status", flat=True)) == {"succeeded"}
    assert [latest(p).summary for p in posts] == ["summary-answer"] * 2
    assert LLMInteraction.objects.filter(trigger="command", run__isnull=False).count() == 4


def test_disabling_the_pipeline_mid_job_stops_the_remaining_pages(
    client, make_post, own_pipeline, superuser, monkeypatch
):
    from wagtail_llm_actions import pipelines

    posts = [make_post() for _ in range(4)]
    job = jobs.create_pipeline_job(own_pipeline, superuser, [p.pk for p in posts])
    run_pipeline = pipelines.run_pipeline

    def run_then_disable(*args, **kwargs):
        # The first page's run finishes; the pipeline is disabled meanwhile.
        run = run_pipeline(*args, **kwargs)
        LLMPipeline.objects.filter(pk=own_pipeline.pk).update(enabled=False)
        return run

    monkeypatch.setattr(pipelines, "run_pipeline", run_then_disable)
    jobs.run_job(job.pk, threads=1)

    job.refresh_from_db()
    items = list(job.items.order_by("pk"))
    reason = "The pipeline was disabled while the job ran"
    assert items[0].status == "succeeded"  # the run already under way finished
    assert [(i.status, i.skip_reason) for i in items[1:]] == [("skipped", "pipeline_disabled")] * 3
    assert jobs.skip_reason_label("pipeline_disabled") == reason
    assert job.status == "cancelled" and job.options["stop_reason"] == reason
    assert [revisions(p) for p in posts[1:]] == [revisions(posts[1])] * 3
    assert LLMRun.objects.count() == 1  # no run started after the disable
    client.force_login(superuser)
    page = client.get(reverse("wagtail_llm_actions_jobs:detail", args=[job.pk]))
    assert page.status_code == 200 and reason in page.content.decode()


def test_a_bug_outside_a_step_fails_the_page_and_ends_its_run(
    make_post, own_pipeline, superuser, fake_llm, monkeypatch
):
    """A bug in a page's run outside its steps' own handling fails that page readably and
    ends its run as failed (not "running" for ever); nothing is written."""

    posts = [make_post(title=f"Post {n}") for n in range(2)]
    before = {p.pk: revisions(p) for p in posts}
    job = jobs.create_pipeline_job(own_pipeline, superuser, [p.pk for p in posts])

    def bug(*args, **kwargs):
        raise RuntimeError("internal detail /srv/secret/path")

    monkeypatch.setattr("wagtail_llm_actions.run.recording.new_interaction", bug)
    assert jobs.run_job(job.pk, threads=1) == "completed"

    items = list(job.items.order_by("pk"))
    assert [(i.status, i.error) for i in items] == [
        ("failed", "Unexpected error (RuntimeError).")
    ] * 2
    runs = list(LLMRun.objects.order_by("pk"))
    assert [(r.status, r.finished_at is not None) for r in runs] == [("error", True)] * 2
    assert {r.error_message for r in runs} == {"The pipeline failed unexpectedly (RuntimeError)."}
    assert [i.payload["run"] for i in items] == [r.pk for r in runs]
    assert fake_llm.request_count == 0
    assert {p.pk: revisions(p) for p in posts} == before


def test_deleting_the_pipeline_cancels_its_job(make_post, own_pipeline, superuser):
    job = jobs.create_pipeline_job(own_pipeline, superuser, [make_post().pk])
    own_pipeline.delete()
    assert jobs.run_job(job.pk, threads=1) == "cancelled"
    assert LLMInteraction.objects.count() == 0


def test_the_lease_covers_every_step(own_pipeline, make_action, settings):
    from wagtail_llm_actions.pipelines import job_lease_seconds

    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "LEASE_SECONDS": 100}
    slow = make_action(name="Slow", slug="slow", timeout=200, fallback_models="local/echo")
    LLMPipelineStep.objects.create(
        pipeline=own_pipeline, sort_order=2, name="slow", action=slow, writes=False
    )
    # Own steps: 60 s each (the default); the action: 200 s, again for its fallback.
    assert job_lease_seconds(own_pipeline) == 100 + 60 + 60 + 200 * 2


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_own_prompt_pipeline_jobs_keep_the_provider_limit(
    shared_db, make_post, own_pipeline, fake_llm, superuser, settings
):
    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "CONCURRENCY": {"*": 2}}
    fake_llm.configure(reply=reply, latency=0.1)
    ids = [make_post().pk for _ in range(6)]
    job = jobs.create_pipeline_job(own_pipeline, superuser, ids)
    assert job.action is None and job.options["concurrency"] == 2
    assert job.options["provider"] == "openai"

    # A runner and a helper: each would take the two slots on its own.
    runners = [
        in_thread(lambda: jobs.run_job(job.pk, share=1)),
        in_thread(lambda: jobs.run_job(job.pk, share=1, helper=True)),
    ]
    for thread in runners:
        join_checked(thread)

    job.refresh_from_db()
    assert job.status == "completed"
    assert set(job.items.values_list("status", flat=True)) == {"succeeded"}
    assert fake_llm.request_count == 12
    assert 1 <= fake_llm.max_in_flight <= 2
    assert not LLMProviderSlots.objects.exists()


def test_a_pipeline_without_steps_is_not_offered(
    client, make_post, own_pipeline, superuser, make_pipeline
):
    make_pipeline(name="Empty", slug="empty")
    client.force_login(superuser)

    confirm = client.get(bulk_url([make_post()]))

    offered = list(confirm.context["form"].fields["pipeline"].queryset)
    assert confirm.status_code == 200 and offered == [own_pipeline]


def test_force_on_a_pipeline_says_it_changes_nothing(post, own_pipeline, fake_llm, superuser):
    """Pipelines are never skipped as unchanged (README, "Unchanged pages", says why): a
    second run calls again, and ``--force`` is said to change nothing rather than ignored."""
    for args in ((), ("--force",)):
        err = StringIO()
        call_command(
            "run_llm_action",
            "own-only",
            "--page",
            str(post.pk),
            *args,
            stdout=StringIO(),
            stderr=err,
        )
    assert fake_llm.request_count == 4  # two steps, twice: the second run was not skipped
    assert "--force changes nothing: a pipeline is never skipped as unchanged." in err.getvalue()
