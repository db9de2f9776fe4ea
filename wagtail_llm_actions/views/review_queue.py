"""The review queue of a bulk job: its drafts, one row per page, accepted or rejected here.

Who sees the queue: whoever may see the job (:func:`.jobs.get_job_for`); its rows are the
pages that user may edit, and each POST checks the page's permissions again (publish and
moderation too). Decisions are POSTs with Django's CSRF token; the domain work is
:mod:`..review_queue`.
"""

from __future__ import annotations

from django.core.paginator import Paginator
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.generic import TemplateView, View
from wagtail.admin import messages
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin
from wagtail.admin.widgets import HeaderButton

from .. import review_queue as rq
from ..conf import JOBS_LABEL
from ..exceptions import LLMActionError
from ..formatting import format_number
from .jobs import URL_NAMESPACE, get_job_for

NAMESPACE = "wagtail_llm_actions_review"


def queue_url(job_id: int) -> str:
    return reverse(f"{NAMESPACE}:queue", args=[job_id])


def _filter(value: str, label, count: int, active: bool) -> dict:
    """A review-status filter button: its count written as the active language does."""
    return {
        "value": value,
        "label": label,
        "count": count,
        "count_text": format_number(count),
        "active": active,
    }


class ReviewQueueView(WagtailAdminTemplateMixin, TemplateView):
    """Every draft the job wrote, with the changes Wagtail's compare view would show."""

    template_name = "wagtail_llm_actions/review_queue/index.html"
    header_icon = "tasks"
    paginate_by = rq.PER_PAGE

    def dispatch(self, request, *args, **kwargs):
        self.job = get_job_for(request, kwargs["pk"])
        return super().dispatch(request, *args, **kwargs)

    def get_page_title(self):
        return _("Review drafts")

    def get_page_subtitle(self):
        return _("Job #%(id)s: %(action)s") % {"id": self.job.pk, "action": self.job.action_name}

    def get_breadcrumbs_items(self):
        return [
            *self.breadcrumbs_items,
            {"url": reverse(f"{URL_NAMESPACE}:index"), "label": JOBS_LABEL},
            {
                "url": reverse(f"{URL_NAMESPACE}:detail", args=[self.job.pk]),
                "label": self.get_page_subtitle(),
            },
            {"url": "", "label": self.get_page_title()},
        ]

    @cached_property
    def header_buttons(self):
        return [
            HeaderButton(
                _("Job progress"),
                url=reverse(f"{URL_NAMESPACE}:detail", args=[self.job.pk]),
                icon_name="tasks",
            )
        ]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        queue = rq.Queue.of(self.job, self.request.user)
        state = self.request.GET.get("state", "")
        if state not in rq.RowState.labels:
            state = ""
        page = Paginator(queue.filtered(state), self.paginate_by).get_page(
            self.request.GET.get("p")
        )
        rows = rq.load_rows(self.job, self.request.user, list(page.object_list), self.request)
        counts = queue.counts()
        total = len(queue.revision_ids)
        context.update(
            job=self.job,
            rows=rows,
            items=page,
            is_paginated=page.paginator.num_pages > 1,
            total=total,
            filters=[_filter("", _("All"), total, not state)]
            + [
                _filter(value, label, counts[value], state == value)
                for value, label in rq.RowState.labels.items()
                if counts[value]
            ],
            state=state,
            act_url=reverse(f"{NAMESPACE}:act", args=[self.job.pk]),
            here=self.request.get_full_path(),
        )
        return context


class ReviewActView(View):
    """Accept or reject one page, one field of it, or (accept only) the selected pages."""

    http_method_names = ["post"]

    def post(self, request, pk):
        job = get_job_for(request, pk)
        decision = request.POST.get("decision", "")
        then = request.POST.get("then", "")
        field = request.POST.get("field", "")
        try:
            page_ids = [int(v) for v in request.POST.getlist("page")]
        except ValueError:
            page_ids = []
        if decision not in ("accept", "reject") or then not in rq.Then._value2member_map_:
            messages.error(request, _("Choose Accept or Reject."))
            return self.back(request, job)
        if not page_ids:
            messages.warning(request, _("No page was selected."))
            return self.back(request, job)
        if decision == "reject" and len(page_ids) > 1:
            messages.error(request, _("Reject one page at a time."))
            return self.back(request, job)
        rows = rq.get_rows(job, request.user, page_ids)  # the same queries for 1 or 500
        errors = [
            _("This page is not in the job's drafts, or you may not edit it.")
            for page_id in dict.fromkeys(page_ids)
            if page_id not in rows
        ]
        fields = [field] if field else None
        refused: list[tuple[rq.DraftRow, LLMActionError]] = []
        if decision == "accept":
            done, refused = rq.accept_many(list(rows.values()), request.user, fields, rq.Then(then))
        else:
            done = 0
            for row in rows.values():
                try:
                    rq.reject(row, request.user, fields=fields)
                except LLMActionError as e:
                    refused.append((row, e))
                    continue
                done += 1
        errors += [
            _("“%(page)s”: %(error)s")
            % {"page": row.page.get_admin_display_title(), "error": e.message}
            for row, e in refused
        ]
        self.report(request, decision, then, done, errors)
        return self.back(request, job, page_ids[-1] if len(page_ids) == 1 else None)

    def report(self, request, decision: str, then: str, done: int, errors: list[str]) -> None:
        if done:
            if decision == "reject":
                text = _("Rejected: a new draft restores the previous value.")
            elif then == rq.Then.PUBLISH:
                text = ngettext(
                    "%(count)d draft accepted and published.",
                    "%(count)d drafts accepted and published.",
                    done,
                ) % {"count": done}
            elif then == rq.Then.SUBMIT:
                text = ngettext(
                    "%(count)d draft accepted and submitted for moderation.",
                    "%(count)d drafts accepted and submitted for moderation.",
                    done,
                ) % {"count": done}
            else:
                text = ngettext("%(count)d draft accepted.", "%(count)d drafts accepted.", done) % {
                    "count": done
                }
            messages.success(request, text)
        for error in errors[:10]:
            messages.error(request, error)
        if len(errors) > 10:
            messages.error(
                request,
                ngettext(
                    "%(count)d more page could not be changed.",
                    "%(count)d more pages could not be changed.",
                    len(errors) - 10,
                )
                % {"count": len(errors) - 10},
            )

    def back(self, request, job, page_id: int | None = None):
        target = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            target = queue_url(job.pk)
        if page_id:
            target = f"{target.split('#')[0]}#llm-review-{page_id}"
        return redirect(target)
