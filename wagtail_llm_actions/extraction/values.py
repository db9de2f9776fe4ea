"""How one block value reads: labels, choices and yes/no (presentation unless marked as
content), chosen pages and images, embeds, tables, and the fallback for unknown blocks."""

from __future__ import annotations

import functools
import re
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.utils.functional import Promise
from django.utils.translation import gettext as _
from wagtail import blocks
from wagtail.blocks.field_block import BaseChoiceBlock

from .text import html_to_text

if TYPE_CHECKING:
    from .readers import _Reading


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
