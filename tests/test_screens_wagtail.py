"""The operations screens on Wagtail's own patterns (issue 21 §3): the jobs listing is
Wagtail's listing (sorting, pagination, filters, status tags, empty state), the job page's
pages are Wagtail's table, the interaction detail has Wagtail's header actions and status
tag, and the screens show labels, not codes."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.interactions_factory import make_one
from wagtail_llm_actions import jobs
from wagtail_llm_actions.models import LLMJob, LLMJobItem, LLMPipeline, LLMPrompt

pytestmark = pytest.mark.django_db

INDEX = "wagtail_llm_actions_jobs:index"


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def job_ids(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'data-llm-job="(\d+)"', html)]


# -- the jobs listing ----------------------------------------------------------------------


def test_the_jobs_listing_sorts_by_its_columns(make_post, action, make_action, editor):
    other = make_action(name="Another action", slug="another")
    first = jobs.create_job(action, editor, [make_post().pk])
    second = jobs.create_job(other, editor, [make_post().pk, make_post().pk])
    client = client_for(editor)
    url = reverse(INDEX)

    html = client.get(url).content.decode()
    assert job_ids(html) == [second.pk, first.pk]  # newest first
    assert 'href="/admin/llm-actions/jobs/?ordering=action_name"' in html  # sortable header
    by_name = client.get(url, {"ordering": "action_name"}).content.decode()
    assert job_ids(by_name) == [second.pk, first.pk]  # "Another action" before "Generate"
    by_size = client.get(url, {"ordering": "-n_total"}).content.decode()
    assert job_ids(by_size) == [second.pk, first.pk]
    assert job_ids(client.get(url, {"ordering": "n_total"}).content.decode()) == [
        first.pk,
        second.pk,
    ]


def test_the_jobs_listing_is_paginated_and_filtered_in_wagtails_drawer(post, action, editor):
    for _ in range(35):
        jobs.create_job(action, editor, [post.pk])
    client = client_for(editor)
    html = client.get(reverse(INDEX)).content.decode()
    assert len(job_ids(html)) == 30
    assert "Page 1 of 2" in html
    assert len(job_ids(client.get(reverse(INDEX), {"p": 2}).content.decode())) == 5
    # Wagtail's filters drawer, with the fields the listing filters on
    assert 'data-controller="w-drilldown"' in html
    for name in ("status", "kind", "user", "created_at_from"):
        assert f'name="{name}"' in html
    # the results-only view the drawer refreshes
    results = client.get(reverse("wagtail_llm_actions_jobs:index_results"), {"kind": "bulk"})
    assert results.status_code == 200 and "<html" not in results.content.decode()


def test_the_jobs_listing_shows_status_tags_and_an_empty_state(make_post, action, editor):
    client = client_for(editor)
    empty = client.get(reverse(INDEX)).content.decode()
    assert "No jobs yet. Select pages in the page listing" in empty
    job = jobs.create_job(action, editor, [make_post().pk])
    LLMJobItem.objects.filter(job=job).update(status="succeeded")
    LLMJob.objects.filter(pk=job.pk).update(status="completed")
    html = client.get(reverse(INDEX)).content.decode()
    assert re.search(r'<span class="w-status w-status--primary">\s*Completed\s*</span>', html)
    filtered = client.get(reverse(INDEX), {"status": "failed"}).content.decode()
    assert "No jobs match these filters." in filtered


def test_the_jobs_listing_runs_the_same_queries_for_any_number_of_jobs(
    make_post, action, editor, superuser
):
    """Each job has a user with a profile (the avatar) and pages of several statuses."""
    posts = [make_post() for _ in range(3)]
    client = client_for(superuser)

    def add_jobs(n: int) -> None:
        for i in range(n):
            job = jobs.create_job(action, editor if i % 2 else superuser, [p.pk for p in posts])
            first, second, _third = job.items.order_by("pk")
            LLMJobItem.objects.filter(pk=first.pk).update(status="failed")
            LLMJobItem.objects.filter(pk=second.pk).update(status="succeeded")

    def count() -> int:
        client.get(reverse(INDEX))
        with CaptureQueriesContext(connection) as queries:
            assert client.get(reverse(INDEX), {"ordering": "-n_failed"}).status_code == 200
        return len(queries)

    add_jobs(2)
    few = count()
    add_jobs(38)
    assert count() == few <= 12


# -- the job page --------------------------------------------------------------------------


def test_the_job_pages_pages_are_wagtails_sortable_table(make_post, action, editor):
    posts = [make_post(title=title) for title in ("Beta", "Alpha", "Gamma")]
    job = jobs.create_job(action, editor, [p.pk for p in posts])
    LLMJobItem.objects.filter(job=job, page=posts[0]).update(status="succeeded")
    client = client_for(editor)
    url = reverse("wagtail_llm_actions_jobs:detail", args=[job.pk])
    html = client.get(url, {"ordering": "title"}).content.decode()
    assert re.findall(r">\s*(Alpha|Beta|Gamma)\s*<", html) == ["Alpha", "Beta", "Gamma"]
    assert f'href="{url}?ordering=-title"' in html  # click again: descending
    assert re.search(r'<span class="w-status w-status--primary">\s*Succeeded\s*</span>', html)
    assert re.search(r'<span class="w-status">\s*Queued\s*</span>', html)
    # breadcrumbs back to the listing, in Wagtail's header
    assert 'href="/admin/llm-actions/jobs/"' in html and "w-breadcrumbs" in html


# -- the interaction detail ----------------------------------------------------------------


def test_the_interaction_detail_shows_labels_not_codes(post, action, superuser):
    interaction = make_one(
        action=action,
        page=post,
        status="error",
        error_code="connection",
        error_message="The model server could not be reached.",
        messages=[
            {"role": "system", "content": "You summarise."},
            {"role": "user", "content": "Summarise this."},
        ],
        output_values={"summary": "A summary."},
        previous_values={"summary": ""},
    )
    html = (
        client_for(superuser)
        .get(reverse("wagtail_llm_actions_report:detail", args=[interaction.pk]))
        .content.decode()
    )
    error = html.split("data-llm-error>")[1][:300]
    assert "Connection failed" in error and "<code>connection</code>" not in error
    assert re.search(r'<h3 class="w-h4">System</h3>', html)
    assert re.search(r'<h3 class="w-h4">User</h3>', html)
    assert ">system<" not in html and ">user<" not in html
    field = html.split('data-llm-field="summary"')[1][:200]
    assert "<td>Summary</td>" in field and "<code>summary</code>" not in field
    assert re.search(r'data-llm-status>\s*<span class="w-status">\s*Error\s*</span>', html)
    # "Open in editor" is a header action, as on Wagtail's own pages
    header = html.split("<header")[1].split("</header>")[0]
    assert "Open in editor" in header and "data-llm-open-editor" in header


# -- snippet listings: words, not Python values ------------------------------------------


def test_the_prompts_listing_shows_variables_as_words(client, superuser, prompt):
    prompt.template = "{title} {intro} {body.paragraph}"
    prompt.save()
    client.force_login(superuser)
    html = client.get(reverse("wagtailsnippets_wagtail_llm_actions_llmprompt:list")).content
    html = html.decode()
    assert "[&#x27;" not in html and "['" not in html
    assert "title, intro, body.paragraph" in html
    assert LLMPrompt.objects.count() == 1


def test_the_pipelines_listing_shows_a_status_tag_not_true(client, superuser):
    LLMPipeline.objects.create(name="Outline then summary", slug="outline", enabled=True)
    LLMPipeline.objects.create(name="Old", slug="old", enabled=False)
    client.force_login(superuser)
    html = client.get(
        reverse("wagtailsnippets_wagtail_llm_actions_llmpipeline:list")
    ).content.decode()
    rows = html.split("<tbody>")[1].split("</tbody>")[0]
    assert "True" not in rows and "False" not in rows
    tags = re.findall(r'<span class="(w-status[^"]*)">\s*(Enabled|Disabled)\s*</span>', rows)
    assert sorted(tags) == [("w-status", "Disabled"), ("w-status w-status--primary", "Enabled")]


def test_the_page_history_names_fields_by_their_labels(post, action, superuser):
    from wagtail.models import PageLogEntry

    from wagtail_llm_actions import log_actions

    PageLogEntry.objects.log_action(
        post,
        log_actions.GENERATE,
        user=superuser,
        data={"target_field": "summary, body", "llm_action": {"name": action.name}},
    )
    entry = PageLogEntry.objects.filter(action=log_actions.GENERATE).get()
    assert entry.message == "Generated Summary, Body with “Generate summary” (draft)"
