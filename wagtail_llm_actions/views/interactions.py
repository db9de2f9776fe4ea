"""One interaction: what was sent and received, what it changed; rerun, discard or keep it."""

from __future__ import annotations

import json

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.generic import TemplateView, View
from wagtail.admin import messages
from wagtail.admin.utils import get_user_display_name
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin

from ..conf import INTERACTIONS_LABEL
from ..exceptions import LLMActionError
from ..labels import field_label
from ..models import InteractionOutcome, LLMInteraction, RunKind
from ..permissions import (
    can_change_prompts,
    can_edit_page,
    can_view_interaction,
    has_admin_access,
)
from ..providers.base import scrub_params, scrub_text
from ..review import discard, discard_problem, keep


def report_breadcrumbs():
    return [
        {"url": reverse("wagtailadmin_home"), "label": gettext_lazy("Home")},
        {
            "url": reverse("wagtail_llm_actions_report:index"),
            "label": INTERACTIONS_LABEL,
        },
    ]


def get_visible_interaction(request, pk: int) -> LLMInteraction:
    """The interaction, if ``request.user`` may see it: 404 if missing, 403 if not allowed."""
    if not has_admin_access(request.user):
        raise PermissionDenied
    interaction = (
        LLMInteraction.objects.select_related(
            "page", "user", "action", "revision", "base_revision", "prompt_revision", "run"
        )
        .filter(pk=pk)
        .first()
    )
    if interaction is None:
        raise Http404
    if not can_view_interaction(request.user, interaction):
        raise PermissionDenied
    return interaction


def undo_direct_write(request, interaction_id: int, undo_write, undone):
    """The "Undo" of an answer written directly (an image's field, a snippet without
    revisions): ``undo_write(interaction, user)`` puts the previous value back, the success
    message is ``undone(interaction)``; refused with the reason if it changed since, 403 if
    the user may not. Back to the interaction's page."""
    interaction = get_visible_interaction(request, interaction_id)
    try:
        undo_write(interaction, request.user)
    except LLMActionError as e:
        if e.code == "permission":
            raise PermissionDenied from e
        messages.error(request, e.message)
    else:
        messages.success(request, undone(interaction))
    return redirect("wagtail_llm_actions_report:detail", interaction.pk)


def public_parameters(parameters) -> dict:
    """Parameters as stored, with any credential-like extra parameter redacted again."""
    params = dict(parameters or {}) if isinstance(parameters, dict) else {}
    if isinstance(params.get("extra_params"), dict):
        params["extra_params"] = scrub_params(params["extra_params"])
    for key in list(params):
        if key.lower() in {"api_key", "authorization", "headers", "extra_headers"}:
            params[key] = "[redacted]"
    return params


def image_write_context(interaction, user):
    from .images import image_write_context as context

    if interaction.page_id is None and snippet_write_context(interaction, user) is not None:
        return None  # a snippet's run (see snippet_write_context)
    return context(interaction, user)


def snippet_write_context(interaction, user):
    from .snippets import snippet_write_context as context

    return context(interaction, user)


class InteractionDetailView(WagtailAdminTemplateMixin, TemplateView):
    template_name = "wagtail_llm_actions/interactions/detail.html"
    header_icon = "cogs"

    def dispatch(self, request, *args, **kwargs):
        self.interaction = get_visible_interaction(request, kwargs["pk"])
        return super().dispatch(request, *args, **kwargs)

    def get_page_title(self):
        return _("Interaction #%(id)s") % {"id": self.interaction.pk}

    def get_page_subtitle(self):
        return self.interaction.action_name

    def get_breadcrumbs_items(self):
        return report_breadcrumbs() + [{"url": "", "label": self.get_page_title()}]

    def get_header_buttons(self):
        """The header's actions, as on Wagtail's own pages: open the page in its editor."""
        from wagtail.admin.widgets import HeaderButton

        buttons = list(super().get_header_buttons())
        i = self.interaction
        if i.page_id and self.can_edit:
            buttons.insert(
                0,
                HeaderButton(
                    _("Open in editor"),
                    url=reverse("wagtailadmin_pages:edit", args=[i.page_id]),
                    icon_name="edit",
                    attrs={"data-llm-open-editor": ""},
                ),
            )
        return buttons

    @cached_property
    def can_edit(self) -> bool:
        return can_edit_page(self.request.user, self.interaction.page)

    def links(self) -> dict:
        i = self.interaction
        links = {}
        if i.page_id:
            links["edit"] = reverse("wagtailadmin_pages:edit", args=[i.page_id])
            if i.revision_id and self.can_edit:
                links["revision"] = reverse(
                    "wagtailadmin_pages:revisions_view", args=[i.page_id, i.revision_id]
                )
                links["compare"] = reverse(
                    "wagtailadmin_pages:revisions_compare",
                    args=[i.page_id, i.base_revision_id or "earliest", i.revision_id],
                )
        if i.prompt_revision_id and i.prompt_revision and can_change_prompts(self.request.user):
            prompt_pk = i.prompt_revision.object_id
            links["prompt_revision"] = reverse(
                "wagtailsnippets_wagtail_llm_actions_llmprompt:revisions_revert",
                args=[prompt_pk, i.prompt_revision_id],
            )
            links["prompt_compare"] = reverse(
                "wagtailsnippets_wagtail_llm_actions_llmprompt:revisions_compare",
                args=[prompt_pk, i.prompt_revision_id, "latest"],
            )
        if i.action_id:
            links["action"] = reverse("wagtail_llm_actions_report:action", args=[i.action_id])
        return links

    def run_context(self) -> dict:
        """The run this interaction belongs to, as a timeline of its calls."""
        run = self.interaction.run if self.interaction.run_id else None
        if run is None:
            return {"run": None}
        timeline = run.timeline()
        steps = []
        if run.kind == RunKind.PIPELINE:
            steps = [
                (i.step_index, i.step_name)
                for i in timeline
                if i.chunk_index is None and i.step_index is not None
            ]
        return {
            "run": run,
            "timeline": [
                {
                    "interaction": i,
                    "messages": i.messages if isinstance(i.messages, list) else [],
                    "current": i.pk == self.interaction.pk,
                }
                for i in timeline
            ],
            "run_steps": steps,
            "can_rerun_run": (
                self.can_edit and bool(steps) and run.pipeline_id is not None and run.page_id
            ),
            "run_totals": {
                "tokens": sum(i.total_tokens or 0 for i in timeline),
                "cost": sum((i.cost for i in timeline if i.cost is not None), start=0),
                "unpriced": sum(
                    1
                    for i in timeline
                    if i.cost is None and (i.is_success or (i.total_tokens or 0) > 0)
                ),
                "latency": sum(i.latency_ms or 0 for i in timeline),
            },
        }

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        i = self.interaction
        parameters = public_parameters(i.parameters)
        page_class = i.page.specific_class if i.page_id and i.page else None
        context.update(
            interaction=i,
            status_classname="w-status--primary" if i.is_success else "",
            links=self.links(),
            user_display=get_user_display_name(i.user) if i.user_id else "",
            parameters_json=json.dumps(parameters, indent=2, ensure_ascii=False, default=str),
            field_rows=[
                {
                    "field": name,
                    "label": field_label(page_class, name),
                    "before": (i.previous_values or {}).get(name, ""),
                    "written": value,
                    "outcome": (i.field_outcomes or {}).get(name, ""),
                }
                for name, value in (i.output_values or {}).items()
            ],
            candidate_rows=[
                {"number": index + 1, "value": value, "chosen": index == i.chosen_candidate}
                for index, value in enumerate(i.candidates or [])
            ],
            error_message=scrub_text(i.error_message) if i.error_message else "",
            can_edit=self.can_edit,
            image_write=image_write_context(i, self.request.user),
            snippet_write=snippet_write_context(i, self.request.user),
            can_rerun=(
                self.can_edit
                and i.action_id is not None
                and i.page_id is not None
                and not (i.run_id and i.run.kind == RunKind.PIPELINE)
            ),
            **self.run_context(),
            can_discard=self.can_edit and discard_problem(i) is None,
            can_keep=(
                self.can_edit
                and i.outcome == InteractionOutcome.PENDING
                and i.is_success
                and i.action_id is not None
            ),
            prompt_template=(
                (i.prompt_revision.content or {}).get("template", "")
                if i.prompt_revision_id and i.prompt_revision
                else ""
            ),
        )
        return context


class InteractionOperationView(View):
    """Base for POST-only operations on an interaction; errors become admin messages."""

    http_method_names = ["post"]

    def post(self, request, pk):
        interaction = get_visible_interaction(request, pk)
        if interaction.page is None or not can_edit_page(request.user, interaction.page):
            raise PermissionDenied
        try:
            return self.perform(request, interaction)
        except LLMActionError as e:
            messages.error(request, e.message)
            target = e.interaction.pk if getattr(e, "interaction", None) else interaction.pk
            return redirect("wagtail_llm_actions_report:detail", target)

    def perform(self, request, interaction):
        raise NotImplementedError


# Rerun and Rerun from step are queued, with a confirmation first: views/queued_runs.py.


class DiscardView(InteractionOperationView):
    """Revert the field the interaction wrote, in a new draft revision."""

    def perform(self, request, interaction):
        revision = discard(interaction, request.user)
        if revision is None:
            messages.success(request, _("The answer was discarded; nothing was saved."))
        else:
            messages.success(
                request,
                _("The answer was discarded: a new draft restores the previous value."),
                buttons=[
                    messages.button(
                        reverse("wagtailadmin_pages:edit", args=[interaction.page_id]),
                        _("Open in editor"),
                    )
                ],
            )
        return redirect("wagtail_llm_actions_report:detail", interaction.pk)


class KeepView(InteractionOperationView):
    """Save an answer awaiting review (from "try on a page") as a new draft revision."""

    def perform(self, request, interaction):
        keep(interaction, request.user)
        messages.success(
            request,
            _("The answer was saved as a new draft of “%(page)s”.")
            % {"page": interaction.page.title},
            buttons=[
                messages.button(
                    reverse("wagtailadmin_pages:edit", args=[interaction.page_id]),
                    _("Open in editor"),
                )
            ],
        )
        return redirect("wagtail_llm_actions_report:detail", interaction.pk)
