""" "Try on a page": an action's rendered messages on a chosen page, and optionally a real answer.

The one place to try an action on a page (it was "Test on a page", "Try on a page" and "Run
and compare"). "Preview what is sent" shows exactly what would be sent for the page's latest
content, calling nothing: the messages (with a structured action's schema instruction) and the
request parameters that shape the answer (model, temperature, max tokens, ``n``,
``response_format``), built by the code that builds the real request (``LLMService.dry_run``).
"Run and compare" queues the action with its current configuration and ``save=False`` (see
:mod:`..queued_runs`: nothing slow in the request); the progress page comes back here with
``?interaction=<id>``, and the answer is shown beside the field's current value. Nothing is
saved (the call itself is recorded, as every call is); it can then be kept as a draft or
discarded.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.generic import TemplateView
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin

from ..exceptions import LLMActionError
from ..models import InteractionOutcome
from ..permissions import can_change_actions, can_edit_any_page, can_edit_page
from ..review import discard_problem
from ..service import LLMService
from .action_stats import TryOnPageForm, get_action
from .interactions import get_visible_interaction
from .queued_runs import queue_try


class TestOnPageForm(TryOnPageForm):
    """The page to try the action on; the button pressed ("ask_model") says whether to run it."""


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
        return _("Try on a page")

    def get_page_subtitle(self):
        return self.action.name

    def get_breadcrumbs_items(self):
        """Home › Actions › the action › Try on a page: where the menu says this is."""
        actions = "wagtailsnippets_wagtail_llm_actions_llmaction"
        may_change = can_change_actions(self.request.user)
        return [
            {"url": reverse("wagtailadmin_home"), "label": gettext_lazy("Home")},
            {
                "url": reverse(f"{actions}:list") if may_change else "",
                "label": gettext_lazy("Actions"),
            },
            {
                "url": reverse(f"{actions}:edit", args=[self.action.pk])
                if may_change
                else reverse("wagtail_llm_actions_report:action", args=[self.action.pk]),
                "label": self.action.name,
            },
            {"url": "", "label": self.get_page_title()},
        ]

    def get(self, request, *args, **kwargs):
        context = {}
        answer = self.answer(request.GET.get("interaction"))
        if answer is not None:
            context["form"] = TestOnPageForm(initial={"page": answer.page}, action=self.action)
            context.update(self.test(answer.page.specific))
            context.update(self.comparison(answer))
        return self.render_to_response(self.get_context_data(**context))

    def answer(self, pk):
        """The answer a queued "Run and compare" recorded, if the user may see it here."""
        if not pk:
            return None
        try:
            interaction = get_visible_interaction(self.request, int(pk))
        except (ValueError, Http404, PermissionDenied):
            return None
        if interaction.action_id != self.action.pk or interaction.page is None:
            return None
        return interaction

    def post(self, request, *args, **kwargs):
        form = TestOnPageForm(request.POST, action=self.action)
        context = {"form": form}
        if form.is_valid():
            page = form.cleaned_data["page"].specific
            if not can_edit_page(request.user, page):
                raise PermissionDenied
            if request.POST.get("ask_model"):
                return queue_try(request, self.action, page) or self.render_to_response(
                    self.get_context_data(**context)
                )
            context.update(self.test(page))
        return self.render_to_response(self.get_context_data(**context))

    def comparison(self, interaction) -> dict:
        pending = interaction.outcome == InteractionOutcome.PENDING
        can_edit = can_edit_page(self.request.user, interaction.page)
        return {
            "interaction": interaction,
            "can_keep": can_edit and pending and interaction.is_success,
            "can_discard": can_edit and pending and discard_problem(interaction) is None,
            "detail_url": reverse("wagtail_llm_actions_report:detail", args=[interaction.pk]),
        }

    def test(self, page) -> dict:
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
