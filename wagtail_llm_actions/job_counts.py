"""The numbers and words a job's screens share: its display status and its unpriced calls.

The jobs listing, the job page (and its live JSON), the start and cancel messages use these,
so each screen says the same thing with the same words. No model field is added: the status
shown is derived from the job's stored status and its pages' counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .formatting import format_number
from .models import ItemStatus, JobStatus, LLMJob

#: Display statuses beyond :class:`JobStatus`: a finished job whose pages failed, an open
#: job a budget paused (see :mod:`.jobs.pauses`).
FAILED = "failed"
PARTLY_FAILED = "partly_failed"
PAUSED = "paused"

DISPLAY_LABELS = {
    FAILED: _("Failed"),
    PARTLY_FAILED: _("Partly failed"),
    PAUSED: _("Paused"),
}


def is_paused(job: LLMJob) -> bool:
    """An open job a budget paused (its pause is in ``options``, see :mod:`.jobs.pauses`)."""
    return job.status in (JobStatus.QUEUED, JobStatus.RUNNING) and bool(
        (job.options or {}).get("paused")
    )


@dataclass(frozen=True)
class DisplayStatus:
    """What a job's status tag says: ``value`` (a JobStatus value, ``failed`` or
    ``partly_failed``), its ``label``, and whether it is Wagtail's ``primary`` tag."""

    value: str
    label: str

    @property
    def primary(self) -> bool:
        return self.value == JobStatus.COMPLETED

    @property
    def classname(self) -> str:
        """The classes of Wagtail's ``{% status %}`` tag: primary for "Completed" only."""
        return "w-status--primary" if self.primary else ""


def display_status(status: str, *, succeeded: int = 0, failed: int = 0) -> DisplayStatus:
    """The status a user sees: a completed job with failed pages is "Failed" when no page
    succeeded, "Partly failed" when some did; otherwise the job's own status."""
    if status == JobStatus.COMPLETED and failed:
        value = PARTLY_FAILED if succeeded else FAILED
        return DisplayStatus(value, str(DISPLAY_LABELS[value]))
    return DisplayStatus(status, str(dict(JobStatus.choices).get(status, status)))


def job_display_status(job: LLMJob, counts: dict[str, int]) -> DisplayStatus:
    """:func:`display_status` of ``job`` with its item ``counts`` (status → count)."""
    if is_paused(job):
        return DisplayStatus(PAUSED, str(DISPLAY_LABELS[PAUSED]))
    return display_status(
        job.status,
        succeeded=counts.get(ItemStatus.SUCCEEDED, 0),
        failed=counts.get(ItemStatus.FAILED, 0),
    )


def job_progress(job: LLMJob):
    """``jobs.job_progress(job)`` and the job's calls at unknown price."""
    from .jobs import job_progress as progress_of

    progress = progress_of(job)
    return progress, progress.unpriced


def will_run_text(will_run: int, *, exact: bool = True) -> str:
    """The preview's words for how many pages will call the model: "6 pages will run.",
    "About 6 pages will run." (the start message repeats them, with the same number)."""
    n = format_number(will_run)
    if exact:
        return ngettext("%(n)s page will run.", "%(n)s pages will run.", will_run) % {"n": n}
    return ngettext("About %(n)s page will run.", "About %(n)s pages will run.", will_run) % {
        "n": n
    }


def start_message(name: str, plan) -> str:
    """The message after Start, in the preview's numbers and words: "“Summary” started:
    6 pages will run." (``plan``: the :class:`planning.Plan` the preview showed)."""
    return _("“%(name)s” started: %(will_run)s") % {
        "name": name,
        "will_run": will_run_text(plan.will_run, exact=plan.is_exact),
    }


def cancel_message(cancelled: int, still_running: int) -> str:
    """The message after Cancel: pages that will not run, and those already running that
    finish (the job page's cards count both the same way)."""
    message = ngettext(
        "Job cancelled: %(count)s page will not run.",
        "Job cancelled: %(count)s pages will not run.",
        cancelled,
    ) % {"count": format_number(cancelled)}
    if still_running:
        message += " " + ngettext(
            "%(count)s page already running will finish.",
            "%(count)s pages already running will finish.",
            still_running,
        ) % {"count": format_number(still_running)}
    return message


__all__ = [
    "job_progress",
    "cancel_message",
    "start_message",
    "will_run_text",
    "DisplayStatus",
    "FAILED",
    "PARTLY_FAILED",
    "PAUSED",
    "is_paused",
    "display_status",
    "job_display_status",
]
