"""A job limited to the pages that fit its budgets ("Run only the N pages that fit" on the
confirmation screen, see :mod:`wagtail_llm_actions.budget_fit`): the first ``n`` queued
pages run, in the order workers claim them; the others are listed as not started, skipped
with the reason, never silently dropped."""

from __future__ import annotations

from django.utils import timezone

from .. import db
from ..models import ItemStatus, LLMJob
from .planning import SKIP_OVER_BUDGET


def limit_to_pages(job: LLMJob, n: int, reason: str) -> int:
    """Keep the first ``n`` queued items of ``job`` (by id: the claim order) and skip the
    others with ``reason``; the number skipped. Call before the job is queued."""
    now = timezone.now()

    def write() -> int:
        keep = list(
            job.items.filter(status=ItemStatus.QUEUED)
            .order_by("pk")
            .values_list("pk", flat=True)[: max(0, n)]
        )
        skipped = (
            job.items.filter(status=ItemStatus.QUEUED)
            .exclude(pk__in=keep)
            .update(
                status=ItemStatus.SKIPPED,
                skip_reason=SKIP_OVER_BUDGET,
                error=reason,
                updated_at=now,
            )
        )
        if skipped:
            row = LLMJob.objects.select_for_update().get(pk=job.pk)
            options = dict(row.options or {})
            options["initial_skipped"] = int(options.get("initial_skipped", 0)) + skipped
            options["over_budget"] = skipped
            row.options = options
            row.save(update_fields=["options"])
            job.options = options
        return skipped

    return db.write(write, what="limiting a job to its budget")
