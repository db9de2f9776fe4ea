""" "Translate into…" in the page editor's action menu (issue 23 §1): choose locales, the
translation is queued, and the editor comes back with the drafts saved."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.queued import finish_queued
from tests.translation_site import i18n

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def translate_url(page) -> str:
    return reverse("wagtail_llm_actions_report:translate", args=[page.pk])


def test_the_editor_offers_translate_into_and_queues_it(
    translation_site, translate_action, fake_llm, superuser
):
    fake_llm.configure(translate="reverse")
    recipe = translation_site["recipe"]
    client = client_for(superuser)
    editor = client.get(reverse("wagtailadmin_pages:edit", args=[recipe.pk])).content.decode()
    assert "Translate into…" in editor and translate_url(recipe) in editor
    form = client.get(translate_url(recipe)).content.decode()
    assert "German (de)" in form and "French (fr)" in form and "English (en)" not in form
    assert fake_llm.request_count == 0
    response = client.post(
        translate_url(recipe), {"action": translate_action.pk, "locale": ["de", "fr"]}
    )
    assert fake_llm.request_count == 0  # queued: no model call in the request
    done = finish_queued(client, response, follow=True)
    assert fake_llm.request_count == 2
    html = done.content.decode()
    assert "translated into de, fr: drafts saved, nothing published" in html
    for code in ("de", "fr"):
        page = recipe.get_translation(translation_site[code])
        assert not page.live
        assert reverse("wagtailadmin_pages:edit", args=[page.pk]) in html


def test_bad_choices_are_refused_in_the_form(
    translation_site, translate_action, fake_llm, superuser
):
    client = client_for(superuser)
    orphan = translation_site["orphan"]
    response = client.post(translate_url(orphan), {"action": translate_action.pk, "locale": "de"})
    assert response.status_code == 200
    assert "“Untranslated section” has no translation in German" in response.content.decode()
    response = client.post(translate_url(orphan), {"action": translate_action.pk})
    assert "Choose at least one locale." in response.content.decode()
    assert fake_llm.request_count == 0


def test_not_offered_without_i18n_or_translation_action(translation_site, superuser, action):
    recipe = translation_site["recipe"]
    client = client_for(superuser)
    editor = client.get(reverse("wagtailadmin_pages:edit", args=[recipe.pk])).content.decode()
    assert "Translate into…" not in editor


def test_needs_edit_permission(translation_site, translate_action, outsider):
    response = client_for(outsider).get(translate_url(translation_site["recipe"]))
    assert response.status_code in (302, 403)


def test_i18n_off_hides_it(translation_site, translate_action, superuser):
    recipe = translation_site["recipe"]
    with i18n(enabled=False):
        html = client_for(superuser).get(reverse("wagtailadmin_pages:edit", args=[recipe.pk]))
    assert "Translate into…" not in html.content.decode()


def test_the_interaction_log_shows_a_translation(
    translation_site, translate_action, fake_llm, superuser
):
    from wagtail_llm_actions.translation.run import translate_page

    fake_llm.configure(translate="reverse")
    outcome = translate_page(translate_action, translation_site["recipe"], translation_site["de"])
    client = client_for(superuser)
    detail = client.get(reverse("wagtail_llm_actions_report:detail", args=[outcome.interaction.pk]))
    assert detail.status_code == 200 and "Translate" in detail.content.decode()
    report = client.get(reverse("wagtail_llm_actions_report:index"))
    edit = reverse("wagtailadmin_pages:edit", args=[outcome.page.pk])
    assert report.status_code == 200 and edit in report.content.decode()


def test_the_form_estimates_each_locale(translation_site, translate_action, fake_llm, superuser):
    from wagtail_llm_actions.translation.run import translate_page
    from wagtail_llm_actions.translation.segments import segments

    fake_llm.configure(translate="reverse")
    recipe = translation_site["recipe"]
    translate_page(translate_action, recipe, translation_site["de"])
    html = client_for(superuser).get(translate_url(recipe)).content.decode()
    count = len(segments(recipe))
    french = html.split('data-llm-translate-estimate="fr"')[1].split("</p>")[0]
    german = html.split('data-llm-translate-estimate="de"')[1].split("</p>")[0]
    assert f"{count} segments to translate" in french and "tokens sent" in french
    assert "0 segments to translate" in german and f"{count} unchanged (skipped)" in german
    assert "tokens sent" not in german
    assert fake_llm.request_count == 1  # estimating calls nothing
