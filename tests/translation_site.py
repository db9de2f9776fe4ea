"""A multilingual recipe site for the translation tests (issue 23): English pages, German and
French locales, a home page translated into both, a linked recipe translated into German only."""

from __future__ import annotations

from django.contrib.contenttypes.models import ContentType
from django.test import override_settings
from wagtail.models import Locale, Page
from wagtail.rich_text import RichText

from tests.recipes import make_recipe, media, recipe_body

LANGUAGES = [("en", "English"), ("de", "German"), ("fr", "French")]


def i18n(enabled: bool = True) -> override_settings:
    """Wagtail's internationalisation on (or off) with the three test languages."""
    return override_settings(
        WAGTAIL_I18N_ENABLED=enabled, WAGTAIL_CONTENT_LANGUAGES=LANGUAGES, LANGUAGES=LANGUAGES
    )


def links_paragraph(m: dict, linked: Page) -> RichText:
    """Rich text with every inline markup the translation keeps."""
    return RichText(
        f'<p>See <a linktype="page" id="{linked.pk}">the chili oil</a>, print the '
        f'<a linktype="document" id="{m["document"].pk}">recipe card</a> or visit '
        '<a href="https://example.com/shop">our shop</a>. <b>Bold</b> and <i>italic</i> words.'
        "<br/>A second line.</p><ul><li>Fold the dough</li><li>Steam it</li></ul>"
    )


def build_site():
    """Locales en/de/fr; ``home`` (translated into de and fr), ``chili`` (and its German
    translation), ``recipe`` (every block, links to chili), ``orphan`` (under an untranslated
    section)."""
    en = Locale.objects.get_or_create(language_code="en")[0]
    Page.objects.filter(depth=1).update(locale=en)
    Locale.objects.exclude(pk=en.pk).exclude(language_code__in=["de", "fr"]).delete()
    de = Locale.objects.get_or_create(language_code="de")[0]
    fr = Locale.objects.get_or_create(language_code="fr")[0]
    m = media()
    root = Page.get_first_root_node()
    home = make_recipe(root, m, "Recipes", "recipes", body=[], locale=en)
    home.copy_for_translation(de)
    home.copy_for_translation(fr)
    chili = make_recipe(home, m, "Chili oil", "chili-oil", locale=en)
    chili_de = chili.copy_for_translation(de)
    body = recipe_body(m, related=chili)
    body.insert(3, ("paragraph", links_paragraph(m, chili)))
    recipe = make_recipe(home, m, "Pork dumplings", "dumplings", body=body, locale=en)
    section = make_recipe(home, m, "Untranslated section", "section", body=[], locale=en)
    orphan = make_recipe(section, m, "Orphan", "orphan", body=[], locale=en)
    return {
        "en": en,
        "de": de,
        "fr": fr,
        "media": m,
        "home": home,
        "chili": chili,
        "chili_de": chili_de,
        "recipe": recipe,
        "orphan": orphan,
    }


def make_translate_action(make_action, server_fields):
    """A translation action on the fake server (its glossary and terms set)."""
    from tests.testapp.models import RecipePage
    from wagtail_llm_actions.models import LLMTranslationSettings

    action = make_action(name="Translate", slug="translate", target_field="", **server_fields)
    action.page_types.set([ContentType.objects.get_for_model(RecipePage)])
    LLMTranslationSettings.objects.create(
        action=action,
        style="Friendly, plain words.",
        glossary="de: dumplings = Maultaschen\nfr: dumplings = raviolis",
        do_not_translate="Mei Lin",
    )
    return action
