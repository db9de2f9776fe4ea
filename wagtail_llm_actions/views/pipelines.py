"""Run a pipeline on a page from the editor's action menu: a one-page job on the workers."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from wagtail.admin import messages
from wagtail.models import Page

from ..models import ItemStatus, JobKind, LLMPipeline


@require_POST
def run(request, page_id: int, pipeline_id: int):
    """Start ``pipeline`` on the page's last saved revision; go to the job's progress page."""
    # Imported on the first request: startup loads only the app's wiring.
    from ..editor import user_may_run
    from ..jobs import planning
    from ..pipelines import pipelines_for_page
    from .jobs import job_url

    page = get_object_or_404(Page, pk=page_id).specific
    if not user_may_run(request.user, page):
        raise PermissionDenied
    pipeline = get_object_or_404(LLMPipeline, pk=pipeline_id)
    edit_url = reverse("wagtailadmin_pages:edit", args=[page.pk])
    if pipeline not in pipelines_for_page(page):
        messages.error(
            request,
            _("The pipeline “%(name)s” does not run on this page.") % {"name": pipeline.name},
        )
        return redirect(edit_url)
    job = planning.create_pipeline_job(pipeline, request.user, [page.pk], kind=JobKind.BULK)
    item = job.items.first()
    if item is None or item.status != ItemStatus.QUEUED:
        reason = planning.skip_reason_label(item.skip_reason) if item else ""
        messages.error(
            request,
            _("The pipeline “%(name)s” cannot run on this page: %(reason)s")
            % {"name": pipeline.name, "reason": reason},
        )
        return redirect(edit_url)
    planning.enqueue_job(job)
    messages.success(
        request,
        _(
            "“%(name)s” started on the last saved version of this page; its answers arrive "
            "as one new draft."
        )
        % {"name": pipeline.name},
        buttons=[messages.button(edit_url, _("Back to the editor"))],
    )
    return redirect(job_url(job.pk))
