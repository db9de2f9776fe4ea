"""Map-reduce planning: long text split into parts within a token budget, and partial
answers combined in rounds that each fit the context window.

Extraction separates blocks with a blank line, so parts break between blocks first, then
between lines, then between sentences; only a single sentence longer than the budget is cut
between words. Nothing of the text is dropped: joining the parts gives every word back.

:class:`ReducePlan` sizes every call of a run; :func:`combine_in_rounds` is the one combining
loop, run with texts (the service) or with token counts (the estimate).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .estimates import count_text_tokens

__all__ = ["CannotCombine", "ReducePlan", "combine_in_rounds", "part_tokens_for", "split_text"]

T = TypeVar("T")

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


# -- combining partial answers -----------------------------------------------------------------

#: Tokens counted for the blank line that separates two answers in a combining prompt (one
#: token by cl100k; two, so that a tokenizer merging it with a neighbour never overflows).
JOINER_TOKENS = 2
#: The partial answers' ``max_tokens`` when the action sets none: enough for notes on a part,
#: and under every chat model's output limit.
PART_TOKENS = 1024
#: A partial answer of ``max_tokens`` by the provider's tokenizer may count this much more by
#: ours (cl100k): two must still fit one combining call, or combining would not converge.
ANSWER_SLACK = 1.2
#: Fewer tokens than this for a partial answer cannot say anything useful.
MIN_PART_TOKENS = 32
#: Rounds of combining before giving up (each round at least halves the answers when the
#: model keeps to ``max_tokens``: 12 rounds combine 4,096 parts).
MAX_ROUNDS = 12


class CannotCombine(Exception):
    """The answers did not get shorter when combined (the model ignores ``max_tokens``)."""


@dataclass(frozen=True)
class ReducePlan:
    """How a map-reduce run uses a context window (all figures in tokens).

    Every call's messages plus the answer it may write fit ``window - margin``. The parts'
    answers (and the intermediate combining calls') are limited to ``part_tokens``, chosen so
    that at least two of them can be combined in one call, leaving room for that call's own
    answer: each round of combining then at least halves the answers, so it converges.
    """

    window: int
    margin: int
    #: Kept free for the final answer: the action's ``max_tokens`` (or a typical answer).
    answer_tokens: int
    #: ``max_tokens`` of every map and intermediate combining call.
    part_tokens: int
    #: The prompt of a part without the source, and the combining prompt without answers.
    map_overhead: int
    reduce_overhead: int

    @property
    def map_room(self) -> int:
        """Source tokens one part may have."""
        return self.window - self.margin - self.map_overhead - self.part_tokens

    @property
    def combine_room(self) -> int:
        """Answer tokens an intermediate combining call may read."""
        return self.window - self.margin - self.reduce_overhead - self.part_tokens

    @property
    def final_room(self) -> int:
        """Answer tokens the final combining call may read."""
        return self.window - self.margin - self.reduce_overhead - self.answer_tokens

    def fits(self, sizes: list[int], room: int) -> bool:
        """Whether answers of these sizes, joined, fit ``room``."""
        return joined_size(sizes) <= room


def part_tokens_for(
    window: int, margin: int, reduce_overhead: int, answer_tokens: int, max_tokens: int | None
) -> int:
    """The largest ``max_tokens`` for partial answers (at most the action's own, or
    :data:`PART_TOKENS`) with which two of them (counted with :data:`ANSWER_SLACK`), and the
    combining call's answer, fit one call."""
    room = window - margin - reduce_overhead - JOINER_TOKENS
    intermediate = int(room / (2 * ANSWER_SLACK + 1))  # two answers in, one out
    final = int((room - answer_tokens) / (2 * ANSWER_SLACK))  # two answers in, the final out
    return min(max_tokens or PART_TOKENS, intermediate, final)


def joined_size(sizes: list[int]) -> int:
    return sum(sizes) + JOINER_TOKENS * max(len(sizes) - 1, 0)


def _groups(sizes: list[int], room: int) -> list[list[int]]:
    """Indexes of consecutive answers packed greedily into groups of at most ``room``."""
    groups: list[list[int]] = []
    current: list[int] = []
    used = 0
    for index, size in enumerate(sizes):
        extra = size + (JOINER_TOKENS if current else 0)
        if current and used + extra > room:
            groups.append(current)
            current, used = [], 0
            extra = size
        current.append(index)
        used += extra
    if current:
        groups.append(current)
    return groups


def combine_in_rounds(
    answers: list[T],
    plan: ReducePlan,
    *,
    size: Callable[[T], int],
    split: Callable[[T, int], list[T]],
    combine: Callable[[list[T], int], T],
) -> list[T]:
    """Combine ``answers`` in rounds until they fit the final combining call; return them.

    Each round packs consecutive answers into groups that fit an intermediate combining call
    (an answer longer than that is ``split`` first) and replaces each group by
    ``combine(group, round)``; a lone answer within ``part_tokens`` is passed on as it is.
    The run uses it with texts and paid calls, the estimate with token counts, so both
    plan the same calls. Raises :class:`CannotCombine` when a round does not shorten the
    answers, or after :data:`MAX_ROUNDS`.
    """
    for round_number in range(1, MAX_ROUNDS + 1):
        sizes = [size(answer) for answer in answers]
        if plan.fits(sizes, plan.final_room):
            return answers
        pieces: list[T] = []
        for answer, answer_size in zip(answers, sizes, strict=True):
            if answer_size > plan.combine_room:
                pieces.extend(split(answer, plan.combine_room))
            else:
                pieces.append(answer)
        piece_sizes = [size(piece) for piece in pieces]
        combined: list[T] = []
        for group in _groups(piece_sizes, plan.combine_room):
            if len(group) == 1 and piece_sizes[group[0]] <= plan.part_tokens:
                combined.append(pieces[group[0]])  # nothing to combine it with
            else:
                combined.append(combine([pieces[i] for i in group], round_number))
        if joined_size([size(answer) for answer in combined]) >= joined_size(sizes):
            raise CannotCombine()
        answers = combined
    raise CannotCombine()
