"""Editor leases: an item whose worker died ends.

A claimed item holds a lease (``lease_expires_at``, set and compared by the database's clock)
that its worker renews every third of ``LEASE_SECONDS`` while it runs (:func:`_renewing`).
A worker that dies (SIGKILL, django-q2's timeout) stops renewing it. Once it has run out,
:func:`expire_item` ends the item: from the answer it had stored, if any; else it runs it
again (up to ``MAX_CLAIMS`` claims; map-reduce parts already paid for are reused, see
resume.py); else it fails it with a readable message. The status endpoint the browser polls
asks for this (so the editor's spinner stops), and so does every worker that starts
(:func:`recover_editor_items`, with a check scheduled for the leases still running).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta

from django.db import connection, connections
from django.db.models import BooleanField, DateTimeField, ExpressionWrapper, F, Q
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import db
from ..conf import get_setting
from ..models import (
    InteractionStatus,
    ItemStatus,
    JobKind,
    JobStatus,
    LLMInteraction,
    LLMJob,
    LLMJobItem,
    LLMRun,
)
from ..run import recording
from .results import _writers, editor_result, pipeline_result
from .snippets import working_object
from .start import TASK

logger = logging.getLogger(__name__)

#: Claims of one editor item: a worker that keeps dying on it fails it after this many.
MAX_CLAIMS = 2
#: The django-q2 schedule that checks editor leases still running when a worker started.
RECOVERY_SCHEDULE = "wagtail_llm_actions.editor_leases"


def lease_seconds() -> float:
    """How long an editor item's lease lasts (its worker renews it while it runs)."""
    return float(get_setting("LEASE_SECONDS") or 120)


def _lease_until(seconds: float) -> ExpressionWrapper:
    """The database's now plus ``seconds``, as an expression."""
    return ExpressionWrapper(Now() + timedelta(seconds=seconds), output_field=DateTimeField())


def lapsed() -> Q:
    """Running editor items whose lease has run out, by the database's clock (an item
    claimed before leases existed: not touched for a lease's length)."""
    return Q(status=ItemStatus.RUNNING) & (
        Q(lease_expires_at__lt=Now())
        | Q(
            lease_expires_at__isnull=True,
            updated_at__lt=timezone.now() - timedelta(seconds=lease_seconds()),
        )
    )


def _token(kind: str = "editor") -> str:
    return f"{kind}:{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _claim(item_id: int) -> LLMJobItem | None:
    """Mark a queued item running under a new claim token and lease; None if it is gone,
    cancelled or already claimed."""
    now = timezone.now()
    token = _token()

    def claim() -> int | None:
        claimed = LLMJobItem.objects.filter(pk=item_id, status=ItemStatus.QUEUED).update(
            status=ItemStatus.RUNNING,
            attempts=F("attempts") + 1,
            claimed_by=token,
            lease_expires_at=_lease_until(lease_seconds()),
            updated_at=now,
        )
        if not claimed:
            return None
        job_id = LLMJobItem.objects.filter(pk=item_id).values_list("job_id", flat=True)[0]
        LLMJob.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
            status=JobStatus.RUNNING, started_at=now
        )
        return job_id

    if db.write(claim, what="claiming an editor job") is None:
        return None
    return LLMJobItem.objects.select_related("job", "job__action", "job__user", "page").get(
        pk=item_id
    )


@contextlib.contextmanager
def _renewing(item: LLMJobItem) -> Iterator[None]:
    """Renew ``item``'s lease every third of its length until the block ends (a thread with
    its own connection; not inside a transaction, whose rows it could not see)."""
    if connection.in_atomic_block:
        yield
        return
    stop = threading.Event()
    seconds = lease_seconds()

    def renew() -> int:
        return LLMJobItem.objects.filter(
            pk=item.pk, status=ItemStatus.RUNNING, claimed_by=item.claimed_by
        ).update(lease_expires_at=_lease_until(seconds))

    def loop() -> None:
        try:
            while not stop.wait(seconds / 3):
                try:
                    db.write(renew, what="renewing an editor lease")
                except Exception:  # a busy database: the next renewal tries again  # noqa: BLE001
                    logger.warning("Editor job %s: lease not renewed", item.job_id, exc_info=True)
        finally:
            connections.close_all()  # this thread's connections only

    thread = threading.Thread(target=loop, name=f"llm-editor-lease-{item.pk}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def _finish(item: LLMJobItem, status: str, result: dict, interaction=None, error="") -> bool:
    """Record the item's outcome if its claim still holds it; False if the claim was lost
    (its lease ran out and the item was ended or claimed again meanwhile)."""
    now = timezone.now()
    item.status = status
    item.result = result
    item.error = error
    item.interaction = interaction if interaction is not None and interaction.pk else None

    def finish() -> bool:
        done = LLMJobItem.objects.filter(
            pk=item.pk, status=ItemStatus.RUNNING, claimed_by=item.claimed_by
        ).update(
            status=status,
            result=result,
            error=error,
            interaction=item.interaction,
            lease_expires_at=None,
            updated_at=now,
        )
        if done:
            LLMJob.objects.filter(pk=item.job_id).exclude(status=JobStatus.CANCELLED).update(
                status=JobStatus.COMPLETED, finished_at=now
            )
        return bool(done)

    done = db.write(finish, what="finishing an editor job")
    if not done:
        logger.warning("Editor job %s: its lease ran out before it finished", item.job_id)
    return done


def _link(item: LLMJobItem, **fields) -> None:
    """Inside a write transaction: record ``fields`` on the item while its claim holds it."""
    LLMJobItem.objects.filter(pk=item.pk, claimed_by=item.claimed_by).update(**fields)


def _record_run(item: LLMJobItem):
    """``on_run_started``: note the run on the item, to end it if the worker dies."""

    def record(run: LLMRun) -> None:
        runs = [*((item.result or {}).get("runs") or []), run.pk]
        item.result = {"runs": runs}
        _link(item, result=item.result)

    return record


def worker_lost_message(reused: bool) -> str:
    message = _(
        "The background task running this stopped before it finished (it was restarted "
        "or ran out of time), so nothing was filled in. Try again."
    )
    if reused:
        message += " " + _(
            "The answers it had already received are kept and reused, so they are not paid "
            "for again."
        )
    return message


def expire_item(item_id: int) -> bool:
    """End a running editor item whose lease has run out (by the database's clock): with
    the answer its worker stored, if any; else run it again, up to ``MAX_CLAIMS`` claims;
    else fail it with a readable message. Runs its worker left "running" are ended. False
    if the item's lease has not run out (or someone else ended it first)."""
    token = _token("expired")
    taken = db.write(
        lambda: LLMJobItem.objects.filter(lapsed(), pk=item_id, job__kind=JobKind.EDITOR).update(
            claimed_by=token, lease_expires_at=None, updated_at=timezone.now()
        ),
        what="ending an editor job whose worker stopped",
    )
    if not taken:
        return False
    item = LLMJobItem.objects.select_related(
        "job", "job__action", "job__user", "page", "interaction"
    ).get(pk=item_id)
    runs = [int(pk) for pk in (item.result or {}).get("runs") or []]
    logger.warning("Editor job %s: its worker stopped (claim %s)", item.job_id, item.attempts)
    recording.end_abandoned(runs, worker_lost_message(False))
    stored = item.interaction
    if item.job.status == JobStatus.CANCELLED:
        _finish(item, ItemStatus.CANCELLED, {}, interaction=stored)
        return True
    if stored is not None and stored.status == InteractionStatus.SUCCESS:
        try:
            result = _stored_result(item, stored)
        except Exception:  # noqa: BLE001 - fall through: run again or fail plainly
            logger.exception("Editor job %s: the stored answer cannot be shown", item.job_id)
            result = None
        if result is not None:
            _finish(item, ItemStatus.SUCCEEDED, result, interaction=stored)
            return True
    if item.attempts < MAX_CLAIMS and not get_setting("RUN_INLINE"):
        if _run_again(item):
            return True
    message = worker_lost_message(bool(runs))
    _finish(item, ItemStatus.FAILED, {"code": "worker_lost", "message": message}, error=message)
    return True


def _run_again(item: LLMJobItem) -> bool:
    """Queue the item again for a new claim (its stored parts are reused); False if it
    could not be queued."""
    requeued = db.write(
        lambda: LLMJobItem.objects.filter(
            pk=item.pk, status=ItemStatus.RUNNING, claimed_by=item.claimed_by
        ).update(
            status=ItemStatus.QUEUED,
            claimed_by="",
            result=None,
            updated_at=timezone.now(),
        ),
        what="queueing an editor job again",
    )
    if not requeued:
        return False
    try:
        from django_q.tasks import async_task

        async_task(TASK, item.pk, task_name=f"llm-editor-{item.job_id}-{item.attempts + 1}")
    except Exception:  # the queue is unreachable: fail the item plainly instead  # noqa: BLE001
        logger.exception("Editor job %s could not be queued again", item.job_id)
        db.write(
            lambda: LLMJobItem.objects.filter(pk=item.pk, status=ItemStatus.QUEUED).update(
                status=ItemStatus.RUNNING, claimed_by=item.claimed_by
            ),
            what="taking back an editor job",
        )
        return False
    logger.info("Editor job %s: queued again after its worker stopped", item.job_id)
    return True


def _stored_result(item: LLMJobItem, interaction: LLMInteraction) -> dict | None:
    """The result the worker would have recorded for the answer it stored, or None."""
    payload = item.payload or {}
    if payload.get("queued_run"):  # a rerun or try from the admin's screens
        from ..queued_runs import stored_result

        return stored_result(item, interaction)
    if payload.get("selection"):  # a selection rewrite: its answer is the whole result
        return {"selection": interaction.output_value, "interaction": interaction.pk}
    page, obj = working_object(item)  # a page or a snippet, and the form's content of it
    if page is None:
        return None
    if payload.get("pipeline"):
        run = interaction.run
        if run is None:
            return None
        return pipeline_result(obj, run, _writers(run))
    action = item.job.action
    if action is None:
        return None
    return editor_result(obj, action, interaction)


def recover_editor_items() -> int:
    """End the editor items whose worker died (called when a worker starts); returns how
    many. Items whose lease still runs (the worker may be alive, or was just killed, e.g.
    by django-q2's timeout) get a check scheduled for when their leases run out."""
    running = LLMJobItem.objects.filter(job__in=_editor_jobs(), status=ItemStatus.RUNNING)
    rows = list(running.annotate(gone=_lapsed_flag()).values_list("pk", "gone"))
    ended = sum(1 for pk, gone in rows if gone and expire_item(pk))
    if any(not gone for _pk, gone in rows):
        _schedule_check(running.exclude(lapsed()))
    return ended


def check_editor_leases() -> int:
    """The scheduled check: end the editor items whose lease has run out meanwhile."""
    ids = LLMJobItem.objects.filter(lapsed(), job__in=_editor_jobs()).values_list("pk", flat=True)
    return sum(1 for pk in list(ids) if expire_item(pk))


def _editor_jobs():
    """Editor jobs that may hold a running item: unfinished, or cancelled while running."""
    return LLMJob.objects.filter(
        kind=JobKind.EDITOR,
        status__in=[JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.CANCELLED],
    )


def _lapsed_flag() -> ExpressionWrapper:
    return ExpressionWrapper(lapsed(), output_field=BooleanField())


def _schedule_check(items) -> None:
    """Schedule :func:`check_editor_leases` for just after the leases of ``items`` run out."""
    from django.db.models import Max
    from django_q.models import Schedule

    latest = items.aggregate(latest=Max("lease_expires_at"))["latest"]
    if latest is None:
        return
    at = latest + timedelta(seconds=1)
    try:
        db.write(
            lambda: Schedule.objects.update_or_create(
                name=RECOVERY_SCHEDULE,
                defaults={
                    "func": "wagtail_llm_actions.editor.check_editor_leases",
                    "schedule_type": Schedule.ONCE,
                    "repeats": -1,
                    "next_run": at,
                },
            ),
            what="scheduling an editor lease check",
        )
    except Exception:  # the next worker start or status poll ends them  # noqa: BLE001
        logger.warning("Could not schedule the editor lease check", exc_info=True)
