"""Image actions in bulk (issue 24 §1): a job over images, one write per image, resumed
from stored answers, with an estimate; the command's ``--images``."""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command

from tests.images import image_bytes, make_image
from wagtail_llm_actions import jobs
from wagtail_llm_actions.models import InteractionOutcome, LLMInteraction, LLMJobItem

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_renditions")]


def written(image) -> int:
    return LLMInteraction.objects.filter(
        content_type=ContentType.objects.get_for_model(image),
        object_id=str(image.pk),
        outcome=InteractionOutcome.WRITTEN,
    ).count()


def test_a_job_over_images_writes_each_once_and_skips_unchanged_on_a_second_run(
    image_action, superuser
):
    images = [
        make_image(name=f"photo-{i}.png", data=image_bytes(64, 48, fmt="PNG")) for i in range(5)
    ]
    plan = jobs.plan_image_job(image_action, superuser, [i.pk for i in images] + [99999])
    assert (plan.total, plan.eligible, plan.skipped) == (6, 5, {"deleted": 1})
    assert plan.estimate.pages == 5 and plan.estimate.prompt_tokens > 5 * 1000

    job = jobs.create_image_job(image_action, superuser, [i.pk for i in images])
    jobs.run_job(job.pk)

    assert set(job.items.values_list("status", flat=True)) == {"succeeded"}
    for image in images:
        image.refresh_from_db()
        assert image.description == "A 64×48 image, mostly blue: photo"
        assert written(image) == 1
    again = jobs.create_image_job(image_action, superuser, [i.pk for i in images])
    jobs.run_job(again.pk)
    assert set(again.items.values_list("skip_reason", flat=True)) == {"unchanged"}
    assert all(written(image) == 1 for image in images)


def test_an_answer_stored_before_a_worker_died_is_written_without_a_new_call(
    image_action, superuser, monkeypatch
):
    """The state a worker killed between storing the answer and writing the image leaves:
    the item is running with its answered interaction; the next claim writes it, no call."""
    from wagtail_llm_actions.images import run as image_run
    from wagtail_llm_actions.models import InteractionStatus, ItemStatus

    image = make_image(description="before")
    job = jobs.create_image_job(image_action, superuser, [image.pk])
    item = job.items.get()

    def die(interaction, image, on_success=None):
        raise SystemExit("worker killed")

    monkeypatch.setattr(image_run, "write", die)
    with pytest.raises(SystemExit):
        jobs.run_job(job.pk)
    monkeypatch.undo()
    item.refresh_from_db()
    stored = item.interaction
    assert stored.status == InteractionStatus.ANSWERED
    image.refresh_from_db()
    assert image.description == "before"

    # The lease runs out: the item is claimed again.
    LLMJobItem.objects.filter(pk=item.pk).update(status=ItemStatus.QUEUED, claimed_by="")
    calls = []
    real = image_run.call
    monkeypatch.setattr(image_run, "call", lambda *a, **k: calls.append(1) or real(*a, **k))
    jobs.run_job(job.pk)

    item.refresh_from_db()
    assert item.status == "succeeded" and item.result["from_stored_answer"] is True
    assert calls == []
    image.refresh_from_db()
    assert image.description == stored.output_value
    assert written(image) == 1


def test_the_command_runs_an_image_action_on_all_images(image_action, superuser, capsys):
    images = [
        make_image(name=f"leaf-{i}.jpg", data=image_bytes(80, 80, (40, 170, 60))) for i in range(3)
    ]
    call_command("run_llm_action", "alt-text", "--images", "--all", "--user", superuser.username)
    for image in images:
        image.refresh_from_db()
        assert image.description == "A 80×80 image, mostly green: leaf"
    out = capsys.readouterr().out
    assert "3" in out


def test_an_upload_triggered_action_writes_alt_text_for_new_images_only(image_action, superuser):
    from django.core.exceptions import ValidationError

    from wagtail_llm_actions.models import JobKind, LLMJob

    image_action.trigger = "on_image_upload"
    image_action.full_clean()
    image_action.save()
    image = make_image(name="new-upload.jpg", uploaded_by_user=superuser)
    job = LLMJob.objects.get(kind=JobKind.TRIGGER)
    jobs.run_job(job.pk)
    image.refresh_from_db()
    assert image.description == "A 400×300 image, mostly blue: new upload"
    assert LLMInteraction.objects.get().trigger == "on_image_upload"

    image.title = "Edited"
    image.save()  # an edit is not an upload
    assert LLMJob.objects.count() == 1

    image_action.trigger = "on_publish"
    with pytest.raises(ValidationError, match="only when an image is uploaded"):
        image_action.full_clean()


def test_a_forced_image_job_asks_the_model_again_not_the_response_cache(image_action, superuser):
    """``force`` means the same on every path: a forced page job asks the model, and so does
    a forced image job (it took the response cache's answer)."""
    image_action.use_cache = True
    image_action.save()
    image = make_image(name="photo.png", data=image_bytes(64, 48, fmt="PNG"))
    jobs.run_job(jobs.create_image_job(image_action, superuser, [image.pk]).pk)
    forced = jobs.create_image_job(image_action, superuser, [image.pk], force=True)
    jobs.run_job(forced.pk)
    assert forced.items.get().status == "succeeded"
    assert list(LLMInteraction.objects.order_by("pk").values_list("cached", flat=True)) == [
        False,
        False,
    ]


def test_the_command_on_one_image_with_force_asks_the_model_again(image_action, superuser):
    image_action.use_cache = True
    image_action.save()
    image = make_image(name="photo.png", data=image_bytes(64, 48, fmt="PNG"))
    call_command("run_llm_action", "alt-text", "--image", str(image.pk))
    image.description = "A person's own words"  # no longer the answer: runs again
    image.save()
    for args in ((), ("--force",)):
        call_command("run_llm_action", "alt-text", "--image", str(image.pk), *args)
    assert list(LLMInteraction.objects.order_by("pk").values_list("cached", flat=True)) == [
        False,
        True,  # the same request again: the cache's answer
        False,  # --force: the model's
    ]


def test_the_command_on_one_image_skips_it_unchanged_as_an_image_job_does(
    image_action, superuser, capsys
):
    """``--image`` applies the rule of image jobs: an image whose field still holds the
    action's last answer is skipped, saying so and that ``--force`` runs it."""
    image = make_image(name="photo.png", data=image_bytes(64, 48, fmt="PNG"))
    call_command("run_llm_action", "alt-text", "--image", str(image.pk))
    assert written(image) == 1
    capsys.readouterr()

    call_command("run_llm_action", "alt-text", "--image", str(image.pk))
    out = capsys.readouterr().out
    assert f"Image {image.pk} “Sunset”: skipped, unchanged" in out
    assert "--force runs it" in out
    assert written(image) == 1 and LLMInteraction.objects.count() == 1  # no call
    job = jobs.create_image_job(image_action, superuser, [image.pk])
    jobs.run_job(job.pk)
    assert job.items.get().skip_reason == "unchanged"  # the job agrees

    call_command("run_llm_action", "alt-text", "--image", str(image.pk), "--force")
    assert written(image) == 2

    image.description = "Edited by a person"
    image.save()
    call_command("run_llm_action", "alt-text", "--image", str(image.pk))
    assert written(image) == 3  # the field no longer holds the answer: it runs
    image.refresh_from_db()
    assert image.description == "A 64×48 image, mostly blue: photo"
