"""The action and prompt forms guide: field choices, model suggestions, slug, key warning,
where the action appears, and "Test on a page"."""

from __future__ import annotations

import re

import pytest
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import reverse

from tests.queued import finish_queued
from wagtail_llm_actions.models import LLMAction, LLMInteraction

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def edit_url(action):
    return reverse("wagtailsnippets_wagtail_llm_actions_llmaction:edit", args=[action.pk])


ADD_URL = "wagtailsnippets_wagtail_llm_actions_llmaction:add"


def action_data(prompt, **overrides):
    from blog.models import BlogPage

    data = {
        "name": "Generate summary",
        "slug": "generate-summary",
        "description": "",
        "page_types": [str(ContentType.objects.get_for_model(BlogPage).pk)],
        "source_field": "body",
        "target_field": "summary",
        "output_mode": "text",
        "enabled": "on",
        "prompt": str(prompt.pk),
        "system_message": "",
        "context_message": "",
        "model": "local/extractive",
        "api_base": "",
        "api_key_name": "",
        "temperature": "",
        "max_tokens": "",
        "timeout": "60",
        "fallback_models": "",
        "extra_params": "{}",
    }
    data.update(overrides)
    return data


def datalist(html: str, input_name: str) -> list[str]:
    match = re.search(rf'<input[^>]*name="{input_name}"[^>]*list="([^"]+)"', html)
    assert match, f"{input_name} has no suggestions"
    block = re.search(rf'<datalist id="{match.group(1)}">(.*?)</datalist>', html, re.S)
    return re.findall(r'<option value="([^"]*)"', block.group(1))


def select_options(html: str, name: str) -> list[str]:
    block = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', html, re.S)
    assert block, f"{name} is not a select"
    return re.findall(r'<option value="([^"]*)"', block.group(1))


# -- choices -------------------------------------------------------------------------------


def test_source_and_target_are_offered_for_the_chosen_page_types(action, superuser):
    html = client_for(superuser).get(edit_url(action)).content.decode()

    sources = datalist(html, "source_field")
    assert {"body", "body.paragraph", "body.section.text", "intro", "author.name"} <= set(sources)
    targets = select_options(html, "target_field")
    assert {"summary", "highlights", "tags", "intro", "search_description"} <= set(targets)
    assert "date" not in targets
    # A StreamField cannot receive an answer: it is offered only in the group of fields
    # whose image blocks get alt text (actions that run on the images in a page's content).
    select = re.search(r'<select name="target_field"[^>]*>(.*?)</select>', html, re.S).group(1)
    groups = dict(re.findall(r'<optgroup label="([^"]*)">(.*?)</optgroup>', select, re.S))
    assert "body" not in select.split("<optgroup")[0]
    assert re.findall(
        r'value="([^"]*)"', groups["Images in a page&#x27;s content (their alt text)"]
    ) == ["body"]


def test_page_type_data_for_the_script_covers_each_page_type(action, superuser):
    """The script narrows the choices when page types change, from data in the page."""
    from blog.models import SimplePage

    html = client_for(superuser).get(edit_url(action)).content.decode()

    simple = str(ContentType.objects.get_for_model(SimplePage).pk)
    assert "llm-action-form-controller.js" in html
    assert 'data-controller="llm-action-form"' in html
    match = re.search(r'data-llm-action-form-data-value="([^"]*)"', html)
    import html as html_lib
    import json

    data = json.loads(html_lib.unescape(match.group(1)))
    assert "text" in data[simple]["sources"]
    assert "body" not in data[simple]["sources"]
    assert data[simple]["label"] == "Simple page"


def test_model_is_a_combobox_of_known_models_that_accepts_any_string(prompt, superuser):
    client = client_for(superuser)
    html = client.get(reverse(ADD_URL)).content.decode()

    models = datalist(html, "model")
    assert "openai/gpt-4o-mini" in models
    assert "anthropic/claude-3-5-haiku-latest" in models or any(
        m.startswith("anthropic/") for m in models
    )
    assert "local/extractive" in models

    response = client.post(
        reverse(ADD_URL),
        action_data(prompt, model="openai/my-own-fine-tune"),
    )
    assert response.status_code == 302, response.context["form"].errors
    assert LLMAction.objects.get(slug="generate-summary").model == "openai/my-own-fine-tune"


def test_known_models_are_read_without_importing_litellm():
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    code = (
        "import sys, django; django.setup(); "
        "from wagtail_llm_actions.estimates import known_models; "
        "assert 'openai/gpt-4o-mini' in known_models(); "
        "print('litellm' in sys.modules)"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo.settings",
        "PYTHONPATH": os.pathsep.join([str(root), str(root / "sandbox")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


# -- slug --------------------------------------------------------------------------------------


@pytest.mark.parametrize("url_name", [ADD_URL, "wagtailsnippets_wagtail_llm_actions_llmprompt:add"])
def test_slug_follows_the_name_as_for_pages(superuser, url_name):
    html = client_for(superuser).get(reverse(url_name)).content.decode()

    name = re.search(r'<input[^>]*name="name"[^>]*>', html).group(0)
    slug = re.search(r'<input[^>]*name="slug"[^>]*>', html).group(0)
    assert "w-sync" in name and 'data-w-sync-target-value="#id_slug"' in name
    assert 'data-controller="w-slug"' in slug


# -- provider key warning ------------------------------------------------------------------------


def test_missing_provider_key_is_a_warning_not_an_error(prompt, superuser, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    client = client_for(superuser)

    response = client.post(
        reverse(ADD_URL), action_data(prompt, model="openai/gpt-4o-mini"), follow=True
    )

    assert LLMAction.objects.filter(slug="generate-summary").exists()  # saved
    html = response.content.decode()
    assert "OPENAI_API_KEY is not set in this environment" in html


def test_named_key_that_is_set_gives_no_warning(prompt, superuser, monkeypatch, settings):
    # a variable of the site's own, named in EXTRA_API_KEY_NAMES
    settings.WAGTAIL_LLM_ACTIONS = {
        **settings.WAGTAIL_LLM_ACTIONS,
        "EXTRA_API_KEY_NAMES": ["MY_SITE_API_KEY"],
    }
    monkeypatch.setenv("MY_SITE_API_KEY", "sk-xyz")
    client = client_for(superuser)

    response = client.post(
        reverse(ADD_URL),
        action_data(prompt, model="openai/gpt-4o-mini", api_key_name="MY_SITE_API_KEY"),
        follow=True,
    )

    assert LLMAction.objects.filter(slug="generate-summary").exists()
    assert "is not set in this environment" not in response.content.decode()
    assert "sk-xyz" not in response.content.decode()


# -- answers cut off by max tokens ---------------------------------------------------------------


def test_the_form_offers_what_to_do_with_cut_off_answers_and_saves_it(prompt, superuser):
    client = client_for(superuser)

    html = client.get(reverse(ADD_URL)).content.decode()
    client.post(reverse(ADD_URL), action_data(prompt, cut_answers="keep"), follow=True)
    client.post(reverse(ADD_URL), action_data(prompt, slug="older-script"), follow=True)

    assert select_options(html, "cut_answers") == ["refuse", "keep"]
    assert LLMAction.objects.get(slug="generate-summary").cut_answers == "keep"
    # a post without the field (a script that predates it) gets the default: refuse
    assert LLMAction.objects.get(slug="older-script").cut_answers == "refuse"


# -- where it appears ----------------------------------------------------------------------------


def test_form_says_where_the_action_appears(action, superuser):
    html = client_for(superuser).get(edit_url(action)).content.decode()

    note = re.search(r"data-llm-action-placement>(.*?)</ul>", html, re.S).group(1)
    text = re.sub(r"<[^>]+>", "", note)
    assert "In the page editor" in text and "summary" in text
    assert "Blog page" in text
    assert "Run AI action" in text
    assert "run_llm_action generate-summary" in text


# -- test on a page ------------------------------------------------------------------------------


def tryout_url(action):
    return reverse("wagtail_llm_actions_tryout:try", args=[action.pk])


def test_dry_run_shows_the_messages_and_calls_nothing(post, server_action, fake_llm, superuser):
    client = client_for(superuser)
    assert client.get(tryout_url(server_action)).status_code == 200

    response = client.post(tryout_url(server_action), {"page": post.pk})

    html = response.content.decode()
    assert response.status_code == 200
    assert "You are a helpful summarizer." in html
    assert "Summarize “Composting in a small flat”" in html
    assert fake_llm.requests == []
    assert not LLMInteraction.objects.exists()


def test_asking_the_model_shows_the_answer_beside_the_current_value_without_saving(
    post, server_action, fake_llm, superuser
):
    post.summary = "What the page says now."
    post.save_revision()
    revisions = post.revisions.count()
    fake_llm.configure(reply=lambda request_json: "A fresh answer from the model.")
    client = client_for(superuser)

    response = client.post(tryout_url(server_action), {"page": post.pk, "ask_model": "on"})
    assert fake_llm.requests == []  # queued: no model call inside the request
    response = finish_queued(client, response, follow=True)

    html = response.content.decode()
    assert "What the page says now." in html
    assert "A fresh answer from the model." in html
    assert post.revisions.count() == revisions  # nothing saved
    interaction = LLMInteraction.objects.get()
    assert interaction.outcome == "pending" and interaction.revision_id is None
    assert reverse("wagtail_llm_actions_report:keep", args=[interaction.pk]) in html


def test_asking_the_model_shows_a_kept_cut_off_answer_with_its_warning(
    post, server_action, fake_llm, superuser
):
    server_action.cut_answers = "keep"
    server_action.save()
    fake_llm.configure(reply="An answer that stops", finish_reason="length")

    client = client_for(superuser)
    response = finish_queued(
        client,
        client.post(tryout_url(server_action), {"page": post.pk, "ask_model": "on"}),
        follow=True,
    )

    html = response.content.decode()
    assert "An answer that stops" in html
    assert "data-llm-answer-cut" in html and "max tokens (120)" in html


def test_test_on_a_page_needs_edit_permission_on_the_page(post, action, outsider, superuser):
    from django.contrib.auth.models import Permission

    outsider.user_permissions.add(
        Permission.objects.get(codename="change_llmaction"),
        Permission.objects.get(codename="view_llmaction"),
    )
    response = client_for(outsider).post(tryout_url(action), {"page": post.pk})

    assert response.status_code in (302, 403)  # Wagtail's permission-denied handling
    assert not LLMInteraction.objects.exists()
