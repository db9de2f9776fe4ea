"""Provider slots: how many model calls of one provider are in flight, across workers,
jobs and hosts.

``CONCURRENCY[provider]`` bounds the calls in flight. At each heartbeat a worker
re-reserves its fair share (:func:`reserve`, one transaction under an advisory lock on
PostgreSQL): :func:`fair_shares` splits the limit equally between the jobs that ask, then
each job's share between its workers. A worker lends its slots to its threads in memory
(:class:`_Slots`), one per model call, around the call only.
"""

from __future__ import annotations

import contextlib
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from django.db import connection
from django.db.models import Q
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _

from .. import db
from ..conf import get_setting
from ..exceptions import CallNotStarted
from ..models import LLMProviderSlots
from .leases import db_in

#: How often a thread waiting for a provider slot looks again (a heartbeat wakes it too).
SLOT_POLL = 0.25


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
    while the reservation is known to be live (``valid_until``); the worker's heartbeat
    renews it (:meth:`set`). A thread that finds no live slot waits for one.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.capacity = 0
        self.busy = 0
        self.valid_until = 0.0

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
                self._cond.wait(SLOT_POLL)
            self.busy += 1
        try:
            yield
        finally:
            with self._cond:
                self.busy -= 1
                self._cond.notify()


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
