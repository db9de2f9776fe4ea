"""Words for codes: what the admin screens show instead of error codes, message roles and
field names (``connection`` → "Connection failed", ``system`` → "System", ``body`` → "Body").

The codes stay in the data (exports, filters, ``data-`` attributes); people read labels.
"""

from __future__ import annotations

from django.core.exceptions import FieldDoesNotExist
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

#: An error's kind, by ``LLMActionError.code`` (the provider errors' and the app's own).
ERROR_LABELS = {
    "auth": _("API key refused"),
    "rate_limit": _("Rate limit reached"),
    "context_window": _("Content too long for the model"),
    "timeout": _("Timed out"),
    "connection": _("Connection failed"),
    "server_error": _("Model server error"),
    "bad_response": _("Unreadable answer"),
    "configuration": _("Configuration problem"),
    "permission": _("Not allowed"),
    "locked": _("Page locked"),
    "not_applicable": _("Does not apply to this page"),
    "source_empty": _("Source field empty"),
    "output": _("Answer refused"),
    "answer_cut": _("Answer cut off"),
    "truncated": _("Answer cut off"),
    "extraction": _("Content could not be read"),
    "moderation": _("Page in moderation"),
    "page_deleted": _("Page deleted"),
    "write_failed": _("Draft not written"),
    "not_stored": _("Answer not stored"),
    "nothing_stored": _("No stored answer"),
    "not_started": _("Call not started"),
    "invalid": _("Invalid answer"),
    "internal": _("Internal error"),
    "error": _("Error"),
}

#: Who says a message in a chat request.
ROLE_LABELS = {
    "system": _("System"),
    "user": _("User"),
    "assistant": _("Assistant"),
    "tool": _("Tool"),
    "developer": _("Developer"),
}


def humanize(code: str) -> str:
    """``rate_limit`` → "Rate limit": a label for a code that has none."""
    return capfirst(str(code).replace("_", " ").replace("-", " ").strip())


def error_label(code: str | None) -> str:
    if not code:
        return ""
    return str(ERROR_LABELS.get(code) or humanize(code))


def role_label(role: str | None) -> str:
    if not role:
        return ""
    return str(ROLE_LABELS.get(role) or humanize(role))


def field_label(model_class, name: str) -> str:
    """The label of ``name`` on ``model_class``: its field's verbose name, and for a dotted
    path into a StreamField (``body.paragraph``) the blocks' labels: "Body › Paragraph"."""
    if not name:
        return ""
    first, *rest = str(name).split(".")
    try:
        field = model_class._meta.get_field(first) if model_class is not None else None
    except FieldDoesNotExist:
        field = None
    if field is None:
        return " › ".join(humanize(part) for part in [first, *rest])
    parts = [capfirst(str(getattr(field, "verbose_name", first) or first))]
    block = getattr(field, "stream_block", None)
    for part in rest:
        child = getattr(block, "child_blocks", {}).get(part) if block is not None else None
        if child is None:
            parts.append(humanize(part))
            block = None
            continue
        parts.append(capfirst(str(child.label or humanize(part))))
        block = child
    return " › ".join(parts)


def field_labels(model_class, names) -> str:
    """:func:`field_label` of each of ``names``, joined: "Title, Summary"."""
    return ", ".join(field_label(model_class, name) for name in names if name)


__all__ = [
    "ERROR_LABELS",
    "ROLE_LABELS",
    "error_label",
    "field_label",
    "field_labels",
    "humanize",
    "role_label",
]
