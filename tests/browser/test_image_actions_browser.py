"""Issue 24 §1 in a real browser: the image edit view's button queues the run (progress at
once, no model call in the request), comes back to the image with the answer in its
description field, and the interaction page undoes it."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.browser import test_editor_browser
from tests.browser.test_queued_runs_browser import log_in
from tests.images import image_bytes, make_image

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

worker = test_editor_browser.worker  # the in-process django-q2 worker fixture


@pytest.fixture
def vision_action(make_action, fake_llm, api_key_env):
    from wagtail_llm_actions.models import LLMPrompt

    prompt = LLMPrompt.objects.create(name="Alt", slug="alt", template="Alt text for {filename}.")
    action = make_action(
        name="Alt text",
        slug="alt-text",
        source_kind="image",
        target_field="description",
        model="openai/gpt-4o-mini",
        api_base=fake_llm.url,
        api_key_name=api_key_env,
        prompt=prompt,
    )
    action.page_types.set([])
    return action


def test_the_image_edit_button_writes_the_description_and_undo_restores_it(
    live_server, browser_page, worker, vision_action, superuser, fake_llm
):
    page = browser_page
    fake_llm.configure(reply=lambda request_json: "Waves on a blue sea at dusk.", latency=1.5)
    image = make_image(name="sea.jpg", data=image_bytes(600, 400), description="old words")
    log_in(page, live_server)
    edit = reverse("wagtailimages:edit", args=[image.pk])
    page.goto(live_server.url + edit)

    page.locator('[data-llm-image-action="alt-text"]').click()
    page.locator("[data-llm-queued-run]").wait_for()  # progress at once, the model answering

    page.wait_for_url(re.compile(re.escape(edit) + "$"), timeout=30_000)
    assert "wrote the image's description" in page.locator(".messages").inner_text()
    assert page.locator("#id_description").input_value() == "Waves on a blue sea at dusk."
    request = fake_llm.last_request
    assert request["images"][0]["media_type"] == "image/jpeg"

    page.get_by_role("link", name="Details and undo").click()
    page.locator("[data-llm-undo]").click()
    page.locator(".messages").wait_for()
    assert "Undone" in page.locator(".messages").inner_text()
    image.refresh_from_db()
    assert image.description == "old words"
