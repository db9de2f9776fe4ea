"""Runs over the recipe test site (tests/testapp): every block, and one page that cannot be read.

A page whose custom block reader raises is one failed page with a message naming the block, in
the bulk confirmation screen, the job, the command, the editor and the interaction log; the
other pages run.
"""

from __future__ import annotations

import io

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from wagtail.models import Page

from tests.recipes import make_recipe, media, recipe_body
from tests.test_bulk import bulk_url, drafts
from tests.testapp.models import RecipePage
from tests.workers import drain
from wagtail_llm_actions import editor, jobs
from wagtail_llm_actions.exceptions import ExtractionError
from wagtail_llm_actions.models import LLMAction, LLMInteraction, LLMJob
from wagtail_llm_actions.service import LLMService

pytestmark = pytest.mark.django_db

BROKEN = "Could not read block “timer” (TimerBlock) in body: a timer cannot run for -5 minutes"


@pytest.fixture
def site():
    """Three good recipes (all blocks) and one whose timer block cannot be read."""
    m = media()
    root = Page.get_first_root_node()
    good = [make_recipe(root, m, "Chili oil", "chili-oil")]
    good += [
        make_recipe(root, m, title, slug, body=recipe_body(m, related=good[0], timer=n))
        for n, (title, slug) in enumerate(
            [("Pork dumplings", "dumplings"), ("Prawn dumplings", "prawns")], start=10
        )
    ]
    broken = make_recipe(root, m, "Leek dumplings", "leek", body=recipe_body(m, timer=-5))
    return {"good": good, "broken": broken, "all": [*good, broken]}


@pytest.fixture
def recipe_action(prompt):
    action = LLMAction.objects.create(
        name="Recipe summary",
        slug="recipe-summary",
        source_field="body",
        target_field="teaser",
        model="local/extractive",
        prompt=prompt,
        timeout=5,
    )
    action.page_types.set([ContentType.objects.get_for_model(RecipePage)])
    return action


def test_confirmation_screen_lists_the_unreadable_page_and_counts_the_rest(
    site, recipe_action, superuser
):
    client = Client()
    client.force_login(superuser)

    # nothing is preselected: the preview of the chosen action
    response = client.post(bulk_url(site["all"]), {"action": recipe_action.pk, "preview": "1"})

    html = response.content.decode()
    assert response.status_code == 200
    assert "4 pages selected" in html and "3 pages will run" in html
    assert "Cannot be read: these pages will fail" in html
    assert f'data-llm-error-page="{site["broken"].pk}"' in html
    assert "Leek dumplings" in html
    assert "Could not read block “timer” (TimerBlock) in body" in html


def test_bulk_job_runs_the_good_pages_and_fails_the_unreadable_one(site, recipe_action, superuser):
    job = jobs.create_job(recipe_action, superuser, [p.pk for p in site["all"]])
    jobs.enqueue_job(job, on_commit=False)

    assert drain() == ["completed"]

    job.refresh_from_db()
    items = {item.page_id: item for item in job.items.all()}
    assert [items[p.pk].status for p in site["good"]] == ["succeeded"] * 3
    assert all(drafts(p) == 1 for p in site["good"])
    broken = items[site["broken"].pk]
    assert broken.status == "failed" and broken.error == BROKEN
    assert drafts(site["broken"]) == 0
    failure = LLMInteraction.objects.get(page=site["broken"])
    assert failure.status == "error" and failure.error_code == "extraction"
    assert failure.error_message == BROKEN and failure.total_tokens is None
    # Every good page's answer respects the 120-character teaser field.
    for page in site["good"]:
        teaser = RecipePage.objects.get(pk=page.pk).get_latest_revision_as_object().teaser
        assert 0 < len(teaser) <= 120

    detail = Client()
    detail.force_login(superuser)
    html = detail.get(reverse("wagtail_llm_actions_jobs:detail", args=[job.pk])).content.decode()
    assert "Could not read block “timer” (TimerBlock) in body" in html


def test_rerun_skips_unchanged_recipes(site, recipe_action, superuser):
    for _ in range(2):
        job = jobs.create_job(recipe_action, superuser, [p.pk for p in site["good"]])
        jobs.enqueue_job(job, on_commit=False)
        drain()

    second = LLMJob.objects.first()
    assert set(second.items.values_list("skip_reason", flat=True)) == {"unchanged"}


def test_command_reports_the_unreadable_page_and_runs_the_others(site, recipe_action):
    out, err = io.StringIO(), io.StringIO()

    with pytest.raises(CommandError):
        call_command("run_llm_action", recipe_action.slug, "--all", stdout=out, stderr=err)

    assert LLMInteraction.objects.filter(status="success").count() == 3
    assert "Succeeded: 3" in out.getvalue()
    assert "Could not read block “timer” (TimerBlock)" in out.getvalue() + err.getvalue()


def test_one_page_command_and_python_api_raise_the_app_error(site, recipe_action):
    with pytest.raises(CommandError) as exc:
        call_command(
            "run_llm_action",
            recipe_action.slug,
            "--page",
            str(site["broken"].pk),
            stdout=io.StringIO(),
            stderr=io.StringIO(),
        )
    assert "failed" in str(exc.value)

    with pytest.raises(ExtractionError) as error:
        LLMService().run(recipe_action, site["broken"])
    assert error.value.message == BROKEN
    assert error.value.interaction.pk and error.value.interaction.error_code == "extraction"


def test_editor_run_shows_the_block_error(site, recipe_action, superuser):
    page = site["broken"]
    obj = page.get_latest_revision_as_object()
    job = editor.create_editor_job(recipe_action, page, obj, superuser)

    assert editor.run_editor_job(job.items.get().pk) == "failed"

    client = Client()
    client.force_login(superuser)
    response = client.get(reverse("wagtail_llm_actions_editor:status", args=[job.pk]))
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "failed" and body["message"] == BROKEN
