"""Acting on a whole job from outside its workers: cancel, retry, apply stored answers,
recover after a restart, and read its progress (the job page, ``run_llm_action``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.db.models import Count, Exists, Max, OuterRef, Q, Sum
from django.db.models.functions import Now
from django.utils import timezone

from .. import db
from ..conf import get_setting
from ..models import InteractionStatus, ItemStatus, JobStatus, LLMInteraction, LLMJob, LLMJobItem
from .planning import ENGINE_KINDS, enqueue_job

#: Final item states.
FINAL_STATUSES = (
    ItemStatus.SUCCEEDED,
    ItemStatus.FAILED,
    ItemStatus.SKIPPED,
    ItemStatus.CANCELLED,
)


def cancel_job(job: LLMJob) -> int:
    """Stop a job: queued items are cancelled; calls already running finish. Returns count."""
    now = timezone.now()

    def cancel() -> int:
        LLMJob.objects.filter(pk=job.pk, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).update(
            status=JobStatus.CANCELLED, finished_at=now
        )
        return job.items.filter(
            Q(status=ItemStatus.QUEUED)
            | Q(status=ItemStatus.RUNNING, lease_expires_at__lte=Now())
            | Q(status=ItemStatus.RUNNING, lease_expires_at__isnull=True)
        ).update(status=ItemStatus.CANCELLED, lease_expires_at=None, updated_at=now)

    count = db.write(cancel, what="cancelling a job")
    job.refresh_from_db()
    return count


def retry_failed(job: LLMJob, *, enqueue: bool = True) -> int:
    """Queue the failed items (and those cancelled) again with fresh attempts.

    An item whose answer is already stored (see :func:`apply_stored_answers`) is written
    from that answer when it runs again: retrying never pays twice for one answer.
    """
    return _requeue(
        job, job.items.filter(status__in=[ItemStatus.FAILED, ItemStatus.CANCELLED]), enqueue=enqueue
    )


def stored_answer_items(job: LLMJob):
    """Items of ``job`` that are final but hold a paid answer that was never written (the
    write failed, or the page was locked, in moderation or not editable at the time)."""
    return job.items.filter(
        status__in=[ItemStatus.FAILED, ItemStatus.SKIPPED, ItemStatus.CANCELLED],
        interaction__status=InteractionStatus.ANSWERED,
    )


def apply_stored_answers(job: LLMJob, *, enqueue: bool = True) -> int:
    """Queue the items of ``job`` that hold a stored answer, to be written with zero model
    calls (the engine writes a stored answer instead of calling). Returns how many."""
    return _requeue(job, stored_answer_items(job), enqueue=enqueue)


def _requeue(job: LLMJob, items, *, enqueue: bool) -> int:
    ids = list(items.values_list("pk", flat=True))

    def requeue() -> int:
        count = LLMJobItem.objects.filter(pk__in=ids).update(
            status=ItemStatus.QUEUED,
            attempts=0,
            error="",
            skip_reason="",
            not_before=None,
            lease_expires_at=None,
            claimed_by="",
            updated_at=timezone.now(),
        )
        if count:
            options = dict(LLMJob.objects.get(pk=job.pk).options or {})
            options.pop("stop_reason", None)
            LLMJob.objects.filter(pk=job.pk).update(
                status=JobStatus.QUEUED, finished_at=None, options=options
            )
            if enqueue:
                enqueue_job(job)
        return count

    count = db.write(requeue, what="queueing items again") if ids else 0
    job.refresh_from_db()
    return count


def recover_jobs(*, broker=None, orphaned: bool = False) -> int:
    """Queue a worker task for every unfinished job (called when a worker process starts,
    so a host that starts or joins takes part at once); ``orphaned``: only for jobs without
    a live coordinator (the periodic check, ``tasks.keep_jobs_running``)."""
    items = LLMJobItem.objects.filter(job=OuterRef("pk"))
    due = items.filter(
        Q(status=ItemStatus.RUNNING)
        | Q(status=ItemStatus.QUEUED, not_before__isnull=True)
        | Q(status=ItemStatus.QUEUED, not_before__lte=Now())
    )
    later = items.filter(status=ItemStatus.QUEUED, not_before__gt=Now())
    jobs_ = (
        LLMJob.objects.filter(
            kind__in=ENGINE_KINDS, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
        )
        # A job paused by a budget waits for it (see .pauses), not for a worker.
        .exclude(options__has_key="paused")
    ).filter(
        # A job whose only open items wait (a trigger's delay, a retry's backoff) gets a
        # worker once one is due (the next check), not one that waits idle until then.
        Exists(due) | ~Exists(later)
    )
    if orphaned:
        jobs_ = jobs_.filter(
            Q(runner_lease_expires_at__isnull=True) | Q(runner_lease_expires_at__lte=Now())
        )
    ids = list(jobs_.values_list("pk", flat=True))
    for pk in ids:
        enqueue_job(LLMJob(pk=pk), broker=broker, on_commit=False)
    return len(ids)


# -- progress ----------------------------------------------------------------------------------


#: Calls that cost something the price list does not know: an answer (or tokens spent) with
#: no cost recorded. A failed call that spent no tokens cost nothing, known or not.
UNPRICED = Q(cost__isnull=True) & (
    Q(status__in=[InteractionStatus.SUCCESS, InteractionStatus.ANSWERED]) | Q(total_tokens__gt=0)
)


@dataclass
class Progress:
    total: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    tokens: int = 0
    cost: Decimal | None = None
    rate: float | None = None  # pages a second
    eta: float | None = None  # seconds
    elapsed: float | None = None
    unpriced: int = 0  # calls whose cost the price list does not know (see UNPRICED)
    #: Pages answered from the response cache (no model call, nothing paid).
    cached: int = 0

    def count(self, status: str) -> int:
        return self.counts.get(status, 0)

    @property
    def done(self) -> int:
        return sum(self.count(s) for s in FINAL_STATUSES)

    @property
    def remaining(self) -> int:
        return self.total - self.done

    @property
    def percent(self) -> int:
        return 100 if not self.total else int(100 * self.done / self.total)

    def as_dict(self) -> dict:
        return {
            "total": self.total,
            "done": self.done,
            "percent": self.percent,
            "counts": {s: self.count(s) for s in ItemStatus.values},
            "tokens": self.tokens,
            "cost": None if self.cost is None else str(self.cost),
            "rate": self.rate,
            "eta": self.eta,
            "cached": self.cached,
        }


def _paused(job: LLMJob) -> bool:
    return bool((job.options or {}).get("paused"))


def job_progress(job: LLMJob) -> Progress:
    """Counts, tokens, cost (and calls at unknown price), rate and ETA of ``job`` in two
    queries."""
    progress = Progress()
    for status, n in job.items.values_list("status").annotate(n=Count("pk")).order_by():
        progress.counts[status] = n
        progress.total += n
    totals = LLMInteraction.objects.filter(
        pk__in=job.items.filter(interaction__isnull=False).values("interaction_id")
    ).aggregate(  # aliases unlike the fields: UNPRICED filters on "cost"
        sum_tokens=Sum("total_tokens"),
        sum_cost=Sum("cost"),
        unpriced=Count("pk", filter=UNPRICED),
        n_cached=Count("pk", filter=Q(cached=True)),
    )
    progress.tokens = totals["sum_tokens"] or 0
    progress.cost = totals["sum_cost"]
    progress.unpriced = totals["unpriced"] or 0
    progress.cached = totals["n_cached"] or 0
    if job.started_at:
        end = job.finished_at or timezone.now()
        progress.elapsed = max(0.0, (end - job.started_at).total_seconds())
        processed = progress.done - int((job.options or {}).get("initial_skipped", 0))
        if processed > 0 and progress.elapsed > 0:
            progress.rate = processed / progress.elapsed
            if job.status in (JobStatus.QUEUED, JobStatus.RUNNING) and not _paused(job):
                progress.eta = progress.remaining / progress.rate
    return progress


def waiting_for_worker(job: LLMJob, now=None) -> bool:
    """True when ``job`` has been queued longer than ``WORKER_PICKUP_TIMEOUT`` seconds and no
    runner has taken it: no worker is running, or all are busy (as the editor says)."""
    if job.status != JobStatus.QUEUED:
        return False
    now = now or timezone.now()
    # queued since it was created, or since its failed pages were queued again (Retry)
    since = job.items.filter(status=ItemStatus.QUEUED).aggregate(t=Max("updated_at"))["t"]
    since = max(since or job.created_at, job.created_at)
    return now - since > timedelta(seconds=float(get_setting("WORKER_PICKUP_TIMEOUT")))
