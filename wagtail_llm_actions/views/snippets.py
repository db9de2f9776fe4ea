"""Snippet actions in the admin: run one from the snippet's edit view (a confirmation, then
queued as the editor's runs are: no model call in the request), and undo an answer written
directly into a snippet without revisions."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from wagtail.admin import messages
from wagtail.admin.admin_url_finder import AdminURLFinder

from .. import queued_runs, snippets
from ..exceptions import LLMActionError
from ..models import InteractionOutcome, LLMAction, LLMInteraction


def actions_for(user, obj: Any) -> list[LLMAction]:
    """The enabled actions ``user`` may run on the snippet ``obj`` (none without edit rights,
    none that could not write to it; translation actions have "Translate into…")."""
    from django.contrib.contenttypes.models import ContentType

    if obj is None or obj.pk is None or not snippets.can_change(user, obj):
        return []
    content_type = ContentType.objects.get_for_model(type(obj))
    actions = LLMAction.objects.filter(
        enabled=True, translation__isnull=True, snippet_types=content_type
    ).order_by("name")
    direct = snippets.writes_directly(obj)
    return [a for a in actions if a.writes_directly or not direct]


def edit_url(user, obj: Any) -> str:
    return AdminURLFinder(user).get_edit_url(obj) or ""


def snippet_for(app_label: str, model_name: str, pk: str) -> Any:
    try:
        model = apps.get_model(app_label, model_name)
    except LookupError as e:
        raise Http404 from e
    if model not in snippets.snippet_models():
        raise Http404
    return get_object_or_404(model, pk=pk)


def run(request, app_label: str, model_name: str, pk: str, action_id: int):
    """GET: what the run will do and cost (unsaved changes in the editor are not part of it).
    POST: queue ``action`` on the snippet; the progress page (back to the snippet if
    refused)."""
    from ..service import LLMService
    from .queued_runs import ConfirmView, enqueue, run_estimate

    obj = snippet_for(app_label, model_name, pk)
    if not snippets.can_change(request.user, obj):
        raise PermissionDenied
    action = get_object_or_404(LLMAction, pk=action_id)
    back = edit_url(request.user, obj)
    try:
        LLMService().check(action, obj, request.user)
    except LLMActionError as e:
        messages.error(request, e.message)
        return redirect(back)
    if request.method == "POST":
        job = queued_runs.create_job(
            queued_runs.KIND_SNIPPET, request.user, page=None, action=action, target=obj
        )
        return enqueue(request, job) or redirect(back)
    if snippets.writes_directly(obj):
        lead = _(
            "“%(action)s” runs on “%(object)s” and writes its answer into the snippet "
            "directly (it keeps no revisions); the previous value is kept and can be restored "
            "from the report."
        )
    else:
        lead = _(
            "“%(action)s” runs on “%(object)s” as last saved and saves its answer in a new "
            "revision; the live snippet does not change. Unsaved changes in the editor are "
            "not part of it: save them first."
        )

    class View(ConfirmView):
        confirm_label = _("Run")
        cancel_url = back

        def get_page_title(self):
            return _("Run “%(action)s”?") % {"action": action.name}

        def get_context_data(self, **kwargs):
            context = super().get_context_data(**kwargs)
            try:
                estimate = run_estimate(action, obj, request.user)
            except LLMActionError:
                estimate = None
            context.update(
                lead=lead % {"action": action.name, "object": obj},
                estimate=estimate,
                model=action.model,
            )
            return context

    return View.as_view()(request)


def snippet_run_done(request, item, status):
    """Where a finished snippet run goes: back to the snippet, saying what was written."""
    from ..jobs.snippets import snippet_of

    obj = snippet_of(item)
    target = edit_url(request.user, obj) if obj is not None else reverse("wagtailadmin_home")
    interaction = item.interaction
    if status.state == "succeeded" and interaction is not None:
        if interaction.outcome == InteractionOutcome.WRITTEN:
            text = _("“%(action)s” wrote the snippet's %(field)s directly.")
        else:
            text = _("“%(action)s” saved its answer in a new revision of the snippet.")
        messages.success(
            request,
            text % {"action": item.job.action_name, "field": interaction.target_field},
            buttons=[
                messages.button(
                    reverse("wagtail_llm_actions_report:detail", args=[interaction.pk]),
                    _("Details"),
                )
            ],
        )
    elif status.state == "cancelled":
        messages.warning(request, _("Cancelled: nothing was written."))
    else:
        messages.error(request, status.message)
    return redirect(target)


@require_POST
def undo(request, interaction_id: int):
    """Put the snippet's previous values back (refused, with the reason, if changed since)."""
    from ..snippets.direct import undo as undo_write
    from .interactions import undo_direct_write

    return undo_direct_write(
        request,
        interaction_id,
        undo_write,
        lambda interaction: _("Undone: the snippet holds its previous values again."),
    )


def snippet_write_context(interaction: LLMInteraction, user) -> dict | None:
    """For the interaction page: the snippet a run wrote to (or saved a revision of), and for
    a direct write whether (and why not) it can be undone; None for other interactions."""
    from ..snippets.direct import target_of, undo_problem

    if interaction.page_id is not None or not interaction.object_id:
        return None
    obj = target_of(interaction)
    model = interaction.content_type.model_class() if interaction.content_type_id else None
    if obj is None and (model is None or model not in snippets.snippet_models()):
        return None
    allowed = obj is not None and snippets.can_change(user, obj)
    direct = interaction.outcome in (InteractionOutcome.WRITTEN, InteractionOutcome.UNDONE)
    problem = undo_problem(interaction, obj) if direct else None
    return {
        "snippet": obj,
        "edit_url": edit_url(user, obj) if allowed else "",
        "direct": direct,
        "can_undo": direct and allowed and problem is None,
        "problem": problem,
    }
