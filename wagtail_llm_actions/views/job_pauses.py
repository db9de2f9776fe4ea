"""The job page's "Resume" button: a job a budget paused, resumed by hand once the refused
call fits (see :mod:`wagtail_llm_actions.jobs.pauses`)."""

from __future__ import annotations

from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from wagtail.admin import messages

from ..jobs import pauses
from .jobs import get_job_for, job_url


def pause_context(job, may_manage: bool) -> dict:
    """The job page's pause notice and whether it offers "Resume" (a query or three, only
    for a paused job)."""
    over = int((job.options or {}).get("over_budget") or 0)
    pause = pauses.pause_of(job)
    if pause is None:
        return {"pause": None, "pause_label": "", "can_resume": False, "over_budget": over}
    return {
        "over_budget": over,
        "pause": pause,
        "pause_label": pauses.pause_label(pause),
        "can_resume": may_manage and pauses.pause_lifted(job),
    }


@require_POST
def resume(request, pk: int):
    job = get_job_for(request, pk, manage=True)
    if pauses.pause_of(job) is None:
        messages.warning(request, _("The job is not paused."))
    elif pauses.resume_job(job):
        messages.success(request, _("The job was resumed: its queued pages run again."))
    else:
        messages.warning(
            request,
            _("The budget still cannot cover the next page: raise it or wait for its next period."),
        )
    return redirect(job_url(job.pk))
