"""A pipeline's step, run by the same steps as one action's run (:mod:`.prepare`, then
:mod:`.calls.structured` or :mod:`.calls.single`); an earlier run's stored answer can stand in
for the call (:func:`reuse_answer`). The step's answer is applied to the run's working copy; the
pipeline writes them all into one draft afterwards (:func:`.drafts.write_run`).

A step is anything with ``name``, ``action`` and ``writes`` (``pipelines.StepSpec``).
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

from django.utils.translation import gettext as _

from .. import db, outputs
from ..conf import get_setting
from ..exceptions import ConfigurationProblem, OutputRejected
from ..extraction import PathError
from ..models import InteractionOutcome, InteractionStatus, LLMAction, LLMInteraction, LLMRun
from .calls import single, structured
from .calls.common import refuse_cut_answer
from .prepare import prepare


def run_step(
    step,
    interaction: LLMInteraction,
    working_obj: Any,
    answers: dict[str, str],
    reuse: bool,
    reused: LLMInteraction | None,
) -> None:
    """Run one step (or with ``reuse``, take the ``reused`` step's stored answer), apply its
    answer to ``working_obj`` if it writes, and store the step's interaction."""
    action = step.action
    if reuse:
        reuse_answer(interaction, reused, step)
    else:
        prepared = prepare(action, working_obj, answers)
        interaction.source_hash = prepared.inputs_hash
        interaction.source_truncated = prepared.truncated
        if action.is_structured:
            # Fills (and checks) every mapped field of the working copy; a step that
            # only feeds later steps fills a copy.
            scratch = working_obj if step.writes else copy.deepcopy(working_obj)
            structured.fill_fields(scratch, prepared, interaction)
        else:
            hint = None
            if step.writes:
                hint = outputs.answer_max_chars(type(working_obj), action.target_field)
            single.answer(prepared, interaction, max_chars=hint)
            refuse_cut_answer(action, interaction)
    answers[step.name] = step_answer(action, interaction)
    _apply_answer(step, interaction, working_obj, reuse)
    db.write(interaction.save, what="storing a step's answer")


def _apply_answer(step, interaction: LLMInteraction, working_obj: Any, reused: bool) -> None:
    """A writing step's answer on the working copy (stored, written after the last step);
    a step that only feeds later steps has done its part."""
    action = step.action
    if step.writes and action.is_structured:
        if reused:
            apply_structured(working_obj, interaction)
    elif step.writes:
        try:
            interaction.previous_value = outputs.read_field_value(working_obj, action.target_field)
            interaction.output_value = outputs.apply_output(
                working_obj,
                action.target_field,
                interaction.response_text,
                action.output_mode,
                truncate=bool(get_setting("TRUNCATE_LONG_OUTPUT")),
            )
        except PathError as e:
            raise ConfigurationProblem(str(e)) from e
        except outputs.OutputError as e:
            raise OutputRejected(str(e), code=e.code) from e
    else:
        interaction.status = InteractionStatus.SUCCESS
        interaction.outcome = InteractionOutcome.FED
        return
    interaction.status = InteractionStatus.ANSWERED
    interaction.outcome = InteractionOutcome.NONE


def step_answer(action: LLMAction, interaction: LLMInteraction) -> str:
    """What later steps get as ``{steps.<name>}``: the answer's text, or for a step filling
    several fields the JSON object of its values by output key (in the mapping's order)."""
    if action.is_structured and interaction.output_values:
        values = interaction.output_values
        return json.dumps(
            {str(key): values.get(field, "") for key, field in action.output_fields.items()},
            ensure_ascii=False,
        )
    return interaction.response_text.strip()


def apply_structured(working_obj: Any, interaction: LLMInteraction) -> None:
    """Set a reused structured answer's values on the working copy."""
    try:
        interaction.previous_values = {
            name: outputs.read_field_value(working_obj, name) for name in interaction.output_values
        }
        for name, value in interaction.output_values.items():
            outputs.set_output_value(working_obj, name, value)
    except PathError as e:
        raise ConfigurationProblem(str(e)) from e


def reusable_answers(run: LLMRun) -> dict[str, LLMInteraction]:
    """The answer of each step of ``run`` (not its parts), by step name."""
    result: dict[str, LLMInteraction] = {}
    for interaction in run.interactions.filter(chunk_index__isnull=True).order_by("pk"):
        if interaction.status in (InteractionStatus.SUCCESS, InteractionStatus.ANSWERED):
            result[interaction.step_name] = interaction
    return result


def reuse_answer(interaction: LLMInteraction, source: LLMInteraction | None, step) -> None:
    if source is None or not source.response_text:
        raise ConfigurationProblem(
            _("The step “%(step)s” has no stored answer in the earlier run to reuse.")
            % {"step": step.name}
        )
    interaction.reused_from = source.reused_from or source
    interaction.messages = source.messages
    interaction.parameters = source.parameters
    interaction.model = source.model
    interaction.response_text = source.response_text
    interaction.output_values = dict(source.output_values or {})
    if source.output_values:
        interaction.output_value = source.output_value
    interaction.finish_reason = source.finish_reason
    interaction.answer_truncated = source.answer_truncated
    interaction.source_hash = source.source_hash
    # No call was made: no tokens, no cost (the original row keeps them).
    interaction.cost = Decimal(0)
    interaction.latency_ms = 0
