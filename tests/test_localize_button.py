"""wagtail-localize's own "Machine translate" button (its view, its models) on a translation
action (issue 23 §1). Needs wagtail-localize in INSTALLED_APPS: ``tests/localize_settings.py``,
run by ``tests/test_localize_translator.py`` in a subprocess; skipped in the main run."""

from __future__ import annotations

import pytest
from django.conf import settings

if "wagtail_localize" not in settings.INSTALLED_APPS:
    pytest.skip(
        "runs with tests.localize_settings (tests/test_localize_translator.py starts it)",
        allow_module_level=True,
    )

from django.contrib.messages import get_messages  # noqa: E402
from django.urls import reverse  # noqa: E402
from wagtail.rich_text import RichText  # noqa: E402

from tests.fakeserver import reverse_words  # noqa: E402
from tests.recipes import make_recipe  # noqa: E402

pytestmark = pytest.mark.django_db

PARAGRAPH = '<p>See <a href="https://example.com/oil">the <b>chili</b> oil</a> first.</p>'


@pytest.fixture
def translation(translation_site, admin_user):
    from wagtail_localize.models import Translation, TranslationSource

    page = make_recipe(
        translation_site["home"],
        translation_site["media"],
        "Chili dumplings",
        "chili-dumplings",
        body=[("paragraph", RichText(PARAGRAPH))],
        intro="Fold the dough.",
    )
    source, _created = TranslationSource.get_or_create_from_instance(page)
    translation = Translation.objects.create(source=source, target_locale=translation_site["de"])
    translation.save_target(user=admin_user)
    return translation


def press(client, translation):
    url = reverse("wagtail_localize:machine_translate", args=[translation.id])
    response = client.post(url + "?next=/admin/")
    assert response.status_code == 302
    return [str(m).strip() for m in get_messages(response.wsgi_request)]


def machine_strings(translation) -> dict[str, str]:
    from wagtail_localize.models import StringTranslation

    return {
        st.translation_of.data: st.data
        for st in StringTranslation.objects.filter(locale=translation.target_locale)
        if st.translation_type == StringTranslation.TRANSLATION_TYPE_MACHINE
    }


def test_the_button_translates_through_the_action_and_logs_it(
    translation, translate_action, fake_llm, admin_client, admin_user
):
    from wagtail_llm_actions.models import LLMInteraction

    fake_llm.configure(translate="reverse")
    messages = press(admin_client, translation)
    assert messages == ["Successfully translated with Translate."]
    strings = machine_strings(translation)
    assert strings['See <a id="a1">the <b>chili</b> oil</a> first.'] == (
        'eeS <a id="a1">eht <b>ilihc</b> lio</a> tsrif.'
    )
    assert strings["Fold the dough."] == reverse_words("Fold the dough.")
    assert fake_llm.request_count == 1
    interaction = LLMInteraction.objects.get()
    assert interaction.user == admin_user and interaction.trigger == "wagtail_localize"
    assert interaction.page_id == translation.get_target_instance().pk


def test_a_refusal_is_shown_to_the_editor_and_nothing_is_saved(
    translation, translate_action, fake_llm, admin_client
):
    from wagtail_llm_actions.models import LLMBudget

    LLMBudget.objects.create(name="Translations", period="month", max_tokens=1)
    messages = press(admin_client, translation)
    assert any(
        m.startswith("Nothing was machine translated:") and "“Translations”" in m for m in messages
    ), messages
    assert machine_strings(translation) == {} and fake_llm.request_count == 0


def test_an_action_for_other_page_types_is_refused_for_this_page(
    translation, translate_action, fake_llm, admin_client
):
    from django.contrib.contenttypes.models import ContentType
    from wagtail.models import Page

    translate_action.page_types.set([ContentType.objects.get_for_model(Page)])
    messages = press(admin_client, translation)
    assert any(
        m.startswith("Nothing was machine translated:") and "does not apply" in m for m in messages
    ), messages
    assert machine_strings(translation) == {} and fake_llm.request_count == 0
