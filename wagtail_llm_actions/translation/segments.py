"""A page's translatable texts, each with a stable path.

Read from the stored (JSON) form of the page's values, so that every id, choice, number,
URL, image, document and embed is carried over untouched by :mod:`.apply`. A segment is a
``CharField``/``TextField`` or ``RichTextField`` of the page, or a text inside a StreamField:
``CharBlock``/``TextBlock`` (quotes included), ``RichTextBlock``, struct children, list items,
nested streams, ``TableBlock`` cells and caption, ``TypedTableBlock`` headings, caption and
cells. Paths name blocks by their ids (``body/<id>/instructions``, ``body/<id>/<item id>``,
``body/<id>/data/2/1``), so they stay stable when blocks are added or moved.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import models
from wagtail import blocks
from wagtail.fields import RichTextField, StreamField
from wagtail.models import Page

#: Page's own fields that are content (the rest of Page is structure: slug, paths, dates…).
PAGE_FIELDS = ("title", "seo_title", "search_description")
#: Text fields that hold identifiers, not prose.
NOT_PROSE = (models.SlugField, models.URLField, models.EmailField, models.GenericIPAddressField)

TEXT, RICH, PAGE = "text", "rich", "page"


@dataclass
class Slot:
    """A place in a page's stored values: its path, its kind and how to read or set it."""

    path: str
    kind: str  # TEXT, RICH or PAGE (a page chooser: retargeted, never translated)
    container: Any
    key: Any

    @property
    def value(self) -> Any:
        return self.container[self.key]

    def set(self, value: Any) -> None:
        self.container[self.key] = value


@dataclass(frozen=True)
class Segment:
    path: str
    kind: str
    source: str


def translatable_fields(model: type) -> list[tuple[str, str]]:
    """``(field name, kind)`` of the model's translatable fields: ``text``, ``rich`` or
    ``stream``."""
    found = []
    is_page = issubclass(model, Page)
    for f in model._meta.concrete_fields:
        if is_page and f.model is Page and f.name not in PAGE_FIELDS:
            continue
        if not f.editable or f.primary_key or f.choices or isinstance(f, NOT_PROSE):
            continue
        if isinstance(f, StreamField):
            found.append((f.name, "stream"))
        elif isinstance(f, RichTextField):
            found.append((f.name, RICH))
        elif isinstance(f, models.CharField | models.TextField):
            found.append((f.name, TEXT))
    return found


def stored_values(obj: Any) -> dict[str, Any]:
    """The translatable fields' stored values (a StreamField as its JSON list), copied."""
    values = {}
    for name, kind in translatable_fields(type(obj)):
        value = getattr(obj, name)
        if kind == "stream":
            field = obj._meta.get_field(name)
            value = copy.deepcopy(list(field.get_prep_value(value) or []))
        values[name] = value if value is not None else ""
    return values


def slots(obj: Any, values: dict[str, Any]) -> Iterator[Slot]:
    """Every text and page-chooser slot of ``values`` (as :func:`stored_values` gives)."""
    for name, kind in translatable_fields(type(obj)):
        if kind == "stream":
            block = obj._meta.get_field(name).stream_block
            yield from _stream(block, values[name], name)
        else:
            yield Slot(name, kind, values, name)


def segments(obj: Any, values: dict[str, Any] | None = None) -> list[Segment]:
    """The texts of ``obj`` to translate (empty ones left out), in page order."""
    values = stored_values(obj) if values is None else values
    return [
        Segment(slot.path, slot.kind, slot.value)
        for slot in slots(obj, values)
        if slot.kind != PAGE and isinstance(slot.value, str) and _has_text(slot)
    ]


def _has_text(slot: Slot) -> bool:
    if slot.kind == RICH:
        from .markup import has_text, protect

        return has_text(protect(slot.value))
    return bool(slot.value.strip())


def _stream(block: blocks.Block, items: list, path: str) -> Iterator[Slot]:
    for index, item in enumerate(items or []):
        if not isinstance(item, dict) or item.get("type") not in block.child_blocks:
            continue
        child = block.child_blocks[item["type"]]
        yield from _block(child, item, "value", f"{path}/{item.get('id') or index}")


def _block(block: blocks.Block, container: Any, key: Any, path: str) -> Iterator[Slot]:
    value = container[key]
    reader = _reader(block)
    if reader is not None:
        yield from reader(block, container, key, path)
    elif isinstance(value, str) and isinstance(block, blocks.RichTextBlock):
        yield Slot(path, RICH, container, key)
    elif isinstance(value, str) and isinstance(block, blocks.CharBlock | blocks.TextBlock):
        yield Slot(path, TEXT, container, key)
    elif isinstance(block, blocks.PageChooserBlock) and value:
        yield Slot(path, PAGE, container, key)


def _reader(block: blocks.Block) -> Callable | None:
    from wagtail.contrib.table_block.blocks import TableBlock
    from wagtail.contrib.typed_table_block.blocks import TypedTableBlock

    if isinstance(block, TypedTableBlock):
        return _typed_table
    if isinstance(block, TableBlock):
        return _table
    if isinstance(block, blocks.BaseStreamBlock):
        return lambda b, c, k, p: _stream(b, c[k], p)
    if isinstance(block, blocks.ListBlock):
        return _list
    if isinstance(block, blocks.BaseStructBlock):
        return _struct
    return None


def _struct(block, container, key, path) -> Iterator[Slot]:
    value = container[key]
    if not isinstance(value, dict):
        return
    for name, child in block.child_blocks.items():
        if name in value:
            yield from _block(child, value, name, f"{path}/{name}")


def _list(block, container, key, path) -> Iterator[Slot]:
    for index, item in enumerate(container[key] or []):
        if isinstance(item, dict) and item.get("type") == "item" and "value" in item:
            yield from _block(block.child_block, item, "value", f"{path}/{item.get('id') or index}")
        else:
            yield from _block(block.child_block, container[key], index, f"{path}/{index}")


def _table(block, container, key, path) -> Iterator[Slot]:
    value = container[key]
    if not isinstance(value, dict):
        return
    if isinstance(value.get("table_caption"), str):
        yield Slot(f"{path}/caption", TEXT, value, "table_caption")
    for r, row in enumerate(value.get("data") or []):
        for c, cell in enumerate(row or []):
            if isinstance(cell, str):
                yield Slot(f"{path}/data/{r}/{c}", TEXT, row, c)


def _typed_table(block, container, key, path) -> Iterator[Slot]:
    value = container[key]
    if not isinstance(value, dict):
        return
    if isinstance(value.get("caption"), str):
        yield Slot(f"{path}/caption", TEXT, value, "caption")
    columns = value.get("columns") or []
    for c, column in enumerate(columns):
        if isinstance(column.get("heading"), str):
            yield Slot(f"{path}/columns/{c}", TEXT, column, "heading")
    for r, row in enumerate(value.get("rows") or []):
        cells = row.get("values") or []
        for c, column in enumerate(columns):
            child = block.child_blocks.get(column.get("type"))
            if child is not None and c < len(cells):
                yield from _block(child, cells, c, f"{path}/rows/{r}/{c}")
