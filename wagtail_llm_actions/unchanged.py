"""Skipping unchanged pages: the one rule every path that may skip a page applies.

Bulk jobs, ``run_llm_action`` (``--page``, ``--descendants``, ``--all``), triggers, the bulk
confirmation screen's preview and the page listing's "stale" filter (:func:`stale_page_ids`:
pages the action answered that a job would run again) ask the same question here, and
``force`` bypasses it on all the paths that run. A page is *unchanged* for an action when an
answer of that action, made from the same inputs, is in the page's newest revision, or was
deliberately discarded by a person:

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


def working_copies(page_ids) -> dict[int, Any]:
    """Each of ``page_ids`` (a list, or a queryset of page ids) as its newest revision has it
    (as a run reads it), with a fixed number of queries whatever the number of pages: the
    pages, one more a page type, the drafts' revisions, their locales. A draft is loaded as
    Wagtail's ``with_content_json`` loads it, less what costs a query a page and shapes no
    request (foreign keys checked, comments, the parent read for the URL path: it is the
    live row's, with the draft's slug)."""
    from wagtail.models import Locale, Page, Revision

    pages = list(Page.objects.filter(pk__in=page_ids).specific())
    draft_revision_ids = [
        p.latest_revision_id for p in pages if p.has_unpublished_changes and p.latest_revision_id
    ]
    contents = dict(Revision.objects.filter(pk__in=draft_revision_ids).values_list("pk", "content"))
    locales = {
        locale.pk: locale for locale in Locale.objects.filter(pk__in={p.locale_id for p in pages})
    }
    result = {}
    for page in pages:
        content = contents.get(page.latest_revision_id) if page.has_unpublished_changes else None
        obj = _draft(page, content) if content is not None else page
        if obj.locale_id in locales:
            obj.locale = locales[obj.locale_id]  # {locale} of the prompt: no query per page
        result[page.pk] = obj
    return result


#: What ``Page.with_content_json`` keeps of the page row, whatever the revision says.
_KEPT_FROM_ROW = (
    "id",
    "content_type_id",
    "path",
    "depth",
    "numchild",
    "draft_title",
    "live",
    "has_unpublished_changes",
    "owner_id",
    "locked",
    "locked_by_id",
    "locked_at",
    "latest_revision_id",
    "latest_revision_created_at",
    "translation_key",
    "locale_id",
    "alias_of_id",
)


def _draft(page: Any, content: dict) -> Any:
    """``page.with_content_json(content)`` without a query (see :func:`working_copies`)."""
    obj = page.specific_class.from_serializable_data(content, check_fks=False)
    for name in _KEPT_FROM_ROW:
        setattr(obj, name, getattr(page, name))
    obj.pk = page.pk
    if obj.first_published_at is None:
        obj.first_published_at = page.first_published_at
    live_slug = f"{page.slug}/"
    if page.depth <= 1:
        obj.url_path = "/"
    elif page.url_path.endswith(live_slug):
        obj.url_path = f"{page.url_path[: -len(live_slug)]}{obj.slug}/"
    else:  # a row whose URL path does not end with its slug: as Wagtail sets it
        obj.set_url_path(page.get_parent())
    return obj


@dataclass
class Decision:
    """What a bulk job of an action decides for one page before calling (:func:`decide`)."""

    #: What a run would send now; None when preparing it failed (``error``).
    prepared: Any = None
    #: Why nothing would be sent: :class:`.exceptions.SourceEmpty`, or a configuration problem.
    error: Any = None
    #: Skipped as unchanged (the module's rule).
    unchanged: bool = False


def decide(action: LLMAction, page_ids, *, force: bool = False) -> dict[int, Decision]:
    """For each of ``page_ids`` (a list, or a queryset of page ids), whether a bulk job of
    ``action`` would skip it as unchanged: its newest revision's messages rendered (no model
    call) and :func:`holds` over :func:`written_answers`. A fixed number of queries whatever
    the number of pages (those of :func:`working_copies` and one more); ``force``: nothing
    is unchanged.

    The bulk confirmation screen's preview and the page listing's "stale" filter both ask
    here, so they cannot disagree.
    """
    from .exceptions import LLMActionError

    service = LLMService()
    copies = working_copies(page_ids)
    answers = {} if force else written_answers(action, list(copies))
    result: dict[int, Decision] = {}
    for page_id, obj in copies.items():
        try:
            prepared = service.prepare(action, obj)
        except LLMActionError as e:
            result[page_id] = Decision(error=e)
            continue
        result[page_id] = Decision(prepared, unchanged=holds(answers.get(page_id, []), prepared))
    return result


def stale_page_ids(action: LLMAction, pages=None) -> list[int]:
    """Ids of ``pages`` (a page queryset; all pages by default) of ``action``'s types that the
    action answered before and that a bulk job of it would run again, not skip as unchanged
    (:func:`decide`, the module's rule): the source or another input changed since the answer
    was kept, the answer was replaced since, or it was never written (an editor answer never
    saved, a pipeline step that only fed later steps, a run stopped before its draft) nor
    discarded by a person. Pages the action never answered are not stale, nor those it
    would send nothing for (an empty source, a configuration problem).

    :func:`decide`'s queries whatever the number of pages (five for pages of one type, the
    answered pages a subquery of the first); each page's messages are rendered in Python
    (no model call).
    """
    from django.db.models import Exists
    from wagtail.models import Page

    if action.pk is None:
        return []
    pages = Page.objects.all() if pages is None else pages
    answered = LLMInteraction.objects.filter(
        action=action,
        page_id=OuterRef("pk"),
        status__in=[InteractionStatus.SUCCESS, InteractionStatus.ANSWERED],
        chunk_index__isnull=True,
    )
    answered_pages = (
        pages.filter(content_type__in=action.page_types.all())
        .filter(Exists(answered))
        .order_by()
        .values("pk")
    )
    decisions = decide(action, answered_pages)  # a subquery: no query of its own
    return sorted(pk for pk, d in decisions.items() if d.error is None and not d.unchanged)


__all__ = [
    "Decision",
    "WrittenAnswer",
    "decide",
    "holds",
    "stale_page_ids",
    "unchanged_since_last_write",
    "working_copies",
    "written_answers",
]
