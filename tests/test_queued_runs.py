"""Nothing slow or costly inside a web request, nothing costly by accident (issue 21, §2).

Rerun, Rerun from step and "Try on a page" queue a job as the page editor's buttons do and
show its progress; Rerun, Retry and Cancel ask first, with what they will cost or stop.
"""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from tests.browser.qworker import queued_task_count, run_queued_tasks
from tests.queued import finish_queued
from wagtail_llm_actions import jobs, queued_runs
from wagtail_llm_actions.models import ItemStatus, LLMInteraction, LLMJob
from wagtail_llm_actions.service import LLMService

pytestmark = pytest.mark.django_db


def url(name, *args):
    return reverse(f"wagtail_llm_actions_report:{name}", args=args)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def first(post, server_action, superuser, fake_llm):
    run = LLMService().run(server_action, post, user=superuser)
    fake_llm.reset()
    return run


# -- Rerun: asked first, then queued -----------------------------------------------------------


def test_rerun_asks_first_with_what_it_will_cost(first, superuser, fake_llm):
    response = client_for(superuser).get(url("rerun", first.pk))

    html = response.content.decode()
    assert response.status_code == 200
    assert "new draft" in html and "The live page does not change" in html
    assert "data-llm-estimate-tokens" in html and "openai/fake-model" in html
    assert "data-llm-estimate-cost" in html
    assert 'method="post"' in html and "data-llm-confirm-button" in html
    assert fake_llm.requests == [] and LLMInteraction.objects.count() == 1


def test_rerun_calls_no_model_inside_the_request_and_shows_progress(
    first, superuser, post, fake_llm
):
    client = client_for(superuser)
    revisions = post.revisions.count()

    response = client.post(url("rerun", first.pk))

    assert fake_llm.requests == []  # nothing called inside the request
    assert LLMInteraction.objects.count() == 1 and post.revisions.count() == revisions
    assert queued_task_count() == 1
    job = LLMJob.objects.get(kind="editor")
    assert response["Location"] == url("queued_run", job.pk)
    progress = client.get(response["Location"]).content.decode()
    assert 'data-controller="llm-queued-run"' in progress
    assert reverse("wagtail_llm_actions_editor:status", args=[job.pk]) in progress
    assert "Cancel" in progress and "Waiting to start" in progress

    done = finish_queued(client, response)

    new = LLMInteraction.objects.exclude(pk=first.pk).get()
    assert len(fake_llm.requests) == 1
    assert new.trigger == "rerun" and new.revision_id is not None
    assert post.revisions.count() == revisions + 1
    assert done["Location"] == url("detail", new.pk)
    assert any("ran again" in m for m in messages_of(done))


def test_a_rerun_cancelled_before_it_runs_calls_and_saves_nothing(first, superuser, post, fake_llm):
    client = client_for(superuser)
    revisions = post.revisions.count()
    response = client.post(url("rerun", first.pk))
    job = LLMJob.objects.get(kind="editor")

    client.post(reverse("wagtail_llm_actions_editor:cancel", args=[job.pk]))
    done = finish_queued(client, response)

    assert fake_llm.requests == []
    assert LLMInteraction.objects.count() == 1 and post.revisions.count() == revisions
    assert done["Location"] == url("detail", first.pk)
    assert any("Cancelled" in m for m in messages_of(done))


def test_a_rerun_cancelled_while_the_model_answers_writes_no_draft(
    first, superuser, post, monkeypatch
):
    revisions = post.revisions.count()
    job = queued_runs.create_job(
        queued_runs.KIND_RERUN, superuser, page=post, action=first.action, interaction=first
    )
    monkeypatch.setattr(queued_runs, "_cancelled", lambda job_id: True)

    from wagtail_llm_actions import editor

    assert editor.run_editor_job(job.items.get().pk) == "cancelled"

    assert post.revisions.count() == revisions
    new = LLMInteraction.objects.exclude(pk=first.pk).get()
    assert new.revision_id is None and new.status == "answered"  # paid for, kept, not written
    assert job.items.get().status == ItemStatus.CANCELLED


def test_a_failed_rerun_says_why_on_the_interaction(first, superuser, fake_llm):
    fake_llm.configure(status=500)
    client = client_for(superuser)

    done = finish_queued(client, client.post(url("rerun", first.pk)), follow=True)

    assert done.status_code == 200
    assert messages_of(done)
    assert LLMJob.objects.get(kind="editor").items.get().status == ItemStatus.FAILED


def test_another_user_cannot_watch_or_cancel_a_queued_rerun(first, superuser, editor):
    response = client_for(superuser).post(url("rerun", first.pk))
    job = LLMJob.objects.get(kind="editor")

    other = client_for(editor)
    assert other.get(response["Location"])["Location"] == reverse("wagtailadmin_home")
    cancel = other.post(reverse("wagtail_llm_actions_editor:cancel", args=[job.pk]))
    assert cancel.status_code == 404
    assert LLMJob.objects.get(pk=job.pk).status == "queued"


# -- Try on a page: queued too -------------------------------------------------------------------


def tryout_url(action):
    return reverse("wagtail_llm_actions_tryout:try", args=[action.pk])


@pytest.mark.parametrize("via", ["try screen", "old try url"])
def test_try_on_a_page_calls_no_model_inside_the_request(
    via, post, server_action, superuser, fake_llm
):
    fake_llm.configure(reply=lambda request_json: "An answer to compare.")
    client = client_for(superuser)
    if via == "try screen":
        response = client.post(tryout_url(server_action), {"page": post.pk, "ask_model": "on"})
    else:
        response = client.post(url("try", server_action.pk), {"page": post.pk})

    assert fake_llm.requests == [] and not LLMInteraction.objects.exists()
    done = finish_queued(client, response)

    answer = LLMInteraction.objects.get()
    assert answer.outcome == "pending" and answer.revision_id is None
    assert done["Location"] == tryout_url(server_action) + f"?interaction={answer.pk}"
    html = client.get(done["Location"]).content.decode()
    assert "An answer to compare." in html
    assert url("keep", answer.pk) in html


def test_the_try_screen_preview_calls_nothing(post, server_action, superuser, fake_llm):
    response = client_for(superuser).post(tryout_url(server_action), {"page": post.pk})

    assert response.status_code == 200
    assert "You are a helpful summarizer." in response.content.decode()
    assert fake_llm.requests == [] and queued_task_count() == 0


# -- Cancel and Retry of a bulk job ask first ---------------------------------------------------


def test_cancel_asks_first_saying_what_will_not_run_and_what_is_running(
    superuser, make_post, action
):
    posts = [make_post(title=f"Post {n}") for n in range(4)]
    job = jobs.create_job(action, superuser, [p.pk for p in posts])
    job.items.filter(page=posts[0]).update(status=ItemStatus.RUNNING)
    client = client_for(superuser)

    html = client.get(url("confirm_cancel_job", job.pk)).content.decode()

    assert "3 pages will not run." in html
    assert "1 page is running now" in html
    cancel_url = reverse("wagtail_llm_actions_jobs:cancel", args=[job.pk])
    assert f'action="{cancel_url}"' in html
    job.refresh_from_db()
    assert job.status == "queued"  # asking cancels nothing

    detail = client.get(reverse("wagtail_llm_actions_jobs:detail", args=[job.pk]))
    assert url("confirm_cancel_job", job.pk) in detail.content.decode()
    assert f'method="post" action="{cancel_url}"' not in detail.content.decode()


def test_retry_asks_first_with_what_it_will_cost(superuser, make_post, server_action):
    posts = [make_post(title=f"Post {n}") for n in range(3)]
    job = jobs.create_job(server_action, superuser, [p.pk for p in posts])
    done = LLMService().run(server_action, posts[0], user=superuser)
    job.items.filter(page=posts[0]).update(status=ItemStatus.SUCCEEDED, interaction=done)
    job.items.exclude(page=posts[0]).update(status=ItemStatus.FAILED)
    job.status = "completed"
    job.save()
    client = client_for(superuser)

    html = client.get(url("confirm_retry_job", job.pk)).content.decode()

    assert "2 pages will run again." in html
    assert "data-llm-estimate-tokens" in html and "data-llm-estimate-cost" in html
    retry_url = reverse("wagtail_llm_actions_jobs:retry", args=[job.pk])
    assert f'action="{retry_url}"' in html
    assert run_queued_tasks() == 0  # asking queues nothing
    assert job.items.filter(status=ItemStatus.FAILED).count() == 2


# -- one place to try an action on a page, in the right menu ------------------------------------


def test_one_place_to_try_an_action_under_the_actions_menu(action, superuser):
    actions_menu = reverse("wagtailsnippets_wagtail_llm_actions_llmaction:list")
    report_menu = url("index")
    try_url = tryout_url(action)
    assert try_url.startswith(actions_menu) and not try_url.startswith(report_menu)

    client = client_for(superuser)
    stats = client.get(url("action", action.pk)).content.decode()
    assert try_url in stats
    assert "Run and compare" not in stats and "Test on a page" not in stats
    assert client.get(url("test", action.pk))["Location"] == try_url  # the old link still works
    screen = client.get(try_url).content.decode()
    assert "<title>Try on a page" in screen or "Try on a page" in screen
    assert f'href="{actions_menu}"' in screen  # breadcrumbs: Home › Actions › the action
    edit = client.get(
        reverse("wagtailsnippets_wagtail_llm_actions_llmaction:edit", args=[action.pk])
    ).content.decode()
    assert try_url in edit and "Test on a page" not in edit
