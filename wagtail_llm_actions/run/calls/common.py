"""What every call strategy shares: one recorded model call, its answer's usage added up over
repeated calls, text no database can store cleaned, and refusing a cut-off answer."""

from __future__ import annotations

import logging

from django.utils.translation import gettext as _

from ...exceptions import AnswerCut
from ...models import CutAnswers, LLMAction, LLMInteraction

logger = logging.getLogger(__name__)


def call(
    action: LLMAction,
    messages: list[dict],
    interaction: LLMInteraction,
    *,
    max_chars: int | None = None,
    max_tokens: int | None = None,
):
    """One model call recorded on ``interaction`` (not saved); raises ProviderError.
    ``max_chars`` is the answer's length hint (the target field's ``max_length``);
    ``max_tokens`` replaces the action's (a map-reduce run's partial answers)."""
    from ...providers import build_request
    from .gate import ask

    interaction.messages = messages
    request = build_request(action, messages, max_chars=max_chars)
    if max_tokens is not None:
        request.max_tokens = max_tokens
    interaction.parameters = request.public_parameters()
    result = received(ask(request, action, interaction), interaction)
    interaction.cached = result.cached
    interaction.model = result.model
    interaction.response_text = result.text
    interaction.finish_reason = result.finish_reason or ""
    interaction.answer_truncated = result.truncated
    interaction.prompt_tokens = result.prompt_tokens
    interaction.completion_tokens = result.completion_tokens
    interaction.total_tokens = result.total_tokens
    interaction.cost = result.cost
    interaction.latency_ms = result.latency_ms
    return result


def single_request(action: LLMAction, messages: list[dict], max_chars: int | None, count: int = 1):
    """The request of a one-field call asking for ``count`` answers: in one call with
    ``n`` where the model takes it (else the run sends it ``count`` times)."""
    from ...providers import build_request, supports_n

    request = build_request(action, messages, max_chars=max_chars)
    if count > 1 and supports_n(request.model):
        request.n = count
    return request


def record_call(interaction: LLMInteraction, result, *, first: bool) -> None:
    """Copy a call's answer and usage onto ``interaction``, adding up repeated calls."""
    interaction.model = result.model
    interaction.finish_reason = result.finish_reason or ""
    interaction.answer_truncated = interaction.answer_truncated or result.truncated
    interaction.cached = result.cached and (first or interaction.cached)
    if first:
        interaction.response_text = result.text
        interaction.prompt_tokens = result.prompt_tokens
        interaction.completion_tokens = result.completion_tokens
        interaction.total_tokens = result.total_tokens
        interaction.cost = result.cost
        interaction.latency_ms = result.latency_ms
        return

    def add(a, b):
        return b if a is None else a if b is None else a + b

    interaction.prompt_tokens = add(interaction.prompt_tokens, result.prompt_tokens)
    interaction.completion_tokens = add(interaction.completion_tokens, result.completion_tokens)
    interaction.total_tokens = add(interaction.total_tokens, result.total_tokens)
    interaction.cost = add(interaction.cost, result.cost)
    interaction.latency_ms = add(interaction.latency_ms, result.latency_ms)


def received(result, interaction: LLMInteraction):
    """The model's answer ``result`` with text no database can store cleaned (see
    :mod:`...storable`), so the answer, the interaction and the draft all hold the same text;
    what was cleaned is noted on ``interaction``."""
    from collections import Counter

    from ...storable import clean_text, describe, merge_notes

    found: Counter = Counter()
    if result.text:
        result.text = clean_text(result.text, found)
    if result.texts:
        result.texts = [clean_text(text, found) if text else text for text in result.texts]
    note = describe(found, [])
    if note:
        limit = LLMInteraction._meta.get_field("storage_note").max_length
        interaction.storage_note = merge_notes(interaction.storage_note, note, limit)
        logger.warning("LLM action %s: %s", interaction.action_name, note)
    return result


def refuse_cut_answer(action: LLMAction, interaction: LLMInteraction) -> None:
    """Raise :class:`AnswerCut` if the answer was cut off at its token limit and the
    action refuses such answers (the interaction keeps the answer for the log)."""
    if not interaction.answer_truncated or action.cut_answers == CutAnswers.KEEP:
        return
    # (A map-reduce run refuses a cut partial answer as soon as it comes: see part_call.)
    if action.max_tokens:
        message = _(
            "The model's answer was cut off at the action's max tokens (%(tokens)s), so it "
            "was not written (it is kept in the log). Raise max tokens, or let the action "
            "keep cut answers with a warning."
        ) % {"tokens": action.max_tokens}
    else:
        message = _(
            "The model's answer was cut off by its token limit, so it was not written (it "
            "is kept in the log). Set the action's max tokens, or let the action keep cut "
            "answers with a warning."
        )
    raise AnswerCut(message)
