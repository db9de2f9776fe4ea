"""One field, one answer: the whole source in one call, or map-reduce when it must be split."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ... import outputs
from ...conf import get_setting
from ...exceptions import ConfigurationProblem, OutputRejected
from ...extraction import PathError
from ...models import LLMInteraction, LLMRun, LongContent
from ..prepare import PreparedRun
from . import map_reduce
from .common import call, refuse_cut_answer


def fill_field(
    working_obj: Any,
    prepared: PreparedRun,
    interaction: LLMInteraction,
    *,
    on_run_started: Callable[[LLMRun], None] | None = None,
) -> None:
    """Ask for one answer and set it on the action's target field of ``working_obj``."""
    max_chars = read_target(working_obj, prepared, interaction)
    text = one_answer(prepared, interaction, max_chars, on_run_started=on_run_started)
    write_texts(working_obj, prepared, interaction, [text], count=1)


def read_target(working_obj: Any, prepared: PreparedRun, interaction: LLMInteraction):
    """Record the target field's value before the run; return its answer length hint."""
    action = prepared.action
    try:
        interaction.previous_value = outputs.read_field_value(working_obj, action.target_field)
    except PathError as e:
        raise ConfigurationProblem(str(e)) from e
    return outputs.answer_max_chars(type(working_obj), action.target_field)


def one_answer(
    prepared: PreparedRun,
    interaction: LLMInteraction,
    max_chars: int | None,
    *,
    on_run_started: Callable[[LLMRun], None] | None = None,
) -> str:
    """The text of :func:`answer`, refused if it was cut off and the action refuses that."""
    text = answer(prepared, interaction, max_chars=max_chars, on_run_started=on_run_started).text
    refuse_cut_answer(prepared.action, interaction)
    return text


def answer(
    prepared: PreparedRun,
    interaction: LLMInteraction,
    *,
    max_chars: int | None = None,
    on_run_started: Callable[[LLMRun], None] | None = None,
):
    """Call the model for ``prepared`` and record the result on ``interaction``.

    A map-reduce action whose messages do not fit the model's context window runs the
    prompt on each part of the source, then combines the answers (:mod:`.map_reduce`);
    ``interaction`` records the final combining call. ``interaction.answer_truncated`` says
    whether the answer, or a partial answer it combines, was cut off at its token limit.
    """
    from ...providers import ContextWindowError, streaming

    action = prepared.action
    parts = None
    if action.long_content == LongContent.MAP_REDUCE:
        parts = map_reduce.split_source(prepared)
    if not parts:
        try:
            with streaming.accepting():  # one text answer: the editor may watch it come
                return call(action, prepared.messages, interaction, max_chars=max_chars)
        except ContextWindowError as e:
            if action.long_content != LongContent.MAP_REDUCE:
                raise
            raise map_reduce.window_error(action, e) from e
    return map_reduce.map_reduce(
        prepared, parts, interaction, max_chars=max_chars, on_run_started=on_run_started
    )


def write_texts(
    working_obj: Any,
    prepared: PreparedRun,
    interaction: LLMInteraction,
    texts: list[str],
    *,
    count: int,
) -> None:
    """Apply the answers to the target field (distinct values, in order; the first one is
    written, several are offered as candidates); OutputRejected if none can be."""
    action = prepared.action
    truncate = bool(get_setting("TRUNCATE_LONG_OUTPUT"))
    values: list[str] = []
    first_error: outputs.OutputError | None = None
    for text in texts[:count]:
        try:
            value = outputs.apply_output(
                working_obj, action.target_field, text, action.output_mode, truncate=truncate
            )
        except outputs.OutputError as e:
            first_error = first_error or e
            continue
        if value not in values:
            values.append(value)
    if not values:
        assert first_error is not None  # noqa: S101 - texts is never empty
        raise OutputRejected(str(first_error), code=first_error.code)
    if count > 1:
        interaction.candidates = values
        # The field holds the first candidate until the editor picks another.
        outputs.set_output_value(working_obj, action.target_field, values[0])
    interaction.output_value = values[0]
