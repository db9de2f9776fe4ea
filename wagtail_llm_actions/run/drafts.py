"""Writing a run's answer: store it first (it is paid for), then write the draft.

:func:`store_answer` commits the answer on its interaction (status "answered") before anything
else can fail. :func:`write_answer` (one action) and :func:`write_run` (a pipeline's answers)
then write it as a new draft in one transaction holding the object's row lock: the object is
read again; deleted, locked, in moderation or no longer editable means nothing is written and
the answer stays stored with the reason (:func:`keep_answer`); if a newer revision was saved
meanwhile, only the written fields are set on it (``rebased``). :func:`apply_stored` writes a
stored answer later, with zero model calls. :mod:`.stored_form` keeps every field the action
did not write as it was stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from typing import Any

from django.utils.translation import gettext as _
from wagtail.models import Page

from .. import db, outputs, rowstate
from ..exceptions import (
    ActionNotAllowed,
    ConfigurationProblem,
    LLMActionError,
    OutputRejected,
    PageGone,
    WriteFailed,
)
from ..extraction import PathError
from ..models import (
    InteractionOutcome,
    InteractionStatus,
    LLMAction,
    LLMInteraction,
    LLMRun,
    RunStatus,
)
from ..signals import answer_stored
from . import recording, stored_form
from .access import can_edit, lock_reason, reload_user

logger = logging.getLogger(__name__)

#: The interaction fields :func:`write_answer` changes on a stored answer (the draft, its
#: outcome, the fields read again when rebased, links to rows deleted meanwhile).
WRITE_FIELDS = (
    "revision",
    "rebased",
    "outcome",
    "status",
    "error_code",
    "error_message",
    "previous_value",
    "previous_values",
    "page",
    "base_revision",
    "action",
)


def store_answer(
    interaction: LLMInteraction,
    on_answer: Callable[[LLMInteraction], None] | None,
    *,
    sender: type,
) -> None:
    """Commit the paid answer before anything else can fail (status "answered");
    ``answer_stored`` is sent (by ``sender``) once it is."""
    interaction.status = InteractionStatus.ANSWERED
    interaction.outcome = InteractionOutcome.NONE

    def store() -> None:
        gone = recording.detach_deleted(interaction)
        if gone:
            interaction.status = InteractionStatus.ERROR
            interaction.error_code = PageGone.code
            interaction.error_message = str(recording.page_gone())
        interaction.save()
        if on_answer is not None and not gone:
            on_answer(interaction)

    try:
        db.write(store, what="storing an answer")
    except Exception as e:
        if db.is_busy_error(e) or not recording.refused_content(e):
            raise
        logger.exception("The answer of %s could not be stored", interaction.action_name)
        error = recording.not_stored(e)
        recording.record_failure(interaction, error, time.perf_counter())
        raise error from e
    if interaction.status == InteractionStatus.ERROR:
        logger.warning("LLM action %s: the page was deleted", interaction.action_name)
        raise recording.page_gone(interaction)
    answer_stored.send(sender=sender, interaction=interaction)


def write_answer(
    interaction: LLMInteraction,
    obj: Any,
    user=None,
    *,
    action: LLMAction | None = None,
    working_obj: Any = None,
    on_success: Callable[[LLMInteraction], None] | None = None,
) -> LLMInteraction:
    """Write a stored answer as a new draft of ``obj``; no model is called.

    In one transaction that locks the object's row: the object is read again; if it was
    deleted, or is now locked, in moderation, or not editable by ``user``, nothing is
    written and the interaction keeps its answer with the reason (status "answered", or
    "error" for a deleted page) and the matching error is raised. If the newest revision
    is still the one the run read (``interaction.base_revision``), ``working_obj`` (the
    answer already applied) is saved; otherwise only the target field of the newest
    revision changes, and the interaction is marked ``rebased``. A busy database retries
    the write, never the call; if it stays busy the answer stays stored
    (:class:`WriteFailed`). Only the interaction's ``WRITE_FIELDS`` are saved: the answer
    itself was stored before.
    """
    action = action if action is not None else interaction.action
    target_field = interaction.target_field or (action.target_field if action else "")
    model = type(obj.specific if isinstance(obj, Page) else obj)

    def write() -> None:
        # (checked_target holds the page's row: only the revisions and action are asked,
        # with its lock check.)
        page_locked = interaction.page_id == obj.pk
        linked = recording.linked_rows(interaction, page_locked=page_locked)
        target, rebased, found = checked_target(
            model,
            obj.pk,
            user,
            working_obj,
            interaction.base_revision_id,
            exists=linked if "page" not in linked else None,
        )
        if target is not working_obj:
            _set_stored([(interaction, target_field)], target)
        # The run's own copy was validated before the transaction (below); a newer
        # revision the answer was rebased onto is validated here.
        revision = save_draft(
            target,
            user,
            action,
            clean=target is not working_obj,
            written=_written([(interaction, target_field)]),
        )
        recording.detach_deleted(interaction, page_locked=page_locked, known=(linked, found))
        _drafted(interaction, revision, rebased)
        # The answer itself is stored already: only what this write changes is saved.
        rowstate.update_row(interaction, WRITE_FIELDS)
        if on_success is not None:
            on_success(interaction)
        recording.log_generated(target, user, revision, action, interaction)

    try:
        if working_obj is not None:
            # Validate before taking the write lock (its reads need no lock: the row
            # lock below still decides whether this copy is the one written).
            validate_draft(working_obj)
        db.write(write, what="writing a draft")
    except LLMActionError as e:
        keep_answer(interaction, e)
        raise
    except Exception as e:
        error = _write_failed(e, interaction)
        keep_answer(interaction, error)
        raise error from e
    return interaction


def write_run(
    run: LLMRun,
    obj: Any,
    user,
    writes: list[tuple[LLMInteraction, LLMAction]],
    *,
    working_obj: Any = None,
    on_success: Callable[[LLMInteraction], None] | None = None,
) -> LLMRun:
    """Write the stored answers of a run's ``writes`` into one new draft of ``obj``.

    The same rules as :func:`write_answer`: one transaction under the object's row lock;
    deleted, locked, in moderation or no longer editable means nothing is written (the
    answers stay stored); if the newest revision is no longer the one the run read, the
    written fields are set on the newest revision (``rebased``). ``on_success`` gets the
    last written interaction inside that transaction.
    """
    model = type(obj.specific if isinstance(obj, Page) else obj)
    last_interaction, last_action = writes[-1]
    fields = [(interaction, interaction.target_field) for interaction, _action in writes]

    def write() -> None:
        target, rebased, _found = checked_target(
            model, obj.pk, user, working_obj, run.base_revision_id
        )
        if target is not working_obj:
            _set_stored(fields, target)
        revision = save_draft(target, user, last_action, written=_written(fields))
        for interaction, _action in writes:
            recording.detach_deleted(interaction, page_locked=interaction.page_id == obj.pk)
            _drafted(interaction, revision, rebased)
            interaction.save()
        run.revision = revision
        recording.mark_ended(run, RunStatus.SUCCESS)
        run.save()
        if on_success is not None:
            on_success(last_interaction)
        for interaction, action in writes:
            recording.log_generated(target, user, revision, action, interaction)

    try:
        db.write(write, what="writing a run's draft")
    except Exception as e:
        if isinstance(e, LLMActionError):
            error = e
        else:
            logger.exception("Writing the draft of run %s failed", run.pk)
            error = WriteFailed(
                _("The answers are stored, but the draft could not be saved (%(type)s).")
                % {"type": type(e).__name__}
            )
        for interaction, _action in writes:
            keep_answer(interaction, error)
        run.revision = None
        recording.finish_run_quietly(
            run, recording.stopped_status(last_interaction), error.message, what="recording a run"
        )
        error.interaction = last_interaction
        if error is e:
            raise
        raise error from e
    return run


def _set_stored(answers: list[tuple[LLMInteraction, str]], target: Any) -> None:
    """Set stored answers on ``target``, a newer revision than the run read (recording the
    values they replace): each ``(interaction, target field)``, or for an interaction
    filling several fields every mapped field and nothing else."""
    from .image_blocks import apply_answers, decode, encode

    try:
        for interaction, target_field in answers:
            alt_texts = decode(interaction.output_value)
            if alt_texts is not None:  # only those image blocks change, in the newer revision
                before = apply_answers(target, target_field, alt_texts)
                interaction.previous_value = encode(before)
                continue
            if interaction.output_values:
                for name, value in interaction.output_values.items():
                    interaction.previous_values[name] = outputs.read_field_value(target, name)
                    outputs.set_output_value(target, name, value)
                continue
            interaction.previous_value = outputs.read_field_value(target, target_field)
            outputs.set_output_value(target, target_field, interaction.output_value)
    except PathError as e:
        raise ConfigurationProblem(str(e)) from e


def _written(answers: list[tuple[LLMInteraction, str]]) -> list[str]:
    """The fields ``answers`` write."""
    return [
        name
        for interaction, target_field in answers
        for name in (list(interaction.output_values or {}) or [target_field])
    ]


def _drafted(interaction: LLMInteraction, revision, rebased: bool) -> None:
    interaction.revision = revision
    interaction.rebased = rebased
    interaction.outcome = InteractionOutcome.DRAFTED
    interaction.status = InteractionStatus.SUCCESS
    interaction.error_code = interaction.error_message = ""


def _write_failed(error: Exception, interaction: LLMInteraction) -> WriteFailed:
    """A draft write that failed for a reason other than the run's own errors."""
    if db.is_busy_error(error):
        return WriteFailed(
            _(
                "The answer is stored, but the draft could not be saved because the "
                "database stayed busy. Use “Apply stored answer” to write it without "
                "calling the model again."
            )
        )
    logger.exception("Writing the answer of interaction %s failed", interaction.pk)
    return WriteFailed(
        _(
            "The answer is stored, but the draft could not be saved (%(type)s). "
            "Use “Apply stored answer” to write it without calling the model again."
        )
        % {"type": type(error).__name__}
    )


def apply_stored(
    interaction: LLMInteraction,
    user=None,
    *,
    on_success: Callable[[LLMInteraction], None] | None = None,
) -> LLMInteraction:
    """Write the stored answer of ``interaction`` (status "answered") into a new draft of
    its page's newest revision, with zero model calls."""
    if interaction.status != InteractionStatus.ANSWERED:
        raise LLMActionError(
            _("This interaction has no stored answer waiting to be written."),
            code="nothing_stored",
            interaction=interaction,
        )
    if interaction.run_id is not None and interaction.step_index is not None:
        raise LLMActionError(
            _(
                "This answer belongs to a pipeline run, whose answers are written together: "
                "rerun the pipeline from its last step to write them without new calls."
            ),
            code="pipeline_answer",
            interaction=interaction,
        )
    obj = interaction.page.specific if interaction.page_id else interaction.content_object
    if obj is None:
        error = recording.page_gone(interaction)
        keep_answer(interaction, error)
        raise error
    from ..snippets import direct, writes_directly

    if writes_directly(obj):  # a snippet without revisions, written into its row
        action = interaction.action
        return direct.write(interaction, obj, user, action, on_success=on_success)
    return write_answer(interaction, obj, user, on_success=on_success)


def keep_answer(interaction: LLMInteraction, error: LLMActionError) -> None:
    """Record why a stored answer was not written; it stays applicable unless the page is
    gone (or the answer cannot be written at all)."""
    interaction.revision = None
    interaction.rebased = False
    interaction.error_code = error.code
    interaction.error_message = error.message
    if isinstance(error, PageGone):
        interaction.status = InteractionStatus.ERROR
    elif error.code in (OutputRejected.code, ConfigurationProblem.code, "invalid"):
        interaction.status = InteractionStatus.ERROR
    else:
        interaction.status = InteractionStatus.ANSWERED
    interaction.outcome = InteractionOutcome.NONE

    def save() -> None:
        recording.detach_deleted(interaction)
        interaction.save()

    try:
        db.write(save, what="recording a stored answer")
    except Exception:  # the answer row itself is already committed  # noqa: BLE001
        logger.exception("Could not record why interaction %s was not written", interaction.pk)
    error.interaction = interaction
    logger.warning(
        "LLM action %s: answer stored, not written (%s): %s",
        interaction.action_name,
        error.code,
        error.message,
    )


# -- the draft itself ------------------------------------------------------------------------


def save_draft(working_obj, user, action, *, clean: bool = True, written: Collection[str]):
    """``save_revision()`` of ``working_obj``; ``clean=False`` when it was validated
    already (:func:`validate_draft`). Only the ``written`` fields may differ from the
    revision ``working_obj`` was loaded from (see :mod:`.stored_form`)."""
    # A draft leaves the live row's content as it was, so Wagtail's reference index (built
    # from the live object) would be rebuilt unchanged: skip that work on every run.
    from wagtail.signal_handlers import disable_reference_index_auto_update

    try:
        # Called inside the write transaction: an error rolls it all back, so Wagtail's
        # atomic blocks need no savepoints of their own (two queries each).
        with (
            disable_reference_index_auto_update(),
            db.no_savepoints(),
            stored_form.stored_form_kept(working_obj, written),
        ):
            return working_obj.save_revision(user=user, log_action=False, clean=clean)
    except Exception as e:  # a validation error on the draft: report, don't 500
        _raise_invalid_draft(e)
        raise


def validate_draft(working_obj) -> None:
    """The ``full_clean()`` that ``save_revision(clean=True)`` runs, as an
    :class:`OutputRejected` when the draft is invalid."""
    try:
        working_obj.full_clean()
    except Exception as e:
        _raise_invalid_draft(e)
        raise


def _raise_invalid_draft(error: Exception) -> None:
    """A validation error on the draft becomes a readable :class:`OutputRejected`."""
    from django.core.exceptions import ValidationError

    if isinstance(error, ValidationError):
        raise OutputRejected(
            _("The draft could not be saved: %(errors)s") % {"errors": "; ".join(error.messages)},
            code="invalid",
        ) from error


def checked_target(
    model, pk, user, working_obj: Any, base_revision_id, *, exists: dict | None = None
) -> tuple[Any, bool, frozenset[str] | None]:
    """Inside a write transaction: lock the object's row and check it again (it still exists,
    the user may still edit it, no lock or moderation stops it), then return what to write the
    answer into and whether that is a newer revision than the run read (``rebased``): the run's
    own working copy if nothing was saved since, else the newest revision. The lock check also
    asks which rows of ``exists`` (see ``rowstate.existing``) still exist: the third value
    (None if none were asked)."""
    fresh = lock_row(model, pk)
    if fresh is None:
        raise recording.page_gone()
    # The user as they are now (a long job holds the user object with its caches).
    current_user = reload_user(user)
    if user is not None and (current_user is None or not can_edit(current_user, fresh)):
        raise ActionNotAllowed()
    flags = rowstate.lock_flags(fresh, exists=exists) if exists else None
    lock = lock_reason(current_user, fresh, flags)
    if lock is not None:
        raise lock
    found = flags.existing if flags is not None else None
    latest_id = getattr(fresh, "latest_revision_id", None)
    if working_obj is not None and base_revision_id is not None and latest_id == base_revision_id:
        return working_obj, False, found
    return stored_form.latest_as_object(fresh), working_obj is not None, found


def lock_row(model, pk):
    """``model`` row ``pk``, read again under a row lock (PostgreSQL; on SQLite the write
    transaction already holds the database's write lock); None if it was deleted."""
    lock = False
    if db.connections["default"].features.has_select_for_update:
        # Lock only the base row (a page's wagtailcore_page row): enough to order writers.
        base = model._meta.get_parent_list()[-1] if model._meta.get_parent_list() else model
        if base is not model:
            rowstate.existing({"row": (base, pk)}, lock="row")
        else:
            lock = True
    return rowstate.read_row(model, pk, lock=lock)
