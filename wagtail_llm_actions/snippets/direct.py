"""Writing an answer into a snippet that keeps no revisions (an action's explicit opt-in,
``LLMAction.writes_directly``), and undoing that write.

As for a draft, the paid answer is committed first (:func:`..run.drafts.store_answer`); then,
in one transaction holding the snippet's row lock, the row is read again, the values it holds
are recorded on the interaction (``previous_value``/``previous_values``), the answer's fields
are set and the row saved (outcome "written"), with a history entry. :func:`undo` puts the
previous values back if every written field still holds the answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.utils.translation import gettext as _

from .. import db, outputs
from ..exceptions import ActionNotAllowed, LLMActionError, PageGone
from ..models import InteractionOutcome, InteractionStatus, LLMAction, LLMInteraction
from ..run import drafts, recording
from ..run.access import reload_user
from . import can_change

logger = logging.getLogger(__name__)


class UndoRefused(LLMActionError):
    code = "undo_refused"


def snippet_gone() -> PageGone:
    return PageGone(
        _("The snippet was deleted while the model was answering. The answer is kept in this log.")
    )


def written(interaction: LLMInteraction) -> dict[str, Any]:
    """Field → value the answer writes (every mapped field, or the target field)."""
    if interaction.output_values:
        return dict(interaction.output_values)
    return {interaction.target_field: interaction.output_value}


def previous(interaction: LLMInteraction) -> dict[str, Any]:
    """Field → value the write replaced."""
    if interaction.output_values:
        return dict(interaction.previous_values or {})
    return {interaction.target_field: interaction.previous_value}


def write(
    interaction: LLMInteraction,
    obj: Any,
    user,
    action: LLMAction,
    *,
    on_answer: Callable[[LLMInteraction], None] | None = None,
    on_success: Callable[[LLMInteraction], None] | None = None,
    sender: type | None = None,
) -> LLMInteraction:
    """Store the answer (``answer_stored`` sent by ``sender``; None: stored already), then
    write it into the snippet's row."""
    if sender is not None:
        drafts.store_answer(interaction, on_answer, sender=sender)
    model = type(obj)

    def save() -> None:
        row = model._default_manager.select_for_update().filter(pk=obj.pk).first()
        if row is None:
            raise snippet_gone()
        current_user = reload_user(user)
        if user is not None and (current_user is None or not can_change(current_user, row)):
            raise ActionNotAllowed(_("You do not have permission to edit this snippet."))
        drafts._set_stored([(interaction, interaction.target_field)], row)
        drafts.validate_draft(row)
        row.save()
        interaction.status = InteractionStatus.SUCCESS
        interaction.outcome = InteractionOutcome.WRITTEN
        interaction.error_code = interaction.error_message = ""
        recording.detach_deleted(interaction)
        interaction.save()
        if on_success is not None:
            on_success(interaction)
        recording.log_generated(row, user, None, action, interaction)

    try:
        db.write(save, what="writing a snippet")
    except LLMActionError as e:
        drafts.keep_answer(interaction, e)
        raise
    except Exception as e:
        logger.exception("Writing snippet %s failed", obj.pk)
        error = LLMActionError(
            _(
                "The answer is stored, but it could not be written to the snippet "
                "(%(type)s); the snippet was not changed."
            )
            % {"type": type(e).__name__},
            code="write_failed",
        )
        drafts.keep_answer(interaction, error)
        raise error from e
    return interaction


def target_of(interaction: LLMInteraction) -> Any | None:
    """The snippet ``interaction`` wrote to directly, or None (deleted, or not a snippet)."""
    from . import is_snippet

    content_type = interaction.content_type
    model = content_type.model_class() if content_type is not None else None
    if model is None or interaction.page_id is not None:
        return None
    obj = model._default_manager.filter(pk=interaction.object_id).first()
    return obj if obj is not None and is_snippet(obj) else None


def undo_problem(interaction: LLMInteraction, obj: Any | None = None) -> str | None:
    """Why the direct write of ``interaction`` cannot be undone now, or None when it can."""
    if interaction.outcome == InteractionOutcome.UNDONE:
        return _("This answer was undone already.")
    if interaction.outcome != InteractionOutcome.WRITTEN:
        return _("Only an answer written directly can be undone here.")
    obj = obj if obj is not None else target_of(interaction)
    if obj is None:
        return _("The snippet was deleted.")
    for name, value in written(interaction).items():
        if outputs.read_field_value(obj, name) != value:
            return _(
                "The snippet's %(field)s was changed since the answer was written, so it is "
                "kept as it is now."
            ) % {"field": name}
    return None


def undo(interaction: LLMInteraction, user=None) -> Any:
    """Put the previous values back into the snippet ``interaction`` wrote (its row locked);
    raises :class:`UndoRefused` with the reason, or ActionNotAllowed. Returns the snippet."""

    def restore() -> Any:
        locked = LLMInteraction.objects.select_for_update().get(pk=interaction.pk)
        obj = target_of(locked)
        if obj is not None:
            obj = type(obj)._default_manager.select_for_update().get(pk=obj.pk)
            if user is not None and not can_change(user, obj):
                raise ActionNotAllowed(_("You do not have permission to edit this snippet."))
        problem = undo_problem(locked, obj)
        if problem:
            raise UndoRefused(problem)
        for name, value in previous(locked).items():
            outputs.set_output_value(obj, name, value)
        obj.save()
        locked.outcome = InteractionOutcome.UNDONE
        locked.save(update_fields=["outcome"])
        interaction.outcome = locked.outcome
        return obj

    return db.write(restore, what="undoing a snippet write")
