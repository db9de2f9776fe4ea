"""One action at a glance: recent runs, success rate, latency, tokens, cost; try it on a page.

"Try on a page" runs the action with its *current* configuration without saving
(``save=False``) and shows the new answer next to the previous one; "Keep" then saves it as a
draft revision (see ``review.keep``).
"""

from __future__ import annotations

from django import forms
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.generic import TemplateView, View
from wagtail.admin import messages
from wagtail.admin.utils import get_user_display_name
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin
from wagtail.admin.widgets import AdminPageChooser
from wagtail.models import Page

from ..charts import daily_series, render_calls_and_cost
from ..models import InteractionOutcome, InteractionStatus, LLMAction
from ..permissions import (
    can_change_actions,
    can_change_prompts,
    can_edit_any_page,
    can_edit_page,
    can_view_all,
    has_admin_access,
    page_edit_checker,
    visible_interactions,
)
from ..reports import interaction_totals
from ..review import discard_problem
from .interactions import get_visible_interaction, report_breadcrumbs

RECENT_RUNS = 20


class TryOnPageForm(forms.Form):
    page = forms.ModelChoiceField(
        label=gettext_lazy("Page"),
        queryset=Page.objects.none(),
        help_text=gettext_lazy(
            "Runs the action as it is configured now. Nothing is saved until you keep the answer."
        ),
    )

    def __init__(self, *args, action: LLMAction, **kwargs):
        super().__init__(*args, **kwargs)
        page_models = action.get_page_models()
        field = self.fields["page"]
        field.queryset = Page.objects.type(*page_models) if page_models else Page.objects.none()
        field.widget = AdminPageChooser(target_models=page_models or None)


def get_action(request, pk: int) -> LLMAction:
    if not has_admin_access(request.user):
        raise PermissionDenied
    return get_object_or_404(LLMAction.objects.select_related("prompt"), pk=pk)


def decorate_rows(rows, user):
    may_edit = page_edit_checker(user)
    for row in rows:
        row.detail_url = reverse("wagtail_llm_actions_report:detail", args=[row.pk])
        row.page_edit_url = (
            reverse("wagtailadmin_pages:edit", args=[row.page_id])
            if row.page_id and may_edit(row.page)
            else ""
        )
        row.action_url = ""
        row.user_display = get_user_display_name(row.user) if row.user_id else ""
    return rows


class ActionStatsView(WagtailAdminTemplateMixin, TemplateView):
    template_name = "wagtail_llm_actions/reports/action.html"
    header_icon = "cogs"

    def dispatch(self, request, *args, **kwargs):
        self.action = get_action(request, kwargs["pk"])
        return super().dispatch(request, *args, **kwargs)

    def get_page_title(self):
        return _("Runs of “%(action)s”") % {"action": self.action.name}

    def get_breadcrumbs_items(self):
        return report_breadcrumbs() + [{"url": "", "label": self.action.name}]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        user = self.request.user
        runs = visible_interactions(user).filter(action=self.action)
        recent = decorate_rows(
            list(runs.select_related("page", "user").order_by("-created_at", "-pk")[:RECENT_RUNS]),
            user,
        )
        totals = interaction_totals(runs)
        totals["avg_tokens"] = (
            round(totals["total_tokens"] / totals["calls"]) if totals["calls"] else None
        )
        series = daily_series(runs)
        context.update(
            action=self.action,
            totals=totals,
            recent=recent,
            chart=render_calls_and_cost(series),
            chart_days=len(series),
            sees_all=can_view_all(user),
            form=(kwargs.get("form") or TryOnPageForm(action=self.action))
            if can_edit_any_page(user)
            else None,
            edit_action_url=reverse(
                "wagtailsnippets_wagtail_llm_actions_llmaction:edit", args=[self.action.pk]
            )
            if can_change_actions(user)
            else "",
            edit_prompt_url=reverse(
                "wagtailsnippets_wagtail_llm_actions_llmprompt:edit",
                args=[self.action.prompt_id],
            )
            if can_change_prompts(user)
            else "",
            report_url=reverse("wagtail_llm_actions_report:index") + f"?action={self.action.pk}",
            **self.stale_context(user),
        )
        return context

    def stale_context(self, user) -> dict:
        """How many pages the user can see are out of date for the action (answered by it,
        and a job of it would run them again), with a link running the action on exactly
        those (the bulk action's screen)."""
        if not self.action.enabled or not can_edit_any_page(user):
            return {}
        from ..bulk_actions import STALE
        from ..permissions import explorable_pages
        from ..unchanged import stale_page_ids

        count = len(stale_page_ids(self.action, explorable_pages(user)))
        url = reverse("wagtail_bulk_action", args=["wagtailcore", "page", "run_llm_action"])
        return {"stale_count": count, "stale_run_url": f"{url}?id={STALE}&action={self.action.pk}"}


class TryOnPageView(View):
    """POST: run the action on a chosen page without saving, then show the comparison."""

    http_method_names = ["post"]

    def post(self, request, pk):
        action = get_action(request, pk)
        form = TryOnPageForm(request.POST, action=action)
        if not form.is_valid():
            messages.error(request, _("Choose a page this action applies to."))
            return redirect("wagtail_llm_actions_report:action", action.pk)
        page = form.cleaned_data["page"]
        if not can_edit_page(request.user, page):
            raise PermissionDenied
        from .queued_runs import queue_try  # queued: no model call inside the request

        return queue_try(request, action, page.specific) or redirect(
            "wagtail_llm_actions_tryout:try", action.pk
        )


class CompareView(WagtailAdminTemplateMixin, TemplateView):
    """The new answer next to the previous one for the same action and page."""

    template_name = "wagtail_llm_actions/reports/compare.html"
    header_icon = "cogs"

    def dispatch(self, request, *args, **kwargs):
        self.interaction = get_visible_interaction(request, kwargs["pk"])
        return super().dispatch(request, *args, **kwargs)

    def get_page_title(self):
        return _("Compare answers")

    def get_page_subtitle(self):
        return self.interaction.action_name

    def get_breadcrumbs_items(self):
        items = report_breadcrumbs()
        if self.interaction.action_id:
            items.append(
                {
                    "url": reverse(
                        "wagtail_llm_actions_report:action", args=[self.interaction.action_id]
                    ),
                    "label": self.interaction.action_name,
                }
            )
        return items + [{"url": "", "label": self.get_page_title()}]

    def previous_run(self):
        i = self.interaction
        if not i.page_id or not i.action_id:
            return None
        return (
            visible_interactions(self.request.user)
            .filter(page_id=i.page_id, action_id=i.action_id, status=InteractionStatus.SUCCESS)
            .filter(Q(created_at__lt=i.created_at) | Q(created_at=i.created_at, pk__lt=i.pk))
            .exclude(outcome=InteractionOutcome.PENDING)
            .select_related("user", "prompt_revision")
            .order_by("-created_at", "-pk")
            .first()
        )

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        i = self.interaction
        can_edit = can_edit_page(self.request.user, i.page)
        previous = self.previous_run()
        context.update(
            interaction=i,
            previous=previous,
            previous_user=get_user_display_name(previous.user)
            if previous and previous.user_id
            else "",
            can_keep=can_edit and i.outcome == InteractionOutcome.PENDING and i.is_success,
            can_discard=can_edit
            and i.outcome == InteractionOutcome.PENDING
            and discard_problem(i) is None,
            detail_url=reverse("wagtail_llm_actions_report:detail", args=[i.pk]),
            previous_url=reverse("wagtail_llm_actions_report:detail", args=[previous.pk])
            if previous
            else "",
            edit_url=reverse("wagtailadmin_pages:edit", args=[i.page_id])
            if i.page_id and can_edit
            else "",
        )
        return context
