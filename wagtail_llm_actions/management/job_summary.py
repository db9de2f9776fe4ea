"""The summary ``run_llm_action`` prints when a job it ran ends: counts, tokens and cost,
why pages were skipped, the failed pages, and a non-zero exit for failures or a pause."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count

from wagtail_llm_actions import jobs
from wagtail_llm_actions.formatting import format_cost
from wagtail_llm_actions.models import ItemStatus


def write(command: BaseCommand, job) -> None:
    """Print ``job``'s outcome on ``command``'s streams; raise CommandError (exit 1) when
    pages failed or a budget paused the job."""
    job.refresh_from_db()
    progress = jobs.job_progress(job)
    cost = format_cost(progress.cost, unknown="unknown")
    command.stdout.write(
        f"Succeeded: {progress.count(ItemStatus.SUCCEEDED)}  "
        f"Failed: {progress.count(ItemStatus.FAILED)}  "
        f"Skipped: {progress.count(ItemStatus.SKIPPED)}  "
        f"Cancelled: {progress.count(ItemStatus.CANCELLED)}  "
        f"Tokens: {progress.tokens}  Cost: {cost}"
    )
    reasons = (
        job.items.filter(status=ItemStatus.SKIPPED)
        .values_list("skip_reason")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for code, n in reasons:
        command.stdout.write(f"  skipped {n}: {jobs.skip_reason_label(code)}")
    for item in job.items.filter(status=ItemStatus.FAILED).select_related("page")[:20]:
        title = item.page.title if item.page else "?"
        label = (
            f"Page {item.page_id} “{title}”" if not item.target_id else f"Image {item.target_id}"
        )
        command.stderr.write(command.style.ERROR(f"{label}: {item.error}"))
    from wagtail_llm_actions.jobs.pauses import pause_label, pause_of

    if (pause := pause_of(job)) is not None:  # a budget's cap: the rest waits, queued
        waiting = progress.count(ItemStatus.QUEUED)
        raise CommandError(
            f"{pause_label(pause)}. {waiting} page(s) wait in job {job.pk}; the workers "
            f"resume it when the budget is raised or its next period starts."
        )
    failed = progress.count(ItemStatus.FAILED)
    if failed:
        raise CommandError(
            f"{failed} of {progress.total} page(s) failed; content left as it was. "
            f"Retry them from the job page or run the command again."
        )
