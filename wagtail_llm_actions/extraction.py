"""Turn dotted, StreamField-aware paths such as ``body.section.text`` into plain text.

::

    extract_text(page, "body").text            # the whole stream, one block per paragraph
    extract_text(page, "body.paragraph").text  # only the paragraph blocks
    extract_text(page, "author.name").text     # an attribute of a related object
    validate_source_path(BlogPage, "body.section.points")
    validate_target_field(BlogPage, "summary", "text")

Paths only ever name model fields and block names: no methods are called and no private
attribute is read, so a path written in the admin cannot reach anything else.

Every block Wagtail ships has a reader here (see README, "Source paths"); a site's own block
reads through its ``get_llm_text(value)`` method, a reader registered with the
``register_llm_block_readers`` hook, or else Wagtail's ``get_searchable_content``. A reader
that fails raises ``ExtractionError`` naming the block. Yes/no and choice blocks are
presentation switches unless marked as content (``llm_content`` on the block, or the
``BLOCKS`` setting, which also leaves out any block marked "presentation").
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist
from django.db import models
from django.utils import timezone, translation
from django.utils.functional import Promise
from django.utils.module_loading import import_string
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from taggit.managers import TaggableManager
from wagtail import blocks
from wagtail.blocks.field_block import BaseChoiceBlock
from wagtail.fields import RichTextField, StreamField
from wagtail.rich_text import RichText

from .conf import get_setting
from .exceptions import ExtractionError

__all__ = [
    "CONTENT",
    "PRESENTATION",
    "READER_HOOK",
    "SNIPPET_MAX_CHARS",
    "Extracted",
    "ExtractionError",
    "PathError",
    "describe_paths",
    "describe_targets",
    "extract_text",
    "get_target_field",
    "html_to_text",
    "source_hash",
    "tag_names",
    "validate_source_path",
    "validate_target_field",
]

TEXT = "text"
TAGS = "tags"
RICH_TEXT = "rich_text"
OUTPUT_MODES = (TEXT, TAGS, RICH_TEXT)

# Fields of wagtailcore.Page that hold content; the rest is tree and workflow bookkeeping.
PAGE_CONTENT_FIELDS = ("title", "slug", "seo_title", "search_description")
PAGE_TARGET_FIELDS = ("title", "seo_title", "search_description")

# Char fields whose values must follow a format, so free text cannot go into them.
_FORMATTED_CHAR_FIELDS = (models.SlugField, models.EmailField, models.URLField)

_MAX_BLOCK_DEPTH = 6


class PathError(ValueError):
    """A source path or target field that does not exist or cannot be used."""


@dataclass(frozen=True)
class Extracted:
    """Text read from an object; ``original_length`` is the length before any cut."""

    text: str
    truncated: bool
    original_length: int


# -- plain text helpers ----------------------------------------------------------------------


class _TextParser(HTMLParser):
    """Collects the text of an HTML fragment, one line per block element."""

    BLOCK_TAGS = frozenset(
        "address article aside blockquote caption dd details div dl dt figcaption figure footer "
        "h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section summary table tr ul".split()
    )
    SKIP_TAGS = frozenset({"script", "style", "template", "noscript", "head", "iframe", "svg"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP_TAGS:
            self.skipping += 1
        elif tag == "br" or tag in self.BLOCK_TAGS:
            self.parts.append("\n")
        elif tag == "embed" and not self.skipping:
            # Wagtail's stored rich text: <embed embedtype="image" alt="…"/>, or "media" url=…
            values = dict(attrs)
            if values.get("embedtype") == "image" and values.get("alt"):
                self.parts.append(f"\n{_('Image')}: {values['alt']}\n")
            elif values.get("embedtype") == "media" and values.get("url"):
                self.parts.append(f"\n{_('Embed')}: {values['url']}\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP_TAGS:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCK_TAGS:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            # Line breaks in HTML source are just spaces; only elements break lines. (Other
            # whitespace is collapsed when the lines are joined: see html_to_text.)
            self.parts.append(data.replace("\n", " "))


def html_to_text(html: str) -> str:
    """Text of an HTML fragment: block elements and ``<br>`` on their own lines, no tags."""
    if not html:
        return ""
    parser = _TextParser()
    parser.feed(str(html))
    parser.close()
    return _join_lines("".join(parser.parts).split("\n"))


def _join_lines(parts: Iterable[str]) -> str:
    """Join non-blank parts with newlines, collapsing whitespace within each line."""
    lines = (" ".join(line.split()) for part in parts for line in str(part).split("\n"))
    return "\n".join(line for line in lines if line)


def _normalise(text: str) -> str:
    """Collapse whitespace within lines and keep at most one blank line between paragraphs."""
    paragraphs = re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n"))
    return "\n\n".join(p for p in (_join_lines([para]) for para in paragraphs) if p)


def _truncate(text: str, max_chars: int) -> str:
    """Cut ``text`` to at most ``max_chars``, at the last whitespace if there is one."""
    max_chars = max(max_chars, 0)
    if len(text) <= max_chars:
        return text
    if text[max_chars].isspace():
        return text[:max_chars].rstrip()
    head = text[:max_chars]
    cut = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
    return (head[:cut] if cut > 0 else head).rstrip()


def source_hash(text: str) -> str:
    """SHA-256 hex digest of ``text``, to tell whether a source changed since the last run."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- model introspection ---------------------------------------------------------------------


def _verbose_name(model_class: type[models.Model]) -> str:
    return str(model_class._meta.verbose_name)


def _is_page_internal(field: models.Field, allowed: Iterable[str]) -> bool:
    """True for wagtailcore.Page bookkeeping fields (path, depth, live, locale …)."""
    from wagtail.models import Page

    return field.model is Page and field.name not in allowed


def _is_user_relation(field: Any) -> bool:
    related = getattr(field, "related_model", None)
    return related is not None and related is get_user_model()


def _is_source_field(field: Any) -> bool:
    """Whether a path may start with ``field`` (whatever comes after it)."""
    if isinstance(field, TaggableManager):
        return True
    if not getattr(field, "concrete", False) or field.name.startswith("_"):
        return False
    if field.is_relation:
        remote = field.remote_field
        return not getattr(remote, "parent_link", False) and not _is_user_relation(field)
    return True


def _source_fields(model_class: type[models.Model], *, listed: bool = False) -> list[Any]:
    """Fields a source path may start with; ``listed`` leaves out bookkeeping fields."""
    fields = [f for f in model_class._meta.get_fields() if _is_source_field(f)]
    if listed:
        fields = [
            f
            for f in fields
            if not _is_page_internal(f, PAGE_CONTENT_FIELDS)
            and not getattr(f, "primary_key", False)
            and (getattr(f, "editable", True) or isinstance(f, TaggableManager))
        ]
    return fields


def _get_field(model_class: type[models.Model], name: str, path: str) -> Any:
    """The source field ``name`` of ``model_class``, or a PathError listing the choices."""
    try:
        field = model_class._meta.get_field(name)
    except FieldDoesNotExist:
        field = None
    if field is not None and getattr(field, "concrete", False) and _is_user_relation(field):
        raise PathError(
            _("“%(path)s” cannot be used: it refers to user accounts.") % {"path": path}
        )
    if field is None or not _is_source_field(field):
        raise PathError(
            _("“%(path)s” is not a field of %(model)s; choose one of: %(choices)s.")
            % {
                "path": path,
                "model": _verbose_name(model_class),
                "choices": ", ".join(f.name for f in _source_fields(model_class, listed=True)),
            }
        )
    return field


def _split_path(path: str) -> list[str]:
    segments = (path or "").strip().split(".")
    if not all(segments):
        raise PathError(
            _("“%(path)s” is not a valid path; write names separated by dots, e.g. body.paragraph.")
            % {"path": path}
        )
    for i, segment in enumerate(segments):
        if segment.startswith("_"):
            raise PathError(
                _("“%(path)s” is not allowed: names starting with “_” are private.")
                % {"path": ".".join(segments[: i + 1])}
            )
    return segments


def _too_deep(path: str, name: str) -> PathError:
    return PathError(
        _("“%(path)s” is not valid: %(name)s has no parts to choose from.")
        % {"path": path, "name": name}
    )


def _validate_blocks(block: blocks.Block, segments: list[str], done: list[str]) -> None:
    """Check that ``segments`` name blocks or struct children below ``block``."""
    while segments:
        if isinstance(block, blocks.ListBlock):
            block = block.child_block
            continue
        name, segments = segments[0], segments[1:]
        parent = ".".join(done)
        done = [*done, name]
        if isinstance(block, blocks.BaseStreamBlock | blocks.BaseStructBlock):
            if name not in block.child_blocks:
                if isinstance(block, blocks.BaseStreamBlock):
                    message = _(
                        "“%(path)s” is not a block of %(parent)s; choose one of: %(choices)s."
                    )
                else:
                    message = _(
                        "“%(path)s” is not a part of %(parent)s; choose one of: %(choices)s."
                    )
                raise PathError(
                    message
                    % {
                        "path": ".".join(done),
                        "parent": parent,
                        "choices": ", ".join(block.child_blocks),
                    }
                )
            block = block.child_blocks[name]
        else:
            raise _too_deep(".".join(done), parent)


def _validate(model_class: type[models.Model], segments: list[str], done: list[str]) -> None:
    name, rest = segments[0], segments[1:]
    done = [*done, name]
    path = ".".join(done)
    field = _get_field(model_class, name, path)
    if not rest:
        return
    if isinstance(field, StreamField):
        _validate_blocks(field.stream_block, rest, done)
    elif field.many_to_one or field.one_to_one:
        _validate(field.related_model, rest, done)
    else:
        raise _too_deep(f"{path}.{rest[0]}", name)


def validate_source_path(model_class: type[models.Model], path: str) -> None:
    """Raise PathError unless ``path`` names readable content of ``model_class``."""
    _validate(model_class, _split_path(path), [])


def _block_paths(block: blocks.Block, depth: int = 0) -> Iterator[str]:
    if depth > _MAX_BLOCK_DEPTH:
        return
    if isinstance(block, blocks.ListBlock):
        yield from _block_paths(block.child_block, depth + 1)
    elif isinstance(block, blocks.BaseStreamBlock | blocks.BaseStructBlock):
        for name, child in block.child_blocks.items():
            yield name
            yield from (f"{name}.{sub}" for sub in _block_paths(child, depth + 1))


def describe_paths(model_class: type[models.Model]) -> list[str]:
    """Source paths of ``model_class`` worth offering, in field declaration order."""
    paths: list[str] = []
    for field in _source_fields(model_class, listed=True):
        paths.append(field.name)
        if isinstance(field, StreamField):
            paths.extend(f"{field.name}.{sub}" for sub in _block_paths(field.stream_block))
        elif field.many_to_one or field.one_to_one:
            paths.extend(
                f"{field.name}.{sub.name}"
                for sub in _source_fields(field.related_model, listed=True)
                if not sub.is_relation
            )
    return paths


# -- reading blocks --------------------------------------------------------------------------
#
# Every block reads as lines of plain text (see README, "Source paths"). A site says how its
# own block reads with a ``get_llm_text(value)`` method on the block class, or with the
# ``register_llm_block_readers`` hook for block classes it does not own. Any other block falls
# back to Wagtail's own ``get_searchable_content(value)``; an object's ``repr`` is never sent.

#: Hook name: ``@hooks.register(READER_HOOK) def f(readers): readers[BlockClass] = reader``,
#: where ``reader(block, value)`` returns a string, a list of strings or None.
READER_HOOK = "register_llm_block_readers"

BlockReader = Callable[[blocks.Block, Any], "str | Iterable[str] | None"]

#: Values of the ``BLOCKS`` setting: what a block (class, or child of a block class) is.
CONTENT = "content"
PRESENTATION = "presentation"

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
# Struct children with these names read without a label, like a struct's first child.
_HEADING_NAMES = frozenset({"title", "heading", "headline", "name"})


class _BlockFailed(Exception):
    """A block reader raised; carries where, so the message can name the block."""

    def __init__(self, path: list[str], block: blocks.Block, error: Exception) -> None:
        super().__init__(str(error))
        self.path = path
        self.block = block
        self.error = error


@dataclass(frozen=True)
class BlockMarks:
    """The ``BLOCKS`` setting, resolved: block classes and children of block classes marked
    as content (True) or presentation (False). ``problems`` lists entries that mark nothing."""

    classes: dict[type, bool]
    children: dict[tuple[type, str], bool]
    problems: tuple[str, ...] = ()

    def mark(self, block: blocks.Block, parent: blocks.Block | None, name: str) -> bool | None:
        """What the site says ``block`` is (the child ``name`` of ``parent``), if anything:
        the child's own entry first, then the block's class (the most specific wins)."""
        if parent is not None and self.children:
            for klass in type(parent).__mro__:
                found = self.children.get((klass, name))
                if found is not None:
                    return found
        if self.classes:
            for klass in type(block).__mro__:
                found = self.classes.get(klass)
                if found is not None:
                    return found
        return None


def resolve_block_marks(entries: Any) -> BlockMarks:
    """``BlockMarks`` for a ``BLOCKS`` setting: ``{"app.blocks.StatBlock": "content",
    "app.blocks.StatBlock.sr_only_label": "presentation"}``."""
    if not isinstance(entries, dict):
        return BlockMarks({}, {}, (_("it must be a dict of block paths"),))
    return _resolve_marks(tuple((str(k), str(v)) for k, v in entries.items()))


@functools.lru_cache(maxsize=16)
def _resolve_marks(entries: tuple[tuple[str, str], ...]) -> BlockMarks:
    classes: dict[type, bool] = {}
    children: dict[tuple[type, str], bool] = {}
    problems: list[str] = []
    for key, value in entries:
        if value not in (CONTENT, PRESENTATION):
            problems.append(
                _("“%(key)s”: “%(value)s” is neither “%(content)s” nor “%(presentation)s”")
                % {"key": key, "value": value, "content": CONTENT, "presentation": PRESENTATION}
            )
            continue
        is_content = value == CONTENT
        klass = _block_class(key)
        if klass is not None:
            classes[klass] = is_content
            continue
        head, _dot, child = key.rpartition(".")
        parent = _block_class(head) if head else None
        if parent is None:
            problems.append(_("“%(key)s” is not a block class or a child of one") % {"key": key})
        elif child not in (getattr(parent, "base_blocks", None) or {}):
            problems.append(
                _("“%(key)s”: %(parent)s has no child block “%(child)s”")
                % {"key": key, "parent": parent.__name__, "child": child}
            )
        else:
            children[(parent, child)] = is_content
    return BlockMarks(classes, children, tuple(problems))


def _block_class(path: str) -> type | None:
    try:
        found = import_string(path)
    except ImportError:
        return None
    return found if isinstance(found, type) and issubclass(found, blocks.Block) else None


@dataclass
class _Reading:
    """State of one extraction: the site's readers and block marks, the cache of embed
    titles."""

    readers: dict[type, BlockReader]
    embeds: dict[str, Any]
    marks: BlockMarks

    @classmethod
    def start(cls) -> _Reading:
        from wagtail import hooks

        readers: dict[type, BlockReader] = {}
        for register in hooks.get_hooks(READER_HOOK):
            register(readers)
        return cls(
            readers=readers, embeds={}, marks=resolve_block_marks(get_setting("BLOCKS") or {})
        )

    def reader_for(self, block: blocks.Block) -> BlockReader | None:
        method = getattr(block, "get_llm_text", None)
        if callable(method):
            return lambda _block, value: method(value)
        for klass in type(block).__mro__:
            if klass in self.readers:
                return self.readers[klass]
        return None


def _label(block: blocks.Block, name: str = "") -> str:
    """The block's label, as a reader sees it: "embed_block" → "Embed"; a label that is an
    example for editors ("e.g. Mary Berry") gives way to the name."""
    label = str(block.label or "")
    if not label or re.match(r"(?:e\.?g\.?|i\.?e\.?|ex\.?|for example)\b", label, re.I):
        label = name.replace("_", " ").strip().capitalize()
    words = label.split()
    if len(words) > 1 and words[-1].lower() == "block":
        label = " ".join(words[:-1])
    return label


def _is_heading_level(block: BaseChoiceBlock) -> bool:
    """A choice between HTML heading tags ("h2", "h3" …) is a presentation setting too."""
    codes = [str(key).lower() for key, _label in block.field.choices if key]
    return bool(codes) and all(re.fullmatch(r"h[1-6]", code) for code in codes)


def _labelled(label: str, text: str) -> str:
    text = " ".join(str(text).split())
    if not text:
        return ""
    return f"{label}: {text}" if label else text


def _lines_of(result: Any) -> list[str]:
    """A site reader's result as lines; anything but text is refused (no reprs)."""
    if result is None:
        return []
    if isinstance(result, str | Promise):
        return [str(result)]
    # A set has no stable order, so its text would differ between processes.
    if isinstance(result, Iterable) and not isinstance(result, bytes | dict | set | frozenset):
        items = list(result)
        if all(isinstance(item, str | Promise) for item in items):
            return [str(item) for item in items]
    raise TypeError(
        _("the reader returned %(type)s instead of text") % {"type": type(result).__name__}
    )


def _choice_labels(block: BaseChoiceBlock, values: list[Any]) -> list[str]:
    """Labels of ``values`` in the order of the block's choices (codes never leak)."""
    wanted = {str(v) for v in values if v not in (None, "")}
    labels: list[str] = []
    for key, label in block.field.choices:
        options = label if isinstance(label, list | tuple) else [(key, label)]
        for sub_key, sub_label in options:
            if str(sub_key) in wanted and str(sub_key) != "":
                labels.append(str(sub_label))
    return labels


def _chosen_title(obj: Any) -> str:
    """How a chosen page, document or snippet reads: its title, else its name, else str()."""
    for attr in ("title", "name"):
        value = getattr(obj, attr, None)
        if isinstance(value, str) and value.strip():
            return value
    return str(obj)


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


def _image_text(image: Any, *, contextual: bool) -> str:
    """``Image: <alt text>``: an ``ImageBlock``'s own alt text (``contextual``; nothing if
    marked decorative), else the image's description, else its title."""
    if image is None or (contextual and getattr(image, "decorative", False)):
        return ""
    text = (
        (getattr(image, "contextual_alt_text", None) if contextual else None)
        or getattr(image, "default_alt_text", None)
        or getattr(image, "title", "")
        or ""
    )
    return _labelled(_("Image"), text)


def _embed_text(value: Any, label: str, reading: _Reading) -> str:
    """``Label: <title> (<url>)`` from Wagtail's embed cache, else ``Label: <url>``."""
    url = getattr(value, "url", None) if not isinstance(value, str) else value
    if not url:
        return ""
    url = str(url)
    if url not in reading.embeds:
        reading.embeds[url] = _cached_embed_title(url)
    title = reading.embeds[url]
    return _labelled(label, f"{title} ({url})" if title else url)


def _cached_embed_title(url: str) -> str:
    """The title Wagtail cached for ``url`` when the page was edited (never fetched here)."""
    from django.apps import apps

    if not apps.is_installed("wagtail.embeds"):
        return ""
    from wagtail.embeds.models import Embed

    titles = (
        Embed.objects.filter(url=url)
        .exclude(title="")
        .order_by("-last_updated", "pk")
        .values_list("title", flat=True)
    )
    return " ".join((titles.first() or "").split())


def _cell_text(text: Any) -> str:
    text = "" if text is None else str(text)
    if "<" in text:
        text = html_to_text(text)
    return " ".join(text.split())


def _table_lines(caption: str, header: list[str] | None, rows: list[list[str]]) -> list[str]:
    lines = [_labelled(_("Table"), caption)] if caption else []
    if header and any(header):
        lines.append(_labelled(_("Columns"), " | ".join(header)))
    for row in rows:
        while row and not row[-1]:
            row = row[:-1]
        if row:
            lines.append(" | ".join(row))
    return lines


def _table_block_lines(value: Any) -> list[str]:
    """contrib ``TableBlock``: a dict with ``data`` rows and a header choice."""
    if not isinstance(value, dict):
        return []
    rows = [[_cell_text(cell) for cell in row or []] for row in value.get("data") or []]
    header_choice = value.get("table_header_choice") or (
        "row" if value.get("first_row_is_table_header") else ""
    )
    header = None
    if rows and header_choice in ("row", "both"):
        header, rows = rows[0], rows[1:]
    return _table_lines(_cell_text(value.get("table_caption")), header, rows)


def _typed_table_lines(block: Any, value: Any, reading: _Reading, path: list[str]) -> list[str]:
    """contrib ``TypedTableBlock``: caption, column headings, one line per row."""
    if value is None:
        return []
    columns = list(value.columns)
    header = [_cell_text(column.get("heading")) for column in columns]
    rows = []
    for row in value.row_data:
        cells = []
        for column, cell in zip(columns, row["values"], strict=False):
            lines = _read_block(column["block"], cell, reading, path, label="")
            cells.append(" ".join(" ".join(lines).split()))
        rows.append(cells)
    return _table_lines(_cell_text(value.caption), header, rows)


def _fallback_lines(block: blocks.Block, value: Any) -> list[str]:
    """A block this module does not know: Wagtail's search text, or a plain string value."""
    content = block.get_searchable_content(value) or []
    if isinstance(content, set | frozenset):
        content = sorted(content, key=str)
    items = [
        str(item)
        for item in content
        if isinstance(item, str | Promise | int | float | Decimal) and not isinstance(item, bool)
    ]
    if not items and isinstance(value, str):
        items = [value]
    return [html_to_text(item) if re.search(r"<[a-zA-Z/!]", item) else item for item in items]


def _struct_value(block: blocks.BaseStructBlock, value: Any) -> Any:
    """``value`` as a mapping of child names (an ``ImageBlock`` value is an Image)."""
    if hasattr(value, "get"):
        return value
    ImageBlock = _contrib_blocks()[3]

    if isinstance(block, ImageBlock):
        return {
            "image": value,
            "decorative": getattr(value, "decorative", False),
            "alt_text": getattr(value, "contextual_alt_text", ""),
        }
    raise TypeError(
        _("a %(type)s value is not a set of named parts") % {"type": type(value).__name__}
    )


def _struct_lines(
    block: blocks.BaseStructBlock,
    value: Any,
    reading: _Reading,
    path: list[str],
    content: bool | None,
) -> list[str]:
    value = _struct_value(block, value)
    lines: list[str] = []
    for index, (name, child) in enumerate(block.child_blocks.items()):
        unlabelled = index == 0 or name in _HEADING_NAMES
        lines.extend(
            _read_block(
                child,
                value.get(name),
                reading,
                [*path, name],
                label=_label(child, name),
                prose_label=not unlabelled,
                parent=block,
                content=content,
            )
        )
    return lines


class _Absent:
    """Stands for a block class whose app the site does not install (nothing is one)."""


@functools.cache
def _contrib_blocks() -> tuple[type, type, type, type, type]:
    """TableBlock, BaseTypedTableBlock, EmbedBlock, ImageBlock, ImageChooserBlock; a class
    whose app is not installed is ``_Absent`` (importing embeds' or images' blocks would load
    models of an app the site does not have)."""
    from django.apps import apps
    from wagtail.contrib.table_block.blocks import TableBlock
    from wagtail.contrib.typed_table_block.blocks import BaseTypedTableBlock

    embed_block: type = _Absent
    image_block: type = _Absent
    image_chooser_block: type = _Absent
    if apps.is_installed("wagtail.embeds"):
        from wagtail.embeds.blocks import EmbedBlock

        embed_block = EmbedBlock
    if apps.is_installed("wagtail.images"):
        from wagtail.images.blocks import ImageBlock, ImageChooserBlock

        image_block, image_chooser_block = ImageBlock, ImageChooserBlock
    return TableBlock, BaseTypedTableBlock, embed_block, image_block, image_chooser_block


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


def _stream_children(block: blocks.BaseStreamBlock, value: Any, path: list[str]) -> Iterator[Any]:
    """The children of a stream value; stored data that its block cannot load (a custom
    block's ``to_python`` raising) fails naming that child's type."""
    if not hasattr(value, "raw_data"):
        yield from value
        return
    for index in range(len(value)):
        try:
            child = value[index]  # converts the stored data of this block type
        except Exception as e:  # noqa: BLE001
            try:
                type_name = str(value.raw_data[index]["type"])
            except Exception:  # noqa: BLE001
                type_name = ""
            child_block = block.child_blocks.get(type_name, block)
            raise _BlockFailed([*path, type_name] if type_name else path, child_block, e) from e
        yield child


def _read_block(
    block: blocks.Block,
    value: Any,
    reading: _Reading,
    path: list[str],
    *,
    label: str,
    prose_label: bool = False,
    parent: blocks.Block | None = None,
    content: bool | None = None,
) -> list[str]:
    """Lines of text of one block value; ``label`` names facts (numbers, choices, links…).

    ``prose_label`` also labels short text (a struct's "caption" or "attribution").
    ``parent`` is the struct or stream block holding this one as its child ``path[-1]``
    (None for a list item) and ``content`` whether a block around it is marked as content.
    Errors come out as ``_BlockFailed`` naming the innermost block that failed.
    """
    try:
        return _read_block_unguarded(
            block, value, reading, path, label, prose_label, parent, content
        )
    except _BlockFailed:
        raise
    except Exception as e:  # a site's block or reader can raise anything  # noqa: BLE001
        raise _BlockFailed(path, block, e) from e


def _site_mark(
    reading: _Reading, block: blocks.Block, parent: blocks.Block | None, path: list[str]
) -> bool | None:
    marks = reading.marks
    if not (marks.classes or marks.children):
        return None
    return marks.mark(block, parent, path[-1] if path else "")


def _own_mark(block: blocks.Block, site: bool | None) -> bool | None:
    """What ``block`` is marked as: by the site (``BLOCKS``), else by its own metadata."""
    if site is not None:
        return site
    own = getattr(block.meta, "llm_content", None)
    return None if own is None else bool(own)


def _content_state(
    reading: _Reading,
    block: blocks.Block,
    parent: blocks.Block | None,
    path: list[str],
    content: bool | None,
) -> bool | None:
    """False if ``block`` is presentation (marked so: left out with all it holds); True if
    it, or a block around it, is marked as content; None if nothing says."""
    own = _own_mark(block, _site_mark(reading, block, parent, path))
    if own is False:
        return False
    return True if own or content else None


def _read_block_unguarded(  # noqa: C901 - one branch per block family, kept side by side
    block: blocks.Block,
    value: Any,
    reading: _Reading,
    path: list[str],
    label: str,
    prose_label: bool,
    parent: blocks.Block | None,
    content: bool | None,
) -> list[str]:
    TableBlock, BaseTypedTableBlock, EmbedBlock, ImageBlock, ImageChooserBlock = _contrib_blocks()
    if value is None:
        return []
    # The site's word (BLOCKS) first, then a reader, then the block's own metadata.
    site = _site_mark(reading, block, parent, path)
    if site is False:
        return []
    reader = reading.reader_for(block)
    if reader is not None:
        return _lines_of(reader(block, value))
    own = _own_mark(block, site)
    if own is False:
        return []
    content = True if own or content else None
    if isinstance(block, blocks.BaseStreamBlock):
        lines = []
        for child in _stream_children(block, value, path):
            lines.append(
                "\n".join(
                    _read_block(
                        child.block,
                        child.value,
                        reading,
                        [*path, child.block_type],
                        label=_label(child.block, child.block_type),
                        parent=block,
                        content=content,
                    )
                )
            )
        return lines
    if isinstance(block, ImageBlock):
        return [_image_text(value, contextual=True)]
    if isinstance(block, blocks.BaseStructBlock):
        return _struct_lines(block, value, reading, path, content)
    if isinstance(block, blocks.ListBlock):
        child_label = block.child_block.label or label
        return [
            line
            for item in value
            for line in _read_block(
                block.child_block, item, reading, path, label=child_label, content=content
            )
        ]
    if isinstance(block, blocks.StaticBlock):
        return []
    if isinstance(block, TableBlock):
        return _table_block_lines(value)
    if isinstance(block, BaseTypedTableBlock):
        return _typed_table_lines(block, value, reading, path)
    if isinstance(block, EmbedBlock):
        return [_embed_text(value, label or _("Embed"), reading)]
    if isinstance(block, blocks.RichTextBlock | blocks.RawHTMLBlock):
        return [html_to_text(value.source if isinstance(value, RichText) else str(value))]
    if isinstance(block, BaseChoiceBlock):
        # A switch unless marked as content; a block around it marked as content does not
        # make a choice of heading tags (h2, h3…) content.
        if not (own or (content and not _is_heading_level(block))):
            return []
        values = value if isinstance(value, list | tuple) else [value]
        return [_labelled(label, ", ".join(_choice_labels(block, list(values))))]
    if isinstance(block, blocks.BooleanBlock):
        if not content or not isinstance(value, bool):
            return []
        return [_labelled(label, _("yes") if value else _("no"))]
    if isinstance(block, ImageChooserBlock):
        return [_image_text(value, contextual=False)]
    if isinstance(block, blocks.ChooserBlock):
        if _is_snippet_chooser(block):
            return [_snippet_text(value, label)]
        return [_labelled(label, _chosen_title(value))]
    if isinstance(block, blocks.DateTimeBlock):
        if timezone.is_aware(value):
            value = timezone.localtime(value)
        return [_labelled(label, value.strftime("%Y-%m-%d %H:%M"))]
    if isinstance(block, blocks.DateBlock):
        return [_labelled(label, value.isoformat())]
    if isinstance(block, blocks.TimeBlock):
        return [_labelled(label, value.strftime("%H:%M"))]
    if isinstance(
        block,
        blocks.IntegerBlock
        | blocks.FloatBlock
        | blocks.DecimalBlock
        | blocks.EmailBlock
        | blocks.URLBlock,
    ):
        return [_labelled(label, str(value))]
    if isinstance(block, blocks.CharBlock | blocks.TextBlock | blocks.RegexBlock):
        text = str(value)
        short = isinstance(block, blocks.CharBlock | blocks.RegexBlock)
        return [_labelled(label, text) if prose_label and short else text]
    lines = _fallback_lines(block, value)
    if prose_label and len(lines) == 1:
        return [_labelled(label, lines[0])]
    return lines


def _extraction_error(field: str, failure: _BlockFailed) -> ExtractionError:
    """The readable error for a block reader that raised, naming the block."""
    block_path = ".".join(failure.path[1:]) or failure.path[0]
    error = str(failure.error).strip() or type(failure.error).__name__
    return ExtractionError(
        _("Could not read block “%(block)s” (%(type)s) in %(field)s: %(error)s")
        % {
            "block": block_path,
            "type": type(failure.block).__name__,
            "field": field,
            "error": error,
        }
    )


# -- extraction ------------------------------------------------------------------------------


def _value_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, RichText):
        return html_to_text(value.source)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def _block_chunks(
    block: blocks.Block,
    value: Any,
    segments: list[str],
    reading: _Reading,
    path: list[str],
    parent: blocks.Block | None = None,
    content: bool | None = None,
) -> list[str]:
    """Texts of the blocks ``segments`` select below ``block``, one per selected block
    (``parent`` and ``content`` as for :func:`_read_block`)."""
    if value is None:
        return []
    if segments or isinstance(block, blocks.BaseStreamBlock):
        state = _content_state(reading, block, parent, path, content)
        if state is False:  # a part of a block marked as presentation is presentation too
            return []
    else:
        return [
            _join_lines(
                _read_block(block, value, reading, path, label="", parent=parent, content=content)
            )
        ]
    if isinstance(block, blocks.BaseStreamBlock) and not segments:
        # one chunk per top-level block: labels name facts (numbers, choices, links…)
        return [
            _join_lines(
                _read_block(
                    child.block,
                    child.value,
                    reading,
                    [*path, child.block_type],
                    label=_label(child.block, child.block_type),
                    parent=block,
                    content=state,
                )
            )
            for child in _stream_children(block, value, path)
        ]
    if isinstance(block, blocks.ListBlock):
        return [
            chunk
            for item in value
            for chunk in _block_chunks(
                block.child_block, item, segments, reading, path, None, state
            )
        ]
    if isinstance(block, blocks.BaseStreamBlock):
        return [
            chunk
            # iterating converts raw (revision) data to block values
            for child in _stream_children(block, value, path)
            if child.block_type == segments[0]
            for chunk in _block_chunks(
                child.block,
                child.value,
                segments[1:],
                reading,
                [*path, child.block_type],
                block,
                state,
            )
        ]
    if isinstance(block, blocks.BaseStructBlock):
        name = segments[0]
        try:
            struct = _struct_value(block, value)
        except Exception as e:  # noqa: BLE001
            raise _BlockFailed(path, block, e) from e
        return _block_chunks(
            block.child_blocks[name],
            struct.get(name),
            segments[1:],
            reading,
            [*path, name],
            block,
            state,
        )
    return [_join_lines(_read_block(block, value, reading, path, label="", parent=parent))]


def tag_names(obj: models.Model, name: str) -> list[str]:
    """Names of the tags in a tag manager, sorted so the text does not depend on the database."""
    return sorted((tag.name for tag in getattr(obj, name).all()), key=lambda n: (n.lower(), n))


def _field_chunks(obj: models.Model, segments: list[str], reading: _Reading) -> list[str]:
    name, rest = segments[0], segments[1:]
    field = obj._meta.get_field(name)
    if isinstance(field, TaggableManager):
        return [", ".join(tag_names(obj, name))]
    if isinstance(field, StreamField):
        try:
            stream = getattr(obj, name)
        except Exception as e:  # stored data the block definitions cannot load  # noqa: BLE001
            raise _BlockFailed([name], field.stream_block, e) from e
        return _block_chunks(field.stream_block, stream, rest, reading, [name])
    if field.many_to_many:
        try:
            return [", ".join(str(item) for item in getattr(obj, name).all())]
        except ValueError:  # an unsaved object has no many-to-many rows yet
            return []
    if field.is_relation:
        try:
            related = getattr(obj, name)
        except ObjectDoesNotExist:
            related = None
        if related is None:
            return []
        return _field_chunks(related, rest, reading) if rest else [str(related)]
    value = field.value_from_object(obj)
    if isinstance(field, RichTextField):
        return [html_to_text(value or "")]
    if field.choices and value is not None:
        value = dict(field.flatchoices).get(value, value)
    return [_value_text(value)]


def extract_text(obj: models.Model, path: str, max_chars: int | None = None) -> Extracted:
    """Plain text of ``path`` on ``obj``; blocks are separated by a blank line.

    Works on unsaved objects and on objects built from revisions. Raises PathError for a
    path that ``validate_source_path`` would refuse, and ``ExtractionError`` (naming the
    block) when a block cannot be read. The text is read in the site's ``LANGUAGE_CODE``
    whatever language the request uses, so it (and its hash) is the same in every process.
    """
    validate_source_path(type(obj), path)
    segments = _split_path(path)
    try:
        with translation.override(settings.LANGUAGE_CODE):
            raw = _field_chunks(obj, segments, _Reading.start())
    except _BlockFailed as failure:
        raise _extraction_error(segments[0], failure) from failure.error
    chunks = (_normalise(chunk) for chunk in raw)
    text = "\n\n".join(chunk for chunk in chunks if chunk)
    original_length = len(text)
    if max_chars is not None and original_length > max_chars:
        return Extracted(_truncate(text, max_chars), True, original_length)
    return Extracted(text, False, original_length)


# -- target fields ---------------------------------------------------------------------------


def _mode_label(mode: str) -> str:
    return {TEXT: _("Plain text"), TAGS: _("Tag list"), RICH_TEXT: _("Rich text")}[mode]


def get_target_field(model_class: type[models.Model], name: str) -> Any:
    """The model field called ``name`` (a single name, not a path), or PathError."""
    return _lookup_target(model_class, name, None)


def _lookup_target(model_class: type[models.Model], name: str, output_mode: str | None) -> Any:
    name = (name or "").strip()
    if not name:
        raise PathError(_("Enter the name of a field to write to."))
    if "." in name:
        raise PathError(
            _("“%(name)s” is a path; choose a single field: %(choices)s.")
            % {"name": name, "choices": ", ".join(_target_names(model_class, output_mode)) or "-"}
        )
    if name.startswith("_"):
        raise PathError(
            _("“%(path)s” is not allowed: names starting with “_” are private.") % {"path": name}
        )
    try:
        field = model_class._meta.get_field(name)
    except FieldDoesNotExist:
        field = None
    if field is None or not (
        getattr(field, "concrete", False) or isinstance(field, TaggableManager)
    ):
        raise PathError(
            _("“%(name)s” is not a field of %(model)s; choose one of: %(choices)s.")
            % {
                "name": name,
                "model": _verbose_name(model_class),
                "choices": ", ".join(_target_names(model_class, output_mode)) or "-",
            }
        )
    return field


def _target_problem(field: Any, output_mode: str) -> str | None:
    """Why ``field`` cannot receive an answer in ``output_mode``, or None if it can."""
    name = field.name
    params = {"name": name, "mode": _mode_label(output_mode)}
    if isinstance(field, TaggableManager):
        if output_mode != TAGS:
            return _("“%(name)s” holds tags; choose the “%(tags)s” output mode to write to it.") % {
                **params,
                "tags": _mode_label(TAGS),
            }
        return None
    if getattr(field, "primary_key", False):
        return _("“%(name)s” identifies the object and cannot be changed.") % params
    if _is_page_internal(field, PAGE_TARGET_FIELDS):
        return _("“%(name)s” is managed by Wagtail and cannot receive generated text.") % params
    if not field.editable:
        return _("“%(name)s” cannot be edited, so generated text cannot be written to it.") % params
    if isinstance(field, StreamField):
        return (
            _(
                "“%(name)s” is a StreamField; generated text can only be written to a text, rich "
                "text or tag field."
            )
            % params
        )
    if field.is_relation:
        return _("“%(name)s” links to other objects and cannot hold generated text.") % params
    if isinstance(field, RichTextField):
        if output_mode == TAGS:
            return (
                _(
                    "“%(name)s” is a rich text field; the “%(mode)s” output mode needs a tag field "
                    "or a plain text field."
                )
                % params
            )
        return None
    if isinstance(field, models.CharField | models.TextField) and not isinstance(
        field, _FORMATTED_CHAR_FIELDS
    ):
        if field.choices:
            return _("“%(name)s” only accepts a fixed set of choices.") % params
        if output_mode == RICH_TEXT:
            return (
                _(
                    "“%(name)s” is a plain text field; the “%(mode)s” output mode needs a "
                    "rich text field."
                )
                % params
            )
        return None
    kind = field.description % field.__dict__
    return _(
        "“%(name)s” (%(kind)s) cannot hold generated text; choose a text, rich text or tag field."
    ) % {**params, "kind": kind}


def _target_names(model_class: type[models.Model], output_mode: str | None = None) -> list[str]:
    """Fields that can receive an answer, in any mode or in ``output_mode``."""
    modes = [output_mode] if output_mode else list(OUTPUT_MODES)
    return [
        field.name
        for field in model_class._meta.get_fields()
        if (getattr(field, "concrete", False) or isinstance(field, TaggableManager))
        and any(_target_problem(field, mode) is None for mode in modes)
    ]


def describe_targets(model_class: type[models.Model]) -> list[tuple[str, str]]:
    """Fields of ``model_class`` that can receive an answer, with the modes each accepts."""
    result = []
    for field in model_class._meta.get_fields():
        if not (getattr(field, "concrete", False) or isinstance(field, TaggableManager)):
            continue
        modes = [mode for mode in OUTPUT_MODES if _target_problem(field, mode) is None]
        if modes:
            label = str(getattr(field, "verbose_name", field.name)).capitalize()
            kinds = ", ".join(str(_mode_label(mode)).lower() for mode in modes)
            result.append((field.name, f"{label} ({kinds})"))
    return result


def validate_target_field(model_class: type[models.Model], name: str, output_mode: str) -> None:
    """Raise PathError unless the field ``name`` can receive an answer in ``output_mode``."""
    if output_mode not in OUTPUT_MODES:
        raise PathError(
            _("“%(mode)s” is not an output mode; choose one of: %(choices)s.")
            % {"mode": output_mode, "choices": ", ".join(OUTPUT_MODES)}
        )
    field = _lookup_target(model_class, name, output_mode)
    problem = _target_problem(field, output_mode)
    if problem:
        raise PathError(problem)
