"""Text the database can store: what a model answered, made storable without losing the call.

A model may answer text no database column takes: a lone UTF-16 surrogate (``"\\ud800"``,
which UTF-8 cannot encode: SQLite and PostgreSQL both refuse it) or a NUL character (which
PostgreSQL's text and jsonb refuse). Such an answer would make the interaction that records
the paid call fail to save. :func:`clean_row` replaces each lone surrogate with U+FFFD (a
surrogate pair written as two code points becomes the character it encodes), removes NUL
characters everywhere (so both databases store the same text) and cuts a value longer than
its column, in the text, character and JSON fields of a row, and says what it changed, in
words for the interaction's log.

Nothing here queries the database.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from django.db import models
from django.utils.translation import gettext as _

_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str, found: Counter) -> str:
    """``text`` without NUL characters and lone surrogates; counts them in ``found``."""
    if "\x00" not in text and (text.isascii() or _encodable(text)):
        return text
    nul = text.count("\x00")
    if nul:
        found["nul"] += nul
        text = text.replace("\x00", "")
    if _SURROGATE.search(text):
        # Pairs written as two code points decode to their character; lone ones to U+FFFD.
        fixed = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        pairs = len(text) - len(fixed)
        found["surrogate"] += len(_SURROGATE.findall(text)) - 2 * pairs
        text = fixed
    return text


def _encodable(text: str) -> bool:
    """Whether UTF-8 can encode ``text`` (it holds no surrogate), checked at C speed."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_value(value: Any, found: Counter) -> Any:
    """A JSON value with every string (keys too) cleaned by :func:`clean_text`."""
    if isinstance(value, str):
        return clean_text(value, found)
    if isinstance(value, dict):
        return {clean_value(k, found): clean_value(v, found) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_value(v, found) for v in value]
    return value


def clean_row(instance: models.Model, names: list[str] | None = None) -> str:
    """Clean ``instance``'s text, character and JSON fields in place (only ``names`` if
    given); return what was changed, in words ("" if nothing was)."""
    found: Counter = Counter()
    cut: list[str] = []
    for field in instance._meta.concrete_fields:
        if names is not None and field.name not in names and field.attname not in names:
            continue
        if isinstance(field, models.JSONField):
            value = getattr(instance, field.attname)
            if value is not None and not isinstance(value, int | float | bool):
                setattr(instance, field.attname, clean_value(value, found))
            continue
        if not isinstance(field, models.CharField | models.TextField):
            continue
        value = getattr(instance, field.attname)
        if not isinstance(value, str):
            continue
        value = clean_text(value, found)
        limit = getattr(field, "max_length", None)
        if isinstance(field, models.CharField) and limit and len(value) > limit:
            value = value[:limit]
            cut.append(str(field.verbose_name))
        setattr(instance, field.attname, value)
    return describe(found, cut)


def describe(found: Counter, cut: list[str]) -> str:
    """What :func:`clean_row` changed, in words."""
    parts = []
    if found["surrogate"]:
        parts.append(
            _("%(count)s lone surrogate(s) replaced with U+FFFD") % {"count": found["surrogate"]}
        )
    if found["nul"]:
        parts.append(_("%(count)s NUL character(s) removed") % {"count": found["nul"]})
    if cut:
        parts.append(
            _("cut to the column's length: %(fields)s") % {"fields": ", ".join(dict.fromkeys(cut))}
        )
    if not parts:
        return ""
    return _("Text the database cannot store was cleaned: %(changes)s.") % {
        "changes": "; ".join(parts)
    }


def merge_notes(old: str, new: str, limit: int) -> str:
    """``old`` and ``new`` notes, each once, within ``limit`` characters."""
    notes = [n for n in (old, new) if n]
    text = " ".join(dict.fromkeys(notes))
    return text if len(text) <= limit else text[: limit - 1] + "…"
