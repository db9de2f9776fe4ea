"""Dry runs show exactly what a run sends.

``run_llm_action --dry-run`` and "Test on a page" print the messages and the request parameters
that shape the answer (model, temperature, max_tokens, n, response_format), built by the code
that builds the real request. Each test makes the dry run, then the real call against the fake
server, and compares the two.
"""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from tests.queued import finish_queued
from tests.test_structured import GOOD, MAPPING
from wagtail_llm_actions.models import LLMInteraction
from wagtail_llm_actions.service import LLMService

pytestmark = pytest.mark.django_db


def dry_run(action, page) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "run_llm_action", action.slug, "--page", str(page.pk), "--dry-run", stdout=out, stderr=err
    )
    return out.getvalue(), err.getvalue()


def test_on_a_page(user, action, page, *, ask: bool = False) -> str:
    client = Client()
    client.force_login(user)
    data = {"page": page.pk, **({"ask_model": "on"} if ask else {})}
    response = client.post(reverse("wagtail_llm_actions_tryout:try", args=[action.pk]), data)
    if ask:  # queued: the progress page, then the answer
        response = finish_queued(client, response, follow=True)
    assert response.status_code == 200
    return response.content.decode()


test_on_a_page.__test__ = False  # a helper, not a test


@pytest.fixture
def structured_action(make_action, fake_llm, api_key_env):
    """Fills several fields; openai/fake-model takes no JSON schema, so it is asked in the
    prompt."""
    return make_action(
        name="SEO fields",
        slug="seo-fields",
        target_field="",
        output_fields=dict(MAPPING),
        model="openai/fake-model",
        api_base=fake_llm.url,
        api_key_name=api_key_env,
        max_tokens=400,
    )


def real_request(fake_llm, action, page) -> dict:
    """The body of the first request a real run sends."""
    fake_llm.configure(json_reply=GOOD)
    LLMService().run(action, page)
    return fake_llm.requests[0]["json"]


def test_the_command_shows_a_structured_actions_schema_instruction(
    post, structured_action, fake_llm
):
    out, err = dry_run(structured_action, post)
    assert fake_llm.requests == []

    sent = real_request(fake_llm, structured_action, post)

    assert "JSON schema" in sent["messages"][-1]["content"]
    for message in sent["messages"]:
        assert f"[{message['role']}]\n{message['content']}\n" in out
    assert "response_format: none" in out
    assert "model: openai/fake-model" in out
    assert f"max_tokens: {sent['max_tokens']}" in out
    assert "n: 1" in out
    assert err == ""


def test_the_command_shows_the_response_format_the_run_sends(post, structured_action, fake_llm):
    structured_action.model = "openai/gpt-4o-mini"  # takes a JSON schema (LiteLLM's info)
    structured_action.save()
    out, _err = dry_run(structured_action, post)

    sent = real_request(fake_llm, structured_action, post)

    assert sent["response_format"]["type"] == "json_schema"
    shown = out.split("response_format: ", 1)[1]
    assert json.loads(shown[: shown.index("\n}") + 2]) == sent["response_format"]
    assert "JSON schema" not in out.split("[request]")[0]  # no instruction in the prompt
    assert f"[user]\n{sent['messages'][-1]['content']}\n" in out


def test_the_command_says_when_a_run_would_send_nothing(post, make_action, fake_llm, monkeypatch):
    monkeypatch.delenv("NEBIUS_API_KEY", raising=False)  # a provider variable, unset
    action = make_action(
        slug="no-key",
        model="openai/fake-model",
        api_base=fake_llm.url,
        api_key_name="NEBIUS_API_KEY",
    )

    out, err = dry_run(action, post)

    assert "[user]\nSummarize “Composting in a small flat”" in out  # the messages still show
    assert "A run would stop here, sending nothing" in err
    assert "NEBIUS_API_KEY is not set" in err
    assert "[request]" not in out
    assert fake_llm.requests == []


def test_test_on_a_page_shows_the_request_a_structured_run_sends(
    post, structured_action, fake_llm, superuser
):
    structured_action.model = "openai/gpt-4o-mini"
    structured_action.save()
    fake_llm.configure(json_reply=GOOD)

    html = test_on_a_page(superuser, structured_action, post, ask=True)

    sent = fake_llm.requests[0]["json"]  # the answer shown below the dry run
    assert escape(json.dumps(sent["response_format"], indent=2, ensure_ascii=False)) in html
    assert escape(sent["messages"][-1]["content"]) in html
    assert f"<dd data-llm-request-max_tokens>{sent['max_tokens']}</dd>" in html
    assert "<dd data-llm-request-model>openai/gpt-4o-mini</dd>" in html


def test_test_on_a_page_shows_the_schema_instruction_when_the_model_takes_no_schema(
    post, structured_action, fake_llm, superuser
):
    html = test_on_a_page(superuser, structured_action, post)
    assert fake_llm.requests == []

    sent = real_request(fake_llm, structured_action, post)

    assert "JSON schema" in sent["messages"][-1]["content"]
    assert escape(sent["messages"][-1]["content"]) in html
    assert '<dd data-llm-request-response_format><pre class="llm-pre">' not in html
    assert "<dd data-llm-request-response_format>none</dd>" in html


def test_test_on_a_page_shows_n_for_an_action_offering_candidates(
    post, server_action, fake_llm, superuser
):
    server_action.candidates = 3
    server_action.save()
    fake_llm.configure(candidate_replies=["One.", "Two.", "Three."])

    html = test_on_a_page(superuser, server_action, post, ask=True)

    sent = fake_llm.requests[0]["json"]
    assert sent["n"] == 3 and len(fake_llm.requests) == 1
    assert "<dd data-llm-request-n>3</dd>" in html
    assert "<dd data-llm-request-temperature>0.2</dd>" in html
    assert f"<dd data-llm-request-max_tokens>{sent['max_tokens']}</dd>" in html
    assert LLMInteraction.objects.get().candidates == ["One.", "Two.", "Three."]


def test_the_command_shows_the_first_part_of_a_source_split_into_parts(
    make_map_reduce_action, make_long_post, fake_llm
):

    post, _markers = make_long_post(paragraphs=120)
    action = make_map_reduce_action(
        slug="long-summary",
        max_tokens=120,
    )
    out, _err = dry_run(action, post)

    LLMService().run(action, post)

    parts = len(fake_llm.requests) - 1  # one call a part, then the combining call
    assert parts > 1
    first = fake_llm.requests[0]["json"]
    assert f"[user]\n{first['messages'][-1]['content']}\n" in out
    second_part = fake_llm.requests[1]["json"]["messages"][-1]["content"].split("\n\n", 1)[1]
    assert second_part[:200] not in out  # one part's messages, not the whole source
    assert f"split into {parts} parts" in out


def test_the_dry_run_shows_the_limit_a_split_source_parts_are_sent_with(
    make_map_reduce_action, make_long_post, fake_llm
):

    post, _markers = make_long_post(paragraphs=120)
    # no max_tokens: the parts still get a limit, so they can combine
    action = make_map_reduce_action(slug="long-summary")
    out, _err = dry_run(action, post)

    LLMService().run(action, post)

    sent = fake_llm.requests[0]["json"]
    assert sent["max_tokens"] == 1024
    assert "max_tokens: 1024" in out


def test_the_command_says_a_run_would_skip_an_unchanged_page(post, server_action, fake_llm):
    """As for a locked page: the request is shown, with a note that a run would skip the
    page as unchanged, by the rule a run applies; --force runs it, so no note then."""
    out, err = dry_run(server_action, post)
    assert "would skip" not in err  # never answered

    LLMService().run(server_action, post)  # its draft holds the answer
    out, err = dry_run(server_action, post)
    note = f"Page {post.pk} “{post.title}”: a run would skip it: unchanged"
    assert note in err and "(use --force)" in err
    assert "[request]" in out and post.title in out  # still shown

    forced = io.StringIO()
    call_command(
        "run_llm_action",
        *(server_action.slug, "--page", str(post.pk), "--dry-run", "--force"),
        stdout=io.StringIO(),
        stderr=forced,
    )
    assert "would skip" not in forced.getvalue()
    assert fake_llm.request_count == 1  # dry runs call nothing
