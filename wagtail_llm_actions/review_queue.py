"""The review queue of a bulk job: every draft the job wrote, and accepting or rejecting them.

Domain operations only (no HTTP); the admin screen is :mod:`.views.review_queue`::

    queue = Queue.of(job, user)                        # its drafts on pages user may edit
    rows = load_rows(job, user, queue.revision_ids[:50])  # with their changes
    accept(row, user, fields=None, then=Then.PUBLISH)  # keep the draft (and publish it)
    reject(row, user, fields=None)                     # restore the previous value

A row is a page whose draft the job wrote, with the calls that wrote it (one, or a
pipeline's writing steps) and the field-by-field difference from the revision before, made
by Wagtail's own comparison classes (the page's edit handler, as Wagtail's "Compare
revisions" view). Rejecting is :func:`.review.discard` (a new draft restores the previous
value; the outcome is recorded as "discarded"); accepting records "accepted" and can then
publish the page's latest revision or submit it to moderation, with the page's permissions
checked for each page. Outcomes are the interactions' own, so the interaction report shows
them.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import QuerySet
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from wagtail.models import Page, PageLogEntry, Revision

from . import db, log_actions, rowstate
from .exceptions import ActionNotAllowed, LLMActionError, PageLocked
from .models import InteractionOutcome, InteractionStatus, ItemStatus, LLMInteraction, LLMJob
from .permissions import editable_pages_q, has_admin_access
from .review import discard, discard_problem, is_published, keep
from .run.access import lock_reason

ACCEPTED = InteractionOutcome.ACCEPTED.value
DISCARDED = InteractionOutcome.DISCARDED.value
EDITED = InteractionOutcome.EDITED.value
DECIDED = (ACCEPTED, DISCARDED, EDITED)
#: Rows of the queue on one page of the listing.
PER_PAGE = 50


class RowState:
    """What the reviewer has done with a row (its status tag and filter)."""

    TO_REVIEW = "to_review"
    PARTLY = "partly"
    ACCEPTED = "accepted"
    MIXED = "mixed"
    REJECTED = "rejected"

    labels = {
        TO_REVIEW: gettext_lazy("To review"),
        PARTLY: gettext_lazy("Partly reviewed"),
        ACCEPTED: gettext_lazy("Accepted"),
        MIXED: gettext_lazy("Partly accepted"),
        REJECTED: gettext_lazy("Rejected"),
    }
    #: Wagtail status tag classes: decided rows stand out less than those to review.
    classes = {TO_REVIEW: "w-status--primary", PARTLY: "w-status--primary"}


def row_state(outcomes: list[tuple[str, dict]]) -> str:
    """The state of a row from its calls' ``(outcome, field_outcomes)``."""
    values = [outcome for outcome, _fields in outcomes]
    if all(v == DISCARDED for v in values):
        return RowState.REJECTED
    if all(v == ACCEPTED for v in values):
        return RowState.ACCEPTED
    if all(v in DECIDED for v in values):
        return RowState.MIXED
    if any(v in DECIDED for v in values) or any(fields for _outcome, fields in outcomes):
        return RowState.PARTLY
    return RowState.TO_REVIEW


class Then(enum.StrEnum):
    """What Accept does after keeping the draft."""

    KEEP = ""
    PUBLISH = "publish"
    SUBMIT = "submit"


class CannotReview(LLMActionError):
    code = "cannot_review"


@dataclass
class FieldChange:
    """One field of the page that differs from the revision before."""

    name: str
    comparison: object  # a wagtail.admin.compare comparison, rendered by the template
    #: The call that wrote this field (Accept/Reject per field), or None if the job did not.
    interaction: LLMInteraction | None = None
    #: The field's key in the interaction's output (a structured answer), else "".
    output_key: str = ""
    outcome: str = ""

    @property
    def label(self) -> str:
        return self.comparison.field_label()

    @property
    def is_open(self) -> bool:
        return self.interaction is not None and self.outcome not in DECIDED


@dataclass
class DraftRow:
    """One page of a job whose draft is up for review."""

    page: Page
    revision_id: int
    previous_revision_id: int | None
    interactions: list[LLMInteraction]
    changes: list[FieldChange] = field(default_factory=list)

    @property
    def pk(self) -> int:
        return self.page.pk

    @property
    def state(self) -> str:
        return row_state([(i.outcome, i.field_outcomes or {}) for i in self.interactions])

    @property
    def state_label(self) -> str:
        return str(RowState.labels[self.state])

    @property
    def state_class(self) -> str:
        return RowState.classes.get(self.state, "")

    @property
    def is_open(self) -> bool:
        """Whether anything is left to accept or reject."""
        return self.state in (RowState.TO_REVIEW, RowState.PARTLY)

    @property
    def is_published(self) -> bool:
        return any(is_published(i) for i in self.interactions)


def top_field(path: str) -> str:
    """The model field a target path writes to (``body.paragraph`` → ``body``)."""
    return path.split(".", 1)[0]


def job_interactions(job: LLMJob, user) -> QuerySet:
    """The successful calls whose drafts ``job`` wrote, on pages ``user`` may edit."""
    if not has_admin_access(user):
        return LLMInteraction.objects.none()
    revisions = job.items.filter(status=ItemStatus.SUCCEEDED).values("interaction__revision_id")
    queryset = LLMInteraction.objects.filter(
        revision_id__in=revisions,
        page__isnull=False,
        status=InteractionStatus.SUCCESS,
    ).exclude(outcome=InteractionOutcome.FED)
    if not user.is_superuser:
        editable = editable_pages_q(user)
        if editable is None:
            return queryset.none()
        queryset = queryset.filter(editable)
    return queryset


@dataclass
class Queue:
    """The drafts of a job in the order of the page tree, as the explorer lists pages (one
    query): what the listing pages through, and how many are in each state."""

    revision_ids: list[int]
    states: dict[int, str]

    @classmethod
    def of(cls, job: LLMJob, user) -> Queue:
        outcomes: dict[int, list] = {}
        for revision_id, outcome, fields in (
            job_interactions(job, user)
            .order_by("page__path", "revision_id", "pk")
            .values_list("revision_id", "outcome", "field_outcomes")
        ):
            outcomes.setdefault(revision_id, []).append((outcome, fields or {}))
        return cls(list(outcomes), {pk: row_state(o) for pk, o in outcomes.items()})

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(RowState.labels, 0)
        for state in self.states.values():
            counts[state] += 1
        return counts

    def filtered(self, state: str) -> list[int]:
        if state not in RowState.labels:
            return self.revision_ids
        return [pk for pk in self.revision_ids if self.states[pk] == state]


def load_rows(job: LLMJob, user, revision_ids: list[int], request=None) -> list[DraftRow]:
    """The rows of ``revision_ids`` with their changes: a fixed number of queries (the
    calls, the revisions' content, the pages by type), however many rows."""
    interactions = (
        job_interactions(job, user)
        .filter(revision_id__in=revision_ids)
        .select_related("revision")
        .only(*ROW_FIELDS)
        .annotate(previous_revision_id=Revision.objects.previous_revision_id_subquery())
        .order_by("revision_id", "pk")
    )
    order = {pk: index for index, pk in enumerate(revision_ids)}
    rows = sorted(group_rows(interactions), key=lambda row: order[row.revision_id])
    add_changes(rows, request)
    return rows


#: What a row reads of its calls (not the messages and answers, which can be long).
ROW_FIELDS = [
    "id",
    "action_id",
    "action_name",
    "page_id",
    "revision_id",
    "revision__created_at",
    "revision__object_id",
    "target_field",
    "outcome",
    "status",
    "output_values",
    "field_outcomes",
    "created_at",
]


def group_rows(interactions: Iterable[LLMInteraction]) -> list[DraftRow]:
    """One row per draft revision (a page)."""
    rows: dict[int, DraftRow] = {}
    for interaction in interactions:
        row = rows.get(interaction.revision_id)
        if row is None:
            rows[interaction.revision_id] = DraftRow(
                page=Page(pk=interaction.page_id),
                revision_id=interaction.revision_id,
                previous_revision_id=interaction.previous_revision_id,
                interactions=[interaction],
            )
        else:
            row.interactions.append(interaction)
    return list(rows.values())


def as_object(page: Page, content: dict) -> Page:
    """The page as a revision holds it, for comparing field values.

    What :meth:`Page.with_content_json` makes for Wagtail's compare view, without the
    queries it runs to restore what belongs to the page as a whole (its parent's URL path,
    its comments' positions, a check that each foreign key exists): no comparison reads
    those, and a queue compares hundreds.
    """
    obj = page.specific_class.from_serializable_data(content, check_fks=False)
    obj.id = obj.pk = page.pk
    obj.content_type_id = page.content_type_id
    obj.path, obj.depth, obj.numchild = page.path, page.depth, page.numchild
    obj.locale_id = page.locale_id
    return obj


def _comparison_classes(page: Page, request) -> list:
    """The page type's comparisons, as Wagtail's ``RevisionsCompareView`` builds them."""
    return (
        page.get_edit_handler()
        .get_bound_panel(instance=page, request=request, form=None)
        .get_comparison()
    )


def add_changes(rows: list[DraftRow], request) -> None:
    """Fill each row's ``page`` (specific) and ``changes``: the fields that differ between
    the revision before and the job's draft."""
    ids = {row.revision_id for row in rows} | {
        row.previous_revision_id for row in rows if row.previous_revision_id
    }
    contents = dict(Revision.objects.filter(pk__in=ids).values_list("pk", "content"))
    specific = {
        page.pk: page
        for page in Page.objects.filter(pk__in=[row.page.pk for row in rows]).specific()
    }
    comparisons: dict[type, list] = {}
    for row in rows:
        page = specific.get(row.page.pk)
        if page is None:
            continue
        row.page = page
        for interaction in row.interactions:
            interaction.page = page
        if row.revision_id not in contents:
            continue
        cls = type(page)
        if cls not in comparisons:
            comparisons[cls] = _comparison_classes(page, request)
        after_content = contents[row.revision_id]
        before_content = contents.get(row.previous_revision_id)
        if before_content is None:
            before = page
        else:
            # Only the fields whose stored value differs can differ when compared.
            changed = {k for k in after_content if before_content.get(k) != after_content[k]}
            if not changed:
                continue
            before = as_object(page, before_content)
        after = as_object(page, after_content)
        writers = _writers(row)
        for comparison_class in comparisons[cls]:
            name = comparison_class.args[0].name if hasattr(comparison_class, "args") else None
            if (
                before_content is not None
                and name
                and (name in after_content or name in before_content)
                and name not in changed
            ):
                continue  # stored under its own name, and the same in both revisions
            comparison = comparison_class(before, after)
            if not comparison.has_changed():
                continue
            name = comparison.field.name
            interaction, key = writers.get(name, (None, ""))
            outcome = ""
            if interaction is not None:
                outcome = (interaction.field_outcomes or {}).get(key, "") if key else ""
                outcome = outcome or interaction.outcome
            row.changes.append(FieldChange(name, comparison, interaction, key, outcome))


def _writers(row: DraftRow) -> dict[str, tuple[LLMInteraction, str]]:
    """Model field name → (the call that wrote it, its output key for a structured one)."""
    writers = {}
    for interaction in row.interactions:
        if interaction.output_values:
            for key in interaction.output_values:
                writers[top_field(key)] = (interaction, key)
        elif interaction.target_field:
            writers[top_field(interaction.target_field)] = (interaction, "")
    return writers


def get_row(job: LLMJob, user, page_id: int) -> DraftRow | None:
    """The row of one page (its changes not computed), if ``user`` may act on it."""
    return get_rows(job, user, [page_id]).get(page_id)


def get_rows(job: LLMJob, user, page_ids: list[int]) -> dict[int, DraftRow]:
    """Page id → its row (changes not computed, the page specific) for the pages of
    ``page_ids`` that ``user`` may act on: the same queries for one page or hundreds (the
    calls, the pages, one more per page type)."""
    interactions = (
        job_interactions(job, user)
        .filter(page_id__in=page_ids)
        .select_related("revision")
        .annotate(previous_revision_id=Revision.objects.previous_revision_id_subquery())
        .order_by("revision_id", "pk")
    )
    rows: dict[int, DraftRow] = {}
    for row in group_rows(interactions):
        rows[row.page.pk] = row  # a page run twice by the job (a retry): its latest draft
    if rows:
        for page in Page.objects.filter(pk__in=list(rows)).specific():
            rows[page.pk].page = page
            for interaction in rows[page.pk].interactions:
                interaction.page = page
    return rows


# -- acting on rows ------------------------------------------------------------------


def _check_edit(page: Page, user) -> None:
    if not page.permissions_for_user(user).can_edit():
        raise ActionNotAllowed()


def _targets(row: DraftRow, fields: list[str] | None) -> list[tuple[LLMInteraction, list | None]]:
    """The calls (with their output keys, for a structured answer) that ``fields`` names."""
    if fields is None:
        return [(i, None) for i in row.interactions]
    wanted = set(fields)
    targets = []
    for interaction in row.interactions:
        if interaction.output_values:
            keys = [k for k in interaction.output_values if k in wanted or top_field(k) in wanted]
            if keys:
                targets.append((interaction, keys))
        elif interaction.target_field and (
            interaction.target_field in wanted or top_field(interaction.target_field) in wanted
        ):
            targets.append((interaction, None))
    if not targets:
        raise CannotReview(_("The job did not write these fields."))
    return targets


def _settle(interaction: LLMInteraction) -> None:
    """Once every field of a structured answer is decided: "accepted" if all were, else
    "edited" (some were put back); "discarded" is set by :func:`.review.discard`."""
    written = list(interaction.output_values or {})
    outcomes = interaction.field_outcomes or {}
    if not written or interaction.outcome in DECIDED:
        return
    if any(outcomes.get(k) not in (ACCEPTED, DISCARDED) for k in written):
        return
    interaction.outcome = (
        InteractionOutcome.ACCEPTED
        if all(outcomes[k] == ACCEPTED for k in written)
        else InteractionOutcome.EDITED
    )
    interaction.save(update_fields=["outcome"])


def reject(row: DraftRow, user, fields: list[str] | None = None) -> int:
    """Restore the previous value of what the job wrote (every field, or ``fields``) in a new
    draft, as the editor's Discard does; returns how many calls were rejected."""
    page = row.page.specific
    _check_edit(page, user)
    count = 0
    for interaction, keys in _targets(row, fields):
        if interaction.outcome == DISCARDED:
            continue
        if keys is None and interaction.output_values:
            outcomes = interaction.field_outcomes or {}
            keys = [k for k in interaction.output_values if outcomes.get(k) != DISCARDED]
            if len(keys) == len(interaction.output_values):
                keys = None  # the whole answer
        if keys and all((interaction.field_outcomes or {}).get(k) == DISCARDED for k in keys):
            continue
        problem = discard_problem(interaction)
        if problem:
            raise CannotReview(problem)
        interaction.page = page
        discard(interaction, user, fields=keys)
        _settle(interaction)
        count += 1
    return count


def accept_many(
    rows: list[DraftRow], user, fields: list[str] | None = None, then: Then = Then.KEEP
) -> tuple[int, list[tuple[DraftRow, LLMActionError]]]:
    """:func:`accept` for each row: the pages' locks read at once and the outcomes written by
    one statement, so keeping N drafts costs the same queries as keeping one (publishing or
    submitting still costs Wagtail's own per page). Returns (rows done, rows refused)."""
    flags = rowstate.page_lock_flags([row.page for row in rows])
    accepted: list[int] = []
    done, errors = 0, []
    with db.atomic_write():
        for row in rows:
            try:
                accept(row, user, fields, then, flags=flags.get(row.page.pk), accepted=accepted)
            except LLMActionError as e:
                errors.append((row, e))
                continue
            done += 1
        _mark_accepted(accepted)
    return done, errors


def _mark_accepted(pks: list[int]) -> None:
    if pks:
        LLMInteraction.objects.filter(pk__in=pks).update(outcome=InteractionOutcome.ACCEPTED)


def accept(
    row: DraftRow,
    user,
    fields: list[str] | None = None,
    then: Then = Then.KEEP,
    *,
    flags: rowstate.LockFlags | None = None,
    accepted: list[int] | None = None,
) -> int:
    """Keep the job's draft (every field, or ``fields``), recording "accepted"; then, if
    asked, publish the page's latest revision or submit it to moderation (each checked
    against the user's permissions on this page). Returns how many calls were accepted.
    ``flags``: the page's lock state, if read already; ``accepted``: a list to add the calls
    to mark accepted to (written by the caller, :func:`accept_many`), instead of here."""
    page = row.page.specific
    _check_edit(page, user)
    problem = lock_reason(user, page, flags)
    if problem is not None:
        raise PageLocked(problem.message)
    then = Then(then)
    perms = page.permissions_for_user(user)
    title = page.get_admin_display_title()
    if then == Then.PUBLISH and not perms.can_publish():
        raise ActionNotAllowed(_("You may not publish “%(page)s”.") % {"page": title})
    if then == Then.SUBMIT and not perms.can_submit_for_moderation():
        raise CannotReview(
            _("“%(page)s” cannot be submitted for moderation: it has no workflow, or is in one.")
            % {"page": title}
        )
    if then != Then.KEEP:
        _check_latest(page, row)
    targets = [(i, _keys_to_accept(i, keys)) for i, keys in _targets(row, fields)]
    plain: list[int] = []
    with db.atomic_write() if accepted is None else contextlib.nullcontext():
        for interaction, keys in targets:
            if interaction.outcome == InteractionOutcome.PENDING:
                interaction.page = page
                keep(interaction, user)  # an answer never saved: written as a draft first
            if keys is not None:
                outcomes = dict(interaction.field_outcomes or {})
                outcomes.update(dict.fromkeys(keys, ACCEPTED))
                interaction.field_outcomes = outcomes
                interaction.save(update_fields=["field_outcomes"])
                _settle(interaction)
            elif interaction.outcome != ACCEPTED:
                interaction.outcome = InteractionOutcome.ACCEPTED
                plain.append(interaction.pk)
        if accepted is None:
            _mark_accepted(plain)
        else:
            accepted.extend(plain)
    count = len(targets)
    if then == Then.PUBLISH:
        page.get_latest_revision().publish(user=user)
    elif then == Then.SUBMIT:
        with transaction.atomic():
            page.get_workflow().start(page, user)
    return count


def _keys_to_accept(interaction: LLMInteraction, keys: list | None) -> list | None:
    """The output keys of a structured answer to accept (None: a plain answer); refuses a
    rejected field or draft before anything is written."""
    if not interaction.output_values:
        if interaction.outcome == DISCARDED:
            raise CannotReview(_("A rejected draft cannot be accepted again."))
        return None
    outcomes = interaction.field_outcomes or {}
    keys = keys or [k for k in interaction.output_values if outcomes.get(k) is None]
    if any(outcomes.get(k) == DISCARDED for k in keys):
        raise CannotReview(_("A rejected field cannot be accepted again."))
    return keys


def _check_latest(page: Page, row: DraftRow) -> None:
    """Publishing or submitting takes the page's latest revision: refuse if someone saved a
    draft after the job's (only the job's draft, or the review's own, go live here)."""
    latest = page.latest_revision_id
    if latest == row.revision_id:
        return
    ours = PageLogEntry.objects.filter(
        action=log_actions.DISCARD,
        revision_id=latest,
        data__interaction_id__in=[i.pk for i in row.interactions],
    ).exists()
    if not ours:
        raise CannotReview(
            _(
                "“%(page)s” has a newer draft than the job's, so it was not published or "
                "submitted. Open it in the editor."
            )
            % {"page": page.get_admin_display_title()}
        )
