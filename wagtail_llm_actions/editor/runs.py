"""Running an editor job (the django-q2 task :func:`run_editor_job`), cancelling it, and
the status the browser polls.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.utils import timezone
from django.utils.translation import gettext as _

from .. import db, response_cache
from ..conf import get_setting
from ..exceptions import LLMActionError
from ..models import (
    InteractionOutcome,
    InteractionTrigger,
    ItemStatus,
    JobKind,
    JobStatus,
    LLMInteraction,
    LLMJob,
    LLMJobItem,
)
from ..providers import streaming
from .leases import _claim, _finish, _lapsed_flag, _link, _record_run, _renewing, expire_item
from .results import _writers, editor_result, pipeline_result
from .snippets import working_object
from .streams import PartialText, partial_text, streams

logger = logging.getLogger(__name__)


def run_editor_job(item_id: int) -> str:
    """The django-q2 task: run an editor job's one item and store the field value.

    A claimed item always ends: a bug or a broken payload anywhere after the claim fails it
    with the error's type only (the traceback goes to the log), never leaving a spinner; a
    worker that dies stops renewing the item's lease, and :func:`expire_item` ends it.
    """
    item = _claim(item_id)
    if item is None:
        return "skipped"
    pipeline = isinstance(item.payload, dict) and bool(item.payload.get("pipeline"))
    try:
        with _renewing(item):
            if isinstance(item.payload, dict) and item.payload.get("queued_run"):
                from ..queued_runs import run_item  # a rerun or try from the admin's screens

                return run_item(item)
            if isinstance(item.payload, dict) and item.payload.get("selection"):
                from ..selection.jobs import run_selection_item

                return run_selection_item(item)
            if pipeline:
                return _run_pipeline_item(item)
            return _run_action_item(item)
    except Exception as e:
        if pipeline:
            logger.exception("Editor pipeline job %s failed", item.job_id)
            return _crashed(item, e, _("The pipeline failed unexpectedly (%(type)s)."))
        logger.exception("Editor job %s failed", item.job_id)
        return _crashed(item, e, _("The action failed unexpectedly (%(type)s)."))


def _run_action_item(item: LLMJobItem) -> str:
    """Run an editor action job on the unsaved form's content; write no revision."""
    from ..service import LLMService

    job = item.job
    payload = item.payload or {}
    action = job.action
    page, obj = working_object(item)  # a page or a snippet, and the form's content of it
    if action is None or page is None:
        _finish(
            item,
            ItemStatus.FAILED,
            {"code": "gone", "message": _("The page or the action no longer exists.")},
            error="gone",
        )
        return "failed"

    def discard_if_cancelled(interaction: LLMInteraction) -> None:
        # In the transaction that records the answer: an answer whose job was cancelled while
        # the model answered is never visible as "awaiting review"; the item holds the
        # answer, so that a worker dying now leaves it to be shown (see expire_item).
        if LLMJob.objects.filter(pk=job.pk, status=JobStatus.CANCELLED).exists():
            interaction.outcome = InteractionOutcome.DISCARDED
            interaction.save(update_fields=["outcome"])
        _link(item, interaction=interaction)

    publish = PartialText(item) if streams(action) else None
    try:
        with (
            response_cache.bypassed(bool(payload.get("regenerate"))),
            streaming.offering(publish) if publish else contextlib.nullcontext(),
        ):
            interaction = LLMService(on_run_started=_record_run(item)).run(
                action,
                page,
                job.user,
                working_obj=obj,
                save=False,
                trigger=InteractionTrigger.EDITOR,
                on_success=discard_if_cancelled,
            )
    except LLMActionError as e:
        if publish is not None and publish.cancelled:  # the stream stopped on Cancel
            _finish(item, ItemStatus.CANCELLED, {}, interaction=e.interaction, error=e.message)
            return "cancelled"
        _finish(
            item,
            ItemStatus.FAILED,
            {"code": e.code, "message": e.message, "retryable": e.retryable},
            interaction=e.interaction,
            error=e.message,
        )
        return "failed"
    if LLMJob.objects.filter(pk=job.pk, status=JobStatus.CANCELLED).exists():
        # Cancelled while the model was answering: nothing will be shown or saved.
        db.write(
            lambda: LLMInteraction.objects.filter(pk=interaction.pk).update(
                outcome=InteractionOutcome.DISCARDED
            ),
            what="discarding a cancelled answer",
        )
        _finish(item, ItemStatus.CANCELLED, {}, interaction=interaction)
        return "cancelled"
    result = editor_result(obj, action, interaction)
    _finish(item, ItemStatus.SUCCEEDED, result, interaction=interaction)
    return "succeeded"


def _run_pipeline_item(item: LLMJobItem) -> str:
    """Run an editor pipeline job on the unsaved form's content; write no revision."""
    from ..models import LLMPipeline
    from ..pipelines import PipelineStepFailed, run_pipeline

    job = item.job
    payload = item.payload or {}
    pipeline = LLMPipeline.objects.filter(pk=payload.get("pipeline")).first()
    page = item.page.specific if item.page is not None else None
    if pipeline is None or page is None:
        _finish(
            item,
            ItemStatus.FAILED,
            {"code": "gone", "message": _("The page or the pipeline no longer exists.")},
            error="gone",
        )
        return "failed"
    try:
        obj = page.with_content_json(payload["content"])
        run = run_pipeline(
            pipeline,
            page,
            job.user,
            trigger=InteractionTrigger.EDITOR,
            working_obj=obj,
            save=False,
            on_run_started=_record_run(item),
            on_success=lambda last: _link(item, interaction=last),
        )
    except LLMActionError as e:
        result = {"code": e.code, "message": e.message, "retryable": e.retryable}
        if isinstance(e, PipelineStepFailed):
            result["step"] = e.step
        _finish(item, ItemStatus.FAILED, result, interaction=e.interaction, error=e.message)
        return "failed"
    writers = _writers(run)
    last = writers[-1] if writers else None
    if LLMJob.objects.filter(pk=job.pk, status=JobStatus.CANCELLED).exists():
        # Cancelled while the model was answering: nothing will be shown or saved.
        db.write(
            lambda: LLMInteraction.objects.filter(pk__in=[i.pk for i in writers]).update(
                outcome=InteractionOutcome.DISCARDED
            ),
            what="discarding a cancelled answer",
        )
        _finish(item, ItemStatus.CANCELLED, {}, interaction=last)
        return "cancelled"
    _finish(item, ItemStatus.SUCCEEDED, pipeline_result(obj, run, writers), interaction=last)
    return "succeeded"


def cancel_editor_job(job: LLMJob) -> None:
    """Cancel a job: a queued item is not run; a running one's answer is thrown away."""
    now = timezone.now()

    def cancel() -> None:
        LLMJob.objects.filter(pk=job.pk, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).update(
            status=JobStatus.CANCELLED, finished_at=now
        )
        LLMJobItem.objects.filter(job=job, status=ItemStatus.QUEUED).update(
            status=ItemStatus.CANCELLED, updated_at=now
        )

    db.write(cancel, what="cancelling an editor job")


# -- status --------------------------------------------------------------------------------------


@dataclass
class EditorStatus:
    state: str  # queued | running | stalled | succeeded | failed | cancelled
    elapsed: float
    message: str = ""
    result: dict | None = None
    #: The answer so far, while a streaming run writes it (never stored or reviewed).
    partial: str | None = None

    def as_dict(self) -> dict:
        data: dict[str, Any] = {
            "state": self.state,
            "elapsed": round(self.elapsed, 1),
            "message": self.message,
        }
        if self.result is not None:
            data["result"] = self.result
        if self.partial is not None:
            data["partial"] = self.partial
        return data


def get_editor_item(job_id: int, user) -> LLMJobItem | None:
    """The item of ``user``'s editor job ``job_id`` (one query), or None. An item whose
    worker died (its lease ran out, by the database's clock) is ended first (see
    :func:`expire_item`), so the editor's polling ends with what happened."""
    items = LLMJobItem.objects.select_related("job").filter(
        job_id=job_id, job__kind=JobKind.EDITOR, job__user=user
    )
    item = items.annotate(lease_lapsed=_lapsed_flag()).first()
    if item is not None and item.lease_lapsed and expire_item(item.pk):
        item = items.first()
    return item


def editor_status(item: LLMJobItem, now=None) -> EditorStatus:
    """What the browser shows for ``item``; reads nothing more from the database."""
    now = now or timezone.now()
    job = item.job
    elapsed = (now - job.created_at).total_seconds()
    if item.status == ItemStatus.QUEUED:
        timeout = float(get_setting("WORKER_PICKUP_TIMEOUT"))
        # Queued again after its worker stopped: waiting since then.
        since = item.updated_at if item.attempts and item.updated_at else job.created_at
        if job.status != JobStatus.CANCELLED and now - since > timedelta(seconds=timeout):
            return EditorStatus(
                "stalled",
                elapsed,
                _(
                    "This has not started after %(seconds)s seconds. The site's background "
                    "tasks may be stopped or busy: ask your administrator. You can keep "
                    "waiting or cancel."
                )
                % {"seconds": int(timeout)},
            )
        return EditorStatus("queued", elapsed, _("Waiting to start…"))
    if item.status == ItemStatus.RUNNING:
        return EditorStatus("running", elapsed, _("Generating…"), partial=partial_text(item))
    if item.status == ItemStatus.SUCCEEDED:
        return EditorStatus("succeeded", elapsed, "", item.result or {})
    if item.status == ItemStatus.CANCELLED or job.status == JobStatus.CANCELLED:
        return EditorStatus("cancelled", elapsed, _("Cancelled."))
    result = item.result or {}
    failed = {"code": result.get("code", "error")}
    if result.get("step"):
        failed["step"] = result["step"]  # a pipeline's failed step
    return EditorStatus(
        "failed",
        elapsed,
        result.get("message") or item.error or _("The action failed."),
        failed,
    )


def _crashed(item, e: Exception, message: str) -> str:
    """Finish an editor job item that failed on a bug, with a readable internal error."""
    _finish(
        item,
        ItemStatus.FAILED,
        {"code": "internal", "message": message % {"type": type(e).__name__}},
        error=type(e).__name__,
    )
    return "failed"
