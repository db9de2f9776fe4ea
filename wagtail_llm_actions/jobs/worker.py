"""A job worker: :func:`run_job`, its threads, heartbeats and the coordinator's pump.

See the package's docstring (:mod:`wagtail_llm_actions.jobs`) for the design.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.db import DatabaseError, connection, connections

from .. import db
from ..conf import get_setting
from ..models import InteractionTrigger, ItemStatus, LLMJob
from .claims import IDLE_POLL, _claimable, _next_item, _return_pending
from .context import _RunContext
from .control import Progress, cancel_job, job_progress
from .items import process_item
from .leases import (
    _OPEN,
    _OPEN_ITEMS,
    _cancelled,
    _complete,
    _heartbeat,
    _release_coordinator,
    _take_coordinator,
    host_id,
    lease_seconds,
    new_token,
)
from .options import concurrency_for, max_attempts
from .planning import enqueue_job
from .slots import Grant, _Slots, release_slots, reserve_grant

logger = logging.getLogger(__name__)

#: Most seconds between a worker's heartbeats (leases renewed, its slots re-shared, the
#: coordinator lease checked); a third of ``LEASE_SECONDS`` when that is shorter.
HEARTBEAT = 1.0
#: How often the coordinator may queue a task for another worker, and the longest it waits
#: after tasks that did not make the job grow (taken on a host with no worker to spare).
PUMP_INTERVAL = 1.0
PUMP_MAX = 8.0
#: Threads beyond a worker's slots on PostgreSQL (see ``_threads_for``).
EXTRA_THREADS = 2


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
    workers already), "paused" (a budget refused a call, see :mod:`.pauses`) or "gone".
    ``progress(job, progress)`` is called now and then.

    The worker reserves its fair share of the provider's slots (see :func:`reserve`; at
    most ``threads``, or ``CONCURRENCY`` divided by ``share``), renewed with its leases at
    every heartbeat, and runs a thread per slot and a few more: each thread claims, reads,
    saves and logs pages, and holds a slot only while its model call is in flight. It takes
    the job's coordinator lease when nobody holds a live one (``helper``: never): the
    coordinator stays until every item is final, waiting for the items of dead workers to
    be reclaimed, and (``pump``) keeps a task in the broker for another worker while the
    job could use one. Any worker that finds every item final completes the job
    (``helper``: never). ``wait`` is accepted for compatibility.

    The phases, in order: load the job (:func:`_load_job`), join its provider's slots
    (:meth:`_Worker.join`), take the coordinator lease if free (:meth:`_Worker.coordinate`),
    work (:meth:`_Worker.work`: threads, or this thread inside a transaction, with a
    heartbeat that decides when to stop), leave (:meth:`_Worker.leave`: unstarted items,
    slots and the coordinator lease given back) and report (:meth:`_Worker.outcome`).
    """
    token = new_token()
    loaded = _load_job(job_id, helper=helper)
    if isinstance(loaded, str):
        return loaded
    job, lease = loaded
    worker = _Worker(
        _new_context(job, token, lease),
        threads=threads,
        share=share,
        budget=budget,
        helper=helper,
        host_cap=host_cap,
        pump=pump,
        progress=progress,
        progress_interval=progress_interval,
    )
    if not worker.join():
        return "full"
    worker.coordinate()
    try:
        worker.work()
    finally:
        worker.leave()
    return worker.outcome()


def _load_job(job_id: int, *, helper: bool) -> tuple[LLMJob, float] | str:
    """The job and its items' lease, or what the worker returns at once: "gone" (no such
    open job) or "cancelled" (its action or pipeline was deleted)."""
    job = LLMJob.objects.filter(pk=job_id).select_related("action", "pipeline").first()
    if job is None or job.status not in _OPEN:
        return "gone"
    if (job.options or {}).get("paused"):
        return "paused"  # resumed by a budget's save, the period's end or by hand (.pauses)
    by_pipeline = (job.options or {}).get("paced_by") == "pipeline"
    if (job.action is None and not by_pipeline) or (by_pipeline and job.pipeline is None):
        if helper:
            return "gone"
        cancel_job(job)
        return "cancelled"
    if job.pipeline is not None:
        from ..pipelines import job_lease_seconds

        lease = job_lease_seconds(job.pipeline)
    else:
        lease = lease_seconds(job.action) * int((job.options or {}).get("calls_per_item") or 1)
    job = LLMJob.objects.select_related("action", "action__prompt", "user").get(pk=job_id)
    return job, lease


def _new_context(job: LLMJob, token: str, lease: float) -> _RunContext:
    """The worker's shared state: the action, the trigger, the limits it runs under."""
    action = job.action
    options = job.options or {}
    # A job run by its pipeline alone: the model of the step that planned it.
    model = action.model if action is not None else options.get("model", "")
    return _RunContext(
        job=job,
        action=action,
        trigger=options.get("trigger", InteractionTrigger.BULK),
        token=token,
        lease=lease,
        limit=int(options.get("concurrency") or concurrency_for(model)),
        max_attempts=int(options.get("max_attempts") or max_attempts()),
    )


class _Worker:
    """One job worker between joining and leaving (see :func:`run_job`)."""

    def __init__(
        self,
        ctx: _RunContext,
        *,
        threads: int | None,
        share: int,
        budget: float | None,
        helper: bool,
        host_cap: int | None,
        pump: bool,
        progress: Callable[[LLMJob, Progress], None] | None,
        progress_interval: float,
    ) -> None:
        self.ctx = ctx
        self.job = ctx.job
        self.budget = budget
        self.helper = helper
        self.may_coordinate = not helper
        self.host_cap = host_cap
        self.pump = pump
        self.progress = progress
        self.progress_interval = progress_interval
        self.want = min(ctx.limit, threads) if threads else -(-ctx.limit // max(1, share))
        # Inside a transaction other threads could not see its rows: this thread only.
        self.single = connection.in_atomic_block
        self.provider = (self.job.options or {}).get("provider", "")
        self.slot_seconds = float(get_setting("LEASE_SECONDS") or 120)
        self.beat_every = max(0.2, min(HEARTBEAT, ctx.lease / 3, self.slot_seconds / 3))
        self.host = host_id()
        self.grant = Grant()
        self.started = 0.0
        self.value = "completed"
        self.finished = threading.Event()
        self.last_beat = 0.0
        self.seen_lease: object = None

    # -- joining and leaving -------------------------------------------------------------

    def join(self) -> bool:
        """Reserve the worker's share of the provider's slots; False: its host is full."""
        self.ctx.slots = _Slots()
        joined = self.refill(joining=True)
        if joined is not None and joined.full:
            return False
        self.ctx.batch = max(1, self.want)
        self.started = time.monotonic()
        return True

    def coordinate(self) -> None:
        """Take the job's coordinator lease if nobody holds a live one (never a helper)."""
        if self.may_coordinate:
            job, token, seconds = self.job, self.ctx.token, self.slot_seconds
            try:
                self.ctx.coordinating = db.write(
                    lambda: _take_coordinator(job.pk, token, seconds),
                    what="taking a job's coordinator lease",
                )
            except Exception:  # noqa: BLE001 - the next heartbeat tries again
                logger.warning(
                    "Job %s: could not take the coordinator lease", job.pk, exc_info=True
                )
        self.last_beat = time.monotonic()

    def leave(self) -> None:
        """Give back the unstarted items, the slots and the coordinator lease."""
        cancelled = self.value == "cancelled"
        _return_pending(self.ctx, ItemStatus.CANCELLED if cancelled else ItemStatus.QUEUED)
        try:
            release_slots(self.ctx.token)
        except Exception:  # the reservation expires on its own  # noqa: BLE001
            logger.warning("Job %s: could not release provider slots", self.job.pk, exc_info=True)
        try:
            _release_coordinator(self.job.pk, self.ctx.token)
        except Exception:  # noqa: BLE001 - its lease expires
            logger.warning("Job %s: could not release the coordinator lease", self.job.pk)

    def outcome(self) -> str:
        if self.finished.is_set() and self.value != "cancelled":
            self.value = "completed"
        elif self.ctx.paused and self.value != "cancelled":
            self.value = "paused"
        self.report()
        return self.value

    # -- working -------------------------------------------------------------------------

    def work(self) -> None:
        """Run pages until the worker stops: its threads, or (inside a transaction) this
        thread alone."""
        if not self.single:
            _run_threads(
                self.ctx,
                self.halt,
                self.on_finished,
                self.housekeeping,
                self.report,
                self.progress_interval,
            )
            return
        stop = self.ctx.stop
        last_report = time.monotonic()
        while not stop.is_set():
            result = step(self.ctx)
            if result == "finished":
                self.on_finished()
                break
            if result == "idle":
                stop.wait(IDLE_POLL)
            self.housekeeping()
            if (
                self.progress is not None
                and time.monotonic() - last_report > self.progress_interval
            ):
                self.report()
                last_report = time.monotonic()

    def refill(self, joining: bool = False) -> Grant | None:
        """Reserve (or renew) the worker's share of slots; None if the database was busy."""
        ctx = self.ctx
        busy = ctx.slots.busy if ctx.slots is not None else 0
        with ctx.lock:
            idle = ctx.nothing_to_claim and not ctx.claims
        try:
            grant = reserve_grant(
                self.provider,
                ctx.token,
                # Nothing to run: its slots go to the job's other workers and other jobs.
                want=0 if idle else self.want,
                limit=ctx.limit,
                seconds=self.slot_seconds,
                job_id=self.job.pk,
                busy=busy,
                host=self.host,
                host_cap=self.host_cap if joining else None,
            )
        except Exception:  # a busy database: the next beat tries again  # noqa: BLE001
            logger.warning("Job %s: could not reserve provider slots", self.job.pk, exc_info=True)
            return None
        if not grant.full:
            ctx.slots.set(grant.slots, self.slot_seconds)
            self.grant = grant
        return grant

    def halt(self, value: str) -> None:
        if not self.ctx.stop.is_set():
            self.value = value
        self.ctx.stop.set()
        self.ctx.notify()

    def on_finished(self) -> None:
        """No item is queued or running any more."""
        if not self.helper:
            _complete(self.job.pk)
        self.finished.set()
        self.halt("completed")

    def report(self) -> None:
        if self.progress is None:
            return
        try:
            self.job.refresh_from_db()
            progress = job_progress(self.job)
        except DatabaseError as e:
            if not db.is_busy_error(e):
                raise
            return  # a busy database: the next report says it
        self.progress(self.job, progress)

    # -- the heartbeat -------------------------------------------------------------------

    def housekeeping(self) -> None:
        """At most every ``beat_every`` seconds: renew the leases and the slots, and decide
        whether this worker stops (job ended, budget spent, not needed any more). A busy
        database skips the beat (the next one tries again); it never stops the worker."""
        if time.monotonic() - self.last_beat < self.beat_every:
            return
        self.last_beat = time.monotonic()
        try:
            self._beat()
        except DatabaseError as e:
            if not db.is_busy_error(e):
                raise
            logger.warning("Job %s: database busy during a heartbeat: %s", self.job.pk, e)

    def _beat(self) -> None:
        ctx = self.ctx
        try:
            beat = _heartbeat(ctx, may_coordinate=self.may_coordinate, seconds=self.slot_seconds)
        except Exception:  # a busy database must not stop the worker  # noqa: BLE001
            logger.warning("Job %s: could not renew leases this time", self.job.pk, exc_info=True)
            return
        if not beat.open:
            self.halt("cancelled" if _cancelled(self.job.pk) else "completed")
            return
        if beat.paused:
            ctx.paused = True
            self.halt("paused")
            return
        if ctx.nothing_to_claim and ctx.job.items.filter(_claimable()).exists():
            ctx.nothing_to_claim = False  # e.g. a dead worker's leases expired: claim again
        grant = self.refill() or self.grant
        if self.budget is not None and time.monotonic() - self.started > self.budget:
            self.halt("budget")
            return
        with ctx.lock:
            working = bool(ctx.claims)
        if ctx.coordinating:
            self._as_coordinator(grant, working=working)
        elif not working:
            self._leave_if_not_needed(beat.lease, grant)

    def _as_coordinator(self, grant: Grant, *, working: bool) -> None:
        """The coordinator queues another worker while the job could use one, and
        completes the job once every item is final."""
        if self.pump and not self.single:
            _pump(self.ctx, grant)
        if not working and not self.ctx.job.items.filter(status__in=_OPEN_ITEMS).exists():
            self.on_finished()

    def _leave_if_not_needed(self, lease: object, grant: Grant) -> None:
        """A worker with nothing in hand leaves when the job goes on without it."""
        ctx = self.ctx
        if self.helper and ctx.nothing_to_claim:
            self.halt("left")
        elif ctx.nothing_to_claim:
            # Leave it to the coordinator, once it is seen alive (its lease renewed); if
            # it died, its lease expires and this worker takes the role over.
            if self.seen_lease is not None and lease != self.seen_lease:
                self.halt("left")
            self.seen_lease = lease
        else:
            self.seen_lease = None
            if grant.target == 0 and ctx.slots.busy == 0:
                self.halt("left")  # the job's share is covered by its other workers


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
