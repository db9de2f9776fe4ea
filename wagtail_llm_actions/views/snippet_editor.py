"""The JSON endpoint behind the snippet editor's action buttons (issue 23 §2).

``run`` does for a snippet what :func:`.editor.run` does for a page: it validates the posted
(unsaved) edit form, checks that the user may change the snippet (its permission policy)
and queues an editor job, answering at once with the job's URLs. ``run_new`` does the same
on the create view, for a snippet that has no id yet (the user may add and change such
snippets). The run, its status,
Cancel and the review of the answer are the page editor's (:mod:`.editor`).
"""

from __future__ import annotations

from django.apps import apps
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from ..exceptions import ActionNotAllowed, LLMActionError
from ..models import LLMAction
from .editor import STATUS_FOR_ERROR, _enqueue, _error, _too_large, editor


def _too_large_snippet(request):
    return _too_large(
        request,
        _(
            "The snippet is too large to send for generation (over the server's form size "
            "limit). Ask your administrator to raise DATA_UPLOAD_MAX_MEMORY_SIZE or "
            "DATA_UPLOAD_MAX_NUMBER_FIELDS."
        ),
    )


@csrf_exempt  # checked by csrf_protect below, once the body is known to be readable
@require_POST
def run(request, app_label: str, model_name: str, pk: str, action_id: int):
    """Queue ``action`` on the snippet as the posted form has it; answer with the job's URLs."""
    too_large = _too_large_snippet(request)
    return too_large or _run(request, app_label, model_name, pk, action_id)


@csrf_exempt  # checked by csrf_protect below, once the body is known to be readable
@require_POST
def run_new(request, app_label: str, model_name: str, action_id: int):
    """As :func:`run`, on the create view: a new snippet (``?locale=``: the view's locale)."""
    too_large = _too_large_snippet(request)
    return too_large or _run_new(request, app_label, model_name, action_id)


def _model(app_label: str, model_name: str) -> type:
    """A snippet model whose editor has buttons; 404 for any other."""
    from ..editor.snippets import offers_buttons

    try:
        model = apps.get_model(app_label, model_name)
    except LookupError as e:
        raise Http404 from e
    if not offers_buttons(model):
        raise Http404
    return model


def _snippet(app_label: str, model_name: str, pk: str):
    return get_object_or_404(_model(app_label, model_name), pk=pk)


@csrf_protect
def _run(request, app_label: str, model_name: str, pk: str, action_id: int):
    from ..editor.snippets import build_snippet_from_form, check_can_start_snippet
    from ..snippets import can_change

    try:
        snippet = _snippet(app_label, model_name, pk)
    except Http404:
        return _error(_("This snippet does not exist."), "not_found", 404)
    if not can_change(request.user, snippet):
        return _error(
            _("You do not have permission to edit this snippet."), ActionNotAllowed.code, 403
        )
    action = LLMAction.objects.filter(pk=action_id).select_related("prompt").first()
    if action is None:
        return _error(_("This action no longer exists."), "not_found", 404)
    try:
        check_can_start_snippet(action, snippet, request.user)
        obj = build_snippet_from_form(snippet, request.POST, request.user)
    except editor.FormInvalid as e:
        return _error(e.message, e.code, 400, errors=e.errors)
    except LLMActionError as e:
        return _error(e.message, e.code, STATUS_FOR_ERROR.get(e.code, 400))

    regenerate = request.POST.get("llm_regenerate") == "1"  # Regenerate: never the cache
    job = editor.create_editor_job(action, snippet, obj, request.user, regenerate=regenerate)
    return _enqueue(job)


@csrf_protect
def _run_new(request, app_label: str, model_name: str, action_id: int):
    from ..editor.snippets import (
        build_new_snippet_from_form,
        check_can_create_snippet,
        user_may_create_snippet,
    )

    try:
        model = _model(app_label, model_name)
    except Http404:
        return _error(_("This snippet type does not exist."), "not_found", 404)
    if not user_may_create_snippet(request.user, model):
        return _error(
            _("You do not have permission to add this snippet."), ActionNotAllowed.code, 403
        )
    action = LLMAction.objects.filter(pk=action_id).select_related("prompt").first()
    if action is None:
        return _error(_("This action no longer exists."), "not_found", 404)
    locale = request.GET.get("locale", "")
    try:
        check_can_create_snippet(action, model, request.user)
        obj = build_new_snippet_from_form(model, request.POST, request.user, locale)
    except editor.FormInvalid as e:
        return _error(e.message, e.code, 400, errors=e.errors)
    except LLMActionError as e:
        return _error(e.message, e.code, STATUS_FOR_ERROR.get(e.code, 400))

    job = editor.create_editor_job(action, None, obj, request.user)
    return _enqueue(job)
