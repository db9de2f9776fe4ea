"""Reruns, "Try on a page" and their confirmations: nothing slow or costly in a request.

``Rerun`` (an interaction) and ``Rerun from step`` (a pipeline run) ask first, showing what
the run will cost (:mod:`..estimates`); confirmed, they only queue a job
(:mod:`..queued_runs`) and send the browser to a progress page that polls it, as the page
editor's buttons do. When the job ends, :class:`QueuedRunDoneView` says what happened and goes
to the new interaction. Cancelling or retrying a bulk job asks first too, saying how many
pages will not run (and how many are running now) or will run again, at what cost.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied
from django.db.models import Avg, Count
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.generic import TemplateView
from wagtail.admin import messages
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin

from .. import estimates, queued_runs
from ..exceptions import LLMActionError
from ..lazy import lazy_module
from ..models import ItemStatus, JobStatus, LLMInteraction, RunKind
from ..permissions import can_edit_page
from .interactions import get_visible_interaction, report_breadcrumbs

editor = lazy_module("wagtail_llm_actions.editor")

logger = logging.getLogger(__name__)


def enqueue(request, job):
    """Queue ``job``; the progress page, or the error as a message (None)."""
    try:
        editor.enqueue_editor_job(job)
    except Exception:  # the queue is unreachable: say so rather than spin forever
        logger.exception("Could not queue job %s", job.pk)
        editor.cancel_editor_job(job)
        messages.error(
            request,
            _(
                "The run could not be queued. Try again, or ask your administrator to check "
                "the task queue."
            ),
        )
        return None
    return redirect(queued_runs.progress_url(job))


def queue_try(request, action, page):
    """Queue ``action`` on ``page`` saving nothing; the progress page (None if refused)."""
    from ..service import LLMService

    try:
        LLMService().check(action, page, request.user)
    except LLMActionError as e:
        messages.error(request, e.message)
        return None
    job = queued_runs.create_job(queued_runs.KIND_TRY, request.user, page=page, action=action)
    return enqueue(request, job)


def run_estimate(action, page, user) -> estimates.Estimate | None:
    """Tokens and cost of one run of ``action`` on ``page``, or None if it cannot be built."""
    from ..service import LLMService

    candidates = action.candidates or 1
    try:
        prepared = LLMService().dry_run(action, page, user, candidates=candidates)
    except LLMActionError:
        return None
    tokens = estimates.count_message_tokens(prepared.messages)
    return estimates.estimate_candidates(action.model, tokens, candidates, action.max_tokens)


class ConfirmView(WagtailAdminTemplateMixin, TemplateView):
    """A confirmation page: what will happen, what it costs, and a button that does it."""

    template_name = "wagtail_llm_actions/confirm.html"
    header_icon = "warning"
    confirm_label = ""
    cancel_url = ""

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(confirm_label=self.confirm_label, cancel_url=self.cancel_url, action_url="")
        return context


# -- Rerun -----------------------------------------------------------------------------------


class RerunView(ConfirmView):
    """GET: what a rerun will do and cost. POST: queue it and show its progress."""

    http_method_names = ["get", "post"]

    def dispatch(self, request, *args, **kwargs):
        self.interaction = get_visible_interaction(request, kwargs["pk"])
        i = self.interaction
        if i.page is None or not can_edit_page(request.user, i.page):
            raise PermissionDenied
        self.cancel_url = reverse("wagtail_llm_actions_report:detail", args=[i.pk])
        self.confirm_label = _("Rerun")
        return super().dispatch(request, *args, **kwargs)

    def get_page_title(self):
        return _("Rerun “%(action)s”?") % {"action": self.interaction.action_name}

    def get_breadcrumbs_items(self):
        return report_breadcrumbs() + [
            {
                "url": self.cancel_url,
                "label": _("Interaction #%(id)s") % {"id": self.interaction.pk},
            },
            {"url": "", "label": _("Rerun")},
        ]

    def get(self, request, *args, **kwargs):
        if self.interaction.action is None:
            messages.error(request, _("The action of this interaction no longer exists."))
            return redirect(self.cancel_url)
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        action = self.interaction.action
        page = self.interaction.page.specific
        context.update(
            lead=_(
                "“%(action)s” runs again on “%(page)s” as it is configured now, and its answer "
                "is saved as a new draft. The live page does not change."
            )
            % {"action": action.name, "page": page.title},
            estimate=run_estimate(action, page, self.request.user),
            model=action.model,
        )
        return context

    def post(self, request, *args, **kwargs):
        i = self.interaction
        if i.action is None:
            messages.error(request, _("The action of this interaction no longer exists."))
            return redirect(self.cancel_url)
        try:
            editor.check_can_start(i.action, i.page, request.user)
        except LLMActionError as e:
            messages.error(request, e.message)
            return redirect(self.cancel_url)
        job = queued_runs.create_job(
            queued_runs.KIND_RERUN,
            request.user,
            page=i.page,
            action=i.action,
            interaction=i,
        )
        return enqueue(request, job) or redirect(self.cancel_url)


class RerunFromStepView(ConfirmView):
    """GET: what running a pipeline again from a step will do. POST: queue it."""

    http_method_names = ["get", "post"]

    def dispatch(self, request, *args, **kwargs):
        self.interaction = get_visible_interaction(request, kwargs["pk"])
        i = self.interaction
        if i.page is None or not can_edit_page(request.user, i.page):
            raise PermissionDenied
        self.cancel_url = reverse("wagtail_llm_actions_report:detail", args=[i.pk])
        self.confirm_label = _("Rerun")
        self.run = i.run
        if self.run is None or self.run.kind != RunKind.PIPELINE or self.run.pipeline_id is None:
            messages.error(request, _("This interaction is not part of a pipeline run."))
            return redirect(self.cancel_url)
        try:
            self.from_step = max(
                0, int(request.POST.get("from_step") or request.GET.get("from_step") or 0)
            )
        except ValueError:
            self.from_step = 0
        return super().dispatch(request, *args, **kwargs)

    def get_page_title(self):
        return _("Rerun “%(pipeline)s”?") % {"pipeline": self.run.pipeline.name}

    def get_context_data(self, **kwargs):
        from ..pipelines import estimate_pipeline

        context = super().get_context_data(**kwargs)
        steps = list(self.run.pipeline.steps.all()) if self.run.pipeline_id else []
        step_name = next((str(s) for index, s in enumerate(steps) if index == self.from_step), "")
        try:
            estimate = estimate_pipeline(self.run.pipeline, self.interaction.page.specific)
        except Exception:  # noqa: BLE001 - an estimate is never a reason to fail the page
            estimate = None
        context.update(
            lead=_(
                "“%(pipeline)s” runs again on “%(page)s” from step “%(step)s”, reusing the "
                "answers of the steps before it, and its answers are saved as a new draft. The "
                "live page does not change."
            )
            % {
                "pipeline": self.run.pipeline.name,
                "page": self.interaction.page.title,
                "step": step_name or self.from_step + 1,
            },
            estimate=estimate,
            model=", ".join(sorted({s.action.model for s in steps if getattr(s, "action", None)})),
            hidden={"from_step": self.from_step},
        )
        return context

    def post(self, request, *args, **kwargs):
        job = queued_runs.create_job(
            queued_runs.KIND_STEP,
            request.user,
            page=self.interaction.page,
            pipeline=self.run.pipeline,
            interaction=self.interaction,
            run=self.run,
            from_step=self.from_step,
        )
        return enqueue(request, job) or redirect(self.cancel_url)


# -- progress and the end ----------------------------------------------------------------------


class QueuedRunView(WagtailAdminTemplateMixin, TemplateView):
    """A queued run's progress: waiting, generating (with the time), Cancel; then its end."""

    template_name = "wagtail_llm_actions/queued_run.html"
    header_icon = "spinner"

    def dispatch(self, request, *args, **kwargs):
        self.item = queued_runs.get_item(kwargs["job_id"], request.user)
        if self.item is None:  # not a run of this user's
            raise PermissionDenied
        self.job = self.item.job
        return super().dispatch(request, *args, **kwargs)

    def get_page_title(self):
        kind = queued_runs.kind_of(self.item)
        if kind == queued_runs.KIND_IMAGE:
            return _("Running “%(action)s” on an image") % {"action": self.job.action_name}
        if kind == queued_runs.KIND_SNIPPET:
            return _("Running “%(action)s” on a snippet") % {"action": self.job.action_name}
        if kind == queued_runs.KIND_TRY:
            return _("Trying “%(action)s”") % {"action": self.job.action_name}
        if kind == queued_runs.KIND_TRANSLATE:
            return _("Translating with “%(action)s”") % {"action": self.job.action_name}
        return _("Running “%(action)s” again") % {"action": self.job.action_name}

    def get_page_subtitle(self):
        if self.item.page_id:
            return self.item.page.title
        from ..jobs.snippets import is_snippet_item, snippet_of

        obj = snippet_of(self.item) if is_snippet_item(self.item) else None
        return str(obj) if obj is not None else ""

    def get_breadcrumbs_items(self):
        return report_breadcrumbs() + [{"url": "", "label": self.get_page_title()}]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        status = editor.editor_status(self.item)
        context.update(
            job=self.job,
            state=status.state,
            status_url=reverse("wagtail_llm_actions_editor:status", args=[self.job.pk]),
            cancel_url=reverse("wagtail_llm_actions_editor:cancel", args=[self.job.pk]),
            done_url=queued_runs.done_url(self.job),
            messages_json={
                "queued": _("Waiting to start…"),
                "running": _("Generating…"),
                "stalled": _("Still waiting to start. You can keep waiting or cancel."),
                "elapsed": _("{seconds} s"),
                "cancel": _("Cancel"),
                "cancelled": _("Cancelling…"),
                "network": _("The server could not be reached. Reload the page to try again."),
            },
        )
        return context


class QueuedRunDoneView(QueuedRunView):
    """Where the progress page goes when the run ended: a message, then the interaction."""

    def get(self, request, *args, **kwargs):
        item, job = self.item, self.job
        kind = queued_runs.kind_of(item)
        source = queued_runs.source_interaction_id(item)
        status = editor.editor_status(item)
        if status.state in ("queued", "running", "stalled"):
            return redirect(queued_runs.progress_url(job))
        if kind == queued_runs.KIND_TRANSLATE:
            from .translate import translate_done

            return translate_done(request, item, job, status)
        if kind == queued_runs.KIND_IMAGE:
            from .images import image_run_done

            return image_run_done(request, item, status)
        if kind == queued_runs.KIND_SNIPPET:
            from .snippets import snippet_run_done

            return snippet_run_done(request, item, status)
        page = item.page
        if status.state == "succeeded":
            new_id = (item.result or {}).get("interaction") or item.interaction_id
            if kind == queued_runs.KIND_TRY:
                return redirect(
                    reverse("wagtail_llm_actions_tryout:try", args=[job.action_id])
                    + f"?interaction={new_id}"
                )
            messages.success(
                request,
                _("“%(action)s” ran again on “%(page)s”: a new draft was saved.")
                % {"action": job.action_name, "page": page.title if page else ""},
                buttons=[
                    messages.button(
                        reverse("wagtailadmin_pages:edit", args=[page.pk]), _("Open in editor")
                    )
                ]
                if page is not None
                else None,
            )
            return redirect("wagtail_llm_actions_report:detail", new_id)
        cancelled = status.state == "cancelled"
        if cancelled:
            messages.warning(request, _("Cancelled: nothing was saved."))
        else:
            messages.error(request, status.message)
        if kind == queued_runs.KIND_TRY:
            return redirect("wagtail_llm_actions_tryout:try", job.action_id)
        # back where it started; a failed call's own record says what went wrong
        target = source if cancelled else (item.interaction_id or source)
        if target and LLMInteraction.objects.filter(pk=target).exists():
            return redirect("wagtail_llm_actions_report:detail", target)
        return redirect("wagtail_llm_actions_report:index")


# -- bulk jobs: Cancel and Retry ask first ------------------------------------------------------


class JobConfirmView(ConfirmView):
    """Base of the job confirmations: the job, if the user may cancel or retry it."""

    operation = ""

    def dispatch(self, request, *args, **kwargs):
        from .jobs import get_job_for, job_url

        self.job = get_job_for(request, kwargs["pk"], manage=True)
        self.cancel_url = job_url(self.job.pk)
        return super().dispatch(request, *args, **kwargs)

    def get_breadcrumbs_items(self):
        return [
            {"url": reverse("wagtailadmin_home"), "label": _("Home")},
            {"url": self.cancel_url, "label": self.job.action_name},
            {"url": "", "label": self.get_page_title()},
        ]

    def get_context_data(self, **kwargs):
        from .jobs import URL_NAMESPACE

        context = super().get_context_data(**kwargs)
        context["action_url"] = reverse(f"{URL_NAMESPACE}:{self.operation}", args=[self.job.pk])
        return context


class CancelJobConfirmView(JobConfirmView):
    operation = "cancel"

    def get_page_title(self):
        return _("Cancel “%(job)s”?") % {"job": self.job.action_name}

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        counts = dict(self.job.items.values_list("status").annotate(n=Count("pk")).order_by())
        queued = counts.get(ItemStatus.QUEUED, 0)
        running = counts.get(ItemStatus.RUNNING, 0)
        finished = self.job.status not in (JobStatus.QUEUED, JobStatus.RUNNING)
        lines = [
            ngettext("%(count)s page will not run.", "%(count)s pages will not run.", queued)
            % {"count": queued},
        ]
        if running:
            lines.append(
                ngettext(
                    "%(count)s page is running now: its call finishes, and its answer is "
                    "saved as a draft.",
                    "%(count)s pages are running now: their calls finish, and their answers "
                    "are saved as drafts.",
                    running,
                )
                % {"count": running}
            )
        context.update(
            lead=_("The job has already finished.") if finished else "",
            lines=[] if finished else lines,
            queued=queued,
            running=running,
            confirm_label="" if finished else _("Cancel job"),
            back_label=_("Keep running"),
            destructive=True,
        )
        return context


class RetryJobConfirmView(JobConfirmView):
    operation = "retry"

    def get_page_title(self):
        return _("Run “%(job)s” again on its failed pages?") % {"job": self.job.action_name}

    def get_context_data(self, **kwargs):
        from ..jobs import stored_answer_items

        context = super().get_context_data(**kwargs)
        again = self.job.items.filter(status__in=[ItemStatus.FAILED, ItemStatus.CANCELLED])
        pages = again.count()
        stored = stored_answer_items(self.job).filter(pk__in=again.values("pk")).count()
        calls = max(pages - stored, 0)
        lines = [
            ngettext("%(count)s page will run again.", "%(count)s pages will run again.", pages)
            % {"count": pages}
        ]
        if stored:
            lines.append(
                ngettext(
                    "%(count)s of them already has an answer, written without a new call.",
                    "%(count)s of them already have answers, written without new calls.",
                    stored,
                )
                % {"count": stored}
            )
        context.update(
            lines=lines,
            estimate=self.estimate(calls) if calls else None,
            model=self.model(),
            confirm_label=_("Run again") if pages else "",
        )
        return context

    def model(self) -> str:
        if self.job.action_id and self.job.action is not None:
            return self.job.action.model
        return str((self.job.options or {}).get("model") or "")

    def estimate(self, pages: int) -> estimates.Estimate | None:
        """The job's own calls so far, per page, times the pages to run."""
        recorded = LLMInteraction.objects.filter(
            pk__in=self.job.items.filter(interaction__isnull=False).values("interaction_id"),
            prompt_tokens__isnull=False,
        ).aggregate(n=Count("pk"), prompt=Avg("prompt_tokens"), completion=Avg("completion_tokens"))
        action = self.job.action if self.job.action_id else None
        max_tokens = action.max_tokens if action is not None else None
        if not recorded["n"]:  # no page has run yet: one page's request, times the pages
            item = (
                self.job.items.filter(status__in=[ItemStatus.FAILED, ItemStatus.CANCELLED])
                .exclude(page=None)
                .select_related("page")
                .first()
            )
            one = (
                run_estimate(action, item.page.specific, self.request.user)
                if action and item
                else None
            )
            if one is None:
                return None
            return estimates.estimate(self.model(), one.prompt_tokens * pages, pages, max_tokens)
        completion = round(recorded["completion"] or 0) or max_tokens
        return estimates.estimate(
            self.model(), round(recorded["prompt"] * pages), pages, completion
        )
