"""Skipping unchanged pages: the one rule every path that may skip a page applies.

Bulk jobs, ``run_llm_action`` (``--page``, ``--descendants``, ``--all``) and the bulk
confirmation screen's preview ask the same question here, and ``force`` bypasses it on all of
them. A page is *unchanged* for an action when an answer of that action, made from the same
inputs, is in the page's newest revision, or was deliberately discarded by a person:

- *The same inputs*: the interaction's stored hash (:func:`service.inputs_hash`) equals the
  hash of what a run would send now: the rendered messages (source, the prompt's text with
  ``{title}``, ``{url}``, ``{locale}``, ``{context}`` and step answers filled in, system and
  context messages), model, API base and parameters, the fields written and how. Renaming a
  page whose prompt uses ``{title}``, editing the prompt, or changing the model runs again.
- *In the newest revision*: the answer was written into a draft (a bulk job, the command, the
  Python API, a pipeline's writing step, "Keep" in the report) or saved from the editor (as
  generated or edited), and every field it wrote still holds that value in the page's newest
  revision. Another field changing does not matter; the value being replaced does (whoever
  replaced it, the next run writes a new draft; Discard that draft to stop it).
- *Discarded by a person*: Discard in the report, or Discard/Undo in the editor. An editor
  answer thrown away because its job was cancelled was never looked at: it does not count.

Never counted, because they wrote nothing: map-reduce parts and pipeline steps that only feed
later steps ("fed"), editor answers never saved ("pending"), answers stored but not written,
failures and skips.

The lookup is one query for any number of pages (:func:`written_answers`); the check itself
(:func:`holds`) reads nothing more, except a page's revision when an answer the editor saved
*edited* is no longer in the newest revision (then that revision's content comes with the
same query).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Case, Exists, F, JSONField, OuterRef, Q, When
from taggit.managers import TaggableManager
from wagtail.fields import RichTextField

from .extraction import PathError, get_target_field, html_to_text
from .models import (
    InteractionOutcome,
    InteractionStatus,
    ItemStatus,
    LLMAction,
    LLMInteraction,
    LLMJobItem,
)
from .outputs import read_field_value, split_tags
from .service import LLMService

#: Outcomes of an answer that went into a revision.
KEPT = (InteractionOutcome.DRAFTED, InteractionOutcome.ACCEPTED, InteractionOutcome.EDITED)


@dataclass(frozen=True)
class WrittenAnswer:
    """An answer of an action on a page that can make the page unchanged."""

    inputs_hash: str
    discarded: bool
    revision_id: int | None
    #: Field → the value the answer put there (fields the editor discarded left out).
    values: dict[str, str] = field(default_factory=dict)
    #: Saved edited from the editor: the fields' values are those of ``revision_id``, whose
    #: content is ``saved_content`` when it is no longer the newest revision.
    edited: bool = False
    saved_content: dict | None = field(default=None, compare=False)


def written_answers(action: LLMAction, page_ids: list[int]) -> dict[int, list[WrittenAnswer]]:
    """The answers of ``action`` that count for each of ``page_ids``, newest first; one query.

    A page without any is never unchanged, and needs no further look.
    """
    if action.pk is None or not page_ids:
        return {}
    cancelled = LLMJobItem.objects.filter(interaction=OuterRef("pk"), status=ItemStatus.CANCELLED)
    kept = Q(outcome__in=KEPT, revision__isnull=False)
    discarded = Q(outcome=InteractionOutcome.DISCARDED) & ~Exists(cancelled)
    moved_on = Q(outcome=InteractionOutcome.EDITED) & ~Q(revision_id=F("page__latest_revision_id"))
    rows = (
        LLMInteraction.objects.filter(
            page_id__in=page_ids,
            action=action,
            status=InteractionStatus.SUCCESS,
            chunk_index__isnull=True,
        )
        .filter(kept | discarded)
        .exclude(source_hash="")
        .annotate(
            saved_content=Case(
                When(moved_on, then=F("revision__content")), output_field=JSONField()
            )
        )
        .order_by("page_id", "-created_at", "-pk")
        .values_list(
            "page_id",
            "source_hash",
            "outcome",
            "revision_id",
            "target_field",
            "output_value",
            "output_values",
            "field_outcomes",
            "saved_content",
        )
    )
    result: dict[int, list[WrittenAnswer]] = {}
    for page_id, inputs, outcome, revision_id, target, value, values, outcomes, content in rows:
        if outcome == InteractionOutcome.DISCARDED:
            answer = WrittenAnswer(inputs, True, revision_id)
        else:
            written = _kept_fields(values, outcomes) if values else {target: value}
            edited = outcome == InteractionOutcome.EDITED
            answer = WrittenAnswer(inputs, False, revision_id, written, edited, content)
        result.setdefault(page_id, []).append(answer)
    return result


def _kept_fields(values: Any, outcomes: Any) -> dict[str, str]:
    """A structured answer's values, without the fields the editor discarded."""
    outcomes = outcomes if isinstance(outcomes, dict) else {}
    return {
        str(name): str(value)
        for name, value in (values if isinstance(values, dict) else {}).items()
        if outcomes.get(name) != InteractionOutcome.DISCARDED
    }


def holds(answers: list[WrittenAnswer], prepared) -> bool:
    """Whether one of ``answers`` makes the page unchanged for ``prepared`` (a
    :class:`service.PreparedRun` of the action on the page's newest revision)."""
    obj = prepared.obj
    latest = getattr(obj, "latest_revision_id", None)
    for answer in answers:
        if answer.inputs_hash != prepared.inputs_hash:
            continue
        if answer.discarded:
            return True
        if answer.revision_id is not None and answer.revision_id == latest:
            return True  # the revision the answer was written or saved in is the newest
        if _in_newest(obj, answer):
            return True
    return False


def _in_newest(obj: Any, answer: WrittenAnswer) -> bool:
    """Whether every field the answer wrote holds the same value in ``obj``."""
    expected = answer.values
    if not expected:
        return False
    if answer.edited:
        # Saved edited from the editor: the values are those of the revision it was saved in.
        if not isinstance(answer.saved_content, dict):
            return False
        try:
            saved = type(obj).from_serializable_data(answer.saved_content, check_fks=False)
            expected = {name: read_field_value(saved, name) for name in expected}
        except Exception:  # a revision that no longer loads cannot be compared  # noqa: BLE001
            return False
    model = type(obj)
    try:
        return all(
            _same(get_target_field(model, name), read_field_value(obj, name), value)
            for name, value in expected.items()
        )
    except PathError:
        return False


def _same(model_field: Any, current: str, written: str) -> bool:
    """Equal as the page shows them: tags as a set ignoring case, rich text as its text,
    whitespace runs as one space."""
    if isinstance(model_field, TaggableManager):
        return {t.casefold() for t in split_tags(current)} == {
            t.casefold() for t in split_tags(written)
        }
    if isinstance(model_field, RichTextField):
        current, written = html_to_text(current), html_to_text(written)
    return " ".join((current or "").split()) == " ".join((written or "").split())


def unchanged_since_last_write(action: LLMAction, page, user=None, *, service=None) -> bool:
    """Whether running ``action`` on ``page`` now would only repeat an answer that is in the
    page's newest revision, or that a person discarded (the module's rule).

    One query for a page the action never wrote to; otherwise the checks a run makes first
    (permission, lock, type: their errors are raised as the run would raise them), then the
    page's newest revision is read and the messages rendered, with no model call.
    """
    from .snippets import is_snippet

    if is_snippet(page):
        answers = snippet_answers(action, page)
    else:
        answers = written_answers(action, [page.pk]).get(page.pk)
    if not answers:
        return False
    service = service or LLMService()
    page = page if is_snippet(page) else page.specific
    service.check(action, page, user)
    working, _revision = service.working_copy(page)
    return holds(answers, service.prepare(action, working))


def snippet_answers(action: LLMAction, obj: Any) -> list[WrittenAnswer]:
    """The answers of ``action`` that count for the snippet ``obj``, newest first (one
    query): as :func:`written_answers` for pages, and those written directly (undone ones
    do not count)."""
    from django.contrib.contenttypes.models import ContentType

    if action.pk is None or obj.pk is None:
        return []
    cancelled = LLMJobItem.objects.filter(interaction=OuterRef("pk"), status=ItemStatus.CANCELLED)
    kept = Q(outcome__in=KEPT, revision__isnull=False) | Q(outcome=InteractionOutcome.WRITTEN)
    discarded = Q(outcome=InteractionOutcome.DISCARDED) & ~Exists(cancelled)
    edited = Q(outcome=InteractionOutcome.EDITED)
    rows = (
        LLMInteraction.objects.filter(
            content_type=ContentType.objects.get_for_model(obj, for_concrete_model=False),
            object_id=str(obj.pk),
            page__isnull=True,
            action=action,
            status=InteractionStatus.SUCCESS,
            chunk_index__isnull=True,
        )
        .filter(kept | discarded)
        .exclude(source_hash="")
        .annotate(
            saved_content=Case(When(edited, then=F("revision__content")), output_field=JSONField())
        )
        .order_by("-created_at", "-pk")
        .values_list(
            "source_hash",
            "outcome",
            "revision_id",
            "target_field",
            "output_value",
            "output_values",
            "field_outcomes",
            "saved_content",
        )
    )
    answers = []
    for inputs, outcome, revision_id, target, value, values, outcomes, content in rows:
        if outcome == InteractionOutcome.DISCARDED:
            answers.append(WrittenAnswer(inputs, True, revision_id))
            continue
        written = _kept_fields(values, outcomes) if values else {target: value}
        edited_answer = outcome == InteractionOutcome.EDITED
        answers.append(WrittenAnswer(inputs, False, revision_id, written, edited_answer, content))
    return answers


def stale_page_ids(action: LLMAction, pages=None) -> list[int]:
    """Ids of ``pages`` (a page queryset; all pages by default) of ``action``'s types whose
    source changed since the action's last answer there: the hash of what a run would send
    now (the newest revision's messages rendered, no model call) differs from the stored one.
    Pages the action never answered are not stale.

    Two queries whatever the number of pages (the pages with their last stored hash, their
    newest revisions' content), then the messages rendered for each page in Python.
    """
    from django.db.models import OuterRef, Subquery
    from wagtail.models import Page, Revision

    from .exceptions import LLMActionError

    if action.pk is None:
        return []
    pages = Page.objects.all() if pages is None else pages
    last = (
        LLMInteraction.objects.filter(
            action=action,
            page_id=OuterRef("pk"),
            status__in=[InteractionStatus.SUCCESS, InteractionStatus.ANSWERED],
            chunk_index__isnull=True,
        )
        .exclude(source_hash="")
        .order_by("-created_at", "-pk")
        .values("source_hash")[:1]
    )
    rows = list(
        pages.filter(content_type__in=action.page_types.all())
        .annotate(_llm_last_hash=Subquery(last))
        .exclude(_llm_last_hash=None)
        .order_by()
        .values_list("pk", "_llm_last_hash", "latest_revision_id")
    )
    revisions = Revision.objects.filter(pk__in=[r for _, _, r in rows if r is not None])
    objs = {}
    for revision in revisions.select_related("content_type"):
        model = revision.content_type.model_class()
        if model is not None:
            objs[revision.pk] = model.from_serializable_data(revision.content, check_fks=False)
    service = LLMService()
    stale = []
    for page_id, stored, revision_id in rows:
        obj = objs.get(revision_id)
        if obj is None:
            continue  # a page never saved as a revision is read by the run itself
        try:
            current = service.prepare(action, obj).inputs_hash
        except LLMActionError:
            continue  # an empty source or a configuration problem: nothing a run would send
        if current != stored:
            stale.append(page_id)
    return stale


__all__ = [
    "WrittenAnswer",
    "holds",
    "stale_page_ids",
    "unchanged_since_last_write",
    "written_answers",
]
