"""Running one claimed item to its outcome: an action's run or a pipeline's, a stored
answer written without a call, skips, retries with backoff, and failures.
"""

from __future__ import annotations

import logging

from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .. import db, response_cache
from ..exceptions import (
    ActionNotAllowed,
    ActionNotApplicable,
    BudgetExceeded,
    LLMActionError,
    PageInModeration,
    PageLocked,
    SourceEmpty,
)
from ..models import (
    InteractionStatus,
    ItemStatus,
    JobStatus,
    LLMInteraction,
    LLMJob,
    LLMJobItem,
    LLMPipeline,
    LLMRun,
)
from ..service import LLMService
from ..unchanged import unchanged_since_last_write
from .claims import LOST, _done, _finish
from .context import _RunContext
from .leases import _job_open, backoff_seconds, db_in
from .pauses import pause_item
from .planning import (
    SKIP_DELETED,
    SKIP_LOCKED,
    SKIP_MODERATION,
    SKIP_NO_PERMISSION,
    SKIP_PIPELINE_DELETED,
    SKIP_PIPELINE_DISABLED,
    SKIP_SOURCE_EMPTY,
    SKIP_UNCHANGED,
    SKIP_WRONG_TYPE,
    skip_reason_label,
)
from .slots import NoSlot

logger = logging.getLogger(__name__)

#: ``LLMActionError.code`` values that mean "skip this page" rather than "failed".
_SKIP_CODES = {
    ActionNotAllowed.code: SKIP_NO_PERMISSION,
    PageLocked.code: SKIP_LOCKED,
    PageInModeration.code: SKIP_MODERATION,
    ActionNotApplicable.code: SKIP_WRONG_TYPE,
    SourceEmpty.code: SKIP_SOURCE_EMPTY,
}


class LeaseLost(LLMActionError):
    """The item was reclaimed by another worker while this one was running it."""

    code = "lease_lost"


def _stop_for_action(ctx: _RunContext, item: LLMJobItem, claim_token: str, code: str) -> str:
    """The action (or the pipeline) was disabled or deleted while the job ran: this item and
    every queued one are skipped with that reason, and the job ends (cancelled, with the
    reason recorded)."""
    now = timezone.now()
    message = skip_reason_label(code)

    def stop() -> None:
        ctx.job.items.filter(status=ItemStatus.QUEUED).update(
            status=ItemStatus.SKIPPED, skip_reason=code, updated_at=now
        )
        job = LLMJob.objects.filter(pk=ctx.job.pk).first()
        if job is not None:
            options = {**(job.options or {}), "stop_reason": str(message)}
            LLMJob.objects.filter(
                pk=job.pk, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
            ).update(status=JobStatus.CANCELLED, finished_at=now, options=options)

    status = _done(item, claim_token, ItemStatus.SKIPPED, skip_reason=code)
    db.write(stop, what="stopping a job")
    logger.info("Job %s stopped: %s", ctx.job.pk, message)
    return status


def _other_item(ctx: _RunContext, item: LLMJobItem, claim_token: str) -> str | None:
    """The outcome of an item that is not an action's run on a live page (its page deleted,
    its worker stopped too often, an image, a pipeline, a page × locale translation); None
    for an action on a page."""
    if item.page is None and item.target_type_id is None:
        return _done(item, claim_token, ItemStatus.SKIPPED, skip_reason=SKIP_DELETED)
    if item.attempts > ctx.max_attempts:
        return _done(
            item,
            claim_token,
            ItemStatus.FAILED,
            error=str(_("The background task running this page stopped too many times.")),
        )
    if isinstance(item.payload, dict) and item.payload.get("locale"):  # page (snippet) × locale
        from .translation_items import process_translation_item

        return process_translation_item(ctx, item, claim_token)
    if item.page is None:
        from .snippets import is_snippet_item

        if is_snippet_item(item):
            return None  # a snippet runs as a page does
        return _image_item(ctx, item, claim_token)
    if ctx.job.pipeline_id is not None:
        return _process_pipeline_item(ctx, item, claim_token)
    return None


def process_item(ctx: _RunContext, item: LLMJobItem, claim_token: str) -> str:
    """Run one claimed item to an outcome; returns its new status, or "lost" if another
    worker took the item over meanwhile (nothing is then recorded by this one)."""
    routed = _other_item(ctx, item, claim_token)
    if routed is not None:
        return routed
    job = ctx.job
    action, stop_code = ctx.current_action()
    if action is None:
        return _stop_for_action(ctx, item, claim_token, stop_code)
    service = LLMService()
    if item.page is not None:
        page = item.page.specific
    else:  # a snippet (see .snippets)
        from .snippets import snippet_of

        page = snippet_of(item)
        if page is None:
            return _done(item, claim_token, ItemStatus.SKIPPED, skip_reason=SKIP_DELETED)
    user = job.user
    stored = item.interaction if item.interaction_id else None

    def on_answer(interaction: LLMInteraction) -> None:
        # In the transaction that stores the answer: a worker that dies before the draft is
        # written leaves the answer linked to the item, and the next claim writes it.
        LLMJobItem.objects.filter(
            pk=item.pk, status=ItemStatus.RUNNING, claimed_by=claim_token
        ).update(interaction=interaction)

    def on_success(interaction: LLMInteraction) -> None:
        ok = _finish(
            item,
            claim_token,
            status=ItemStatus.SUCCEEDED,
            interaction=interaction,
            error="",
            skip_reason="",
            result={
                "revision_id": interaction.revision_id,
                "tokens": interaction.total_tokens,
                "rebased": interaction.rebased,
                "from_stored_answer": interaction.pk == getattr(stored, "pk", None),
            },
        )
        if not ok:
            raise LeaseLost(str(_("Another run of the job took this page over; answer discarded.")))
        if getattr(action, "submit_for_moderation", False):
            submit_after_commit(interaction, user)

    try:
        if stored is not None and stored.status == InteractionStatus.ANSWERED:
            # The model already answered for this item (a worker died, or the write failed):
            # write that answer, never call again.
            service.apply_stored(stored, user, on_success=on_success)
            return ItemStatus.SUCCEEDED
        if not job.force and unchanged_since_last_write(action, page, user, service=service):
            return _done(item, claim_token, ItemStatus.SKIPPED, skip_reason=SKIP_UNCHANGED)

        # Re-running unchanged pages asks the model again, never the response cache.
        with response_cache.bypassed(job.force):
            service.run(
                action,
                page,
                user,
                trigger=ctx.trigger,
                on_success=on_success,
                on_answer=on_answer,
                call_slot=ctx.call_slot,
            )
        return ItemStatus.SUCCEEDED
    except LeaseLost:
        return LOST
    except LLMActionError as e:
        return _item_error(ctx, item, claim_token, e)
    except Exception as e:  # never leave an item running because of a bug  # noqa: BLE001
        if db.is_busy_error(e):
            return _item_busy(ctx, item, claim_token, e)
        return _item_crashed(job, item, claim_token, e)


def submit_after_commit(interaction: LLMInteraction, user) -> None:
    """An automatic draft of an action that asks for it goes to the page's moderation
    workflow once the draft is committed (a failure is logged, never the item's)."""
    from django.db import transaction

    from ..moderation import AUTOMATIC, submit_for_moderation

    if interaction.trigger not in AUTOMATIC or interaction.revision_id is None:
        return

    def submit() -> None:
        try:
            submit_for_moderation(interaction, user)
        except Exception:  # the draft is written; moderation is a courtesy  # noqa: BLE001
            logger.exception("Submitting the draft of interaction %s failed", interaction.pk)

    transaction.on_commit(submit)


def _image_item(ctx: _RunContext, item: LLMJobItem, claim_token: str) -> str:
    """An item whose target is an image (see :mod:`.images`)."""
    from .images import process_image_item

    action, stop_code = ctx.current_action()
    if action is None:
        return _stop_for_action(ctx, item, claim_token, stop_code)
    return process_image_item(ctx, item, claim_token, action)


def _item_busy(ctx: _RunContext, item: LLMJobItem, claim_token: str, e: Exception) -> str:
    """A read the database refused while busy (SQLite): tried again, not a failure."""
    logger.info("Job %s: page %s met a busy database: %s", ctx.job.pk, item.page_id, e)
    busy = LLMActionError(
        str(_("The database was busy; the page will be tried again.")),
        code="busy",
        retryable=True,
    )
    return _item_error(ctx, item, claim_token, busy)


def _item_crashed(job: LLMJob, item: LLMJobItem, claim_token: str, e: Exception) -> str:
    """A bug, not a provider or content problem: log it and fail the item readably."""
    logger.exception("Job %s: page %s failed unexpectedly", job.pk, item.page_id)
    return _done(
        item,
        claim_token,
        ItemStatus.FAILED,
        error=str(_("Unexpected error (%(type)s).") % {"type": type(e).__name__}),
    )


def _item_error(ctx: _RunContext, item: LLMJobItem, claim_token: str, e: LLMActionError) -> str:
    """An item's outcome for a run that raised ``e``: skipped, queued again, or failed."""
    interaction = e.interaction if e.interaction is not None and e.interaction.pk else None
    answered = interaction is not None and interaction.status == InteractionStatus.ANSWERED
    if e.code == NoSlot.code:  # never sent: given back, the attempt not counted
        cancelled = not _job_open(ctx.job.pk)
        return _done(
            item,
            claim_token,
            ItemStatus.CANCELLED if cancelled else ItemStatus.QUEUED,
            claimed_by="",
            attempts=F("attempts") - 1,
        )
    if e.code == BudgetExceeded.code:  # nothing was sent: the job pauses (see .pauses)
        refusal = e if isinstance(e, BudgetExceeded) else e.__cause__  # a pipeline's step
        if not isinstance(refusal, BudgetExceeded):
            refusal = BudgetExceeded(e.message)
        return pause_item(ctx, item, claim_token, refusal)
    if e.code in _SKIP_CODES:
        return _done(
            item,
            claim_token,
            ItemStatus.SKIPPED,
            skip_reason=_SKIP_CODES[e.code],
            error=e.message if (answered or e.code == ActionNotApplicable.code) else "",
            interaction=interaction,
        )
    if e.retryable and item.attempts < ctx.max_attempts:
        return _done(
            item,
            claim_token,
            ItemStatus.QUEUED,
            error=e.message,
            interaction=interaction,
            not_before=db_in(backoff_seconds(item.attempts)),
        )
    return _done(item, claim_token, ItemStatus.FAILED, error=e.message, interaction=interaction)


def _process_pipeline_item(ctx: _RunContext, item: LLMJobItem, claim_token: str) -> str:
    """Run a pipeline job's item: one pipeline run, one draft. The run is linked to the
    item (``payload["run"]``) as soon as it starts, so a retry, or the next claim after a
    worker died, resumes it: steps that already answered are reused, never called again."""
    from ..pipelines import answered_steps, run_pipeline

    job = ctx.job
    pipeline = LLMPipeline.objects.filter(pk=job.pipeline_id).first()
    if pipeline is None:
        return _stop_for_action(ctx, item, claim_token, SKIP_PIPELINE_DELETED)
    if not pipeline.enabled:
        return _stop_for_action(ctx, item, claim_token, SKIP_PIPELINE_DISABLED)
    page = item.page.specific
    run_id = (item.payload or {}).get("run") if isinstance(item.payload, dict) else None
    previous = LLMRun.objects.filter(pk=run_id).first() if run_id else None

    def on_run_started(run: LLMRun) -> None:
        LLMJobItem.objects.filter(
            pk=item.pk, status=ItemStatus.RUNNING, claimed_by=claim_token
        ).update(payload={"run": run.pk})

    def on_success(interaction: LLMInteraction) -> None:
        ok = _finish(
            item,
            claim_token,
            status=ItemStatus.SUCCEEDED,
            interaction=interaction,
            error="",
            skip_reason="",
            result={
                "revision_id": interaction.revision_id,
                "run_id": interaction.run_id,
                "tokens": sum(
                    LLMInteraction.objects.filter(run_id=interaction.run_id)
                    .exclude(total_tokens=None)
                    .values_list("total_tokens", flat=True)
                ),
                "rebased": interaction.rebased,
                "from_stored_answer": previous is not None,
            },
        )
        if not ok:
            raise LeaseLost(str(_("Another run of the job took this page over; answer discarded.")))

    try:
        with ctx.call_slot():  # a pipeline's steps call one after another: one slot
            run_pipeline(
                pipeline,
                page,
                job.user,
                trigger=ctx.trigger,
                previous=previous,
                from_step=answered_steps(previous) if previous is not None else 0,
                on_run_started=on_run_started,
                on_success=on_success,
            )
        return ItemStatus.SUCCEEDED
    except LeaseLost:
        return LOST
    except LLMActionError as e:
        return _item_error(ctx, item, claim_token, e)
    except Exception as e:  # never leave an item running because of a bug  # noqa: BLE001
        if db.is_busy_error(e):
            return _item_busy(ctx, item, claim_token, e)
        return _item_crashed(job, item, claim_token, e)
