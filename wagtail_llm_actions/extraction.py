"""Turn dotted, StreamField-aware paths such as ``body.section.text`` into plain text.

::

    extract_text(page, "body").text            # the whole stream, one block per paragraph
    extract_text(page, "body.paragraph").text  # only the paragraph blocks
    extract_text(page, "author.name").text     # an attribute of a related object
    validate_source_path(BlogPage, "body.section.points")
    validate_target_field(BlogPage, "summary", "text")

Paths only ever name model fields and block names: no methods are called and no private
attribute is read, so a path written in the admin cannot reach anything else.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist
from django.db import models
from django.utils.translation import gettext as _
from taggit.managers import TaggableManager
from wagtail import blocks
from wagtail.fields import RichTextField, StreamField
from wagtail.rich_text import RichText

__all__ = [
    "Extracted",
    "PathError",
    "describe_paths",
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
    SKIP_TAGS = frozenset({"script", "style", "template", "noscript", "head"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP_TAGS:
            self.skipping += 1
        elif tag == "br" or tag in self.BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP_TAGS:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCK_TAGS:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            # Line breaks in HTML source are just spaces; only elements break lines.
            self.parts.append(re.sub(r"\s+", " ", data))


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


# -- extraction ------------------------------------------------------------------------------


def _value_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, RichText):
        return html_to_text(value.source)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def _block_text(block: blocks.Block, value: Any) -> str:
    """Text of one block value, its parts on their own lines, without HTML."""
    if value is None:
        return ""
    if isinstance(block, blocks.BaseStreamBlock):
        return _join_lines(_block_text(child.block, child.value) for child in value)
    if isinstance(block, blocks.BaseStructBlock):
        return _join_lines(
            _block_text(child, value.get(name)) for name, child in block.child_blocks.items()
        )
    if isinstance(block, blocks.ListBlock):
        return _join_lines(_block_text(block.child_block, item) for item in value)
    if isinstance(block, blocks.StaticBlock):
        return ""
    if isinstance(block, blocks.RichTextBlock | blocks.RawHTMLBlock):
        return html_to_text(value.source if isinstance(value, RichText) else str(value))
    return _join_lines([_value_text(value)])


def _block_chunks(block: blocks.Block, value: Any, segments: list[str]) -> list[str]:
    """Texts of the blocks ``segments`` select below ``block``, one per selected block."""
    if value is None:
        return []
    if isinstance(block, blocks.ListBlock) and segments:
        return [
            chunk for item in value for chunk in _block_chunks(block.child_block, item, segments)
        ]
    if isinstance(block, blocks.BaseStreamBlock):
        if not segments:
            return [_block_text(child.block, child.value) for child in value]
        return [
            chunk
            for child in value  # iterating converts raw (revision) data to block values
            if child.block_type == segments[0]
            for chunk in _block_chunks(child.block, child.value, segments[1:])
        ]
    if isinstance(block, blocks.BaseStructBlock) and segments:
        name = segments[0]
        return _block_chunks(block.child_blocks[name], value.get(name), segments[1:])
    return [_block_text(block, value)]


def tag_names(obj: models.Model, name: str) -> list[str]:
    """Names of the tags in a tag manager, sorted so the text does not depend on the database."""
    return sorted((tag.name for tag in getattr(obj, name).all()), key=lambda n: (n.lower(), n))


def _field_chunks(obj: models.Model, segments: list[str]) -> list[str]:
    name, rest = segments[0], segments[1:]
    field = obj._meta.get_field(name)
    if isinstance(field, TaggableManager):
        return [", ".join(tag_names(obj, name))]
    if isinstance(field, StreamField):
        return _block_chunks(field.stream_block, getattr(obj, name), rest)
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
        return _field_chunks(related, rest) if rest else [str(related)]
    value = field.value_from_object(obj)
    if isinstance(field, RichTextField):
        return [html_to_text(value or "")]
    if field.choices and value is not None:
        value = dict(field.flatchoices).get(value, value)
    return [_value_text(value)]


def extract_text(obj: models.Model, path: str, max_chars: int | None = None) -> Extracted:
    """Plain text of ``path`` on ``obj``; blocks are separated by a blank line.

    Works on unsaved objects and on objects built from revisions. Raises PathError for a
    path that ``validate_source_path`` would refuse.
    """
    validate_source_path(type(obj), path)
    chunks = (_normalise(chunk) for chunk in _field_chunks(obj, _split_path(path)))
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
