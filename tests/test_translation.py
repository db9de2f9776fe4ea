"""Translating pages into Wagtail locales (issue 23 §1): segments, protected markup, drafts
whose structure equals the source's, only what changed, and bad input refused."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from wagtail.models import Page

from tests.fakeserver import reverse_words, sent_segments
from tests.translation_site import i18n
from wagtail_llm_actions.models import LLMTranslationSegment, LLMTranslationSettings
from wagtail_llm_actions.translation.markup import MarkupMismatch, protect, restore
from wagtail_llm_actions.translation.run import TranslationProblem, locales, translate_page
from wagtail_llm_actions.translation.segments import (
    PAGE,
    RICH,
    TEXT,
    segments,
    slots,
    stored_values,
)

pytestmark = pytest.mark.django_db


def latest(page: Page):
    return Page.objects.get(pk=page.pk).specific.get_latest_revision_as_object()


def skeleton(page) -> dict:
    """The page's stored values with every text replaced by its kind (and rich text by its
    tags), and chosen or linked pages by their translation key: what translating keeps."""
    from django.core.serializers.json import DjangoJSONEncoder

    values = json.loads(json.dumps(stored_values(page), cls=DjangoJSONEncoder))

    def key(pk):
        return str(Page.objects.get(pk=pk).translation_key)

    for slot in list(slots(page, values)):
        if slot.kind == PAGE:
            slot.set(key(slot.value))
        elif slot.kind == RICH:
            tags = protect(slot.value).tags
            slot.set([_keyed(tag, key) for tag in tags])
        elif slot.kind == TEXT:
            slot.set("text" if slot.value.strip() else "")
    return values


def _keyed(tag: str, key) -> str:
    import re

    if 'linktype="page"' not in tag:
        return tag
    return re.sub(r'id="(\d+)"', lambda m: f'id="{key(int(m[1]))}"', tag)


def body_block(page, block_type: str, index: int = 0):
    return [b for b in page.body if b.block_type == block_type][index]


def test_segments_cover_every_text_and_nothing_else(translation_site):
    recipe = translation_site["recipe"]
    found = {s.path: s for s in segments(recipe)}
    texts = {s.source for s in found.values()}
    ids = {b.block_type: b.id for b in recipe.body}
    for expected in (
        "Pork dumplings",
        "Dumplings, step by step.",
        "Pork and chive dumplings",
        "Dough resting under a cloth",
        "Ready to steam",
        "A good dumpling has eighteen folds.",
        "300 g minced pork",
        "Cooking times",
        "Add <b>water</b> halfway",
        "Nutrient",
        "Protein",
        "Do not overfill.",
    ):
        assert expected in texts, expected
    for kept in ("https://example.com/dumplings", "kitchen@example.com", "jp", "DUM-42", "h2"):
        assert kept not in texts
    assert found[f"body/{ids['quote']}/quote"].kind == TEXT
    assert found[f"body/{ids['lead']}"].source.startswith("Soft, juicy")
    assert f"body/{ids['table']}/data/2/2" in found
    assert f"body/{ids['table']}/caption" in found
    step = body_block(recipe, "step")
    assert found[f"body/{step.id}/instructions"].kind == RICH
    tips = body_block(recipe, "tips")
    assert found[f"body/{tips.id}/{tips.value[1].id}"].source == "Do not overfill."
    ingredients = body_block(recipe, "ingredients")
    item = ingredients.value.bound_blocks[1]
    assert found[f"body/{ingredients.id}/{item.id}"].source == "300 g minced pork"
    assert "slug" not in found and "search_description" not in found  # (empty: left out)


def test_markup_is_protected_and_checked_on_the_way_back():
    source = '<p>Keep <a linktype="page" id="7">the <b>bin</b></a> moist &amp; warm.<br/>Yes</p>'
    protected = protect(source)
    assert "<" not in protected.text and "& warm" in protected.text
    assert restore(protected.text, protected) == source.replace("<br/>", "<br/>")
    moved = protected.text.replace("Keep ", "").replace("⟦1⟧", "⟦1⟧Keep ")
    assert restore(moved, protected).startswith("<p>Keep ")
    with pytest.raises(MarkupMismatch, match="lost"):
        restore(protected.text.replace("⟦3⟧", ""), protected)
    with pytest.raises(MarkupMismatch, match="invented or repeated"):
        restore(protected.text + "⟦3⟧", protected)
    with pytest.raises(MarkupMismatch, match="out of order"):
        restore(
            protected.text.replace("⟦3⟧", "§").replace("⟦4⟧", "⟦3⟧").replace("§", "⟦4⟧"), protected
        )


def test_an_embedded_images_alt_text_is_translated_with_its_paragraph():
    source = (
        "<p>Fold them.</p>"
        '<embed embedtype="image" id="5" format="left" alt="Mei Lin\'s hands &amp; a wrapper"/>'
    )
    protected = protect(source)
    assert protected.text == "⟦1⟧Fold them.⟦2⟧⟦3⟧Mei Lin's hands & a wrapper⟦4⟧"
    assert restore(protected.text, protected) == source  # unchanged text: the same markup
    answer = '⟦1⟧Falte sie.⟦2⟧⟦3⟧Die „Hände“ von Mei Lin & ein "Teig"⟦4⟧'
    assert restore(answer, protected) == (
        '<p>Falte sie.</p><embed embedtype="image" id="5" format="left" '
        'alt="Die „Hände“ von Mei Lin &amp; ein &quot;Teig&quot;"/>'
    )
    with pytest.raises(MarkupMismatch, match="alt text"):  # markup inside the attribute
        restore("⟦1⟧Falte sie.⟦3⟧Hände⟦2⟧⟦4⟧", protected)
    # an image without alt text (decorative) and other embeds stay one placeholder
    for kept in ('<embed embedtype="image" id="5" alt=""/>', '<embed embedtype="media" url="x"/>'):
        assert protect(kept).text == "⟦1⟧"


def test_two_locales_give_drafts_with_the_source_structure_and_links(
    translation_site, translate_action, fake_llm
):
    fake_llm.configure(translate="reverse")
    recipe = translation_site["recipe"]
    outcomes = [
        translate_page(translate_action, recipe, translation_site[code]) for code in ("de", "fr")
    ]
    assert fake_llm.request_count == 2  # one request per page and locale
    sent = sent_segments(fake_llm.requests[0])
    assert len(sent) == len(segments(recipe))
    for outcome in outcomes:
        assert outcome.created and not outcome.failed
        page = Page.objects.get(pk=outcome.page.pk).specific
        assert not page.live and page.locale == outcome.locale
        assert page.translation_key == recipe.translation_key
        draft = latest(page)
        assert skeleton(draft) == skeleton(recipe)
        assert [b.id for b in draft.body] == [b.id for b in recipe.body]
        assert draft.title == reverse_words("Pork dumplings")
        image = [b for b in draft.body if b.block_type == "image"][1]
        assert image.value.contextual_alt_text == reverse_words("Dough resting under a cloth")
        facts = body_block(draft, "facts").value
        assert facts["website"] == "https://example.com/dumplings" and facts["cuisine"] == "jp"
        assert outcome.interaction.revision_id == page.latest_revision_id
        assert outcome.interaction.page_id == page.pk and outcome.interaction.action_name
    de, fr = (latest(o.page) for o in outcomes)
    embedded = str(body_block(de, "paragraph").value.source)  # an image's alt in rich text
    pleating = translation_site["media"]["pleating"].pk
    alt = reverse_words("Hands pleating a wrapper")
    assert f'<embed embedtype="image" id="{pleating}" format="left" alt="{alt}"/>' in embedded
    de_links = str(body_block(de, "paragraph", 1).value.source)
    fr_links = str(body_block(fr, "paragraph", 1).value.source)
    assert f'linktype="page" id="{translation_site["chili_de"].pk}"' in de_links
    assert f'linktype="page" id="{translation_site["chili"].pk}"' in fr_links  # no French chili yet
    assert f'linktype="document" id="{translation_site["media"]["document"].pk}"' in de_links
    assert body_block(de, "related_page").value.pk == translation_site["chili_de"].pk
    assert body_block(fr, "related_page").value.pk == translation_site["chili"].pk
    system = fake_llm.requests[0]["json"]["messages"][0]["content"]
    assert "dumplings → Maultaschen" in system and "raviolis" not in system
    assert "Mei Lin" in system and "Friendly, plain words." in system


def test_bad_input_is_a_clear_error_and_nothing_is_written(
    translation_site, translate_action, fake_llm
):
    fake_llm.configure(translate="reverse")
    recipe, pages = translation_site["recipe"], Page.objects.count()
    with pytest.raises(TranslationProblem, match="no locale “es”.*de, en, fr"):
        locales(recipe, ["de", "es"])
    with pytest.raises(TranslationProblem, match="in English \\(en\\) already"):
        locales(recipe, ["en"])
    with i18n(enabled=False), pytest.raises(TranslationProblem, match="WAGTAIL_I18N_ENABLED"):
        locales(recipe, ["de"])
    with pytest.raises(TranslationProblem, match="“Untranslated section” has no translation in"):
        translate_page(translate_action, translation_site["orphan"], translation_site["de"])
    assert Page.objects.count() == pages and fake_llm.request_count == 0


def test_a_lost_tag_is_asked_again_once(translation_site, translate_action, fake_llm):
    fake_llm.configure(translate="reverse")
    fake_llm.enqueue(translate="drop_tag")
    outcome = translate_page(translate_action, translation_site["recipe"], translation_site["de"])
    assert not outcome.failed and fake_llm.request_count == 2
    retried = sent_segments(fake_llm.requests[1])
    assert retried and all("⟦" in text for text in retried.values())  # only the rich ones
    assert len(retried) < len(sent_segments(fake_llm.requests[0]))


def test_a_tag_lost_twice_keeps_the_source_and_is_reported(
    translation_site, translate_action, fake_llm
):
    fake_llm.configure(translate="invent_tag")
    recipe = translation_site["recipe"]
    outcome = translate_page(translate_action, recipe, translation_site["fr"])
    assert fake_llm.request_count == 2
    paragraph = body_block(recipe, "paragraph", 1)
    path = f"body/{paragraph.id}"
    assert "invented or repeated ⟦99⟧" in outcome.failed[path]
    draft = latest(outcome.page)
    assert body_block(draft, "paragraph", 1).value.source == paragraph.value.source
    assert draft.title == reverse_words("Pork dumplings") or path in outcome.failed
    assert "⟦" not in json.dumps(stored_values(draft), default=str)
    assert not LLMTranslationSegment.objects.filter(target_page=outcome.page, path=path).exists()
    assert path in outcome.interaction.error_message


def test_retranslating_sends_only_changed_segments_and_keeps_hand_edits(
    translation_site, translate_action, fake_llm
):
    fake_llm.configure(translate="reverse")
    recipe = translation_site["recipe"]
    first = translate_page(translate_action, recipe, translation_site["de"])
    german = latest(first.page)
    # A translator corrects the lead and the quote's attribution by hand.
    lead, quote = body_block(german, "lead"), body_block(german, "quote")
    german.body[[b.id for b in german.body].index(lead.id)].value = "Saftige Teigtaschen."
    quote.value["attribute_name"] = "Frau Lin"
    german.save_revision()
    # The source changes: its lead (edited in German too), its title and one step title.
    source = latest(recipe)
    source.title = "Pork and chive dumplings"
    body_block(source, "lead")
    for block in source.body:
        if block.block_type == "lead":
            block.value = "Soft dumplings you fold in an afternoon."
        if block.block_type == "step" and block.value["title"] == "Fold":
            block.value["title"] = "Fold them"
    source.save_revision()
    fake_llm.reset()
    fake_llm.configure(translate="reverse")
    second = translate_page(
        translate_action, Page.objects.get(pk=recipe.pk), translation_site["de"]
    )
    assert fake_llm.request_count == 1
    sent = sorted(sent_segments(fake_llm.requests[0]).values())
    assert sent == ["Fold them", "Pork and chive dumplings"]
    assert second.review == [f"body/{lead.id}"] and second.sent == 2
    draft = latest(second.page)
    assert body_block(draft, "lead").value == "Saftige Teigtaschen."
    assert body_block(draft, "quote").value["attribute_name"] == "Frau Lin"
    assert draft.title == reverse_words("Pork and chive dumplings")
    assert draft.latest_revision_id != german.latest_revision_id
    fake_llm.reset()
    third = translate_page(translate_action, Page.objects.get(pk=recipe.pk), translation_site["de"])
    assert fake_llm.request_count == 0 and third.sent == 0 and third.interaction is None


def test_a_glossary_with_a_term_twice_is_refused_at_save(translate_action):
    settings = translate_action.translation
    settings.glossary = (
        "de: Dumplings = Maultaschen\nfr: dumplings = raviolis\nde: dumplings = Knödel"
    )
    with pytest.raises(ValidationError, match="“dumplings” is in the glossary twice for de"):
        settings.save()
    settings.glossary = "de dumplings Maultaschen"
    with pytest.raises(ValidationError, match="not “locale: term = translation”"):
        settings.save()
    assert LLMTranslationSettings.objects.get(pk=settings.pk).glossary.startswith("de: dumplings")


def test_the_offline_provider_translates_deterministically(translation_site, translate_action):
    translate_action.model, translate_action.api_base, translate_action.api_key_name = (
        "local/translate",
        "",
        "",
    )
    translate_action.save()
    outcome = translate_page(translate_action, translation_site["recipe"], translation_site["de"])
    draft = latest(outcome.page)
    assert draft.title == "[de] Pork Teigtaschen"
    step = body_block(draft, "step").value["instructions"].source
    assert step.startswith("<p>[de] Mix flour und Wasser")
    assert not outcome.failed


def test_a_translation_longer_than_its_field_keeps_the_source(
    translation_site, translate_action, fake_llm
):
    recipe = translation_site["recipe"]
    fake_llm.configure(
        json_reply=lambda payload: {
            key: ("x" * 300 if text == "Dumplings, step by step." else text)
            for key, text in sent_segments(payload).items()
        }
    )
    outcome = translate_page(translate_action, recipe, translation_site["de"])
    assert "255 characters" in outcome.failed["intro"]
    assert latest(outcome.page).intro == "Dumplings, step by step."


def test_a_locked_translation_is_left_alone(translation_site, translate_action, fake_llm):
    from wagtail_llm_actions.exceptions import PageLocked

    fake_llm.configure(translate="reverse")
    recipe = translation_site["recipe"]
    german = translate_page(translate_action, recipe, translation_site["de"]).page
    Page.objects.filter(pk=german.pk).update(locked=True)
    revisions = german.revisions.count()
    with pytest.raises(PageLocked):
        translate_page(translate_action, recipe, translation_site["de"])
    assert german.revisions.count() == revisions and fake_llm.request_count == 1


def test_translation_actions_are_not_offered_beside_fields(translation_site, translate_action):
    from tests.testapp.models import RecipePage
    from wagtail_llm_actions.editor.pages import actions_for_type

    assert translate_action not in actions_for_type(RecipePage)


# -- the action form ------------------------------------------------------------------------------


def test_the_action_form_makes_and_edits_a_translation_action(prompt, superuser):
    from django.test import Client
    from django.urls import reverse

    from tests.test_action_form import ADD_URL, action_data, edit_url
    from wagtail_llm_actions.models import LLMAction

    client = Client()
    client.force_login(superuser)
    html = client.get(reverse(ADD_URL)).content.decode()
    assert 'name="translation_glossary"' in html and "Translates pages" in html
    data = action_data(
        prompt,
        name="Translate",
        slug="translate",
        target_field="",
        translates="on",
        translation_style="Plain words.",
        translation_glossary="de: compost = Kompost\nde: Compost = Humus",
    )
    response = client.post(reverse(ADD_URL), data)
    assert "“Compost” is in the glossary twice for de" in response.content.decode()
    assert not LLMAction.objects.filter(slug="translate").exists()
    data["translation_glossary"] = "de: compost = Kompost"
    client.post(reverse(ADD_URL), data, follow=True)
    action = LLMAction.objects.get(slug="translate")
    assert action.translates and action.translation.glossary == "de: compost = Kompost"
    assert action.translation.style == "Plain words."
    html = client.get(edit_url(action)).content.decode()
    assert "de: compost = Kompost" in html
    data.pop("translates")
    response = client.post(edit_url(action), data)
    assert "Enter the field that receives the answer" in response.content.decode()
    assert LLMTranslationSettings.objects.filter(action=action).exists()


def test_a_budget_stops_the_translation_before_anything_is_sent(
    translation_site, translate_action, fake_llm
):
    from wagtail_llm_actions.exceptions import BudgetExceeded
    from wagtail_llm_actions.models import LLMBudget, LLMInteraction

    fake_llm.configure(translate="reverse")
    LLMBudget.objects.create(
        name="Translations", action=translate_action, max_tokens=100, period="day"
    )
    pages = Page.objects.count()
    with pytest.raises(BudgetExceeded, match="“Translations”"):
        translate_page(translate_action, translation_site["recipe"], translation_site["de"])
    assert fake_llm.request_count == 0 and Page.objects.count() == pages
    interaction = LLMInteraction.objects.get()
    assert interaction.status == "error" and interaction.error_code == "budget"


def test_the_response_cache_answers_an_identical_translation(
    translation_site, translate_action, fake_llm, settings
):
    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "CACHE_TTL": 3600}
    translate_action.use_cache = True
    translate_action.save()
    fake_llm.configure(translate="reverse")
    recipe = translation_site["recipe"]
    first = translate_page(translate_action, recipe, translation_site["de"])
    LLMTranslationSegment.objects.all().delete()
    Page.objects.get(pk=first.page.pk).delete()
    second = translate_page(translate_action, recipe, translation_site["de"])
    assert fake_llm.request_count == 1 and second.interaction.cached
    assert latest(second.page).title == reverse_words("Pork dumplings")


def test_a_translation_saved_while_the_model_answered_keeps_that_edit(
    translation_site, translate_action, fake_llm, monkeypatch
):
    from wagtail_llm_actions.translation import run as translation_run

    fake_llm.configure(translate="reverse")
    recipe = translation_site["recipe"]
    german = translate_page(translate_action, recipe, translation_site["de"]).page
    source = latest(recipe)
    source.title, source.intro = "Dumplings for everyone", "A new intro."
    source.save_revision()
    real_ask = translation_run.translate_segments

    def person_saves_meanwhile(*args, **kwargs):
        answer = real_ask(*args, **kwargs)
        draft = latest(german)
        draft.intro = "Von Hand, während das Modell antwortete."
        draft.save_revision()
        return answer

    monkeypatch.setattr(translation_run, "translate_segments", person_saves_meanwhile)
    outcome = translate_page(
        translate_action, Page.objects.get(pk=recipe.pk), translation_site["de"]
    )
    draft = latest(german)
    assert draft.intro == "Von Hand, während das Modell antwortete."
    assert draft.title == reverse_words("Dumplings for everyone")
    assert "intro" in outcome.review
    record = LLMTranslationSegment.objects.get(target_page=german, path="intro")
    assert record.machine_text == reverse_words("Dumplings, step by step.")  # not overwritten
