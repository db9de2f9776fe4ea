"""The image blocks (Wagtail's ``ImageBlock``) of a StreamField, read from its stored JSON.

An action writing alt text finds each image block (at the top level or inside struct, list
and stream blocks), the text around it, and later patches only those blocks' ``alt_text`` in
the stored JSON, so every other block of the field stays exactly as stored::

    spots = find_spots(BlogPage.body.field.stream_block, data)   # data: the stored JSON
    patch(data, {spot.key: "A heron on a post"})

A spot's ``key`` is the id of the stream or list item that holds it, then the child names
inside it (``"3f1…"`` or ``"3f1…/figure/image"``): stable across revisions, so an answer
computed on one revision lands on the same block of a newer one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from wagtail import blocks
from wagtail.fields import StreamField

from .values import _contrib_blocks

#: Characters of text taken from each side of an image.
CONTEXT_CHARS = 800
#: How many blocks away from an image its context is looked for.
NEIGHBOURS = 4


@dataclass
class Spot:
    """One image block: where it is, which image, its alt text now."""

    key: str
    image_id: int | None
    alt_text: str
    decorative: bool
    #: The top-level item it sits in (for the text around it).
    index: int
    #: The text before and after it in the field (filled by :func:`with_context`).
    context: str = ""
    #: The image object, once loaded by the run.
    image: Any = None

    @property
    def needs_alt_text(self) -> bool:
        """An image, not decorative, with no alt text yet."""
        return self.image_id is not None and not self.decorative and not self.alt_text.strip()


def _image_block_class() -> type:
    return _contrib_blocks()[3]


def _holds(block: blocks.Block, image_block: type, depth: int = 0) -> bool:
    if isinstance(block, image_block):
        return True
    if depth > 20:
        return False
    if isinstance(block, blocks.BaseStreamBlock | blocks.BaseStructBlock):
        return any(_holds(child, image_block, depth + 1) for child in block.child_blocks.values())
    if isinstance(block, blocks.ListBlock):
        return _holds(block.child_block, image_block, depth + 1)
    return False


def holds_image_blocks(model: type, name: str) -> bool:
    """Whether ``model``'s field ``name`` is a StreamField that can hold an image block."""
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        return False
    if not isinstance(field, StreamField):
        return False
    return _holds(field.stream_block, _image_block_class())


def find_spots(stream_block: blocks.BaseStreamBlock, data: list) -> list[Spot]:
    """Every image block in ``data`` (a StreamField's stored JSON), in reading order."""
    image_block = _image_block_class()
    return [spot for _raw, spot in _walk_stream(stream_block, data, image_block, None, "")]


def patch(stream_block: blocks.BaseStreamBlock, data: list, answers: dict[str, str]) -> dict:
    """Set the alt text of the image blocks named in ``answers`` (key: alt text) in ``data``,
    in place; decorative blocks are left alone. Returns ``{key: alt text before}`` of the
    blocks written (a key no longer in ``data``, its block deleted since, is skipped)."""
    image_block = _image_block_class()
    before = {}
    for raw, spot in _walk_stream(stream_block, data, image_block, None, ""):
        if spot.key in answers and not spot.decorative:
            before[spot.key] = spot.alt_text
            raw["alt_text"] = answers[spot.key]
    return before


def with_context(
    stream_block: blocks.BaseStreamBlock, data: list, spots: list[Spot], read: Any
) -> None:
    """Fill each spot's ``context``: the two nearest blocks of text before the image (a
    heading and a paragraph, say) and the nearest after it, other images skipped
    (``read(block, value)`` reads one block as text)."""
    texts: dict[int, str] = {}

    def text_at(index: int) -> str:
        if index not in texts:
            item = data[index] if 0 <= index < len(data) else None
            block = (
                stream_block.child_blocks.get(item.get("type")) if isinstance(item, dict) else None
            )
            texts[index] = ""
            if block is not None and not _holds(block, _image_block_class()):
                try:
                    texts[index] = read(block, block.to_python(item.get("value"))).strip()
                except Exception:  # noqa: BLE001 - a block that cannot be read gives no context
                    texts[index] = ""
        return texts[index]

    for spot in spots:
        # The nearest texts around it, past other images (up to NEIGHBOURS blocks away).
        behind = range(spot.index - 1, max(-1, spot.index - 1 - NEIGHBOURS), -1)
        before = [t for t in (text_at(i) for i in behind) if t][:2][::-1]
        ahead = range(spot.index + 1, min(len(data), spot.index + 1 + NEIGHBOURS))
        after = next((t for t in (text_at(i) for i in ahead) if t), "")
        parts = []
        if before:
            parts.append("Before the image:\n" + "\n".join(before)[-CONTEXT_CHARS:])
        if after:
            parts.append("After the image:\n" + after[:CONTEXT_CHARS])
        spot.context = "\n\n".join(parts)


def load(value: str | list | None) -> list:
    """A StreamField's stored JSON (text or already parsed) as a list of items."""
    if isinstance(value, list):
        return value
    try:
        data = json.loads(value or "[]")
    except (TypeError, ValueError):
        return []
    return data if isinstance(data, list) else []


def _walk_stream(
    stream_block: blocks.BaseStreamBlock, data: Any, image_block: type, top: int | None, key: str
) -> Iterator[tuple[dict, Spot]]:
    if not isinstance(data, list):
        return
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            continue
        child = stream_block.child_blocks.get(item.get("type"))
        if child is None:
            continue
        item_key = f"{key}/{item.get('id') or index}" if key else str(item.get("id") or index)
        yield from _walk(
            child, item.get("value"), image_block, index if top is None else top, item_key
        )


def _walk(
    block: blocks.Block, value: Any, image_block: type, top: int, key: str
) -> Iterator[tuple[dict, Spot]]:
    if isinstance(block, image_block):
        if isinstance(value, dict):
            image = value.get("image")
            if isinstance(image, str) and image.isdigit():
                image = int(image)
            spot = Spot(
                key=key,
                image_id=image if isinstance(image, int) else None,
                alt_text=str(value.get("alt_text") or ""),
                decorative=bool(value.get("decorative")),
                index=top,
            )
            yield value, spot
        return
    if isinstance(block, blocks.BaseStreamBlock):
        yield from _walk_stream(block, value, image_block, top, key)
    elif isinstance(block, blocks.BaseStructBlock) and isinstance(value, dict):
        for name, child in block.child_blocks.items():
            if name in value:
                yield from _walk(child, value[name], image_block, top, f"{key}/{name}")
    elif isinstance(block, blocks.ListBlock) and isinstance(value, list):
        for position, item in enumerate(value):
            if isinstance(item, dict) and item.get("type") == "item" and "value" in item:
                item_key, item_value = f"{key}/{item.get('id') or position}", item["value"]
            else:  # the list format before Wagtail 2.16: bare values
                item_key, item_value = f"{key}/{position}", item
            yield from _walk(block.child_block, item_value, image_block, top, item_key)


__all__ = ["Spot", "find_spots", "holds_image_blocks", "load", "patch", "with_context"]
