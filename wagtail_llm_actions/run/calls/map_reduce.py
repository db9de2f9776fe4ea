"""Map-reduce: a source too long for the model's context window, in parts.

:func:`split_source` decides whether the messages fit the window whole and, if not, splits the
source (:func:`chunking.split_text`) into parts that fit with the prompt (the room
:func:`reduce_plan` leaves). :func:`map_reduce` runs the prompt on each part (one interaction
each, linked to one run), then combines the answers (:func:`chunking.combine_in_rounds`) in as
many rounds as their length needs; the final combining call is the run's own interaction. A
part already paid for by a run that stopped is reused (:mod:`.resume`), never bought again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.utils.translation import gettext as _

from ...exceptions import (
    AnswerCut,
    AnswerNotStored,
    ConfigurationProblem,
    LLMActionError,
    PageGone,
)
from ...models import (
    CutAnswers,
    InteractionOutcome,
    InteractionStatus,
    LLMAction,
    LLMInteraction,
    LLMRun,
    LongContent,
)
from ...templating import MissingVariableError, TemplateSyntaxError, render_template
from .. import recording
from ..prepare import PreparedRun, render_messages
from . import resume
from .common import call


def window_budget(action: LLMAction) -> tuple[int, int] | None:
    """``(window, reserve)``: input tokens the model accepts and the tokens kept free
    for the answer; None when the window is unknown."""
    from ... import estimates
    from ...providers import context_window

    window = action.context_window or context_window((action.model or "").strip())
    if not window:
        return None
    reserve = action.max_tokens or estimates.DEFAULT_COMPLETION_TOKENS
    return window, reserve + window_margin(window)


def window_margin(window: int) -> int:
    """Tokens kept free because other providers' tokenizers count differently from ours."""
    return max(32, window // 20)


def split_source(prepared: PreparedRun) -> list[str] | None:
    """The source in parts that fit the window with the prompt, or None if the whole
    messages already fit. Raises ConfigurationProblem when the window is unknown."""
    from ... import estimates
    from ...chunking import split_text

    window, reserve = _known_window(prepared.action)
    if estimates.count_message_tokens(prepared.messages) + reserve <= window:
        return None
    return split_text(prepared.source_text, reduce_plan(prepared).map_room)


def must_split(prepared: PreparedRun) -> bool:
    """Whether ``prepared`` is a map-reduce run whose source does not fit whole."""
    return prepared.action.long_content == LongContent.MAP_REDUCE and bool(split_source(prepared))


def _known_window(action: LLMAction) -> tuple[int, int]:
    """:func:`window_budget`, or ConfigurationProblem when the window is unknown."""
    budget = window_budget(action)
    if budget is None:
        # The source was read in full: without a window, neither sending it whole nor
        # cutting it silently is right.
        raise ConfigurationProblem(
            _(
                "Map-reduce needs the model's context window, and %(model)s has none "
                "known. Enter it in the action's “context window” field."
            )
            % {"model": action.model}
        )
    return budget


def reduce_plan(prepared: PreparedRun):
    """How a map-reduce run of ``prepared`` uses the model's context window (a
    :class:`chunking.ReducePlan`); raises ConfigurationProblem when it leaves no room."""
    from ... import estimates
    from ...chunking import MIN_PART_TOKENS, ReducePlan, part_tokens_for

    action = prepared.action
    window, _reserve = _known_window(action)
    margin = window_margin(window)
    answer_tokens = action.max_tokens or estimates.DEFAULT_COMPLETION_TOKENS
    empty = {**prepared.variables, "source": "", action.source_field: ""}
    map_overhead = estimates.count_message_tokens(render_messages(action, empty))
    reduce_overhead = estimates.count_message_tokens(reduce_messages(prepared, []))
    part_tokens = part_tokens_for(window, margin, reduce_overhead, answer_tokens, action.max_tokens)
    if part_tokens < MIN_PART_TOKENS:
        raise ConfigurationProblem(
            _(
                "With max tokens %(tokens)s, the model's context window (%(window)s "
                "tokens) leaves too little room to combine the partial answers of long "
                "content. Lower the action's max tokens, or use a model with a larger "
                "context window."
            )
            % {"tokens": answer_tokens, "window": window}
        )
    plan = ReducePlan(
        window=window,
        margin=margin,
        answer_tokens=answer_tokens,
        part_tokens=part_tokens,
        map_overhead=map_overhead,
        reduce_overhead=reduce_overhead,
    )
    if plan.map_room < 64:
        raise ConfigurationProblem(
            _(
                "The prompt alone nearly fills the model's context window (%(window)s "
                "tokens), so the source cannot be split into parts that fit."
            )
            % {"window": window}
        )
    return plan


def part_messages(prepared: PreparedRun, part: str) -> list[dict[str, str]]:
    """The messages of a map-reduce action's call on one ``part`` of its source."""
    action = prepared.action
    return render_messages(
        action, {**prepared.variables, "source": part, action.source_field: part}
    )


def reduce_messages(prepared: PreparedRun, answers: list[str]) -> list[dict[str, str]]:
    """The messages that combine ``answers`` (the action's reduce prompt, or the default)."""
    from ...models import DEFAULT_REDUCE_PROMPT

    action = prepared.action
    template = action.reduce_prompt.strip() or DEFAULT_REDUCE_PROMPT
    values = {k: prepared.variables.get(k, "") for k in ("title", "url", "locale", "context")}
    try:
        prompt = render_template(template, {**values, "answers": "\n\n".join(answers)})
    except (MissingVariableError, TemplateSyntaxError) as e:
        raise ConfigurationProblem(str(e)) from e
    messages = []
    if action.system_message.strip():
        messages.append({"role": "system", "content": action.system_message.strip()})
    messages.append({"role": "user", "content": prompt})
    return messages


def window_error(action: LLMAction, error, what: str = "") -> LLMActionError:
    """A map-reduce call the provider found too long for its window: our token count
    was lower than the model's, so suggest a smaller window (never a shorter source)."""
    budget = window_budget(action)
    smaller = int(budget[0] * 0.8) if budget else None
    message = _(
        "The model counted more tokens than the context window it has (our count is "
        "lower than its own). Enter a smaller context window in the action (e.g. "
        "%(tokens)s) so that the long content is split into smaller parts."
    ) % {"tokens": smaller or "—"}
    if what:
        message = f"{what}: {message}"
    return LLMActionError(message, code=error.code, retryable=False)


def map_reduce(
    prepared: PreparedRun,
    parts: list[str],
    interaction: LLMInteraction,
    *,
    max_chars: int | None = None,
    on_run_started: Callable[[LLMRun], None] | None = None,
):
    """Map the prompt over ``parts``, then combine the answers in as many rounds as it
    takes for them to fit one final call (see :func:`chunking.combine_in_rounds`); the final
    call is recorded on ``interaction``, whose ``answer_truncated`` also says whether a
    partial answer it combines was cut off. A new run calls ``on_run_started(run)`` in the
    transaction that creates it."""
    from ...chunking import CannotCombine, combine_in_rounds, split_text
    from ...estimates import count_text_tokens
    from ...providers import ContextWindowError

    action = prepared.action
    plan = reduce_plan(prepared)
    run = interaction.run or recording.start_map_reduce(interaction, action.name, on_run_started)
    parts_call = _PartCalls(prepared, interaction, run, plan)
    for number, part in enumerate(parts, start=1):
        parts_call.map(part, number, len(parts))
    try:
        answers = combine_in_rounds(
            parts_call.answers,
            plan,
            size=count_text_tokens,
            split=split_text,
            combine=parts_call.combine,
        )
    except CannotCombine:
        raise LLMActionError(
            _(
                "The partial answers of the long content could not be combined within the "
                "model's context window (%(window)s tokens): the model's answers did not "
                "get shorter when combined (it may ignore max tokens). Use a model with a "
                "larger context window."
            )
            % {"window": plan.window},
            code="combine",
        ) from None
    messages = reduce_messages(prepared, answers)
    try:
        result = call(action, messages, interaction, max_chars=max_chars)
    except ContextWindowError as e:
        raise window_error(action, e, _("Combining the partial answers")) from e
    interaction.answer_truncated = interaction.answer_truncated or parts_call.cut
    return result


class _PartCalls:
    """The map and intermediate combining calls of one map-reduce run, numbered in order."""

    def __init__(self, prepared: PreparedRun, parent: LLMInteraction, run: LLMRun, plan) -> None:
        self.prepared, self.parent, self.run, self.plan = prepared, parent, run, plan
        self.index = 0
        self.groups = 0
        self.answers: list[str] = []
        #: Whether a partial answer was cut off at its limit.
        self.cut = False

    def map(self, part: str, number: int, total: int) -> None:
        label = _("Part %(number)s of %(total)s") % {"number": number, "total": total}
        self.answers.append(self._call(part_messages(self.prepared, part), label))

    def combine(self, group: list[str], round_number: int) -> str:
        self.groups += 1
        label = _("Combining group %(number)s (round %(round)s)") % {
            "number": self.groups,
            "round": round_number,
        }
        return self._call(reduce_messages(self.prepared, group), label)

    def _call(self, messages: list[dict], label: str) -> str:
        text, cut = part_call(
            self.prepared.action, messages, self.parent, self.run, self.index, label, self.plan
        )
        self.index += 1
        self.cut = self.cut or cut
        return text


def part_call(
    action: LLMAction,
    messages: list[dict],
    parent: LLMInteraction,
    run: LLMRun,
    index: int,
    label: str,
    plan,
) -> tuple[str, bool]:
    """One map (or intermediate combining) call, limited to the plan's ``part_tokens``,
    recorded as its own interaction of ``run``: its answer and whether it was cut off at
    that limit. A failure is recorded there and raised naming the part; so is a cut-off
    answer when the action refuses those (the calls after it would be paid for nothing)."""
    part = _new_part(action, parent, run, index)
    started = time.perf_counter()
    # A run stopped before it ended (a killed worker, a task timeout) already paid for
    # this part: its answer is reused (see resume.py), never bought again.
    stored = resume.stored_part(run, part, action, messages, max_tokens=plan.part_tokens)
    if stored is not None:
        resume.reuse(part, stored, run)
    else:
        _call_part(action, messages, part, label, plan, started)
    part.status = InteractionStatus.SUCCESS
    part.outcome = InteractionOutcome.FED
    part.output_value = ""

    def save() -> None:
        if recording.detach_deleted(part):  # the answer is kept in the log, as for a whole run
            part.status = InteractionStatus.ERROR
            part.outcome = InteractionOutcome.NONE
            part.error_code = PageGone.code
            part.error_message = str(recording.page_gone())
        part.save()

    if not recording.write_logged(part, save, what="recording a part"):
        raise AnswerNotStored(
            _("%(part)s of the long content: the database could not store its answer.")
            % {"part": label},
            interaction=part,
        )
    if part.status == InteractionStatus.ERROR:
        raise recording.page_gone(part)
    if part.answer_truncated and action.cut_answers != CutAnswers.KEEP:
        raise AnswerCut(_cut_part_message(action, label, plan))
    return part.response_text, part.answer_truncated


def _new_part(action: LLMAction, parent: LLMInteraction, run: LLMRun, index: int):
    return LLMInteraction(
        action=parent.action,
        action_name=parent.action_name,
        page=parent.page,
        content_type=parent.content_type,
        object_id=parent.object_id,
        base_revision=parent.base_revision,
        user=parent.user,
        trigger=parent.trigger,
        model=action.model,
        prompt_revision_id=parent.prompt_revision_id,
        target_field=parent.target_field,
        run=run,
        step_index=parent.step_index,
        step_name=parent.step_name,
        chunk_index=index,
        source_hash=parent.source_hash,
    )


def _call_part(action, messages, part: LLMInteraction, label: str, plan, started) -> None:
    """Call the model for one part; a failure is recorded on ``part`` and raised naming it."""
    from ...providers import ContextWindowError, ProviderError

    try:
        call(action, messages, part, max_tokens=plan.part_tokens)
    except ContextWindowError as e:
        error = window_error(action, e, label)
        recording.record_failure(part, error, started)
        raise error from e
    except ProviderError as e:
        error = LLMActionError(
            _("%(part)s of the long content failed: %(error)s") % {"part": label, "error": e},
            code=e.code,
            retryable=e.retryable,
        )
        recording.record_failure(part, error, started)
        raise error from e


def _cut_part_message(action: LLMAction, label: str, plan) -> str:
    from ...chunking import PART_TOKENS

    values = {"part": label, "tokens": plan.part_tokens, "window": plan.window}
    if action.max_tokens and plan.part_tokens >= action.max_tokens:
        message = _(
            "%(part)s of the long content was cut off at the action's max tokens "
            "(%(tokens)s), so nothing was written. Raise max tokens, or let the action "
            "keep cut answers with a warning."
        )
    elif action.max_tokens or plan.part_tokens < PART_TOKENS:
        message = _(
            "%(part)s of the long content was cut off at %(tokens)s tokens, the most a "
            "partial answer can have for the answers to be combined within the model's "
            "context window (%(window)s tokens), so nothing was written. Lower the "
            "action's max tokens, use a model with a larger context window, or let the "
            "action keep cut answers with a warning."
        )
    else:
        message = _(
            "%(part)s of the long content was cut off at %(tokens)s tokens, the most a "
            "partial answer gets when the action sets no max tokens, so nothing was "
            "written. Set the action's max tokens, or let the action keep cut answers "
            "with a warning."
        )
    return message % values
