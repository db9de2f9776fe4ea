"""Structured output (one call fills several fields) and several candidates."""

from __future__ import annotations

import json
import threading
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from wagtail_llm_actions import providers
from wagtail_llm_actions.exceptions import LLMActionError
from wagtail_llm_actions.models import InteractionStatus, LLMInteraction
from wagtail_llm_actions.service import LLMService
from wagtail_llm_actions.structured import build_schema

MAPPING = {
    "title": "seo_title",
    "description": "search_description",
    "tags": "tags",
    "summary": "summary",
}

GOOD = {
    "title": "Compost in a flat",
    "description": "How to keep a worm bin indoors.",
    "tags": ["compost", "worms"],
    "summary": "A small bin, worms and peelings make compost.",
}


def latest(page):
    return type(page).objects.get(pk=page.pk).get_latest_revision_as_object()


@pytest.fixture
def structured_action(make_action, fake_llm, api_key_env):
    """Asks in the prompt (openai/fake-model has no JSON schema support in LiteLLM's info)."""
    return make_action(
        name="SEO fields",
        slug="seo-fields",
        target_field="",
        output_fields=dict(MAPPING),
        model="openai/fake-model",
        api_base=fake_llm.url,
        api_key_name=api_key_env,
    )


def revision_count(page):
    return type(page).objects.get(pk=page.pk).revisions.count()


# -- schema ------------------------------------------------------------------------------------


def test_schema_follows_each_field_type_and_limit(db):
    from blog.models import BlogPage

    schema = build_schema(BlogPage, {**MAPPING, "highlights": "highlights", "intro": "intro"})
    props = schema["properties"]
    assert schema["required"] == list(props)
    assert schema["additionalProperties"] is False
    assert props["title"]["type"] == "string"
    assert props["title"]["maxLength"] == 255  # Page.seo_title
    assert props["intro"]["maxLength"] == 250
    assert props["summary"]["maxLength"] == 600
    assert props["tags"]["type"] == "array"
    assert props["tags"]["items"]["type"] == "string"
    assert props["highlights"]["type"] == "string"
    assert "HTML" in props["highlights"]["description"]
    assert "maxLength" not in props["description"]  # search_description has no limit


# -- mapping validation -------------------------------------------------------------------------


def test_duplicate_or_missing_fields_are_refused(structured_action):
    from blog.models import BlogPage

    structured_action.output_fields = {"a": "summary", "b": "summary"}
    with pytest.raises(ValidationError) as e:
        structured_action.full_clean()
    assert "mapped twice" in str(e.value.message_dict["output_fields"])

    structured_action.output_fields = {"a": "summary", "b": "no_such_field"}
    errors = structured_action.validate_for_page_models([BlogPage])
    assert any("no_such_field" in m for m in errors["output_fields"])

    structured_action.output_fields = {"a": "summary", "b": "body"}  # a StreamField
    errors = structured_action.validate_for_page_models([BlogPage])
    assert any("StreamField" in m for m in errors["output_fields"])

    structured_action.output_fields = ["summary"]
    with pytest.raises(ValidationError) as e:
        structured_action.full_clean()
    assert "output_fields" in e.value.message_dict


def test_admin_form_refuses_a_missing_field(structured_action, superuser, client):
    from wagtail_llm_actions.forms import LLMActionForm
    from wagtail_llm_actions.viewsets import LLMActionViewSet

    form_class = LLMActionViewSet().get_edit_handler().get_form_class()
    assert issubclass(form_class, LLMActionForm)
    data = {
        "name": "x",
        "slug": "x",
        "page_types": [structured_action.page_types.first().pk],
        "source_field": "body",
        "target_field": "",
        "output_fields": json.dumps({"a": "summary", "b": "nope"}),
        "candidates": "1",
        "output_mode": "text",
        "enabled": "on",
        "prompt": structured_action.prompt_id,
        "model": "local/extractive",
        "timeout": "5",
        "extra_params": "{}",
    }
    form = form_class(data, for_user=superuser)
    assert not form.is_valid()
    assert "nope" in str(form.errors["output_fields"])


@pytest.mark.parametrize("count", [0, 6])
def test_candidates_out_of_range_are_refused(action, count):
    action.candidates = count
    with pytest.raises(ValidationError) as e:
        action.full_clean()
    assert "candidates" in e.value.message_dict


def test_candidates_with_several_fields_are_refused(structured_action):
    structured_action.candidates = 3
    with pytest.raises(ValidationError) as e:
        structured_action.full_clean()
    assert "candidates" in e.value.message_dict


# -- the call -----------------------------------------------------------------------------------


def test_prompt_path_asks_for_json_and_fills_every_field(post, structured_action, fake_llm):
    fake_llm.configure(json_reply=GOOD)
    before = latest(post)
    interaction = LLMService().run(structured_action, post)

    sent = fake_llm.last_request["json"]
    assert "response_format" not in sent
    assert "JSON schema" in sent["messages"][-1]["content"]
    assert '"maxLength": 255' in sent["messages"][-1]["content"]
    draft = latest(post)
    assert draft.seo_title == GOOD["title"]
    assert draft.search_description == GOOD["description"]
    assert sorted(t.name for t in draft.tags.all()) == ["compost", "worms"]
    assert draft.summary == GOOD["summary"]
    # nothing else changed
    assert draft.intro == before.intro and draft.title == before.title
    assert draft.body.get_prep_value() == before.body.get_prep_value()
    assert interaction.output_values == {
        "seo_title": GOOD["title"],
        "search_description": GOOD["description"],
        "tags": "compost, worms",
        "summary": GOOD["summary"],
    }
    assert interaction.previous_values["summary"] == before.summary


def test_response_format_path_when_the_model_supports_a_schema(post, structured_action, fake_llm):
    assert providers.supports_response_schema("openai/gpt-4o-mini")
    structured_action.model = "openai/gpt-4o-mini"
    structured_action.save()
    interaction = LLMService().run(structured_action, post)

    sent = fake_llm.last_request["json"]
    fmt = sent["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"]["properties"]["title"]["maxLength"] == 255
    assert "JSON schema" not in sent["messages"][-1]["content"]  # no prompt instruction
    draft = latest(post)
    assert draft.seo_title.startswith("Sample title")  # the fake's JSON-mode answer
    assert interaction.parameters["response_format"]["type"] == "json_schema"


def test_invalid_json_is_repaired_once(post, structured_action, fake_llm):
    fake_llm.configure(json_reply=GOOD)
    fake_llm.enqueue(json_reply=None, reply="Sure! Here are the fields: title=Compost")
    interaction = LLMService().run(structured_action, post)

    assert fake_llm.request_count == 2
    repair = fake_llm.last_request["json"]["messages"]
    assert repair[-2] == {
        "role": "assistant",
        "content": "Sure! Here are the fields: title=Compost",
    }
    assert "not valid JSON" in repair[-1]["content"]
    assert latest(post).seo_title == GOOD["title"]
    assert interaction.parameters["repaired"] is True
    assert interaction.total_tokens > 0


def test_a_value_breaking_a_field_rule_is_repaired(post, structured_action, fake_llm):
    fake_llm.configure(json_reply=GOOD)
    fake_llm.enqueue(json_reply={**GOOD, "title": "x" * 300})
    LLMService().run(structured_action, post)
    assert fake_llm.request_count == 2
    assert "seo_title" in fake_llm.last_request["json"]["messages"][-1]["content"]
    assert latest(post).seo_title == GOOD["title"]


def test_invalid_twice_fails_with_nothing_written(post, structured_action, fake_llm):
    fake_llm.configure(reply="not json at all")
    revisions = revision_count(post)
    with pytest.raises(LLMActionError) as e:
        LLMService().run(structured_action, post)
    assert "still unusable after one repair" in e.value.message
    assert fake_llm.request_count == 2
    assert revision_count(post) == revisions
    row = LLMInteraction.objects.get()
    assert row.status == InteractionStatus.ERROR
    assert row.error_code == "invalid_json"
    assert row.revision is None


def test_ignored_schema_is_an_error_after_the_repair(post, structured_action, fake_llm):
    fake_llm.configure(json_reply=GOOD, ignore_schema=True)
    revisions = revision_count(post)
    with pytest.raises(LLMActionError) as e:
        LLMService().run(structured_action, post)
    assert e.value.code == "schema_ignored"
    assert "lacks the keys" in e.value.message
    assert fake_llm.request_count == 2
    assert revision_count(post) == revisions


def test_truncated_json_is_detected_from_finish_reason(post, structured_action, fake_llm):
    fake_llm.configure(json_reply=GOOD, truncate_json=True)
    revisions = revision_count(post)
    with pytest.raises(LLMActionError) as e:
        LLMService().run(structured_action, post)
    assert e.value.code == "truncated"
    assert "cut off by the token limit" in e.value.message
    assert fake_llm.request_count == 1  # asking again would be cut off again
    assert revision_count(post) == revisions
    assert e.value.interaction.answer_truncated  # flagged in the log like any cut answer


# -- bulk and command ---------------------------------------------------------------------------


def test_command_writes_one_draft_with_all_fields_and_nothing_else(
    make_post, structured_action, fake_llm
):
    fake_llm.configure(json_reply=GOOD)
    pages = [make_post(), make_post()]
    before = {p.pk: (revision_count(p), latest(p)) for p in pages}
    call_command("run_llm_action", structured_action.slug, "--all", stdout=StringIO())
    for page in pages:
        count, old = before[page.pk]
        assert revision_count(page) == count + 1  # one draft per page
        draft = latest(page)
        assert draft.seo_title == GOOD["title"]
        assert draft.summary == GOOD["summary"]
        assert draft.intro == old.intro
        assert draft.title == old.title
        assert draft.highlights == old.highlights
        assert draft.body.get_prep_value() == old.body.get_prep_value()
    assert fake_llm.request_count == 2  # one call per page
    # the page history names every field the draft got
    from wagtail.models import PageLogEntry

    entry = PageLogEntry.objects.filter(page=pages[0], action="wagtail_llm_actions.generate")
    message = entry.get().message
    # In the mapping's order on every database (jsonb keeps no key order: the mapping and
    # the values are stored as ordered pairs, see models.OrderedJSONField).
    assert "Title tag, Meta description, Tags, Summary" in message  # labels (issue 21)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_editor_save_keeps_their_change_and_all_mapped_fields(
    shared_db, post, structured_action, fake_llm, editor
):
    from blog.models import BlogPage

    saved = threading.Event()

    def reply(payload):
        saved.wait(20)
        return GOOD

    fake_llm.configure(json_reply=reply)

    def editor_saves():
        from django.db import connections

        try:
            assert fake_llm.wait_for_requests(1, timeout=20)
            page = BlogPage.objects.get(pk=post.pk).get_latest_revision_as_object()
            page.intro = "Edited meanwhile"
            page.summary = "The editor's summary"
            page.save_revision(user=editor)
        finally:
            saved.set()
            connections.close_all()

    thread = threading.Thread(target=editor_saves, daemon=True)
    thread.start()
    interaction = LLMService().run(structured_action, post)
    thread.join(30)

    draft = latest(post)
    assert interaction.rebased
    assert draft.intro == "Edited meanwhile"  # their change to an unmapped field stays
    assert draft.summary == GOOD["summary"]  # every mapped field is the answer's
    assert draft.seo_title == GOOD["title"]
    assert sorted(t.name for t in draft.tags.all()) == ["compost", "worms"]
    interaction.refresh_from_db()
    assert interaction.previous_values["summary"] == "The editor's summary"


# -- candidates ---------------------------------------------------------------------------------


def test_candidates_with_n_in_one_call(post, server_action, fake_llm):
    server_action.candidates = 3
    server_action.save()
    fake_llm.configure(candidate_replies=["One.", "Two.", "Three."])
    obj = post.get_latest_revision_as_object()
    interaction = LLMService().run(server_action, post, working_obj=obj, save=False)
    assert fake_llm.request_count == 1
    assert fake_llm.last_request["json"]["n"] == 3
    assert interaction.candidates == ["One.", "Two.", "Three."]
    assert interaction.output_value == "One."
    assert interaction.parameters["calls"] == 1


def test_candidates_with_n_calls_when_n_is_unsupported(post, server_action, fake_llm, monkeypatch):
    monkeypatch.setattr(providers, "supports_n", lambda model: False)
    server_action.candidates = 3
    server_action.save()
    answers = iter(["One.", "Two.", "Three."])
    usage = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
    fake_llm.configure(reply=lambda payload: next(answers), usage=usage)
    obj = post.get_latest_revision_as_object()
    interaction = LLMService().run(server_action, post, working_obj=obj, save=False)
    assert fake_llm.request_count == 3
    assert all("n" not in r["json"] for r in fake_llm.requests)
    assert interaction.candidates == ["One.", "Two.", "Three."]
    assert interaction.parameters["calls"] == 3
    # the three calls are counted: their usage adds up
    assert (interaction.prompt_tokens, interaction.total_tokens) == (30, 36)


def test_a_server_that_ignores_n_gets_the_remaining_calls(post, server_action, fake_llm):
    server_action.candidates = 2
    server_action.save()
    fake_llm.configure(ignore_n=True)
    fake_llm.enqueue(reply="First.")
    fake_llm.enqueue(reply="Second.")
    obj = post.get_latest_revision_as_object()
    interaction = LLMService().run(server_action, post, working_obj=obj, save=False)
    assert fake_llm.request_count == 2
    assert interaction.candidates == ["First.", "Second."]


@pytest.mark.parametrize(
    ("cut_answers", "offered", "warned"),
    [("refuse", ["One.", "Three."], False), ("keep", ["One.", "Two is cut", "Three."], True)],
)
def test_candidates_cut_off_by_max_tokens_are_left_out_or_flagged(
    post, server_action, fake_llm, monkeypatch, cut_answers, offered, warned
):
    monkeypatch.setattr(providers, "supports_n", lambda model: False)
    server_action.candidates = 3
    server_action.cut_answers = cut_answers
    server_action.save()
    fake_llm.enqueue(reply="One.")
    fake_llm.enqueue(reply="Two is cut", finish_reason="length")
    fake_llm.enqueue(reply="Three.")
    obj = post.get_latest_revision_as_object()

    interaction = LLMService().run(server_action, post, working_obj=obj, save=False)

    assert interaction.candidates == offered
    assert interaction.answer_truncated is warned
    assert ("cut off" in interaction.cut_warning) is warned


def test_every_candidate_cut_off_is_refused(post, server_action, fake_llm):
    server_action.candidates = 2
    server_action.save()
    fake_llm.configure(finish_reason="length", candidate_replies=["One is", "Two is"])
    obj = post.get_latest_revision_as_object()

    with pytest.raises(LLMActionError) as e:
        LLMService().run(server_action, post, working_obj=obj, save=False)

    assert e.value.code == "answer_cut"
    assert e.value.interaction.status == "error"


def test_bulk_and_command_write_the_first_candidate_and_ask_for_one(post, server_action, fake_llm):
    server_action.candidates = 3
    server_action.save()
    fake_llm.configure(reply="The only one.")
    call_command("run_llm_action", server_action.slug, "--page", str(post.pk), stdout=StringIO())
    assert fake_llm.request_count == 1
    assert "n" not in fake_llm.last_request["json"]
    assert latest(post).summary == "The only one."


# -- editor ---------------------------------------------------------------------------------------


def _generate(client, page, action):
    from tests.test_editor import form_data, run_and_wait

    body = run_and_wait(client, page, action, form_data(client, page))
    assert body["state"] == "succeeded", body
    return body["result"]


def test_editor_result_has_each_field_and_records_outcome_per_field(
    post, structured_action, fake_llm, superuser
):
    from tests.test_editor import client_for, form_data

    fake_llm.configure(json_reply=GOOD)
    client = client_for(superuser)
    result = _generate(client, post, structured_action)
    fields = {item["field"]: item for item in result["fields"]}
    assert set(fields) == set(MAPPING.values())
    assert fields["tags"]["widget"] == "tags" and fields["tags"]["value"] == ["compost", "worms"]
    assert fields["seo_title"]["value"] == GOOD["title"]
    revisions = revision_count(post)
    assert revisions == revision_count(post)  # the editor run wrote nothing

    # Discard the description; keep the title as generated; edit the summary; keep tags
    url = result["outcome_url"]
    response = client.post(f"{url}?field=search_description", {"outcome": "discarded"})
    assert response.status_code == 200
    data = form_data(
        client,
        post,
        seo_title=GOOD["title"],
        search_description="",
        summary=GOOD["summary"] + " Edited.",
        tags="compost, worms",
        llm_action_interactions=",".join(
            f"{result['interaction']}:{name}" for name in ("seo_title", "summary", "tags")
        ),
    )
    response = client.post(reverse_edit(post), data)
    assert response.status_code == 302
    interaction = LLMInteraction.objects.get(pk=result["interaction"])
    assert interaction.field_outcomes == {
        "search_description": "discarded",
        "seo_title": "accepted",
        "summary": "edited",
        "tags": "accepted",
    }
    assert interaction.outcome == "edited"
    assert interaction.revision_id == type(post).objects.get(pk=post.pk).latest_revision_id


def test_discarding_every_field_discards_the_interaction(
    post, structured_action, fake_llm, superuser
):
    from tests.test_editor import client_for

    fake_llm.configure(json_reply=GOOD)
    client = client_for(superuser)
    result = _generate(client, post, structured_action)
    for name in MAPPING.values():
        client.post(f"{result['outcome_url']}?field={name}", {"outcome": "discarded"})
    interaction = LLMInteraction.objects.get(pk=result["interaction"])
    assert interaction.outcome == "discarded"
    response = client.post(f"{result['outcome_url']}?field=intro", {"outcome": "discarded"})
    assert response.status_code == 400  # not a field of this answer


def test_editor_candidates_and_the_chosen_one_is_recorded(post, server_action, fake_llm, superuser):
    from tests.test_editor import client_for, form_data

    server_action.candidates = 3
    server_action.save()
    fake_llm.configure(candidate_replies=["One.", "Two.", "Three."])
    client = client_for(superuser)
    result = _generate(client, post, server_action)
    assert [c["value"] for c in result["candidates"]] == ["One.", "Two.", "Three."]
    assert fake_llm.last_request["json"]["n"] == 3

    assert client.post(result["choose_url"], {"index": "7"}).status_code == 400
    assert client.post(result["choose_url"], {"index": "1"}).status_code == 200
    data = form_data(
        client, post, summary="Two.", llm_action_interactions=str(result["interaction"])
    )
    assert client.post(reverse_edit(post), data).status_code == 302
    interaction = LLMInteraction.objects.get(pk=result["interaction"])
    assert interaction.chosen_candidate == 1
    assert interaction.outcome == "accepted"  # the saved value is the chosen candidate


def test_panels_offer_a_structured_action_on_its_fields_and_the_menu_once(
    rf, post, structured_action, superuser
):
    from wagtail_llm_actions.panels import EditorTarget, editor_context, menu_entries

    request = rf.get("/")
    request.user = superuser
    target = EditorTarget.for_page(post)
    for name in ("summary", "tags", "search_description"):
        context = editor_context(target, request, name)
        assert [i["action"].slug for i in context["actions"]] == ["seo-fields"]
    entries = menu_entries(target, request)
    slugs = [i["action"].slug for e in entries for i in e["actions"]]
    assert slugs.count("seo-fields") == 1


def reverse_edit(page):
    from django.urls import reverse

    return reverse("wagtailadmin_pages:edit", args=[page.pk])


# -- report -------------------------------------------------------------------------------------


def test_detail_shows_every_field_and_discard_reverts_them_all(
    client, superuser, post, structured_action, fake_llm
):
    from django.urls import reverse

    fake_llm.configure(json_reply=GOOD)
    before = latest(post)
    interaction = LLMService().run(structured_action, post, superuser)
    client.force_login(superuser)
    html = client.get(
        reverse("wagtail_llm_actions_report:detail", args=[interaction.pk])
    ).content.decode()
    for name in MAPPING.values():
        assert f'data-llm-field="{name}"' in html
    assert GOOD["title"] in html and GOOD["summary"] in html and "compost, worms" in html

    response = client.post(reverse("wagtail_llm_actions_report:discard", args=[interaction.pk]))
    assert response.status_code == 302
    draft = latest(post)
    assert draft.seo_title == before.seo_title
    assert draft.summary == before.summary
    assert list(draft.tags.all()) == []
    interaction.refresh_from_db()
    assert interaction.outcome == "discarded"


def test_keeping_a_pending_structured_answer_writes_every_field(
    post, structured_action, fake_llm, superuser
):
    from wagtail_llm_actions.review import keep

    fake_llm.configure(json_reply=GOOD)
    obj = post.get_latest_revision_as_object()
    interaction = LLMService().run(structured_action, post, superuser, working_obj=obj, save=False)
    keep(interaction, superuser)
    draft = latest(post)
    assert draft.seo_title == GOOD["title"] and draft.summary == GOOD["summary"]
    assert fake_llm.request_count == 1  # kept from the stored values, not asked again


def test_keeping_a_pending_candidate_writes_the_chosen_one(
    post, server_action, fake_llm, superuser
):
    from wagtail_llm_actions.editor import choose_candidate
    from wagtail_llm_actions.review import keep

    server_action.candidates = 2
    server_action.save()
    fake_llm.configure(candidate_replies=["One.", "Two."])
    obj = post.get_latest_revision_as_object()
    interaction = LLMService().run(server_action, post, superuser, working_obj=obj, save=False)
    assert choose_candidate(interaction, 1)
    keep(interaction, superuser)
    assert latest(post).summary == "Two."


# -- bulk screen and estimates --------------------------------------------------------------------


def test_bulk_job_writes_one_multi_field_draft_per_page(
    client, make_post, structured_action, fake_llm, superuser
):
    from tests.test_bulk import bulk_url
    from tests.workers import drain
    from wagtail_llm_actions import jobs
    from wagtail_llm_actions.models import LLMJob

    fake_llm.configure(json_reply=GOOD)
    pages = [make_post(), make_post()]
    before = {p.pk: (revision_count(p), latest(p)) for p in pages}
    client.force_login(superuser)
    html = client.get(bulk_url(pages, action=structured_action.pk)).content.decode()
    assert "fills these fields in one draft" in html
    client.post(bulk_url(pages), {"action": structured_action.pk})
    jobs.enqueue_job(LLMJob.objects.get(), on_commit=False)
    assert drain() == ["completed"]
    for page in pages:
        count, old = before[page.pk]
        assert revision_count(page) == count + 1
        draft = latest(page)
        assert (draft.seo_title, draft.summary) == (GOOD["title"], GOOD["summary"])
        assert (draft.intro, draft.title, draft.highlights) == (
            old.intro,
            old.title,
            old.highlights,
        )


def test_bulk_screen_says_candidates_are_not_used(client, post, server_action, superuser):
    from tests.test_bulk import bulk_url

    server_action.candidates = 3
    server_action.save()
    client.force_login(superuser)
    html = client.get(bulk_url([post], action=server_action.pk)).content.decode()
    assert "writes the first candidate" in html


def test_structured_estimate_counts_the_schema(post, structured_action):
    from blog.models import BlogPage

    from wagtail_llm_actions import estimates

    assert estimates.structured_prompt_tokens(structured_action, BlogPage) > 50


def test_candidate_estimate_counts_n_calls_or_one(db):
    from wagtail_llm_actions import estimates

    with_n = estimates.estimate_candidates("openai/gpt-4o-mini", 100, 3, 50)
    one_by_one = estimates.estimate_candidates("anthropic/claude-3-5-haiku-latest", 100, 3, 50)
    assert (with_n.prompt_tokens, with_n.completion_tokens) == (100, 150)
    assert (one_by_one.prompt_tokens, one_by_one.completion_tokens) == (300, 150)
    assert estimates.candidate_calls("local/extractive", 3) == 3


def test_a_stored_structured_answer_is_applied_later_without_a_call(
    post, structured_action, fake_llm, monkeypatch, superuser
):
    from django.db import OperationalError

    from wagtail_llm_actions.exceptions import WriteFailed

    monkeypatch.setattr("wagtail_llm_actions.db.FIRST_BACKOFF", 0.001)
    fake_llm.configure(json_reply=GOOD)

    def busy(working_obj, user, action, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr("wagtail_llm_actions.run.drafts.save_draft", busy)
    with pytest.raises(WriteFailed):
        LLMService().run(structured_action, post, superuser)
    stored = LLMInteraction.objects.get()
    assert stored.status == "answered"
    assert stored.output_values["seo_title"] == GOOD["title"]

    monkeypatch.undo()
    LLMService().apply_stored(stored, superuser)
    draft = latest(post)
    assert (draft.seo_title, draft.summary) == (GOOD["title"], GOOD["summary"])
    assert sorted(t.name for t in draft.tags.all()) == ["compost", "worms"]
    assert fake_llm.request_count == 1


def test_fields_keep_the_mappings_order_on_every_database(
    post, structured_action, fake_llm, admin_client
):
    """jsonb (PostgreSQL) sorts keys by length: "tags", "title", "summary", "description".
    The mapping and an interaction's values keep the order the mapping was written in."""
    import re

    from django.urls import reverse

    from wagtail_llm_actions.models import LLMAction

    order = ["seo_title", "search_description", "tags", "summary"]
    fake_llm.configure(json_reply=GOOD)
    action = LLMAction.objects.get(pk=structured_action.pk)
    assert list(action.output_fields) == list(MAPPING)
    assert action.target_fields == order

    interaction = LLMService().run(action, post)

    fresh = LLMInteraction.objects.get(pk=interaction.pk)
    assert list(fresh.output_values) == order
    assert list(fresh.previous_values) == order
    html = admin_client.get(
        reverse("wagtail_llm_actions_report:detail", args=[fresh.pk])
    ).content.decode()
    assert re.findall(r'data-llm-field="([\w]+)"', html) == order
    # an object stored as a plain JSON object (before migration 0009) reads as it is
    from django.db import connection

    cast = "::jsonb" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {LLMInteraction._meta.db_table} SET field_outcomes = %s{cast} WHERE id = %s",  # noqa: S608 - constants only
            ['{"summary": "accepted"}', fresh.pk],
        )
    assert LLMInteraction.objects.get(pk=fresh.pk).field_outcomes == {"summary": "accepted"}
