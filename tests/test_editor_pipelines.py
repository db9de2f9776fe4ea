"""Pipelines in the page editor: run on the unsaved form, fill each written field, no revision."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from wagtail.test.utils.form_data import querydict_from_html

from tests.browser.qworker import run_queued_tasks
from tests.conftest import make_prompt
from tests.crash import assert_plain_failure, bug
from tests.fakeserver import last_user_message
from tests.test_editor import UNSAVED, client_for, edit_url, form_data, reload, status
from wagtail_llm_actions.models import (
    LLMInteraction,
    LLMJob,
    LLMRun,
    RunStatus,
)

pytestmark = pytest.mark.django_db

UNSAVED_TITLE = "A title typed but not saved"


def reply_by_kind(payload):
    """The fake model: an outline of the body it was sent, then a summary of that outline."""
    text = last_user_message(payload)
    if text.startswith("OUTLINE"):
        return "Outline: " + text.split("\n\n", 1)[1].strip()[:120]
    return "Summary of " + text.split("OUTLINE-ANSWER:", 1)[1].strip()[:200]


@pytest.fixture
def pipeline(make_server_action, make_pipeline, fake_llm):
    """outline (writes intro) -> summary (writes summary, reads {steps.outline})."""
    outline = make_server_action(
        name="Outline",
        slug="outline",
        target_field="intro",
        prompt=make_prompt("outline", "OUTLINE of {title}:\n\n{body}"),
    )
    summary = make_server_action(
        name="Summary from outline",
        slug="summary-from-outline",
        prompt=make_prompt("from-outline", "SUMMARY for {title} OUTLINE-ANSWER: {steps.outline}"),
    )
    fake_llm.configure(reply=reply_by_kind)
    return make_pipeline(
        {"name": "outline", "action": outline},
        {"name": "summary", "action": summary},
        name="Outline and summary",
        slug="outline-summary",
        page_types=False,
    )


def pipeline_url(page, pipeline):
    return reverse("wagtail_llm_actions_editor:run_pipeline", args=[page.pk, pipeline.pk])


def run_and_wait(client, page, pipeline, data):
    response = client.post(pipeline_url(page, pipeline), data)
    assert response.status_code == 202, response.content
    run_queued_tasks()
    code, body = status(client, response.json()["job"])
    assert code == 200
    return body


def test_the_button_is_beside_the_first_written_field_and_in_the_menu(
    client, post, pipeline, superuser
):
    client.force_login(superuser)

    html = client.get(edit_url(post)).content.decode()

    url = pipeline_url(post, pipeline)
    assert html.count(f'data-llm-action-url-param="{url}"') == 2  # beside "intro", and the menu
    assert 'data-llm-action-pipeline-param="true"' in html
    assert 'data-llm-action-field-value="intro"' in html
    # the old menu entry that ran on the saved revision is gone
    assert "llm-pipeline-menu-item" not in html


def test_a_pipeline_runs_on_the_unsaved_form_and_writes_no_revision(post, pipeline, superuser):
    client = client_for(superuser)
    before = reload(post)
    data = form_data(client, post, body_text=UNSAVED, title=UNSAVED_TITLE)

    body = run_and_wait(client, post, pipeline, data)

    assert body["state"] == "succeeded", body
    result = body["result"]
    fields = {item["field"]: item for item in result["fields"]}
    assert list(fields) == ["intro", "summary"]
    outline, summary = LLMInteraction.objects.filter(run__isnull=False).order_by("step_index")
    # the steps read the form as it is on screen: its unsaved body and title
    assert UNSAVED in outline.messages[-1]["content"]
    assert UNSAVED_TITLE in outline.messages[-1]["content"]
    assert UNSAVED_TITLE in summary.messages[-1]["content"]
    assert "Post 1 talks about compost bins" not in outline.messages[-1]["content"]
    # the second step got the first one's answer
    assert outline.response_text.strip() in summary.messages[-1]["content"]
    # each field is its own step's interaction, reviewed on its own
    assert fields["intro"]["interaction"] == outline.pk
    assert fields["summary"]["interaction"] == summary.pk
    assert fields["summary"]["value"] == summary.output_value
    assert fields["summary"]["outcome_url"] == reverse(
        "wagtail_llm_actions_editor:outcome", args=[summary.pk]
    )
    for interaction in (outline, summary):
        assert interaction.trigger == "editor"
        assert interaction.outcome == "pending"
        assert interaction.revision_id is None
    run = LLMRun.objects.get()
    assert run.status == "success" and run.revision_id is None
    # nothing saved: no revision, live page as before
    after = reload(post)
    assert after.latest_revision_id == before.latest_revision_id
    assert after.summary == before.summary and after.title == before.title


def test_saving_records_each_fields_outcome(post, pipeline, superuser):
    client = client_for(superuser)
    result = run_and_wait(client, post, pipeline, form_data(client, post, body_text=UNSAVED))[
        "result"
    ]
    fields = {item["field"]: item for item in result["fields"]}
    # Discard the intro (the form keeps its old value); keep the summary as generated
    response = client.post(fields["intro"]["outcome_url"], {"outcome": "discarded"})
    assert response.status_code == 200

    data = form_data(client, post, body_text=UNSAVED, summary=fields["summary"]["value"])
    data["llm_action_interactions"] = str(fields["summary"]["interaction"])
    response = client.post(edit_url(post), data)
    assert response.status_code == 302

    draft = reload(post).get_latest_revision_as_object()
    assert draft.summary == fields["summary"]["value"]
    assert draft.intro == post.intro  # as it was: discarded
    summary = LLMInteraction.objects.get(pk=fields["summary"]["interaction"])
    intro = LLMInteraction.objects.get(pk=fields["intro"]["interaction"])
    assert summary.outcome == "accepted"
    assert summary.revision_id == reload(post).latest_revision_id
    assert intro.outcome == "discarded" and intro.revision_id is None


def test_an_edited_field_is_recorded_as_edited(post, pipeline, superuser):
    client = client_for(superuser)
    result = run_and_wait(client, post, pipeline, form_data(client, post))["result"]
    ids = ",".join(str(item["interaction"]) for item in result["fields"])
    values = {item["field"]: item["value"] for item in result["fields"]}

    data = form_data(client, post, summary=values["summary"] + " Edited.", intro=values["intro"])
    data["llm_action_interactions"] = ids
    client.post(edit_url(post), data)

    outcomes = dict(
        LLMInteraction.objects.filter(run__isnull=False).values_list("target_field", "outcome")
    )
    assert outcomes == {"intro": "accepted", "summary": "edited"}


def test_a_failing_step_is_named_and_nothing_is_filled(post, pipeline, superuser, fake_llm):
    client = client_for(superuser)
    fake_llm.enqueue()  # the outline answers
    fake_llm.enqueue(status=400, error_message="The model refused this prompt")

    body = run_and_wait(client, post, pipeline, form_data(client, post, body_text=UNSAVED))

    assert body["state"] == "failed"
    assert "summary" in body["message"]  # the step
    assert "refused this prompt" in body["message"]  # and why
    assert body["result"] == {"code": body["result"]["code"], "step": "summary"}
    assert "fields" not in body["result"]
    run = LLMRun.objects.get()
    assert run.status == "error" and run.failed_step == "summary"
    assert reload(post).latest_revision_id == post.latest_revision_id


def test_a_kept_cut_off_step_answer_is_filled_with_a_warning_on_its_field(
    post, pipeline, superuser, fake_llm
):
    summary_action = pipeline.steps.get(name="summary").action
    summary_action.cut_answers = "keep"
    summary_action.save()
    fake_llm.enqueue()  # the outline answers whole
    fake_llm.enqueue(finish_reason="length")  # the summary stopped at its token limit
    client = client_for(superuser)

    body = run_and_wait(client, post, pipeline, form_data(client, post, body_text=UNSAVED))

    assert body["state"] == "succeeded", body
    fields = {item["field"]: item for item in body["result"]["fields"]}
    assert "warning" not in fields["intro"]
    assert "cut off" in fields["summary"]["warning"]


def test_an_unexpected_bug_is_a_plain_failure_not_a_spinner(
    post, pipeline, superuser, fake_llm, monkeypatch, caplog
):
    """A bug (not a step's provider or content error) in the run still finishes the job: the
    editor reads "failed unexpectedly" with the error's type only, and nothing is written."""

    client = client_for(superuser)
    before = reload(post)
    response = client.post(pipeline_url(post, pipeline), form_data(client, post))
    assert response.status_code == 202
    job_id = response.json()["job"]

    monkeypatch.setattr("wagtail_llm_actions.run.recording.new_interaction", bug)
    run_queued_tasks()  # the worker task itself returns, it does not raise
    code, body = status(client, job_id)

    assert_plain_failure(
        code, body, job_id, "The pipeline failed unexpectedly (RuntimeError).", caplog
    )
    assert fake_llm.request_count == 0 and not LLMInteraction.objects.exists()
    # the run it had started ends failed too, not "running" for ever
    run = LLMRun.objects.get()
    assert run.status == RunStatus.ERROR and run.finished_at is not None
    assert run.error_message == "The pipeline failed unexpectedly (RuntimeError)."
    after = reload(post)
    assert after.latest_revision_id == before.latest_revision_id
    assert after.revisions.count() == 1
    assert (after.intro, after.summary) == (before.intro, before.summary)


def test_a_bug_filling_in_the_answers_is_a_plain_failure_not_a_spinner(
    post, pipeline, superuser, fake_llm, monkeypatch, caplog
):
    """Every step answered, but building what the browser fills in broke (a bug, after the
    run): the job still ends, the editor reads "failed unexpectedly" with the error's type
    only, and nothing is written."""

    client = client_for(superuser)
    before = reload(post)
    response = client.post(pipeline_url(post, pipeline), form_data(client, post))
    assert response.status_code == 202
    job_id = response.json()["job"]

    monkeypatch.setattr("wagtail_llm_actions.editor.results._fill_value", bug)
    run_queued_tasks()  # the worker task itself returns, it does not raise
    code, body = status(client, job_id)

    assert_plain_failure(
        code, body, job_id, "The pipeline failed unexpectedly (RuntimeError).", caplog
    )
    assert fake_llm.request_count == 2  # both steps answered
    after = reload(post)
    assert after.latest_revision_id == before.latest_revision_id
    assert after.revisions.count() == 1
    assert (after.intro, after.summary) == (before.intro, before.summary)


# -- refusals: JSON, never a 500 -----------------------------------------------------------------


def test_users_who_may_not_edit_are_refused(post, pipeline, superuser, outsider):
    data = form_data(client_for(superuser), post)

    response = client_for(outsider).post(pipeline_url(post, pipeline), data)

    assert response.status_code == 403
    assert response.json()["code"] == "permission"
    assert not LLMJob.objects.exists()


def test_a_post_without_csrf_token_is_refused(post, pipeline, superuser):
    data = form_data(client_for(superuser), post)
    client = client_for(superuser, enforce_csrf_checks=True)

    assert client.post(pipeline_url(post, pipeline), data).status_code == 403

    page_html = client.get(edit_url(post)).content.decode()
    token = querydict_from_html(page_html, form_id="page-edit-form", exclude_csrf=False)[
        "csrfmiddlewaretoken"
    ]
    response = client.post(pipeline_url(post, pipeline), data, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 202


def test_refusals_are_json(post, pipeline, superuser, make_post):
    client = client_for(superuser)
    data = form_data(client, post)

    missing = client.post(pipeline_url(post, pipeline).replace(f"/{pipeline.pk}/", "/999999/"))
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"

    invalid = client.post(pipeline_url(post, pipeline), {**data, "date": "not a date"})
    assert invalid.status_code == 400 and invalid.json()["code"] == "form_invalid"

    malformed = client.post(pipeline_url(post, pipeline), {"title": "x"})
    assert malformed.status_code == 400 and malformed.json()["message"]

    pipeline.enabled = False
    pipeline.save()
    disabled = client.post(pipeline_url(post, pipeline), data)
    assert disabled.status_code == 400 and "does not run" in disabled.json()["message"]

    assert client.get(pipeline_url(post, pipeline)).status_code == 405
    assert not LLMJob.objects.exists()


# -- steps of their own and structured steps -----------------------------------------------------


def test_structured_and_own_prompt_steps_fill_each_field_for_review(
    post, make_server_action, make_pipeline, server_fields, fake_llm, superuser
):
    """A structured step (two fields) then a step with its own prompt: three fields, each
    with its own outcome; the button sits beside the structured step's first field."""

    from tests.test_pipeline_steps import SEO

    seo = make_server_action(
        name="SEO fields",
        slug="seo",
        target_field="",
        output_fields=dict(SEO),
        prompt=make_prompt("seo", "SEO for {title}: {body}"),
    )

    def answer(payload):
        text = last_user_message(payload)
        if text.startswith("SEO"):
            return json.dumps({"title": "Compost title", "description": "Worms indoors."})
        return "Intro from " + text.split("from ", 1)[1]

    fake_llm.configure(reply=answer)
    pipeline = make_pipeline(
        {"name": "seo", "action": seo},
        {
            "name": "intro",
            "prompt_template": "INTRO for {title} from {steps.seo}",
            "target_field": "intro",
            **server_fields,
        },
        name="SEO then intro",
        slug="seo-intro",
    )
    client = client_for(superuser)
    html = client.get(edit_url(post)).content.decode()
    assert html.count(f'data-llm-action-url-param="{pipeline_url(post, pipeline)}"') == 2

    result = run_and_wait(client, post, pipeline, form_data(client, post, title=UNSAVED_TITLE))[
        "result"
    ]

    fields = {item["field"]: item for item in result["fields"]}
    assert list(fields) == ["seo_title", "search_description", "intro"]
    assert fields["seo_title"]["value"] == "Compost title"
    seo_run = LLMInteraction.objects.get(step_name="seo")
    assert fields["seo_title"]["interaction"] == f"{seo_run.pk}:seo_title"
    assert fields["seo_title"]["outcome_url"].endswith("?field=seo_title")
    assert UNSAVED_TITLE in LLMInteraction.objects.get(step_name="intro").messages[-1]["content"]

    # Discard the description; keep the title and the intro
    response = client.post(fields["search_description"]["outcome_url"], {"outcome": "discarded"})
    assert response.status_code == 200
    data = form_data(client, post, seo_title="Compost title", intro=fields["intro"]["value"])
    data["llm_action_interactions"] = f"{seo_run.pk}:seo_title,{fields['intro']['interaction']}"
    assert client.post(edit_url(post), data).status_code == 302

    seo_run.refresh_from_db()
    assert seo_run.field_outcomes == {"seo_title": "accepted", "search_description": "discarded"}
    assert LLMInteraction.objects.get(step_name="intro").outcome == "accepted"
    draft = reload(post).get_latest_revision_as_object()
    assert (
        draft.seo_title == "Compost title" and draft.search_description == post.search_description
    )
