""" "Translate into…" for translatable snippets (issue 23 §2) from the snippet editor and from
the snippet listing's bulk actions: choose locales, the per-locale estimate, queued (no model
call in the request), drafts or revisions of the snippet's translations, hand edits kept."""

from __future__ import annotations

import io
import re
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import reverse
from wagtail.admin.admin_url_finder import AdminURLFinder

from tests.fakeserver import reverse_words, sent_segments
from tests.queued import finish_queued
from tests.snippets import snippet_editor
from tests.translation_site import i18n
from wagtail_llm_actions import jobs
from wagtail_llm_actions.jobs.translating import create_snippet_translation_job
from wagtail_llm_actions.models import ItemStatus, LLMJob
from wagtail_llm_actions.views.translate import snippet_translate_url

pytestmark = pytest.mark.django_db


@pytest.fixture
def site(snippet_translation_site):
    return snippet_translation_site


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def edit_url(user, obj) -> str:
    return AdminURLFinder(user).get_edit_url(obj)


def latest(obj):
    return type(obj).objects.get(pk=obj.pk).get_latest_revision_as_object()


def estimate_of(html: str, code: str) -> str:
    return html.split(f'data-llm-translate-estimate="{code}"')[1].split("</p>")[0]


# -- the snippet editor's "Translate into…" ------------------------------------------------------


def test_the_snippet_editor_offers_translate_into_and_queues_it(
    site, dish_translate_action, fake_llm, superuser
):
    fake_llm.configure(translate="reverse")
    dish = site["dish"]
    client = client_for(superuser)
    editor = client.get(edit_url(superuser, dish)).content.decode()
    assert "Translate into…" in editor and snippet_translate_url(dish) in editor
    # a translation action is not offered as an action to run on the snippet's fields
    assert "Translate →" not in editor
    form = client.get(snippet_translate_url(dish)).content.decode()
    assert "German (de)" in form and "French (fr)" in form and "English (en)" not in form
    assert "(new snippet, as a draft)" in form
    assert "3 segments to translate" in estimate_of(form, "de")
    assert "tokens sent" in estimate_of(form, "fr")
    response = client.post(
        snippet_translate_url(dish), {"action": dish_translate_action.pk, "locale": ["de", "fr"]}
    )
    assert fake_llm.request_count == 0  # queued: no model call in the request
    done = finish_queued(client, response, follow=True)
    assert fake_llm.request_count == 2
    html = done.content.decode()
    assert "“Pork dumplings” translated into de, fr: drafts saved, nothing published" in html
    for code in ("de", "fr"):
        translation = dish.get_translation(site[code])
        assert not translation.live  # a draft, never published
        assert latest(translation).name == reverse_words("Pork dumplings")
        assert edit_url(superuser, translation) in html  # "Open de", "Open fr"


def test_the_form_estimates_each_locale_against_the_memory(
    site, dish_translate_action, fake_llm, superuser
):
    from wagtail_llm_actions.translation.run import translate_page

    fake_llm.configure(translate="reverse")
    dish = site["dish"]
    translate_page(dish_translate_action, dish, site["de"])
    html = client_for(superuser).get(snippet_translate_url(dish)).content.decode()
    german = estimate_of(html, "de")
    assert "0 segments to translate" in german and "3 unchanged (skipped)" in german
    assert "tokens sent" not in german
    assert "3 segments to translate" in estimate_of(html, "fr")
    assert "(translated: a new draft of its changed parts)" in html
    assert fake_llm.request_count == 1  # the estimate calls nothing


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        (["xx"], "There is no locale “xx”"),
        (["en"], "“Pork dumplings” is in English (en) already"),
        ([], "Choose at least one locale."),
    ],
)
def test_bad_locales_are_refused_in_the_form(
    site, dish_translate_action, fake_llm, superuser, codes, message
):
    client = client_for(superuser)
    response = client.post(
        snippet_translate_url(site["dish"]), {"action": dish_translate_action.pk, "locale": codes}
    )
    assert response.status_code == 200 and message in response.content.decode()
    assert not LLMJob.objects.exists() and fake_llm.request_count == 0


def test_i18n_off_hides_the_entry_and_the_screen_says_why(site, dish_translate_action, superuser):
    dish = site["dish"]
    client = client_for(superuser)
    with i18n(enabled=False):
        assert "Translate into…" not in client.get(edit_url(superuser, dish)).content.decode()
        response = client.get(snippet_translate_url(dish), follow=True)
    assert "WAGTAIL_I18N_ENABLED" in response.content.decode()
    assert not LLMJob.objects.exists()


def test_a_snippet_model_that_is_not_translatable_is_refused(site, tip, superuser):
    client = client_for(superuser)
    editor = client.get(edit_url(superuser, tip)).content.decode()
    assert "Translate into…" not in editor
    response = client.get(snippet_translate_url(tip), follow=True)
    assert "are not translatable (no TranslatableMixin)" in response.content.decode()


def test_a_translatable_snippet_model_without_revisions_is_refused(
    site, dish_translate_action, fake_llm, superuser
):
    # Translations are saved as revisions: the action's "write directly" opt-in is no way
    # out, so the message does not suggest it.
    from tests.testapp.models import Term

    dish_translate_action.snippet_types.add(ContentType.objects.get_for_model(Term))
    term = Term.objects.create(text="Dumpling", locale=site["en"])
    client = client_for(superuser)
    assert "Translate into…" not in client.get(edit_url(superuser, term)).content.decode()
    for response in (
        client.get(snippet_translate_url(term), follow=True),
        client.post(
            snippet_translate_url(term),
            {"action": dish_translate_action.pk, "locale": ["de"]},
            follow=True,
        ),
    ):
        html = response.content.decode()
        assert response.status_code == 200
        assert "Term snippets keep no revisions, so they cannot be translated" in html
        assert "write snippets directly" not in html
    # the command says the same and writes nothing
    from django.core.management import CommandError, call_command

    out, err = io.StringIO(), io.StringIO()
    with i18n(), pytest.raises(CommandError, match="failed; content left as it was"):
        call_command(
            "run_llm_action", "translate", "--model", "testapp.Term", "--id", str(term.pk),
            "--locale", "de", stdout=out, stderr=err,
        )  # fmt: skip
    said = out.getvalue() + err.getvalue()
    assert "cannot be translated by an action" in said and "write snippets directly" not in said
    assert not LLMJob.objects.exists() and fake_llm.request_count == 0
    assert Term.objects.count() == 1  # no translation made


def test_permissions_change_to_open_it_add_for_a_new_translation(
    site, dish_translate_action, fake_llm, django_user_model, outsider
):
    from tests.testapp.models import Dish

    dish = site["dish"]
    assert client_for(outsider).get(snippet_translate_url(dish)).status_code in (302, 403)
    editor = snippet_editor(django_user_model, Dish)  # change, but no add
    client = client_for(editor)
    assert "Translate into…" in client.get(edit_url(editor, dish)).content.decode()
    data = {"action": dish_translate_action.pk, "locale": "de"}
    response = client.post(snippet_translate_url(dish), data)
    assert "You do not have permission to add this snippet." in response.content.decode()
    assert not LLMJob.objects.exists()
    editor.groups.first().permissions.add(
        Permission.objects.get(
            content_type=ContentType.objects.get_for_model(Dish), codename="add_dish"
        )
    )
    fake_llm.configure(translate="reverse")
    finish_queued(client, client_for(editor).post(snippet_translate_url(dish), data))
    assert latest(dish.get_translation(site["de"])).name == reverse_words("Pork dumplings")


def test_the_post_needs_the_csrf_token(site, dish_translate_action, superuser):
    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    response = client.post(
        snippet_translate_url(site["dish"]), {"action": dish_translate_action.pk, "locale": "de"}
    )
    assert response.status_code == 403 and not LLMJob.objects.exists()


# -- the snippet listing's bulk "Translate into…" ------------------------------------------------


def bulk_url(objs) -> str:
    base = reverse("wagtail_bulk_action", args=("testapp", "dish", "translate_snippets"))
    query = [("next", "/admin/snippets/testapp/dish/"), *(("id", o.pk) for o in objs)]
    return f"{base}?{urlencode(query)}"


def cell(html: str, code: str, name: str) -> int:
    row = re.search(rf'data-llm-locale-row="{code}">(.*?)</tr>', html, re.S)
    assert row, html
    return int(re.search(rf'data-llm-locale-{name}="(\d+)"', row[1])[1])


@pytest.fixture
def two_dishes(site):
    from tests.testapp.models import Dish

    soup = Dish.objects.create(
        name="Onion soup", description="Brown the onions slowly.", locale=site["en"], live=True
    )
    soup.save_revision()
    return [site["dish"], soup]


def test_the_bulk_screen_estimates_each_locale_and_start_translates_as_drafts(
    site, two_dishes, dish_translate_action, fake_llm, superuser
):
    from wagtail_llm_actions.translation.run import translate_page

    fake_llm.configure(translate="reverse")
    translate_page(dish_translate_action, site["dish"], site["de"])  # German exists already
    fake_llm.reset()
    fake_llm.configure(translate="reverse")
    client = client_for(superuser)
    url = bulk_url(two_dishes)
    first = client.get(url).content.decode()
    assert "Translate 2 snippets" in first and "data-llm-choose-first" in first
    data = {"action": dish_translate_action.pk, "locales": ["de", "fr"]}
    html = client.post(url, {**data, "preview": "1"}).content.decode()
    assert "2 snippets selected." in html and 'data-llm-will-run="4"' in html
    assert cell(html, "de", "pages") == 2 and cell(html, "fr", "pages") == 2
    assert cell(html, "de", "unchanged") == 3 and cell(html, "de", "send") == 2  # soup only
    assert cell(html, "fr", "send") == 5 and cell(html, "fr", "unchanged") == 0
    assert fake_llm.request_count == 0
    response = client.post(url, data)
    assert response.status_code == 302
    job = LLMJob.objects.get()
    assert job.options["locales"] == ["de", "fr"] and job.items.count() == 4
    assert all(item.page_id is None and item.target_id for item in job.items.all())
    assert jobs.run_job(job.pk) == "completed"
    statuses = sorted(job.items.values_list("status", flat=True))
    # the German dumplings: nothing changed since their translation, nothing sent
    assert statuses == [ItemStatus.SKIPPED] + [ItemStatus.SUCCEEDED] * 3
    assert sum(len(sent_segments(r)) for r in fake_llm.requests) == 2 + 5
    for obj in two_dishes:
        french = obj.get_translation(site["fr"])
        assert not french.live and latest(french).name == reverse_words(obj.name)
    detail = client.get(reverse("wagtail_llm_actions_jobs:detail", args=[job.pk])).content.decode()
    assert detail.count('data-llm-item-locale="fr"') == 2
    # "Review draft" opens each translation's editor, where its draft is
    french = site["dish"].get_translation(site["fr"])
    assert f'href="{edit_url(superuser, french)}">Review draft' in detail


def test_a_second_job_sends_only_changed_segments_and_keeps_hand_edits(
    site, dish_translate_action, fake_llm, superuser
):
    from tests.testapp.models import Dish

    fake_llm.configure(translate="reverse")
    dish = site["dish"]
    job = create_snippet_translation_job(dish_translate_action, superuser, Dish, [dish.pk], ["de"])
    assert jobs.run_job(job.pk) == "completed"
    german = dish.get_translation(site["de"])
    draft = latest(german)
    draft.notes = "Heiß servieren."  # a translator's own correction
    draft.save_revision()
    source = latest(dish)
    source.description = "Soft dumplings you fold in an afternoon."
    source.notes = "Serve them hot."
    source.save_revision()
    fake_llm.reset()
    fake_llm.configure(translate="reverse")
    html = (
        client_for(superuser)
        .post(
            bulk_url([dish]),
            {"action": dish_translate_action.pk, "locales": ["de"], "preview": "1"},
        )
        .content.decode()
    )
    assert cell(html, "de", "send") == 1 and cell(html, "de", "review") == 1
    second = create_snippet_translation_job(
        dish_translate_action, superuser, Dish, [dish.pk], ["de"]
    )
    assert jobs.run_job(second.pk) == "completed"
    assert fake_llm.request_count == 1
    sent = list(sent_segments(fake_llm.requests[0]).values())
    assert sent == ["Soft dumplings you fold in an afternoon."]
    draft = latest(german)
    assert draft.notes == "Heiß servieren."  # kept
    assert draft.description == reverse_words("Soft dumplings you fold in an afternoon.")
    item = second.items.get()
    assert item.status == ItemStatus.SUCCEEDED and "notes" in item.result["review"]
    assert "edited by hand" in item.error


@pytest.mark.parametrize(
    ("codes", "enabled", "message"),
    [
        (["en"], True, "is in English (en) already"),
        (["de"], False, "WAGTAIL_I18N_ENABLED"),
    ],
)
def test_bad_input_is_refused_on_the_bulk_screen_and_nothing_starts(
    site, dish_translate_action, fake_llm, superuser, codes, enabled, message
):
    client = client_for(superuser)
    url = bulk_url([site["dish"]])
    data = {"action": dish_translate_action.pk, "locales": codes}
    with i18n(enabled=enabled):
        html = client.post(url, {**data, "preview": "1"}).content.decode()
        assert "data-llm-translate-refused" in html and message in html
        assert "data-llm-start disabled" in html
        response = client.post(url, data)
    assert response.status_code == 200 and not LLMJob.objects.exists()


def test_without_add_permission_the_new_translation_is_named_as_a_problem(
    site, dish_translate_action, fake_llm, django_user_model
):
    from tests.testapp.models import Dish

    editor = snippet_editor(django_user_model, Dish)
    html = (
        client_for(editor)
        .post(
            bulk_url([site["dish"]]),
            {"action": dish_translate_action.pk, "locales": ["de"], "preview": "1"},
        )
        .content.decode()
    )
    assert 'data-llm-locale-problems="de"' in html
    assert "You do not have permission to add this snippet." in html
    assert "Nothing would be translated with these options" in html


def test_translation_actions_are_not_in_run_ai_action(site, dish_translate_action, superuser):
    base = reverse("wagtail_bulk_action", args=("testapp", "dish", "run_llm_snippet_action"))
    html = client_for(superuser).get(f"{base}?id={site['dish'].pk}").content.decode()
    assert f'value="{dish_translate_action.pk}"' not in html


def test_only_translatable_snippet_listings_offer_translate_into(site, tip, superuser):
    client = client_for(superuser)
    dishes = client.get(reverse("wagtailsnippets_testapp_dish:list")).content.decode()
    assert "translate_snippets" in dishes and "Translate into…" in dishes
    tips = client.get(reverse("wagtailsnippets_testapp_tip:list")).content.decode()
    assert "translate_snippets" not in tips
