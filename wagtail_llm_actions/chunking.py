"""Splitting long text into parts that fit a token budget, at block and paragraph boundaries.

Extraction separates blocks with a blank line, so parts break between blocks first, then
between lines, then between sentences; only a single sentence longer than the budget is cut
between words. Nothing of the text is dropped: joining the parts gives every word back.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .estimates import count_text_tokens

__all__ = ["split_text"]

_BLOCKS = re.compile(r"\n\s*\n")
_SENTENCES = re.compile(r"(?<=[.!?…])\s+")

#: Separators from the coarsest (between blocks) to the finest (between words).
_LEVELS: tuple[tuple[Callable[[str], list[str]], str], ...] = (
    (lambda text: _BLOCKS.split(text), "\n\n"),
    (lambda text: text.split("\n"), "\n"),
    (lambda text: _SENTENCES.split(text), " "),
    (lambda text: text.split(), " "),
)


def _pieces(text: str, budget: int, count: Callable[[str], int], level: int = 0) -> list[str]:
    """``text`` as pieces of at most ``budget`` tokens (each piece as small as the level)."""
    if count(text) <= budget:
        return [text]
    if level >= len(_LEVELS):
        # One word longer than the budget: cut it by characters.
        size = max(1, budget * 2)
        return [text[i : i + size] for i in range(0, len(text), size)]
    split, _joiner = _LEVELS[level]
    parts = [part for part in split(text) if part.strip()]
    if len(parts) <= 1:
        return _pieces(text, budget, count, level + 1)
    return _pack(parts, budget, count, level)


def _pack(parts: list[str], budget: int, count: Callable[[str], int], level: int) -> list[str]:
    """Greedily join consecutive ``parts`` (split at ``level``) into pieces within budget."""
    joiner = _LEVELS[level][1]
    joiner_tokens = count(joiner) if joiner.strip() else 1
    out: list[str] = []
    current: list[str] = []
    current_tokens = 0
    for part in parts:
        tokens = count(part)
        if tokens > budget:
            if current:
                out.append(joiner.join(current))
                current, current_tokens = [], 0
            out.extend(_pieces(part, budget, count, level + 1))
            continue
        extra = tokens + (joiner_tokens if current else 0)
        if current and current_tokens + extra > budget:
            out.append(joiner.join(current))
            current, current_tokens = [part], tokens
        else:
            current.append(part)
            current_tokens += extra
    if current:
        out.append(joiner.join(current))
    return out


def split_text(
    text: str, budget: int, count: Callable[[str], int] = count_text_tokens
) -> list[str]:
    """``text`` in order, as parts of at most ``budget`` tokens (by ``count``)."""
    if budget < 1:
        raise ValueError("budget must be positive")
    text = text.strip()
    if not text:
        return []
    return _pieces(text, budget, count)
