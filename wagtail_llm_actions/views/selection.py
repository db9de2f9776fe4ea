"""JSON endpoints of the rich-text editor's selection tools: the tools a page offers, and
queueing a rewrite of a selection (the browser then polls the editor's status endpoint)."""

from __future__ import annotations

from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST
from wagtail.models import Page

from ..exceptions import ActionNotAllowed, LLMActionError
from ..lazy import lazy_module
from .editor import STATUS_FOR_ERROR, _enqueue, _error

editor = lazy_module("wagtail_llm_actions.editor")
selection = lazy_module("wagtail_llm_actions.selection.jobs")
tools = lazy_module("wagtail_llm_actions.selection.tools")
rewrite = lazy_module("wagtail_llm_actions.selection.rewrite")


def _editable(request, page_id: int) -> Page | JsonResponse:
    page = get_object_or_404(Page, pk=page_id).specific
    if not page.permissions_for_user(request.user).can_edit():
        return _error(ActionNotAllowed().message, ActionNotAllowed.code, 403)
    return page


@require_GET
def selection_tools(request, page_id: int):
    """The tools the selection menu lists for the page."""
    page = _editable(request, page_id)
    if isinstance(page, JsonResponse):
        return page
    found = [{"key": t.key, "label": t.label} for t in tools.tools_for(page)]
    message = "" if found else _("No selection tools apply to this page.")
    return JsonResponse({"tools": found, "message": message})


@require_POST
def run_selection(request, page_id: int):
    """Queue a rewrite of the posted ``html`` (one block's selection) with ``tool``."""
    page = _editable(request, page_id)
    if isinstance(page, JsonResponse):
        return page
    tool = tools.find_tool(page, request.POST.get("tool", ""))
    if tool is None:
        return _error(_("This selection tool does not exist."), "not_found", 404)
    html = request.POST.get("html", "")
    try:
        editor.check_can_start(tool.action, page, request.user)
        rewrite.check_selection(html)
    except LLMActionError as e:
        return _error(e.message, e.code, STATUS_FOR_ERROR.get(e.code, 400))
    return _enqueue(selection.create_selection_job(tool, page, request.user, html))
