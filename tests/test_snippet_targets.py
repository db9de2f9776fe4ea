"""Snippets as targets (issue 23 §2): a snippet with revisions gets a new revision (its live
row untouched, other fields as they were); one without revisions only with the action's
opt-in, written directly, recorded and undoable; permissions are the snippet's own."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from wagtail.models import ModelLogEntry

from tests.snippets import snippet_editor
from wagtail_llm_actions.exceptions import ActionNotAllowed, ActionNotApplicable
from wagtail_llm_actions.models import InteractionOutcome, LLMInteraction
from wagtail_llm_actions.service import LLMService
from wagtail_llm_actions.snippets import NoRevisions
from wagtail_llm_actions.snippets.direct import UndoRefused, undo
from wagtail_llm_actions.unchanged import unchanged_since_last_write

pytestmark = pytest.mark.django_db


def test_a_revisioned_snippet_gets_a_new_revision_and_its_live_row_is_untouched(
    dish, dish_action, fake_llm, superuser
):
    from tests.testapp.models import Dish

    fake_llm.configure(reply="A hearty bean stew.")
    before = dish.latest_revision_id
    interaction = LLMService().run(dish_action, dish, superuser)

    live = Dish.objects.get(pk=dish.pk)
    assert live.summary == ""  # the live row is never changed
    assert live.latest_revision_id == interaction.revision_id != before
    draft = live.get_latest_revision_as_object()
    assert draft.summary == "A hearty bean stew."
    assert (draft.name, draft.notes) == ("Cassoulet", "Keep the crust.")  # not written
    assert live.has_unpublished_changes
    assert interaction.outcome == InteractionOutcome.DRAFTED
    assert interaction.page_id is None
    assert interaction.content_object == live  # the report names the snippet
    assert "Cassoulet" in fake_llm.requests[-1]["json"]["messages"][-1]["content"]
    entry = ModelLogEntry.objects.filter(action="wagtail_llm_actions.generate").get()
    assert entry.object_id == str(dish.pk)


def test_unsaved_editor_work_is_never_overwritten(dish, dish_action, fake_llm, superuser):
    """A person's draft saved before the run is the base: the run adds only its field."""
    fake_llm.configure(reply="Stew.")
    person = dish.get_latest_revision_as_object()
    person.notes = "A person's draft"
    person.save_revision(user=superuser)
    LLMService().run(dish_action, dish, superuser)
    draft = type(dish).objects.get(pk=dish.pk).get_latest_revision_as_object()
    assert (draft.notes, draft.summary) == ("A person's draft", "Stew.")


def test_only_users_who_may_change_the_snippet_may_run(
    dish, dish_action, fake_llm, django_user_model, editor
):
    from tests.testapp.models import Dish, Tip

    with pytest.raises(ActionNotAllowed):
        LLMService().run(dish_action, dish, editor)  # may edit pages, not dishes
    other = snippet_editor(django_user_model, Tip, name="tip-editor")
    with pytest.raises(ActionNotAllowed):
        LLMService().run(dish_action, dish, other)
    assert fake_llm.request_count == 0
    allowed = snippet_editor(django_user_model, Dish)
    assert LLMService().run(dish_action, dish, allowed).outcome == InteractionOutcome.DRAFTED


def test_an_action_runs_only_on_its_snippet_types(dish, tip, tip_action, fake_llm, superuser):
    with pytest.raises(ActionNotApplicable):
        LLMService().run(tip_action, dish, superuser)
    assert fake_llm.request_count == 0


def test_a_snippet_without_revisions_needs_the_opt_in(
    tip, make_snippet_action, fake_llm, superuser
):
    from tests.testapp.models import Tip

    action = make_snippet_action(Tip, source_field="text")
    with pytest.raises(NoRevisions) as caught:
        LLMService().run(action, tip, superuser)
    assert "keep no revisions" in caught.value.message
    assert "Nothing was written" in caught.value.message
    assert fake_llm.request_count == 0
    assert not LLMInteraction.objects.exists()
    assert Tip.objects.get(pk=tip.pk).summary == "old"
    with pytest.raises(ValidationError) as invalid:
        action.full_clean()
    assert "snippet_types" in invalid.value.message_dict


def test_the_opt_in_writes_directly_records_and_undoes(tip, tip_action, fake_llm, superuser):
    from tests.testapp.models import Tip

    fake_llm.configure(reply="Let meat rest.")
    interaction = LLMService().run(tip_action, tip, superuser)
    row = Tip.objects.get(pk=tip.pk)
    assert (row.summary, row.title) == ("Let meat rest.", "Resting meat")
    interaction.refresh_from_db()
    assert interaction.outcome == InteractionOutcome.WRITTEN
    assert interaction.previous_value == "old"
    assert interaction.revision_id is None
    assert ModelLogEntry.objects.filter(action="wagtail_llm_actions.generate").count() == 1

    undo(interaction, superuser)
    assert Tip.objects.get(pk=tip.pk).summary == "old"
    interaction.refresh_from_db()
    assert interaction.outcome == InteractionOutcome.UNDONE
    with pytest.raises(UndoRefused):
        undo(interaction, superuser)


def test_undo_keeps_a_later_change(tip, tip_action, fake_llm, superuser):
    from tests.testapp.models import Tip

    fake_llm.configure(reply="Let meat rest.")
    interaction = LLMService().run(tip_action, tip, superuser)
    Tip.objects.filter(pk=tip.pk).update(summary="A person's summary")
    with pytest.raises(UndoRefused):
        undo(interaction, superuser)
    assert Tip.objects.get(pk=tip.pk).summary == "A person's summary"


def test_unchanged_snippets_are_skipped(dish, tip, dish_action, tip_action, fake_llm, superuser):
    fake_llm.configure(reply="Short.")
    for action, obj in ((dish_action, dish), (tip_action, tip)):
        assert not unchanged_since_last_write(action, obj, superuser)
        LLMService().run(action, obj, superuser)
        assert unchanged_since_last_write(action, obj, superuser)
    # A source edit makes it run again.
    draft = dish.get_latest_revision_as_object()
    draft.description = "Now with lamb."
    draft.save_revision()
    assert not unchanged_since_last_write(dish_action, dish, superuser)
    type(tip).objects.filter(pk=tip.pk).update(text="Rest it longer.")
    assert not unchanged_since_last_write(tip_action, type(tip).objects.get(pk=tip.pk), superuser)


def test_a_stored_answer_of_a_direct_write_is_applied_without_a_call(
    tip, tip_action, fake_llm, superuser, monkeypatch
):
    from tests.testapp.models import Tip
    from wagtail_llm_actions.snippets import direct

    fake_llm.configure(reply="Rest it.")

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    original = direct.drafts.validate_draft
    monkeypatch.setattr(direct.drafts, "validate_draft", broken)
    with pytest.raises(Exception):  # noqa: B017
        LLMService().run(tip_action, tip, superuser)
    interaction = LLMInteraction.objects.get()
    assert interaction.status == "answered"  # the paid answer was stored first
    assert Tip.objects.get(pk=tip.pk).summary == "old"
    monkeypatch.setattr(direct.drafts, "validate_draft", original)
    LLMService().apply_stored(interaction, superuser)
    assert Tip.objects.get(pk=tip.pk).summary == "Rest it."
    assert fake_llm.request_count == 1
