"""Canary before bulk: a changed action runs on a sample first, old and new answers side by
side; the site can require a reviewed canary before a bulk run of a changed action."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.test_job_page import bulk_url
from wagtail_llm_actions import canary, jobs
from wagtail_llm_actions.models import LLMJob

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def start_url(action, pages=None) -> str:
    url = reverse("wagtail_llm_actions_review:canary_start", args=[action.pk])
    return url + ("?" + "&".join(f"id={p.pk}" for p in pages) if pages else "")


def run_canary(client, action, data, pages=None) -> LLMJob:
    response = client.post(start_url(action, pages), data)
    assert response.status_code == 302, response.content[:500]
    job = LLMJob.objects.order_by("-pk").first()
    assert canary.is_canary(job)
    assert response.url == reverse("wagtail_llm_actions_review:canary", args=[job.pk])
    jobs.run_job(job.pk)
    job.refresh_from_db()
    return job


@pytest.fixture
def posts(make_post):
    return [make_post() for _ in range(8)]


@pytest.fixture
def require_canary(settings):
    settings.WAGTAIL_LLM_ACTIONS = {
        **settings.WAGTAIL_LLM_ACTIONS,
        "REQUIRE_CANARY": True,
        "CANARY_SIZE": 2,
    }


def test_a_random_sample_shows_old_and_new_answers_side_by_side(posts, action, editor, prompt):
    # the action ran once over the first page: that is its previous answer there
    first = jobs.create_job(action, editor, [posts[0].pk])
    jobs.run_job(first.pk)
    old = first.items.get().interaction
    old_answer = type(old).objects.get(pk=old.pk).output_value
    assert old_answer

    prompt.template = "Summarize briefly:\n\n{body}"
    prompt.save()
    client = client_for(editor)
    page = client.get(start_url(action)).content.decode()
    assert "has changed since its last bulk run" in page
    # a first canary on three pages (the second among them): its answers try the new
    # settings, so they are not the "previous answer" of a later canary
    job = run_canary(client, action, {"size": "3"}, pages=posts[1:5])
    assert job.items.count() == 3
    job = run_canary(client, action, {"size": "3"}, pages=posts[1:4])
    job = run_canary(client, action, {"page": [posts[0].pk, posts[1].pk]})
    assert sorted(job.items.values_list("page_id", flat=True)) == [posts[0].pk, posts[1].pk]

    html = client.get(reverse("wagtail_llm_actions_review:canary", args=[job.pk])).content.decode()
    rows = {
        int(pk): row
        for pk, row in (part.split('"', 1) for part in html.split('data-llm-canary-page="')[1:])
    }
    assert old_answer.split(".")[0] in rows[posts[0].pk]
    assert "The action has not run on this page before." in rows[posts[1].pk]
    new = job.items.get(page=posts[1]).interaction.output_value
    assert new and new.split(".")[0] in rows[posts[1].pk]
    assert "2 drafts are waiting for review." in html
    assert reverse("wagtail_llm_actions_review:queue", args=[job.pk]) in html


def test_pages_picked_from_the_bulk_selection_only(posts, action, editor):
    job = run_canary(client_for(editor), action, {"size": "5"}, pages=posts[:3])
    assert sorted(job.items.values_list("page_id", flat=True)) == [p.pk for p in posts[:3]]


def test_starting_a_canary_needs_page_permissions_and_csrf(posts, action, outsider, editor):
    assert client_for(outsider).get(start_url(action)).status_code == 302  # refused
    client = Client(enforce_csrf_checks=True)
    client.force_login(editor)
    assert client.post(start_url(action), {"size": "2"}).status_code == 403
    assert not LLMJob.objects.exists()


def confirm(client, pages, action, start=False):
    data = {"action": action.pk}
    if not start:
        data["preview"] = "1"
    return client.post(bulk_url(pages), data)


def test_a_changed_action_needs_a_reviewed_canary_before_a_bulk_run(
    require_canary, posts, action, editor
):
    client = client_for(editor)
    response = confirm(client, posts, action)
    html = response.content.decode()
    assert "data-llm-canary-required" in html
    assert "has changed since its last bulk run" in html
    assert start_url(action, posts) in html.replace("&amp;", "&")
    assert "data-llm-start disabled" in html
    response = confirm(client, posts, action, start=True)
    assert response.status_code == 200 and not LLMJob.objects.exists()
    assert "this site asks for a canary first" in response.content.decode()

    # a small run (no more pages than a canary) is not held back
    assert "data-llm-canary-required" not in confirm(client, posts[:2], action).content.decode()

    job = run_canary(client, action, {"size": "2"}, pages=posts)
    assert "data-llm-canary-required" in confirm(client, posts, action).content.decode()
    # reviewed: one draft accepted, one rejected
    pages = list(job.items.values_list("page_id", flat=True))
    act = reverse("wagtail_llm_actions_review:act", args=[job.pk])
    client.post(act, {"page": pages[0], "decision": "accept"})
    client.post(act, {"page": pages[1], "decision": "reject"})
    assert canary.is_reviewed(job)
    html = confirm(client, posts, action).content.decode()
    assert "data-llm-canary-required" not in html

    response = confirm(client, posts, action, start=True)
    assert response.status_code == 302
    bulk = LLMJob.objects.exclude(pk=job.pk).get()
    assert not canary.is_canary(bulk)

    # changed again after a finished bulk run: a new canary is needed
    jobs.run_job(bulk.pk)
    assert "data-llm-canary-required" not in confirm(client, posts, action).content.decode()
    action.max_tokens = 99
    action.save()
    assert "data-llm-canary-required" in confirm(client, posts, action).content.decode()


def test_without_the_setting_no_canary_is_asked(posts, action, editor):
    html = confirm(client_for(editor), posts, action).content.decode()
    assert "data-llm-canary-required" not in html


# -- the site setting (Settings → Bulk runs) and what counts as a last run (audit of issue 21)


def site_rule(rule: str) -> None:
    from wagtail.models import Site

    from wagtail_llm_actions.models import BulkRunSettings

    settings_row = BulkRunSettings.for_site(Site.objects.get(is_default_site=True))
    settings_row.require_canary = rule
    settings_row.save()


def test_the_site_setting_asks_for_a_canary_and_falls_back_to_the_django_setting(
    settings, posts, action, editor, superuser
):
    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "CANARY_SIZE": 2}
    client = client_for(editor)
    assert "data-llm-canary-required" not in confirm(client, posts, action).content.decode()

    site_rule("required")  # the site asks, the Django setting does not
    assert "data-llm-canary-required" in confirm(client, posts, action).content.decode()

    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "REQUIRE_CANARY": True}
    site_rule("not_required")  # the site's choice wins over the Django setting
    assert "data-llm-canary-required" not in confirm(client, posts, action).content.decode()
    site_rule("")  # "as configured": the Django setting
    assert "data-llm-canary-required" in confirm(client, posts, action).content.decode()

    # an administrator finds it under Settings
    admin = client_for(superuser)
    assert "Bulk runs" in admin.get(reverse("wagtailadmin_home")).content.decode()


def test_the_last_run_is_the_last_bulk_job_that_wrote_a_page_whatever_its_status(
    posts, action, editor
):
    from wagtail_llm_actions.models import JobStatus, LLMJobItem

    assert canary.changed_since_last_run(action)  # never ran

    # every page failed: the action never wrote anything as it is, so it still counts as changed
    failed = jobs.create_job(action, editor, [p.pk for p in posts[:3]])
    jobs.run_job(failed.pk)
    LLMJobItem.objects.filter(job=failed).update(status="failed")
    assert canary.changed_since_last_run(action)

    # cancelled half way, after writing a page: it ran the action as it is now
    cancelled = jobs.create_job(action, editor, [p.pk for p in posts[3:6]])
    jobs.run_job(cancelled.pk)
    first = cancelled.items.order_by("pk").first()
    cancelled.items.exclude(pk=first.pk).update(status="cancelled")
    LLMJob.objects.filter(pk=cancelled.pk).update(status=JobStatus.CANCELLED)
    assert not canary.changed_since_last_run(action)

    action.max_tokens = 77
    action.save()
    assert canary.changed_since_last_run(action)
