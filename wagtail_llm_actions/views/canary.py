"""Canary screens: start an action on a sample of pages; its old and new answers side by side.

Starting a canary needs what a bulk run needs (pages the user may edit; the job runs as
them). Its page is visible to whoever may see the job.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.generic import TemplateView
from wagtail.admin import messages
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin
from wagtail.models import Page

from .. import canary
from ..conf import JOBS_LABEL
from ..models import JobStatus, LLMAction
from ..permissions import can_edit_any_page
from .jobs import URL_NAMESPACE, get_job_for


def _ids(values) -> list[int]:
    ids = []
    for value in values:
        try:
            ids.append(int(value))
        except (TypeError, ValueError):
            continue
    return ids


class CanaryStartView(WagtailAdminTemplateMixin, TemplateView):
    """Pick pages (or let the app pick N at random, among ``?id=`` pages if given) and run."""

    template_name = "wagtail_llm_actions/canary/start.html"
    header_icon = "crosshairs"

    def dispatch(self, request, *args, **kwargs):
        if not can_edit_any_page(request.user):
            raise PermissionDenied
        self.action = get_object_or_404(LLMAction, pk=kwargs["pk"], enabled=True)
        self.pool = _ids(request.GET.getlist("id")) or None
        return super().dispatch(request, *args, **kwargs)

    def get_page_title(self):
        return _("Try on a sample")

    def get_page_subtitle(self):
        return self.action.name

    def get_breadcrumbs_items(self):
        return [
            *self.breadcrumbs_items,
            {"url": reverse(f"{URL_NAMESPACE}:index"), "label": JOBS_LABEL},
            {"url": "", "label": self.get_page_title(), "sublabel": self.get_page_subtitle()},
        ]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        eligible = canary.eligible_pages(self.action, self.request.user, self.pool)
        choices = Page.objects.filter(pk__in=eligible[:200]).order_by("path")
        latest = canary.canaries(self.action).first()
        context.update(
            action=self.action,
            size=canary.size(),
            eligible_count=len(eligible),
            choices=choices,
            pool=self.pool or [],
            changed=canary.changed_since_last_run(self.action),
            latest=latest,
            latest_reviewed=latest is not None and canary.is_reviewed(latest),
            latest_url=(
                reverse("wagtail_llm_actions_review:canary", args=[latest.pk]) if latest else ""
            ),
        )
        return context

    def post(self, request, *args, **kwargs):
        picked = _ids(request.POST.getlist("page"))
        eligible = set(canary.eligible_pages(self.action, request.user, self.pool))
        if picked:
            page_ids = [pk for pk in picked if pk in eligible]
        else:
            try:
                n = int(request.POST.get("size") or canary.size())
            except ValueError:
                n = canary.size()
            page_ids = canary.pick(self.action, request.user, self.pool, max(1, min(n, 50)))
        if not page_ids:
            messages.error(request, _("There is no page this action can run on."))
            return redirect(request.get_full_path())
        job = canary.start_canary(self.action, request.user, page_ids)
        messages.success(
            request,
            ngettext(
                "Canary started on %(count)d page.",
                "Canary started on %(count)d pages.",
                len(page_ids),
            )
            % {"count": len(page_ids)},
        )
        return redirect("wagtail_llm_actions_review:canary", job.pk)


class CanaryView(WagtailAdminTemplateMixin, TemplateView):
    """A canary's pages: the previous answer beside the new one, and its review state."""

    template_name = "wagtail_llm_actions/canary/detail.html"
    header_icon = "crosshairs"

    def dispatch(self, request, *args, **kwargs):
        self.job = get_job_for(request, kwargs["pk"])
        if not canary.is_canary(self.job):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)

    def get_page_title(self):
        return _("Canary #%(id)s") % {"id": self.job.pk}

    def get_page_subtitle(self):
        return self.job.action_name

    def get_breadcrumbs_items(self):
        return [
            *self.breadcrumbs_items,
            {"url": reverse(f"{URL_NAMESPACE}:index"), "label": JOBS_LABEL},
            {"url": "", "label": self.get_page_title(), "sublabel": self.get_page_subtitle()},
        ]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        job = self.job
        running = job.status in (JobStatus.QUEUED, JobStatus.RUNNING)
        current = job.action is not None and (job.options or {}).get("canary", {}).get(
            "fingerprint"
        ) == canary.fingerprint(job.action)
        context.update(
            job=job,
            rows=canary.rows(job),
            running=running,
            undecided=canary.undecided(job),
            reviewed=canary.is_reviewed(job),
            current=current,
            job_url=reverse(f"{URL_NAMESPACE}:detail", args=[job.pk]),
            review_url=reverse("wagtail_llm_actions_review:queue", args=[job.pk]),
        )
        return context
