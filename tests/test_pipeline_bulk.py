"""Pipelines from the page listing: the bulk action, its estimate, and the job it starts."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.urls import reverse
from wagtail.models import Revision

from tests.workers import drain
from wagtail_llm_actions import jobs
from wagtail_llm_actions.models import LLMJob, LLMPrompt, LLMRun

pytestmark = pytest.mark.django_db


def bulk_url(pages) -> str:
    base = reverse("wagtail_bulk_action", args=("wagtailcore", "page", "run_llm_pipeline"))
    params = [("id", p.pk) for p in pages] + [("next", "/admin/pages/")]
    return f"{base}?{urlencode(params)}"


@pytest.fixture
def local_pipeline(make_action, make_pipeline):
    keywords = make_action(name="Keywords", slug="keywords", model="local/keywords")
    prompt = LLMPrompt.objects.create(
        name="Intro from keywords",
        slug="intro-from-keywords",
        template="Write an intro.\n\nKeywords: {steps.keywords}\n\n{body}",
    )
    intro = make_action(
        name="Intro", slug="intro", model="local/extractive", target_field="intro", prompt=prompt
    )
    return make_pipeline(
        {"name": "keywords", "action": keywords, "writes": False},
        {"name": "intro", "action": intro},
        name="Keywords then intro",
        slug="kw-intro",
        page_types=False,
    )


def test_bulk_pipeline_estimates_all_steps_and_writes_one_draft_per_page(
    client, make_post, local_pipeline, superuser
):
    posts = [make_post(title="Worm bins"), make_post(title="Leaf mould")]
    before = {p.pk: Revision.objects.filter(object_id=str(p.pk)).count() for p in posts}
    client.force_login(superuser)

    confirm = client.post(bulk_url(posts), {"pipeline": local_pipeline.pk, "preview": "1"})
    html = confirm.content.decode()
    assert confirm.status_code == 200
    assert "Keywords then intro" in html and "2 pages will run" in html
    plan = confirm.context["plan"]
    assert plan.estimate.calls == 4  # two steps on each of two pages
    single = jobs.plan_job(
        local_pipeline.ordered_steps()[0].action, superuser, [p.pk for p in posts]
    )
    assert plan.estimate.prompt_tokens > single.estimate.prompt_tokens

    response = client.post(bulk_url(posts), {"pipeline": local_pipeline.pk})
    assert response.status_code == 302
    job = LLMJob.objects.get()
    assert job.pipeline == local_pipeline and job.action_name == "Keywords then intro"
    jobs.enqueue_job(job, on_commit=False)
    assert drain() == ["completed"]

    assert LLMRun.objects.filter(status="success").count() == 2
    for post in posts:
        assert Revision.objects.filter(object_id=str(post.pk)).count() == before[post.pk] + 1
        draft = type(post).objects.get(pk=post.pk).get_latest_revision_as_object()
        assert draft.intro and draft.intro != post.intro


def test_the_one_page_job_endpoint_starts_a_job_on_the_saved_page(
    client, post, local_pipeline, superuser
):
    client.force_login(superuser)
    before = Revision.objects.filter(object_id=str(post.pk)).count()

    # The editor offers the pipeline on its unsaved form (tests/test_editor_pipelines.py),
    # no longer this job on the last saved revision; the endpoint still works when posted to.
    html = client.get(reverse("wagtailadmin_pages:edit", args=[post.pk])).content.decode()
    editor_url = reverse(
        "wagtail_llm_actions_editor:run_pipeline", args=[post.pk, local_pipeline.pk]
    )
    run_url = reverse("wagtail_llm_actions_pipelines:run", args=[post.pk, local_pipeline.pk])
    assert editor_url in html and "Keywords then intro" in html
    assert run_url not in html

    response = client.post(run_url)
    job = LLMJob.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("wagtail_llm_actions_jobs:detail", args=[job.pk])
    jobs.enqueue_job(job, on_commit=False)
    assert drain() == ["completed"]
    assert Revision.objects.filter(object_id=str(post.pk)).count() == before + 1


def test_action_menu_run_needs_edit_permission(client, post, local_pipeline, outsider):
    client.force_login(outsider)
    run_url = reverse("wagtail_llm_actions_pipelines:run", args=[post.pk, local_pipeline.pk])
    assert client.post(run_url).status_code in (302, 403)
    assert not LLMJob.objects.exists()


def test_bulk_offers_a_pipeline_whose_first_step_has_its_own_prompt(
    client, make_post, make_action, superuser, make_pipeline
):
    keywords = make_action(name="Keywords", slug="keywords", model="local/keywords")
    pipeline = make_pipeline(
        {
            "name": "summary",
            "prompt_template": "Summarise {title}: {body}",
            "model": "local/extractive",
            "target_field": "summary",
        },
        {"name": "keywords", "action": keywords, "writes": False},
        name="Own summary then keywords",
        slug="own",
    )
    posts = [make_post(title="Worm bins"), make_post(title="Leaf mould")]
    client.force_login(superuser)

    confirm = client.post(bulk_url(posts), {"pipeline": pipeline.pk, "preview": "1"})
    assert "Own summary then keywords" in confirm.content.decode()
    assert confirm.context["plan"].estimate.calls == 4

    client.post(bulk_url(posts), {"pipeline": pipeline.pk})
    job = LLMJob.objects.get()
    jobs.enqueue_job(job, on_commit=False)
    assert drain() == ["completed"]
    for post in posts:
        draft = type(post).objects.get(pk=post.pk).get_latest_revision_as_object()
        assert draft.summary and draft.summary != post.summary
