"""Reading blocks: the per-block registry (the ``register_llm_block_readers`` hook), and the
walk through streams, structs and lists down to each block's lines of text.

Every block reads as lines of plain text (see README, "Source paths"). A site says how its
own block reads with a ``get_llm_text(value)`` method on the block class, or with the
``register_llm_block_readers`` hook for block classes it does not own. Any other block falls
back to Wagtail's own ``get_searchable_content(value)``; an object's ``repr`` is never sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from wagtail import blocks
from wagtail.blocks.field_block import BaseChoiceBlock
from wagtail.rich_text import RichText

from ..conf import get_setting
from ..exceptions import ExtractionError
from .marks import BlockMarks, _content_state, _own_mark, _site_mark, resolve_block_marks
from .snippets import _is_snippet_chooser, _snippet_text
from .text import _join_lines, html_to_text
from .values import (
    _cell_text,
    _choice_labels,
    _chosen_title,
    _contrib_blocks,
    _embed_text,
    _fallback_lines,
    _image_text,
    _is_heading_level,
    _label,
    _labelled,
    _table_block_lines,
    _table_lines,
)

#: Hook name: ``@hooks.register(READER_HOOK) def f(readers): readers[BlockClass] = reader``,
#: where ``reader(block, value)`` returns a string, a list of strings or None.
READER_HOOK = "register_llm_block_readers"


BlockReader = Callable[[blocks.Block, Any], "str | Iterable[str] | None"]


# Struct children with these names read without a label, like a struct's first child.
_HEADING_NAMES = frozenset({"title", "heading", "headline", "name"})


class _BlockFailed(Exception):
    """A block reader raised; carries where, so the message can name the block."""

    def __init__(self, path: list[str], block: blocks.Block, error: Exception) -> None:
        super().__init__(str(error))
        self.path = path
        self.block = block
        self.error = error


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


def _read_block_unguarded(
    block: blocks.Block,
    value: Any,
    reading: _Reading,
    path: list[str],
    label: str,
    prose_label: bool,
    parent: blocks.Block | None,
    content: bool | None,
) -> list[str]:
    """:func:`_read_block` without its guard: marks and readers, then blocks holding blocks;
    any other block reads as a value (:func:`_value_lines`)."""
    ImageBlock = _contrib_blocks()[3]
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
    return _value_lines(block, value, reading, path, label, prose_label, own, content)


def _value_lines(  # noqa: C901 - one branch per block family, kept side by side
    block: blocks.Block,
    value: Any,
    reading: _Reading,
    path: list[str],
    label: str,
    prose_label: bool,
    own: bool | None,
    content: bool | None,
) -> list[str]:
    """Lines of a block that holds no blocks (``own``: its own mark; ``content``: whether it,
    or a block around it, is marked as content)."""
    TableBlock, BaseTypedTableBlock, EmbedBlock, _ImageBlock, ImageChooserBlock = _contrib_blocks()
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


def block_text(block: blocks.Block, value: Any) -> str:
    """The text of one block value, read as a source path reads it (the site's readers and
    block marks apply); "" for a block that cannot be read."""
    try:
        lines = _read_block(block, value, _Reading.start(), [], label=_label(block, ""))
    except _BlockFailed:
        return ""
    return "\n".join(line for line in lines if line.strip())
