"""Several fields from one JSON answer, with one repair round-trip if it is unusable
(the schema, parsing and applying are :mod:`wagtail_llm_actions.structured`'s)."""

from __future__ import annotations

import json
from typing import Any

from django.utils.translation import gettext as _

from ... import outputs
from ...conf import get_setting
from ...exceptions import ConfigurationProblem, OutputRejected
from ...extraction import PathError
from ...models import LLMInteraction
from ..prepare import PreparedRun
from . import map_reduce
from .common import received, record_call


def check_whole(prepared: PreparedRun) -> None:
    """An action filling several fields sends its source whole: refuse one that must be
    split (map-reduce over a long source) before any call."""
    if map_reduce.must_split(prepared):
        raise ConfigurationProblem(
            _(
                "The content is too long for the model's context window, and an action "
                "that fills several fields cannot split it into parts. Shorten the source "
                "or choose “truncate” for long content."
            )
        )


def request_for(prepared: PreparedRun, model: type):
    """The request (with its schema instruction or ``response_format``) and the schema."""
    from ...structured import structured_request

    try:
        return structured_request(prepared.action, model, prepared.messages)
    except PathError as e:
        raise ConfigurationProblem(str(e)) from e


def fill_fields(working_obj: Any, prepared: PreparedRun, interaction: LLMInteraction) -> None:
    """Ask for the JSON answer and set every mapped field of ``working_obj`` from it; one
    unusable answer is sent back once with what is wrong (``repaired``), then refused."""
    from .gate import ask

    check_whole(prepared)
    mapping = prepared.action.output_fields
    try:
        interaction.previous_values = {
            name: outputs.read_field_value(working_obj, name) for name in mapping.values()
        }
    except PathError as e:
        raise ConfigurationProblem(str(e)) from e
    request, schema = request_for(prepared, type(working_obj))
    interaction.messages = request.messages
    interaction.parameters = request.public_parameters()
    for attempt in range(2):
        result = received(ask(request, prepared.action, interaction), interaction)
        record_call(interaction, result, first=attempt == 0)
        if attempt:
            interaction.response_text += "\n\n" + result.text
        written = _usable(working_obj, mapping, result, attempt, request, schema, interaction)
        if written is not None:
            interaction.output_values = written
            interaction.output_value = json.dumps(written, ensure_ascii=False)
            return


def _usable(working_obj, mapping, result, attempt: int, request, schema, interaction):
    """The values ``result`` set on ``working_obj``, or None after asking for a repair
    (the request and interaction then carry the repair messages); OutputRejected when the
    answer was cut off or is still unusable after the repair."""
    from ...structured import StructuredError, apply_answer, parse_answer, repair_message

    try:
        if result.truncated:
            raise StructuredError(
                _(
                    "The model's JSON answer was cut off by the token limit "
                    "(finish reason “length”). Raise the action's max tokens."
                ),
                code="truncated",
            )
        data = parse_answer(result.text, mapping)
        truncate = bool(get_setting("TRUNCATE_LONG_OUTPUT"))
        return apply_answer(working_obj, mapping, data, truncate=truncate)
    except StructuredError as e:
        if e.code == "truncated" or attempt:
            message = e.message
            if attempt:
                message = _("The model's answer was still unusable after one repair: %(error)s") % {
                    "error": e.message
                }
            raise OutputRejected(message, code=e.code) from e
        request.messages = [
            *request.messages,
            {"role": "assistant", "content": result.text},
            {"role": "user", "content": repair_message(e, schema)},
        ]
        interaction.messages = request.messages
        interaction.parameters = {**interaction.parameters, "repaired": True}
        return None
