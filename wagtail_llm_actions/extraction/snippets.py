"""Chosen snippets: a title line and a few of the snippet's own text and number fields."""

from __future__ import annotations

import functools
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.utils.text import capfirst
from wagtail import blocks
from wagtail.fields import RichTextField

from .targets import _FORMATTED_CHAR_FIELDS
from .text import _truncate, html_to_text
from .values import _Absent, _labelled

#: A chosen snippet sends at most this many characters, and this many of its fields.
SNIPPET_MAX_CHARS = 600


SNIPPET_MAX_FIELDS = 6


_SNIPPET_FIELD_TYPES = (
    models.CharField,
    models.TextField,
    models.IntegerField,
    models.DecimalField,
    models.FloatField,
)


def _snippet_text(obj: Any, label: str) -> str:
    """A chosen snippet: ``Label: <title>`` and its other text and number fields, one a line
    (``Description: …``), at most ``SNIPPET_MAX_FIELDS`` fields and ``SNIPPET_MAX_CHARS``.

    The title is its ``title`` or ``name``, else its first field; ``str()`` only when it has
    no such field. Fields are those of its edit panels (what editors fill in), in order.
    """
    fields = _snippet_fields(type(obj))
    title = ""
    for attr in ("title", "name"):
        value = getattr(obj, attr, None)
        if isinstance(value, str) and value.strip():
            title = value
            break
    lines = []
    for name, verbose_name, rich in fields:
        value = getattr(obj, name, None)
        text = html_to_text(value or "") if rich else ("" if value is None else str(value))
        text = " ".join(text.split())
        if not text or text == title:
            continue
        if not title:
            title = text
            continue
        lines.append(_labelled(capfirst(str(verbose_name)), text))
        if len(lines) >= SNIPPET_MAX_FIELDS:
            break
    text = "\n".join([_labelled(label, title or str(obj)), *lines])
    if len(text) > SNIPPET_MAX_CHARS:
        text = _truncate(text, SNIPPET_MAX_CHARS - 1) + "…"
    return text


@functools.lru_cache(maxsize=256)
def _snippet_fields(model: type[models.Model]) -> tuple[tuple[str, Any, bool], ...]:
    """``(name, verbose name, is rich text)`` of the text and number fields of a snippet's
    edit panels, else of its search fields, else of its editable fields (what Wagtail's edit
    form shows without panels); fields with choices are settings, like choice blocks."""
    names: list[str] = []
    get_edit_handler = getattr(model, "get_edit_handler", None)  # a registered snippet's
    if callable(get_edit_handler):
        names = list(get_edit_handler().get_form_options().get("fields") or [])
    if not names:
        from wagtail.search.index import SearchField

        search_fields = getattr(model, "search_fields", ())
        names = [f.field_name for f in search_fields if isinstance(f, SearchField)]
    if not names:
        names = [f.name for f in model._meta.concrete_fields]
    result = []
    for name in dict.fromkeys(names):
        try:
            field = model._meta.get_field(name)
        except FieldDoesNotExist:
            continue
        if (
            not getattr(field, "concrete", False)
            or not field.editable
            or field.primary_key
            or field.choices
            or field.is_relation
            or isinstance(field, _FORMATTED_CHAR_FIELDS)
            or not isinstance(field, _SNIPPET_FIELD_TYPES)
        ):
            continue
        result.append((field.name, field.verbose_name, isinstance(field, RichTextField)))
    return tuple(result)


@functools.cache
def _snippet_chooser_block() -> type:
    """Wagtail's ``SnippetChooserBlock``, or ``_Absent`` without ``wagtail.snippets``."""
    from django.apps import apps

    if not apps.is_installed("wagtail.snippets"):
        return _Absent
    from wagtail.snippets.blocks import SnippetChooserBlock

    return SnippetChooserBlock


def _is_snippet_chooser(block: blocks.Block) -> bool:
    return isinstance(block, _snippet_chooser_block())
