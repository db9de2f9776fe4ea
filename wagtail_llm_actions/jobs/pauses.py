"""A job paused by a budget, and its resumption (issue 22 §1).

When a page's call is refused because a budget cannot cover it
(:class:`~wagtail_llm_actions.exceptions.BudgetExceeded`, raised before anything is sent),
the job *pauses*: that page goes back to the queue as if never claimed (its attempt not
counted), the job records why in ``options["paused"]`` (the budget, the message, what the
call needed), and its workers leave, giving back the pages they had claimed but not started.
Pages already answered keep their answers; the queued ones stay queued, neither failed nor
skipped. While paused, no worker joins the job (:func:`run_job` returns "paused") and the
periodic check queues none for it.

It resumes by itself, the same job and the same items, so each page still runs at most once
and no paid answer is lost:

* when a budget is saved or deleted (``post_save``/``post_delete`` of :class:`LLMBudget`,
  after commit): a raised cap, a disabled budget, a budget that no longer applies;
* when the period rolls over: the scheduled check ``tasks.keep_jobs_running`` (every minute,
  already there to revive jobs whose workers died) looks at the paused jobs. We chose the
  scheduled check over a worker polling with backoff: a paused job then holds no worker, no
  provider slot and no database connection for what may be a whole month;
* by hand: the job page's "Resume" button, offered when the call now fits.

A resumption only queues a worker when the call that was refused now fits the budget
(:func:`pause_lifted`); if another budget refuses the next call, the job pauses again.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import budgets, db
from ..exceptions import BudgetExceeded
from ..models import ItemStatus, LLMBudget, LLMJob, LLMJobItem
from .claims import _done
from .leases import _OPEN
from .planning import enqueue_job

logger = logging.getLogger(__name__)

#: The key of ``LLMJob.options`` that holds a pause.
PAUSE_KEY = "paused"


def pause_of(job: LLMJob) -> dict[str, Any] | None:
    """The job's pause (budget id and name, message, what the call needed), or None."""
    if job.status not in _OPEN:
        return None
    return (job.options or {}).get(PAUSE_KEY) or None


def pause_label(pause: dict[str, Any]) -> str:
    return _("Paused: budget “%(budget)s” is exhausted (%(reason)s)") % {
        "budget": pause.get("budget", ""),
        "reason": pause.get("reason", ""),
    }


def pause_job(job_id: int, error: BudgetExceeded) -> None:
    """Record the pause on the job (the last refusal wins; its workers see it at their next
    heartbeat)."""
    budget = error.budget
    pause = {
        "budget_id": getattr(budget, "pk", None),
        "budget": getattr(budget, "name", ""),
        "reason": error.message,
        "tokens": error.tokens or 0,
        "cost": None if error.cost is None else str(error.cost),
        "at": timezone.now().isoformat(),
    }

    def write() -> None:
        job = LLMJob.objects.select_for_update().filter(pk=job_id, status__in=_OPEN).first()
        if job is not None:
            job.options = {**(job.options or {}), PAUSE_KEY: pause}
            job.save(update_fields=["options"])

    db.write(write, what="pausing a job")
    logger.info("Job %s paused: %s", job_id, error.message)


def pause_item(ctx, item: LLMJobItem, claim_token: str, error: BudgetExceeded) -> str:
    """A page refused by a budget: queued again as if never claimed, and the job paused;
    this worker stops (the pages it claimed but did not start go back to the queue)."""
    status = _done(
        item,
        claim_token,
        ItemStatus.QUEUED,
        claimed_by="",
        attempts=F("attempts") - 1,
        not_before=None,
        error="",
    )
    pause_job(ctx.job.pk, error)
    ctx.paused = True
    ctx.stop.set()
    ctx.notify()
    return status


def is_paused(job_id: int) -> bool:
    options = LLMJob.objects.filter(pk=job_id).values_list("options", flat=True).first()
    return bool((options or {}).get(PAUSE_KEY))


def pause_lifted(job: LLMJob) -> bool:
    """Whether the call that paused ``job`` would now be allowed by its budget: raised, the
    period rolled over, disabled, deleted, or no longer applying to the job's runs."""
    pause = (job.options or {}).get(PAUSE_KEY)
    if not pause:
        return True
    budget = LLMBudget.objects.filter(pk=pause.get("budget_id")).first()
    if budget is None or not budget.enabled:
        return True
    if budget not in budgets.applicable(job.action, job.user_id):
        return True
    cost = pause.get("cost")
    row = budgets.spend([budget])[0]
    return budgets.fits(row, int(pause.get("tokens") or 0), None if cost is None else Decimal(cost))


def resume_job(job: LLMJob, *, check: bool = True) -> bool:
    """Lift ``job``'s pause and queue a worker (after commit); with ``check``, only if the
    refused call now fits (:func:`pause_lifted`). True if it was resumed."""
    if pause_of(job) is None or (check and not pause_lifted(job)):
        return False

    def write() -> bool:
        row = LLMJob.objects.select_for_update().filter(pk=job.pk, status__in=_OPEN).first()
        if row is None or not (row.options or {}).get(PAUSE_KEY):
            return False
        options = dict(row.options)
        options.pop(PAUSE_KEY)
        row.options = options
        row.save(update_fields=["options"])
        return True

    if not db.write(write, what="resuming a job"):
        return False
    job.options = {k: v for k, v in (job.options or {}).items() if k != PAUSE_KEY}
    enqueue_job(job)
    logger.info("Job %s resumed", job.pk)
    return True


def paused_jobs():
    return LLMJob.objects.filter(status__in=_OPEN, options__has_key=PAUSE_KEY).select_related(
        "action"
    )


def resume_fitting_jobs() -> int:
    """Resume every paused job whose refused call now fits (a budget saved, the period
    rolled over); the number resumed."""
    return sum(resume_job(job) for job in paused_jobs())
