"""Words for editors (issue 21, §3): labels an editor understands, the feature's own name,
the bulk bar, the model suggestions, the pipeline form and the editor's action menu."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse

from wagtail_llm_actions.model_choices import suggested_models
from wagtail_llm_actions.panels import editor_messages

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def explorer(client, page) -> str:
    return client.get(reverse("wagtailadmin_explore", args=[page.pk])).content.decode()


def test_run_ai_action_is_in_the_bulk_bar_not_under_more(superuser, blog_index, post, action):
    html = explorer(client_for(superuser), blog_index)

    bar = html[html.index('class="bulk-actions-buttons"') :]
    assert "Run AI action" in bar
    assert bar.index("Run AI action") < bar.index("More bulk actions")  # before "More"


def test_the_feature_is_called_ai_unless_the_site_names_it(
    settings, superuser, blog_index, post, action
):
    client = client_for(superuser)
    edit = client.get(reverse("wagtailadmin_pages:edit", args=[post.pk])).content.decode()
    assert "Run AI action" in explorer(client, blog_index)
    assert re.search(r'llm-action-menu__heading"[^>]*>.*?AI</p>', edit, re.S)

    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "FEATURE_NAME": "Assistant"}

    listing = explorer(client, blog_index)
    assert "Run Assistant action" in listing and "Run AI action" not in listing
    edit = client.get(reverse("wagtailadmin_pages:edit", args=[post.pk])).content.decode()
    assert re.search(r'llm-action-menu__heading"[^>]*>.*?Assistant</p>', edit, re.S)
    assert "Assistant actions" in client.get(reverse("wagtailadmin_home")).content.decode()


def test_the_editor_action_menu_groups_the_actions_under_a_separator(
    superuser, post, action, make_action
):
    make_action(name="Suggest intro", slug="suggest-intro", target_field="intro")
    html = client_for(superuser).get(reverse("wagtailadmin_pages:edit", args=[post.pk]))
    html = html.content.decode()

    group = re.search(r"<div class=\"llm-action-menu\" role=\"group\"(.*?)</div>", html, re.S)
    assert group is not None
    assert 'aria-labelledby="llm-action-menu-heading"' in group.group(0)
    assert group.group(1).count("llm-action-menu-item") == 2  # both actions, in the group
    assert html.count("llm-action-menu-item") == 2  # none outside it


def test_no_worker_in_what_the_editor_reads():
    for key, text in editor_messages().items():
        assert "worker" not in str(text).lower(), key


def test_model_suggestions_start_with_the_providers_the_site_has_keys_for(settings):
    models = ["abliteration/x", "anthropic/claude", "local/echo", "openai/gpt-4o", "zai/glm"]
    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "API_KEYS": {}}

    assert suggested_models(models, environ={"OPENAI_API_KEY": "sk-x"}) == [
        "openai/gpt-4o",
        "local/echo",
        "abliteration/x",
        "anthropic/claude",
        "zai/glm",
    ]
    both = suggested_models(models, environ={"OPENAI_API_KEY": "x", "ANTHROPIC_API_KEY": "y"})
    assert both[:2] == ["anthropic/claude", "openai/gpt-4o"]
    assert suggested_models(models, environ={})[0] == "local/echo"  # no key: local first
    settings.WAGTAIL_LLM_ACTIONS = {
        **settings.WAGTAIL_LLM_ACTIONS,
        "API_KEYS": {"ZAI_API_KEY": "from settings"},
    }
    assert suggested_models(models, environ={})[0] == "zai/glm"


def test_the_action_form_suggests_keyed_providers_models_first(superuser, monkeypatch):
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    html = (
        client_for(superuser)
        .get(reverse("wagtailsnippets_wagtail_llm_actions_llmaction:add"))
        .content.decode()
    )

    datalist = re.search(r'<datalist id="id_model-suggestions">(.*?)</datalist>', html, re.S)
    first = re.findall(r'<option value="([^"]+)"', datalist.group(1))[:3]
    assert all(model.startswith("anthropic/") for model in first), first


def test_the_pipeline_form_is_as_helpful_as_the_action_form(superuser):
    html = (
        client_for(superuser)
        .get(reverse("wagtailsnippets_wagtail_llm_actions_llmpipeline:add"))
        .content.decode()
    )

    # the slug follows the name, as on the action form
    assert re.search(r'name="name"[^>]*data-w-sync-target|data-w-sync-target[^>]*name="name"', html)
    assert re.search(r'name="slug"[^>]*data-controller="w-slug', html) or (
        'data-controller="w-slug' in html and 'name="slug"' in html
    )
    # the step's fields offer choices: target fields to choose, source paths to pick
    assert re.search(r'<select name="steps-__prefix__-target_field"', html)
    assert "Choose a field" in html
    assert 'list="id_steps-__prefix__-source_field-suggestions"' in html
    # "Page types" is said once, in the Pipeline section (not a section of its own as well),
    # and the own prompt's section is not "Or its own prompt" over an "Own prompt" field
    assert html.count(">Page types<") <= 1
    assert "Or its own prompt" not in html and "Instead of an action" in html


# -- no "worker", no hard-coded "LLM" in what editors read (audit of issue 21, §3) ----------

PACKAGE = Path(__file__).resolve().parent.parent / "wagtail_llm_actions"
GETTEXT = {"_", "gettext", "gettext_lazy", "ngettext", "ngettext_lazy", "pgettext", "pgettext_lazy"}
TEMPLATE_MESSAGE = re.compile(
    r"{%\s*trans\s+\"([^\"]*)\"|{%\s*blocktrans[^%]*%}(.*?){%\s*endblocktrans", re.S
)
#: A word an editor should not read, and the feature named in code rather than by FEATURE_NAME
#: ("LiteLLM" is the library's name, for the administrator who picks a model string).
FORBIDDEN = re.compile(r"\bworkers?\b|\bLLM\b", re.I)


def messages_of_the_app():
    """Every translatable message of the app: gettext calls in Python, trans tags in
    templates (implicitly concatenated literals are one string in the syntax tree)."""
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = getattr(func, "id", None) or getattr(func, "attr", None)
            if name in GETTEXT:
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        yield f"{path.name}:{node.lineno}", arg.value
    for path in PACKAGE.rglob("*.html"):
        for match in TEMPLATE_MESSAGE.finditer(path.read_text()):
            text = match.group(1) or match.group(2)
            yield path.name, re.sub(r"<[^>]*>", "", text)  # not data-llm-… attributes


def test_no_message_of_the_app_says_worker_or_llm():
    found = [(where, text) for where, text in messages_of_the_app() if FORBIDDEN.search(text)]
    assert found == []


def test_the_job_page_and_the_editor_say_background_tasks_not_worker(job_waiting, editor):
    from wagtail_llm_actions.editor.leases import worker_lost_message
    from wagtail_llm_actions.editor.runs import editor_status

    client = client_for(editor)
    display = client.get(reverse("wagtail_llm_actions_jobs:status", args=[job_waiting.pk])).json()[
        "display"
    ]
    assert display["no_worker"]
    assert "has not started" in display["no_worker_message"]
    html = client.get(reverse("wagtail_llm_actions_jobs:detail", args=[job_waiting.pk]))
    notice = re.search(r"data-llm-no-worker[^>]*>(.*?)</div>", html.content.decode(), re.S)
    notice = re.sub(r"<[^>]*>", "", notice.group(1))
    item = job_waiting.items.first()
    texts = [
        display["no_worker_message"],
        notice,
        editor_status(item).message,  # stalled (older than the pickup timeout)
        editor_status(item, now=job_waiting.created_at).message,  # waiting
        worker_lost_message(True),
    ]
    for text in texts:
        assert "worker" not in str(text).lower(), text
    assert editor_status(item, now=job_waiting.created_at).message == "Waiting to start…"


@pytest.fixture
def job_waiting(make_post, action, editor, settings):
    import datetime

    from django.utils import timezone

    from wagtail_llm_actions import jobs
    from wagtail_llm_actions.models import LLMJob

    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "WORKER_PICKUP_TIMEOUT": 5}
    job = jobs.create_job(action, editor, [make_post().pk, make_post().pk])
    old = timezone.now() - datetime.timedelta(seconds=30)
    LLMJob.objects.filter(pk=job.pk).update(created_at=old)
    job.items.update(updated_at=old)
    job.refresh_from_db()
    return job


def test_the_jobs_empty_state_names_the_bulk_bar_button(settings, superuser, blog_index, post):
    client = client_for(superuser)
    for name in (None, "Assistant"):
        settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "FEATURE_NAME": name}
        button = re.search(
            r'class="bulk-actions-buttons".*?>\s*([^<>]*?action)\s*<',
            explorer(client, blog_index),
            re.S,
        )
        empty = client.get(reverse("wagtail_llm_actions_jobs:index")).content.decode()
        assert button is not None
        assert f"choose “{button.group(1).strip()}”" in empty


def test_menus_breadcrumbs_and_empty_states_use_the_features_name(
    settings, superuser, action, make_post, editor
):
    from wagtail_llm_actions import jobs

    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "FEATURE_NAME": "Assistant"}
    client = client_for(superuser)
    job = jobs.create_job(action, editor, [make_post().pk])
    screens = {
        "home": reverse("wagtailadmin_home"),
        "jobs": reverse("wagtail_llm_actions_jobs:index"),
        "job": reverse("wagtail_llm_actions_jobs:detail", args=[job.pk]),
        "queue": reverse("wagtail_llm_actions_review:queue", args=[job.pk]),
        "interactions": reverse("wagtail_llm_actions_report:index"),
        "prompts": reverse("wagtailsnippets_wagtail_llm_actions_llmprompt:list"),
    }
    pages = {name: client.get(url).content.decode() for name, url in screens.items()}
    assert "Assistant actions" in pages["home"] and "Assistant interactions" in pages["home"]
    assert "Assistant jobs" in pages["job"] and "Assistant jobs" in pages["queue"]
    assert "No Assistant interactions have been recorded yet." in pages["interactions"]
    for name, html in pages.items():
        visible = re.sub(r"<(script|style)\b.*?</\1>|<[^>]*>", " ", html, flags=re.S)
        visible = visible.replace(django_settings.WAGTAIL_SITE_NAME, "")  # the site's own name
        assert not re.search(r"\bLLM\b", visible), name
