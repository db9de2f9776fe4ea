"""Selection tools in the rich-text editor (issue 24 §2): the selection is sent with its
markup as placeholders, queued like every editor run, logged and budgeted; an answer that
loses markup is asked again once, then refused with nothing changed."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from wagtail.test.utils.form_data import querydict_from_html

from tests.browser.qworker import queued_task_count, run_queued_tasks
from tests.fakeserver import reverse_words, sent_segments
from wagtail_llm_actions.models import (
    InteractionStatus,
    InteractionTrigger,
    LLMBudget,
    LLMInteraction,
    LLMJob,
)
from wagtail_llm_actions.selection.tools import tools_for

pytestmark = pytest.mark.django_db

SELECTION = (
    'Read <a linktype="page" id="7">the compost guide</a> for <b>very good</b> soil,'
    "<br/>then <i>water</i> it."
)


@pytest.fixture
def tool_action(make_server_action):
    return make_server_action(name="House style", slug="house-style", selection_tool=True)


def client_for(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def run_url(page) -> str:
    return reverse("wagtail_llm_actions_editor:selection_run", args=[page.pk])


def rewrite(client, page, tool="rewrite", html=SELECTION) -> dict:
    """Post the selection, let the worker run the job, return the status the browser sees."""
    response = client.post(run_url(page), {"tool": tool, "html": html})
    assert response.status_code == 202, response.content
    assert queued_task_count() == 1  # queued: no model call inside the request
    run_queued_tasks()
    status_url = reverse("wagtail_llm_actions_editor:status", args=[response.json()["job"]])
    return client.get(status_url).json()


def test_the_menu_lists_the_builtin_tools_and_marked_actions(post, tool_action, action):
    keys = [tool.key for tool in tools_for(post)]
    assert keys == [
        "rewrite",
        "shorten",
        "expand",
        "fix",
        "tone",
        "formal",
        f"action-{tool_action.pk}",
    ]
    tool_action.selection_tool = False
    tool_action.save()
    assert tools_for(post) == []  # no model to run them with: no menu


def test_links_bold_italic_and_breaks_come_back_exactly(post, tool_action, fake_llm, superuser):
    fake_llm.configure(translate="reverse")

    body = rewrite(client_for(superuser), post)

    assert body["state"] == "succeeded", body
    sent = sent_segments(fake_llm.requests[0])["1"]
    assert "<" not in sent and "⟦1⟧the compost guide⟦2⟧" in sent  # markup as placeholders
    assert body["result"]["selection"] == (
        f'{reverse_words("Read ")}<a linktype="page" id="7">{reverse_words("the compost guide")}'
        f"</a>{reverse_words(' for ')}<b>{reverse_words('very good')}</b>"
        f"{reverse_words(' soil,')}<br/>{reverse_words('then ')}<i>{reverse_words('water')}</i>"
        f"{reverse_words(' it.')}"
    )
    interaction = LLMInteraction.objects.get()
    assert interaction.trigger == InteractionTrigger.EDITOR
    assert interaction.status == InteractionStatus.SUCCESS
    assert interaction.output_value == body["result"]["selection"]
    assert interaction.outcome == ""  # never "awaiting review": Keep could not write it


def test_discard_records_the_outcome(post, tool_action, fake_llm, superuser):
    fake_llm.configure(translate="reverse")
    client = client_for(superuser)
    body = rewrite(client, post)

    response = client.post(body["result"]["outcome_url"], {"outcome": "discarded"})

    assert response.status_code == 200
    assert LLMInteraction.objects.get().outcome == "discarded"


def test_a_dropped_tag_is_asked_again_once(post, tool_action, fake_llm, superuser):
    fake_llm.configure(translate="reverse")
    fake_llm.enqueue(translate="drop_tag")

    body = rewrite(client_for(superuser), post)

    assert body["state"] == "succeeded"
    assert fake_llm.request_count == 2
    assert '<a linktype="page" id="7">' in body["result"]["selection"]


def test_a_tag_dropped_twice_is_refused_with_nothing_changed(
    post, tool_action, fake_llm, superuser
):
    fake_llm.configure(translate="drop_tag")
    before = post.get_latest_revision().pk

    body = rewrite(client_for(superuser), post)

    assert body["state"] == "failed"
    assert "Nothing was changed" in body["message"]
    assert '<a linktype="page" id="7">' in body["message"]  # what was lost
    assert "selection" not in body.get("result", {})
    assert fake_llm.request_count == 2
    assert post.get_latest_revision().pk == before
    assert LLMInteraction.objects.get().status == InteractionStatus.ERROR


def test_a_selection_across_blocks_is_refused_before_anything_is_queued(
    post, tool_action, superuser
):
    response = client_for(superuser).post(
        run_url(post), {"tool": "rewrite", "html": "<p>One</p><p>Two</p>"}
    )
    assert response.status_code == 400
    assert "more than one block" in response.json()["message"]
    assert not LLMJob.objects.exists()


def test_only_users_who_may_edit_the_page(post, tool_action, outsider):
    client = client_for(outsider)
    tools_url = reverse("wagtail_llm_actions_editor:selection_tools", args=[post.pk])

    assert client.post(run_url(post), {"tool": "rewrite", "html": SELECTION}).status_code == 403
    assert client.get(tools_url).status_code == 403
    assert not LLMJob.objects.exists()


def test_the_run_needs_the_csrf_token(post, tool_action, superuser):
    client = client_for(superuser, enforce_csrf_checks=True)
    assert client.post(run_url(post), {"tool": "rewrite", "html": SELECTION}).status_code == 403
    assert not LLMJob.objects.exists()
    page_html = client.get(reverse("wagtailadmin_pages:edit", args=[post.pk])).content.decode()
    token = querydict_from_html(page_html, form_id="page-edit-form", exclude_csrf=False)[
        "csrfmiddlewaretoken"
    ]
    response = client.post(
        run_url(post), {"tool": "rewrite", "html": SELECTION}, HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 202


def test_a_budget_refuses_before_anything_is_sent(post, tool_action, fake_llm, superuser):
    LLMBudget.objects.create(name="Small", max_tokens=10, period="day")

    body = rewrite(client_for(superuser), post)

    assert body["state"] == "failed" and "“Small”" in body["message"]
    assert fake_llm.request_count == 0
    assert LLMInteraction.objects.get().error_code == "budget"


def test_the_edit_view_carries_the_control_and_its_words(client, post, tool_action, superuser):
    client.force_login(superuser)
    html = client.get(reverse("wagtailadmin_pages:edit", args=[post.pk])).content.decode()
    assert 'id="llm-selection-config"' in html
    assert "llm-selection-control.js" in html
    assert "llm-selection" in html  # the Draftail feature is on the rich-text fields


def test_each_tool_sends_its_own_instruction(post, tool_action, fake_llm, superuser):
    import json

    fake_llm.configure(translate="reverse")
    tool_action.prompt.template = "Make it sound like a pirate."
    tool_action.prompt.save()

    rewrite(client_for(superuser), post, tool="fix")
    rewrite(client_for(superuser), post, tool=f"action-{tool_action.pk}")
    rewrite(client_for(superuser), post, tool="tone")
    rewrite(client_for(superuser), post, tool="formal")

    sent = [json.loads(r["json"]["messages"][-1]["content"]) for r in fake_llm.requests]
    assert "spelling" in sent[0]["instruction"]
    assert sent[1]["instruction"] == "Make it sound like a pirate."
    assert "friendlier" in sent[2]["instruction"] and "formal" in sent[3]["instruction"]


def test_an_unknown_tool_is_refused(post, tool_action, superuser):
    response = client_for(superuser).post(run_url(post), {"tool": "poem", "html": SELECTION})
    assert response.status_code == 404
    assert not LLMJob.objects.exists()


def test_a_tool_switched_off_while_queued_fails_plainly(post, tool_action, fake_llm, superuser):
    client = client_for(superuser)
    response = client.post(run_url(post), {"tool": "rewrite", "html": SELECTION})
    tool_action.enabled = False
    tool_action.save()
    run_queued_tasks()

    status_url = reverse("wagtail_llm_actions_editor:status", args=[response.json()["job"]])
    body = client.get(status_url).json()
    assert body["state"] == "failed" and "no longer exists" in body["message"]
    assert fake_llm.request_count == 0


def test_the_interaction_log_shows_the_run(post, tool_action, fake_llm, superuser):
    fake_llm.configure(translate="reverse")
    client = client_for(superuser)
    rewrite(client, post, tool="shorten")
    interaction = LLMInteraction.objects.get()

    detail = client.get(reverse("wagtail_llm_actions_report:detail", args=[interaction.pk]))

    assert detail.status_code == 200
    html = detail.content.decode()
    assert "House style: Shorten" in html
    keep = reverse("wagtail_llm_actions_report:keep", args=[interaction.pk])
    assert keep not in html  # never "Keep as draft" into the action's target field


def test_an_answer_stored_before_the_worker_died_is_shown_not_paid_again(
    post, tool_action, fake_llm, superuser, monkeypatch
):
    from tests.test_editor_lease import lease_runs_out, run_and_die
    from wagtail_llm_actions.selection import jobs

    fake_llm.configure(translate="reverse")
    client = client_for(superuser)
    job_id = client.post(run_url(post), {"tool": "rewrite", "html": SELECTION}).json()["job"]
    run_and_die(monkeypatch, jobs, "_finish")  # the answer is stored, then the worker dies
    lease_runs_out(LLMJob.objects.get(pk=job_id))

    status_url = reverse("wagtail_llm_actions_editor:status", args=[job_id])
    body = client.get(status_url).json()

    assert body["state"] == "succeeded"
    assert '<a linktype="page" id="7">' in body["result"]["selection"]
    assert fake_llm.request_count == 1
    assert queued_task_count() == 0


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_preview_shows_the_answer_as_it_is_written_as_plain_text(
    shared_db, post, tool_action, fake_llm, superuser, settings
):
    """Streaming (issue 24 §3): the status the browser polls carries the answer so far,
    read out of the answer's JSON, without the markup placeholders; the whole answer is
    checked and restored as usual at the end."""
    import re
    import time

    from tests.threads import in_thread, join_checked

    # Every piece published; the stream held after three pieces until a partial was seen.
    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "STREAM_PUBLISH_INTERVAL": 0}
    fake_llm.configure(translate="reverse", stream_delay=0.01, stream_hold_after=3)
    client = client_for(superuser)
    response = client.post(run_url(post), {"tool": "rewrite", "html": SELECTION})
    status_url = reverse("wagtail_llm_actions_editor:status", args=[response.json()["job"]])
    worker = in_thread(run_queued_tasks)
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen.append(client.get(status_url).json())
        if seen[-1].get("partial"):
            fake_llm.release_streams()
        if seen[-1]["state"] in ("succeeded", "failed"):
            break
        time.sleep(0.03)
    fake_llm.release_streams()
    join_checked(worker)

    assert seen[-1]["state"] == "succeeded", seen[-1]
    final_text = re.sub(r"<[^>]+>", "", seen[-1]["result"]["selection"])
    partials = [body["partial"] for body in seen if body.get("partial")]
    assert partials, "no partial text was seen before the answer completed"
    for text in partials:
        assert "⟦" not in text and "{" not in text and '"' not in text
        assert final_text.startswith(text)
    # the one seen while the stream was held is the answer half written
    assert len(partials[0]) < len(final_text), (partials[0], final_text)
