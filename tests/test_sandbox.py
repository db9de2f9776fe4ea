"""The sandbox: re-running load_demo_data never overwrites the demo actions; the port check."""

from __future__ import annotations

import io
import os
import socket
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command

from wagtail_llm_actions.models import LLMAction

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_rerunning_load_demo_data_keeps_edits_to_the_demo_actions(monkeypatch):
    monkeypatch.delenv("LLM_ACTIONS_MODEL", raising=False)
    call_command("load_demo_data", stdout=io.StringIO())
    # three on pages, "Alt text" on images, "Summarize tip" on the Tip snippets
    assert LLMAction.objects.count() == 5
    LLMAction.objects.filter(slug="generate-summary").update(
        model="openai/gpt-4o-mini", context_message="My own style guide."
    )
    LLMAction.objects.filter(slug="suggest-tags").delete()

    call_command("load_demo_data", stdout=io.StringIO())
    summary = LLMAction.objects.get(slug="generate-summary")
    assert (summary.model, summary.context_message) == ("openai/gpt-4o-mini", "My own style guide.")
    assert LLMAction.objects.filter(slug="suggest-tags").exists()  # what was missing is back

    call_command("load_demo_data", "--reset-actions", stdout=io.StringIO())
    assert LLMAction.objects.get(slug="generate-summary").model == "local/extractive"


@pytest.mark.django_db
def test_the_demo_images_get_alt_text_offline(monkeypatch):
    from wagtail.images import get_image_model

    monkeypatch.delenv("LLM_ACTIONS_VISION_MODEL", raising=False)
    call_command("load_demo_data", stdout=io.StringIO())
    call_command("run_llm_action", "alt-text", "--images", "--all", stdout=io.StringIO())
    door = get_image_model().objects.get(title="Red library door")
    assert door.description.startswith("A 1024×640 image, mostly ")
    assert door.description.endswith(": red library door")


def test_sandbox_script_stops_at_once_when_the_port_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            ["bash", str(ROOT / "scripts" / "sandbox.sh")],
            env={**os.environ, "PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode != 0
    assert f"Port {port} is already in use" in result.stderr
    assert f"PORT={port + 1} ./scripts/sandbox.sh" in result.stderr


@pytest.mark.django_db
def test_the_demo_shows_translation_with_no_key(monkeypatch):
    from blog.models import BlogPage
    from wagtail.models import Locale

    from tests.translation_site import i18n

    monkeypatch.delenv("LLM_ACTIONS_MODEL", raising=False)
    with i18n():
        call_command("load_demo_data", stdout=io.StringIO())
        call_command("load_demo_data", stdout=io.StringIO())  # again: nothing doubled
    action = LLMAction.objects.get(slug="translate")
    assert action.model == "local/translate" and action.translates
    german = BlogPage.objects.get(locale=Locale.objects.get(language_code="de"))
    assert not german.live
    draft = german.get_latest_revision_as_object()
    assert draft.title.startswith("[de] ")


@pytest.mark.django_db
def test_the_demo_snippets_get_summaries_offline():
    from blog.models import Tip

    call_command("load_demo_data", stdout=io.StringIO())
    out = io.StringIO()
    call_command("run_llm_action", "summarize-tip", "--model", "blog.Tip", "--all", stdout=out)
    tip = Tip.objects.get(title="Water in the morning")
    assert tip.summary == ""  # the live snippet is unchanged
    assert "morning" in tip.get_latest_revision_as_object().summary
