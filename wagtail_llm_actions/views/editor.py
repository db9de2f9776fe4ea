"""JSON endpoints behind the page editor's action buttons.

``run`` validates the posted (unsaved) form, checks permission and queues a job, answering at
once with the job's URLs (``run_new`` does the same on the create view, for a page that has no
id yet: keyed by parent page and page type; ``run_pipeline`` does it for a pipeline, whose
writing steps' answers all come back for the form); ``status`` is polled by the browser (with
``partial``, the text so far, while an answer streams: short polling rather than server-sent
events, see :mod:`wagtail_llm_actions.editor.streams`);
``cancel`` stops a job; ``outcome`` records that the editor discarded (or restored) a
generated value.
"""

from __future__ import annotations

import logging

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST
from wagtail.models import Page

from ..exceptions import ActionNotAllowed, LLMActionError, PageLocked
from ..lazy import lazy_module
from ..models import InteractionTrigger, LLMAction, LLMInteraction, LLMPipeline

editor = lazy_module("wagtail_llm_actions.editor")  # imported on the first request

logger = logging.getLogger(__name__)

STATUS_FOR_ERROR = {
    ActionNotAllowed.code: 403,
    PageLocked.code: 409,
}


def _error(message: str, code: str, status: int, **extra) -> JsonResponse:
    return JsonResponse({"code": code, "message": str(message), **extra}, status=status)


def job_urls(job_id: int) -> dict[str, str]:
    return {
        "status_url": reverse("wagtail_llm_actions_editor:status", args=[job_id]),
        "cancel_url": reverse("wagtail_llm_actions_editor:cancel", args=[job_id]),
    }


@csrf_exempt  # checked by csrf_protect below, once the body is known to be readable
@require_POST
def run(request, page_id: int, action_id: int):
    """Queue ``action`` on the page as the posted form has it; answer with the job's URLs.

    A form over Django's upload limits (``DATA_UPLOAD_MAX_MEMORY_SIZE``,
    ``DATA_UPLOAD_MAX_NUMBER_FIELDS``) gets a JSON 413 the editor can show, rather than the
    HTML 400 the CSRF middleware would give while reading it.
    """
    too_large = _too_large(request)
    return too_large or _run(request, page_id, action_id)


def _too_large(request, message: str = "") -> JsonResponse | None:
    """A JSON 413 when the posted form is over Django's upload limits, else None
    (``message``: what to say instead of "The page is too large…")."""
    try:
        request.POST  # noqa: B018 - parse now, to answer a body that is too big in JSON
    except (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent):
        return _error(
            message
            or _(
                "The page is too large to send for generation (over the server's form size "
                "limit). Ask your administrator to raise DATA_UPLOAD_MAX_MEMORY_SIZE or "
                "DATA_UPLOAD_MAX_NUMBER_FIELDS."
            ),
            "too_large",
            413,
        )
    return None


@csrf_protect
def _run(request, page_id: int, action_id: int):
    page = get_object_or_404(Page, pk=page_id).specific
    if not page.permissions_for_user(request.user).can_edit():
        return _error(ActionNotAllowed().message, ActionNotAllowed.code, 403)
    action = LLMAction.objects.filter(pk=action_id).select_related("prompt").first()
    if action is None:
        return _error(_("This action no longer exists."), "not_found", 404)
    try:
        editor.check_can_start(action, page, request.user)
        obj = editor.build_page_from_form(page, request.POST, request.user)
    except editor.FormInvalid as e:
        return _error(e.message, e.code, 400, errors=e.errors)
    except LLMActionError as e:
        return _error(e.message, e.code, STATUS_FOR_ERROR.get(e.code, 400))

    regenerate = request.POST.get("llm_regenerate") == "1"  # Regenerate: never the cache
    job = editor.create_editor_job(action, page, obj, request.user, regenerate=regenerate)
    return _enqueue(job)


@csrf_exempt  # checked by csrf_protect below, once the body is known to be readable
@require_POST
def run_pipeline(request, page_id: int, pipeline_id: int):
    """Queue ``pipeline`` on the page as the posted form has it; answer with the job's URLs."""
    too_large = _too_large(request)
    return too_large or _run_pipeline(request, page_id, pipeline_id)


@csrf_protect
def _run_pipeline(request, page_id: int, pipeline_id: int):
    page = get_object_or_404(Page, pk=page_id).specific
    if not page.permissions_for_user(request.user).can_edit():
        return _error(ActionNotAllowed().message, ActionNotAllowed.code, 403)
    pipeline = LLMPipeline.objects.filter(pk=pipeline_id).first()
    if pipeline is None:
        return _error(_("This pipeline no longer exists."), "not_found", 404)
    try:
        editor.check_can_start_pipeline(pipeline, page, request.user)
        obj = editor.build_page_from_form(page, request.POST, request.user)
    except editor.FormInvalid as e:
        return _error(e.message, e.code, 400, errors=e.errors)
    except LLMActionError as e:
        return _error(e.message, e.code, STATUS_FOR_ERROR.get(e.code, 400))

    job = editor.create_editor_pipeline_job(pipeline, page, obj, request.user)
    return _enqueue(job)


@csrf_exempt  # checked by csrf_protect below, once the body is known to be readable
@require_POST
def run_new(request, parent_id: int, content_type_id: int, action_id: int):
    """As :func:`run`, on the create view: a new page of a type under ``parent``."""
    too_large = _too_large(request)
    return too_large or _run_new(request, parent_id, content_type_id, action_id)


@csrf_protect
def _run_new(request, parent_id: int, content_type_id: int, action_id: int):
    from django.contrib.contenttypes.models import ContentType

    parent = get_object_or_404(Page, pk=parent_id).specific
    content_type = get_object_or_404(ContentType, pk=content_type_id)
    page_class = content_type.model_class()
    if page_class is None or not issubclass(page_class, Page):
        return _error(_("This page type does not exist."), "not_found", 404)
    if not editor.user_may_create(request.user, page_class, parent):
        return _error(ActionNotAllowed().message, ActionNotAllowed.code, 403)
    action = LLMAction.objects.filter(pk=action_id).select_related("prompt").first()
    if action is None:
        return _error(_("This action no longer exists."), "not_found", 404)
    try:
        editor.check_can_create(action, page_class, parent, request.user)
        obj = editor.build_new_page_from_form(page_class, parent, request.POST, request.user)
    except editor.FormInvalid as e:
        return _error(e.message, e.code, 400, errors=e.errors)
    except LLMActionError as e:
        return _error(e.message, e.code, STATUS_FOR_ERROR.get(e.code, 400))

    job = editor.create_editor_job(action, None, obj, request.user, parent=parent)
    return _enqueue(job)


def _enqueue(job) -> JsonResponse:
    try:
        editor.enqueue_editor_job(job)
    except Exception:  # the queue is unreachable: say so rather than spin forever
        logger.exception("Could not queue editor job %s", job.pk)
        editor.cancel_editor_job(job)
        return _error(
            _(
                "The job could not be queued. Try again, or ask your administrator to check "
                "the task queue."
            ),
            "queue_unavailable",
            503,
        )
    return JsonResponse({"job": job.pk, **job_urls(job.pk)}, status=202)


@require_GET
def status(request, job_id: int):
    """Where the job is; with the value to fill in once it succeeded. One query."""
    item = editor.get_editor_item(job_id, request.user)
    if item is None:
        return _error(_("This job does not exist."), "not_found", 404)
    data = editor.editor_status(item).as_dict()
    if data["state"] == "succeeded":
        interaction_id = data["result"].get("interaction")
        if interaction_id:
            data["result"]["outcome_url"] = reverse(
                "wagtail_llm_actions_editor:outcome", args=[interaction_id]
            )
            for item in data["result"].get("fields") or []:
                if item.get("interaction_id"):  # a pipeline: each field has its step's
                    url = reverse(
                        "wagtail_llm_actions_editor:outcome", args=[item["interaction_id"]]
                    )
                    if item.get("outcome_field"):  # one field of a structured step
                        url += "?" + urlencode({"field": item["outcome_field"]})
                    item["outcome_url"] = url
            if data["result"].get("candidates"):
                data["result"]["choose_url"] = reverse(
                    "wagtail_llm_actions_editor:choose", args=[interaction_id]
                )
    return JsonResponse(data)


@require_POST
def cancel(request, job_id: int):
    item = editor.get_editor_item(job_id, request.user)
    if item is None:
        return _error(_("This job does not exist."), "not_found", 404)
    editor.cancel_editor_job(item.job)
    return JsonResponse({"state": "cancelled", "message": _("Cancelled.")})


@require_POST
def outcome(request, interaction_id: int):
    """Record "discarded" (Undo, Discard) or "pending" (Redo) for one of the user's runs."""
    interaction = LLMInteraction.objects.filter(
        pk=interaction_id, user=request.user.pk, trigger=InteractionTrigger.EDITOR
    ).first()
    if interaction is None:  # not one of the user's editor runs: say nothing more
        return _error(_("This run does not exist."), "not_found", 404)
    value = request.POST.get("outcome", "")
    field = request.GET.get("field") or request.POST.get("field") or ""
    if not editor.set_outcome(interaction, value, field=field):
        return _error(_("This outcome cannot be recorded."), "invalid", 400)
    return JsonResponse({"outcome": interaction.outcome})


@require_POST
def choose(request, interaction_id: int):
    """Record which candidate the editor picked (it is the value the save compares)."""
    interaction = LLMInteraction.objects.filter(
        pk=interaction_id, user=request.user.pk, trigger=InteractionTrigger.EDITOR
    ).first()
    if interaction is None:  # not one of the user's editor runs: say nothing more
        return _error(_("This run does not exist."), "not_found", 404)
    try:
        index = int(request.POST.get("index", ""))
    except ValueError:
        index = -1
    if not editor.choose_candidate(interaction, index):
        return _error(_("This candidate cannot be chosen."), "invalid", 400)
    return JsonResponse({"chosen": index})
