"""The review queue of a bulk job: every draft, its changes, and Accept / Reject."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from wagtail.models import PageLogEntry, WorkflowState

from tests.conftest import _admin_group
from tests.test_pipeline_jobs import own_pipeline  # noqa: F401 - a fixture
from tests.test_structured import GOOD
from wagtail_llm_actions import jobs, log_actions
from wagtail_llm_actions.models import LLMInteraction

pytestmark = pytest.mark.django_db


def client_for(user, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def queue_url(job) -> str:
    return reverse("wagtail_llm_actions_review:queue", args=[job.pk])


def act_url(job) -> str:
    return reverse("wagtail_llm_actions_review:act", args=[job.pk])


def latest(page):
    return type(page).objects.get(pk=page.pk).get_latest_revision_as_object()


def revision_count(page) -> int:
    return type(page).objects.get(pk=page.pk).revisions.count()


def row_ids(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'data-llm-review-page="(\d+)"', html)]


def messages_of(response) -> list[str]:
    return [str(m).strip() for m in response.context["messages"]] if response.context else []


@pytest.fixture
def posts(make_post):
    return [make_post() for _ in range(3)]


@pytest.fixture
def done_job(posts, action, editor):
    """A finished job of 3 pages, each with a draft summary written by the job."""
    job = jobs.create_job(action, editor, [p.pk for p in posts])
    jobs.run_job(job.pk)
    return job


def interaction_of(job, page) -> LLMInteraction:
    return LLMInteraction.objects.get(pk=job.items.get(page=page).interaction_id)


def decide(client, job, page, decision="accept", **extra):
    data = {"page": [page.pk] if not isinstance(page, list) else [p.pk for p in page]}
    data.update(decision=decision, **extra)
    return client.post(act_url(job), data, follow=True)


# -- the queue -------------------------------------------------------------------------


def test_job_page_links_to_the_queue(done_job, editor):
    html = client_for(editor).get(reverse("wagtail_llm_actions_jobs:detail", args=[done_job.pk]))
    assert queue_url(done_job) in html.content.decode()
    assert "Review drafts" in html.content.decode()


def test_queue_shows_each_draft_with_wagtails_diff(done_job, posts, editor):
    response = client_for(editor).get(queue_url(done_job))
    html = response.content.decode()
    assert response.status_code == 200
    assert row_ids(html) == [p.pk for p in posts]
    # Wagtail's comparison: the summary field, its new text marked as an addition
    summary = latest(posts[0]).summary
    assert summary and summary.split(".")[0] in html
    assert re.search(r'<span class="addition">[^<]*Post 1 talks about compost', html)
    assert "To review (3)" in html
    # header with breadcrumbs back to the job
    assert reverse("wagtail_llm_actions_jobs:detail", args=[done_job.pk]) in html
    assert 'data-controller="llm-review-queue"' in html
    assert "review-queue-controller.js" in html


def test_empty_state(make_post, action, editor):
    job = jobs.create_job(action, editor, [make_post().pk])
    html = client_for(editor).get(queue_url(job)).content.decode()
    assert "This job wrote no drafts you can review" in html
    assert row_ids(html) == []


def test_only_pages_the_user_may_edit_are_listed(
    done_job, posts, outsider, django_user_model, blog_index
):
    # outsider cannot see the job at all
    response = client_for(outsider).get(queue_url(done_job))
    assert response.status_code == 302  # Wagtail's refusal: back to the dashboard
    # a user who may see every job but edit only the first page
    user = django_user_model.objects.create_user("partial", "p@example.com", "password")
    group = _admin_group("One page", posts[0])
    group.permissions.add(Permission.objects.get(codename="view_llmjob"))
    user.groups.add(group)
    client = client_for(user)
    html = client.get(queue_url(done_job)).content.decode()
    assert row_ids(html) == [posts[0].pk]
    # and may not act on another page
    before = interaction_of(done_job, posts[1]).outcome
    response = decide(client, done_job, posts[1], "reject")
    assert "you may not edit it" in " ".join(messages_of(response))
    assert interaction_of(done_job, posts[1]).outcome == before
    assert revision_count(posts[1]) == 2


def test_decisions_need_the_csrf_token(done_job, posts, editor):
    client = client_for(editor, csrf=True)
    response = client.post(act_url(done_job), {"page": posts[0].pk, "decision": "accept"})
    assert response.status_code == 403
    assert interaction_of(done_job, posts[0]).outcome == "drafted"
    html = client.get(queue_url(done_job)).content.decode()
    assert html.count('name="csrfmiddlewaretoken"') >= 3


# -- accept ----------------------------------------------------------------------------


def test_accept_keeps_the_draft_and_records_the_outcome(done_job, posts, editor, superuser):
    client = client_for(editor)
    drafts = revision_count(posts[0])
    response = decide(client, done_job, posts[0])
    assert "1 draft accepted." in messages_of(response)
    interaction = interaction_of(done_job, posts[0])
    assert interaction.outcome == "accepted"
    assert revision_count(posts[0]) == drafts
    assert not type(posts[0]).objects.get(pk=posts[0].pk).summary  # not published
    # the row is now accepted, the others still to review
    html = client.get(queue_url(done_job)).content.decode()
    assert f'data-llm-review-page="{posts[0].pk}" data-llm-review-state="accepted"' in html
    assert "To review (2)" in html and "Accepted (1)" in html
    # and the interaction report says so
    report = client_for(superuser).get(
        reverse("wagtail_llm_actions_report:detail", args=[interaction.pk])
    )
    assert "Accepted as generated" in report.content.decode()


def test_accept_and_publish_checks_the_publish_permission(done_job, posts, editor, superuser):
    # editors of the blog may edit but not publish
    response = decide(client_for(editor), done_job, posts[0], then="publish")
    assert any("You may not publish" in m for m in messages_of(response))
    assert interaction_of(done_job, posts[0]).outcome == "drafted"
    assert not type(posts[0]).objects.get(pk=posts[0].pk).summary

    response = decide(client_for(superuser), done_job, posts[0], then="publish")
    assert "1 draft accepted and published." in messages_of(response)
    live = type(posts[0]).objects.get(pk=posts[0].pk)
    assert live.summary and live.summary == latest(posts[0]).summary
    assert not live.has_unpublished_changes
    html = client_for(superuser).get(queue_url(done_job)).content.decode()
    assert "Published" in html


def test_accept_and_submit_for_moderation(done_job, posts, editor):
    response = decide(client_for(editor), done_job, posts[1], then="submit")
    assert "1 draft accepted and submitted for moderation." in messages_of(response)
    state = WorkflowState.objects.get(object_id=str(posts[1].pk))
    assert state.status == "in_progress"
    assert state.current_task_state.revision_id == interaction_of(done_job, posts[1]).revision_id
    # in moderation now: submitting again is refused, with Wagtail's reason
    response = decide(client_for(editor), done_job, posts[1], then="submit")
    assert any("moderation" in m for m in messages_of(response)), messages_of(response)
    assert WorkflowState.objects.filter(object_id=str(posts[1].pk)).count() == 1


def test_publish_refused_when_someone_saved_a_newer_draft(done_job, posts, superuser):
    page = latest(posts[0])
    page.intro = "Changed by hand"
    page.save_revision(user=superuser)
    response = decide(client_for(superuser), done_job, posts[0], then="publish")
    assert any("has a newer draft" in m for m in messages_of(response))
    assert not type(posts[0]).objects.get(pk=posts[0].pk).summary


def test_bulk_accept_of_the_selected_rows(done_job, posts, editor):
    response = decide(client_for(editor), done_job, posts[:2])
    assert "2 drafts accepted." in messages_of(response)
    assert [interaction_of(done_job, p).outcome for p in posts] == [
        "accepted",
        "accepted",
        "drafted",
    ]


def test_bulk_reject_is_refused(done_job, posts, editor):
    response = decide(client_for(editor), done_job, posts[:2], "reject")
    assert "Reject one page at a time." in messages_of(response)
    assert revision_count(posts[0]) == 2


# -- reject ----------------------------------------------------------------------------


def test_reject_restores_the_previous_value_as_discard_does(done_job, posts, editor):
    client = client_for(editor)
    assert latest(posts[2]).summary
    response = decide(client, done_job, posts[2], "reject")
    assert "Rejected: a new draft restores the previous value." in messages_of(response)
    assert latest(posts[2]).summary == ""
    assert revision_count(posts[2]) == 3
    interaction = interaction_of(done_job, posts[2])
    assert interaction.outcome == "discarded"
    entry = PageLogEntry.objects.filter(page=posts[2], action=log_actions.DISCARD).get()
    assert entry.data["interaction_id"] == interaction.pk
    html = client.get(queue_url(done_job)).content.decode()
    assert f'data-llm-review-page="{posts[2].pk}" data-llm-review-state="rejected"' in html
    # a rejected draft is not accepted afterwards
    response = decide(client, done_job, posts[2])
    assert any("cannot be accepted again" in m for m in messages_of(response))


# -- per field (a structured action writes several fields) -------------------------------


@pytest.fixture
def structured_job(posts, make_action, fake_llm, api_key_env, superuser):
    from tests.test_structured import MAPPING

    fake_llm.configure(json_reply=GOOD)
    action = make_action(
        name="SEO fields",
        slug="seo-fields",
        target_field="",
        output_fields=dict(MAPPING),
        model="openai/fake-model",
        api_base=fake_llm.url,
        api_key_name=api_key_env,
    )
    job = jobs.create_job(action, superuser, [posts[0].pk])
    jobs.run_job(job.pk)
    return job


def test_accept_and_reject_per_field(structured_job, posts, superuser):
    client = client_for(superuser)
    html = client.get(queue_url(structured_job)).content.decode()
    for field in ("seo_title", "search_description", "summary"):
        assert f'data-llm-review-field="{field}"' in html
    assert 'Reject field<span class="w-sr-only"> “Summary”</span>' in html
    response = decide(client, structured_job, posts[0], "reject", field="summary")
    assert "Rejected: a new draft restores the previous value." in messages_of(response)
    draft = latest(posts[0])
    assert draft.summary == "" and draft.seo_title == GOOD["title"]
    interaction = interaction_of(structured_job, posts[0])
    assert interaction.field_outcomes == {"summary": "discarded"}
    assert interaction.outcome == "drafted"

    decide(client, structured_job, posts[0], field="seo_title")
    interaction.refresh_from_db()
    assert interaction.field_outcomes == {"summary": "discarded", "seo_title": "accepted"}
    html = client.get(queue_url(structured_job)).content.decode()
    assert 'data-llm-review-state="partly"' in html

    # accepting the page accepts the fields left: some were put back, so "edited"
    decide(client, structured_job, posts[0])
    interaction.refresh_from_db()
    assert interaction.field_outcomes["tags"] == "accepted"
    assert interaction.outcome == "edited"
    assert latest(posts[0]).summary == ""


# -- no N+1 --------------------------------------------------------------------------------


def queue_queries(client, job) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(queue_url(job))
    assert response.status_code == 200
    return len(ctx.captured_queries)


#: Queries of a page of the queue (any page, 2 rows or 500): the session and user, the job,
#: the queue's outcomes, the rows' calls, their revisions, the pages by type, the locks;
#: an editor's permissions add four (one: whether the Settings menu shows "Bulk runs").
QUEUE_QUERIES = {"admin": 12, "editor": 16}


def test_queue_queries_do_not_grow_with_rows(make_post, action, superuser, editor):
    small = jobs.create_job(action, editor, [make_post().pk for _ in range(2)])
    jobs.run_job(small.pk)
    big = jobs.create_job(action, editor, [make_post().pk for _ in range(500)])
    jobs.run_job(big.pk)
    for user in (editor, superuser):
        client = client_for(user)
        client.get(queue_url(small))  # warm caches (content types, site)
        few = queue_queries(client, small)
        many = queue_queries(client, big)
        html = client.get(queue_url(big)).content.decode()
        assert len(row_ids(html)) == 50 and "To review (500)" in html
        assert many == few, (user, few, many)
        assert many == QUEUE_QUERIES[user.username], (user, many)
        # the last page of the queue too
        with CaptureQueriesContext(connection) as ctx:
            client.get(queue_url(big) + "?p=10")
        assert len(ctx.captured_queries) == many


# -- a pipeline job: its writing steps make the row ------------------------------------------


def test_a_pipeline_jobs_drafts_are_reviewed_too(make_post, superuser, request):
    pipeline = request.getfixturevalue("own_pipeline")  # outline (feeds), then summary
    posts = [make_post() for _ in range(2)]
    job = jobs.create_pipeline_job(pipeline, superuser, [p.pk for p in posts])
    jobs.run_job(job.pk)
    client = client_for(superuser)
    html = client.get(queue_url(job)).content.decode()
    assert row_ids(html) == [p.pk for p in posts]
    assert 'data-llm-review-field="summary"' in html and "summary-answer" in html
    decide(client, job, posts[0], "reject")
    assert latest(posts[0]).summary == ""
    decide(client, job, posts[1])
    writer = LLMInteraction.objects.get(pk=job.items.get(page=posts[1]).interaction_id)
    assert writer.outcome == "accepted"
    assert latest(posts[1]).summary == "summary-answer"


def test_a_draft_that_is_the_pages_first_revision(blog_index, action, editor):
    """No revision before the job's: compared with the page as it is in the tree."""
    from blog.models import BlogPage

    from tests.conftest import make_body

    page = BlogPage(title="Never saved as a revision", slug="no-revision", body=make_body())
    blog_index.add_child(instance=page)
    assert not page.revisions.exists()
    job = jobs.create_job(action, editor, [page.pk])
    jobs.run_job(job.pk)
    html = client_for(editor).get(queue_url(job)).content.decode()
    assert row_ids(html) == [page.pk]
    assert 'data-llm-review-field="summary"' in html


# -- decisions: the same queries for one page or fifty (audit of issue 21: 304 for 50) ------

#: Queries of an Accept POST, whatever the number of pages selected: the session and user,
#: the job, the calls, the pages (and their type), their locks (two), one UPDATE, the
#: transaction's savepoint, the message; an editor's permissions add three.
ACCEPT_QUERIES = {"admin": 12, "editor": 15}


def test_bulk_accept_costs_the_same_queries_for_5_or_50_pages(
    make_post, action, superuser, editor, django_assert_num_queries
):
    for user in (editor, superuser):
        client = client_for(user)
        for size in (5, 50):
            pages = [make_post() for _ in range(size)]
            job = jobs.create_job(action, editor, [p.pk for p in pages])
            jobs.run_job(job.pk)
            client.get(queue_url(job))  # warm caches (content types, site)
            data = {"page": [p.pk for p in pages], "decision": "accept"}
            with django_assert_num_queries(ACCEPT_QUERIES[user.username]):
                response = client.post(act_url(job), data)
            assert response.status_code == 302
            outcomes = LLMInteraction.objects.filter(pk__in=job.items.values("interaction_id"))
            assert set(outcomes.values_list("outcome", flat=True)) == {"accepted"}
