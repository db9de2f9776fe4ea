"""The bulk job engine: run one action over many pages, resumably, on django-q2 workers.

Planning (selection, skip reasons, the confirmation screen's estimate, creating and queueing
a job) lives in :mod:`.planning`; its names are importable from here too.

Nothing here knows about HTTP; the bulk action, the views and ``run_llm_action`` call these
functions, and every page run goes through :meth:`LLMService.run`.

::

    plan = plan_job(action, user, page_ids, include_descendants=True)   # preview, no writes
    job = create_job(action, user, page_ids, include_descendants=True)  # job + one item a page
    enqueue_job(job)                     # a worker task on django-q2 (after commit)
    run_job(job.pk)                      # ...or run it here, in the foreground

Design
======

**Items.** A job has one ``LLMJobItem`` per selected page (and descendant). Pages that cannot
run are created *skipped* with a reason (wrong type, no permission, locked); the rest are
*queued*. Whether the source is empty, or unchanged (:mod:`.unchanged`: an answer of this
action from the same inputs is in the page's newest revision, or a person discarded it), is
decided when the item runs, just before any model call, so it is true at that moment.

**Any worker, any host.** :func:`enqueue_job` queues one django-q2 task,
``tasks.run_job(job_id)``; no set of runners is fixed. Whichever worker process takes a
job's task works on it (:func:`run_job`), beside any others, on any host that shares the
database and the broker. Each worker registers in ``LLMProviderSlots`` (its job, host and
slots) and renews that row, its items' leases and (see below) the coordinator lease at every
heartbeat (``HEARTBEAT``). One of the job's workers holds the *coordinator lease*
(``LLMJob.runner_token``/``runner_lease_expires_at``); any other worker of the job takes
the role over once that lease expires. The coordinator stays until every item is final
(waiting for the items of dead workers to be reclaimed), and keeps one task for the job in
the broker while the job could use another worker and nothing else waits there
(:func:`_pump`): the next free worker of any host, one that has just joined included, takes
it. Other workers leave when there is nothing to claim and the coordinator is seen renewing
its lease, or when the job's share of slots is covered without them. A host runs at most
``JOB_WORKERS_PER_HOST`` job workers (default: its django-q2 workers minus one, so one
stays free for editor runs); a task that finds its host full is passed on to the broker
again (at most ``tasks.MAX_HOPS`` times). Any worker that finds every item final completes
the job; any worker notices a cancellation. After a time budget below the django-q2
timeout a worker leaves and queues a successor task, so no task runs for hours. A worker
called inside a transaction (tests, ``sync`` mode) uses the calling thread only and queues
nothing.

**A slot is a call in flight.** ``CONCURRENCY[provider]`` (``{"*": 4, "openai": 8}``, keyed
by the model's provider prefix) bounds the model calls in flight across all workers and jobs
of that provider. At each heartbeat a worker re-reserves its fair share (:func:`reserve`,
one transaction under an advisory lock on PostgreSQL; SQLite serialises writes anyway):
:func:`fair_shares` splits the limit equally between the jobs that ask (a job never gets
more than its own limit; what one cannot use goes to the others), then each job's share
equally between its workers. A worker above its share gives slots back as its calls finish
(its row never drops below the calls it has in flight), and one below it takes what is free,
so the sum of live reservations never exceeds the limit, a second job gets its share within
a heartbeat or two, a joining host gets its worker's share, and a dead host's slots return
to the others when its rows expire. The worker lends its slots to its threads in memory
(:class:`_Slots`), one per model call, around the call only (``LLMService.run(call_slot=...)``).
Claiming, reading the page, storing the answer, saving the draft and logging hold no slot;
a worker runs a thread per slot and ``EXTRA_THREADS`` more on PostgreSQL (its thread count
follows its share), so its database connections are about one per slot plus three. On
SQLite the threads' write transactions share commits (:class:`db.WriteBatcher`): writes are
serialised there anyway and every commit syncs the journal to disk.

**Leases on the database's clock.** Every lease (items, the coordinator's, slots) and every
backoff (``not_before``) is set as the database's ``now()`` plus a duration and compared
with the database's ``now()``, so hosts whose clocks differ agree on when a lease expired.

**Claim.** Items are claimed several at a time (:func:`claim_items`) in one write
transaction: ``status`` queued (and ``not_before`` passed) *or* running with an expired
lease → running, with a claim token in ``claimed_by``, a lease and ``attempts + 1`` (on
PostgreSQL rows another claim is taking are skipped). Claimed items wait in the worker's
memory for a free thread (a claim takes as many as the worker has slots); a worker that
stops gives back those it did not start. Idle threads wait for a page of their process to
finish (or ``IDLE_POLL``), not on a fixed poll.

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

**Crash safety.** If a worker or a whole host is killed (SIGKILL), its transactions are
rolled back: its items stay *running* with leases that expire, its slots' rows expire
(``LEASE_SECONDS``), and if it coordinated the job, its coordinator lease expires too. The
job's other workers reclaim those items, take the coordinator role over and use the freed
slots, on either broker, without a restart: a host's death costs only its calls in flight
(made again) and the time until their leases expire. If no worker of the job is left, a
django-q2 schedule (``tasks.keep_jobs_running``, every minute) queues a task for each job
whose coordinator lease expired, and every worker process that starts (``post_spawn``,
:func:`recover_jobs`) queues one for each unfinished job. This does not depend on the
broker keeping the lost task (the Redis broker drops a task a killed worker had taken; the
ORM broker redelivers it after ``Q_CLUSTER["retry"]`` seconds, and that duplicate just
joins or leaves). "Retry failed" and the ``run_llm_action`` command also queue a task.
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
from django.db.models import (
    Count,
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    Max,
    OuterRef,
    Q,
    Sum,
    Value,
)
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from wagtail.models import Page

from . import db, response_cache
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
    selection_parts,
    skip_reason_label,
    working_copies,
)
from .service import LLMService
from .unchanged import unchanged_since_last_write

logger = logging.getLogger(__name__)

#: Longest backoff between attempts, in seconds.
MAX_BACKOFF = 300
#: How often an idle worker looks for claimable items, in seconds (a page finishing in its
#: process wakes its threads earlier). Also how late a worker may notice that the last
#: pages, run by another process, are done.
IDLE_POLL = 0.2
#: How often a thread waiting for a provider slot looks again (a heartbeat wakes it too).
SLOT_POLL = 0.25
#: Most seconds between a worker's heartbeats (leases renewed, its slots re-shared, the
#: coordinator lease checked); a third of ``LEASE_SECONDS`` when that is shorter.
HEARTBEAT = 1.0
#: How often the coordinator may queue a task for another worker, and the longest it waits
#: after tasks that did not make the job grow (taken on a host with no worker to spare).
PUMP_INTERVAL = 1.0
PUMP_MAX = 8.0
#: Threads beyond a worker's slots on PostgreSQL (see ``_threads_for``).
EXTRA_THREADS = 2
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
    """The item was reclaimed by another worker while this one was running it."""

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


def host_id() -> str:
    """This host's name for the engine: ``HOST_ID``, or the machine's host name."""
    return str(get_setting("HOST_ID") or socket.gethostname())[:40]


def new_token() -> str:
    return f"{host_id()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def db_in(seconds: float) -> ExpressionWrapper:
    """The database's clock plus ``seconds``: leases are set and compared on one clock,
    whichever host's clock is off."""
    return ExpressionWrapper(
        Now() + Value(timedelta(seconds=seconds), output_field=DurationField()),
        output_field=DateTimeField(),
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
    jobs_ = LLMJob.objects.filter(
        kind__in=ENGINE_KINDS, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
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
    """The worker stopped while this page waited for a provider slot: it was not sent."""

    code = "no_slot"


def _advisory_lock() -> None:
    """Order reservations on PostgreSQL (SQLite serialises writes anyway): one lock for every
    provider, as the per-host limit counts workers across providers."""
    if connection.vendor == "postgresql":
        key = zlib.crc32(b"wagtail_llm_actions:slots")
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _water_fill(total: int, demands: dict, order: list) -> dict:
    """Split ``total`` between ``demands`` (key -> most it can use) max-min fairly: equal
    shares, what one cannot use goes to the others; odd units go to the first in ``order``."""
    share = dict.fromkeys(demands, 0)
    left = total
    active = [k for k in order if demands[k] > 0]
    while left > 0 and active:
        each = left // len(active)
        if each == 0:
            for k in active[:left]:
                share[k] += 1
            break
        still = []
        for k in active:
            give = min(each, demands[k] - share[k])
            share[k] += give
            left -= give
            if share[k] < demands[k]:
                still.append(k)
        active = still
    return share


def fair_shares(
    limit: int, members: list[tuple[str, object, int, int]], first: str = ""
) -> tuple[dict[str, int], dict[object, int]]:
    """Split a provider's ``limit`` between jobs, then each job's share between its workers.

    ``members`` are ``(holder, job, wanted, job_limit)``. A job asks for what its workers
    want together, at most its own limit; jobs get equal shares (what one cannot use goes to
    the others), and each job's share is split between its workers the same way. Odd slots
    go first to ``first`` (the holder asking) and its job, so an uneven split stays as it
    is. Returns the slots of each holder and the share of each job.
    """
    caps: dict[object, int] = {}
    for _holder, job, wanted, job_limit in members:
        caps[job] = min(caps.get(job, 0) + wanted, job_limit)
    mine = next((m[1] for m in members if m[0] == first), None)
    order = sorted(caps, key=lambda job: (job != mine, str(job)))
    shares = _water_fill(limit, caps, order)
    slots: dict[str, int] = {}
    for job, share in shares.items():
        holders = sorted((m for m in members if m[1] == job), key=lambda m: (m[0] != first, m[0]))
        split = _water_fill(share, {m[0]: m[2] for m in holders}, [m[0] for m in holders])
        slots.update(split)
    return slots, shares


@dataclass
class Grant:
    """The outcome of one reservation (see :func:`reserve`)."""

    #: Slots the holder may use now.
    slots: int = 0
    #: Its fair share (it grows to that as other holders give slots back).
    target: int = 0
    #: Its job's fair share of the provider, and the job's live workers (this one included).
    share: int = 0
    members: int = 0
    #: Not joined: the host already runs ``host_cap`` job workers.
    full: bool = False


def reserve(
    provider: str,
    holder: str,
    *,
    want: int,
    limit: int,
    seconds: float,
    job_id: int | None = None,
    busy: int = 0,
    host: str = "",
    host_cap: int | None = None,
) -> Grant:
    """Reserve (or renew) ``holder``'s share of ``provider``'s ``limit`` concurrent calls.

    Run inside a write transaction (see :func:`reserve_slots`). Expired rows are dropped
    (on the database's clock); the live ones of the provider and this one are split by
    :func:`fair_shares`; ``holder`` gets its fair share, but never more than the others
    leave free right now (the sum of live rows never exceeds ``limit``: a holder above its
    share gives slots back when it renews, as its calls finish). Its row keeps at least
    ``busy`` slots, the calls it has in flight. A holder without a row joins only while its
    ``host`` has fewer than ``host_cap`` rows, or when its job has no worker at all.
    """
    _advisory_lock()
    LLMProviderSlots.objects.filter(expires_at__lte=Now()).delete()
    rows = list(
        LLMProviderSlots.objects.filter(Q(provider=provider) | Q(holder=holder)).values_list(
            "holder", "job_id", "wanted", "job_limit", "slots", "provider"
        )
    )
    joined = any(row[0] == holder for row in rows)
    # A job with no worker anywhere yet joins a full host all the same (taking the worker it
    # keeps for editor runs): otherwise it would wait for other jobs to finish.
    starved = job_id is not None and not any(row[1] == job_id for row in rows)
    if not joined and host_cap is not None and not starved:
        if LLMProviderSlots.objects.filter(host=host).count() >= host_cap:
            return Grant(full=True)
    others = [row for row in rows if row[0] != holder and row[5] == provider]

    def key(holder_: str, job: int | None) -> object:
        return job if job is not None else f"~{holder_}"

    members = [(h, key(h, j), w, jl) for h, j, w, jl, _s, _p in others]
    members.append((holder, key(holder, job_id), want, limit))
    targets, shares = fair_shares(limit, members, first=holder)
    free = limit - sum(row[4] for row in others)
    granted = max(0, min(want, targets[holder], free))
    fields = {
        "provider": provider,
        "slots": max(granted, min(busy, 32767)),
        "wanted": want,
        "job_limit": limit,
        "job_id": job_id,
        "host": host[:100],
        "expires_at": db_in(seconds),
    }
    if not LLMProviderSlots.objects.filter(holder=holder).update(**fields):
        LLMProviderSlots.objects.create(holder=holder, **fields)
    mine = key(holder, job_id)
    return Grant(
        slots=granted,
        target=targets[holder],
        share=shares[mine],
        members=sum(1 for m in members if m[1] == mine),
    )


def reserve_slots(
    provider: str, holder: str, *, want: int, limit: int, seconds: float, **kwargs
) -> int:
    """Reserve up to ``want`` of ``provider``'s ``limit`` concurrent calls for ``holder``
    in one write transaction (see :func:`reserve`); returns the slots it now holds."""
    return reserve_grant(provider, holder, want=want, limit=limit, seconds=seconds, **kwargs).slots


def reserve_grant(provider: str, holder: str, **kwargs) -> Grant:
    return db.write(lambda: reserve(provider, holder, **kwargs), what="reserving provider slots")


def release_slots(holder: str) -> None:
    db.write(
        lambda: LLMProviderSlots.objects.filter(holder=holder).delete(),
        what="releasing provider slots",
    )


class _Slots:
    """The provider slots one worker holds, lent to its threads one model call at a time.

    ``capacity`` is what the worker reserved (see :func:`reserve_slots`); it counts only
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
        """The worker holds ``capacity`` slots for ``seconds`` from now."""
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
                if stop is not None and stop.is_set():  # a stopping worker sends nothing new
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


def _claimable() -> Q:
    """Queued (and not backing off) or running under an expired lease, on the database's
    clock."""
    return (
        Q(status=ItemStatus.QUEUED) & (Q(not_before__isnull=True) | Q(not_before__lte=Now()))
    ) | Q(status=ItemStatus.RUNNING, lease_expires_at__lte=Now())


def claim_items(job: LLMJob, claim_token: str, *, count: int, lease: float) -> list[LLMJobItem]:
    """Atomically take up to ``count`` claimable items of ``job`` (queued, or running under
    an expired lease) in one write transaction; [] if there are none.

    A claimed item is the worker's to run (its lease, ``claimed_by``); it holds no provider
    slot until its model call starts (see :class:`_Slots`). On PostgreSQL rows another
    claim is taking are skipped (``FOR UPDATE SKIP LOCKED``), not waited for.
    """
    now = timezone.now()

    def claim() -> list[int]:
        candidates = job.items.filter(_claimable()).order_by("pk")
        if connection.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True)
        ids = list(candidates.values_list("pk", flat=True)[:count])
        if ids:
            LLMJobItem.objects.filter(pk__in=ids).filter(_claimable()).update(
                status=ItemStatus.RUNNING,
                claimed_by=claim_token,
                lease_expires_at=db_in(lease),
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
    #: The provider slots this worker holds (None: no limit, for direct calls in tests).
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
    #: The last claim found nothing while items were still queued or running elsewhere.
    nothing_to_claim: bool = False
    #: This worker holds the job's coordinator lease.
    coordinating: bool = False
    #: The coordinator's next look at the broker (monotonic), its current wait, and the
    #: job's workers when it last queued a task.
    pump_at: float = 0.0
    pump_backoff: float = 1.0
    pumped_members: int | None = None

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
        """Held around a model call: one of the worker's provider slots."""
        return self.slots.hold(self.stop) if self.slots is not None else contextlib.nullcontext()

    def notify(self) -> None:
        with self.wake:
            self.wake.notify_all()

    def idle(self, seconds: float) -> None:
        """Wait until a page of this process finishes, the worker stops, or ``seconds``."""
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
    worker took the item over meanwhile (nothing is then recorded by this one)."""
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
            not_before=db_in(backoff_seconds(item.attempts)),
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
    waiting), or "idle" (nothing to claim now, or no slot to call with) or "finished"
    (nothing left at all)."""
    with ctx.claim_lock:
        if ctx.stop.is_set():
            return "idle"
        if not ctx.pending:
            if time.monotonic() < ctx.idle_until:
                return "idle"  # another thread just found nothing to claim
            if ctx.slots is not None and ctx.slots.live() == 0:
                return "idle"  # no provider slot yet: claim nothing that would only wait
            claim_token = ctx.next_claim()
            count = max(1, ctx.slots.live()) if ctx.slots is not None else ctx.batch
            items = claim_items(ctx.job, claim_token, count=count, lease=ctx.lease)
            if not items:
                unfinished = ctx.job.items.filter(
                    status__in=[ItemStatus.QUEUED, ItemStatus.RUNNING]
                )
                if not unfinished.exists():
                    return "finished"
                ctx.nothing_to_claim = True
                ctx.idle_until = time.monotonic() + IDLE_POLL
                return "idle"
            ctx.nothing_to_claim = False
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
    """Give back the items this worker claimed but never started (it is stopping): queued
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
    except Exception:  # their leases expire and another worker takes them  # noqa: BLE001
        logger.warning("Job %s: could not return unstarted items", ctx.job.pk, exc_info=True)
        return 0


_OPEN = (JobStatus.QUEUED, JobStatus.RUNNING)


def _take_coordinator(job_id: int, token: str, seconds: float) -> bool:
    """Take the job's coordinator lease if nobody holds it, its holder's lease expired (on
    the database's clock) or it is ours already; the job is then running."""
    now = timezone.now()
    taken = (
        LLMJob.objects.filter(pk=job_id, status__in=_OPEN)
        .filter(
            Q(runner_lease_expires_at__isnull=True)
            | Q(runner_lease_expires_at__lte=Now())
            | Q(runner_token=token)
        )
        .update(
            runner_token=token, runner_lease_expires_at=db_in(seconds), status=JobStatus.RUNNING
        )
    )
    if taken:
        LLMJob.objects.filter(pk=job_id, started_at__isnull=True).update(started_at=now)
    return bool(taken)


@dataclass
class _Beat:
    """What one heartbeat saw of the job."""

    open: bool = True
    coordinator: str = ""
    lease: object = None


def _heartbeat(ctx: _RunContext, *, may_coordinate: bool, seconds: float) -> _Beat:
    """Extend the leases of this worker's items and, for the coordinator, the job's
    coordinator lease; take that lease over if it expired (``may_coordinate``). One write
    transaction, on the database's clock. Returns what it saw of the job."""
    with ctx.lock:
        claims = list(set(ctx.claims.values()))

    def beat() -> _Beat:
        if claims:
            LLMJobItem.objects.filter(claimed_by__in=claims, status=ItemStatus.RUNNING).update(
                lease_expires_at=db_in(ctx.lease)
            )
        if ctx.coordinating or may_coordinate:
            _take_coordinator(ctx.job.pk, ctx.token, seconds)
        row = LLMJob.objects.filter(pk=ctx.job.pk).values_list(
            "status", "runner_token", "runner_lease_expires_at"
        )
        row = row.first()
        if row is None:
            return _Beat(open=False)
        return _Beat(open=row[0] in _OPEN, coordinator=row[1], lease=row[2])

    beat_ = db.write(beat, what="renewing leases")
    ctx.coordinating = beat_.open and beat_.coordinator == ctx.token
    return beat_


def _complete(job_id: int) -> bool:
    """Mark the job completed if every item is final (any worker may; once)."""
    unfinished = LLMJobItem.objects.filter(job_id=OuterRef("pk"), status__in=_OPEN_ITEMS)
    return bool(
        db.write(
            lambda: (
                LLMJob.objects.filter(pk=job_id, status__in=_OPEN)
                .filter(~Exists(unfinished))
                .update(status=JobStatus.COMPLETED, finished_at=timezone.now())
            ),
            what="completing a job",
        )
    )


_OPEN_ITEMS = (ItemStatus.QUEUED, ItemStatus.RUNNING)


def _release_coordinator(job_id: int, token: str) -> None:
    db.write(
        lambda: LLMJob.objects.filter(pk=job_id, runner_token=token).update(
            runner_token="", runner_lease_expires_at=None
        ),
        what="releasing a job",
    )


def _job_open(job_id: int) -> bool:
    return LLMJob.objects.filter(pk=job_id, status__in=_OPEN).exists()


def host_worker_cap() -> int:
    """Job workers one host runs at once: ``JOB_WORKERS_PER_HOST``, or the django-q2
    cluster's workers minus one (at least one)."""
    value = get_setting("JOB_WORKERS_PER_HOST")
    if value:
        return max(1, int(value))
    try:
        from django_q.conf import Conf

        workers = int(Conf.WORKERS or 1)
    except Exception:  # noqa: BLE001 - django-q2 misconfigured: one worker
        workers = 1
    return max(1, workers - 1)


def _pump(ctx: _RunContext, grant: Grant) -> None:
    """The coordinator keeps one task for the job waiting in the broker while the job could
    use another worker (pages to claim, fewer workers than slots in its share) and nothing
    else waits there: the next free worker on any host, one that joins included, takes it.
    A task taken without the job growing (its host had no worker to spare) makes the next
    one wait longer (up to ``PUMP_MAX``)."""
    now = time.monotonic()
    if now < ctx.pump_at:
        return
    ctx.pump_at = now + PUMP_INTERVAL
    if grant.full or grant.members >= max(1, grant.share):
        ctx.pump_backoff = PUMP_INTERVAL
        return
    if not ctx.job.items.filter(_claimable()).exists():
        return
    from django_q.brokers import get_broker

    try:
        if get_broker().queue_size() > 0:
            return  # a task waits for a free worker already
        if ctx.pumped_members is not None and grant.members <= ctx.pumped_members:
            ctx.pump_backoff = min(PUMP_MAX, ctx.pump_backoff * 2)
        else:
            ctx.pump_backoff = PUMP_INTERVAL
        enqueue_job(ctx.job, on_commit=False)
    except Exception:  # a broker hiccup: the next beat tries again  # noqa: BLE001
        logger.warning("Job %s: could not queue a worker task", ctx.job.pk, exc_info=True)
        return
    ctx.pumped_members = grant.members
    ctx.pump_at = now + ctx.pump_backoff


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
    host_cap: int | None = None,
    pump: bool = False,
) -> str:
    """Work on ``job_id`` beside any other workers until it ends, this worker is not needed
    any more, or ``budget`` runs out.

    Returns "completed", "cancelled", "budget" (a successor should continue), "left" (the
    job goes on with other workers), "full" (not joined: the host runs ``host_cap`` job
    workers already) or "gone". ``progress(job, progress)`` is called now and then.

    The worker reserves its fair share of the provider's slots (see :func:`reserve`; at
    most ``threads``, or ``CONCURRENCY`` divided by ``share``), renewed with its leases at
    every heartbeat, and runs a thread per slot and a few more: each thread claims, reads,
    saves and logs pages, and holds a slot only while its model call is in flight. It takes
    the job's coordinator lease when nobody holds a live one (``helper``: never): the
    coordinator stays until every item is final, waiting for the items of dead workers to
    be reclaimed, and (``pump``) keeps a task in the broker for another worker while the
    job could use one. Any worker that finds every item final completes the job
    (``helper``: never). ``wait`` is accepted for compatibility.
    """
    token = new_token()
    job = LLMJob.objects.filter(pk=job_id).select_related("action", "pipeline").first()
    if job is None or job.status not in _OPEN:
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
    job = LLMJob.objects.select_related("action", "action__prompt", "user").get(pk=job_id)
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
    single = connection.in_atomic_block  # other threads could not see this transaction's rows
    provider = (job.options or {}).get("provider", "")
    slot_seconds = float(get_setting("LEASE_SECONDS") or 120)
    beat_every = max(0.2, min(HEARTBEAT, lease / 3, slot_seconds / 3))
    host = host_id()
    last = {"grant": Grant()}

    def refill(joining: bool = False) -> Grant | None:
        busy = ctx.slots.busy if ctx.slots is not None else 0
        with ctx.lock:
            idle = ctx.nothing_to_claim and not ctx.claims
        try:
            grant = reserve_grant(
                provider,
                token,
                # Nothing to run: its slots go to the job's other workers and other jobs.
                want=0 if idle else want,
                limit=ctx.limit,
                seconds=slot_seconds,
                job_id=job.pk,
                busy=busy,
                host=host,
                host_cap=host_cap if joining else None,
            )
        except Exception:  # a busy database: the next beat tries again  # noqa: BLE001
            logger.warning("Job %s: could not reserve provider slots", job.pk, exc_info=True)
            return None
        if not grant.full:
            ctx.slots.set(grant.slots, slot_seconds)
            last["grant"] = grant
        return grant

    ctx.slots = _Slots(None)
    joined = refill(joining=True)
    if joined is not None and joined.full:
        return "full"
    ctx.batch = max(1, want)
    started = time.monotonic()
    stop = ctx.stop
    outcome = {"value": "completed"}
    finished = threading.Event()
    may_coordinate = not helper

    def halt(value: str) -> None:
        if not stop.is_set():
            outcome["value"] = value
        stop.set()
        ctx.notify()

    def on_finished() -> None:
        """No item is queued or running any more."""
        if not helper:
            _complete(job.pk)
        finished.set()
        halt("completed")

    last_beat = {"at": 0.0}
    seen = {"lease": None}

    def housekeeping() -> None:
        if time.monotonic() - last_beat["at"] < beat_every:
            return
        last_beat["at"] = time.monotonic()
        try:
            beat = _heartbeat(ctx, may_coordinate=may_coordinate, seconds=slot_seconds)
        except Exception:  # a busy database must not stop the worker  # noqa: BLE001
            logger.warning("Job %s: could not renew leases this time", job.pk, exc_info=True)
            return
        if not beat.open:
            halt("cancelled" if _cancelled(job.pk) else "completed")
            return
        if ctx.nothing_to_claim and ctx.job.items.filter(_claimable()).exists():
            ctx.nothing_to_claim = False  # e.g. a dead worker's leases expired: claim again
        grant = refill() or last["grant"]
        if budget is not None and time.monotonic() - started > budget:
            halt("budget")
            return
        with ctx.lock:
            working = bool(ctx.claims)
        if ctx.coordinating:
            if pump and not single:
                _pump(ctx, grant)
            if not working and not ctx.job.items.filter(status__in=_OPEN_ITEMS).exists():
                on_finished()
            return
        if working:
            return
        if helper and ctx.nothing_to_claim:
            halt("left")
        elif ctx.nothing_to_claim:
            # Leave it to the coordinator, once it is seen alive (its lease renewed); if
            # it died, its lease expires and this worker takes the role over.
            if seen["lease"] is not None and beat.lease != seen["lease"]:
                halt("left")
            seen["lease"] = beat.lease
        else:
            seen["lease"] = None
            if grant.target == 0 and ctx.slots.busy == 0:
                halt("left")  # the job's share is covered by its other workers

    def report() -> None:
        if progress is not None:
            job.refresh_from_db()
            progress(job, job_progress(job))

    if may_coordinate:
        try:
            ctx.coordinating = db.write(
                lambda: _take_coordinator(job.pk, token, slot_seconds),
                what="taking a job's coordinator lease",
            )
        except Exception:  # noqa: BLE001 - the next heartbeat tries again
            logger.warning("Job %s: could not take the coordinator lease", job.pk, exc_info=True)
    last_beat["at"] = time.monotonic()
    try:
        if single:
            last_report = time.monotonic()
            while not stop.is_set():
                result = step(ctx)
                if result == "finished":
                    on_finished()
                    break
                if result == "idle":
                    stop.wait(IDLE_POLL)
                housekeeping()
                if progress is not None and time.monotonic() - last_report > progress_interval:
                    report()
                    last_report = time.monotonic()
        else:
            _run_threads(ctx, halt, on_finished, housekeeping, report, progress_interval)
    finally:
        cancelled = outcome["value"] == "cancelled"
        _return_pending(ctx, ItemStatus.CANCELLED if cancelled else ItemStatus.QUEUED)
        try:
            release_slots(token)
        except Exception:  # the reservation expires on its own  # noqa: BLE001
            logger.warning("Job %s: could not release provider slots", job.pk, exc_info=True)
        try:
            _release_coordinator(job.pk, token)
        except Exception:  # noqa: BLE001 - its lease expires
            logger.warning("Job %s: could not release the coordinator lease", job.pk)
    if finished.is_set() and outcome["value"] != "cancelled":
        outcome["value"] = "completed"
    report()
    return outcome["value"]


def _cancelled(job_id: int) -> bool:
    return LLMJob.objects.filter(pk=job_id, status=JobStatus.CANCELLED).exists()


def _threads_for(slots: int) -> int:
    """Threads for ``slots`` calls in flight: one each, and a few more that read and write
    pages while the calls run. Each holds a database connection: on PostgreSQL two more per
    worker (a page outside its call is ~40 round trips, well below a call's time); SQLite
    writes one transaction at a time, and a thread per slot more keeps its writer busy."""
    slots = max(1, slots)
    return slots + (max(2, slots) if db.is_sqlite() else EXTRA_THREADS)


def _run_threads(ctx, halt, on_finished, housekeeping, report, progress_interval) -> None:
    """Run the worker's threads, as many as its slots need (:func:`_threads_for`, resized at
    each heartbeat as its share changes), until it stops."""
    stop = ctx.stop
    # SQLite: one writer at a time anyway, and each commit syncs to disk, so the threads'
    # writes share commits. PostgreSQL writes in parallel: no batching.
    batcher = db.WriteBatcher() if db.is_sqlite() else None
    alive: list[threading.Thread] = []  # running, retiring ones included
    started: list[threading.Thread] = []
    retire = {"n": 0}
    lock = threading.Lock()

    def leave_now() -> bool:
        with lock:
            if retire["n"] > 0:
                retire["n"] -= 1
                return True
        return False

    def run_steps() -> None:
        while not stop.is_set():
            if leave_now():
                return
            result = step(ctx)
            if result == "finished":
                on_finished()
                return
            if result == "idle":
                ctx.idle(IDLE_POLL)

    def worker() -> None:
        try:
            with db.batching(batcher):
                run_steps()
        except Exception:
            logger.exception("Job %s: worker thread crashed", ctx.job.pk)
            halt("budget")  # let a successor continue
        finally:
            connections.close_all()

    def resize() -> None:
        want = _threads_for(ctx.slots.live())
        with lock:
            alive[:] = [t for t in alive if t.is_alive()]
            active = len(alive) - retire["n"]
            if active >= want:
                retire["n"] += active - want
                return
            kept = min(retire["n"], want - active)  # retiring threads that may stay
            retire["n"] -= kept
            missing = want - active - kept
        for _n in range(missing):
            thread = threading.Thread(target=worker, name=f"llm-job-{ctx.job.pk}", daemon=True)
            alive.append(thread)
            started.append(thread)
            thread.start()

    resize()
    while not stop.wait(min(HEARTBEAT / 4, progress_interval)):
        housekeeping()
        if not stop.is_set():
            resize()
        report()
    for thread in started:
        thread.join()
    if batcher is not None:
        batcher.close()
        logger.info(
            "Job %s: %s writes in %s commits, %.1f s in write transactions",
            ctx.job.pk,
            batcher.requests,
            batcher.commits,
            batcher.seconds,
        )
