"""Extraction: the text of a path on an object (fields, tags, relations, StreamFields)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import models
from django.utils import translation
from taggit.managers import TaggableManager
from wagtail.fields import RichTextField, StreamField
from wagtail.rich_text import RichText

from .paths import _split_path, validate_source_path
from .readers import _block_chunks, _BlockFailed, _extraction_error, _Reading
from .text import _normalise, _truncate, html_to_text


@dataclass(frozen=True)
class Extracted:
    """Text read from an object; ``original_length`` is the length before any cut."""

    text: str
    truncated: bool
    original_length: int


def _value_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, RichText):
        return html_to_text(value.source)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


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
