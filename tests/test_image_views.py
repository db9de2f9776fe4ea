"""Image actions in the admin: the button in the image's edit view queues the run (no model
call in the request), the answer is written to the image, and the interaction page undoes it."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.images import image_bytes, make_image
from tests.queued import finish_queued
from wagtail_llm_actions.models import InteractionOutcome, LLMInteraction

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_renditions():
    from django.core.cache import caches

    caches["default"].clear()


@pytest.fixture
def image_action(make_action):
    from wagtail_llm_actions.models import LLMPrompt

    prompt = LLMPrompt.objects.create(name="Alt", slug="alt", template="Alt text for {filename}.")
    action = make_action(
        name="Alt text",
        slug="alt-text",
        source_kind="image",
        target_field="description",
        model="local/vision",
        prompt=prompt,
    )
    action.page_types.set([])
    return action


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_edit_view_button_queues_the_run_and_the_answer_is_written(image_action, superuser):
    image = make_image(name="green-field.jpg", data=image_bytes(300, 200, (40, 170, 60)))
    client = client_for(superuser)

    html = client.get(reverse("wagtailimages:edit", args=[image.pk])).content.decode()
    run_url = reverse("wagtail_llm_actions_images:run", args=[image.pk, image_action.pk])
    assert f'action="{run_url}"' in html and 'data-llm-image-action="alt-text"' in html

    response = client.post(run_url)
    image.refresh_from_db()
    assert image.description == ""  # queued: nothing ran in the request
    done = finish_queued(client, response)

    assert done["Location"] == reverse("wagtailimages:edit", args=[image.pk])
    image.refresh_from_db()
    assert image.description == "A 300×200 image, mostly green: green field"
    interaction = LLMInteraction.objects.get(outcome=InteractionOutcome.WRITTEN)
    assert interaction.trigger == "image_editor"


def test_the_interaction_page_undoes_an_image_write(image_action, superuser):
    from wagtail_llm_actions.images.run import run_on_image

    image = make_image(description="a person wrote this")
    interaction = run_on_image(image_action, image, superuser)
    client = client_for(superuser)
    detail = reverse("wagtail_llm_actions_report:detail", args=[interaction.pk])

    html = client.get(detail).content.decode()
    assert "data-llm-undo" in html and "images keep no revisions" in html

    response = client.post(
        reverse("wagtail_llm_actions_images:undo", args=[interaction.pk]), follow=True
    )
    assert "Undone" in response.content.decode()
    image.refresh_from_db()
    assert image.description == "a person wrote this"
    html = client.get(detail).content.decode()
    assert "data-llm-undo" not in html and "undone already" in html


def test_users_who_cannot_edit_the_image_see_no_button_and_cannot_run(image_action, non_admin):
    image = make_image()
    client = client_for(non_admin)
    response = client.post(
        reverse("wagtail_llm_actions_images:run", args=[image.pk, image_action.pk])
    )
    assert response.status_code in (302, 403)
    assert not LLMInteraction.objects.exists()
