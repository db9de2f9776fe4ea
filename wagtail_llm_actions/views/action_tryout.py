""" "Test on a page": an action's rendered messages on a chosen page, and optionally a real answer.

The dry run shows exactly what would be sent for the page's latest content, calling nothing:
the messages (with a structured action's schema instruction) and the request parameters that
shape the answer (model, temperature, max tokens, ``n``, ``response_format``), built by the
code that builds the real request (``LLMService.dry_run``), for as many answers as the run below
asks for. With "Also ask the model" the action runs with its
current configuration and ``save=False``: the answer is shown beside the field's current value
and nothing is saved (the call itself is recorded, as every call is); it can then be kept as a
draft or discarded, as on the "Try on a page" comparison.
"""

from __future__ import annotations

from django import forms
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.generic import TemplateView
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin

from ..exceptions import LLMActionError
from ..models import InteractionOutcome, InteractionTrigger
from ..permissions import can_change_actions, can_edit_any_page, can_edit_page
from ..review import discard_problem
from ..service import LLMService
from .action_stats import TryOnPageForm, get_action
from .interactions import report_breadcrumbs


class TestOnPageForm(TryOnPageForm):
    ask_model = forms.BooleanField(
        label=gettext_lazy("Also ask the model"),
        required=False,
        help_text=gettext_lazy(
            "Calls the model with the action as it is configured now and shows the answer "
            "beside the current value. Nothing is saved unless you keep it."
        ),
    )


class TestOnPageView(WagtailAdminTemplateMixin, TemplateView):
    """GET: choose a page. POST: the dry run, and the answer when asked."""

    template_name = "wagtail_llm_actions/reports/test_on_page.html"
    header_icon = "pick"
    http_method_names = ["get", "post"]

    def dispatch(self, request, *args, **kwargs):
        self.action = get_action(request, kwargs["pk"])
        if not can_edit_any_page(request.user):  # it runs on pages the user may edit
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)

    def get_page_title(self):
        return _("Test on a page")

    def get_page_subtitle(self):
        return self.action.name

    def get_breadcrumbs_items(self):
        return report_breadcrumbs() + [
            {
                "url": reverse("wagtail_llm_actions_report:action", args=[self.action.pk]),
                "label": self.action.name,
            },
            {"url": "", "label": self.get_page_title()},
        ]

    def post(self, request, *args, **kwargs):
        form = TestOnPageForm(request.POST, action=self.action)
        context = {"form": form}
        if form.is_valid():
            page = form.cleaned_data["page"].specific
            if not can_edit_page(request.user, page):
                raise PermissionDenied
            context.update(self.test(page, ask=form.cleaned_data["ask_model"]))
        return self.render_to_response(self.get_context_data(**context))

    def test(self, page, *, ask: bool) -> dict:
        service = LLMService()
        result: dict = {"tested_page": page}
        try:
            prepared = service.dry_run(
                self.action, page, self.request.user, candidates=self.action.candidates or 1
            )
        except LLMActionError as e:
            result["error"] = e.message
            return result
        result["llm_messages"] = prepared.messages
        result["truncated"] = prepared.truncated
        result["request_error"] = prepared.request_error
        if prepared.planned is not None:
            result["request_parameters"] = [
                {"name": name, "text": text, "block": "\n" in text}
                for name, text in prepared.planned.parameters_as_text()
            ]
            result["request_notes"] = prepared.planned.notes()
        if not ask:
            return result
        try:
            interaction = service.run(
                self.action,
                page,
                self.request.user,
                save=False,
                trigger=InteractionTrigger.TEST,
            )
        except LLMActionError as e:
            result["error"] = e.message
            return result
        pending = interaction.outcome == InteractionOutcome.PENDING
        result.update(
            interaction=interaction,
            can_keep=pending and interaction.is_success,
            can_discard=pending and discard_problem(interaction) is None,
            detail_url=reverse("wagtail_llm_actions_report:detail", args=[interaction.pk]),
        )
        return result

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.setdefault("form", TestOnPageForm(action=self.action))
        context.update(
            action=self.action,
            edit_action_url=reverse(
                "wagtailsnippets_wagtail_llm_actions_llmaction:edit", args=[self.action.pk]
            )
            if can_change_actions(self.request.user)
            else "",
        )
        return context
