"""The bulk job engine: run one action over many pages, resumably, on django-q2 workers.

Planning (selection, skip reasons, the confirmation screen's estimate, creating and queueing
a job) lives in :mod:`.planning`; its names are importable from here too.

Nothing here knows about HTTP; the bulk action, the views and ``run_llm_action`` call these
functions, and every page run goes through :meth:`LLMService.run`.

::

    plan = plan_job(action, user, page_ids, include_descendants=True)   # preview, no writes
    job = create_job(action, user, page_ids, include_descendants=True)  # job + one item a page
    enqueue_job(job)                     # a runner task on django-q2 (after commit)
    run_job(job.pk)                      # ...or run it here, in the foreground

Design
======

**Items.** A job has one ``LLMJobItem`` per selected page (and descendant). Pages that cannot
run are created *skipped* with a reason (wrong type, no permission, locked); the rest are
*queued*. Whether the source is empty, or unchanged (:mod:`.unchanged`: an answer of this
action from the same inputs is in the page's newest revision, or a person discarded it), is
decided when the item runs, just before any model call, so it is true at that moment.

**One runner per job.** :func:`enqueue_job` queues one django-q2 task,
``tasks.run_job(job_id)`` (and ``RUNNERS_PER_JOB - 1`` helpers that share its items from
other worker processes). The runner takes the job's *runner lease*
(``LLMJob.runner_token``/``runner_lease_expires_at``) with a conditional UPDATE, so a
duplicate runner (a redelivered task, a recovery) exits at once; if the lease is held by a
runner that stopped renewing it (a killed worker), the new runner waits for it to expire and
takes over (and queues the job's helpers again). After a time budget below the django-q2
timeout it releases the lease and queues its successor, so no task runs for hours. A runner
called inside a transaction (tests, ``sync`` mode) uses the calling thread only.

**A slot is a call in flight.** ``CONCURRENCY[provider]`` (``{"*": 4, "openai": 8}``, keyed
by the model's provider prefix) bounds the model calls in flight across all runners of that
provider. Each runner (or helper) reserves its share of that limit in ``LLMProviderSlots``
(:func:`reserve_slots`: one transaction that sums the live reservations of the provider,
under a per-provider advisory lock on PostgreSQL; on SQLite writes are serialised anyway)
and lends the slots to its threads in memory (:class:`_Slots`), one per model call, around
the call only (``LLMService.run(call_slot=...)``). Claiming, reading the page, storing the
answer, saving the draft and logging hold no slot, so a runner runs twice as many threads
as it has slots and the calls follow each other without gaps. On SQLite the threads' write
transactions share commits (:class:`db.WriteBatcher`): writes are serialised there anyway
and every commit syncs the journal to disk. A reservation is renewed with
the leases and expires when its runner dies.

**Claim.** Items are claimed several at a time (:func:`claim_items`) in one write
transaction: ``status`` queued (and ``not_before`` passed) *or* running with an expired
lease → running, with a claim token in ``claimed_by``, a lease and ``attempts + 1`` (on
PostgreSQL rows another claim is taking are skipped). Claimed items wait in the runner's
memory for a free thread; a runner that stops gives back those it did not start. The
runner renews its own lease, its items' leases and its slots every third of
``LEASE_SECONDS``. Idle threads wait for a page of their process to finish (or
``IDLE_POLL``), not on a fixed poll.

**Idempotency.** ``LLMService.run(..., on_success=...)`` marks the item *succeeded* inside
the transaction that saves the draft revision and the interaction, and only if the item is
still running under this claim token; otherwise it raises and the revision is rolled back.
So a page gets at most one new draft revision per job, however often a task is retried or
redelivered or a lease expires while a slow call is still running.

**Retries.** Errors the provider layer marks retryable (rate limits, server errors,
timeouts, connection errors) put the item back in the queue with ``not_before`` set by
exponential backoff (``RETRY_BACKOFF * 2**(attempt-1)``, capped, with jitter) until
``MAX_ATTEMPTS`` attempts; other errors fail the item at once. The per-call timeout is the
action's. An item whose claims keep being lost to dying workers also fails after
``MAX_ATTEMPTS`` + 1 claims, so nothing retries forever.

**Crash safety.** If a worker is killed (SIGKILL), its transaction is rolled back: the item
stays *running* with a lease that expires, and the runner lease expires too. When a worker
process starts, the ``post_spawn`` signal of django-q2 calls :func:`recover_jobs`, which
queues a runner (not its helpers) for every unfinished job; that runner waits for the dead
runner's lease, then reclaims the expired items. This does not depend on the broker keeping
the lost task (the Redis broker drops a task a killed worker had taken; the ORM broker
redelivers it after ``Q_CLUSTER["retry"]`` seconds, and that duplicate exits). "Retry
failed" and the ``run_llm_action`` command also (re)start runners.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.db import connection, connections
from django.db.models import Count, F, Max, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from wagtail.models import Page

from . import db
from .conf import get_setting
from .exceptions import (
    ActionNotAllowed,
    ActionNotApplicable,
    CallNotStarted,
    LLMActionError,
    PageInModeration,
    PageLocked,
    SourceEmpty,
)
from .models import (
    InteractionStatus,
    InteractionTrigger,
    ItemStatus,
    JobStatus,
    LLMAction,
    LLMInteraction,
    LLMJob,
    LLMJobItem,
    LLMPipeline,
    LLMProviderSlots,
    LLMRun,
)
from .planning import (  # noqa: F401 - the engine's callers used to find these here
    CHUNK_SIZE,
    ENGINE_KINDS,
    EXAMPLES_PER_REASON,
    HELPER_TASK,
    PREVIEW_SAMPLE,
    ROOTS_PER_QUERY,
    RUNNER_TASK,
    SKIP_ACTION_DELETED,
    SKIP_ACTION_DISABLED,
    SKIP_DELETED,
    SKIP_LOCKED,
    SKIP_MODERATION,
    SKIP_NO_PERMISSION,
    SKIP_NOT_AVAILABLE,
    SKIP_PIPELINE_DELETED,
    SKIP_PIPELINE_DISABLED,
    SKIP_REASONS,
    SKIP_SOURCE_EMPTY,
    SKIP_UNCHANGED,
    SKIP_WRONG_TYPE,
    ContentCheck,
    Plan,
    annotate_reasons,
    check_content,
    concurrency_for,
    create_job,
    create_pipeline_job,
    enqueue_job,
    max_attempts,
    page_ids_for_action,
    plan_job,
    plan_pipeline_job,
    provider_prefix,
    runners_per_job,
    selection_parts,
    skip_reason_label,
    working_copies,
)
from .service import LLMService
from .unchanged import unchanged_since_last_write

logger = logging.getLogger(__name__)

#: Longest backoff between attempts, in seconds.
MAX_BACKOFF = 300
#: How often an idle runner looks for claimable items, in seconds (a page finishing in its
#: process wakes its threads earlier). Also how late a runner may notice that the last
#: pages, run by another process, are done.
IDLE_POLL = 0.2
#: How often a runner without provider slots (all taken by other runners) asks again.
SLOT_POLL = 0.25
#: Final item states.
FINAL_STATUSES = (
    ItemStatus.SUCCEEDED,
    ItemStatus.FAILED,
    ItemStatus.SKIPPED,
    ItemStatus.CANCELLED,
)


#: ``LLMActionError.code`` values that mean "skip this page" rather than "failed".
_SKIP_CODES = {
    ActionNotAllowed.code: SKIP_NO_PERMISSION,
    PageLocked.code: SKIP_LOCKED,
    PageInModeration.code: SKIP_MODERATION,
    ActionNotApplicable.code: SKIP_WRONG_TYPE,
    SourceEmpty.code: SKIP_SOURCE_EMPTY,
}


class LeaseLost(LLMActionError):
    """The item was reclaimed by another runner while this one was running it."""

    code = "lease_lost"


# -- settings --------------------------------------------------------------------------------


def lease_seconds(action: LLMAction | None = None) -> float:
    """An item's lease: ``LEASE_SECONDS`` plus the longest its call can take."""
    base = float(get_setting("LEASE_SECONDS") or 120)
    if action is None:
        return base
    timeout = float(action.timeout or get_setting("DEFAULT_TIMEOUT") or 60)
    return base + timeout * (1 + len(action.fallback_model_list))


def backoff_seconds(attempt: int) -> float:
    base = float(get_setting("RETRY_BACKOFF") or 0)
    delay = min(MAX_BACKOFF, base * (2 ** max(0, attempt - 1)))
    return delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not crypto


def new_token() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def cancel_job(job: LLMJob) -> int:
    """Stop a job: queued items are cancelled; calls already running finish. Returns count."""
    now = timezone.now()

    def cancel() -> int:
        LLMJob.objects.filter(pk=job.pk, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).update(
            status=JobStatus.CANCELLED, finished_at=now
        )
        return job.items.filter(
            Q(status=ItemStatus.QUEUED)
            | Q(status=ItemStatus.RUNNING, lease_expires_at__lte=now)
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


def recover_jobs(*, broker=None) -> int:
    """Queue a runner for every unfinished job (called when a worker process starts)."""
    ids = list(
        LLMJob.objects.filter(
            kind__in=ENGINE_KINDS, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
        ).values_list("pk", flat=True)
    )
    for pk in ids:
        # The runner only: it queues helpers itself if it takes over from a dead runner, so
        # that several workers starting at once do not add a helper each.
        enqueue_job(LLMJob(pk=pk), broker=broker, on_commit=False, helpers=False)
    return len(ids)


# -- progress ----------------------------------------------------------------------------------


@dataclass
class Progress:
    total: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    tokens: int = 0
    cost: Decimal | None = None
    rate: float | None = None  # pages a second
    eta: float | None = None  # seconds
    elapsed: float | None = None

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
        }


def job_progress(job: LLMJob) -> Progress:
    """Counts, tokens, cost, rate and ETA of ``job`` in two queries."""
    progress = Progress()
    for status, n in job.items.values_list("status").annotate(n=Count("pk")).order_by():
        progress.counts[status] = n
        progress.total += n
    totals = LLMInteraction.objects.filter(
        pk__in=job.items.filter(interaction__isnull=False).values("interaction_id")
    ).aggregate(tokens=Sum("total_tokens"), cost=Sum("cost"))
    progress.tokens = totals["tokens"] or 0
    progress.cost = totals["cost"]
    if job.started_at:
        end = job.finished_at or timezone.now()
        progress.elapsed = max(0.0, (end - job.started_at).total_seconds())
        processed = progress.done - int((job.options or {}).get("initial_skipped", 0))
        if processed > 0 and progress.elapsed > 0:
            progress.rate = processed / progress.elapsed
            if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
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


# -- running -----------------------------------------------------------------------------------


class NoSlot(CallNotStarted):
    """The runner stopped while this page waited for a provider slot: it was not sent."""

    code = "no_slot"


def _advisory_lock(provider: str) -> None:
    if connection.vendor == "postgresql":
        key = zlib.crc32(f"wagtail_llm_actions:{provider}".encode())
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def reserve_slots(provider: str, holder: str, *, want: int, limit: int, seconds: float) -> int:
    """Reserve up to ``want`` of ``provider``'s ``limit`` concurrent calls for ``holder``.

    One transaction: expired reservations are dropped, the live ones of other holders are
    summed, and ``holder``'s row is set to what is left (up to ``want``; removed if
    nothing is). Returns the slots ``holder`` now holds. On PostgreSQL a transaction-level
    advisory lock per provider orders concurrent reservations; on SQLite writes are
    serialised anyway.
    """
    now = timezone.now()
    until = now + timedelta(seconds=seconds)

    def reserve() -> int:
        _advisory_lock(provider)
        LLMProviderSlots.objects.filter(expires_at__lte=now).delete()
        used = (
            LLMProviderSlots.objects.filter(provider=provider)
            .exclude(holder=holder)
            .aggregate(n=Sum("slots"))["n"]
            or 0
        )
        granted = max(0, min(want, limit - used))
        if not granted:
            LLMProviderSlots.objects.filter(holder=holder).delete()
        elif not LLMProviderSlots.objects.filter(holder=holder).update(
            provider=provider, slots=granted, expires_at=until
        ):
            LLMProviderSlots.objects.create(
                provider=provider, holder=holder, slots=granted, expires_at=until
            )
        return granted

    return db.write(reserve, what="reserving provider slots")


def release_slots(holder: str) -> None:
    db.write(
        lambda: LLMProviderSlots.objects.filter(holder=holder).delete(),
        what="releasing provider slots",
    )


class _Slots:
    """The provider slots one runner holds, lent to its threads one model call at a time.

    ``capacity`` is what the runner reserved (see :func:`reserve_slots`); it counts only
    while the reservation is known to be live (``valid_until``). A thread that finds no
    reservation asks ``refill`` for one (at most every ``SLOT_POLL`` seconds).
    """

    def __init__(self, refill: Callable[[], None] | None = None) -> None:
        self._cond = threading.Condition()
        self.capacity = 0
        self.busy = 0
        self.valid_until = 0.0
        self.refill = refill
        self._next_refill = 0.0
        self._refilling = False

    def set(self, capacity: int, seconds: float) -> None:
        """The runner holds ``capacity`` slots for ``seconds`` from now."""
        with self._cond:
            self.capacity = capacity
            self.valid_until = time.monotonic() + seconds * 0.9
            self._cond.notify_all()

    def live(self) -> int:
        return self.capacity if time.monotonic() < self.valid_until else 0

    @contextlib.contextmanager
    def hold(self, stop: threading.Event | None = None) -> Iterator[None]:
        """Wait for a free slot, hold it for the block (one model call in flight)."""
        with self._cond:
            while True:
                if stop is not None and stop.is_set():  # a stopping runner sends nothing new
                    raise NoSlot(str(_("The job stopped before the page was sent.")))
                if self.busy < self.live():
                    break
                if self.live() == 0:
                    now = time.monotonic()
                    if self.refill is not None and not self._refilling and now >= self._next_refill:
                        self._refilling = True
                        self._next_refill = now + SLOT_POLL
                        self._cond.release()
                        try:
                            self.refill()
                        finally:
                            self._cond.acquire()
                            self._refilling = False
                        continue
                self._cond.wait(SLOT_POLL)
            self.busy += 1
        try:
            yield
        finally:
            with self._cond:
                self.busy -= 1
                self._cond.notify()


def _claimable(now) -> Q:
    return (
        Q(status=ItemStatus.QUEUED) & (Q(not_before__isnull=True) | Q(not_before__lte=now))
    ) | Q(status=ItemStatus.RUNNING, lease_expires_at__lte=now)


def claim_items(job: LLMJob, claim_token: str, *, count: int, lease: float) -> list[LLMJobItem]:
    """Atomically take up to ``count`` claimable items of ``job`` (queued, or running under
    an expired lease) in one write transaction; [] if there are none.

    A claimed item is the runner's to run (its lease, ``claimed_by``); it holds no provider
    slot until its model call starts (see :class:`_Slots`). On PostgreSQL rows another
    claim is taking are skipped (``FOR UPDATE SKIP LOCKED``), not waited for.
    """
    now = timezone.now()

    def claim() -> list[int]:
        candidates = job.items.filter(_claimable(now)).order_by("pk")
        if connection.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True)
        ids = list(candidates.values_list("pk", flat=True)[:count])
        if ids:
            LLMJobItem.objects.filter(pk__in=ids).filter(_claimable(now)).update(
                status=ItemStatus.RUNNING,
                claimed_by=claim_token,
                lease_expires_at=now + timedelta(seconds=lease),
                attempts=F("attempts") + 1,
                updated_at=now,
            )
        return ids

    ids = db.write(claim, what="claiming items")
    if not ids:
        return []
    items = list(
        LLMJobItem.objects.select_related("interaction")
        .filter(pk__in=ids, status=ItemStatus.RUNNING, claimed_by=claim_token)
        .order_by("pk")
    )
    # Their pages, specific, in a query per page type (not one per item).
    pages = Page.objects.filter(pk__in=[i.page_id for i in items if i.page_id]).specific()
    by_pk = {page.pk: page for page in pages}
    for item in items:
        item.page = by_pk.get(item.page_id)  # None: deleted since
    return items


def claim_item(job: LLMJob, claim_token: str, *, lease: float) -> LLMJobItem | None:
    """Atomically take the next claimable item of ``job``; None if there is none."""
    items = claim_items(job, claim_token, count=1, lease=lease)
    return items[0] if items else None


def _finish(item: LLMJobItem, claim_token: str, **fields) -> bool:
    """Record an item's outcome if this claim still owns it."""
    now = timezone.now()
    return bool(
        db.write(
            lambda: LLMJobItem.objects.filter(
                pk=item.pk, status=ItemStatus.RUNNING, claimed_by=claim_token
            ).update(lease_expires_at=None, updated_at=now, **fields),
            what="recording an item",
        )
    )


LOST = "lost"


def _done(item: LLMJobItem, claim_token: str, status: str, **fields) -> str:
    return status if _finish(item, claim_token, status=status, **fields) else LOST


@dataclass
class _RunContext:
    job: LLMJob
    #: None for a job run by its pipeline alone (every step has its own prompt).
    action: LLMAction | None
    trigger: str
    token: str
    lease: float
    limit: int
    max_attempts: int
    claims: dict[int, str] = field(default_factory=dict)  # item pk -> claim token
    lock: threading.Lock = field(default_factory=threading.Lock)
    counter: int = 0
    action_version: tuple | None = None
    #: The provider slots this runner holds (None: no limit, for direct calls in tests).
    slots: _Slots | None = None
    #: Items per claim query; claimed items wait in ``pending`` for a thread.
    batch: int = 1
    pending: deque = field(default_factory=deque)
    claim_lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    #: Idle threads wait here; a page finishing in this process wakes them.
    wake: threading.Condition = field(default_factory=threading.Condition)
    #: Until then (monotonic) a claim found nothing: idle threads do not ask again.
    idle_until: float = 0.0

    def current_action(self) -> tuple[LLMAction | None, str]:
        """The action as it is now (one query; re-read in full only when it changed).

        Returns ``(None, reason)`` when it was disabled or deleted since the job started.
        """
        row = (
            LLMAction.objects.filter(pk=self.action.pk)
            .values_list("enabled", "updated_at", "prompt__updated_at")
            .first()
        )
        if row is None:
            return None, SKIP_ACTION_DELETED
        if not row[0]:
            return None, SKIP_ACTION_DISABLED
        with self.lock:
            if self.action_version is None:
                self.action_version = row
            elif row != self.action_version:
                fresh = LLMAction.objects.select_related("prompt").filter(pk=self.action.pk)
                fresh = fresh.first()
                if fresh is None:
                    return None, SKIP_ACTION_DELETED
                self.action, self.action_version = fresh, row
            return self.action, ""

    def next_claim(self) -> str:
        with self.lock:
            self.counter += 1
            return f"{self.token}:{self.counter}"

    def call_slot(self) -> contextlib.AbstractContextManager:
        """Held around a model call: one of the runner's provider slots."""
        return self.slots.hold(self.stop) if self.slots is not None else contextlib.nullcontext()

    def notify(self) -> None:
        with self.wake:
            self.wake.notify_all()

    def idle(self, seconds: float) -> None:
        """Wait until a page of this process finishes, the runner stops, or ``seconds``."""
        with self.wake:
            if not self.stop.is_set():
                self.wake.wait(seconds)


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


def process_item(ctx: _RunContext, item: LLMJobItem, claim_token: str) -> str:
    """Run one claimed item to an outcome; returns its new status, or "lost" if another
    runner took the item over meanwhile (nothing is then recorded by this one)."""
    job = ctx.job
    page = item.page
    if page is None:
        return _done(item, claim_token, ItemStatus.SKIPPED, skip_reason=SKIP_DELETED)
    if item.attempts > ctx.max_attempts:
        return _done(
            item,
            claim_token,
            ItemStatus.FAILED,
            error=str(_("The worker running this page stopped too many times.")),
        )
    if job.pipeline_id is not None:
        return _process_pipeline_item(ctx, item, claim_token)
    action, stop_code = ctx.current_action()
    if action is None:
        return _stop_for_action(ctx, item, claim_token, stop_code)
    service = LLMService()
    page = page.specific
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
            raise LeaseLost(str(_("Another worker took this page over; answer discarded.")))

    try:
        if stored is not None and stored.status == InteractionStatus.ANSWERED:
            # The model already answered for this item (a worker died, or the write failed):
            # write that answer, never call again.
            service.apply_stored(stored, user, on_success=on_success)
            return ItemStatus.SUCCEEDED
        if not job.force and unchanged_since_last_write(action, page, user, service=service):
            return _done(item, claim_token, ItemStatus.SKIPPED, skip_reason=SKIP_UNCHANGED)

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
        return _item_crashed(job, item, claim_token, e)


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
            not_before=timezone.now() + timedelta(seconds=backoff_seconds(item.attempts)),
        )
    return _done(item, claim_token, ItemStatus.FAILED, error=e.message, interaction=interaction)


def _process_pipeline_item(ctx: _RunContext, item: LLMJobItem, claim_token: str) -> str:
    """Run a pipeline job's item: one pipeline run, one draft. The run is linked to the
    item (``payload["run"]``) as soon as it starts, so a retry, or the next claim after a
    worker died, resumes it: steps that already answered are reused, never called again."""
    from .pipelines import answered_steps, run_pipeline

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
            raise LeaseLost(str(_("Another worker took this page over; answer discarded.")))

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
        return _item_crashed(job, item, claim_token, e)


def _next_item(ctx: _RunContext) -> tuple[LLMJobItem, str] | str:
    """The next claimed item for a thread (claiming ``ctx.batch`` at once when none is
    waiting), or "idle" (nothing claimable now) or "finished" (nothing left at all)."""
    with ctx.claim_lock:
        if ctx.stop.is_set():
            return "idle"
        if not ctx.pending:
            if time.monotonic() < ctx.idle_until:
                return "idle"  # another thread just found nothing to claim
            claim_token = ctx.next_claim()
            items = claim_items(ctx.job, claim_token, count=ctx.batch, lease=ctx.lease)
            if not items:
                unfinished = ctx.job.items.filter(
                    status__in=[ItemStatus.QUEUED, ItemStatus.RUNNING]
                )
                if not unfinished.exists():
                    return "finished"
                ctx.idle_until = time.monotonic() + IDLE_POLL
                return "idle"
            ctx.idle_until = 0.0
            with ctx.lock:
                for item in items:
                    ctx.claims[item.pk] = claim_token
            ctx.pending.extend((item, claim_token) for item in items)
        return ctx.pending.popleft()


def step(ctx: _RunContext) -> str:
    """Run one claimed item: "ran", "idle" (nothing claimable now) or "finished"."""
    got = _next_item(ctx)
    if isinstance(got, str):
        return got
    item, claim_token = got
    try:
        process_item(ctx, item, claim_token)
    finally:
        with ctx.lock:
            ctx.claims.pop(item.pk, None)
        ctx.notify()
    return "ran"


def _return_pending(ctx: _RunContext, status: str = ItemStatus.QUEUED) -> int:
    """Give back the items this runner claimed but never started (it is stopping): queued
    again as if never claimed (or ``status``, e.g. cancelled)."""
    with ctx.claim_lock:
        pending = list(ctx.pending)
        ctx.pending.clear()
    if not pending:
        return 0
    now = timezone.now()
    with ctx.lock:
        for item, _token in pending:
            ctx.claims.pop(item.pk, None)
    query = Q()
    for item, claim_token in pending:
        query |= Q(pk=item.pk, claimed_by=claim_token)

    def give_back() -> int:
        return (
            LLMJobItem.objects.filter(query, status=ItemStatus.RUNNING)
            .filter(attempts__gt=0)
            .update(
                status=status,
                claimed_by="",
                lease_expires_at=None,
                attempts=F("attempts") - 1,
                updated_at=now,
            )
        )

    try:
        return db.write(give_back, what="returning unstarted items")
    except Exception:  # their leases expire and another runner takes them  # noqa: BLE001
        logger.warning("Job %s: could not return unstarted items", ctx.job.pk, exc_info=True)
        return 0


def _acquire(job_id: int, token: str, lease: float, wait: bool) -> tuple[LLMJob | None, bool]:
    """Take the job's runner lease; wait for a silent holder's lease to expire.

    Returns the job (None if not taken) and whether it was taken over from another runner
    (one that stopped renewing its lease: a killed worker).
    """
    seen = None
    deadline = time.monotonic() + lease + 10
    while True:
        now = timezone.now()
        job = LLMJob.objects.select_related("action", "action__prompt", "user").filter(pk=job_id)
        job = job.first()
        if job is None or job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
            return None, False
        previous = job.runner_token

        def take(now=now) -> int:
            taken = (
                LLMJob.objects.filter(pk=job_id, status__in=[JobStatus.QUEUED, JobStatus.RUNNING])
                .filter(
                    Q(runner_lease_expires_at__isnull=True)
                    | Q(runner_lease_expires_at__lte=now)
                    | Q(runner_token=token)
                )
                .update(
                    runner_token=token,
                    runner_lease_expires_at=now + timedelta(seconds=lease),
                    status=JobStatus.RUNNING,
                )
            )
            if taken:
                LLMJob.objects.filter(pk=job_id, started_at__isnull=True).update(started_at=now)
            return taken

        if db.write(take, what="taking a job's runner lease"):
            job.refresh_from_db()
            return job, bool(previous) and previous != token
        if not wait:
            return None, False
        if seen is not None and job.runner_lease_expires_at != seen:
            return None, False  # the holder renewed its lease: it is alive
        seen = job.runner_lease_expires_at
        if time.monotonic() > deadline:
            return None, False
        remaining = (seen - now).total_seconds() if seen else 0
        time.sleep(min(max(remaining, 0.05), lease / 3, 2.0))


def _renew(ctx: _RunContext, helper: bool = False, slot_seconds: float = 0) -> bool:
    """Extend the runner lease, the leases of items claimed and the provider slots held
    (one transaction); False if the runner lease is lost."""
    now = timezone.now()
    until = now + timedelta(seconds=ctx.lease)
    with ctx.lock:
        claims = list(set(ctx.claims.values()))
    held = {"slots": 0}

    def renew() -> bool:
        kept = helper or LLMJob.objects.filter(pk=ctx.job.pk, runner_token=ctx.token).update(
            runner_lease_expires_at=until
        )
        if claims:
            LLMJobItem.objects.filter(claimed_by__in=claims, status=ItemStatus.RUNNING).update(
                lease_expires_at=until
            )
        if ctx.slots is not None and ctx.slots.capacity:
            held["slots"] = LLMProviderSlots.objects.filter(
                holder=ctx.token, expires_at__gt=now
            ).update(expires_at=now + timedelta(seconds=slot_seconds))
        return bool(kept)

    try:
        kept = db.write(renew, what="renewing leases")
    except Exception:  # a busy database: keep going, the next renewal will try again
        logger.warning("Job %s: could not renew leases this time", ctx.job.pk, exc_info=True)
        return True
    if ctx.slots is not None and ctx.slots.capacity:
        if held["slots"]:
            ctx.slots.set(ctx.slots.capacity, slot_seconds)
        else:  # the reservation expired meanwhile (and may be another runner's now)
            ctx.slots.set(0, 0)
    return kept


def _job_open(job_id: int) -> bool:
    return LLMJob.objects.filter(
        pk=job_id, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
    ).exists()


def run_job(
    job_id: int,
    *,
    threads: int | None = None,
    budget: float | None = None,
    wait: bool = True,
    progress: Callable[[LLMJob, Progress], None] | None = None,
    progress_interval: float = 0.5,
    helper: bool = False,
    share: int = 1,
) -> str:
    """Drive ``job_id`` until every item is final, the job is cancelled or ``budget`` runs out.

    Returns "completed", "cancelled", "budget" (a successor should continue), "busy" (another
    runner holds the job) or "gone". ``progress(job, progress)`` is called now and then.

    The runner reserves its provider slots (``CONCURRENCY`` divided by ``share``, or
    ``threads``; see :func:`reserve_slots`) and runs a few more threads than slots: each
    thread claims, reads, saves and logs pages, and holds a slot only while its model call
    is in flight. Items are claimed ``ctx.batch`` at a time.

    A ``helper`` takes no runner lease: it claims items beside the runner (claims are atomic
    and the provider limit holds across all of them), stops when nothing is left to claim,
    and never completes the job; the runner does, once every item is final, reclaiming the
    items of a helper that died when their leases expire. ``share`` divides the concurrency
    limit between the runners of one job when ``threads`` is not given.
    """
    token = new_token()
    job = LLMJob.objects.filter(pk=job_id).select_related("action", "pipeline").first()
    if job is None:
        return "gone"
    by_pipeline = (job.options or {}).get("paced_by") == "pipeline"
    if (job.action is None and not by_pipeline) or (by_pipeline and job.pipeline is None):
        if helper:
            return "gone"
        cancel_job(job)
        return "cancelled"
    if job.pipeline is not None:
        from .pipelines import job_lease_seconds

        lease = job_lease_seconds(job.pipeline)
    else:
        lease = lease_seconds(job.action) * int((job.options or {}).get("calls_per_item") or 1)
    took_over = False
    if helper:
        job = (
            LLMJob.objects.select_related("action", "action__prompt", "user")
            .filter(pk=job_id, status__in=[JobStatus.QUEUED, JobStatus.RUNNING])
            .first()
        )
    else:
        job, took_over = _acquire(job_id, token, lease, wait)
    if job is None:
        return "gone" if not _job_open(job_id) else "busy"
    if took_over and not connection.in_atomic_block:
        # The runner before this one died (its lease ran out): its helpers may have died
        # with it. Recovery queues runners only, so the job gets its helpers back here.
        enqueue_job(job, on_commit=False, runner=False)
    action = job.action
    # A job run by its pipeline alone: the model of the step that planned it.
    model = action.model if action is not None else (job.options or {}).get("model", "")
    ctx = _RunContext(
        job=job,
        action=action,
        trigger=(job.options or {}).get("trigger", InteractionTrigger.BULK),
        token=token,
        lease=lease,
        limit=int((job.options or {}).get("concurrency") or concurrency_for(model)),
        max_attempts=int((job.options or {}).get("max_attempts") or max_attempts()),
    )
    want = min(ctx.limit, threads) if threads else -(-ctx.limit // max(1, share))
    if threads is None:
        # Threads beyond the slots read and write pages while the others' calls run. Outside
        # its call a page is mostly database round trips (about 40), which PostgreSQL serves
        # in parallel: there three more threads per slot keep the slots busy (+13% pages/s
        # in bench/bulk.py; each thread holds a connection). SQLite writes one transaction at
        # a time, and more threads there only wait for its lock (-18%).
        threads = want + (max(2, want) if db.is_sqlite() else 3 * want)
    if connection.in_atomic_block:
        threads = 1  # other threads could not see this transaction's rows
    provider = (job.options or {}).get("provider", "")
    slot_seconds = float(get_setting("LEASE_SECONDS") or 120)

    def refill() -> None:
        try:
            granted = reserve_slots(
                provider, token, want=want, limit=ctx.limit, seconds=slot_seconds
            )
        except Exception:  # a busy database: the next refill tries again  # noqa: BLE001
            logger.warning("Job %s: could not reserve provider slots", job.pk, exc_info=True)
            return
        ctx.slots.set(granted, slot_seconds)

    ctx.slots = _Slots(refill)
    ctx.batch = max(1, want)
    started = time.monotonic()
    stop = ctx.stop
    outcome = {"value": "completed"}
    renew_every = max(0.2, min(lease, slot_seconds) / 3)

    def out_of_time() -> bool:
        return budget is not None and time.monotonic() - started > budget

    def halt(value: str) -> None:
        outcome["value"] = value
        stop.set()
        ctx.notify()

    last_renew = time.monotonic()

    def housekeeping() -> None:
        nonlocal last_renew
        try:
            open_ = _job_open(job.pk)
        except Exception:  # a busy database must not stop the runner  # noqa: BLE001
            logger.warning("Job %s: housekeeping read failed", job.pk, exc_info=True)
            return
        if time.monotonic() - last_renew >= renew_every:
            last_renew = time.monotonic()
            if not _renew(ctx, helper, slot_seconds):
                halt("busy")
                return
        if not open_:
            halt("cancelled")
        elif out_of_time():
            halt("budget")

    def report() -> None:
        if progress is not None:
            job.refresh_from_db()
            progress(job, job_progress(job))

    refill()
    try:
        if threads <= 1:
            last_report = time.monotonic()
            while not stop.is_set():
                result = step(ctx)
                if result == "finished" or (helper and result == "idle"):
                    break
                if result == "idle":
                    stop.wait(IDLE_POLL)
                if result != "ran" or time.monotonic() - last_renew >= renew_every:
                    housekeeping()
                if progress is not None and time.monotonic() - last_report > progress_interval:
                    report()
                    last_report = time.monotonic()
        else:
            finished = threading.Event()
            # SQLite: one writer at a time anyway, and each commit syncs to disk, so the
            # threads' writes share commits. PostgreSQL writes in parallel: no batching.
            batcher = db.WriteBatcher() if db.is_sqlite() else None

            def worker() -> None:
                try:
                    with db.batching(batcher):
                        run_steps()
                except Exception:
                    logger.exception("Job %s: runner thread crashed", job.pk)
                    halt("budget")  # let a successor continue
                finally:
                    connections.close_all()

            def run_steps() -> None:
                while not stop.is_set():
                    result = step(ctx)
                    if result == "finished" or (helper and result == "idle"):
                        finished.set()
                        halt(outcome["value"])
                        break
                    if result == "idle":
                        ctx.idle(IDLE_POLL)

            pool = [
                threading.Thread(target=worker, name=f"llm-job-{job.pk}-{n}", daemon=True)
                for n in range(threads)
            ]
            for thread in pool:
                thread.start()
            while not stop.wait(min(renew_every, progress_interval)):
                housekeeping()
                report()
            for thread in pool:
                thread.join()
            if batcher is not None:
                batcher.close()
                logger.info(
                    "Job %s: %s writes in %s commits, %.1f s in write transactions",
                    job.pk,
                    batcher.requests,
                    batcher.commits,
                    batcher.seconds,
                )
            if finished.is_set() and outcome["value"] not in ("cancelled",):
                outcome["value"] = "completed"
    finally:
        cancelled = outcome["value"] == "cancelled"
        _return_pending(ctx, ItemStatus.CANCELLED if cancelled else ItemStatus.QUEUED)
        try:
            release_slots(token)
        except Exception:  # the reservation expires on its own  # noqa: BLE001
            logger.warning("Job %s: could not release provider slots", job.pk, exc_info=True)
    if helper:
        return outcome["value"]
    if outcome["value"] == "completed":
        if job.items.filter(status__in=[ItemStatus.QUEUED, ItemStatus.RUNNING]).exists():
            outcome["value"] = "budget"
        else:
            db.write(
                lambda: LLMJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
                    status=JobStatus.COMPLETED, finished_at=timezone.now()
                ),
                what="completing a job",
            )
    db.write(
        lambda: LLMJob.objects.filter(pk=job.pk, runner_token=token).update(
            runner_token="", runner_lease_expires_at=None
        ),
        what="releasing a job",
    )
    report()
    return outcome["value"]
