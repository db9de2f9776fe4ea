"""Answers no database column takes as they are: every paid call is still logged.

A model can answer a lone UTF-16 surrogate (refused by SQLite and PostgreSQL alike) or a NUL
character (refused by PostgreSQL). The answer is cleaned when it arrives (U+FFFD for a lone
surrogate, NUL removed), so the interaction, the draft and the editor's form hold the same
text, and the interaction says what was cleaned. Anything the database still refuses becomes
the app's own error, with the call logged (tokens and cost, without its texts).
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.fakeserver import BAD_TEXT
from wagtail_llm_actions import editor
from wagtail_llm_actions.exceptions import LLMActionError
from wagtail_llm_actions.models import LLMInteraction, LLMJobItem
from wagtail_llm_actions.service import LLMService

pytestmark = pytest.mark.django_db

REPLY = "Worms turn peelings into dark soil."


def latest_draft(page):
    return type(page).objects.get(pk=page.pk).get_latest_revision_as_object()


def editor_job(action, page, user):
    job = editor.create_editor_job(action, page, page.get_latest_revision_as_object(), user)
    editor.run_editor_job(job.items.get().pk)
    return LLMJobItem.objects.select_related("job").get(job=job)


@pytest.mark.parametrize("bad", ["surrogate", "nul"])
def test_an_answer_the_database_cannot_store_is_cleaned_logged_and_written(
    bad, client, post, server_action, fake_llm, superuser
):
    fake_llm.configure(reply=REPLY, bad_text=bad)

    interaction = LLMService().run(server_action, post, superuser)

    stored = LLMInteraction.objects.get()
    assert stored.pk == interaction.pk and stored.status == "success"
    assert BAD_TEXT[bad] not in stored.response_text
    expected = REPLY[:17] + ("\ufffd" if bad == "surrogate" else "") + REPLY[17:]
    assert stored.response_text == expected
    assert latest_draft(post).summary == expected  # the draft holds the same text
    assert stored.total_tokens and stored.revision_id is not None
    word = "lone surrogate" if bad == "surrogate" else "NUL character"
    assert word in stored.storage_note
    client.force_login(superuser)
    detail = reverse("wagtail_llm_actions_report:detail", args=[stored.pk])
    assert word in client.get(detail).content.decode()  # the log says what was cleaned


@pytest.mark.parametrize("bad", ["surrogate", "nul"])
def test_an_editor_answer_the_database_cannot_store_fills_the_form_cleaned(
    bad, post, server_action, fake_llm, superuser
):
    fake_llm.configure(reply=REPLY, bad_text=bad)

    item = editor_job(server_action, post, superuser)

    status = editor.editor_status(item).as_dict()
    assert status["state"] == "succeeded", status
    assert BAD_TEXT[bad] not in status["result"]["output"]
    interaction = LLMInteraction.objects.get()
    assert interaction.outcome == "pending" and interaction.storage_note


@pytest.mark.parametrize("bad", ["surrogate", "nul"])
def test_a_streamed_editor_answer_stores_its_partial_text_cleaned(
    bad, post, server_action, fake_llm, superuser, settings, monkeypatch
):
    """The partial text a streamed editor run stores for the browser's polls is cleaned as
    the final answer is (it was stored raw: PostgreSQL's jsonb refuses a NUL or a lone
    surrogate, and the run ended as a broken stream). Every piece is stored (interval 0)."""
    from wagtail_llm_actions.editor import streams

    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "STREAM_PUBLISH_INTERVAL": 0}
    fake_llm.configure(reply=REPLY * 5, bad_text=bad)
    stored = []
    write = streams.PartialText.write

    def recorded(self, text):
        going_on = write(self, text)
        stored.append(streams.partial_text(LLMJobItem.objects.get(pk=self.item_id)))
        return going_on

    monkeypatch.setattr(streams.PartialText, "write", recorded)

    item = editor_job(server_action, post, superuser)

    status = editor.editor_status(item).as_dict()
    assert status["state"] == "succeeded", status
    assert BAD_TEXT[bad] not in status["result"]["output"]
    assert len(stored) > 5 and all(stored)
    assert not [text for text in stored if BAD_TEXT[bad] in text]
    if bad == "surrogate":
        assert "\ufffd" in stored[-1]
    assert LLMInteraction.objects.get().storage_note


def test_map_reduce_parts_the_database_cannot_store_are_logged_cleaned(
    make_map_reduce_action, make_long_post, fake_llm
):

    post, _markers = make_long_post(paragraphs=120)
    action = make_map_reduce_action(
        max_tokens=120,
    )
    fake_llm.configure(reply=REPLY, bad_text="surrogate")

    interaction = LLMService().run(action, post)

    parts = LLMInteraction.objects.filter(run=interaction.run, chunk_index__isnull=False)
    assert parts.count() >= 2
    assert all("\ufffd" in p.response_text and p.storage_note for p in parts)
    assert interaction.status == "success"


@pytest.fixture
def no_cleaning(monkeypatch):
    """A refusal the app does not foresee: nothing is cleaned before the database sees it."""
    try:
        from wagtail_llm_actions import storable
    except ImportError:  # an app without the cleaning: nothing to switch off
        return
    monkeypatch.setattr(storable, "clean_text", lambda text, found: text)


def test_a_row_the_database_still_refuses_is_logged_without_its_texts(
    post, server_action, fake_llm, superuser, no_cleaning
):
    fake_llm.configure(reply=REPLY, bad_text="surrogate")
    latest = post.latest_revision_id

    with pytest.raises(LLMActionError) as raised:  # the app's own error, not the driver's
        LLMService().run(server_action, post, superuser)

    interaction = LLMInteraction.objects.get()  # the paid call is logged
    assert raised.value.code == "not_stored"
    assert raised.value.interaction.pk == interaction.pk
    assert (interaction.status, interaction.error_code) == ("error", "not_stored")
    assert "could not store the answer" in interaction.error_message
    assert interaction.total_tokens and interaction.model
    assert interaction.response_text == ""
    assert "refused" in interaction.storage_note
    assert type(post).objects.get(pk=post.pk).latest_revision_id == latest


def test_an_editor_row_the_database_still_refuses_fails_plainly_and_is_logged(
    post, server_action, fake_llm, superuser, no_cleaning
):
    fake_llm.configure(reply=REPLY, bad_text="surrogate")

    item = editor_job(server_action, post, superuser)

    status = editor.editor_status(item).as_dict()
    assert status["state"] == "failed"
    assert status["result"] == {"code": "not_stored"}
    assert "could not store the answer" in status["message"]
    interaction = LLMInteraction.objects.get()
    assert (interaction.status, interaction.error_code) == ("error", "not_stored")
    assert interaction.total_tokens
