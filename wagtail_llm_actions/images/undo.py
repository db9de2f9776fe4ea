"""Undo an image action's write: the image gets its previous value back, if the field still
holds the generated text (else it is refused with the reason, nothing changed)."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _

from .. import db, outputs
from ..exceptions import ActionNotAllowed, LLMActionError
from ..models import InteractionOutcome, LLMInteraction


class UndoRefused(LLMActionError):
    code = "undo_refused"


def image_of(interaction: LLMInteraction) -> Any | None:
    """The image ``interaction`` wrote to, or None (not an image run, or deleted)."""
    from wagtail.images import get_image_model

    model = get_image_model()
    content_type = interaction.content_type
    if content_type is None or content_type.model_class() is not model:
        return None
    return model.objects.filter(pk=interaction.object_id).first()


def undo_problem(interaction: LLMInteraction, image: Any | None = None) -> str | None:
    """Why ``interaction``'s write cannot be undone now, or None when it can."""
    if interaction.outcome == InteractionOutcome.UNDONE:
        return _("This answer was undone already.")
    if interaction.outcome != InteractionOutcome.WRITTEN:
        return _("Only an answer written to an image can be undone here.")
    image = image if image is not None else image_of(interaction)
    if image is None:
        return _("The image was deleted.")
    current = outputs.read_field_value(image, interaction.target_field)
    if current != interaction.output_value:
        return _(
            "The image's %(field)s was changed since the answer was written, so it is kept "
            "as it is now."
        ) % {"field": interaction.target_field}
    return None


def undo(interaction: LLMInteraction, user=None) -> Any:
    """Put the previous value back into the image ``interaction`` wrote (its row locked);
    raises :class:`UndoRefused` with the reason, or ActionNotAllowed. Returns the image."""
    from .run import can_change

    def restore() -> Any:
        locked = LLMInteraction.objects.select_for_update().get(pk=interaction.pk)
        image = image_of(locked)
        if image is not None:
            image = type(image).objects.select_for_update().get(pk=image.pk)
            if user is not None and not can_change(user, image):
                raise ActionNotAllowed()
        problem = undo_problem(locked, image)
        if problem:
            raise UndoRefused(problem)
        outputs.set_output_value(image, locked.target_field, locked.previous_value)
        image.save(update_fields=[locked.target_field])
        locked.outcome = InteractionOutcome.UNDONE
        locked.save(update_fields=["outcome"])
        interaction.outcome = locked.outcome
        return image

    return db.write(restore, what="undoing an image write")


def undo_job(job, user=None) -> tuple[int, int]:
    """Undo every image write of ``job`` that can still be undone (each on its own, as
    :func:`undo`); returns how many were undone and how many were kept (changed since,
    deleted, or not allowed)."""
    from ..exceptions import ActionNotAllowed as NotAllowed

    ids = job.items.exclude(interaction=None).values_list("interaction_id", flat=True)
    undone = kept = 0
    for interaction in LLMInteraction.objects.filter(
        pk__in=list(ids), outcome=InteractionOutcome.WRITTEN
    ).order_by("pk"):
        try:
            undo(interaction, user)
        except (UndoRefused, NotAllowed):
            kept += 1
        else:
            undone += 1
    return undone, kept


def job_writes(job) -> int:
    """How many of ``job``'s image writes still stand (outcome "written")."""
    ids = job.items.exclude(interaction=None).values("interaction_id")
    return LLMInteraction.objects.filter(pk__in=ids, outcome=InteractionOutcome.WRITTEN).count()
