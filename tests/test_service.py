"""LLMService: drafts written, live content untouched, every call recorded, errors mapped."""

from __future__ import annotations

import pytest
from wagtail.models import PageLogEntry, Revision
from wagtail.rich_text import RichText

from tests.conftest import make_body
from wagtail_llm_actions.exceptions import (
    ActionNotAllowed,
    ActionNotApplicable,
    LLMActionError,
    PageLocked,
    SourceEmpty,
)
from wagtail_llm_actions.models import InteractionStatus, LLMInteraction
from wagtail_llm_actions.service import LOG_ACTION, LLMService

pytestmark = pytest.mark.django_db


def reload(page):
    return type(page).objects.get(pk=page.pk)


def test_run_writes_a_draft_and_leaves_live_page_alone(post, action, superuser):
    before_revision = post.latest_revision_id

    interaction = LLMService().run(action, post, user=superuser)

    live = reload(post)
    assert live.summary == ""  # the live row is untouched
    assert live.has_unpublished_changes is True
    assert live.latest_revision_id != before_revision
    draft = live.get_latest_revision_as_object()
    assert draft.summary == interaction.output_value
    assert "compost" in draft.summary.lower()
    assert interaction.status == InteractionStatus.SUCCESS
    assert interaction.outcome == "drafted"
    assert interaction.revision_id == live.latest_revision_id
    assert interaction.base_revision_id == before_revision
    assert interaction.user == superuser
    assert interaction.prompt_revision_id == action.prompt.latest_revision_id
    assert len(interaction.source_hash) == 64
    entry = PageLogEntry.objects.get(page=post, action=LOG_ACTION)
    assert entry.revision_id == interaction.revision_id
    assert "summary" in entry.message


def test_run_reads_the_latest_draft_not_the_live_page(post, action):
    draft = post.get_latest_revision_as_object()
    draft.body = make_body(paragraph="Draft only: worms love cardboard.")
    draft.intro = "Edited intro in a draft"
    draft.save_revision()

    interaction = LLMService().run(action, post)

    assert "worms love cardboard" in interaction.messages[-1]["content"]
    new_draft = reload(post).get_latest_revision_as_object()
    assert new_draft.intro == "Edited intro in a draft"  # earlier draft work kept
    assert reload(post).intro == "Intro 1"  # live still as published


def test_messages_and_parameters_reach_the_server(post, server_action, fake_llm):
    fake_llm.reply = "A short summary about compost."
    fake_llm.usage = {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49}
    server_action.context_message = "Use British English."
    server_action.save()

    interaction = LLMService().run(server_action, post)

    assert len(fake_llm.requests) == 1
    sent = fake_llm.requests[0]
    body = sent["json"]
    assert body["model"] == "fake-model"
    assert body["temperature"] == 0.2
    assert body["max_tokens"] == 120
    assert body["messages"][0] == {"role": "system", "content": "You are a helpful summarizer."}
    assert body["messages"][1] == {"role": "system", "content": "Use British English."}
    user = body["messages"][2]
    assert user["role"] == "user"
    assert user["content"].startswith("Summarize “Composting in a small flat”:")
    # The stream arrives as clean text: headings and list items on their own lines, no HTML.
    assert "Background\n" in user["content"]
    assert "<p>" not in user["content"] and "<b>" not in user["content"]
    assert "Keep the bin moist." in user["content"]
    assert sent["headers"].get("Authorization") == "Bearer sk-test-secret-123"

    assert interaction.messages == body["messages"]
    assert interaction.prompt_tokens == 42
    assert interaction.completion_tokens == 7
    assert interaction.total_tokens == 49
    assert interaction.latency_ms is not None
    assert reload(post).get_latest_revision_as_object().summary == (
        "A short summary about compost."
    )


def test_secret_never_stored(post, server_action, fake_llm):
    fake_llm.status = 401
    with pytest.raises(LLMActionError):
        LLMService().run(server_action, post)
    fake_llm.reset()
    LLMService().run(server_action, post)
    for row in LLMInteraction.objects.all():
        blob = repr((row.messages, row.parameters, row.error_message, row.response_text, row.model))
        assert "sk-test-secret-123" not in blob
        assert "api_key" not in row.parameters


@pytest.mark.parametrize(
    ("status", "code"),
    [(500, "server_error"), (401, "auth"), (429, "rate_limit")],
)
def test_provider_errors_leave_content_and_are_recorded(
    post, server_action, fake_llm, status, code
):
    fake_llm.status = status
    revisions_before = Revision.objects.count()

    with pytest.raises(LLMActionError) as exc:
        LLMService().run(server_action, post)

    assert exc.value.code == code
    assert exc.value.message  # readable
    assert Revision.objects.count() == revisions_before
    assert reload(post).latest_revision_id == post.latest_revision_id
    row = LLMInteraction.objects.get()
    assert row.status == InteractionStatus.ERROR
    assert row.error_code == code
    assert row.error_message == exc.value.message
    assert row.revision is None
    assert row.messages  # what was sent is still on record


def test_server_down_is_a_connection_error(post, make_action, api_key_env):
    action = make_action(
        slug="down",
        model="openai/fake-model",
        api_base="http://127.0.0.1:9/v1",
        api_key_name=api_key_env,
    )
    with pytest.raises(LLMActionError) as exc:
        LLMService().run(action, post)
    assert exc.value.code == "connection"
    assert LLMInteraction.objects.get().error_code == "connection"
    assert not reload(post).has_unpublished_changes


def test_timeout_is_reported(post, server_action, fake_llm):
    server_action.timeout = 1
    server_action.save()
    fake_llm.latency = 2.5
    with pytest.raises(LLMActionError) as exc:
        LLMService().run(server_action, post)
    assert exc.value.code == "timeout"
    assert exc.value.retryable


def test_over_long_output_is_refused_without_saving(post, server_action, fake_llm):
    fake_llm.reply = "word " * 200  # 1000 characters; summary holds 600
    with pytest.raises(LLMActionError) as exc:
        LLMService().run(server_action, post)
    assert exc.value.code == "too_long"
    assert "600" in exc.value.message
    assert not reload(post).has_unpublished_changes
    assert LLMInteraction.objects.get().response_text.startswith("word word")


CUT_REPLY = "Compost turns kitchen peelings into dark soil over a few warm months. " * 20


def test_an_answer_cut_off_by_max_tokens_is_refused_and_kept_in_the_log(
    post, server_action, fake_llm
):
    server_action.max_tokens = 30
    server_action.save()
    fake_llm.configure(reply=CUT_REPLY, honour_max_tokens=True)

    with pytest.raises(LLMActionError) as exc:
        LLMService().run(server_action, post)

    assert exc.value.code == "answer_cut"
    assert "max tokens (30)" in exc.value.message
    assert not reload(post).has_unpublished_changes  # no draft of a half sentence
    interaction = LLMInteraction.objects.get()
    assert interaction.status == InteractionStatus.ERROR
    assert interaction.answer_truncated
    assert interaction.finish_reason == "length"
    assert interaction.response_text.startswith("Compost turns")  # paid for: kept


def test_an_answer_cut_off_is_written_with_a_warning_when_the_action_keeps_them(
    post, server_action, fake_llm
):
    server_action.max_tokens = 30
    server_action.cut_answers = "keep"
    server_action.save()
    fake_llm.configure(reply=CUT_REPLY, honour_max_tokens=True)

    interaction = LLMService().run(server_action, post)

    assert interaction.status == InteractionStatus.SUCCESS
    assert interaction.answer_truncated
    assert "max tokens (30)" in interaction.cut_warning
    draft = reload(post).get_latest_revision_as_object()
    assert draft.summary == interaction.output_value
    assert len(draft.summary) < len(CUT_REPLY)


def test_a_whole_answer_carries_no_warning(post, server_action, fake_llm):
    fake_llm.configure(reply="Compost in short.", honour_max_tokens=True)

    interaction = LLMService().run(server_action, post)

    assert not interaction.answer_truncated
    assert interaction.cut_warning == ""


def test_empty_source_is_a_clear_error(make_post, action):
    page = make_post(body=[])
    with pytest.raises(SourceEmpty) as exc:
        LLMService().run(action, page)
    assert "body" in str(exc.value)
    assert LLMInteraction.objects.get().error_code == "source_empty"


def test_missing_key_variable_is_a_configuration_error(post, make_action, fake_llm, monkeypatch):
    # a provider's variable (nameable by default) that is not set
    monkeypatch.delenv("MOONSHOT_API_KEY", raising=False)
    action = make_action(
        slug="nokey",
        model="openai/x",
        api_base=fake_llm.url,
        api_key_name="MOONSHOT_API_KEY",
    )
    with pytest.raises(LLMActionError) as exc:
        LLMService().run(action, post)
    assert exc.value.code == "configuration"
    assert "MOONSHOT_API_KEY is not set" in exc.value.message
    assert fake_llm.requests == []


def test_tags_mode_sets_tags_on_the_draft(post, make_action, fake_llm, api_key_env):
    fake_llm.reply = "compost, worms, Compost, #gardening"
    action = make_action(
        slug="tags",
        target_field="tags",
        output_mode="tags",
        model="openai/fake",
        api_base=fake_llm.url,
        api_key_name=api_key_env,
    )
    LLMService().run(action, post)
    draft = reload(post).get_latest_revision_as_object()
    assert sorted(t.name for t in draft.tags.all()) == ["compost", "gardening", "worms"]
    assert list(reload(post).tags.all()) == []


def test_rich_text_mode(post, make_action, fake_llm, api_key_env):
    fake_llm.reply = "First point.\n\n- one\n- two"
    action = make_action(
        slug="rich",
        target_field="highlights",
        output_mode="rich_text",
        model="openai/fake",
        api_base=fake_llm.url,
        api_key_name=api_key_env,
    )
    LLMService().run(action, post)
    html = reload(post).get_latest_revision_as_object().highlights
    assert "<p>First point.</p>" in html
    assert "<li>one</li>" in html


def test_permission_and_locks(post, action, outsider, editor, superuser):
    with pytest.raises(ActionNotAllowed):
        LLMService().run(action, post, user=outsider)
    post.locked = True
    post.locked_by = superuser
    post.save()
    with pytest.raises(PageLocked):
        LLMService().run(action, post, user=editor)
    # The lock owner may still run it.
    LLMService().run(action, post, user=superuser)
    assert LLMInteraction.objects.filter(status="success").count() == 1


def test_disabled_or_inapplicable_action(post, blog_index, action):
    action.enabled = False
    action.save()
    with pytest.raises(ActionNotApplicable):
        LLMService().run(action, post)
    action.enabled = True
    action.save()
    with pytest.raises(ActionNotApplicable):
        LLMService().run(action, blog_index)
    assert not LLMInteraction.objects.exists()


def test_source_path_into_stream_blocks(make_post, make_action, prompt):
    prompt.template = "{source}"
    prompt.save()
    page = make_post(
        body=[
            ("paragraph", RichText("<p>Alpha paragraph.</p>")),
            ("heading", "Not me"),
            ("paragraph", RichText("<p>Beta <i>paragraph</i>.</p>")),
        ]
    )
    action = make_action(slug="paras", source_field="body.paragraph", model="local/echo")
    interaction = LLMService().run(action, page)
    assert interaction.messages[-1]["content"] == "Alpha paragraph.\n\nBeta paragraph."


def test_source_cap_is_recorded(post, action, settings):
    settings.WAGTAIL_LLM_ACTIONS = {"MAX_SOURCE_CHARS": 40}
    interaction = LLMService().run(action, post)
    assert interaction.source_truncated is True


def test_dry_run_calls_nothing_and_saves_nothing(post, server_action, fake_llm):
    prepared = LLMService().dry_run(server_action, post)
    assert prepared.messages[-1]["content"].startswith("Summarize")
    assert fake_llm.requests == []
    assert not LLMInteraction.objects.exists()
    assert not reload(post).has_unpublished_changes


def test_a_draft_the_page_model_refuses_is_not_saved_and_says_why(
    post, server_action, fake_llm, monkeypatch
):
    """A site's own page validation (``clean()``) refuses the draft: no revision, the answer
    and the site's message are on the interaction."""
    from blog.models import BlogPage
    from django.core.exceptions import ValidationError

    from wagtail_llm_actions.exceptions import OutputRejected

    def clean(self):
        if "forbidden" in (self.summary or ""):
            raise ValidationError("Summaries may not say forbidden.")

    monkeypatch.setattr(BlogPage, "clean", clean, raising=False)
    fake_llm.configure(reply="A forbidden summary.")
    revisions = Revision.objects.count()

    with pytest.raises(OutputRejected) as caught:
        LLMService().run(server_action, post)

    assert "Summaries may not say forbidden." in str(caught.value)
    assert Revision.objects.count() == revisions
    row = LLMInteraction.objects.get()
    assert row.output_value == "A forbidden summary."
    assert row.revision_id is None
    assert "Summaries may not say forbidden." in row.error_message
    assert BlogPage.objects.get(pk=post.pk).get_latest_revision_as_object().summary != (
        "A forbidden summary."
    )
