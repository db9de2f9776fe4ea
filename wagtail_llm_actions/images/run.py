"""Run an image action on one image: send a rendition, write the answer to the image's own
field. Images keep no revisions, so this is the one place the app writes without a draft:
the previous value is recorded on the interaction, and :mod:`.undo` puts it back.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from django.utils.translation import gettext as _

from .. import db, outputs
from ..conf import get_setting
from ..exceptions import (
    ActionNotAllowed,
    ActionNotApplicable,
    CallNotStarted,
    ConfigurationProblem,
    LLMActionError,
)
from ..models import InteractionOutcome, InteractionStatus, InteractionTrigger, LLMAction
from ..models import LLMInteraction as Interaction
from ..run import drafts, recording
from ..run.calls.common import call, refuse_cut_answer
from . import files
from .messages import for_the_log, image_messages, no_vision

logger = logging.getLogger(__name__)


def can_change(user, image: Any) -> bool:
    """Whether ``user`` may edit ``image`` (Wagtail's image permission policy)."""
    from wagtail.images import get_image_model
    from wagtail.permissions import policy_registry

    permission_policy = policy_registry.get_by_type(get_image_model())

    return permission_policy.user_has_permission_for_instance(user, "change", image)


def check(action: LLMAction, image: Any, user=None) -> None:
    """Raise if ``action`` may not run on ``image`` for ``user`` (None: no user check)."""
    if not action.enabled:
        raise ActionNotApplicable(_("The action “%s” is disabled.") % action.name)
    if not action.runs_on_images:
        raise ActionNotApplicable(_("The action “%s” runs on pages, not on images.") % action.name)
    if user is not None and not can_change(user, image):
        raise ActionNotAllowed()


def run_on_image(
    action: LLMAction,
    image: Any,
    user=None,
    *,
    trigger: str = InteractionTrigger.API,
    on_answer: Callable[[Interaction], None] | None = None,
    on_success: Callable[[Interaction], None] | None = None,
    call_slot: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> Interaction:
    """Run ``action`` on ``image``, write the answer to its target field and return the
    interaction (outcome "written"). Raises an ``LLMActionError`` (recorded, nothing
    written) for a refused model, an unusable image, a provider error or a refused answer.

    As a page's run does, the paid answer is first committed to the interaction (status
    "answered", ``on_answer(interaction)`` in that transaction), then written by
    :func:`write`; ``on_success(interaction)`` runs in the transaction that writes the image
    (the job engine finishes its item there: one write per item, or none)."""
    check(action, image, user)
    field = action.target_field
    interaction = recording.new_interaction(action, image, user, trigger, None)
    started = time.perf_counter()
    try:
        if action.vision_support() is False:
            raise no_vision(action)
        picture = files.picture(image, action.image_size, action.image_format)
        messages = image_messages(action, image, picture)
        interaction.messages = for_the_log(messages, picture)
        interaction.previous_value = outputs.read_field_value(image, field)
        max_chars = outputs.answer_max_chars(type(image), field)
        with call_slot() if call_slot is not None else contextlib.nullcontext():
            try:
                call(action, messages, interaction, max_chars=max_chars)
            finally:
                interaction.messages = for_the_log(messages, picture)
        refuse_cut_answer(action, interaction)
        truncate = bool(get_setting("TRUNCATE_LONG_OUTPUT"))
        scratch = type(image)(**{field: interaction.previous_value})
        interaction.output_value = outputs.apply_output(
            scratch, field, interaction.response_text, action.output_mode, truncate=truncate
        )
        store(interaction, on_answer)
    except CallNotStarted:
        raise
    except Exception as e:
        error = recording.fail(interaction, recording.run_error(action, image, e), started)
        if error is e:
            raise
        raise error from e
    write(interaction, image, on_success)
    logger.info("LLM action %s wrote %s of image %s", action.slug, field, image.pk)
    return interaction


def store(interaction: Interaction, on_answer: Callable[[Interaction], None] | None) -> None:
    """Commit the paid answer (status "answered") before the image is written; the
    ``answer_stored`` signal is sent, as for a page's answer."""
    from ..service import LLMService

    drafts.store_answer(interaction, on_answer, sender=LLMService)


def write(
    interaction: Interaction,
    image: Any,
    on_success: Callable[[Interaction], None] | None = None,
) -> Interaction:
    """Write the stored answer of ``interaction`` (status "answered") to the image, its row
    locked, and record it, in one transaction; no model is called. If that fails the
    answer stays stored ("answered", with the error) and the error is raised."""
    field = interaction.target_field
    model = type(image)
    value = interaction.output_value

    def save() -> None:
        row = model.objects.select_for_update().filter(pk=image.pk).first()
        if row is None:
            raise ConfigurationProblem(_("The image was deleted; nothing was written."))
        interaction.previous_value = outputs.read_field_value(row, field)
        outputs.set_output_value(row, field, value)
        # One column, as ``save(update_fields=[field])`` would write it, but without the
        # search-index update Wagtail runs on save: on PostgreSQL that update rewrites
        # other images' index rows and deadlocks with concurrent writes (see reindex).
        model.objects.filter(pk=row.pk).update(**{field: getattr(row, field)})
        setattr(image, field, getattr(row, field))
        interaction.status = InteractionStatus.SUCCESS
        interaction.outcome = InteractionOutcome.WRITTEN
        interaction.error_code = interaction.error_message = ""
        recording.detach_deleted(interaction)
        interaction.save()
        if on_success is not None:
            on_success(interaction)

    previous = interaction.previous_value
    try:
        db.write(save, what="writing an image's field")
    except Exception as e:
        error = write_error(e, image)
        interaction.status = InteractionStatus.ANSWERED
        interaction.outcome = InteractionOutcome.NONE
        interaction.previous_value = previous
        interaction.error_code, interaction.error_message = error.code, error.message
        db.write(interaction.save, what="recording an image write that failed")
        error.interaction = interaction
        if error is e:
            raise
        raise error from e
    reindex(image)
    return interaction


def reindex(image: Any) -> None:
    """Update the search index of a written image, in its own transaction after the write.

    Wagtail's PostgreSQL search backend refreshes the title weights of every new index entry
    whenever one is added, so index updates inside concurrent image writes deadlock each
    other. Here a deadlock is retried, and an index that still fails is logged: the image
    is written either way, and ``manage.py update_index`` brings the index up to date."""
    from wagtail.search import index

    model = type(image)
    if not index.class_is_indexed(model):
        return

    def update() -> None:
        row = model.objects.filter(pk=image.pk).first()
        if row is not None:
            index.insert_or_update_object(row)

    try:
        db.write(update, what="updating an image's search index")
    except Exception:
        logger.exception("The search index of image %s could not be updated", image.pk)


def write_error(error: Exception, image: Any) -> LLMActionError:
    """What a failed write of an image reports (the error itself if it is ours)."""
    if isinstance(error, LLMActionError):
        return error
    logger.exception("Writing image %s failed", image.pk)
    return LLMActionError(
        _(
            "The answer could not be written to the image (%(type)s); it is kept in the "
            "log and the image was not changed."
        )
        % {"type": type(error).__name__},
        code="write_failed",
    )
