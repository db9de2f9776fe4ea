"""Admin screens of bulk jobs: the jobs listing, a job's progress page, cancel/retry, JSON.

Who sees a job: the user who started it, superusers and users with the
``wagtail_llm_actions.view_llmjob`` permission. Who may cancel or retry it: the user who
started it, superusers and users with ``wagtail_llm_actions.change_llmjob`` (both
grantable in Settings → Groups); the buttons are shown only to them. Refusals are Wagtail's
own (``PermissionDenied``: back to the dashboard with "Sorry, you do not have permission to
access this area."), or a JSON 403 with a message for the status endpoint. Cancel and retry
are POST with a CSRF token. Every view runs a fixed number of queries, however many items a
job has. "Apply stored answer" needs the same permission as retry.
"""

from __future__ import annotations

from functools import wraps

from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_POST
from django.views.generic import TemplateView
from wagtail.admin import messages
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin

from ..conf import get_setting
from ..formatting import format_cost
from ..lazy import lazy_module
from ..models import ItemStatus, JobStatus, LLMJob
from ..permissions import explorable_pages, has_admin_access

jobs = lazy_module("wagtail_llm_actions.jobs")  # imported on the first request

VIEW_ALL_PERMISSION = "wagtail_llm_actions.view_llmjob"
MANAGE_ALL_PERMISSION = "wagtail_llm_actions.change_llmjob"
URL_NAMESPACE = "wagtail_llm_actions_jobs"  # the JobViewSet's name (viewsets.py)
ITEMS_PER_PAGE = 50
JOBS_PER_PAGE = 30


def can_view_all_jobs(user) -> bool:
    return has_admin_access(user) and (user.is_superuser or user.has_perm(VIEW_ALL_PERMISSION))


def can_manage_job(user, job: LLMJob) -> bool:
    """Whether ``user`` may cancel or retry ``job``."""
    return has_admin_access(user) and (
        job.user_id == user.pk or user.is_superuser or user.has_perm(MANAGE_ALL_PERMISSION)
    )


def visible_jobs(user):
    queryset = LLMJob.objects.filter(kind__in=jobs.ENGINE_KINDS)
    if can_view_all_jobs(user):
        return queryset
    if not has_admin_access(user):
        return queryset.none()
    return queryset.filter(user=user)


class JobForbidden(PermissionDenied):
    """The user may not see (or act on) this job."""


def get_job_for(request, pk: int, *, manage: bool = False) -> LLMJob:
    """The job if ``request.user`` may see it (and, with ``manage``, cancel or retry it)."""
    job = get_object_or_404(
        LLMJob.objects.select_related("user", "action"), pk=pk, kind__in=jobs.ENGINE_KINDS
    )
    user = request.user
    allowed = (
        can_manage_job(user, job)
        if manage
        else (has_admin_access(user) and (job.user_id == user.pk or can_view_all_jobs(user)))
    )
    if not allowed:
        raise JobForbidden
    return job


def json_forbidden() -> JsonResponse:
    return JsonResponse(
        {"code": "forbidden", "message": _("You do not have permission to see this job.")},
        status=403,
    )


def json_job_view(view):
    """A JSON endpoint: a refusal is a JSON 403 with a message, not a redirect."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except JobForbidden:
            return json_forbidden()

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


#: The parts of the progress bar, in order: what ran, then what did not.
BAR_STATUSES = (
    ItemStatus.SUCCEEDED,
    ItemStatus.FAILED,
    ItemStatus.SKIPPED,
    ItemStatus.RUNNING,
    ItemStatus.CANCELLED,
)


def progress_display(job: LLMJob, progress: jobs.Progress) -> dict:
    """What the progress page shows, as text and numbers (the page and its JSON share it).

    ``processed`` counts pages that reached an outcome (succeeded, failed, skipped): cancelled
    pages did not run, so a cancelled job's bar is not full.
    """
    total = progress.total
    processed = sum(
        progress.count(s) for s in (ItemStatus.SUCCEEDED, ItemStatus.FAILED, ItemStatus.SKIPPED)
    )
    labels = dict(ItemStatus.choices)
    segments = [
        {
            "status": status,
            "label": str(labels[status]),
            "count": progress.count(status),
            "width": round(100 * progress.count(status) / total, 2) if total else 0,
        }
        for status in BAR_STATUSES
    ]
    cancelled = progress.count(ItemStatus.CANCELLED)
    failed = progress.count(ItemStatus.FAILED)
    if job.status == JobStatus.CANCELLED:
        notice = ngettext(
            "Cancelled: %(count)d page did not run.",
            "Cancelled: %(count)d pages did not run.",
            cancelled,
        ) % {"count": cancelled}
        notice_level = "warning"
    elif job.status == JobStatus.COMPLETED and failed:
        notice = ngettext(
            "Finished with %(count)d failed page.", "Finished with %(count)d failed pages.", failed
        ) % {"count": failed}
        notice_level = "critical"
    elif job.status == JobStatus.COMPLETED:
        notice = _("Finished.")
        notice_level = "info"
    else:
        notice = ""
        notice_level = ""
    no_worker = jobs.waiting_for_worker(job)
    return {
        "processed": processed,
        "processed_percent": int(100 * processed / total) if total else 100,
        "segments": segments,
        "summary": _("%(processed)s of %(total)s pages processed")
        % {
            "processed": processed,
            "total": total,
        },
        "cost": format_cost(progress.cost, unknown=_("unknown")),
        "rate": (
            _("%(rate)s pages/s") % {"rate": f"{progress.rate:.2f}"} if progress.rate else "—"
        ),
        "eta": (
            _("about %(seconds)s s") % {"seconds": round(progress.eta)}
            if progress.eta is not None
            else "—"
        ),
        "tokens": f"{progress.tokens:,}",
        "notice": notice,
        "notice_level": notice_level,
        "no_worker": no_worker,
        "no_worker_message": (
            _(
                "No background worker has started this job after %(seconds)s seconds. The "
                "site's task worker (manage.py qcluster) may not be running, or may be busy "
                "with other jobs: ask your administrator. The job starts as soon as a worker "
                "takes it; you can also cancel it."
            )
            % {"seconds": int(float(get_setting("WORKER_PICKUP_TIMEOUT")))}
            if no_worker
            else ""
        ),
    }


def status_payload(job: LLMJob, progress: jobs.Progress) -> dict:
    return {
        "id": job.pk,
        "status": job.status,
        "status_label": str(job.get_status_display()),
        "finished": job.status in (JobStatus.COMPLETED, JobStatus.CANCELLED),
        "progress": progress.as_dict(),
        "display": progress_display(job, progress),
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
            # pages that reached an outcome: cancelled pages did not run (no full bar)
            done = job.n_succeeded + job.n_failed + job.n_skipped
            rows.append(
                {
                    "job": job,
                    "url": job_url(job.pk),
                    "done": done,
                    "percent": int(100 * done / job.n_total) if job.n_total else 100,
                    "status_class": (
                        "w-status--primary" if job.status == JobStatus.COMPLETED else ""
                    ),
                }
            )
        context.update(jobs_page=page, rows=rows, items=page)
        return context


class JobDetailView(WagtailAdminTemplateMixin, TemplateView):
    template_name = "wagtail_llm_actions/jobs/detail.html"
    header_icon = "tasks"

    def dispatch(self, request, *args, **kwargs):
        self.job = get_job_for(request, kwargs["pk"])
        return super().dispatch(request, *args, **kwargs)

    def visible_page_ids(self, page_ids: list[int | None]) -> set[int]:
        """Those of ``page_ids`` the user can see in the admin (one query): titles shown."""
        ids = {pk for pk in page_ids if pk}
        if self.request.user.is_superuser:
            return ids
        return set(
            explorable_pages(self.request.user).filter(pk__in=ids).values_list("pk", flat=True)
        )

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
        visible = self.visible_page_ids([item.page_id for item in page.object_list])
        rows = [
            {
                "item": item,
                "title": (
                    (item.page.draft_title if item.page_id in visible else _("Not available"))
                    if item.page
                    else _("(deleted page)")
                ),
                "edit_url": (
                    reverse("wagtailadmin_pages:edit", args=[item.page_id])
                    if item.page and item.page_id in visible
                    else None
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
        may_manage = can_manage_job(self.request.user, job)
        context.update(
            stored_count=(
                jobs.stored_answer_items(job).count() if may_manage and not running else 0
            ),
            apply_stored_url=reverse(f"{URL_NAMESPACE}:apply_stored", args=[job.pk]),
            stop_reason=(job.options or {}).get("stop_reason", ""),
        )
        context.update(
            job=job,
            progress=progress,
            rows=rows,
            items=page,
            filters=filters,
            status_filter=status_filter,
            running=running,
            can_cancel=running and may_manage,
            can_retry=may_manage
            and bool(progress.count(ItemStatus.FAILED) or progress.count(ItemStatus.CANCELLED)),
            display=progress_display(job, progress),
            status_tag_class="w-status--primary" if job.status == JobStatus.COMPLETED else "",
            status_url=reverse(f"{URL_NAMESPACE}:status", args=[job.pk]),
            cancel_url=reverse(f"{URL_NAMESPACE}:cancel", args=[job.pk]),
            retry_url=reverse(f"{URL_NAMESPACE}:retry", args=[job.pk]),
        )
        return context


@json_job_view
def job_status(request, pk: int):
    job = get_job_for(request, pk)
    return JsonResponse(status_payload(job, jobs.job_progress(job)))


@require_POST
def cancel(request, pk: int):
    job = get_job_for(request, pk, manage=True)
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
def retry(request, pk: int):
    job = get_job_for(request, pk, manage=True)
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


@require_POST
def apply_stored(request, pk: int):
    """Write the answers the model already gave for this job's pages, with no model call."""
    job = get_job_for(request, pk, manage=True)
    if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
        messages.warning(request, _("Wait for the job to finish before applying stored answers."))
        return redirect(job_url(job.pk))
    count = jobs.apply_stored_answers(job)
    if count:
        messages.success(
            request,
            ngettext(
                "%(count)d stored answer will be written as a draft (no new model call).",
                "%(count)d stored answers will be written as drafts (no new model calls).",
                count,
            )
            % {"count": count},
        )
    else:
        messages.warning(request, _("There are no stored answers to apply."))
    return redirect(job_url(job.pk))
