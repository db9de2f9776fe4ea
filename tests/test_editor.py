"""Page editor buttons: run on the unsaved form in the background, fill, record the outcome."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from wagtail.models import Page
from wagtail.test.utils.form_data import (
    nested_form_data,
    querydict_from_html,
    rich_text,
    streamfield,
)

from tests.browser.qworker import queued_task_count, run_queued_tasks
from tests.crash import assert_plain_failure, bug
from wagtail_llm_actions import editor
from wagtail_llm_actions.models import (
    InteractionStatus,
    ItemStatus,
    JobStatus,
    LLMInteraction,
    LLMJob,
    LLMJobItem,
)
from wagtail_llm_actions.panels import LLMActionMenuItem

pytestmark = pytest.mark.django_db

UNSAVED = "Unsaved words about earthworms turning peelings into dark soil."


# -- helpers -------------------------------------------------------------------------------------


def edit_url(page):
    return reverse("wagtailadmin_pages:edit", args=[page.pk])


def run_url(page, action):
    return reverse("wagtail_llm_actions_editor:run", args=[page.pk, action.pk])


def client_for(user, **kwargs):
    client = Client(**kwargs)
    client.force_login(user)
    return client


def form_data(client, page, body_text=None, **changes):
    """The edit form as the browser would post it, with ``changes`` typed in."""
    response = client.get(edit_url(page))
    assert response.status_code == 200
    data = querydict_from_html(response.content.decode(), form_id="page-edit-form")
    # StreamField and Draftail fields are drawn by JavaScript: post them as the browser does.
    body = body_text or "The first paragraph explains compost."
    data.update(
        nested_form_data(
            {"body": streamfield([("heading", "Background"), ("paragraph", rich_text(body))])}
        )
    )
    data["highlights"] = rich_text(changes.pop("highlights", "<p>Saved highlights.</p>"))
    for key, value in changes.items():
        data[key] = value
    return data


def start(client, page, action, data):
    response = client.post(run_url(page, action), data)
    return response


def status(client, job_id):
    response = client.get(reverse("wagtail_llm_actions_editor:status", args=[job_id]))
    return response.status_code, response.json()


def run_and_wait(client, page, action, data):
    """Start a run, let the (in-process) worker run it, return the status JSON."""
    response = start(client, page, action, data)
    assert response.status_code == 202, response.content
    job_id = response.json()["job"]
    run_queued_tasks()
    code, body = status(client, job_id)
    assert code == 200
    return body


def reload(page):
    return type(page).objects.get(pk=page.pk)


# -- buttons -------------------------------------------------------------------------------------


def test_panel_shows_one_button_per_applicable_action(client, post, make_action, superuser):
    make_action()
    make_action(name="Shorter summary", slug="shorter-summary")
    make_action(name="Disabled summary", slug="disabled-summary", enabled=False)
    make_action(name="Suggest tags", slug="suggest-tags", target_field="tags", output_mode="tags")
    make_action(name="Write meta description", slug="meta", target_field="search_description")
    client.force_login(superuser)

    html = client.get(edit_url(post)).content.decode()

    assert 'data-controller="llm-action llm-review"' in html
    assert html.count('data-llm-action-name-param="Generate summary"') == 2  # panel and menu
    assert 'data-llm-action-name-param="Shorter summary"' in html
    assert "Disabled summary" not in html
    assert 'data-llm-action-field-value="tags"' in html
    assert 'data-llm-action-field-value="search_description"' in html  # promote tab
    assert "llm-action-controller.js" in html and "llm-review-controller.js" in html


def test_no_buttons_for_users_who_may_not_edit(rf, post, action, outsider, editor, superuser):
    handler = type(post).get_edit_handler()
    form_class = handler.get_form_class()

    def render(user):
        request = rf.get("/")
        request.user = user
        form = form_class(instance=post, parent_page=post.get_parent(), for_user=user)
        return handler.get_bound_panel(instance=post, request=request, form=form).render_html()

    assert "Generate summary" in render(editor)
    assert "Generate summary" not in render(outsider)
    # a page locked by someone else offers nothing either
    post.locked, post.locked_by, post.locked_at = True, superuser, timezone.now()
    post.save()
    assert "Generate summary" not in render(editor)


def test_action_menu_item_only_for_editors(rf, post, action, outsider, editor):
    item = LLMActionMenuItem()

    def shown(user):
        request = rf.get("/")
        request.user = user
        context = {"view": "edit", "page": post, "request": request, "locked_for_user": False}
        return item.is_shown(context), context

    visible, context = shown(editor)
    assert visible
    assert "Generate summary" in item.render_html(context)
    assert not shown(outsider)[0]


# -- run endpoint --------------------------------------------------------------------------------


def test_run_endpoint_refuses_users_without_edit_permission(post, action, outsider, superuser):
    data = form_data(client_for(superuser), post)

    response = client_for(outsider).post(run_url(post, action), data)

    assert response.status_code == 403
    assert response.json()["code"] == "permission"
    assert not LLMJob.objects.exists()


def test_run_without_csrf_token_is_refused(post, action, superuser):
    data = form_data(client_for(superuser), post)
    client = client_for(superuser, enforce_csrf_checks=True)

    response = client.post(run_url(post, action), data)

    assert response.status_code == 403
    assert not LLMJob.objects.exists()


def test_run_with_csrf_token_is_accepted(post, action, superuser):
    client = client_for(superuser, enforce_csrf_checks=True)
    page_html = client.get(edit_url(post)).content.decode()
    data = form_data(client, post)
    token = querydict_from_html(page_html, form_id="page-edit-form", exclude_csrf=False)[
        "csrfmiddlewaretoken"
    ]

    response = client.post(run_url(post, action), data, HTTP_X_CSRFTOKEN=token)

    assert response.status_code == 202


def test_run_only_queues_and_answers_at_once(post, action, superuser):
    client = client_for(superuser)
    revision_before = post.latest_revision_id

    response = start(client, post, action, form_data(client, post, body_text=UNSAVED))

    assert response.status_code == 202
    body = response.json()
    assert body["status_url"].endswith(f"/jobs/{body['job']}/")
    job = LLMJob.objects.get(pk=body["job"])
    assert job.kind == "editor" and job.status == JobStatus.QUEUED
    assert queued_task_count() == 1
    assert not LLMInteraction.objects.exists()  # the model is not called in the request
    assert status(client, job.pk)[1]["state"] == "queued"
    assert reload(post).latest_revision_id == revision_before


def test_run_uses_the_unsaved_form_content(post, action, superuser):
    client = client_for(superuser)
    data = form_data(client, post, body_text=UNSAVED, intro="An intro typed but not saved")

    result = run_and_wait(client, post, action, data)

    assert result["state"] == "succeeded"
    interaction = LLMInteraction.objects.get()
    prompt = interaction.messages[-1]["content"]
    assert UNSAVED in prompt
    assert "Post 1 talks about compost bins" not in prompt  # not the saved body
    assert "earthworms" in result["result"]["value"].lower()
    assert result["result"]["value"] == interaction.output_value
    assert result["result"]["widget"] == "text"
    assert interaction.trigger == "editor" and interaction.outcome == "pending"


def test_run_never_writes_a_revision_or_touches_the_live_page(post, action, superuser):
    client = client_for(superuser)
    before = reload(post)

    run_and_wait(client, post, action, form_data(client, post, body_text=UNSAVED))

    after = reload(post)
    assert after.latest_revision_id == before.latest_revision_id
    assert after.summary == before.summary == ""
    assert after.revisions.count() == 1
    # an autosave of the form that was open all along is not "a newer version"
    data = form_data(client, post, summary="Kept", body_text=UNSAVED)
    data["loaded_revision_id"] = str(before.latest_revision_id)
    data["loaded_revision_created_at"] = before.latest_revision.created_at.isoformat()
    response = client.post(edit_url(post), data, HTTP_ACCEPT="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["success"] is True


def test_invalid_form_is_reported_with_the_fields_to_fix(post, action, superuser):
    client = client_for(superuser)
    data = form_data(client, post, date="not a date")

    response = start(client, post, action, data)

    assert response.status_code == 400
    assert response.json()["code"] == "form_invalid"
    assert "Post date" in response.json()["message"]
    assert not LLMJob.objects.exists()


def test_tags_and_rich_text_results_fit_their_widgets(post, make_action, superuser):
    tags = make_action(
        name="Suggest tags",
        slug="suggest-tags",
        model="local/keywords",
        target_field="tags",
        output_mode="tags",
    )
    highlights = make_action(
        name="Highlights",
        slug="highlights",
        target_field="highlights",
        output_mode="rich_text",
    )
    client = client_for(superuser)

    tag_result = run_and_wait(client, post, tags, form_data(client, post, body_text=UNSAVED))
    rich_result = run_and_wait(client, post, highlights, form_data(client, post, body_text=UNSAVED))

    assert tag_result["result"]["widget"] == "tags"
    assert isinstance(tag_result["result"]["value"], list) and tag_result["result"]["value"]
    assert rich_result["result"]["widget"] == "draftail"
    contentstate = json.loads(rich_result["result"]["value"])
    text = " ".join(block["text"] for block in contentstate["blocks"])
    assert "earthworms" in text.lower()


def test_run_inline_setting_runs_without_a_worker(post, action, superuser, settings):
    settings.WAGTAIL_LLM_ACTIONS = {"RUN_INLINE": True}
    client = client_for(superuser)

    response = start(client, post, action, form_data(client, post, body_text=UNSAVED))

    assert response.status_code == 202
    assert queued_task_count() == 0
    assert status(client, response.json()["job"])[1]["state"] == "succeeded"


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("configure", "code", "words"),
    [
        ({"status": 429}, "rate_limit", "limiting requests"),
        ({"status": 503}, "server_error", ""),
        ({"latency": 3}, "timeout", ""),
    ],
)
def test_provider_errors_are_shown_and_logged(
    post, server_action, fake_llm, superuser, configure, code, words
):
    server_action.timeout = 1
    server_action.save()
    fake_llm.configure(**configure)
    client = client_for(superuser)

    result = run_and_wait(client, post, server_action, form_data(client, post, body_text=UNSAVED))

    assert result["state"] == "failed"
    assert result["result"]["code"] == code
    assert result["message"]
    assert words in result["message"].lower()
    interaction = LLMInteraction.objects.get()
    assert interaction.status == InteractionStatus.ERROR
    assert interaction.error_code == code
    assert "value" not in result.get("result", {})


def test_server_down_is_reported(post, make_action, api_key_env, superuser):
    action = make_action(
        model="openai/fake-model", api_base="http://127.0.0.1:9/v1", api_key_name=api_key_env
    )
    client = client_for(superuser)

    result = run_and_wait(client, post, action, form_data(client, post, body_text=UNSAVED))

    assert result["state"] == "failed"
    assert result["result"]["code"] == "connection"
    assert LLMInteraction.objects.get().status == InteractionStatus.ERROR


def test_missing_key_is_reported(post, make_action, fake_llm, superuser, monkeypatch):
    monkeypatch.delenv("NOVITA_API_KEY", raising=False)  # a provider variable, unset
    action = make_action(
        model="openai/fake-model", api_base=fake_llm.url, api_key_name="NOVITA_API_KEY"
    )
    client = client_for(superuser)

    result = run_and_wait(client, post, action, form_data(client, post, body_text=UNSAVED))

    assert result["state"] == "failed"
    assert "NOVITA_API_KEY is not set" in result["message"]
    assert "sk-" not in result["message"]


def test_empty_source_is_reported(post, action, superuser):
    client = client_for(superuser)
    data = form_data(client, post)
    for key in [k for k in data if k.startswith("body-")]:
        del data[key]
    data.update(nested_form_data({"body": streamfield([])}))

    result = run_and_wait(client, post, action, data)

    assert result["state"] == "failed"
    assert result["result"]["code"] == "source_empty"
    assert "no content" in result["message"]


def test_output_too_long_is_reported(post, server_action, fake_llm, superuser):
    fake_llm.configure(reply="word " * 200)
    client = client_for(superuser)

    result = run_and_wait(client, post, server_action, form_data(client, post, body_text=UNSAVED))

    assert result["state"] == "failed"
    assert result["result"]["code"] == "too_long"
    assert "600" in result["message"]


CUT_REPLY = "Compost turns kitchen peelings into dark soil over a few warm months. " * 20


def test_an_answer_cut_off_by_max_tokens_is_refused_with_the_reason(
    post, server_action, fake_llm, superuser
):
    server_action.max_tokens = 30
    server_action.save()
    fake_llm.configure(reply=CUT_REPLY, honour_max_tokens=True)
    client = client_for(superuser)

    result = run_and_wait(client, post, server_action, form_data(client, post, body_text=UNSAVED))

    assert result["state"] == "failed"
    assert result["result"]["code"] == "answer_cut"
    assert "max tokens (30)" in result["message"]
    interaction = LLMInteraction.objects.get()
    assert interaction.answer_truncated
    assert interaction.status == InteractionStatus.ERROR


def test_a_kept_cut_off_answer_fills_the_field_with_a_warning(
    post, server_action, fake_llm, superuser
):
    server_action.max_tokens = 30
    server_action.cut_answers = "keep"
    server_action.save()
    fake_llm.configure(reply=CUT_REPLY, honour_max_tokens=True)
    client = client_for(superuser)

    result = run_and_wait(client, post, server_action, form_data(client, post, body_text=UNSAVED))

    assert result["state"] == "succeeded"
    assert result["result"]["value"].startswith("Compost turns")
    assert "cut off" in result["result"]["warning"]
    assert "max tokens (30)" in result["result"]["warning"]


def test_an_unexpected_bug_is_a_plain_failure_not_a_spinner(
    post, action, superuser, monkeypatch, caplog
):
    """A bug (not a provider or content error) in the run still finishes the job: the editor
    reads "failed unexpectedly" with the error's type only, and nothing is written."""

    client = client_for(superuser)
    before = reload(post)
    response = start(client, post, action, form_data(client, post, body_text=UNSAVED))
    assert response.status_code == 202
    job_id = response.json()["job"]

    monkeypatch.setattr("wagtail_llm_actions.run.recording.new_interaction", bug)
    run_queued_tasks()  # the worker task itself returns, it does not raise
    code, body = status(client, job_id)

    assert_plain_failure(
        code, body, job_id, "The action failed unexpectedly (RuntimeError).", caplog
    )
    assert not LLMInteraction.objects.exists()  # it broke before anything was asked
    after = reload(post)
    assert after.latest_revision_id == before.latest_revision_id
    assert after.revisions.count() == 1 and after.summary == before.summary == ""


def test_a_bug_filling_in_the_answer_is_a_plain_failure_not_a_spinner(
    post, action, superuser, monkeypatch, caplog
):
    """The model answered, but building what the browser fills in broke (a bug, after the
    run): the job still ends, the editor reads "failed unexpectedly" with the error's type
    only, and nothing is written."""
    client = client_for(superuser)
    before = reload(post)
    response = start(client, post, action, form_data(client, post, body_text=UNSAVED))
    assert response.status_code == 202
    job_id = response.json()["job"]

    monkeypatch.setattr("wagtail_llm_actions.editor.results._fill_value", bug)
    run_queued_tasks()  # the worker task itself returns, it does not raise
    code, body = status(client, job_id)

    assert_plain_failure(
        code, body, job_id, "The action failed unexpectedly (RuntimeError).", caplog
    )
    assert LLMInteraction.objects.count() == 1  # the answer came; it was never shown
    after = reload(post)
    assert after.latest_revision_id == before.latest_revision_id
    assert after.revisions.count() == 1 and after.summary == before.summary == ""


# -- worker pick-up, cancel ------------------------------------------------------------------


def test_no_background_task_is_said_plainly_after_the_pickup_timeout(
    post, action, superuser, settings
):
    settings.WAGTAIL_LLM_ACTIONS = {"WORKER_PICKUP_TIMEOUT": 5}
    client = client_for(superuser)
    job_id = start(client, post, action, form_data(client, post)).json()["job"]

    assert status(client, job_id)[1]["state"] == "queued"
    LLMJob.objects.filter(pk=job_id).update(created_at=timezone.now() - timedelta(seconds=6))
    body = status(client, job_id)[1]

    assert body["state"] == "stalled"
    # in editors' words: "background tasks", not "worker" (issue 21)
    assert "background tasks" in body["message"] and "5 seconds" in body["message"]


def test_cancelled_job_is_not_run(post, action, superuser):
    client = client_for(superuser)
    job_id = start(client, post, action, form_data(client, post)).json()["job"]

    response = client.post(reverse("wagtail_llm_actions_editor:cancel", args=[job_id]))
    run_queued_tasks()

    assert response.status_code == 200
    assert status(client, job_id)[1]["state"] == "cancelled"
    assert not LLMInteraction.objects.exists()


def test_status_is_private_to_the_user_who_started_it(post, action, superuser, editor):
    job_id = start(client_for(superuser), post, action, form_data(client_for(superuser), post))
    job_id = job_id.json()["job"]

    assert status(client_for(editor), job_id)[0] == 404


def test_status_endpoint_query_count_is_constant(post, action, superuser, server_action):
    client = client_for(superuser)
    counts = {}

    def measure(job_id):
        client.get(reverse("wagtail_llm_actions_editor:status", args=[job_id]))  # warm up
        with CaptureQueriesContext(connection) as ctx:
            client.get(reverse("wagtail_llm_actions_editor:status", args=[job_id]))
        return len(ctx)

    job_id = start(client, post, action, form_data(client, post, body_text=UNSAVED)).json()["job"]
    counts["queued"] = measure(job_id)
    LLMJobItem.objects.filter(job_id=job_id).update(status=ItemStatus.RUNNING)
    counts["running"] = measure(job_id)
    LLMJobItem.objects.filter(job_id=job_id).update(status=ItemStatus.QUEUED)
    run_queued_tasks()
    counts["succeeded"] = measure(job_id)
    failed = start(client, post, action, form_data(client, post, body_text=" ")).json()["job"]
    run_queued_tasks()
    counts["failed"] = measure(failed)

    assert len(set(counts.values())) == 1, counts


# -- outcomes ----------------------------------------------------------------------------------


def generate(client, page, action):
    result = run_and_wait(client, page, action, form_data(client, page, body_text=UNSAVED))
    assert result["state"] == "succeeded", result
    return result["result"]


def save_draft(client, page, **fields):
    data = form_data(client, page, body_text=UNSAVED, **fields)
    response = client.post(edit_url(page), data)
    assert response.status_code == 302, response.content[:2000]
    return reload(page)


def test_saving_the_generated_value_links_the_revision_as_accepted(post, action, superuser):
    client = client_for(superuser)
    result = generate(client, post, action)

    page = save_draft(
        client,
        post,
        summary=result["value"],
        llm_action_interactions=str(result["interaction"]),
    )

    interaction = LLMInteraction.objects.get(pk=result["interaction"])
    assert interaction.outcome == "accepted"
    assert interaction.revision_id == page.latest_revision_id
    assert page.get_latest_revision_as_object().summary == result["value"]
    assert reload(post).live_revision_id != page.latest_revision_id  # draft, not published


def test_saving_an_edited_value_records_edited(post, action, superuser):
    client = client_for(superuser)
    result = generate(client, post, action)

    page = save_draft(
        client,
        post,
        summary=result["value"] + " And a sentence the editor added.",
        llm_action_interactions=str(result["interaction"]),
    )

    interaction = LLMInteraction.objects.get(pk=result["interaction"])
    assert interaction.outcome == "edited"
    assert interaction.revision_id == page.latest_revision_id


def test_interaction_stays_with_the_revision_that_first_saved_it(post, action, superuser):
    client = client_for(superuser)
    result = generate(client, post, action)
    ids = str(result["interaction"])
    first = save_draft(client, post, summary=result["value"], llm_action_interactions=ids)

    save_draft(client, post, summary="Rewritten later", llm_action_interactions=ids)

    interaction = LLMInteraction.objects.get(pk=result["interaction"])
    assert interaction.revision_id == first.latest_revision_id
    assert interaction.outcome == "accepted"


def test_discard_is_recorded_and_a_later_save_does_not_link_it(post, action, superuser):
    client = client_for(superuser)
    result = generate(client, post, action)

    response = client.post(result["outcome_url"], {"outcome": "discarded"})
    save_draft(client, post, summary="", llm_action_interactions=str(result["interaction"]))

    assert response.status_code == 200
    interaction = LLMInteraction.objects.get(pk=result["interaction"])
    assert interaction.outcome == "discarded"
    assert interaction.revision_id is None


def test_undo_then_redo_goes_back_to_pending(post, action, superuser):
    client = client_for(superuser)
    result = generate(client, post, action)

    client.post(result["outcome_url"], {"outcome": "discarded"})
    client.post(result["outcome_url"], {"outcome": "pending"})

    assert LLMInteraction.objects.get(pk=result["interaction"]).outcome == "pending"


def test_outcome_of_someone_elses_run_cannot_be_set(post, action, superuser, editor):
    result = generate(client_for(superuser), post, action)

    response = client_for(editor).post(result["outcome_url"], {"outcome": "discarded"})

    assert response.status_code == 404
    assert LLMInteraction.objects.get(pk=result["interaction"]).outcome == "pending"


# -- worker start-up -----------------------------------------------------------------------------


def test_worker_start_preloads_litellm_once_when_enabled(monkeypatch, settings):
    from django_q.signals import post_spawn

    calls = []
    monkeypatch.setattr("wagtail_llm_actions.providers.preload", lambda: calls.append(1))

    post_spawn.send(sender="django_q", proc_name="Process-1")
    settings.WAGTAIL_LLM_ACTIONS = {"PRELOAD_IN_WORKER": False}
    post_spawn.send(sender="django_q", proc_name="Process-2")

    assert calls == [1]


def test_editor_job_helpers_are_importable_without_a_request(post, action, superuser):
    obj = editor.build_page_from_form(
        post, form_data(client_for(superuser), post, body_text=UNSAVED), superuser
    )
    job = editor.create_editor_job(action, post, obj, superuser)
    editor.enqueue_editor_job(job, inline=True)

    item = job.items.get()
    assert item.status == ItemStatus.SUCCEEDED
    assert isinstance(Page.objects.get(pk=post.pk), Page)
    assert "earthworms" in item.result["value"].lower()
