"""Image actions in the admin: run one from the image's edit view (queued, as the editor's
runs are: no model call in the request), and undo an answer written to an image."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST
from wagtail.admin import messages

from .. import queued_runs
from ..exceptions import LLMActionError
from ..models import InteractionOutcome, LLMAction, LLMInteraction


def image_actions_for(user, image) -> list[LLMAction]:
    """The enabled image actions ``user`` may run on ``image`` (none without edit rights)."""
    from ..images.run import can_change

    if not can_change(user, image):
        return []
    return list(LLMAction.objects.filter(enabled=True, source_kind="image").order_by("name"))


def edit_url(image_id) -> str:
    return reverse("wagtailimages:edit", args=[image_id])


@require_POST
def run(request, image_id: int, action_id: int):
    """Queue ``action`` on the image; the progress page (back to the image if refused)."""
    from wagtail.images import get_image_model

    from ..images.run import can_change, check
    from .queued_runs import enqueue

    image = get_object_or_404(get_image_model(), pk=image_id)
    if not can_change(request.user, image):
        raise PermissionDenied
    action = get_object_or_404(LLMAction, pk=action_id)
    try:
        check(action, image, request.user)
    except LLMActionError as e:
        messages.error(request, e.message)
        return redirect(edit_url(image.pk))
    job = queued_runs.create_job(
        queued_runs.KIND_IMAGE, request.user, page=None, action=action, target=image
    )
    return enqueue(request, job) or redirect(edit_url(image.pk))


def image_run_done(request, item, status):
    """Where a finished image run goes: back to the image, saying what was written."""
    target = edit_url(item.target_id)
    if status.state == "succeeded":
        interaction = item.interaction
        messages.success(
            request,
            _("“%(action)s” wrote the image's %(field)s: “%(value)s”.")
            % {
                "action": item.job.action_name,
                "field": interaction.target_field if interaction else "",
                "value": interaction.output_value if interaction else "",
            },
            buttons=[
                messages.button(
                    reverse("wagtail_llm_actions_report:detail", args=[interaction.pk]),
                    _("Details and undo"),
                )
            ]
            if interaction is not None
            else None,
        )
    elif status.state == "cancelled":
        messages.warning(request, _("Cancelled: nothing was written."))
    else:
        messages.error(request, status.message)
    return redirect(target)


@require_POST
def undo(request, interaction_id: int):
    """Put the image's previous value back (refused, with the reason, if it changed since)."""
    from ..images.undo import undo as undo_write
    from .interactions import undo_direct_write

    return undo_direct_write(
        request,
        interaction_id,
        undo_write,
        lambda interaction: (
            _("Undone: the image's %(field)s is “%(value)s” again.")
            % {"field": interaction.target_field, "value": interaction.previous_value}
        ),
    )


def image_write_context(interaction: LLMInteraction, user) -> dict | None:
    """For the interaction page: the image an image action wrote to, and whether (and why
    not) the write can be undone; None for other interactions."""
    from ..images.run import can_change
    from ..images.undo import image_of, undo_problem

    if interaction.outcome not in (InteractionOutcome.WRITTEN, InteractionOutcome.UNDONE):
        return None
    image = image_of(interaction)
    problem = undo_problem(interaction, image)
    allowed = image is not None and can_change(user, image)
    return {
        "image": image,
        "edit_url": edit_url(image.pk) if allowed else "",
        "can_undo": allowed and problem is None,
        "problem": problem,
    }


@require_POST
def undo_job(request, job_id: int):
    """Undo a finished image job's writes that still stand; say how many were kept."""
    from ..images.undo import undo_job as undo_writes
    from .jobs import get_job_for, job_url

    job = get_job_for(request, job_id, manage=True)
    undone, kept = undo_writes(job, request.user)
    message = ngettext("Undone on %(count)s image.", "Undone on %(count)s images.", undone) % {
        "count": undone
    }
    if kept:
        message += " " + ngettext(
            "%(count)s image was kept as it is: changed since, or not yours to edit.",
            "%(count)s images were kept as they are: changed since, or not yours to edit.",
            kept,
        ) % {"count": kept}
    messages.success(request, message)
    return redirect(job_url(job.pk))


def image_job_context(job, user, may_manage: bool, running: bool) -> dict:
    """For the job page: whether it is an image job, and whether its writes can be undone."""
    from ..images.undo import job_writes

    image_job = (job.options or {}).get("targets") == "images"
    return {
        "image_job": image_job,
        "image_writes": job_writes(job) if image_job and may_manage and not running else 0,
    }
