"""Acting on a recorded interaction after the fact: keep a pending answer, or discard a draft.

These are domain operations (no request, no HTTP), used by the report's views::

    revision = discard(interaction, user)   # target field reverted in a new draft
    revision = keep(interaction, user)      # a pending answer saved as a new draft

Both start from the page's latest revision, write a new *draft* revision (the live page is
never changed), log the change in the page history, and record the outcome on the
interaction. They raise ``LLMActionError`` subclasses with a message for the editor.
"""

from __future__ import annotations

from django.utils.translation import gettext as _
from taggit.managers import TaggableManager
from wagtail.log_actions import log
from wagtail.models import PageLogEntry

from . import db, log_actions, outputs
from .conf import get_setting
from .exceptions import (
    ActionNotAllowed,
    ActionNotApplicable,
    LLMActionError,
    OutputRejected,
    PageLocked,
)
from .extraction import PathError, get_target_field
from .models import InteractionOutcome, InteractionStatus, LLMInteraction
from .run import drafts, stored_form
from .run.access import can_edit, check, lock_message
from .run.prepare import working_copy
from .run.recording import log_generated

DISCARD_LOG_ACTION = log_actions.DISCARD


class CannotDiscard(LLMActionError):
    code = "cannot_discard"


class CannotKeep(LLMActionError):
    code = "cannot_keep"


def target_field_of(interaction: LLMInteraction) -> str | None:
    """The field the interaction wrote: from its page history entry, else from its action."""
    if interaction.revision_id:
        entry = (
            PageLogEntry.objects.filter(
                revision_id=interaction.revision_id, action=log_actions.GENERATE
            )
            .only("data")
            .first()
        )
        if entry and isinstance(entry.data, dict) and entry.data.get("target_field"):
            return entry.data["target_field"]
    return interaction.action.target_field if interaction.action_id else None


def is_published(interaction: LLMInteraction) -> bool:
    """Whether the draft the interaction wrote has gone live (or a later publish included it)."""
    page = interaction.page
    revision = interaction.revision
    if page is None or revision is None:
        return False
    if page.live_revision_id == revision.pk:
        return True
    return bool(page.last_published_at and page.last_published_at >= revision.created_at)


def discard_problem(interaction: LLMInteraction) -> str | None:
    """Why ``interaction`` cannot be discarded, or None if it can (no permission check)."""
    if interaction.outcome == InteractionOutcome.DISCARDED:
        return _("This answer has already been discarded.")
    if interaction.status != InteractionStatus.SUCCESS:
        return _("This call failed, so there is nothing to discard.")
    if interaction.outcome == InteractionOutcome.PENDING:
        return None
    if interaction.page_id is None or interaction.revision_id is None:
        return _("This call did not write a draft, so there is nothing to discard.")
    if is_published(interaction):
        return _("This draft has been published. Edit the page to change it.")
    return None


def _same_value(field, current: str, written: str) -> bool:
    if isinstance(field, TaggableManager):
        return {t.casefold() for t in outputs.split_tags(current)} == {
            t.casefold() for t in outputs.split_tags(written)
        }
    return (current or "").strip() == (written or "").strip()


def _set_field(obj, field, value: str) -> None:
    if isinstance(field, TaggableManager):
        getattr(obj, field.name).set(outputs.split_tags(value))
    elif value == "" and getattr(field, "null", False):
        setattr(obj, field.attname, None)
    else:
        setattr(obj, field.attname, value)


def _check_page(page, user) -> None:
    if user is not None and not can_edit(user, page):
        raise ActionNotAllowed()
    message = lock_message(user, page)
    if message:
        raise PageLocked(message)


def _written_and_previous(
    interaction: LLMInteraction, fields: list[str] | None
) -> tuple[dict[str, str], dict[str, str]]:
    """What the answer wrote (only ``fields`` of a structured answer, if given) and what
    those fields held before."""
    if interaction.output_values:
        # A structured answer: every field it wrote (or every one of ``fields``) goes back,
        # or none.
        written = dict(interaction.output_values)
        if fields is not None:
            written = {name: value for name, value in written.items() if name in fields}
            if not written:
                raise CannotDiscard(_("This answer did not write these fields."))
        previous = {name: (interaction.previous_values or {}).get(name, "") for name in written}
        return written, previous
    field_name = target_field_of(interaction)
    if not field_name:
        raise CannotDiscard(_("The field this answer was written to is not known any more."))
    return {field_name: interaction.output_value}, {field_name: interaction.previous_value}


def _unchanged_fields(working_obj, written: dict[str, str]) -> dict:
    """The model fields of ``written``; refused if one no longer holds the answer."""
    fields = {}
    for field_name, value in written.items():
        try:
            field = get_target_field(type(working_obj), field_name)
            current = outputs.read_field_value(working_obj, field_name)
        except PathError as e:
            raise CannotDiscard(str(e)) from e
        if not _same_value(field, current, value):
            raise CannotDiscard(
                _(
                    "“%(field)s” has changed since this answer was written, so discarding it "
                    "would undo later work. Edit the page instead."
                )
                % {"field": field.verbose_name if hasattr(field, "verbose_name") else field_name}
            )
        fields[field_name] = field
    return fields


def discard(interaction: LLMInteraction, user, fields: list[str] | None = None):
    """Revert the target field to its value before the run, in a new draft revision.

    For a pending answer (never saved) only the outcome is recorded. Returns the new
    revision, or None for a pending answer. ``fields`` (a structured answer only) reverts
    some of the fields it wrote: each is recorded in ``field_outcomes`` as "discarded", and
    the interaction's outcome becomes "discarded" once every field it wrote is.
    """
    problem = discard_problem(interaction)
    if problem:
        raise CannotDiscard(problem)
    if interaction.outcome == InteractionOutcome.PENDING:
        if interaction.page_id:
            _check_page(interaction.page.specific, user)
        interaction.outcome = InteractionOutcome.DISCARDED
        interaction.save(update_fields=["outcome"])
        return None

    page = interaction.page.specific
    _check_page(page, user)
    written, previous = _written_and_previous(interaction, fields)
    working_obj, _revision = working_copy(page)
    fields = _unchanged_fields(working_obj, written)
    with db.atomic_write():  # on SQLite: waits for a worker's write instead of failing
        for field_name, field in fields.items():
            _set_field(working_obj, field, previous[field_name])
        with stored_form.stored_form_kept(working_obj, fields):
            revision = working_obj.save_revision(user=user, log_action=False)
        log(
            instance=working_obj,
            action=DISCARD_LOG_ACTION,
            user=user,
            revision=revision,
            content_changed=True,
            data={
                "llm_action": {"id": interaction.action_id, "name": interaction.action_name},
                "interaction_id": interaction.pk,
                "target_field": ", ".join(fields),
            },
        )
        update_fields = ["outcome"]
        if fields is not None and interaction.output_values:
            outcomes = dict(interaction.field_outcomes or {})
            outcomes.update(dict.fromkeys(written, InteractionOutcome.DISCARDED.value))
            interaction.field_outcomes = outcomes
            update_fields.append("field_outcomes")
            if any(outcomes.get(name) != "discarded" for name in interaction.output_values):
                update_fields.remove("outcome")  # other fields it wrote stay
        if "outcome" in update_fields:
            interaction.outcome = InteractionOutcome.DISCARDED
        interaction.save(update_fields=update_fields)
    return revision


def keep(interaction: LLMInteraction, user):
    """Save a pending answer (a run with ``save=False``) as a new draft revision."""
    if interaction.outcome != InteractionOutcome.PENDING or not interaction.is_success:
        raise CannotKeep(_("Only an answer awaiting review can be kept."))
    if interaction.page_id is None:
        raise CannotKeep(_("The page of this answer no longer exists."))
    action = interaction.action
    if action is None:
        raise ActionNotApplicable(_("The action of this answer no longer exists."))
    page = interaction.page.specific
    check(action, page, user)
    working_obj, base_revision = working_copy(page)
    try:
        if interaction.output_values:
            # A structured answer: the values already checked, into their fields.
            interaction.previous_values = {
                name: outputs.read_field_value(working_obj, name)
                for name in interaction.output_values
            }
            for name, value in interaction.output_values.items():
                outputs.set_output_value(working_obj, name, value)
            previous, written = "", interaction.output_value
        elif interaction.candidates:
            # Candidates: the one chosen (else the first), already checked.
            previous = outputs.read_field_value(working_obj, action.target_field)
            written = interaction.output_value
            outputs.set_output_value(working_obj, action.target_field, written)
        else:
            previous = outputs.read_field_value(working_obj, action.target_field)
            written = outputs.apply_output(
                working_obj,
                action.target_field,
                interaction.response_text,
                action.output_mode,
                truncate=bool(get_setting("TRUNCATE_LONG_OUTPUT")),
            )
    except (outputs.OutputError, PathError) as e:
        raise OutputRejected(str(e)) from e
    with db.atomic_write():  # on SQLite: waits for a worker's write instead of failing
        revision = drafts.save_draft(
            working_obj,
            user,
            action,
            written=list(interaction.output_values or {}) or [action.target_field],
        )
        log_generated(working_obj, user, revision, action, interaction)
        interaction.revision = revision
        interaction.base_revision = base_revision
        interaction.previous_value = previous
        interaction.output_value = written
        interaction.outcome = InteractionOutcome.DRAFTED
        interaction.save(
            update_fields=[
                "revision",
                "base_revision",
                "previous_value",
                "previous_values",
                "output_value",
                "outcome",
            ]
        )
    return revision
