"""The "Run AI action" bulk action of the page listing ("AI": the ``FEATURE_NAME`` setting).

The confirmation screen lets the user pick an action that applies to the selected pages'
types, include descendants and force re-running unchanged pages; it shows how many pages
will run, which are skipped and why, and an estimate of tokens and cost (see
:func:`jobs.plan_job`). Pages the user cannot see in the admin are counted as "not
available", never named, and their types choose no action. "Check" re-renders the preview
for the chosen options; "Start" creates the job, queues it on the workers and returns to
the listing with a link to the job's progress page.

The options come first and the preview under them; the ``llm-bulk-preview`` Stimulus
controller refreshes the preview whenever an option changes (the "Check" button is the
fallback without JavaScript). "Start" is disabled, and refused, when no page would run.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.db.models import Q
from django.http import Http404
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from wagtail.admin import messages
from wagtail.admin.views.bulk_action import BulkAction
from wagtail.admin.views.pages.bulk_actions.page_bulk_action import PageBulkAction

from . import budgets
from .conf import RUN_ACTION_LABEL, feature_name, with_feature
from .exceptions import ConfigurationProblem
from .lazy import lazy_module
from .models import JobKind, LLMAction, LLMPipeline
from .permissions import explorable_pages

jobs = lazy_module("wagtail_llm_actions.jobs")  # imported when the action is first used
#: ``?id=stale&action=<id>`` selects the pages whose source changed since the action's answer.
STALE = "stale"


def action_field() -> forms.ModelChoiceField:
    """The action chooser of a bulk screen; its form sets the queryset."""
    return forms.ModelChoiceField(
        queryset=LLMAction.objects.none(),
        label=gettext_lazy("Action"),
        # Nothing preselected: one click must not run the wrong action over many items.
        empty_label=gettext_lazy("Choose an action…"),
    )


class RunActionForm(forms.Form):
    action = action_field()
    include_descendants = forms.BooleanField(
        required=False,
        label=gettext_lazy("Include descendants"),
        help_text=gettext_lazy("Also run on every page below the selected pages."),
    )
    force = forms.BooleanField(
        required=False,
        label=gettext_lazy("Re-run unchanged pages"),
        help_text=gettext_lazy(
            "Pages that already have this action’s answer for their current content, prompt "
            "and settings in their newest revision, or where someone discarded that answer, "
            "are skipped unless you tick this."
        ),
    )
    # Shown under the estimate only when it does not fit a budget (see budget_fit).
    within_budget = forms.BooleanField(
        required=False, label=gettext_lazy("Run only the pages that fit the budgets")
    )

    def __init__(self, *args, actions=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["action"].queryset = (
            actions if actions is not None else LLMAction.objects.none()
        )


def chosen_in_link(request, name: str, queryset) -> dict:
    """The form's initial choice when the link names one (``?action=<id>``), else nothing:
    the screen never preselects one by itself."""
    if request.method != "GET" or not request.GET.get(name, "").isdigit():
        return {}
    chosen = queryset.filter(pk=int(request.GET[name])).first()
    return {name: chosen} if chosen is not None else {}


def sqlite_notice(user) -> tuple[str, str] | None:
    """The WAL suggestion (``wagtail_llm_actions.I001``) for a site admin, who can act on it."""
    if not getattr(user, "is_superuser", False):
        return None
    from .checks import sqlite_notice as notice

    return notice()


def check_budgets(context: dict, action, user, plan, within_budget: bool) -> None:
    """The plan's estimate against every budget that applies (``budget_fit`` in the
    context). When it does not fit: refused (``budget_problem``), or, with
    ``within_budget`` and some pages fitting, limited to them (``budget_limit``)."""
    from .budget_fit import budget_fit

    fit = budget_fit(action, getattr(user, "pk", None), plan.estimate, plan.will_run)
    context["budget_fit"] = fit
    if fit is None or fit.fits:
        return
    line = fit.blocking
    if within_budget and fit.pages_that_fit > 0:
        context["budget_limit"] = (fit.pages_that_fit, fit.reason())
        return
    context["can_start"] = False
    context["budget_problem"] = _(
        "The estimate does not fit the budget “%(budget)s” (%(left)s left %(period)s, this "
        "run needs %(needs)s): nothing was started."
    ) % {
        "budget": line.budget.name,
        "left": line.left_text,
        "period": budgets.period_label(line.budget),
        "needs": line.needs_text,
    }


def can_start(plan: jobs.Plan | None) -> bool:
    """False when the plan says no page would run (exactly, or because none is eligible)."""
    if plan is None:
        return False
    return plan.eligible > 0 and (plan.will_run > 0 or not plan.is_exact)


def over_budget_message(name: str, result: dict) -> str:
    """The message after Start for a run limited to the pages that fit its budgets."""
    from django.utils.translation import ngettext

    from .formatting import format_number

    queued, over = result.get("queued", 0), result.get("over_budget", 0)
    return (
        ngettext(
            "“%(name)s” started on %(queued)s page that fits the budgets;",
            "“%(name)s” started on %(queued)s pages that fit the budgets;",
            queued,
        )
        % {"name": name, "queued": format_number(queued)}
        + " "
        + ngettext(
            "%(over)s page was not started (over the budget).",
            "%(over)s pages were not started (over the budget).",
            over,
        )
        % {"over": format_number(over)}
    )


class ConfirmScreen:
    """What the bulk confirmation screens (actions, pipelines and translations of pages, image
    actions) share: the context every screen shows, the budget check, the queueing of the job
    and the message that links to it. Mixed into a Wagtail ``BulkAction``."""

    def screen_context(self, form, ids, chooser: str = "action") -> dict:
        """The context every screen shows besides its plan."""
        return {
            "selected_count": len(ids),
            "has_actions": form.fields[chooser].queryset.exists(),
            "next": self.next_url,
            "submit_url": self.request.path + "?" + self.request.META["QUERY_STRING"],
            "sqlite_notice": sqlite_notice(self.request.user),
            "feature_name": feature_name(),
            "bulk_title": str(self.display_name),
        }

    def check_budgets(self, context: dict, form, action, plan) -> None:
        """The budgets that apply (budget_fit), and the limit "Run only the N that fit"."""
        within = bool(form.is_bound and form.is_valid() and form.cleaned_data["within_budget"])
        check_budgets(context, action, self.request.user, plan, within)
        self._budget_limit = context.get("budget_limit")

    def selected_ids(self, key) -> list:
        """The selected ids (``?id=…``, or ``?id=all`` for the whole listing), each made from
        its text by ``key`` and left out where it makes None of it; 404 when none is left.
        Read once (``self._ids``)."""
        if self._ids is None:
            object_ids = self.request.GET.getlist("id")
            if "all" in object_ids:
                object_ids = self.get_all_objects_in_listing_query(self.request.GET.get("childOf"))
            ids = {key(str(pk)) for pk in object_ids} - {None}
            if not ids:
                raise Http404
            self._ids = sorted(ids)
        return self._ids

    def start_job(self, form, refused: str, started: str):
        """``form_valid`` of an image or snippet screen: "Check" shows the preview again; Start
        is refused with ``refused`` when nothing would run, else starts the job and announces
        it with ``started`` ("%(name)s", "%(count)s": items queued)."""
        context = self.get_context_data(form=form)
        if "preview" in self.request.POST:
            return self.render_to_response(context)
        if not context["can_start"]:
            form.add_error(None, refused)
            return self.render_to_response(context)
        response = BulkAction.form_valid(self, form)
        job = self._result.get("job")
        if job is not None:
            self.announce_job(started % {"name": job.action_name, "count": self._result["queued"]})
        return response

    def announce_job(self, message: str) -> None:
        """``message`` with a link to the progress page of the job just started."""
        from .views.jobs import job_url

        messages.success(
            self.request,
            message,
            buttons=[messages.button(job_url(self._result["job"].pk), _("View progress"))],
        )


def enqueue_started(job, result: dict | None, budget_limit=None, **extra) -> int:
    """Queue the job a screen created (limited to the pages that fit its budgets first, if
    asked); record it in ``result``; returns how many items are queued."""
    if budget_limit:  # "Run only the N pages that fit": the rest listed as not started
        from .jobs.budget_limits import limit_to_pages

        extra["over_budget"] = limit_to_pages(job, *budget_limit)
    jobs.enqueue_job(job)
    queued = job.items.filter(status="queued").count()
    if result is not None:
        result.update(job=job, queued=queued, **extra)
    return queued


class RunLLMActionBulkAction(ConfirmScreen, PageBulkAction):
    display_name = RUN_ACTION_LABEL
    action_type = "run_llm_action"
    aria_label = with_feature(gettext_lazy("Run %(feature)s action on the selected pages"))
    template_name = "wagtail_llm_actions/bulk_actions/confirm_run_llm_action.html"
    # In the bulk bar itself, not under "More" (Wagtail shows the first four by priority:
    # move 10, delete 30, publish 40, this, then unpublish 50 and the rest under "More").
    action_priority = 45
    form_class = RunActionForm

    def __init__(self, request, model):
        super().__init__(request, model)
        self._page_ids = None
        self._result: dict = {}

    # -- selection: ids only, never a list of page objects (memory and queries stay flat) --

    def get_selected_page_ids(self) -> list[int]:
        if self._page_ids is None:
            object_ids = self.request.GET.getlist("id")
            if STALE in object_ids:
                object_ids = self.stale_page_ids()
            elif "all" in object_ids:
                object_ids = self.get_all_objects_in_listing_query(self.request.GET.get("childOf"))
            ids = set()
            for pk in object_ids:
                try:
                    ids.add(int(pk))
                except (TypeError, ValueError):
                    continue
            if not ids:
                raise Http404
            self._page_ids = sorted(ids)
        return self._page_ids

    def stale_page_ids(self) -> list[int]:
        """``?id=stale&action=<id>``: the pages the user can see that are out of date for the
        action (a job of it would run them again; the link on the action's screen)."""
        from .unchanged import stale_page_ids

        pk = self.request.GET.get("action", "")  # in the URL, on the GET and the POST
        action = LLMAction.objects.filter(enabled=True, pk=pk).first() if pk.isdigit() else None
        if action is None:
            return []
        return stale_page_ids(action, explorable_pages(self.request.user))

    def get_actionable_objects(self):
        # Permission, locks and types are per-page skip reasons of the job, not a refusal.
        return self.get_selected_page_ids(), {}

    def applicable_actions(self):
        """Enabled actions for the types of the selected pages and their descendants.

        Only pages the user can see count: hidden pages tell nothing, not even their type.
        """
        return (
            LLMAction.objects.filter(enabled=True, translation__isnull=True)
            .filter(Q(page_types__in=self.selected_type_ids()))
            .distinct()
            .order_by("name")
        )

    def selected_type_ids(self) -> set[int]:
        """The page types of the selected pages and their descendants the user can see."""
        if not hasattr(self, "_selected_type_ids"):
            user = self.request.user
            visible = None if user.is_superuser else explorable_pages(user).values("pk")
            type_ids: set[int] = set()
            for part in jobs.selection_parts(
                self.get_selected_page_ids(), include_descendants=True
            ):
                if visible is not None:
                    part = part.filter(pk__in=visible)
                type_ids.update(
                    part.order_by().values_list("content_type_id", flat=True).distinct()
                )
            self._selected_type_ids = type_ids
        return self._selected_type_ids

    def get_form_kwargs(self):
        kwargs = super().get_form_kwargs()
        kwargs["actions"] = self.applicable_actions()
        kwargs["initial"] = chosen_in_link(self.request, "action", kwargs["actions"])
        return kwargs

    # -- confirmation screen ---------------------------------------------------------------

    def current_options(self, form) -> tuple[LLMAction | None, bool, bool]:
        if form.is_bound and form.is_valid():
            data = form.cleaned_data
            return data["action"], data["include_descendants"], data["force"]
        # Nothing is preselected, unless the link names the action (``?action=<id>``).
        return form.initial.get("action"), False, False

    def get_context_data(self, **kwargs):
        context = super(BulkAction, self).get_context_data(**kwargs)
        form = context["form"]
        ids = self.get_selected_page_ids()
        action, include_descendants, force = self.current_options(form)
        plan = None
        if action is not None:
            action = LLMAction.objects.select_related("prompt").get(pk=action.pk)
            plan = jobs.plan_job(
                action,
                self.request.user,
                ids,
                include_descendants=include_descendants,
                force=force,
            )
        context.update(
            self.screen_context(form, ids),
            plan=plan,
            can_start=can_start(plan),
            chosen_action=action,
            model_opts=self.model._meta,
        )
        if plan is not None and context["can_start"]:  # the budgets that apply (budget_fit)
            self.check_budgets(context, form, action, plan)
        if plan is not None and context["can_start"]:  # canary before bulk (canary.py)
            from .canary import canary_problem

            problem = canary_problem(action, plan.will_run, self.request)
            if problem:
                context.update(can_start=False, canary_problem=problem)
                context["canary_url"] = (
                    reverse("wagtail_llm_actions_review:canary_start", args=[action.pk])
                    + "?"
                    + urlencode([("id", pk) for pk in ids])
                )
        return context

    def form_valid(self, form):
        if "preview" in self.request.POST:
            return self.render_to_response(self.get_context_data(form=form))
        context = self.get_context_data(form=form)
        if not context["can_start"]:
            form.add_error(
                None,
                context.get("canary_problem")
                or context.get("budget_problem")
                or _("No page would run with these options: nothing was started."),
            )
            return self.render_to_response(context)
        response = super().form_valid(form)
        job = self._result.get("job")
        if job is not None:
            from .job_counts import start_message

            message = start_message(job.action_name, context["plan"])  # the preview's numbers
            if context.get("budget_limit"):
                message = over_budget_message(job.action_name, self._result)
            self.announce_job(message)
        return response

    def get_execution_context(self):
        data = self.cleaned_form.cleaned_data
        return {
            **super().get_execution_context(),
            "action": data["action"],
            "include_descendants": data["include_descendants"],
            "force": data["force"],
            "result": self._result,
            "budget_limit": getattr(self, "_budget_limit", None),
        }

    @classmethod
    def execute_action(
        cls,
        objects,
        action=None,
        user=None,
        include_descendants=False,
        force=False,
        result=None,
        budget_limit=None,
        **kwargs,
    ):
        job = jobs.create_job(
            action,
            user,
            objects,
            include_descendants=include_descendants,
            force=force,
            kind=JobKind.BULK,
        )
        return enqueue_started(job, result, budget_limit, over_budget=0), 0

    def get_success_message(self, num_parent_objects, num_child_objects):
        return None  # form_valid adds a message with a link to the job


class RunPipelineForm(forms.Form):
    pipeline = forms.ModelChoiceField(
        queryset=LLMPipeline.objects.none(),
        label=gettext_lazy("Pipeline"),
        empty_label=gettext_lazy("Choose a pipeline…"),
    )
    include_descendants = forms.BooleanField(
        required=False,
        label=gettext_lazy("Include descendants"),
        help_text=gettext_lazy("Also run on every page below the selected pages."),
    )

    def __init__(self, *args, pipelines=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["pipeline"].queryset = (
            pipelines if pipelines is not None else LLMPipeline.objects.none()
        )


class RunLLMPipelineBulkAction(RunLLMActionBulkAction):
    """The same confirmation screen and job engine, for a pipeline: one item (one pipeline
    run, one draft) a page; the estimate sums every step."""

    display_name = with_feature(gettext_lazy("Run %(feature)s pipeline"))
    action_type = "run_llm_pipeline"
    aria_label = with_feature(gettext_lazy("Run %(feature)s pipeline on the selected pages"))
    action_priority = 71
    form_class = RunPipelineForm

    def applicable_pipelines(self):
        """Pipelines for the selected pages' types: by their own page types when they have
        some (steps with their own prompt), else by their first step's action."""
        actions = self.applicable_actions()
        return (
            LLMPipeline.objects.filter(enabled=True, steps__isnull=False)
            .filter(
                Q(page_types__in=self.selected_type_ids())
                | Q(page_types__isnull=True, steps__sort_order=0, steps__action__in=actions)
            )
            .distinct()
            .order_by("name")
        )

    def get_form_kwargs(self):
        kwargs = super(RunLLMActionBulkAction, self).get_form_kwargs()
        kwargs["pipelines"] = self.applicable_pipelines()
        kwargs["initial"] = chosen_in_link(self.request, "pipeline", kwargs["pipelines"])
        return kwargs

    def get_context_data(self, **kwargs):
        context = super(BulkAction, self).get_context_data(**kwargs)
        form = context["form"]
        ids = self.get_selected_page_ids()
        if form.is_bound and form.is_valid():
            pipeline = form.cleaned_data["pipeline"]
            include_descendants = form.cleaned_data["include_descendants"]
        else:  # nothing preselected, unless the link names it (``?pipeline=<id>``)
            pipeline, include_descendants = form.initial.get("pipeline"), False
        plan = None
        if pipeline is not None:
            try:
                plan = jobs.plan_pipeline_job(
                    pipeline, self.request.user, ids, include_descendants=include_descendants
                )
            except ConfigurationProblem as e:  # e.g. no steps: nothing can start
                form.add_error(None, e.message)
        context.update(
            self.screen_context(form, ids, "pipeline"),
            plan=plan,
            can_start=can_start(plan),
            chosen_action=pipeline,
            model_opts=self.model._meta,
        )
        return context

    def get_execution_context(self):
        data = self.cleaned_form.cleaned_data
        return {
            **super(RunLLMActionBulkAction, self).get_execution_context(),
            "pipeline": data["pipeline"],
            "include_descendants": data["include_descendants"],
            "result": self._result,
        }

    @classmethod
    def execute_action(
        cls, objects, pipeline=None, user=None, include_descendants=False, result=None, **kwargs
    ):
        job = jobs.create_pipeline_job(
            pipeline, user, objects, include_descendants=include_descendants, kind=JobKind.BULK
        )
        return enqueue_started(job, result), 0


__all__ = [
    "ConfirmScreen",
    "RunActionForm",
    "RunLLMActionBulkAction",
    "RunLLMPipelineBulkAction",
    "enqueue_started",
]
