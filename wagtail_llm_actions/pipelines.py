"""Pipelines: several actions run on one page as one run, writing one draft.

::

    from wagtail_llm_actions.pipelines import run_pipeline

    run = run_pipeline(pipeline, page, user)   # an LLMRun; run.revision is the draft
    run.timeline()                              # its interactions, step by step

Each step is an :class:`LLMAction` (its prompt, model and parameters), or has a prompt, model
and parameters of its own (run as a transient, unsaved action built by
``LLMPipelineStep.as_action``, so the one service path runs every step). A step's prompt can use
earlier steps' answers as ``{steps.<name>}``; a name that does not exist, or names the step
itself or a later one, is refused when the pipeline is saved and again before a run. A step
whose action fills several fields (structured output) writes them all into the run's draft;
its ``{steps.<name>}`` is the JSON object of the values it produced, by output key. Steps
run in order on the page's latest revision; a step that writes applies its answer to the
working copy, and after the last step all writes go into one draft revision (:mod:`.run.drafts`
write path: newest revision, row lock, retried while the database is busy). A failing step
stops the run: nothing is written, the run names the failed step. Steps cannot reference
pipelines, so a pipeline cannot contain a cycle.

Nothing here knows about HTTP.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.utils.translation import gettext as _
from wagtail.models import Page

from . import db, estimates
from .chunking import JOINER_TOKENS
from .conf import get_setting
from .exceptions import ConfigurationProblem, LLMActionError, SourceEmpty
from .models import (
    InteractionOutcome,
    InteractionStatus,
    InteractionTrigger,
    LLMAction,
    LLMInteraction,
    LLMPipeline,
    LLMRun,
    LongContent,
    RunKind,
    RunStatus,
)
from .run import access, drafts, recording
from .run import steps as run_steps
from .run.calls import map_reduce
from .run.prepare import prepare, working_copy
from .run.recording import not_stored, page_deleted, page_gone, refused_content, save_run
from .templating import TemplateSyntaxError, step_name_of, template_variables

logger = logging.getLogger(__name__)

__all__ = [
    "PipelineStepFailed",
    "estimate_pipeline",
    "rerun_pipeline",
    "run_pipeline",
    "validate_steps",
]


class PipelineStepFailed(LLMActionError):
    """A step failed; nothing was written. ``run`` names it (``run.failed_step``)."""

    def __init__(self, message: str, *, run: LLMRun | None = None, step: str = "", **kwargs):
        super().__init__(message, **kwargs)
        self.run = run
        self.step = step


@dataclass
class StepSpec:
    """A step as validated and run: its name, the action it runs (for a step with its own
    prompt, a transient one), and whether it writes."""

    name: str
    action: LLMAction | None
    writes: bool = True


def step_references(action: LLMAction) -> list[str]:
    """Names of the steps ``action``'s prompt uses as ``{steps.<name>}``."""
    names = []
    for variable in template_variables(action.prompt.template):
        name = step_name_of(variable)
        if name is not None:
            names.append(name)
    return names


def validate_steps(steps: Iterable[StepSpec]) -> dict[int, list[str]]:
    """Errors per step index: duplicate names, references to a missing, the same or a later
    step, malformed ``{steps…}`` placeholders, two steps writing one field. Empty if valid."""
    steps = list(steps)
    errors: dict[int, list[str]] = {}
    positions: dict[str, int] = {}
    for index, step in enumerate(steps):
        if step.name in positions:
            errors.setdefault(index, []).append(
                _("Another step is already called “%(name)s”.") % {"name": step.name}
            )
        else:
            positions[step.name] = index
    targets: dict[str, str] = {}
    for index, step in enumerate(steps):
        if step.action is None:
            continue
        if step.action.is_structured and step.action.long_content == LongContent.MAP_REDUCE:
            # Parts of one JSON answer cannot be combined field by field.
            errors.setdefault(index, []).append(
                _(
                    "“%(action)s” fills several fields and splits long content into parts; "
                    "a step cannot do both. Choose “truncate” for its long content."
                )
                % {"action": step.action.name}
            )
        try:
            references = step_references(step.action)
        except TemplateSyntaxError as e:
            errors.setdefault(index, []).append(str(e))
            continue
        for name in references:
            where = positions.get(name)
            if where is None:
                problem = _("uses {steps.%(name)s}, but no step is called “%(name)s”.")
            elif where == index:
                problem = _("uses {steps.%(name)s}, its own answer.")
            elif where > index:
                problem = _("uses {steps.%(name)s}, the answer of a later step; move that step up.")
            else:
                continue
            errors.setdefault(index, []).append(
                _("The prompt of “%(action)s” %(problem)s")
                % {"action": step.action.name, "problem": problem % {"name": name}}
            )
        if step.writes:
            for field in step.action.target_fields:
                if field in targets:
                    errors.setdefault(index, []).append(
                        _("The step “%(other)s” already writes “%(field)s”.")
                        % {"other": targets[field], "field": field}
                    )
                else:
                    targets[field] = step.name
    return errors


def _specs(pipeline: LLMPipeline) -> list[StepSpec]:
    return [StepSpec(s.name, s.as_action(), s.writes) for s in pipeline.ordered_steps()]


def pipelines_for_page(page: Page) -> list[LLMPipeline]:
    """Enabled pipelines that run on ``page``'s type: the pipeline's own page types (needed
    when a step has its own prompt) include it, if it has any, and every step's action is
    enabled and applies to it."""
    result = []
    for pipeline in LLMPipeline.objects.filter(enabled=True).prefetch_related(
        "steps__action__page_types", "page_types"
    ):
        steps = list(pipeline.steps.all())
        own = {ct.pk for ct in pipeline.page_types.all()}
        if not steps or (own and page.content_type_id not in own):
            continue
        if not own and any(s.action is None for s in steps):
            continue
        if all(
            s.action is None
            or (
                s.action.enabled
                and page.content_type_id in {ct.pk for ct in s.action.page_types.all()}
            )
            for s in steps
        ):
            result.append(pipeline)
    return result


def job_action(pipeline: LLMPipeline) -> tuple[LLMAction, list[int]]:
    """What a job running ``pipeline`` is planned with, and the page types that select its
    pages (the pipeline's own, else that action's).

    The action is its first step that uses one (saved: the job keeps it, and disabling or
    deleting it stops the job), else, for a pipeline made only of steps with their own
    prompt, the first step's transient action (unsaved: the job then has no action and is
    paced and checked by the pipeline itself, see :func:`jobs.run_job`).
    """
    steps = pipeline.ordered_steps()
    if not steps:
        raise ConfigurationProblem(_("The pipeline “%(name)s” has no steps.") % {"name": pipeline})
    lead = next((step.action for step in steps if step.action is not None), None)
    type_ids = sorted(pipeline.page_type_ids())
    if lead is None:
        if not type_ids:
            raise ConfigurationProblem(
                _("The pipeline “%(name)s” has steps with their own prompt but no page types.")
                % {"name": pipeline}
            )
        return steps[0].as_action(), type_ids
    return lead, type_ids or list(lead.page_types.values_list("pk", flat=True))


def job_lease_seconds(pipeline: LLMPipeline) -> float:
    """An item's lease for a job running ``pipeline``: ``LEASE_SECONDS`` plus the longest
    each step's call can take (its timeout, once more for each fallback model)."""
    base = float(get_setting("LEASE_SECONDS") or 120)
    default = float(get_setting("DEFAULT_TIMEOUT") or 60)
    total = 0.0
    for step in pipeline.ordered_steps():
        action = step.as_action()
        total += float(action.timeout or default) * (1 + len(action.fallback_model_list))
    return base + total


def inline_step_problems(spec: StepSpec, page_models: list[type]) -> list[str]:
    """What is wrong with a step's own prompt, source and target on ``page_models``: unknown
    variables and fields (a step using an action is checked by the action's own form)."""
    action = spec.action
    if action is None or action.pk is not None or not page_models:
        return []
    found = action.validate_for_page_models(page_models)
    if not spec.writes:
        found.pop("target_field", None)
    labels = {
        "prompt": _("Prompt"),
        "source_field": _("Source field"),
        "target_field": _("Target field"),
    }
    return [
        _("%(field)s: %(error)s") % {"field": labels.get(field, field), "error": message}
        for field, messages in found.items()
        for message in dict.fromkeys(messages)
    ]


def check_pipeline(pipeline: LLMPipeline, obj: Any, user=None) -> list[StepSpec]:
    """The pipeline's steps, once it is known to be valid and runnable on ``obj``."""
    if not pipeline.enabled:
        raise ConfigurationProblem(
            _("The pipeline “%(name)s” is disabled.") % {"name": pipeline.name},
            code="not_applicable",
        )
    steps = _specs(pipeline)
    if not steps:
        raise ConfigurationProblem(_("The pipeline “%(name)s” has no steps.") % {"name": pipeline})
    errors = validate_steps(steps)
    if not errors:
        # Steps with their own prompt: variables and fields must exist on this page's type.
        model = obj.specific_class if isinstance(obj, Page) else type(obj)
        for index, step in enumerate(steps):
            problems = inline_step_problems(step, [model])
            if problems:
                errors[index] = problems
                break
    if errors:
        index = min(errors)
        raise ConfigurationProblem(
            _("Step “%(step)s”: %(error)s") % {"step": steps[index].name, "error": errors[index][0]}
        )
    for step in steps:
        access.check(step.action, obj, user)
    return steps


def run_pipeline(
    pipeline: LLMPipeline,
    obj: Any,
    user=None,
    *,
    trigger: str = InteractionTrigger.API,
    from_step: int = 0,
    previous: LLMRun | None = None,
    on_answer: Callable[[LLMInteraction], None] | None = None,
    on_success: Callable[[LLMInteraction], None] | None = None,
    on_run_started: Callable[[LLMRun], None] | None = None,
    working_obj: Any = None,
    save: bool = True,
) -> LLMRun:
    """Run every step of ``pipeline`` on ``obj`` and write one draft; return the run.

    ``working_obj`` replaces the latest revision as the content the steps read and write (the
    editor passes an object built from its unsaved form). With ``save=False`` no revision is
    written: the writing steps' answers are applied to ``working_obj`` only and recorded as
    "awaiting review" (the editor puts them into its form), as ``LLMService.run`` does.

    With ``previous`` (an earlier run of this pipeline on this page), the steps before
    ``from_step`` reuse that run's stored answers instead of calling the model. Raises
    :class:`PipelineStepFailed` (with ``run``) when a step fails; nothing is written then.
    ``on_answer``/``on_success`` receive the run's last writing (or last) interaction, inside
    the transactions that store the answers and write the draft (as for ``LLMService.run``);
    ``on_run_started(run)`` runs in the transaction that creates the run (a job links its
    item to the run there, see :func:`answered_steps`).
    """
    if isinstance(obj, Page):
        obj = obj.specific
    steps = check_pipeline(pipeline, obj, user)
    base_revision = None
    if working_obj is None:
        working_obj, base_revision = working_copy(obj)
    run = _start(pipeline, obj, user, trigger, base_revision, previous, on_run_started)
    # From here the run is stored: whatever stops it, it ends (a step's failure in _fail,
    # a failed write in write_run, anything else below), never "running" for ever.
    try:
        reusable = run_steps.reusable_answers(previous) if previous is not None else {}
        answers: dict[str, str] = {}
        done: list[tuple[LLMInteraction, StepSpec]] = []
        for index, step in enumerate(steps):
            interaction = recording.new_interaction(step.action, obj, user, trigger, base_revision)
            interaction.run, interaction.step_index, interaction.step_name = run, index, step.name
            started = time.perf_counter()
            try:
                reuse = index < from_step
                reused = reusable.get(step.name) if reuse else None
                run_steps.run_step(step, interaction, working_obj, answers, reuse, reused)
            except Exception as e:  # noqa: BLE001 - every failure stops the run the same way
                raise _fail(run, interaction, step, e, started) from e
            done.append((interaction, step))
        writers = [(i, s.action) for i, s in done if s.writes]
        last = writers[-1][0] if writers else done[-1][0]
        if on_answer is not None:
            db.write(lambda: on_answer(last), what="linking a pipeline run")
        if not writers or not save:
            finish = _finish_unwritten(run, [i for i, _a in writers], last, on_success)
            db.write(finish, what="finishing a pipeline run")
            return run
    except PipelineStepFailed:
        raise
    except Exception as e:
        _crashed(run, e)
        raise
    try:
        drafts.write_run(run, obj, user, writers, working_obj=working_obj, on_success=on_success)
    except LLMActionError as e:
        e.run = run  # type: ignore[attr-defined]
        raise
    return run


def _start(
    pipeline: LLMPipeline,
    obj: Any,
    user,
    trigger: str,
    base_revision,
    previous: LLMRun | None,
    on_run_started: Callable[[LLMRun], None] | None,
) -> LLMRun:
    """The pipeline's run row, saved (``on_run_started(run)`` in that transaction)."""
    run = LLMRun(
        kind=RunKind.PIPELINE,
        pipeline=pipeline,
        name=pipeline.name,
        page=obj if isinstance(obj, Page) else None,
        object_id=str(obj.pk),
        user=user if user is not None and user.is_authenticated else None,
        trigger=trigger,
        base_revision=base_revision,
        rerun_of=previous,
    )
    return recording.start_run(run, on_run_started, what="starting a pipeline run")


def _finish_unwritten(
    run: LLMRun,
    writers: list[LLMInteraction],
    last: LLMInteraction,
    on_success: Callable[[LLMInteraction], None] | None,
) -> Callable[[], None]:
    """The write ending a run that writes no draft: its writing steps' answers (if any)
    await the editor's review."""

    def finish() -> None:
        for interaction in writers:  # not saved: awaiting the editor's review
            interaction.status = InteractionStatus.SUCCESS
            interaction.outcome = InteractionOutcome.PENDING
            interaction.save(update_fields=["status", "outcome"])
        recording.mark_ended(run, RunStatus.SUCCESS)
        save_run(run)
        if on_success is not None:
            on_success(last)

    return finish


def rerun_pipeline(run: LLMRun, from_step: int, user=None, **kwargs) -> LLMRun:
    """Run ``run``'s pipeline again on its page from step ``from_step`` (0-based), reusing
    the stored answers of the steps before it. Returns the new run."""
    if run.pipeline is None or run.page is None:
        raise ConfigurationProblem(
            _("This run's pipeline or page was deleted, so it cannot be run again.")
        )
    kwargs.setdefault("trigger", InteractionTrigger.RERUN)
    return run_pipeline(
        run.pipeline, run.page.specific, user, from_step=from_step, previous=run, **kwargs
    )


def answered_steps(run: LLMRun) -> int:
    """How many leading steps of ``run``'s pipeline have a stored answer in ``run`` (or the
    runs it reused): a resumed run starts there, calling no model for the steps before."""
    answers = run_steps.reusable_answers(run)
    count = 0
    for step in _specs(run.pipeline) if run.pipeline_id else []:
        if step.name not in answers:
            break
        count += 1
    return count


def _fail(
    run: LLMRun,
    interaction: LLMInteraction,
    step: StepSpec,
    error: Exception,
    started: float,
) -> PipelineStepFailed:
    from .providers import ProviderError

    if not isinstance(error, LLMActionError | ProviderError) and page_deleted(interaction):
        # Storing the step's answer failed on its link to the page deleted meanwhile: the
        # documented page-deleted failure (the answer is kept by _record_failure below).
        error = page_gone()
    if isinstance(error, LLMActionError):
        code, retryable, message = error.code, error.retryable, error.message
    elif isinstance(error, ProviderError):
        code, retryable, message = error.code, error.retryable, str(error)
    elif refused_content(error):
        logger.exception("Pipeline %s: step %s's answer was refused", run.name, step.name)
        stored = not_stored(error)
        code, retryable, message = stored.code, False, stored.message
    else:
        logger.exception("Pipeline %s failed at step %s", run.name, step.name)
        code, retryable = "internal", False
        message = _("unexpected error (%(type)s)") % {"type": type(error).__name__}
    recording.record_failure(
        interaction, LLMActionError(message, code=code, retryable=retryable), started
    )
    if code == SourceEmpty.code:  # a skip, as the interaction and a job's item say
        text = _("Step “%(step)s” had nothing to send, so nothing was written: %(error)s") % {
            "step": step.name,
            "error": message,
        }
        recording.finish_run(run, RunStatus.SKIPPED, text)
    else:
        text = _("Step “%(step)s” failed, so nothing was written: %(error)s") % {
            "step": step.name,
            "error": message,
        }
        run.failed_step = step.name
        recording.finish_run(run, RunStatus.ERROR, text)
    return PipelineStepFailed(
        text, run=run, step=step.name, code=code, retryable=retryable, interaction=interaction
    )


def _crashed(run: LLMRun, error: Exception) -> None:
    """End a run stopped outside its steps' own handling: by a bug (the editor reads the
    error's type only; the traceback goes to the log) or a job's refusal (e.g. its lease
    was lost), with that refusal's message."""
    if isinstance(error, LLMActionError):
        logger.warning("Pipeline run %s stopped: %s", run.pk, error.message)
        message = error.message
    else:
        logger.exception("Pipeline run %s failed unexpectedly", run.pk)
        message = _("The pipeline failed unexpectedly (%(type)s).") % {"type": type(error).__name__}
    # (the caller still gets the first error)
    recording.finish_run_quietly(run, RunStatus.ERROR, message)


# -- estimates --------------------------------------------------------------------------------


@dataclass
class PipelineEstimate:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal | None = Decimal(0)


def estimate_pipeline(pipeline: LLMPipeline, obj: Any) -> PipelineEstimate:
    """Calls, tokens and cost of one run of ``pipeline`` on ``obj`` (its latest revision):
    the sum of every step's (an action's or its own prompt's), each earlier answer assumed as
    long as its step's answer limit, every part and combining call of a map-reduce step, and
    the JSON schema of a step that fills several fields."""
    if isinstance(obj, Page):
        obj = obj.specific
    working_obj, _revision = working_copy(obj)
    total = PipelineEstimate()
    answers: dict[str, str] = {}
    for step in _specs(pipeline):
        action = step.action
        completion = action.max_tokens or estimates.DEFAULT_COMPLETION_TOKENS
        prepared = prepare(action, working_obj, answers)
        calls, prompt = estimate_calls(None, prepared)
        if action.is_structured:
            prompt += estimates.structured_prompt_tokens(action, type(working_obj))
        total.calls += calls
        total.prompt_tokens += prompt
        total.completion_tokens += completion * calls
        step_cost = estimates.estimate(action.model, prompt, calls, action.max_tokens).cost
        total.cost = None if total.cost is None or step_cost is None else total.cost + step_cost
        answers[step.name] = "lorem " * completion
    return total


def estimate_calls(_service: Any, prepared) -> tuple[int, int]:
    """``(calls, prompt tokens)`` of running ``prepared``: one call, or with map-reduce one a
    part, the combining calls of every round (each partial answer assumed as long as its
    limit) and the final combining call: the rounds the run itself would plan. (``_service``
    is unused: :mod:`.planning` still passes its ``LLMService``.)"""
    from .chunking import CannotCombine, combine_in_rounds

    action = prepared.action
    tokens = estimates.count_message_tokens(prepared.messages)
    if prepared.image_spots:  # alt text of a page's images: a call an image
        images = len(prepared.image_spots)
        return images, (tokens + estimates.IMAGE_PART_TOKENS) * images
    if action.long_content != LongContent.MAP_REDUCE:
        return 1, tokens
    try:
        parts = map_reduce.split_source(prepared)
    except LLMActionError:  # no known window: the run will say so; estimate one call
        return 1, tokens
    if not parts:
        return 1, tokens
    plan = map_reduce.reduce_plan(prepared)
    calls = len(parts)
    prompt = sum(plan.map_overhead + estimates.count_text_tokens(part) for part in parts)

    def combine(group: list[int], _round: int) -> int:
        nonlocal calls, prompt
        calls += 1
        prompt += plan.reduce_overhead + sum(group) + JOINER_TOKENS * (len(group) - 1)
        return plan.part_tokens

    def split(size: int, room: int) -> list[int]:
        return [room] * (size // room) + ([size % room] if size % room else [])

    try:
        answers = combine_in_rounds(
            [plan.part_tokens] * len(parts), plan, size=int, split=split, combine=combine
        )
    except CannotCombine:  # (answers of the planned length always combine)
        answers = []
    final = plan.reduce_overhead + sum(answers) + JOINER_TOKENS * max(len(answers) - 1, 0)
    return calls + 1, prompt + final
