"""``run_llm_action`` for actions that run on images: ``--image ID`` here and now, or
``--images --all`` as a job on the bulk engine (foreground with progress, or ``--enqueue``).
Answers are written to the images' own fields (images keep no revisions). Both skip an
unchanged image (its field still holds this action's last answer written to it) unless
``--force``, by the rule image jobs apply (:func:`wagtail_llm_actions.jobs.images.unchanged`)."""

from __future__ import annotations

from django.core.management.base import CommandError
from django.utils.translation import gettext as _

from wagtail_llm_actions import jobs
from wagtail_llm_actions.exceptions import LLMActionError
from wagtail_llm_actions.formatting import format_cost
from wagtail_llm_actions.models import InteractionTrigger, JobKind, LLMAction


def run(command, action: LLMAction, user, options) -> None:
    """Run ``action`` on the images ``options`` select (see the module's docstring)."""
    from wagtail.images import get_image_model

    if not action.runs_on_images:
        raise CommandError(f"The action “{action.slug}” runs on pages, not images.")
    if options["dry_run"]:
        raise CommandError("--dry-run shows pages' messages; it is not available for images.")
    if options["image"] is not None:
        image = get_image_model().objects.filter(pk=options["image"]).first()
        if image is None:
            raise CommandError(f"No image with id {options['image']}.")
        run_one(command, action, image, user, force=options["force"])
        return
    if not (options["images"] and options["all"]):
        raise CommandError(
            f"The action “{action.slug}” runs on images: use --images --all, or --image ID."
        )
    ids = list(get_image_model().objects.order_by("pk").values_list("pk", flat=True))
    if not ids:
        raise CommandError("No images to run on.")
    plan = jobs.plan_image_job(action, user, ids)
    estimate = plan.estimate
    command.stdout.write(
        f"{plan.eligible} image(s) to run; estimate: {estimate.total_tokens} tokens, "
        f"{format_cost(estimate.cost, unknown='unknown')}"
    )
    job = jobs.create_image_job(
        action,
        user,
        ids,
        force=options["force"],
        kind=JobKind.COMMAND,
        trigger=InteractionTrigger.COMMAND,
    )
    command.follow_job(job, options, action.name)


def run_one(command, action: LLMAction, image, user, *, force: bool = False) -> None:
    """One image, here and now. Skipped when unchanged (the rule of image jobs: its field
    still holds this action's last answer written to it) unless ``force``; ``--force`` asks
    the model again, never the response cache, as a forced job does."""
    from wagtail_llm_actions import response_cache
    from wagtail_llm_actions.images.run import run_on_image
    from wagtail_llm_actions.jobs.images import unchanged

    if not force and unchanged(action, image):
        command.stdout.write(
            _(
                "Image %(id)s “%(title)s”: skipped, unchanged: its field still holds this "
                "action’s last answer (--force runs it)."
            )
            % {"id": image.pk, "title": image.title}
        )
        return
    try:
        with response_cache.bypassed(force):
            interaction = run_on_image(action, image, user, trigger=InteractionTrigger.COMMAND)
    except LLMActionError as e:
        raise CommandError(f"Image {image.pk} “{image.title}”: {e}") from e
    command.stdout.write(
        command.style.SUCCESS(
            f"Image {image.pk} “{image.title}”: {interaction.target_field} = "
            f"{interaction.output_value!r} (was {interaction.previous_value!r})"
        )
    )
