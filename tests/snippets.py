"""Fixtures of the snippet tests (issue 23 §2): a snippet with drafts and revisions (``Dish``),
one without revisions (``Tip``), and actions that run on them."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType


@pytest.fixture
def dish(db):
    from tests.testapp.models import Dish

    obj = Dish.objects.create(
        name="Cassoulet",
        description="Beans, duck confit and sausage, slowly baked. It feeds a family.",
        notes="Keep the crust.",
        live=True,
    )
    obj.save_revision()
    return obj


@pytest.fixture
def tip(db):
    from tests.testapp.models import Tip

    return Tip.objects.create(
        title="Resting meat", text="Rest meat for ten minutes. The juices settle.", summary="old"
    )


@pytest.fixture
def snippet_prompt(db):
    from wagtail_llm_actions.models import LLMPrompt

    p = LLMPrompt.objects.create(
        name="Summarize snippet", slug="summarize-snippet", template="Summarize {title}: {source}"
    )
    p.save_revision()
    return p


@pytest.fixture
def make_snippet_action(snippet_prompt, server_fields):
    """An action on the fake server for the given snippet models (no page types)."""
    from wagtail_llm_actions.models import LLMAction

    def _make(*models, **fields):
        fields.setdefault("name", "Snippet summary")
        fields.setdefault("slug", "snippet-summary")
        fields.setdefault("source_field", "description")
        fields.setdefault("target_field", "summary")
        fields.setdefault("prompt", snippet_prompt)
        fields.setdefault("timeout", 30)
        action = LLMAction.objects.create(**{**server_fields, **fields})
        action.snippet_types.set([ContentType.objects.get_for_model(m) for m in models])
        return action

    return _make


@pytest.fixture
def dish_action(make_snippet_action):
    from tests.testapp.models import Dish

    return make_snippet_action(Dish)


@pytest.fixture
def tip_action(make_snippet_action):
    from tests.testapp.models import Tip

    return make_snippet_action(Tip, slug="tip-summary", source_field="text", writes_directly=True)


def snippet_editor(django_user_model, *models, name="dish-editor"):
    """An admin user with the change permission on ``models`` (and nothing on pages)."""
    group = Group.objects.create(name=name)
    group.permissions.add(Permission.objects.get(codename="access_admin"))
    for model in models:
        opts = model._meta
        group.permissions.add(
            Permission.objects.get(
                content_type=ContentType.objects.get_for_model(model),
                codename=f"change_{opts.model_name}",
            )
        )
    user = django_user_model.objects.create_user(name, password="pw")
    user.groups.add(group)
    return user


@pytest.fixture
def snippet_translation_site(db):
    """Locales en/de/fr (i18n on meanwhile) and an English ``Dish`` with a revision."""
    from wagtail.models import Locale, Page

    from tests.testapp.models import Dish
    from tests.translation_site import i18n

    with i18n():
        en = Locale.objects.get_or_create(language_code="en")[0]
        Page.objects.filter(depth=1).update(locale=en)
        de = Locale.objects.get_or_create(language_code="de")[0]
        fr = Locale.objects.get_or_create(language_code="fr")[0]
        dish = Dish.objects.create(
            name="Pork dumplings",
            description="Soft dumplings you fold by hand.",
            notes="Serve hot.",
            locale=en,
            live=True,
        )
        dish.save_revision()
        yield {"en": en, "de": de, "fr": fr, "dish": dish}


@pytest.fixture
def dish_translate_action(make_action, server_fields):
    """A translation action on the fake server whose snippet types are ``Dish`` only."""
    from tests.testapp.models import Dish
    from wagtail_llm_actions.models import LLMTranslationSettings

    action = make_action(name="Translate", slug="translate", target_field="", **server_fields)
    action.page_types.set([])
    action.snippet_types.set([ContentType.objects.get_for_model(Dish)])
    LLMTranslationSettings.objects.create(action=action, style="Plain words.")
    return action
