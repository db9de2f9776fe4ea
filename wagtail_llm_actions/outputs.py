"""Turn a model's answer into a field value: clean it, convert it, check it fits, set it.

::

    written = apply_output(page, "summary", answer, "text")
    written = apply_output(page, "tags", "wagtail, django", "tags")

``apply_output`` only changes the object once the answer has passed every check, so an
``OutputError`` always leaves the object as it was. Model HTML is never trusted: rich text is
rebuilt from an allow-list of tags and attributes.
"""

from __future__ import annotations

import re
from html import escape
from html.parser import HTMLParser
from itertools import groupby
from operator import itemgetter
from typing import Any
from urllib.parse import urlsplit

from django.db import models
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from taggit.managers import TaggableManager
from wagtail.fields import RichTextField

from .extraction import (
    RICH_TEXT,
    TAGS,
    PathError,
    get_target_field,
    html_to_text,
    tag_names,
    validate_target_field,
)

__all__ = [
    "MAX_TAGS",
    "MAX_TAG_LENGTH",
    "OutputError",
    "answer_max_chars",
    "apply_output",
    "clean_model_text",
    "read_field_value",
    "split_tags",
    "to_rich_text",
]

MAX_TAG_LENGTH = 100  # taggit's Tag.name max_length
MAX_TAGS = 50
ELLIPSIS = "…"

_QUOTE_PAIRS = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»", "„": "“", "`": "`"}
_LABEL = re.compile(r"(?:summary|tags|description):", re.IGNORECASE)
_FENCE = re.compile(r"```[^\n`]*\n(?P<body>.*?)\n?```|```(?P<inline>[^\n]*?)```", re.DOTALL)
_BULLET = re.compile(r"^(?:[-*•]|\d+[.)])\s*")
_LIST_LINE = re.compile(r"^\s*(?:[-*•]|(?P<number>\d+[.)]))\s+(?P<text>.*)$")
_BLOCK_HTML = re.compile(r"<(?:p|br|ul|ol|li|h[1-6]|div|blockquote)(?:\s[^>]*)?/?>", re.I)
_INLINE_HTML = re.compile(r"<(?:b|i|strong|em|a)(?:\s[^>]*)?>.*?</", re.I | re.S)
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*(?=\s|$)")


class OutputError(ValueError):
    """An answer that cannot be written; ``code`` is "empty", "too_long" or "invalid"."""

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# -- cleaning --------------------------------------------------------------------------------


def _strip_quotes(text: str) -> str:
    """Remove one pair of quotes around the whole text, if they wrap it and nothing else."""
    if len(text) < 2 or _QUOTE_PAIRS.get(text[0]) != text[-1]:
        return text
    inner = text[1:-1]
    opening, closing = text[0], text[-1]
    if opening == "'":
        # apostrophes inside words ("it's") do not count as quotes
        quoted = re.search(r"(?<!\w)'|'(?!\w)", inner)
    else:
        quoted = opening in inner or closing in inner
    return text if quoted else inner.strip()


def clean_model_text(text: str) -> str:
    """Strip whitespace, one wrapping code fence, a "Summary:"-style label and wrapping quotes."""
    text = (text or "").strip()
    fence = _FENCE.fullmatch(text)
    if fence:
        body = fence.group("body") if fence.group("body") is not None else fence.group("inline")
        if "```" not in body:
            text = body.strip()
    label = _LABEL.match(text)
    if label:
        text = text[label.end() :].strip()
    return _strip_quotes(text)


def split_tags(text: str) -> list[str]:
    """Tag names from a comma, semicolon or line separated list, de-duplicated, at most 50."""
    tags: list[str] = []
    seen: set[str] = set()
    for raw in re.split(r"[,;\n\r]", text or ""):
        tag, previous = raw, None
        while tag != previous:
            previous = tag
            tag = _BULLET.sub("", tag.strip()).lstrip("#").strip()
            tag = _strip_quotes(tag)
        tag = " ".join(tag.split())[:MAX_TAG_LENGTH].strip()
        if tag and tag.casefold() not in seen:
            seen.add(tag.casefold())
            tags.append(tag)
            if len(tags) == MAX_TAGS:
                break
    return tags


# -- rich text -------------------------------------------------------------------------------


class _Sanitiser(HTMLParser):
    """Rebuild HTML from allowed tags only; text is re-escaped, other tags are unwrapped."""

    RENAME = {"h1": "h2", "h5": "h4", "h6": "h4", "strong": "b", "em": "i"}
    TOP_LEVEL = frozenset({"p", "h2", "h3", "h4"})
    LISTS = frozenset({"ul", "ol"})
    INLINE = frozenset({"b", "i", "a"})
    DROP_CONTENT = frozenset({"script", "style", "template", "iframe", "object", "noscript"})
    BREAKS = frozenset({"div", "blockquote", "section", "article", "pre", "table", "tr", "hr"})
    SAFE_SCHEMES = frozenset({"http", "https", "mailto", "tel"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []
        self.dropping = 0
        self.dropped_links = 0

    def _pop(self) -> None:
        self.out.append(f"</{self.open.pop()}>")

    def _close_all(self) -> None:
        while self.open:
            self._pop()

    def _push(self, tag: str, markup: str | None = None) -> None:
        self.out.append(markup or f"<{tag}>")
        self.open.append(tag)

    def _in_list(self) -> bool:
        return any(tag in self.LISTS for tag in self.open)

    def _ensure_container(self) -> None:
        """Wrap loose text and inline tags at the top level in a paragraph."""
        if not self.open:
            self._push("p")

    def _safe_href(self, attrs: list[tuple[str, str | None]]) -> str | None:
        href = (dict(attrs).get("href") or "").strip()
        scheme = urlsplit(href).scheme.lower()
        if not href or (scheme and scheme not in self.SAFE_SCHEMES):
            return None
        if not scheme and not href.startswith(("/", "#")):
            return None
        return href

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        tag = self.RENAME.get(tag, tag)
        if tag in self.DROP_CONTENT:
            self.dropping += 1
        elif self.dropping:
            return
        elif tag in self.TOP_LEVEL:
            if not self._in_list():  # inside a list item, paragraphs are unwrapped
                self._close_all()
                self._push(tag)
        elif tag in self.LISTS:
            if not self.open or self.open[-1] != "li":
                self._close_all()
            self._push(tag)
        elif tag == "li":
            if not self._in_list():
                self._close_all()
                self._push("ul")
            while self.open[-1] not in self.LISTS:
                self._pop()
            self._push("li")
        elif tag == "br":
            if self.open:
                self.out.append("<br/>")
        elif tag in self.BREAKS:
            if not self._in_list():
                self._close_all()
        elif tag == "a":
            href = self._safe_href(attrs)
            if href is None:
                self.dropped_links += 1
            else:
                self._ensure_container()
                self._push("a", f'<a href="{escape(href, quote=True)}">')
        elif tag in self.INLINE:
            self._ensure_container()
            self._push(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "hr"):
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        tag = self.RENAME.get(tag, tag)
        if tag in self.DROP_CONTENT:
            self.dropping = max(0, self.dropping - 1)
        elif self.dropping:
            return
        elif tag == "a" and self.dropped_links:
            self.dropped_links -= 1
        elif tag in self.BREAKS and not self._in_list():
            self._close_all()
        elif tag in self.open:
            while self.open[-1] != tag:
                self._pop()
            self._pop()

    def handle_data(self, data: str) -> None:
        if self.dropping or (not data.strip() and not self.open):
            return
        self._ensure_container()
        self.out.append(escape(re.sub(r"\s+", " ", data), quote=False))

    def result(self) -> str:
        self.close()
        self._close_all()
        html = re.sub(r"\s+(</(?:p|h2|h3|h4|li)>)", r"\1", "".join(self.out))
        return re.sub(r"<(p|h2|h3|h4|li|ul|ol)>\s*</\1>", "", html).strip()


def sanitise_html(html: str) -> str:
    """Keep only p, br, b/i (strong/em), ul, ol, li, a[href] and h2-h4 from ``html``."""
    parser = _Sanitiser()
    parser.feed(html)
    return parser.result()


def _line_kind(line: str) -> tuple[str, str]:
    """("ul" | "ol" | "p", text) for one line of plain text."""
    item = _LIST_LINE.match(line)
    kind, text = (
        ("ol" if item.group("number") else "ul", item.group("text")) if item else ("p", line)
    )
    return kind, " ".join(text.split())


def _plain_to_rich_text(text: str, *, escape_text: bool = True) -> str:
    """Paragraphs on blank lines become ``<p>``, "- item" lines lists; text is escaped."""
    html: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        lines = [_line_kind(line) for line in paragraph.splitlines() if line.strip()]
        for kind, group in groupby(lines, key=itemgetter(0)):
            texts = [escape(t, quote=False) if escape_text else t for _kind, t in group]
            if kind == "p":
                html.append("<p>" + "<br/>".join(texts) + "</p>")
            else:
                html.append(f"<{kind}>" + "".join(f"<li>{t}</li>" for t in texts) + f"</{kind}>")
    return "".join(html)


def to_rich_text(text: str) -> str:
    """Rich text HTML for ``text``, never trusting its markup.

    HTML is sanitised; plain text becomes paragraphs and lists (keeping inline ``<b>``,
    ``<i>`` and links, sanitised, when the text uses them).
    """
    text = (text or "").strip()
    if _BLOCK_HTML.search(text):
        return sanitise_html(text)
    if _INLINE_HTML.search(text):
        return sanitise_html(_plain_to_rich_text(text, escape_text=False))
    return _plain_to_rich_text(text)


# -- length ----------------------------------------------------------------------------------


def _shorten(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters at a sentence end, else a word with "…"."""
    if len(text) <= limit:
        return text
    head = text[: limit + 1]
    ends = [m.end() for m in _SENTENCE_END.finditer(head) if m.end() <= limit]
    if ends and ends[-1] >= limit // 2:
        return text[: ends[-1]].rstrip()
    head = text[: max(limit - len(ELLIPSIS), 0)]
    if text[len(head)].isspace():
        cut = len(head)
    else:
        cut = max(head.rfind(" "), head.rfind("\n"))
    if cut > 0:
        head = head[:cut]
    return head.rstrip(" \n\t,;:-–—") + ELLIPSIS if head.strip() else ""


def _too_long(field: Any, length: int, limit: int) -> OutputError:
    message = ngettext(
        "The answer is %(length)s character long; %(field)s holds at most %(limit)s.",
        "The answer is %(length)s characters long; %(field)s holds at most %(limit)s.",
        length,
    ) % {"length": length, "field": field.verbose_name, "limit": limit}
    return OutputError(message, code="too_long")


def _fit(field: Any, text: str, truncate: bool) -> str:
    """``text`` if it fits ``field.max_length``, else shortened (or OutputError "too_long")."""
    limit = getattr(field, "max_length", None)
    if not limit or len(text) <= limit:
        return text
    if not truncate:
        raise _too_long(field, len(text), limit)
    return _shorten(text, limit)


def _fit_tags(field: Any, tags: list[str], truncate: bool) -> list[str]:
    """Tags whose comma-separated form fits ``field``; trailing tags are dropped if allowed."""
    limit = getattr(field, "max_length", None)
    joined = ", ".join(tags)
    if not limit or len(joined) <= limit:
        return tags
    if not truncate:
        raise _too_long(field, len(joined), limit)
    while tags and len(", ".join(tags)) > limit:
        tags = tags[:-1]
    return tags


def _empty() -> OutputError:
    return OutputError(_("The model returned an empty answer."), code="empty")


# -- applying --------------------------------------------------------------------------------


def apply_output(
    obj: models.Model, field_name: str, text: str, output_mode: str, *, truncate: bool = False
) -> str:
    """Write the model's ``text`` to ``field_name`` of ``obj`` and return what was written.

    Raises OutputError (leaving ``obj`` unchanged) if the answer is empty, does not fit the
    field and ``truncate`` is false, or the field cannot take this output mode.
    """
    try:
        validate_target_field(type(obj), field_name, output_mode)
    except PathError as e:
        raise OutputError(str(e), code="invalid") from e
    field = get_target_field(type(obj), field_name)
    cleaned = clean_model_text(text)
    if not cleaned:
        raise _empty()

    if output_mode == TAGS:
        tags = split_tags(cleaned)
        if isinstance(field, TaggableManager):
            if not tags:
                raise _empty()
            getattr(obj, field.name).set(tags)
            return ", ".join(tags)
        tags = _fit_tags(field, tags, truncate)
        if not tags:
            raise _empty()
        value = ", ".join(tags)
    elif isinstance(field, RichTextField):
        value = to_rich_text(cleaned) if output_mode == RICH_TEXT else _plain_to_rich_text(cleaned)
        plain = html_to_text(value)
        if not plain:
            raise _empty()
        # Wagtail counts the text of rich text, not its tags, against max_length
        shortened = _fit(field, plain, truncate)
        if shortened != plain:
            value = _plain_to_rich_text(shortened.replace("\n", "\n\n"))
    else:
        if not isinstance(field, models.TextField):
            cleaned = " ".join(cleaned.split())  # a CharField holds a single line
        value = _fit(field, cleaned, truncate)
        if not value:
            raise _empty()
    setattr(obj, field.attname, value)
    return value


def answer_max_chars(model_class: type[models.Model], field_name: str) -> int | None:
    """The most characters an answer for ``field_name`` may have (its ``max_length``), or None.

    The service passes it to the provider as a hint (``CompletionRequest.max_chars``): the
    offline models keep their answers within it; real models ignore it.
    """
    try:
        field = get_target_field(model_class, field_name)
    except PathError:
        return None
    if isinstance(field, TaggableManager):
        return None
    limit = getattr(field, "max_length", None)
    return limit if isinstance(limit, int) and limit > 0 else None


def read_field_value(obj: models.Model, field_name: str) -> str:
    """The current value of ``field_name`` as a string (tags joined by ", ")."""
    field = get_target_field(type(obj), field_name)
    if isinstance(field, TaggableManager):
        return ", ".join(tag_names(obj, field.name))
    value = field.value_from_object(obj)
    return "" if value is None else str(value)


def set_output_value(obj: models.Model, field_name: str, value: str) -> None:
    """Put an already computed field value (what :func:`apply_output` returned) into ``obj``.

    Used when an answer is written into a newer revision than the one it was computed on:
    the model's text is not parsed again, so the field gets exactly the stored value.
    """
    field = get_target_field(type(obj), field_name)
    if isinstance(field, TaggableManager):
        getattr(obj, field.name).set([t.strip() for t in value.split(",") if t.strip()])
    else:
        setattr(obj, field.attname, value)
