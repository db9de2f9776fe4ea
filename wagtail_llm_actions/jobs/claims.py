"""How a job's worker claims pages, and gives back those it did not start.

Items are claimed several at a time (:func:`claim_items`) in one write transaction:
queued (``not_before`` passed) *or* running under an expired lease -> running, with a
claim token in ``claimed_by``, a lease and ``attempts + 1`` (on PostgreSQL rows another
claim is taking are skipped). An outcome is recorded only while the claim still owns the
item (:func:`_finish`); otherwise the item was taken over (``LOST``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from django.db import connection
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone
from wagtail.models import Page

from .. import db
from ..models import ItemStatus, LLMJob, LLMJobItem
from .leases import db_in

if TYPE_CHECKING:
    from .context import _RunContext

logger = logging.getLogger(__name__)

#: How often an idle worker looks for claimable items, in seconds (a page finishing in its
#: process wakes its threads earlier). Also how late a worker may notice that the last
#: pages, run by another process, are done.
IDLE_POLL = 0.2


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

    def load() -> list[LLMJobItem]:
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

    try:
        return db.read(load, what="reading claimed items")
    except Exception:
        # Nobody holds these items yet: give them back now, not when their lease expires.
        _unclaim(claim_token, now)
        raise


def _unclaim(claim_token: str, now) -> None:
    try:
        db.write(
            lambda: LLMJobItem.objects.filter(
                status=ItemStatus.RUNNING, claimed_by=claim_token, attempts__gt=0
            ).update(
                status=ItemStatus.QUEUED,
                claimed_by="",
                lease_expires_at=None,
                attempts=F("attempts") - 1,
                updated_at=now,
            ),
            what="returning unread items",
        )
    except Exception:  # noqa: BLE001 - their lease expires and they are claimed again
        logger.warning("Could not give back claimed items %s", claim_token, exc_info=True)


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
                if not db.read(unfinished.exists, what="checking for unfinished items"):
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
