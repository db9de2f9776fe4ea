"""Translatable snippets translate like pages (issue 23 §2): a new translation is made by
Wagtail's ``copy_for_translation`` as a draft (not live); re-translating sends only the
changed segments and keeps a translator's hand edit."""

from __future__ import annotations

import pytest

from tests.fakeserver import reverse_words, sent_segments
from tests.translation_site import i18n
from wagtail_llm_actions.exceptions import ActionNotAllowed
from wagtail_llm_actions.models import LLMTranslationSegment
from wagtail_llm_actions.translation.run import TranslationProblem, locales, translate_page

pytestmark = pytest.mark.django_db


@pytest.fixture
def site(snippet_translation_site):
    return snippet_translation_site


def latest(obj):
    return type(obj).objects.get(pk=obj.pk).get_latest_revision_as_object()


def test_a_snippet_is_translated_into_a_new_draft(site, dish_translate_action, fake_llm):
    fake_llm.configure(translate="reverse")
    dish = site["dish"]
    outcome = translate_page(dish_translate_action, dish, site["de"])
    german = outcome.page
    assert outcome.created and german.pk != dish.pk
    assert german.locale == site["de"] and german.translation_key == dish.translation_key
    assert not type(german).objects.get(pk=german.pk).live  # a draft, never published
    draft = latest(german)
    assert draft.name == reverse_words("Pork dumplings")
    assert draft.description == reverse_words("Soft dumplings you fold by hand.")
    assert outcome.interaction.page_id is None
    assert outcome.interaction.object_id == str(german.pk)
    assert LLMTranslationSegment.objects.filter(target_id=str(german.pk)).exists()


def test_retranslating_sends_only_changes_and_keeps_hand_edits(
    site, dish_translate_action, fake_llm
):
    fake_llm.configure(translate="reverse")
    dish = site["dish"]
    german = translate_page(dish_translate_action, dish, site["de"]).page
    draft = latest(german)
    draft.notes = "Heiß servieren."  # a translator's own correction
    draft.save_revision()
    source = latest(dish)
    source.description = "Soft dumplings you fold in an afternoon."
    source.notes = "Serve them hot."
    source.save_revision()
    fake_llm.reset()
    fake_llm.configure(translate="reverse")
    second = translate_page(dish_translate_action, type(dish).objects.get(pk=dish.pk), site["de"])
    assert fake_llm.request_count == 1
    sent = sorted(sent_segments(fake_llm.requests[0]).values())
    assert sent == ["Soft dumplings you fold in an afternoon."]  # the hand-edited note: kept
    draft = latest(german)
    assert draft.notes == "Heiß servieren."
    assert draft.description == reverse_words("Soft dumplings you fold in an afternoon.")
    assert "notes" in second.review


def test_bad_input(site, dish_translate_action, fake_llm, django_user_model):
    from tests.snippets import snippet_editor

    dish = site["dish"]
    with i18n(), pytest.raises(TranslationProblem):
        locales(dish, ["en"])  # its own locale
    stranger = snippet_editor(django_user_model, name="stranger")
    with pytest.raises(ActionNotAllowed):
        translate_page(dish_translate_action, dish, site["de"], stranger)
    assert fake_llm.request_count == 0


def test_the_command_translates_a_snippet(site, dish_translate_action, fake_llm):
    import io

    from django.core.management import call_command

    fake_llm.configure(translate="reverse")
    dish = site["dish"]
    out = io.StringIO()
    with i18n():
        call_command(
            "run_llm_action",
            "translate",
            "--model",
            "testapp.Dish",
            "--id",
            str(dish.pk),
            "--locale",
            "de",
            stdout=out,
        )
    assert "created, draft revision" in out.getvalue()
    german = dish.get_translation(site["de"])
    assert latest(german).name == reverse_words("Pork dumplings")


def test_the_command_translates_every_source_snippet_once(site, dish_translate_action, fake_llm):
    import io

    from django.core.management import call_command

    from tests.testapp.models import Dish

    fake_llm.configure(translate="reverse")
    args = ["run_llm_action", "translate", "--model", "testapp.Dish", "--all", "--locale", "de"]
    with i18n():
        call_command(*args, stdout=io.StringIO())
        call_command(*args, stdout=io.StringIO())  # the German one is not a source
    assert Dish.objects.filter(locale=site["de"]).count() == 1
