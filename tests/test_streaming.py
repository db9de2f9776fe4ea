"""Streaming editor answers: partial text while the model writes, the same answer at the end,
Cancel that closes the stream, a cut stream that fails cleanly, budgets with streamed usage."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from django.urls import reverse

from tests.browser.qworker import run_queued_tasks
from tests.test_editor import client_for, form_data, start, status
from tests.threads import in_thread, join_checked
from wagtail_llm_actions.models import (
    LLMBudget,
    LLMBudgetReservation,
    LLMBudgetUsage,
    LLMInteraction,
    LLMJobItem,
)
from wagtail_llm_actions.providers import CompletionRequest, LocalProvider, streaming

IDS = ("interaction", "outcome_url")
LONG = " ".join(f"word{n}" for n in range(60)) + "."

#: What an interaction records that a streamed run must record as a plain one does.
SAME = (
    "status",
    "outcome",
    "output_value",
    "response_text",
    "previous_value",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "model",
    "error_code",
)


def run_in_editor(client, post, action):
    """Start an editor run, run it here (the in-process worker), return (job id, status)."""
    response = start(client, post, action, form_data(client, post))
    assert response.status_code == 202, response.content
    job_id = response.json()["job"]
    run_queued_tasks()
    return job_id, status(client, job_id)[1]


def priced(action):
    """A model LiteLLM has a price for (answered by the fake server all the same)."""
    action.model = "openai/gpt-4o-mini"
    action.save()


def streamed_requests(fake_llm):
    return [r for r in fake_llm.requests if r["method"] == "POST" and r["json"].get("stream")]


# -- the same answer --------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_streamed_run_records_the_same_interaction_as_a_plain_one(
    post, server_action, fake_llm, superuser, settings
):
    fake_llm.configure(reply=LONG)
    priced(server_action)
    client = client_for(superuser)
    site = dict(settings.WAGTAIL_LLM_ACTIONS)
    settings.WAGTAIL_LLM_ACTIONS = {**site, "STREAM_EDITOR_ANSWERS": False}
    _job, plain_status = run_in_editor(client, post, server_action)
    assert not streamed_requests(fake_llm)
    settings.WAGTAIL_LLM_ACTIONS = site
    _job, streamed_status = run_in_editor(client, post, server_action)

    sent = streamed_requests(fake_llm)
    assert len(sent) == 1
    assert sent[0]["json"]["stream_options"] == {"include_usage": True}
    assert plain_status["state"] == streamed_status["state"] == "succeeded"
    plain, streamed = LLMInteraction.objects.order_by("pk")
    for name in SAME:
        assert getattr(streamed, name) == getattr(plain, name), name
    assert streamed.output_value == LONG and streamed.completion_tokens
    assert streamed.cost is not None and streamed.cost > 0
    assert streamed.parameters["timeout"] == plain.parameters["timeout"]
    plain_result = {k: v for k, v in plain_status["result"].items() if k not in IDS}
    streamed_result = {k: v for k, v in streamed_status["result"].items() if k not in IDS}
    assert streamed_result == plain_result


@pytest.mark.django_db
def test_a_streamed_run_saved_as_a_draft_writes_the_same_draft(
    post, server_action, fake_llm, superuser
):
    from wagtail_llm_actions.service import LLMService

    fake_llm.configure(reply=LONG)
    pieces: list[str] = []
    with streaming.offering(lambda text: pieces.append(text) or True):
        interaction = LLMService().run(server_action, post, superuser)

    draft = type(post).objects.get(pk=post.pk).get_latest_revision_as_object()
    assert draft.summary == LONG == interaction.output_value
    assert len(pieces) > 3 and pieces[-1] == LONG  # every piece, growing
    assert all(LONG.startswith(piece) for piece in pieces)
    assert streamed_requests(fake_llm)


@pytest.mark.django_db
def test_a_streamed_answer_is_kept_in_the_response_cache_as_a_plain_one(
    post, server_action, fake_llm, superuser
):
    server_action.use_cache = True
    server_action.save()
    fake_llm.configure(reply=LONG)
    client = client_for(superuser)

    _job, first = run_in_editor(client, post, server_action)
    _job, second = run_in_editor(client, post, server_action)

    assert len(streamed_requests(fake_llm)) == len(fake_llm.requests) == 1
    assert first["result"]["value"] == second["result"]["value"] == LONG
    streamed, cached = LLMInteraction.objects.order_by("pk")
    assert not streamed.cached and cached.cached
    assert cached.output_value == streamed.output_value


# -- partial text, Cancel ---------------------------------------------------------------------


def _poll_until(client, job_id, done, timeout=30.0):
    """Poll the status endpoint as the browser does; every answer until ``done(body)``."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = status(client, job_id)[1]
        seen.append(body)
        if done(body):
            break
        time.sleep(0.05)
    return seen


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_partial_text_is_visible_to_the_status_endpoint_before_the_answer_completes(
    shared_db, post, server_action, fake_llm, superuser, monkeypatch
):
    fake_llm.configure(reply=LONG, stream_delay=0.03)
    client = client_for(superuser)
    job_id = start(client, post, server_action, form_data(client, post)).json()["job"]
    writes = []
    original = streaming.offering

    def counting(publish):
        writes.append(publish)
        return original(publish)

    monkeypatch.setattr(streaming, "offering", counting)
    worker = in_thread(run_queued_tasks)
    seen = _poll_until(client, job_id, lambda body: body["state"] in ("succeeded", "failed"))
    join_checked(worker)

    partials = [body["partial"] for body in seen if body.get("partial")]
    assert partials, "no partial text was seen before the answer completed"
    assert all(LONG.startswith(text) and len(text) < len(LONG) for text in partials)
    assert seen[-1]["state"] == "succeeded" and "partial" not in seen[-1]
    assert seen[-1]["result"]["value"] == LONG
    # about 40 chunks over about 1.2 s: a write every 0.25 s, not one a chunk
    assert 1 <= writes[0].writes <= 10


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_cancel_mid_stream_closes_the_stream_and_writes_nothing(
    shared_db, post, server_action, fake_llm, superuser
):
    fake_llm.configure(reply=LONG, stream_delay=0.05)
    client = client_for(superuser)
    revisions = post.revisions.count()
    job_id = start(client, post, server_action, form_data(client, post)).json()["job"]
    worker = in_thread(run_queued_tasks)
    _poll_until(client, job_id, lambda body: bool(body.get("partial")))

    response = client.post(reverse("wagtail_llm_actions_editor:cancel", args=[job_id]))
    join_checked(worker)

    assert response.status_code == 200
    assert status(client, job_id)[1]["state"] == "cancelled"
    sent = streamed_requests(fake_llm)[-1]
    deadline = time.monotonic() + 5
    while sent["finished"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sent["client_closed"]  # the connection was closed: no more tokens
    assert 0 < sent["chunks_sent"] < 40  # all the answer takes 40 chunks
    interaction = LLMInteraction.objects.get()
    assert interaction.status == "error" and interaction.error_code == "cancelled"
    assert "Cancelled" in interaction.error_message
    assert interaction.output_value == ""
    assert interaction.completion_tokens and interaction.completion_tokens < 80
    assert post.revisions.count() == revisions  # nothing written
    assert LLMJobItem.objects.get(job_id=job_id).status == "cancelled"


# -- a cut stream, budgets ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_stream_cut_half_way_fails_cleanly_and_says_why(post, server_action, fake_llm, superuser):
    fake_llm.configure(reply=LONG, stream_cut_after=5)
    server_action.fallback_models = "openai/fake-fallback"
    server_action.save()
    client = client_for(superuser)
    budget = LLMBudget.objects.create(name="Monthly", max_tokens=100_000)
    revisions = post.revisions.count()

    _job, body = run_in_editor(client, post, server_action)

    assert body["state"] == "failed"
    assert body["result"]["code"] == "stream_broken"
    assert "stopped half way" in body["message"] and "Nothing was written" in body["message"]
    interaction = LLMInteraction.objects.get()
    assert interaction.status == "error" and interaction.error_code == "stream_broken"
    assert interaction.output_value == ""
    received = interaction.completion_tokens
    assert received and received < 30  # the five chunks that came
    assert f"about {received} tokens" in interaction.error_message
    assert post.revisions.count() == revisions
    assert len(fake_llm.requests) == 1  # no fallback starting the answer again
    usage = LLMBudgetUsage.objects.get(budget=budget)
    assert usage.tokens == interaction.total_tokens  # what was received is counted
    assert not LLMBudgetReservation.objects.exists()


@pytest.mark.django_db
def test_a_stream_that_stalls_before_any_text_fails_as_a_timeout(
    post, server_action, fake_llm, superuser
):
    server_action.timeout = 1
    server_action.save()
    fake_llm.configure(reply=LONG, stream_delay=3)

    _job, body = run_in_editor(client_for(superuser), post, server_action)

    assert body["state"] == "failed" and body["result"]["code"] == "timeout"
    assert "within 1 second" in body["message"]


@pytest.mark.django_db
def test_budgets_settle_with_the_usage_of_the_last_chunk(post, server_action, fake_llm, superuser):
    usage = {"prompt_tokens": 321, "completion_tokens": 45, "total_tokens": 366}
    fake_llm.configure(reply=LONG, usage=usage)
    priced(server_action)
    budget = LLMBudget.objects.create(name="Monthly", max_tokens=100_000)

    _job, body = run_in_editor(client_for(superuser), post, server_action)

    assert body["state"] == "succeeded"
    interaction = LLMInteraction.objects.get()
    assert (interaction.prompt_tokens, interaction.completion_tokens) == (321, 45)
    assert interaction.total_tokens == 366
    spent = LLMBudgetUsage.objects.get(budget=budget)
    assert spent.tokens == 366 and spent.cost == interaction.cost > Decimal(0)
    assert not LLMBudgetReservation.objects.exists()


# -- which runs stream ------------------------------------------------------------------------


@pytest.mark.django_db
def test_candidates_and_structured_answers_do_not_stream(post, server_action, fake_llm, superuser):
    server_action.candidates = 2
    server_action.save()

    _job, body = run_in_editor(client_for(superuser), post, server_action)

    assert body["state"] == "succeeded"
    assert not streamed_requests(fake_llm)


def test_the_offline_provider_streams_its_deterministic_answer(settings):
    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "LOCAL_STREAM_DELAY": 0}
    request = CompletionRequest(
        model="local/extractive",
        messages=[{"role": "user", "content": "Content:\n" + "Worms eat peel. " * 30}],
    )
    provider = LocalProvider()
    pieces: list[str] = []
    with streaming.offering(lambda text: pieces.append(text) or True), streaming.accepting():
        result = streaming.complete(provider, request)

    assert result.text == provider.complete(request).text
    assert len(pieces) > 2 and pieces[-1] == result.text


def test_a_sink_that_says_stop_stops_the_offline_stream(settings):
    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "LOCAL_STREAM_DELAY": 0}
    request = CompletionRequest(
        model="local/extractive",
        messages=[{"role": "user", "content": "Content:\n" + "Worms eat peel. " * 30}],
    )
    with (
        streaming.offering(lambda text: False),
        streaming.accepting(),
        pytest.raises(streaming.StreamStopped),
    ):
        streaming.complete(LocalProvider(), request)
