"""After an editor run: the page saved with its answers (:func:`record_saved_outcomes`
links each interaction to the revision that first saved it, kept as generated or
edited), a discard (:func:`set_outcome`) and a chosen candidate.
"""

from __future__ import annotations

import re
from typing import Any

from django.db.models import Q
from wagtail.models import Page

from .. import db
from ..extraction import PathError, get_target_field, html_to_text
from ..models import (
    InteractionOutcome,
    InteractionStatus,
    InteractionTrigger,
    JobKind,
    LLMInteraction,
    LLMJobItem,
)

#: Name of the hidden input the editor's script adds to the page form, listing the ids of
#: interactions whose output is in the form (comma separated).
INTERACTIONS_FIELD = "llm_action_interactions"


def parse_interaction_ids(value: str) -> list[int]:
    """Interaction ids from the hidden input: "12,13:seo_title" gives [12, 13] (a field after
    the colon marks one field of a structured answer)."""
    ids = [int(v) for v in re.findall(r"(?:^|,)\s*(\d+)", value or "")]
    return list(dict.fromkeys(ids))[:50]


def _normalise_value(field: Any, value: str) -> Any:
    from taggit.managers import TaggableManager
    from wagtail.fields import RichTextField

    if isinstance(field, TaggableManager):
        return sorted({t.strip().casefold() for t in (value or "").split(",") if t.strip()})
    if isinstance(field, RichTextField):
        value = html_to_text(value or "")
    return " ".join((value or "").split())


def saved_outcome(page: Page, interaction: LLMInteraction, field_name: str) -> str:
    """ "accepted" if ``page`` holds the interaction's output unchanged, else "edited"."""
    from ..outputs import read_field_value

    try:
        field = get_target_field(type(page), field_name)
        saved = read_field_value(page, field_name)
    except PathError:
        return InteractionOutcome.EDITED
    same = _normalise_value(field, saved) == _normalise_value(field, interaction.output_value)
    return InteractionOutcome.ACCEPTED if same else InteractionOutcome.EDITED


def record_saved_outcomes(page: Page, user, ids: list[int]) -> list[LLMInteraction]:
    """After the editor saved ``page``: link each listed interaction to the new revision.

    An interaction is linked to the revision that first saved its output and never moved to
    a later one; while Wagtail's autosave keeps overwriting that same revision, its outcome
    (accepted or edited) follows what was saved last. Runs made on the create view, before
    the page existed, are attached to the page now. Each newly linked run gets the page
    history entry bulk runs get ("Generated summary with …"), with its outcome.
    """
    from django.contrib.contenttypes.models import ContentType

    revision_id = getattr(page, "latest_revision_id", None)
    if not ids or revision_id is None or user is None:
        return []
    page = page.specific if type(page) is Page else page
    content_type = ContentType.objects.get_for_model(page, for_concrete_model=False)
    if isinstance(page, Page):
        saved = Q(page_id=page.pk)
    else:  # a snippet saved in its editor
        saved = Q(page__isnull=True, object_id=str(page.pk), content_type=content_type)
    changed = []
    interactions = (
        LLMInteraction.objects.filter(
            saved | Q(page__isnull=True, object_id="", content_type=content_type),
            pk__in=ids,
            user=user,
            trigger=InteractionTrigger.EDITOR,
            status=InteractionStatus.SUCCESS,
        )
        .exclude(outcome=InteractionOutcome.DISCARDED)
        .select_related("action")
    )
    for interaction in interactions:
        if interaction.revision_id not in (None, revision_id):
            continue
        if interaction.output_values:
            # Read the per-field outcomes afresh inside the write, so a Discard that lands
            # while this autosave runs is kept, not overwritten with a stale copy.
            with db.atomic_write():
                interaction.field_outcomes = _locked(interaction).field_outcomes
                if _record_fields(page, user, interaction, revision_id):
                    changed.append(interaction)
            continue
        field_name = _target_of(interaction)
        if not field_name:
            continue
        outcome = saved_outcome(page, interaction, field_name)
        if interaction.revision_id == revision_id and interaction.outcome == outcome:
            continue
        with db.atomic_write():
            _save_linked(page, user, interaction, revision_id, outcome, field_name)
        changed.append(interaction)
    return changed


def _locked(interaction: LLMInteraction) -> LLMInteraction:
    """The interaction's row as stored now, locked until the transaction ends."""
    return (
        LLMInteraction.objects.select_for_update()
        .only("outcome", "field_outcomes")
        .get(pk=interaction.pk)
    )


def _record_fields(page: Page, user, interaction: LLMInteraction, revision_id: int) -> bool:
    """Link a structured answer to the saved revision with its outcome per field."""
    found = _field_outcomes(page, interaction)
    if found is None:
        return False
    outcome, field_outcomes = found
    if (
        interaction.revision_id == revision_id
        and interaction.outcome == outcome
        and interaction.field_outcomes == field_outcomes
    ):
        return False
    interaction.field_outcomes = field_outcomes
    field_name = ", ".join(interaction.output_values)
    _save_linked(page, user, interaction, revision_id, outcome, field_name)
    return True


def _save_linked(
    page: Page, user, interaction: LLMInteraction, revision_id: int, outcome: str, field_name: str
) -> None:
    """Save the interaction's link to the revision and its page-history entry."""
    first_save = interaction.revision_id is None
    interaction.revision_id = revision_id
    interaction.outcome = outcome
    interaction.page = page if isinstance(page, Page) else None
    interaction.object_id = str(page.pk)
    interaction.save(update_fields=["revision", "outcome", "field_outcomes", "page", "object_id"])
    _log_saved_generation(page, user, interaction, field_name, first=first_save)


def _log_saved_generation(page, user, interaction, field_name: str, *, first: bool) -> None:
    """The page-history entry of an editor run saved with the page, kept up to date."""
    from wagtail.log_actions import log

    from ..log_actions import GENERATE

    data = {
        "llm_action": {"id": interaction.action_id, "name": interaction.action_name},
        "interaction_id": interaction.pk,
        "target_field": field_name,
        "outcome": interaction.outcome,
        "trigger": InteractionTrigger.EDITOR,
    }
    if not first:
        # Autosave overwrote the same revision and the outcome changed: update the entry.
        entry = _history(interaction, page).order_by("-pk").first()
        if entry is not None:
            entry.data = data
            entry.save(update_fields=["data"])
            return
    log(
        instance=page,
        action=GENERATE,
        user=user,
        revision=interaction.revision,
        content_changed=True,
        data=data,
    )


def _history(interaction: LLMInteraction, obj: Any = None):
    """The history entries of ``interaction``'s saved generation: the page's, or the
    snippet's (``obj``: what it was saved with, when known)."""
    from wagtail.models import ModelLogEntry, PageLogEntry

    from ..log_actions import GENERATE

    if isinstance(obj, Page) or (obj is None and interaction.page_id is not None):
        page_id = obj.pk if obj is not None else interaction.page_id
        entries = PageLogEntry.objects.filter(page_id=page_id)
    else:
        entries = ModelLogEntry.objects.filter(
            content_type_id=interaction.content_type_id,
            object_id=str(obj.pk) if obj is not None else interaction.object_id,
        )
    return entries.filter(action=GENERATE, data__interaction_id=interaction.pk)


def _field_outcomes(page: Page, interaction: LLMInteraction) -> tuple[str, dict] | None:
    """The saved outcome per field of a structured answer (a discarded field stays
    discarded) and the interaction's outcome: "edited" if any kept field was edited, else
    "accepted". None when every field was discarded."""
    outcomes = dict(interaction.field_outcomes or {})
    for name, value in interaction.output_values.items():
        if outcomes.get(name) == InteractionOutcome.DISCARDED:
            continue
        probe = LLMInteraction(output_value=value)
        outcomes[name] = saved_outcome(page, probe, name)
    kept = [o for o in outcomes.values() if o != InteractionOutcome.DISCARDED]
    if not kept:
        return None
    if InteractionOutcome.EDITED in kept:
        return InteractionOutcome.EDITED, outcomes
    return InteractionOutcome.ACCEPTED, outcomes


def _target_of(interaction: LLMInteraction) -> str:
    if interaction.run_id and interaction.target_field:
        return interaction.target_field  # a pipeline step: the field it wrote
    item = (
        LLMJobItem.objects.filter(interaction=interaction, job__kind=JobKind.EDITOR)
        .select_related("job")
        .first()
    )
    if item is not None and item.job.options.get("target_field"):
        return item.job.options["target_field"]
    return interaction.action.target_field if interaction.action_id else ""


def set_outcome(interaction: LLMInteraction, outcome: str, field: str = "") -> bool:
    """Record a discard (or undo one) for an editor interaction not yet saved in a revision.

    With ``field`` (one field of a structured answer), only that field's outcome changes; the
    interaction is "discarded" once every field is. Returns False when nothing changed (the
    output is already in a saved revision, where the save decided the outcome, or the value
    or field is not allowed).
    """
    if outcome not in (InteractionOutcome.DISCARDED, InteractionOutcome.PENDING):
        return False
    if interaction.status != InteractionStatus.SUCCESS:
        return False
    if interaction.revision_id is not None and outcome == InteractionOutcome.PENDING:
        return False
    if field:
        if field not in (interaction.output_values or {}):
            return False

        def record() -> None:
            # Read-modify-write under the row lock: an autosave recording the other fields'
            # outcomes at the same moment cannot overwrite this one.
            stored = _locked(interaction)
            outcomes = dict(stored.field_outcomes or {})
            outcomes[field] = str(outcome)
            interaction.field_outcomes = outcomes
            every = [outcomes.get(name) for name in interaction.output_values]
            if all(o == InteractionOutcome.DISCARDED for o in every):
                interaction.outcome = InteractionOutcome.DISCARDED
            elif interaction.revision_id is None:
                interaction.outcome = InteractionOutcome.PENDING
            else:
                interaction.outcome = stored.outcome
            interaction.save(update_fields=["outcome", "field_outcomes"])

        db.write(record, what="recording an outcome")
        return True
    if interaction.outcome == outcome:
        return True
    interaction.outcome = outcome
    with db.atomic_write():
        interaction.save(update_fields=["outcome"])
        if interaction.revision_id is not None and (
            interaction.page_id is not None or interaction.object_id
        ):
            # Autosave had already saved it: the history entry now says it was discarded.
            for entry in _history(interaction):
                entry.data = {**entry.data, "outcome": outcome}
                entry.save(update_fields=["data"])
    return True


def choose_candidate(interaction: LLMInteraction, index: int) -> bool:
    """Record that the editor picked candidate ``index``: it becomes the interaction's value.

    False when there is no such candidate or the answer is already in a saved revision.
    """
    candidates = interaction.candidates or []
    if interaction.status != InteractionStatus.SUCCESS or interaction.revision_id is not None:
        return False
    if not 0 <= index < len(candidates):
        return False
    interaction.chosen_candidate = index
    interaction.output_value = candidates[index]
    interaction.outcome = InteractionOutcome.PENDING
    db.write(
        lambda: interaction.save(update_fields=["chosen_candidate", "output_value", "outcome"]),
        what="recording a chosen candidate",
    )
    return True
