"""Admin screens of bulk jobs: the jobs listing, a job's progress page, cancel/retry, JSON.

Who sees a job: the user who started it, superusers and users with the
``wagtail_llm_actions.view_llmjob`` permission; others get 403. Cancel and retry need the
same, and POST with a CSRF token. Every view runs a fixed number of queries, however many
items a job has.
"""

from __future__ import annotations

from functools import wraps

from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpResponseForbidden, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import NoReverseMatch, path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_POST
from django.views.generic import TemplateView
from wagtail.admin import messages
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin
from wagtail.admin.viewsets.base import ViewSet

from .. import jobs
from ..models import ItemStatus, JobStatus, LLMJob

VIEW_ALL_PERMISSION = "wagtail_llm_actions.view_llmjob"
URL_NAMESPACE = "wagtail_llm_actions_jobs"
ITEMS_PER_PAGE = 50
JOBS_PER_PAGE = 30


def can_view_all_jobs(user) -> bool:
    return user.is_active and (user.is_superuser or user.has_perm(VIEW_ALL_PERMISSION))


def visible_jobs(user):
    queryset = LLMJob.objects.filter(kind__in=jobs.ENGINE_KINDS)
    if can_view_all_jobs(user):
        return queryset
    return queryset.filter(user=user)


class JobForbidden(Exception):
    pass


def get_job_for(request, pk: int) -> LLMJob:
    job = get_object_or_404(
        LLMJob.objects.select_related("user", "action"), pk=pk, kind__in=jobs.ENGINE_KINDS
    )
    if not (job.user_id == request.user.pk or can_view_all_jobs(request.user)):
        raise JobForbidden
    return job


def forbidden() -> HttpResponseForbidden:
    # A plain 403 (Wagtail would turn PermissionDenied into a redirect to the dashboard).
    return HttpResponseForbidden(_("You do not have permission to see this job."))


def job_view(view):
    """Answer 403 when the user may not see the job."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except JobForbidden:
            return forbidden()

    return wrapper


def job_url(job_id: int) -> str:
    return reverse(f"{URL_NAMESPACE}:detail", args=[job_id])


def interaction_url(interaction_id: int | None) -> str | None:
    """The interaction detail page, if the interaction report is installed."""
    if not interaction_id:
        return None
    for name in ("wagtail_llm_actions_interactions:detail", "wagtail_llm_actions_report:detail"):
        try:
            return reverse(name, args=[interaction_id])
        except NoReverseMatch:
            continue
    return None


def status_payload(job: LLMJob, progress: jobs.Progress) -> dict:
    return {
        "id": job.pk,
        "status": job.status,
        "status_label": str(job.get_status_display()),
        "finished": job.status in (JobStatus.COMPLETED, JobStatus.CANCELLED),
        "progress": progress.as_dict(),
    }


class JobIndexView(WagtailAdminTemplateMixin, TemplateView):
    template_name = "wagtail_llm_actions/jobs/index.html"
    page_title = gettext_lazy("LLM jobs")
    header_icon = "tasks"

    def get_breadcrumbs_items(self):
        return [*self.breadcrumbs_items, {"url": "", "label": self.get_page_title()}]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        counts = {
            f"n_{status}": Count("items", filter=Q(items__status=status))
            for status in ItemStatus.values
        }
        queryset = (
            visible_jobs(self.request.user)
            .select_related("user")
            .annotate(n_total=Count("items"), **counts)
            .order_by("-created_at", "-pk")
        )
        paginator = Paginator(queryset, JOBS_PER_PAGE)
        page = paginator.get_page(self.request.GET.get("p"))
        rows = []
        for job in page.object_list:
            done = sum(getattr(job, f"n_{s}") for s in jobs.FINAL_STATUSES)
            rows.append(
                {
                    "job": job,
                    "url": job_url(job.pk),
                    "done": done,
                    "percent": int(100 * done / job.n_total) if job.n_total else 100,
                }
            )
        context.update(jobs_page=page, rows=rows, items=page)
        return context


class JobDetailView(WagtailAdminTemplateMixin, TemplateView):
    template_name = "wagtail_llm_actions/jobs/detail.html"
    header_icon = "tasks"

    def dispatch(self, request, *args, **kwargs):
        try:
            self.job = get_job_for(request, kwargs["pk"])
        except JobForbidden:
            return forbidden()
        return super().dispatch(request, *args, **kwargs)

    def get_page_title(self):
        return _("Job #%(id)s: %(action)s") % {"id": self.job.pk, "action": self.job.action_name}

    def get_breadcrumbs_items(self):
        return [
            *self.breadcrumbs_items,
            {"url": reverse(f"{URL_NAMESPACE}:index"), "label": _("LLM jobs")},
            {"url": "", "label": self.get_page_title()},
        ]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        job = self.job
        progress = jobs.job_progress(job)
        status_filter = self.request.GET.get("status", "")
        items = job.items.select_related("page").order_by("pk")
        if status_filter in ItemStatus.values:
            items = items.filter(status=status_filter)
        else:
            status_filter = ""
        page = Paginator(items, ITEMS_PER_PAGE).get_page(self.request.GET.get("p"))
        rows = [
            {
                "item": item,
                "title": (item.page.draft_title if item.page else _("(deleted page)")),
                "edit_url": (
                    reverse("wagtailadmin_pages:edit", args=[item.page_id]) if item.page else None
                ),
                "interaction_url": interaction_url(item.interaction_id),
                "skip_label": jobs.skip_reason_label(item.skip_reason) if item.skip_reason else "",
            }
            for item in page.object_list
        ]
        filters = [
            {
                "value": "",
                "label": _("All"),
                "count": progress.total,
                "active": not status_filter,
            }
        ] + [
            {
                "value": value,
                "label": label,
                "count": progress.count(value),
                "active": status_filter == value,
            }
            for value, label in ItemStatus.choices
            if progress.count(value)
        ]
        running = job.status in (JobStatus.QUEUED, JobStatus.RUNNING)
        context.update(
            job=job,
            progress=progress,
            rows=rows,
            items=page,
            filters=filters,
            status_filter=status_filter,
            running=running,
            can_cancel=running,
            can_retry=bool(
                progress.count(ItemStatus.FAILED) or progress.count(ItemStatus.CANCELLED)
            ),
            status_url=reverse(f"{URL_NAMESPACE}:status", args=[job.pk]),
            cancel_url=reverse(f"{URL_NAMESPACE}:cancel", args=[job.pk]),
            retry_url=reverse(f"{URL_NAMESPACE}:retry", args=[job.pk]),
            cost_known=progress.cost is not None,
        )
        return context


@job_view
def job_status(request, pk: int):
    job = get_job_for(request, pk)
    return JsonResponse(status_payload(job, jobs.job_progress(job)))


@require_POST
@job_view
def cancel(request, pk: int):
    job = get_job_for(request, pk)
    if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
        count = jobs.cancel_job(job)
        messages.success(
            request,
            ngettext(
                "Job cancelled: %(count)d page will not run.",
                "Job cancelled: %(count)d pages will not run.",
                count,
            )
            % {"count": count},
        )
    else:
        messages.warning(request, _("The job has already finished."))
    return redirect(job_url(job.pk))


@require_POST
@job_view
def retry(request, pk: int):
    job = get_job_for(request, pk)
    count = jobs.retry_failed(job)
    if count:
        messages.success(
            request,
            ngettext("%(count)d page queued again.", "%(count)d pages queued again.", count)
            % {"count": count},
        )
    else:
        messages.warning(request, _("There are no failed pages to retry."))
    return redirect(job_url(job.pk))


class JobViewSet(ViewSet):
    """The jobs listing and progress pages, with a menu item in the "LLM actions" group."""

    name = URL_NAMESPACE
    url_prefix = "llm-actions/jobs"
    icon = "tasks"
    menu_label = gettext_lazy("Jobs")
    menu_name = "llm_jobs"
    menu_order = 300

    def get_urlpatterns(self):
        return [
            path("", JobIndexView.as_view(), name="index"),
            path("<int:pk>/", JobDetailView.as_view(), name="detail"),
            path("<int:pk>/status/", job_status, name="status"),
            path("<int:pk>/cancel/", cancel, name="cancel"),
            path("<int:pk>/retry/", retry, name="retry"),
        ]
