"""Recording a run: the interaction and run rows, failures, and the page-history entry.

A paid call is always logged: a row the database refuses for its texts is saved without them
(:func:`write_logged`). Links to rows deleted while the model answered (the page, its
revisions, the action) are cleared before a row is saved (:func:`detach_deleted`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.utils.translation import gettext as _
from wagtail.log_actions import log
from wagtail.models import Page

from .. import db, log_actions, rowstate
from ..exceptions import AnswerNotStored, LLMActionError, PageGone, SourceEmpty
from ..models import (
    InteractionOutcome,
    InteractionStatus,
    LLMAction,
    LLMInteraction,
    LLMRun,
    RunKind,
    RunStatus,
)

logger = logging.getLogger(__name__)

LOG_ACTION = log_actions.GENERATE


# -- rows ------------------------------------------------------------------------------------


def new_interaction(action: LLMAction, obj: Any, user, trigger, base_revision) -> LLMInteraction:
    """The (unsaved) interaction of a run of ``action`` on ``obj``."""
    from django.contrib.contenttypes.models import ContentType

    saved = obj.pk is not None  # a page being created in the editor has no id yet
    # A pipeline step with its own prompt runs as an unsaved action: no action row (the
    # name, run and step say what ran), no prompt revision.
    transient = action.pk is None
    return LLMInteraction(
        action=None if transient else action,
        action_name=action.name,
        page=obj if isinstance(obj, Page) and saved else None,
        content_type=ContentType.objects.get_for_model(obj, for_concrete_model=False),
        object_id=str(obj.pk) if saved else "",
        base_revision=base_revision,
        user=user if user is not None and user.is_authenticated else None,
        trigger=trigger,
        model=action.model,
        prompt_revision_id=None if transient else action.prompt.current_revision_id(),
        target_field=action.target_field,
    )


def start_run(
    run: LLMRun, on_started: Callable[[LLMRun], None] | None, *, what: str = "starting a run"
) -> LLMRun:
    """Save the new ``run``, calling ``on_started(run)`` in that transaction."""

    def start() -> None:
        run.save()
        if on_started is not None:
            on_started(run)

    db.write(start, what=what)
    return run


def start_map_reduce(
    interaction: LLMInteraction, name: str, on_started: Callable[[LLMRun], None] | None
) -> LLMRun:
    """The run linking the parts of a map-reduce run of one action to ``interaction``."""
    run = LLMRun(
        kind=RunKind.MAP_REDUCE,
        name=name,
        page=interaction.page,
        object_id=interaction.object_id,
        user=interaction.user,
        trigger=interaction.trigger,
        base_revision=interaction.base_revision,
    )
    start_run(run, on_started)
    interaction.run = run
    return run


def save_run(run: LLMRun) -> None:
    """Save ``run`` (inside a write transaction), first clearing its links to rows deleted
    while it ran (its page and their revisions, its pipeline, the run it reran), one query."""
    from wagtail.models import Revision

    rows: dict[str, tuple[type, Any]] = {}
    if run.page_id is not None:
        rows["page"] = (Page, run.page_id)
    for name in ("base_revision", "revision"):
        if getattr(run, f"{name}_id") is not None:
            rows[name] = (Revision, getattr(run, f"{name}_id"))
    if run.pipeline_id is not None:
        from ..models import LLMPipeline

        rows["pipeline"] = (LLMPipeline, run.pipeline_id)
    if run.rerun_of_id is not None:
        rows["rerun_of"] = (LLMRun, run.rerun_of_id)
    for name in rows.keys() - rowstate.existing(rows):
        setattr(run, name, None)
    run.save()


def finish_run(run: LLMRun, status: str, error: str = "", *, what: str = "finishing a run") -> None:
    """Record how ``run`` ended: its status, error and end time (its own write)."""
    mark_ended(run, status, error)
    db.write(lambda: save_run(run), what=what)


def mark_ended(run: LLMRun, status: str, error: str = "") -> None:
    """Set how ``run`` ended (not saved: for a caller that saves it in its own write)."""
    from django.utils import timezone

    run.status = status
    run.error_message = error
    run.finished_at = timezone.now()


def end_abandoned(
    runs: Iterable[LLMRun | int], message: str, *, what: str = "ending runs whose worker stopped"
) -> None:
    """End as failed, with ``message``, the runs a dead worker left "running" (one UPDATE; a
    run that has ended meanwhile is left as it is). A run given as a row that is no longer
    "running" is skipped; one that is, is marked ended too (:func:`mark_ended`)."""
    from django.utils import timezone

    ended = timezone.now()
    ids = []
    for run in runs:
        if isinstance(run, LLMRun):
            if run.status != RunStatus.RUNNING:
                continue
            mark_ended(run, RunStatus.ERROR, message)
            run.finished_at = ended
            run = run.pk
        ids.append(run)
    if not ids:
        return
    db.write(
        lambda: LLMRun.objects.filter(pk__in=ids, status=RunStatus.RUNNING).update(
            status=RunStatus.ERROR, error_message=message, finished_at=ended
        ),
        what=what,
    )


def finish_run_quietly(run: LLMRun, status: str, error: str = "", **kwargs) -> None:
    """:func:`finish_run`, logging a failure to record it (the interactions tell the story)."""
    try:
        finish_run(run, status, error, **kwargs)
    except Exception:  # noqa: BLE001
        logger.exception("Could not record the end of run %s", run.pk)


def stopped_status(interaction: LLMInteraction) -> str:
    """A run that stopped after ``interaction``: answered (its answer is stored and can still
    be written) or failed."""
    if interaction.status == InteractionStatus.ANSWERED:
        return RunStatus.ANSWERED
    return RunStatus.ERROR


def end_run(interaction: LLMInteraction, error: LLMActionError | None = None) -> None:
    """Record how a map-reduce run of one action ended (pipelines record their own)."""
    run = interaction.run
    if run is None or run.kind != RunKind.MAP_REDUCE:
        return
    run.revision_id = interaction.revision_id
    if error is None:
        finish_run_quietly(run, RunStatus.SUCCESS)
    else:
        finish_run_quietly(run, stopped_status(interaction), error.message)


# -- failures --------------------------------------------------------------------------------


def record_failure(interaction: LLMInteraction, error: LLMActionError, started) -> None:
    """Save ``interaction`` as failed with ``error`` (a skip when there was nothing to send);
    ``error.interaction`` is set to it."""
    # Nothing to send is a skip, not an error (the report does not count it as one).
    skipped = error.code == SourceEmpty.code
    interaction.status = InteractionStatus.SKIPPED if skipped else InteractionStatus.ERROR
    interaction.error_code = error.code
    interaction.error_message = error.message
    interaction.revision = None
    interaction.outcome = InteractionOutcome.NONE
    if interaction.latency_ms is None:
        interaction.latency_ms = int((time.perf_counter() - started) * 1000)

    def save() -> None:
        if detach_deleted(interaction) and error.code == "internal":
            interaction.error_code = PageGone.code
            interaction.error_message = str(page_gone())
        interaction.save()

    write_logged(interaction, save, what="recording a failed run")
    error.interaction = interaction
    if skipped:
        # Nothing to send: the page is skipped (as a bulk job counts it), not a failure.
        logger.info(
            "LLM action %s skipped (%s): %s", interaction.action_name, error.code, error.message
        )
        return
    logger.warning(
        "LLM action %s failed (%s): %s", interaction.action_name, error.code, error.message
    )


def fail(interaction: LLMInteraction, error: LLMActionError, started) -> LLMActionError:
    """Record that the run of ``interaction`` stopped with ``error``; returns ``error``."""
    record_failure(interaction, error, started)
    end_run(interaction, error)
    return error


def run_error(action: LLMAction, obj: Any, error: Exception) -> LLMActionError:
    """What a run that stopped on ``error`` reports (the error itself if it is ours)."""
    from ..models import LongContent
    from ..providers import ContextWindowError, ProviderError

    if isinstance(error, ProviderError):
        if isinstance(error, ContextWindowError) and action.long_content == LongContent.MAP_REDUCE:
            from .calls import map_reduce

            return map_reduce.window_error(action, error)  # never "choose a shorter source"
        return LLMActionError(str(error), code=error.code, retryable=error.retryable)
    if isinstance(error, LLMActionError):
        return error
    logger.exception("LLM action %s failed on %r", action.slug, obj)
    if refused_content(error):
        return not_stored(error)
    return LLMActionError(
        _("The action failed unexpectedly (%(type)s). The content was not changed.")
        % {"type": type(error).__name__},
        code="internal",
    )


def refused_content(error: BaseException) -> bool:
    """Whether the database refused a row for what it holds (text it cannot encode, a value
    it cannot take), rather than because it was busy or a linked row is gone."""
    from django.db import DataError

    return isinstance(error, ValueError | DataError) and not db.is_busy_error(error)


def not_stored(error: BaseException) -> AnswerNotStored:
    return AnswerNotStored(
        _(
            "The model answered, but the database could not store the answer (%(type)s). The "
            "call is logged with its tokens and cost; the content was not changed."
        )
        % {"type": type(error).__name__}
    )


def write_logged(interaction: LLMInteraction, save: Callable[[], None], *, what: str) -> bool:
    """``db.write(save)`` for a write of ``interaction``. If the database refuses the row
    for its content (:func:`refused_content`), the row is saved again without its texts
    (the call's model, tokens, cost and the reason are kept) and False is returned: a paid
    call is always logged."""
    try:
        db.write(save, what=what)
        return True
    except Exception as e:
        if not refused_content(e):
            raise
        logger.exception("The database refused the texts of a call of %s", interaction.action_name)
        _without_texts(interaction, e)
        db.write(save, what=what)
        return False


def _without_texts(interaction: LLMInteraction, error: BaseException) -> None:
    """Leave out every text of ``interaction`` (what the database refused), saying so."""
    from ..storable import merge_notes

    interaction.messages = []
    interaction.response_text = interaction.output_value = interaction.previous_value = ""
    interaction.output_values, interaction.previous_values = {}, {}
    interaction.field_outcomes, interaction.candidates = {}, []
    note = _(
        "The database refused this call's texts (%(type)s), so they are left out; its "
        "tokens and cost are kept."
    ) % {"type": type(error).__name__}
    limit = LLMInteraction._meta.get_field("storage_note").max_length
    interaction.storage_note = merge_notes(interaction.storage_note, note, limit)


# -- deleted rows ----------------------------------------------------------------------------


def page_deleted(interaction: LLMInteraction) -> bool:
    """Whether the page ``interaction`` was run on has been deleted (one query)."""
    return (
        interaction.page_id is not None and not Page.objects.filter(pk=interaction.page_id).exists()
    )


def page_gone(interaction: LLMInteraction | None = None) -> PageGone:
    """The error of a run whose page was deleted while the model answered."""
    return PageGone(
        _(
            "The page was deleted while the model was answering. The answer is kept in this "
            "log; nothing was written."
        ),
        interaction=interaction,
    )


def detach_deleted(
    interaction: LLMInteraction,
    *,
    page_locked: bool = False,
    known: tuple[dict, frozenset[str] | None] | None = None,
) -> bool:
    """Clear references to a page (and revisions, an action) deleted meanwhile, so the
    interaction can still be saved; one query. Locks the page row against deletion until the
    transaction ends, unless the caller holds it (``page_locked``). ``known`` is ``(rows,
    found)``: rows (from :func:`linked_rows`) this transaction has asked about already, and
    those found; if they are still the rows to ask about, no query is made. Returns whether
    the page is gone."""
    rows = linked_rows(interaction, page_locked=page_locked)
    if known is not None and known[1] is not None and known[0] == rows:
        found = known[1]
    else:
        found = rowstate.existing(rows, lock="page" if "page" in rows else None)
    for name in rows.keys() - found:
        setattr(interaction, name, None)
    return "page" in rows and "page" not in found


def linked_rows(interaction: LLMInteraction, *, page_locked: bool = False) -> dict:
    """The rows ``interaction`` links to that may be deleted while it runs (name → ``(model,
    pk)``): its page (unless the caller holds its row, ``page_locked``), revisions, action."""
    from wagtail.models import Revision

    rows: dict[str, tuple[type, Any]] = {}
    if interaction.page_id is not None and not page_locked:
        rows["page"] = (Page, interaction.page_id)
    for name in ("base_revision", "revision"):
        if getattr(interaction, f"{name}_id") is not None:
            rows[name] = (Revision, getattr(interaction, f"{name}_id"))
    if interaction.action_id is not None:
        # The action may be deleted while the model answers; the row keeps its name.
        rows["action"] = (LLMAction, interaction.action_id)
    return rows


# -- page history ----------------------------------------------------------------------------


def log_generated(obj, user, revision, action: LLMAction | None, interaction: LLMInteraction):
    """The page-history entry for an answer written into ``revision``.

    Wagtail's ``log()`` saves the entry after ``full_clean()``, which proves with one query per
    foreign key that the page, the revision and the content type exist; here they are the row
    this transaction locked, the revision it just saved and a cached content type. For a page
    the entry is built as ``log()`` builds it and validated without those queries; other
    objects go through ``log()``.
    """
    data = {
        "llm_action": {
            "id": action.pk if action else interaction.action_id,
            "name": action.name if action else interaction.action_name,
        },
        "interaction_id": interaction.pk,
        "target_field": ", ".join(interaction.output_values or {})
        or interaction.target_field
        or (action.target_field if action else ""),
    }
    from django.contrib.contenttypes.models import ContentType
    from django.db.models import Model
    from django.utils import timezone
    from wagtail.log_actions import get_active_log_context
    from wagtail.log_actions import registry as log_registry
    from wagtail.models import PageLogEntry

    log_registry.scan_for_actions()
    if (
        not isinstance(obj, Page)
        or log_registry.get_log_model_for_instance(obj) is not PageLogEntry
    ):
        log(
            instance=obj,
            action=LOG_ACTION,
            user=user,
            revision=revision,
            content_changed=True,
            data=data,
        )
        return
    context = get_active_log_context()
    entry = PageLogEntry(
        content_type=ContentType.objects.get_for_model(obj, for_concrete_model=False),
        label=PageLogEntry.objects.get_instance_title(obj),
        action=LOG_ACTION,
        timestamp=timezone.now(),
        data=data,
        user=user or context.user,
        uuid=context.uuid,
        page=obj,
        revision=revision,
        content_changed=True,
    )
    entry.full_clean(exclude=["content_type", "page", "revision", "user"])
    Model.save(entry)  # PageLogEntry.save() would run full_clean() again, with its queries
