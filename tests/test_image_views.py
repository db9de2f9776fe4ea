"""Image actions in the admin: the button in the image's edit view queues the run (no model
call in the request), the answer is written to the image, and the interaction page undoes it."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.images import image_bytes, make_image
from tests.queued import finish_queued
from wagtail_llm_actions.models import InteractionOutcome, LLMInteraction

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_renditions")]


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


def bulk_url(images) -> str:
    url = reverse("wagtail_bulk_action", args=("wagtailimages", "image", "run_llm_image_action"))
    next_url = reverse("wagtailimages:index")
    return url + f"?next={next_url}&" + "&".join(f"id={image.pk}" for image in images)


def test_the_image_listing_bulk_action_estimates_then_runs_a_job(image_action, superuser):
    from wagtail_llm_actions import jobs
    from wagtail_llm_actions.models import LLMJob
    from wagtail_llm_actions.views.jobs import job_url

    images = [make_image(name=f"sky-{i}.jpg") for i in range(3)]
    client = client_for(superuser)
    url = bulk_url(images)

    html = client.get(url).content.decode()
    assert f'<option value="{image_action.pk}">Alt text</option>' in html
    preview = client.post(url, {"action": image_action.pk, "preview": "1"}).content.decode()
    assert "3 images will run" in preview and "data-llm-estimate-tokens" in preview
    assert not LLMJob.objects.exists()

    response = client.post(url, {"action": image_action.pk}, follow=True)
    assert "started on 3 image(s)" in response.content.decode()
    job = LLMJob.objects.get()
    jobs.run_job(job.pk)
    for image in images:
        image.refresh_from_db()
        assert image.description == "A 400×300 image, mostly blue: sky"
    html = client.get(job_url(job.pk)).content.decode()
    assert f"Image {images[0].pk}" in html


def test_the_job_page_undoes_a_jobs_image_writes_keeping_those_changed_since(
    image_action, superuser
):
    from wagtail_llm_actions import jobs
    from wagtail_llm_actions.views.jobs import job_url

    images = [make_image(name=f"stone-{i}.jpg", description=f"before {i}") for i in range(3)]
    job = jobs.create_image_job(image_action, superuser, [i.pk for i in images])
    jobs.run_job(job.pk)
    edited = images[0]
    edited.refresh_from_db()
    edited.description = "fixed by hand"
    edited.save()
    client = client_for(superuser)

    html = client.get(job_url(job.pk)).content.decode()
    assert "Undo the writes to 3 images" in html and "data-llm-job-review" not in html
    response = client.post(
        reverse("wagtail_llm_actions_images:undo_job", args=[job.pk]), follow=True
    )

    html = response.content.decode()
    assert "Undone on 2 images." in html and "1 image was kept as it is" in html
    descriptions = [type(i).objects.get(pk=i.pk).description for i in images]
    assert descriptions == ["fixed by hand", "before 1", "before 2"]


def test_the_report_lists_image_runs(image_action, superuser):
    from wagtail_llm_actions.images.run import run_on_image

    run_on_image(image_action, make_image(), superuser)
    response = client_for(superuser).get(reverse("wagtail_llm_actions_report:index"))
    assert response.status_code == 200 and "Alt text" in response.content.decode()


def image_world(world) -> None:
    """For the permission matrix (test_permissions): an image action, an image, a write to
    it by the superuser and an image job of the superuser's, in ``world.extras``."""
    from django.core.cache import caches

    from wagtail_llm_actions import jobs
    from wagtail_llm_actions.images.run import run_on_image
    from wagtail_llm_actions.models import LLMAction, LLMPrompt

    caches["default"].clear()
    superuser = world.users["superuser"]
    prompt = LLMPrompt.objects.create(name="Alt", slug="alt", template="Alt for {filename}.")
    action = LLMAction.objects.create(
        name="Alt text",
        slug="alt-text",
        source_kind="image",
        target_field="description",
        model="local/vision",
        prompt=prompt,
    )
    image = make_image(name="matrix.jpg")
    job_image = make_image(name="matrix-job.jpg")
    job = jobs.create_image_job(action, superuser, [job_image.pk])
    jobs.run_job(job.pk)
    world.extras.update(
        image=image,
        image_action=action,
        image_interaction=run_on_image(action, image, superuser),
        image_job=job,
    )
