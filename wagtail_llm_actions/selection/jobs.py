"""A selection rewrite as an editor job: created and queued by the request, run by the
worker (:func:`run_selection_item`, called by :func:`..editor.run_editor_job` for an item
whose payload holds a ``"selection"``); the browser polls the editor's status endpoint."""

from __future__ import annotations

import contextlib
import json
import re

from django.utils.translation import gettext as _
from wagtail.models import Page

from .. import db
from ..editor.leases import _finish, _link
from ..editor.streams import PartialText, streams
from ..exceptions import LLMActionError
from ..models import ItemStatus, JobKind, JobStatus, LLMJob, LLMJobItem
from .rewrite import rewrite_selection
from .tools import Tool, find_tool

#: The start of the answer's JSON object, up to its first value's opening quote.
_ANSWER_START = re.compile(r'^\s*(?:```(?:json)?\s*)?\{\s*"[^"]*"\s*:\s*"', re.DOTALL)
#: Placeholders of the selection's markup, whole or cut at the end of a partial answer.
_PLACEHOLDER = re.compile(r"⟦\d*⟧?")


def readable(answer_so_far: str) -> str:
    """The text of a selection answer still being written, for the preview: the first
    value of its JSON object so far, unescaped, without markup placeholders ("" before the
    value starts). The answer itself is checked and restored as usual once complete."""
    start = _ANSWER_START.match(answer_so_far)
    if start is None:
        return ""
    raw = answer_so_far[start.end() :]
    end = re.search(r'(?<!\\)(?:\\\\)*"', raw)  # the value's closing quote, if written
    raw = raw[: end.start() + (len(end.group()) - 1)] if end else raw
    raw = re.sub(r"\\(u[0-9a-fA-F]{0,3})?$", "", raw)  # an escape cut at the end
    try:
        text = json.loads(f'"{raw}"')
    except ValueError:
        text = raw
    return _PLACEHOLDER.sub("", text)


class SelectionText(PartialText):
    """The item's partial text (see :class:`..editor.streams.PartialText`), as readable
    text rather than the answer's JSON."""

    def __call__(self, text: str) -> bool:
        text = readable(text)
        return super().__call__(text) if text else not self.cancelled


def create_selection_job(tool: Tool, page: Page, user, html: str) -> LLMJob:
    """An editor job rewriting ``html`` (one block's selection) with ``tool``: one item."""
    payload = {
        "selection": {"tool": tool.key, "html": html},
        "user": user.pk if user is not None else None,
    }
    with db.atomic_write():
        job = LLMJob.objects.create(
            action=tool.action,
            action_name=tool.run_name,
            user=user,
            kind=JobKind.EDITOR,
            status=JobStatus.QUEUED,
            options={"target_field": ""},
        )
        LLMJobItem.objects.create(job=job, page=page, payload=payload)
    return job


def run_selection_item(item: LLMJobItem) -> str:
    """Rewrite the item's selection; its result is ``{"selection": html, "interaction": id}``
    for the browser's preview. Nothing is written to the page."""
    job = item.job
    selection = (item.payload or {}).get("selection") or {}
    page = item.page.specific if item.page is not None else None
    tool = find_tool(page, str(selection.get("tool", ""))) if page is not None else None
    if tool is None:
        message = _("The page or the selection tool no longer exists.")
        _finish(item, ItemStatus.FAILED, {"code": "gone", "message": message}, error="gone")
        return "failed"
    from ..providers import streaming

    publish = SelectionText(item) if streams(tool.action) else None
    try:
        with streaming.offering(publish) if publish else contextlib.nullcontext():
            done = rewrite_selection(
                tool,
                page,
                job.user,
                str(selection.get("html", "")),
                # the answer is linked to the item as it is stored: a worker dying after this
                # leaves it to be shown (see editor.expire_item), not paid for again
                on_saved=lambda interaction: _link(item, interaction=interaction),
            )
    except LLMActionError as e:
        if publish is not None and publish.cancelled:  # the stream stopped on Cancel
            _finish(item, ItemStatus.CANCELLED, {}, interaction=e.interaction, error=e.message)
            return "cancelled"
        result = {"code": e.code, "message": e.message, "retryable": e.retryable}
        _finish(item, ItemStatus.FAILED, result, interaction=e.interaction, error=e.message)
        return "failed"
    if LLMJob.objects.filter(pk=job.pk, status=JobStatus.CANCELLED).exists():
        _finish(item, ItemStatus.CANCELLED, {}, interaction=done.interaction)
        return "cancelled"
    result = {"selection": done.html, "interaction": done.interaction.pk}
    _finish(item, ItemStatus.SUCCEEDED, result, interaction=done.interaction)
    return "succeeded"
