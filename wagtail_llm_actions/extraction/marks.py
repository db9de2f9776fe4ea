"""The ``BLOCKS`` setting and the blocks' own ``llm_content``: which blocks are content and
which are presentation (left out with all they hold)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from wagtail import blocks

if TYPE_CHECKING:
    from .readers import _Reading


#: Values of the ``BLOCKS`` setting: what a block (class, or child of a block class) is.
CONTENT = "content"


PRESENTATION = "presentation"


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
