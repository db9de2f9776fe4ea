"""Several answers to choose from (the editor's candidates): one call with ``n`` where the
model takes it, else one call per answer."""

from __future__ import annotations

from typing import Any

from ...models import CutAnswers, LLMInteraction
from ..prepare import PreparedRun
from . import map_reduce, single
from .common import received, record_call, refuse_cut_answer, single_request


def fill_field(
    working_obj: Any, prepared: PreparedRun, interaction: LLMInteraction, *, count: int, **kwargs
) -> None:
    """Ask for ``count`` answers and offer them on ``interaction.candidates`` (the field holds
    the first). A map-reduce action whose source must be split offers one (``kwargs`` are
    :func:`single.one_answer`'s)."""
    max_chars = single.read_target(working_obj, prepared, interaction)
    if map_reduce.must_split(prepared):
        text = single.one_answer(prepared, interaction, max_chars, **kwargs)
        single.write_texts(working_obj, prepared, interaction, [text], count=1)
        return
    texts = ask(prepared, interaction, max_chars, count)
    single.write_texts(working_obj, prepared, interaction, texts, count=count)


def ask(
    prepared: PreparedRun, interaction: LLMInteraction, max_chars: int | None, count: int
) -> list[str]:
    """The answers of ``count`` candidates (without the cut-off ones when the action refuses
    those, as long as one is complete), their calls and usage recorded on ``interaction``."""
    from .gate import ask

    action = prepared.action
    request = single_request(action, prepared.messages, max_chars, count)
    interaction.messages = prepared.messages
    interaction.parameters = request.public_parameters()
    texts: list[str] = []
    cut: list[bool] = []
    calls = 0
    while len(texts) < count:
        # (Only the first call may come from the cache: the next ones ask for other answers
        # to the same request.)
        answer = ask(request, action, interaction, cache=calls == 0)
        result = received(answer, interaction)
        record_call(interaction, result, first=calls == 0)
        calls += 1
        for text, text_cut in result.answers():
            texts.append(text)
            cut.append(text_cut)
        if request.n > 1 and calls >= 1 and len(texts) < count:
            request.n = 1  # the server ignored n: make the remaining calls one by one
        if calls >= count:
            break
    interaction.parameters = {**interaction.parameters, "candidates": count}
    interaction.parameters["calls"] = calls
    offered = list(zip(texts[:count], cut[:count], strict=True))
    interaction.answer_truncated = any(text_cut for _text, text_cut in offered)
    if action.cut_answers != CutAnswers.KEEP and not all(c for _t, c in offered):
        # Refusing cut answers: offer the complete suggestions only.
        texts = [text for text, text_cut in offered if not text_cut]
        interaction.answer_truncated = False
    refuse_cut_answer(action, interaction)
    return texts
