"""Leases and the coordinator, all on the database's clock.

An item's lease (:func:`lease_seconds`), retry backoff, a worker's token, and the job's
*coordinator lease* (``LLMJob.runner_token``/``runner_lease_expires_at``): taken when
nobody holds a live one, renewed with the worker's item leases at each heartbeat
(:func:`_heartbeat`), released when the worker leaves. Every lease is set as the
database's ``now()`` plus a duration (:func:`db_in`), so hosts whose clocks differ agree
on when it expired.
"""

from __future__ import annotations

import os
import random
import socket
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db.models import (
    Exists,
    OuterRef,
    Q,
)
from django.db.models.functions import Now
from django.utils import timezone

from .. import db
from ..conf import get_setting
from ..db import db_in
from ..models import ItemStatus, JobStatus, LLMAction, LLMJob, LLMJobItem

if TYPE_CHECKING:
    from .context import _RunContext

#: Longest backoff between attempts, in seconds.
MAX_BACKOFF = 300


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
    #: The job is paused by a budget (see :mod:`.pauses`): its workers leave.
    paused: bool = False


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
            "status", "runner_token", "runner_lease_expires_at", "options"
        )
        row = row.first()
        if row is None:
            return _Beat(open=False)
        paused = bool((row[3] or {}).get("paused"))
        return _Beat(open=row[0] in _OPEN, coordinator=row[1], lease=row[2], paused=paused)

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


def _cancelled(job_id: int) -> bool:
    return LLMJob.objects.filter(pk=job_id, status=JobStatus.CANCELLED).exists()
