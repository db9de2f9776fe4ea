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
from django.db.models import Count, Q
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import NoReverseMatch, reverse
from django.utils.functional import cached_property
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_POST
from django.views.generic import TemplateView
from wagtail.admin import messages
from wagtail.admin.ui.tables import (
    Column,
    DateColumn,
    StatusTagColumn,
    Table,
    TitleColumn,
    UserColumn,
)
from wagtail.admin.views.generic import IndexView
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin

from ..conf import JOBS_LABEL, RUN_ACTION_LABEL, get_setting
from ..filters import JobFilterSet
from ..formatting import format_cost_total, format_number, format_rate
from ..job_counts import (
    cancel_message,
    display_status,
    is_paused,
    job_display_status,
    job_progress,
)
from ..lazy import lazy_module
from ..models import ItemStatus, JobStatus, LLMJob
from ..permissions import has_admin_access

jobs = lazy_module("wagtail_llm_actions.jobs")  # imported on the first request

VIEW_ALL_PERMISSION = "wagtail_llm_actions.view_llmjob"
MANAGE_ALL_PERMISSION = "wagtail_llm_actions.change_llmjob"
URL_NAMESPACE = "wagtail_llm_actions_jobs"  # the JobViewSet's name (viewsets.py)
ITEMS_PER_PAGE = 50
#: The request header with which the job page asks the status endpoint for its listing.
LISTING_HEADER = "X-LLM-Job-Listing"
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


def items_listing(request, job: LLMJob, progress: jobs.Progress) -> str:
    """The job's pages as HTML (table, filter buttons, paging): see :mod:`.job_items`."""
    from .job_items import JobItemsListing

    return JobItemsListing(request, job, progress).render()


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
#: The counter cards, in order (every status, so none is missing beside the chips).
CARD_STATUSES = (
    ItemStatus.SUCCEEDED,
    ItemStatus.FAILED,
    ItemStatus.SKIPPED,
    ItemStatus.QUEUED,
    ItemStatus.RUNNING,
    ItemStatus.CANCELLED,
)


def progress_display(job: LLMJob, progress: jobs.Progress, unpriced: int = 0) -> dict:
    """What the progress page shows, as text and numbers (the page and its JSON share it).

    ``processed`` counts pages that reached an outcome (succeeded, failed, skipped): cancelled
    pages did not run, so a cancelled job's bar is not full. ``unpriced``: the job's calls
    with no known price (the cost says so instead of counting them as zero).
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
            "text": format_number(progress.count(status)),
            "width": round(100 * progress.count(status) / total, 2) if total else 0,
        }
        for status in BAR_STATUSES
    ]
    cancelled = progress.count(ItemStatus.CANCELLED)
    failed = progress.count(ItemStatus.FAILED)
    shown = job_display_status(job, progress.counts)
    notice, notice_level = _job_notice(job, cancelled, failed)
    no_worker = jobs.waiting_for_worker(job)
    return {
        "processed": processed,
        "processed_percent": int(100 * processed / total) if total else 100,
        "segments": segments,
        "cards": [
            {
                "status": status,
                "label": str(labels[status]),
                "count": progress.count(status),
                "text": format_number(progress.count(status)),
            }
            for status in CARD_STATUSES
        ],
        "status": shown.value,
        "status_label": shown.label,
        "status_primary": shown.primary,
        "summary": _("%(processed)s of %(total)s pages processed")
        % {"processed": format_number(processed), "total": format_number(total)},
        "processed_text": format_number(processed),
        "total_text": format_number(total),
        "cost": format_cost_total(progress.cost, unpriced),
        "rate": format_rate(progress.rate),
        "eta": (
            _("about %(seconds)s s") % {"seconds": format_number(round(progress.eta))}
            if progress.eta is not None
            else "—"
        ),
        "tokens": format_number(progress.tokens),
        "cached": format_number(progress.cached),
        "notice": notice,
        "notice_level": notice_level,
        "no_worker": no_worker,
        "no_worker_message": (
            _(
                "This job has not started after %(seconds)s seconds. The site's background "
                "tasks may be stopped, or busy with other jobs: ask your administrator. The "
                "job starts as soon as they pick it up; you can also cancel it."
            )
            % {"seconds": int(float(get_setting("WORKER_PICKUP_TIMEOUT")))}
            if no_worker
            else ""
        ),
    }


def _job_notice(job: LLMJob, cancelled: int, failed: int) -> tuple[str, str]:
    """The notice above a finished or cancelled job's progress, and its level."""
    if job.status == JobStatus.CANCELLED:
        notice = ngettext(
            "Cancelled: %(count)s page did not run.",
            "Cancelled: %(count)s pages did not run.",
            cancelled,
        ) % {"count": format_number(cancelled)}
        return notice, "warning"
    if job.status == JobStatus.COMPLETED and failed:
        notice = ngettext(
            "Finished with %(count)s failed page.", "Finished with %(count)s failed pages.", failed
        ) % {"count": format_number(failed)}
        return notice, "critical"
    if job.status == JobStatus.COMPLETED:
        return _("Finished."), "info"
    return "", ""


def is_finished(job: LLMJob, progress: jobs.Progress) -> bool:
    """Nothing more will change: the job is final and no page is still running (a
    cancelled job's running pages finish, and the page keeps showing them live)."""
    return job.status in (JobStatus.COMPLETED, JobStatus.CANCELLED) and not progress.count(
        ItemStatus.RUNNING
    )


def status_payload(
    job: LLMJob, progress: jobs.Progress, unpriced: int = 0, listing_html: str | None = None
) -> dict:
    display = progress_display(job, progress, unpriced)
    payload = {
        "id": job.pk,
        "status": job.status,
        "status_label": display["status_label"],
        "finished": is_finished(job, progress),
        "paused": is_paused(job),
        "progress": progress.as_dict(),
        "display": display,
    }
    if listing_html is not None:
        payload["listing_html"] = listing_html
    return payload


# -- the jobs listing ------------------------------------------------------------------------


class JobTitleColumn(TitleColumn):
    """The job, linked to its page, with where it was started from below."""

    cell_template_name = "wagtail_llm_actions/jobs/_title_cell.html"


class ProgressColumn(Column):
    """Pages processed of the job's pages, with a bar, and how many were cancelled."""

    cell_template_name = "wagtail_llm_actions/jobs/_progress_cell.html"

    def get_value(self, instance):
        done = instance.n_succeeded + instance.n_failed + instance.n_skipped
        return {
            "done": format_number(done),
            "total": format_number(instance.n_total),
            # pages that reached an outcome: cancelled pages did not run (no full bar)
            "percent": int(100 * done / instance.n_total) if instance.n_total else 100,
            "cancelled": instance.n_cancelled,
        }


class JobTable(Table):
    def get_row_attrs(self, instance):
        return {**super().get_row_attrs(instance), "data-llm-job": instance.pk}


class JobIndexView(IndexView):
    """Bulk jobs, newest first: Wagtail's listing with sorting, filters and pagination.

    One query for the page of jobs (counts are annotations) and one for the total, however
    many jobs and pages there are.
    """

    model = LLMJob
    page_title = JOBS_LABEL
    header_icon = "tasks"
    table_class = JobTable
    index_url_name = f"{URL_NAMESPACE}:index"
    index_results_url_name = f"{URL_NAMESPACE}:index_results"
    default_ordering = "-created_at"
    paginate_by = JOBS_PER_PAGE
    filterset_class = JobFilterSet
    verbose_name = gettext_lazy("job")
    verbose_name_plural = gettext_lazy("jobs")
    any_permission_required = []  # visible_jobs() decides who sees which job
    permission_policy = None

    @cached_property
    def columns(self):
        return [
            JobTitleColumn(
                "action_name",
                label=_("Job"),
                accessor=str,
                get_url=lambda job: job_url(job.pk),
                sort_key="action_name",
            ),
            StatusTagColumn(
                "status",
                label=_("Status"),
                accessor=lambda job: self.shown(job).label,
                primary=lambda job: self.shown(job).primary,
                sort_key="status",
            ),
            ProgressColumn("progress", label=_("Progress"), sort_key="n_total"),
            Column(
                "n_failed",
                label=_("Failed"),
                accessor=lambda job: format_number(job.n_failed),
                sort_key="n_failed",
            ),
            UserColumn("user", label=_("Started by"), blank_display_name="—"),
            DateColumn("created_at", label=_("Created"), sort_key="created_at"),
        ]

    def shown(self, job: LLMJob):
        if is_paused(job):  # the job's own row: no query
            return job_display_status(job, {})
        return display_status(job.status, succeeded=job.n_succeeded, failed=job.n_failed)

    def get_base_queryset(self):
        counts = {
            f"n_{status}": Count("items", filter=Q(items__status=status))
            for status in ItemStatus.values
        }
        return (
            visible_jobs(self.request.user)
            .select_related("user", "user__wagtail_userprofile")  # the avatar: no query a row
            .annotate(n_total=Count("items"), **counts)
        )

    def order_queryset(self, queryset):
        queryset = super().order_queryset(queryset)
        return queryset.order_by(*queryset.query.order_by, "-pk")

    def get_filterset_kwargs(self):
        from django.contrib.auth import get_user_model

        kwargs = super().get_filterset_kwargs()
        users = get_user_model().objects.filter(
            pk__in=visible_jobs(self.request.user).values("user_id")
        )
        kwargs["user_queryset"] = users.order_by(get_user_model().USERNAME_FIELD)
        return kwargs

    @cached_property
    def no_results_message(self):
        if self.is_filtering:
            return _("No jobs match these filters.")
        return _("No jobs yet. Select pages in the page listing and choose “%(button)s”.") % {
            "button": RUN_ACTION_LABEL
        }


# -- one job ---------------------------------------------------------------------------------


def image_job_context(job, user, may_manage: bool, running: bool) -> dict:
    from .images import image_job_context as context

    return context(job, user, may_manage, running)


class JobDetailView(WagtailAdminTemplateMixin, TemplateView):
    template_name = "wagtail_llm_actions/jobs/detail.html"
    header_icon = "tasks"

    def dispatch(self, request, *args, **kwargs):
        self.job = get_job_for(request, kwargs["pk"])
        return super().dispatch(request, *args, **kwargs)

    def get_page_title(self):
        return _("Job #%(id)s: %(action)s") % {"id": self.job.pk, "action": self.job.action_name}

    def get_breadcrumbs_items(self):
        return [
            *self.breadcrumbs_items,
            {"url": reverse(f"{URL_NAMESPACE}:index"), "label": JOBS_LABEL},
            {"url": "", "label": self.get_page_title()},
        ]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        job = self.job
        progress, unpriced = job_progress(job)
        display = progress_display(job, progress, unpriced)
        running = job.status in (JobStatus.QUEUED, JobStatus.RUNNING)
        may_manage = can_manage_job(self.request.user, job)
        context.update(
            stored_count=(
                jobs.stored_answer_items(job).count() if may_manage and not running else 0
            ),
            apply_stored_url=reverse(f"{URL_NAMESPACE}:apply_stored", args=[job.pk]),
            stop_reason=(job.options or {}).get("stop_reason", ""),
            resume_url=reverse(f"{URL_NAMESPACE}:resume", args=[job.pk]),
        )
        from .job_pauses import pause_context

        context.update(pause_context(job, may_manage))
        context.update(image_job_context(job, self.request.user, may_manage, running))
        context.update(
            job=job,
            progress=progress,
            listing=items_listing(self.request, job, progress),
            running=running,
            live=not is_finished(job, progress),
            can_cancel=running and may_manage,
            can_retry=may_manage
            and bool(progress.count(ItemStatus.FAILED) or progress.count(ItemStatus.CANCELLED)),
            display=display,
            status_tag_class="w-status--primary" if display["status_primary"] else "",
            status_url=reverse(f"{URL_NAMESPACE}:status", args=[job.pk]),
            cancel_url=reverse(f"{URL_NAMESPACE}:cancel", args=[job.pk]),
            retry_url=reverse(f"{URL_NAMESPACE}:retry", args=[job.pk]),
        )
        return context


@json_job_view
def job_status(request, pk: int):
    """The job's progress as JSON. Asked with the ``X-LLM-Job-Listing`` header (the job
    page's script), its pages' listing too, rendered for the page's own query string (status
    filter, ordering, page number): rows, chips, cards and bar come from one reading."""
    job = get_job_for(request, pk)
    progress, unpriced = job_progress(job)
    listing = items_listing(request, job, progress) if request.headers.get(LISTING_HEADER) else None
    return JsonResponse(status_payload(job, progress, unpriced, listing))


@require_POST
def cancel(request, pk: int):
    job = get_job_for(request, pk, manage=True)
    if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
        count = jobs.cancel_job(job)
        still_running = job.items.filter(status=ItemStatus.RUNNING).count()
        messages.success(request, cancel_message(count, still_running))
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
