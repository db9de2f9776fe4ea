"""Run an action on an object: the one code path shared by the editor, bulk jobs and commands.

::

    from wagtail_llm_actions.service import LLMService

    interaction = LLMService().run(action, page, user=request.user)
    interaction.revision  # the new draft revision holding the answer

``run`` never touches the live page: it starts from the latest revision, writes the answer
into the target field and saves a new *draft* revision. Every call that reaches the point of
calling a model (and every bad-input failure after the permission check) is recorded as an
``LLMInteraction``; failures raise an ``LLMActionError`` whose ``interaction`` is that row.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from django.utils.html import strip_tags
from django.utils.translation import gettext as _
from wagtail.log_actions import log
from wagtail.models import Page

from . import db, drafts, log_actions, outputs, resume, rowstate
from .conf import get_setting
from .exceptions import (
    ActionNotAllowed,
    ActionNotApplicable,
    AnswerCut,
    AnswerNotStored,
    CallNotStarted,
    ConfigurationProblem,
    LLMActionError,
    OutputRejected,
    PageGone,
    PageInModeration,
    PageLocked,
    SourceEmpty,
    WriteFailed,
)
from .extraction import PathError, extract_text
from .extraction import _truncate as cut_text
from .models import (
    CutAnswers,
    InteractionOutcome,
    InteractionStatus,
    InteractionTrigger,
    LLMAction,
    LLMInteraction,
    LLMRun,
    LongContent,
    RunKind,
    RunStatus,
)
from .signals import answer_stored
from .templating import (
    BUILTIN_VARIABLES,
    MissingVariableError,
    TemplateSyntaxError,
    is_step_variable,
    render_template,
    step_name_of,
    template_variables,
)

logger = logging.getLogger(__name__)

LOG_ACTION = log_actions.GENERATE

#: The interaction fields :meth:`LLMService.write_answer` changes on a stored answer (the
#: draft, its outcome, the fields read again when rebased, links to rows deleted meanwhile).
WRITE_FIELDS = (
    "revision",
    "rebased",
    "outcome",
    "status",
    "error_code",
    "error_message",
    "previous_value",
    "previous_values",
    "page",
    "base_revision",
    "action",
)


@dataclass
class PlannedRequest:
    """The first request a run sends, as the run builds it (what dry runs show)."""

    request: Any  # providers.CompletionRequest (the provider layer is imported lazily)
    #: How many calls send it: the candidates, for a model that takes no ``n``.
    calls: int = 1
    #: Map-reduce: the parts of the source (each a call with its messages; ``request`` is
    #: the first part's), then a call combining the answers. 0: the source is sent whole.
    parts: int = 0

    def parameters(self) -> list[tuple[str, Any]]:
        """The parameters that shape the answer, as sent (and as the interaction records
        them): model, temperature, max_tokens, n, response_format, and extra parameters."""
        sent = self.request.public_parameters()
        shown: list[tuple[str, Any]] = [
            ("model", sent["model"]),
            ("temperature", sent["temperature"]),
            ("max_tokens", sent["max_tokens"]),
            ("n", sent.get("n", 1)),
            ("response_format", sent.get("response_format")),
        ]
        if sent["extra_params"]:
            shown.append(("extra_params", sent["extra_params"]))
        return shown

    def parameters_as_text(self) -> list[tuple[str, str]]:
        """:meth:`parameters` for people: JSON values indented, unset ones said so."""
        shown = []
        for name, value in self.parameters():
            if value is None:
                text = _("none") if name == "response_format" else _("not set")
            elif isinstance(value, dict | list):
                text = json.dumps(value, indent=2, ensure_ascii=False)
            else:
                text = str(value)
            shown.append((name, text))
        return shown

    def notes(self) -> list[str]:
        """What else a run does with this request: several calls, or parts of the source."""
        notes = []
        if self.calls > 1:
            notes.append(
                _("The model takes no “n”: this request is sent %(calls)s times, once per answer.")
                % {"calls": self.calls}
            )
        if self.parts:
            notes.append(
                _(
                    "The source is split into %(parts)s parts: these are the first part's "
                    "messages. Each part is a call, then the answers are combined (in rounds "
                    "when they are too long to combine at once)."
                )
                % {"parts": self.parts}
            )
        return notes


@dataclass
class PreparedRun:
    """Everything needed to call the model, built from an object without any I/O."""

    action: LLMAction
    obj: Any
    messages: list[dict[str, str]]
    source_text: str
    #: Hash of the extracted texts alone.
    source_hash: str
    truncated: bool
    variables: dict[str, str] = field(default_factory=dict)
    #: Dry runs: the first call's request (see :meth:`LLMService.dry_run`).
    planned: PlannedRequest | None = None
    #: Dry runs: why that request cannot be built (the run would stop there), if it cannot.
    request_error: str = ""
    #: Hash of everything that shapes the request and what is done with its answer
    #: (:func:`inputs_hash`); stored on the interaction, compared by :mod:`.unchanged`.
    inputs_hash: str = ""


def content_hash(texts: list[str]) -> str:
    """Stable hash of the extracted content a run depends on."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def inputs_hash(
    action: LLMAction, messages: list[dict[str, str]], variables: dict[str, str] | None = None
) -> str:
    """Stable hash of what a run of ``action`` sends and what it does with the answer.

    The rendered messages (system and context messages, the prompt's text with every variable
    filled: source, ``{title}``, ``{url}``, ``{locale}``, ``{context}``, step answers), the model,
    API base and parameters, the fields written and how (output mode, the structured mapping
    in its order), and for map-reduce what decides the parts and how they are combined (the
    window, the reduce prompt and the page ``variables`` it may use). Not the key, timeout or
    fallback models: they do not change what the model is asked.
    """
    extra = action.extra_params if isinstance(action.extra_params, dict) else {}
    mapping = action.output_fields if action.is_structured else {}
    shape: dict[str, Any] = {
        "messages": messages,
        "model": (action.model or "").strip(),
        "api_base": (action.api_base or "").strip(),
        "temperature": action.temperature,
        "max_tokens": action.max_tokens,
        "extra": extra,
        "target": action.target_field if not mapping else "",
        "output_mode": action.output_mode if not mapping else "",
        "fields": [[str(k), str(v)] for k, v in mapping.items()],
        "long_content": action.long_content,
    }
    if action.long_content == LongContent.MAP_REDUCE:
        shape["context_window"] = action.context_window
        shape["reduce_prompt"] = (action.reduce_prompt or "").strip()
        shape["reduce_variables"] = {
            name: (variables or {}).get(name, "") for name in ("title", "url", "locale", "context")
        }
    data = json.dumps(shape, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def working_copy(obj: Any) -> tuple[Any, Any]:
    """The object as its latest revision has it, and that revision.

    Never ``obj`` itself (see :func:`drafts.latest_as_object`): the copy remembers how its
    StreamFields are stored, so the draft saved from it keeps them so.
    """
    if isinstance(obj, Page):
        obj = obj.specific
    if hasattr(obj, "get_latest_revision_as_object"):
        revision = obj.get_latest_revision() if hasattr(obj, "get_latest_revision") else None
        return drafts.latest_as_object(obj), revision
    raise ConfigurationProblem(
        _("%(object)s keeps no revisions, so an answer cannot be saved as a draft.")
        % {"object": obj}
    )


def can_edit(user, obj: Any) -> bool:
    if isinstance(obj, Page):
        return obj.permissions_for_user(user).can_edit()
    opts = obj._meta
    return user.has_perm(f"{opts.app_label}.change_{opts.model_name}")


def lock_problem(user, obj: Any) -> PageLocked | None:
    """Why ``obj`` cannot be changed by ``user`` now (by anyone, without a user), or None: a
    :class:`PageInModeration` for a page in a moderation workflow, else a :class:`PageLocked`."""
    lock = rowstate.get_lock(obj)
    if lock is None or (user is not None and not lock.for_user(user)):
        return None
    from wagtail.locks import WorkflowLock

    # Wagtail's message is HTML (the user's name in <b>); ours is shown as plain text.
    message = _plain(lock.get_message(user)) if user is not None else ""
    if isinstance(lock, WorkflowLock):
        return PageInModeration(message or _("The page is in moderation."))
    return PageLocked(message or _("The page is locked."))


def lock_message(user, obj: Any) -> str | None:
    """Why ``obj`` cannot be changed by ``user`` (or by anyone, without a user), or None."""
    problem = lock_problem(user, obj)
    return problem.message if problem is not None else None


class LLMService:
    """Orchestrates one run; the only writer of drafts and interactions.

    ``on_run_started(run)`` is called in the transaction that creates a map-reduce run (the
    editor records the run on its job item, to end it if its worker dies).
    """

    def __init__(self, *, on_run_started: Callable[[LLMRun], None] | None = None) -> None:
        self.on_run_started = on_run_started

    def check(self, action: LLMAction, obj: Any, user=None, *, locks: bool = True) -> None:
        """Raise if ``user`` may not run ``action`` on ``obj`` (permission, type, and with
        ``locks`` a lock or moderation: nothing may be written to ``obj`` now)."""
        if not action.enabled:
            raise ActionNotApplicable(_("The action “%s” is disabled.") % action.name)
        if isinstance(obj, Page) and not action.applies_to(obj):
            raise ActionNotApplicable(
                _("The action “%(action)s” does not apply to %(type)s pages.")
                % {"action": action.name, "type": obj.specific_class._meta.verbose_name}
            )
        if user is not None and not can_edit(user, obj):
            raise ActionNotAllowed()
        problem = lock_problem(user, obj) if locks else None
        if problem is not None:
            raise problem

    # -- pure steps ------------------------------------------------------------------------

    def variables_for(
        self, action: LLMAction, obj: Any, steps: dict[str, str] | None = None
    ) -> tuple[dict[str, str], bool, list[str]]:
        """Values for every variable the prompt uses, whether any was cut, and source texts.

        ``steps`` holds earlier pipeline steps' answers by step name (``{steps.<name>}``),
        cut at ``MAX_SOURCE_CHARS`` as a source is (the cut is recorded). A map-reduce action
        reads its source in full (it is split later, not cut).
        """
        max_chars = get_setting("MAX_SOURCE_CHARS")
        try:
            names = template_variables(action.prompt.template)
        except TemplateSyntaxError as e:
            raise ConfigurationProblem(str(e)) from e
        values: dict[str, str] = {}
        truncated = False
        sources: list[str] = []
        for name in names:
            try:
                step = step_name_of(name)
            except TemplateSyntaxError as e:
                raise ConfigurationProblem(str(e)) from e
            if step is None:
                continue
            if steps is None or step not in steps:
                raise ConfigurationProblem(
                    _(
                        "The prompt uses {%(name)s}, the answer of a pipeline step, but no "
                        "earlier step of this run is called “%(step)s”."
                    )
                    % {"name": name, "step": step}
                )
            # An earlier answer is capped like the source (a runaway answer of megabytes
            # would otherwise be sent whole to every later step).
            answer = steps[step]
            if max_chars is not None and len(answer) > max_chars:
                answer = cut_text(answer, max_chars)
                truncated = True
            values[name] = answer
            sources.append(answer)
        map_reduce = action.long_content == LongContent.MAP_REDUCE
        paths = [("source", action.source_field)] + [
            (name, name)
            for name in names
            if name not in BUILTIN_VARIABLES and not is_step_variable(name)
        ]
        read: dict[tuple[str, int | None], Any] = {}  # {body} is usually the source again
        for name, path in paths:
            limit = None if map_reduce and path == action.source_field else max_chars
            extracted = read.get((path, limit))
            if extracted is None:
                try:
                    extracted = read[path, limit] = extract_text(obj, path, max_chars=limit)
                except PathError as e:
                    raise ConfigurationProblem(str(e)) from e
            values[name] = extracted.text
            truncated = truncated or extracted.truncated
            sources.append(extracted.text)
        # {url} and {locale} cost queries (site, locale): read only for a prompt that uses them.
        used = set(names)
        if map_reduce:
            from .models import DEFAULT_REDUCE_PROMPT

            try:
                used.update(
                    template_variables(action.reduce_prompt.strip() or DEFAULT_REDUCE_PROMPT)
                )
            except TemplateSyntaxError as e:
                raise ConfigurationProblem(str(e)) from e
        values["title"] = getattr(obj, "title", "") or str(obj)
        values["url"] = self._url(obj) if "url" in used else ""
        locale = getattr(obj, "locale", None) if "locale" in used else None
        values["locale"] = getattr(locale, "language_code", "") if locale else ""
        values["context"] = action.context_message or ""
        return values, truncated, sources

    @staticmethod
    def _url(obj: Any) -> str:
        try:
            return (obj.get_full_url() if hasattr(obj, "get_full_url") else "") or ""
        except Exception:  # an unsaved or unrouted page has no URL  # noqa: BLE001
            return ""

    def render_messages(self, action: LLMAction, values: dict[str, str]) -> list[dict[str, str]]:
        try:
            prompt = render_template(action.prompt.template, values)
        except (MissingVariableError, TemplateSyntaxError) as e:
            raise ConfigurationProblem(str(e)) from e
        messages: list[dict[str, str]] = []
        if action.system_message.strip():
            messages.append({"role": "system", "content": action.system_message.strip()})
        uses_context = "context" in template_variables(action.prompt.template)
        if action.context_message.strip() and not uses_context:
            messages.append({"role": "system", "content": action.context_message.strip()})
        messages.append({"role": "user", "content": prompt})
        return messages

    def prepare(
        self, action: LLMAction, obj: Any, steps: dict[str, str] | None = None
    ) -> PreparedRun:
        """Extract, render and hash; raises ``SourceEmpty``/``ConfigurationProblem``."""
        values, truncated, sources = self.variables_for(action, obj, steps)
        if not values["source"].strip():
            raise SourceEmpty(
                _("There is no content in “%(path)s” to send to the model.")
                % {"path": action.source_field}
            )
        messages = self.render_messages(action, values)
        return PreparedRun(
            action=action,
            obj=obj,
            messages=messages,
            source_text=values["source"],
            source_hash=content_hash(sources),
            truncated=truncated,
            variables=values,
            inputs_hash=inputs_hash(action, messages, values),
        )

    # -- the run ---------------------------------------------------------------------------

    def run(
        self,
        action: LLMAction,
        obj: Any,
        user=None,
        *,
        working_obj: Any = None,
        save: bool = True,
        trigger: str = InteractionTrigger.API,
        on_success: Callable[[LLMInteraction], None] | None = None,
        on_answer: Callable[[LLMInteraction], None] | None = None,
        call_slot: Callable[[], contextlib.AbstractContextManager] | None = None,
    ) -> LLMInteraction:
        """Run ``action`` on ``obj`` and return the recorded interaction.

        ``working_obj`` replaces the latest revision as the content to read and write (the
        editor passes an object built from its unsaved form). With ``save=False`` the answer is
        applied to the working object only and no revision is written (outcome "pending").

        With ``save=True`` the answer is first committed to the interaction (status
        "answered", ``on_answer(interaction)`` inside that transaction), then written as a
        draft by :meth:`write_answer`: against the page's newest revision at that moment,
        under a row lock, retried while the database is busy. ``on_success(interaction)`` is
        called inside the transaction that saves the draft (the job engine marks its item
        done there, so that both happen or neither); if it raises, the draft is rolled back.
        ``call_slot()`` is entered around the model call(s) only (the job engine's provider
        concurrency slot): reading the page before and storing the answer after hold none.
        """
        from .providers import ContextWindowError, ProviderError

        if isinstance(obj, Page):
            obj = obj.specific
        self.check(action, obj, user)
        base_revision = None
        if working_obj is None:
            working_obj, base_revision = working_copy(obj)

        interaction = self._new_interaction(action, obj, user, trigger, base_revision)
        started = time.perf_counter()
        try:
            prepared = self.prepare(action, working_obj)
            interaction.messages = prepared.messages
            interaction.source_hash = prepared.inputs_hash
            interaction.source_truncated = prepared.truncated
            with call_slot() if call_slot is not None else contextlib.nullcontext():
                if action.is_structured:
                    self._call_structured(action, working_obj, prepared, interaction)
                else:
                    count = action.candidates if not save and (action.candidates or 1) > 1 else 1
                    self._call_single(action, working_obj, prepared, interaction, count)
            if not save:

                def record_pending() -> None:
                    interaction.outcome = InteractionOutcome.PENDING
                    interaction.status = InteractionStatus.SUCCESS
                    if _detach_deleted(interaction):
                        raise _page_gone()
                    interaction.save()
                    if on_success is not None:
                        on_success(interaction)

                db.write(record_pending, what="editor answer")
        except CallNotStarted:
            raise  # nothing was sent: nothing to record
        except ProviderError as e:
            error = LLMActionError(str(e), code=e.code, retryable=e.retryable)
            if isinstance(e, ContextWindowError) and action.long_content == LongContent.MAP_REDUCE:
                error = self._window_error(action, e)  # never "choose a shorter source"
            self._record_failure(interaction, error, started)
            self._end_run(interaction, error)
            raise error from e
        except LLMActionError as e:
            self._record_failure(interaction, e, started)
            self._end_run(interaction, e)
            raise
        except Exception as e:
            logger.exception("LLM action %s failed on %r", action.slug, obj)
            if refused_content(e):
                error = not_stored(e)
            else:
                error = LLMActionError(
                    _("The action failed unexpectedly (%(type)s). The content was not changed.")
                    % {"type": type(e).__name__},
                    code="internal",
                )
            self._record_failure(interaction, error, started)
            self._end_run(interaction, error)
            raise error from e
        if save:
            try:
                self._store_answer(interaction, on_answer)
                self.write_answer(
                    interaction,
                    obj,
                    user,
                    action=action,
                    working_obj=working_obj,
                    on_success=on_success,
                )
            except LLMActionError as e:
                self._end_run(interaction, e)
                raise
        self._end_run(interaction)
        logger.info(
            "LLM action %s on %s: %s tokens, %s ms",
            action.slug,
            interaction.object_id,
            interaction.total_tokens,
            interaction.latency_ms,
        )
        return interaction

    # -- calling the model (one call, or map-reduce over a long source) -------------------

    def answer(
        self, prepared: PreparedRun, interaction: LLMInteraction, *, max_chars: int | None = None
    ):
        """Call the model for ``prepared`` and record the result on ``interaction``.

        A map-reduce action whose messages do not fit the model's context window runs the
        prompt on each part of the source (one interaction each, linked to the run), then
        combines the answers, in as many rounds as their length needs; ``interaction``
        records the final combining call. ``interaction.answer_truncated`` says whether the
        answer, or a partial answer it combines, was cut off at its token limit.
        """
        from .providers import ContextWindowError

        action = prepared.action
        parts = None
        if action.long_content == LongContent.MAP_REDUCE:
            parts = self.split_source(prepared)
        if not parts:
            try:
                return self.call(action, prepared.messages, interaction, max_chars=max_chars)
            except ContextWindowError as e:
                if action.long_content != LongContent.MAP_REDUCE:
                    raise
                raise self._window_error(action, e) from e
        return self._map_reduce(prepared, parts, interaction, max_chars=max_chars)

    @staticmethod
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
        from . import asking
        from .providers import build_request

        interaction.messages = messages
        request = build_request(action, messages, max_chars=max_chars)
        if max_tokens is not None:
            request.max_tokens = max_tokens
        interaction.parameters = request.public_parameters()
        result = received(asking.ask(request, action, interaction), interaction)
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

    @staticmethod
    def refuse_cut_answer(action: LLMAction, interaction: LLMInteraction) -> None:
        """Raise :class:`AnswerCut` if the answer was cut off at its token limit and the
        action refuses such answers (the interaction keeps the answer for the log)."""
        if not interaction.answer_truncated or action.cut_answers == CutAnswers.KEEP:
            return
        # (A map-reduce run refuses a cut partial answer as soon as it comes: see _part_call.)
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

    def window_budget(self, action: LLMAction) -> tuple[int, int] | None:
        """``(window, reserve)``: input tokens the model accepts and the tokens kept free
        for the answer; None when the window is unknown."""
        from . import estimates
        from .providers import context_window

        window = action.context_window or context_window((action.model or "").strip())
        if not window:
            return None
        reserve = action.max_tokens or estimates.DEFAULT_COMPLETION_TOKENS
        return window, reserve + self.window_margin(window)

    @staticmethod
    def window_margin(window: int) -> int:
        """Tokens kept free because other providers' tokenizers count differently from ours."""
        return max(32, window // 20)

    def split_source(self, prepared: PreparedRun) -> list[str] | None:
        """The source in parts that fit the window with the prompt, or None if the whole
        messages already fit. Raises ConfigurationProblem when the window is unknown."""
        from . import estimates
        from .chunking import split_text

        window, reserve = self._known_window(prepared.action)
        if estimates.count_message_tokens(prepared.messages) + reserve <= window:
            return None
        return split_text(prepared.source_text, self.reduce_plan(prepared).map_room)

    def _known_window(self, action: LLMAction) -> tuple[int, int]:
        """:meth:`window_budget`, or ConfigurationProblem when the window is unknown."""
        budget = self.window_budget(action)
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

    def reduce_plan(self, prepared: PreparedRun):
        """How a map-reduce run of ``prepared`` uses the model's context window (a
        :class:`chunking.ReducePlan`); raises ConfigurationProblem when it leaves no room."""
        from . import estimates
        from .chunking import MIN_PART_TOKENS, ReducePlan, part_tokens_for

        action = prepared.action
        window, _reserve = self._known_window(action)
        margin = self.window_margin(window)
        answer_tokens = action.max_tokens or estimates.DEFAULT_COMPLETION_TOKENS
        empty = {**prepared.variables, "source": "", action.source_field: ""}
        map_overhead = estimates.count_message_tokens(self.render_messages(action, empty))
        reduce_overhead = estimates.count_message_tokens(self.reduce_messages(prepared, []))
        part_tokens = part_tokens_for(
            window, margin, reduce_overhead, answer_tokens, action.max_tokens
        )
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

    def reduce_messages(self, prepared: PreparedRun, answers: list[str]) -> list[dict[str, str]]:
        """The messages that combine ``answers`` (the action's reduce prompt, or the default)."""
        from .models import DEFAULT_REDUCE_PROMPT

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

    def _map_reduce(
        self,
        prepared: PreparedRun,
        parts: list[str],
        interaction: LLMInteraction,
        *,
        max_chars: int | None = None,
    ):
        """Map the prompt over ``parts``, then combine the answers in as many rounds as it
        takes for them to fit one final call (see :func:`chunking.combine_in_rounds`)."""
        from .chunking import CannotCombine, combine_in_rounds, split_text
        from .estimates import count_text_tokens
        from .providers import ContextWindowError

        action = prepared.action
        plan = self.reduce_plan(prepared)
        run = interaction.run or self._start_run(interaction, RunKind.MAP_REDUCE, action.name)
        counter = iter(range(10_000))
        total = len(parts)
        answers: list[str] = []
        cut = False
        for number, part in enumerate(parts, start=1):
            text, part_cut = self._part_call(
                action,
                self.part_messages(prepared, part),
                interaction,
                run,
                next(counter),
                _("Part %(number)s of %(total)s") % {"number": number, "total": total},
                plan,
            )
            answers.append(text)
            cut = cut or part_cut
        groups = iter(range(1, 10_000))

        def combine(group: list[str], round_number: int) -> str:
            nonlocal cut
            text, group_cut = self._part_call(
                action,
                self.reduce_messages(prepared, group),
                interaction,
                run,
                next(counter),
                _("Combining group %(number)s (round %(round)s)")
                % {"number": next(groups), "round": round_number},
                plan,
            )
            cut = cut or group_cut
            return text

        try:
            answers = combine_in_rounds(
                answers,
                plan,
                size=count_text_tokens,
                split=split_text,
                combine=combine,
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
        try:
            result = self.call(
                action, self.reduce_messages(prepared, answers), interaction, max_chars=max_chars
            )
        except ContextWindowError as e:
            raise self._window_error(action, e, _("Combining the partial answers")) from e
        interaction.answer_truncated = interaction.answer_truncated or cut
        return result

    def _window_error(self, action: LLMAction, error, what: str = "") -> LLMActionError:
        """A map-reduce call the provider found too long for its window: our token count
        was lower than the model's, so suggest a smaller window (never a shorter source)."""
        budget = self.window_budget(action)
        smaller = int(budget[0] * 0.8) if budget else None
        message = _(
            "The model counted more tokens than the context window it has (our count is "
            "lower than its own). Enter a smaller context window in the action (e.g. "
            "%(tokens)s) so that the long content is split into smaller parts."
        ) % {"tokens": smaller or "—"}
        if what:
            message = f"{what}: {message}"
        return LLMActionError(message, code=error.code, retryable=False)

    @staticmethod
    def _end_run(interaction: LLMInteraction, error: LLMActionError | None = None) -> None:
        """Record how a map-reduce run of one action ended (pipelines record their own)."""
        run = interaction.run
        if run is None or run.kind != RunKind.MAP_REDUCE:
            return
        from django.utils import timezone

        if error is None:
            run.status = RunStatus.SUCCESS
        elif interaction.status == InteractionStatus.ANSWERED:
            run.status = RunStatus.ANSWERED
        else:
            run.status = RunStatus.ERROR
        run.error_message = error.message if error is not None else ""
        run.revision_id = interaction.revision_id
        run.finished_at = timezone.now()
        try:
            db.write(lambda: save_run(run), what="finishing a run")
        except Exception:  # the interactions already tell the story  # noqa: BLE001
            logger.exception("Could not record the end of run %s", run.pk)

    def _start_run(self, interaction: LLMInteraction, kind: str, name: str) -> LLMRun:
        run = LLMRun(
            kind=kind,
            name=name,
            page=interaction.page,
            object_id=interaction.object_id,
            user=interaction.user,
            trigger=interaction.trigger,
            base_revision=interaction.base_revision,
        )

        def start() -> None:
            run.save()
            if self.on_run_started is not None:
                self.on_run_started(run)

        db.write(start, what="starting a run")
        interaction.run = run
        return run

    def _part_call(
        self,
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
        from .providers import ContextWindowError, ProviderError

        part = LLMInteraction(
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
        started = time.perf_counter()
        # A run stopped before it ended (a killed worker, a task timeout) already paid for
        # this part: its answer is reused (see resume.py), never bought again.
        stored = resume.stored_part(run, part, action, messages, max_tokens=plan.part_tokens)
        if stored is not None:
            resume.reuse(part, stored, run)
        else:
            try:
                self.call(action, messages, part, max_tokens=plan.part_tokens)
            except ContextWindowError as e:
                error = self._window_error(action, e, label)
                self._record_failure(part, error, started)
                raise error from e
            except ProviderError as e:
                error = LLMActionError(
                    _("%(part)s of the long content failed: %(error)s")
                    % {"part": label, "error": e},
                    code=e.code,
                    retryable=e.retryable,
                )
                self._record_failure(part, error, started)
                raise error from e
        part.status = InteractionStatus.SUCCESS
        part.outcome = InteractionOutcome.FED
        part.output_value = ""

        def save() -> None:
            if _detach_deleted(part):  # the answer is kept in the log, as for a whole run
                part.status = InteractionStatus.ERROR
                part.outcome = InteractionOutcome.NONE
                part.error_code = PageGone.code
                part.error_message = str(_page_gone())
            part.save()

        if not write_logged(part, save, what="recording a part"):
            raise AnswerNotStored(
                _("%(part)s of the long content: the database could not store its answer.")
                % {"part": label},
                interaction=part,
            )
        if part.status == InteractionStatus.ERROR:
            raise _page_gone(part)
        if part.answer_truncated and action.cut_answers != CutAnswers.KEEP:
            raise AnswerCut(self._cut_part_message(action, label, plan))
        return part.response_text, part.answer_truncated

    @staticmethod
    def _cut_part_message(action: LLMAction, label: str, plan) -> str:
        from .chunking import PART_TOKENS

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

    # -- structured output and candidates ------------------------------------------------

    @staticmethod
    def _record_call(interaction: LLMInteraction, result, *, first: bool) -> None:
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

    @staticmethod
    def single_request(
        action: LLMAction, messages: list[dict], max_chars: int | None, count: int = 1
    ):
        """The request of a one-field call asking for ``count`` answers: in one call with
        ``n`` where the model takes it (else the run sends it ``count`` times)."""
        from .providers import build_request, supports_n

        request = build_request(action, messages, max_chars=max_chars)
        if count > 1 and supports_n(request.model):
            request.n = count
        return request

    def part_messages(self, prepared: PreparedRun, part: str) -> list[dict[str, str]]:
        """The messages of a map-reduce action's call on one ``part`` of its source."""
        action = prepared.action
        return self.render_messages(
            action, {**prepared.variables, "source": part, action.source_field: part}
        )

    def plan(self, prepared: PreparedRun, working_obj: Any, candidates: int = 1) -> PlannedRequest:
        """The first request a run of ``prepared`` sends (built by the code the run uses to
        build it, without calling anything), for a run asking for ``candidates`` answers.

        Raises ``ConfigurationProblem`` as the run would, and the provider layer's errors (a
        key that is not set, a refused extra parameter) from building the request.
        """
        action = prepared.action
        if action.is_structured:
            from .structured import structured_request

            self._check_whole(prepared)
            try:
                request, _schema = structured_request(action, type(working_obj), prepared.messages)
            except PathError as e:
                raise ConfigurationProblem(str(e)) from e
            return PlannedRequest(request)
        max_chars = outputs.answer_max_chars(type(working_obj), action.target_field)
        parts = None
        if action.long_content == LongContent.MAP_REDUCE:
            parts = self.split_source(prepared)
        if parts:  # one candidate: each part is a call (as _map_reduce makes them)
            request = self.single_request(action, self.part_messages(prepared, parts[0]), None)
            request.max_tokens = self.reduce_plan(prepared).part_tokens  # as _part_call sends
            return PlannedRequest(request, parts=len(parts))
        count = max(candidates or 1, 1)
        request = self.single_request(action, prepared.messages, max_chars, count)
        return PlannedRequest(request, calls=1 if request.n == count else count)

    def _call_single(
        self, action: LLMAction, working_obj: Any, prepared: PreparedRun, interaction, count: int
    ) -> None:
        """One field: call (asking for ``count`` candidates), check and set the answer.

        One candidate goes through :meth:`answer` (map-reduce included); several are asked
        for in one call with ``n`` where the model supports it, else in ``count`` calls. A
        map-reduce action whose source must be split offers one candidate.
        """
        from . import asking

        try:
            interaction.previous_value = outputs.read_field_value(working_obj, action.target_field)
        except PathError as e:
            raise ConfigurationProblem(str(e)) from e
        max_chars = outputs.answer_max_chars(type(working_obj), action.target_field)
        if (
            count > 1
            and action.long_content == LongContent.MAP_REDUCE
            and self.split_source(prepared)
        ):
            count = 1
        texts: list[str] = []
        calls = 0
        if count <= 1:
            texts.append(self.answer(prepared, interaction, max_chars=max_chars).text)
            calls = count = 1
            self.refuse_cut_answer(action, interaction)
        else:
            request = self.single_request(action, prepared.messages, max_chars, count)
            interaction.messages = prepared.messages
            interaction.parameters = request.public_parameters()
        cut: list[bool] = []
        while len(texts) < count:
            # (Only the first call may come from the cache: the next ones ask for other
            # answers to the same request.)
            ask = asking.ask(request, action, interaction, cache=calls == 0)
            result = received(ask, interaction)
            self._record_call(interaction, result, first=calls == 0)
            calls += 1
            for text, text_cut in result.answers():
                texts.append(text)
                cut.append(text_cut)
            if request.n > 1 and calls >= 1 and len(texts) < count:
                request.n = 1  # the server ignored n: make the remaining calls one by one
            if calls >= count:
                break
        if count > 1:
            interaction.parameters = {**interaction.parameters, "candidates": count}
            interaction.parameters["calls"] = calls
            offered = list(zip(texts[:count], cut[:count], strict=True))
            interaction.answer_truncated = any(text_cut for _text, text_cut in offered)
            if action.cut_answers != CutAnswers.KEEP and not all(c for _t, c in offered):
                # Refusing cut answers: offer the complete suggestions only.
                texts = [text for text, text_cut in offered if not text_cut]
                interaction.answer_truncated = False
            self.refuse_cut_answer(action, interaction)
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

    def _check_whole(self, prepared: PreparedRun) -> None:
        """An action filling several fields sends its source whole: refuse one that must be
        split (map-reduce over a long source) before any call."""
        if prepared.action.long_content == LongContent.MAP_REDUCE and self.split_source(prepared):
            raise ConfigurationProblem(
                _(
                    "The content is too long for the model's context window, and an action "
                    "that fills several fields cannot split it into parts. Shorten the source "
                    "or choose “truncate” for long content."
                )
            )

    def _call_structured(
        self, action: LLMAction, working_obj: Any, prepared: PreparedRun, interaction
    ) -> None:
        """Several fields from one JSON answer, with one repair round-trip if it is unusable."""
        from . import asking
        from .structured import (
            StructuredError,
            apply_answer,
            parse_answer,
            repair_message,
            structured_request,
        )

        self._check_whole(prepared)
        mapping = action.output_fields
        try:
            interaction.previous_values = {
                name: outputs.read_field_value(working_obj, name) for name in mapping.values()
            }
            request, schema = structured_request(action, type(working_obj), prepared.messages)
        except PathError as e:
            raise ConfigurationProblem(str(e)) from e
        messages = request.messages
        interaction.messages = messages
        interaction.parameters = request.public_parameters()
        truncate = bool(get_setting("TRUNCATE_LONG_OUTPUT"))
        for attempt in range(2):
            result = received(asking.ask(request, action, interaction), interaction)
            self._record_call(interaction, result, first=attempt == 0)
            if attempt:
                interaction.response_text += "\n\n" + result.text
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
                written = apply_answer(working_obj, mapping, data, truncate=truncate)
            except StructuredError as e:
                if e.code == "truncated" or attempt:
                    message = e.message
                    if attempt:
                        message = _(
                            "The model's answer was still unusable after one repair: %(error)s"
                        ) % {"error": e.message}
                    raise OutputRejected(message, code=e.code) from e
                messages = [
                    *messages,
                    {"role": "assistant", "content": result.text},
                    {"role": "user", "content": repair_message(e, schema)},
                ]
                request.messages = messages
                interaction.messages = messages
                interaction.parameters = {**interaction.parameters, "repaired": True}
                continue
            interaction.output_values = written
            interaction.output_value = json.dumps(written, ensure_ascii=False)
            return

    # -- stored answers ----------------------------------------------------------------------

    def _store_answer(
        self, interaction: LLMInteraction, on_answer: Callable[[LLMInteraction], None] | None
    ) -> None:
        """Commit the paid answer before anything else can fail (status "answered")."""
        interaction.status = InteractionStatus.ANSWERED
        interaction.outcome = InteractionOutcome.NONE

        def store() -> None:
            gone = _detach_deleted(interaction)
            if gone:
                interaction.status = InteractionStatus.ERROR
                interaction.error_code = PageGone.code
                interaction.error_message = str(_page_gone())
            interaction.save()
            if on_answer is not None and not gone:
                on_answer(interaction)

        try:
            db.write(store, what="storing an answer")
        except Exception as e:
            if db.is_busy_error(e) or not refused_content(e):
                raise
            logger.exception("The answer of %s could not be stored", interaction.action_name)
            error = not_stored(e)
            self._record_failure(interaction, error, time.perf_counter())
            raise error from e
        if interaction.status == InteractionStatus.ERROR:
            logger.warning("LLM action %s: the page was deleted", interaction.action_name)
            raise _page_gone(interaction)
        answer_stored.send(sender=type(self), interaction=interaction)

    def write_answer(
        self,
        interaction: LLMInteraction,
        obj: Any,
        user=None,
        *,
        action: LLMAction | None = None,
        working_obj: Any = None,
        on_success: Callable[[LLMInteraction], None] | None = None,
    ) -> LLMInteraction:
        """Write a stored answer as a new draft of ``obj``; no model is called.

        In one transaction that locks the object's row: the object is read again; if it was
        deleted, or is now locked, in moderation, or not editable by ``user``, nothing is
        written and the interaction keeps its answer with the reason (status "answered", or
        "error" for a deleted page) and the matching error is raised. If the newest revision
        is still the one the run read (``interaction.base_revision``), ``working_obj`` (the
        answer already applied) is saved; otherwise only the target field of the newest
        revision changes, and the interaction is marked ``rebased``. A busy database retries
        the write, never the call; if it stays busy the answer stays stored
        (:class:`WriteFailed`). Only the interaction's ``WRITE_FIELDS`` are saved: the answer
        itself was stored before.
        """
        action = action if action is not None else interaction.action
        target_field = interaction.target_field or (action.target_field if action else "")
        model = type(obj.specific if isinstance(obj, Page) else obj)

        def write() -> None:
            # (_checked_target holds the page's row: only the revisions and action are asked,
            # with its lock check.)
            page_locked = interaction.page_id == obj.pk
            linked = _linked_rows(interaction, page_locked=page_locked)
            target, rebased, found = _checked_target(
                model,
                obj.pk,
                user,
                working_obj,
                interaction.base_revision_id,
                exists=linked if "page" not in linked else None,
            )
            if target is not working_obj:
                try:
                    if interaction.output_values:
                        # A structured answer: every mapped field, and nothing else.
                        for name, value in interaction.output_values.items():
                            interaction.previous_values[name] = outputs.read_field_value(
                                target, name
                            )
                            outputs.set_output_value(target, name, value)
                    else:
                        interaction.previous_value = outputs.read_field_value(target, target_field)
                        outputs.set_output_value(target, target_field, interaction.output_value)
                except PathError as e:
                    raise ConfigurationProblem(str(e)) from e
            # The run's own copy was validated before the transaction (below); a newer
            # revision the answer was rebased onto is validated here.
            revision = self._save_draft(
                target,
                user,
                action,
                clean=target is not working_obj,
                written=list(interaction.output_values or {}) or [target_field],
            )
            _detach_deleted(interaction, page_locked=page_locked, known=(linked, found))
            interaction.revision = revision
            interaction.rebased = rebased
            interaction.outcome = InteractionOutcome.DRAFTED
            interaction.status = InteractionStatus.SUCCESS
            interaction.error_code = interaction.error_message = ""
            # The answer itself is stored already: only what this write changes is saved.
            rowstate.update_row(interaction, WRITE_FIELDS)
            if on_success is not None:
                on_success(interaction)
            log_generated(target, user, revision, action, interaction)

        try:
            if working_obj is not None:
                # Validate before taking the write lock (its reads need no lock: the row
                # lock below still decides whether this copy is the one written).
                self._validate_draft(working_obj)
            db.write(write, what="writing a draft")
        except LLMActionError as e:
            self._keep_answer(interaction, e)
            raise
        except Exception as e:
            if db.is_busy_error(e):
                error = WriteFailed(
                    _(
                        "The answer is stored, but the draft could not be saved because the "
                        "database stayed busy. Use “Apply stored answer” to write it without "
                        "calling the model again."
                    )
                )
            else:
                logger.exception("Writing the answer of interaction %s failed", interaction.pk)
                error = WriteFailed(
                    _(
                        "The answer is stored, but the draft could not be saved (%(type)s). "
                        "Use “Apply stored answer” to write it without calling the model again."
                    )
                    % {"type": type(e).__name__}
                )
            self._keep_answer(interaction, error)
            raise error from e
        return interaction

    def write_run(
        self,
        run: LLMRun,
        obj: Any,
        user,
        writes: list[tuple[LLMInteraction, LLMAction]],
        *,
        working_obj: Any = None,
        on_success: Callable[[LLMInteraction], None] | None = None,
    ) -> LLMRun:
        """Write the stored answers of a run's ``writes`` into one new draft of ``obj``.

        The same rules as :meth:`write_answer`: one transaction under the object's row lock;
        deleted, locked, in moderation or no longer editable means nothing is written (the
        answers stay stored); if the newest revision is no longer the one the run read, the
        written fields are set on the newest revision (``rebased``). ``on_success`` gets the
        last written interaction inside that transaction.
        """
        from django.utils import timezone

        model = type(obj.specific if isinstance(obj, Page) else obj)
        last_interaction, last_action = writes[-1]

        def write() -> None:
            target, rebased, _found = _checked_target(
                model, obj.pk, user, working_obj, run.base_revision_id
            )
            if target is not working_obj:
                try:
                    for interaction, _action in writes:
                        if interaction.output_values:  # a step filling several fields
                            for name, value in interaction.output_values.items():
                                interaction.previous_values[name] = outputs.read_field_value(
                                    target, name
                                )
                                outputs.set_output_value(target, name, value)
                            continue
                        interaction.previous_value = outputs.read_field_value(
                            target, interaction.target_field
                        )
                        outputs.set_output_value(
                            target, interaction.target_field, interaction.output_value
                        )
                except PathError as e:
                    raise ConfigurationProblem(str(e)) from e
            written = [
                name
                for interaction, _action in writes
                for name in (list(interaction.output_values or {}) or [interaction.target_field])
            ]
            revision = self._save_draft(target, user, last_action, written=written)
            for interaction, _action in writes:
                _detach_deleted(interaction, page_locked=interaction.page_id == obj.pk)
                interaction.revision = revision
                interaction.rebased = rebased
                interaction.outcome = InteractionOutcome.DRAFTED
                interaction.status = InteractionStatus.SUCCESS
                interaction.error_code = interaction.error_message = ""
                interaction.save()
            run.revision = revision
            run.status = RunStatus.SUCCESS
            run.error_message = ""
            run.finished_at = timezone.now()
            run.save()
            if on_success is not None:
                on_success(last_interaction)
            for interaction, action in writes:
                log_generated(target, user, revision, action, interaction)

        try:
            db.write(write, what="writing a run's draft")
        except Exception as e:
            if isinstance(e, LLMActionError):
                error = e
            else:
                logger.exception("Writing the draft of run %s failed", run.pk)
                error = WriteFailed(
                    _("The answers are stored, but the draft could not be saved (%(type)s).")
                    % {"type": type(e).__name__}
                )
            for interaction, _action in writes:
                self._keep_answer(interaction, error)
            run.revision = None
            run.status = (
                RunStatus.ANSWERED
                if last_interaction.status == InteractionStatus.ANSWERED
                else RunStatus.ERROR
            )
            run.error_message = error.message
            run.finished_at = timezone.now()
            try:
                db.write(lambda: save_run(run), what="recording a run")
            except Exception:  # noqa: BLE001
                logger.exception("Could not record the end of run %s", run.pk)
            error.interaction = last_interaction
            if error is e:
                raise
            raise error from e
        return run

    def apply_stored(
        self,
        interaction: LLMInteraction,
        user=None,
        *,
        on_success: Callable[[LLMInteraction], None] | None = None,
    ) -> LLMInteraction:
        """Write the stored answer of ``interaction`` (status "answered") into a new draft of
        its page's newest revision, with zero model calls."""
        if interaction.status != InteractionStatus.ANSWERED:
            raise LLMActionError(
                _("This interaction has no stored answer waiting to be written."),
                code="nothing_stored",
                interaction=interaction,
            )
        if interaction.run_id is not None and interaction.step_index is not None:
            raise LLMActionError(
                _(
                    "This answer belongs to a pipeline run, whose answers are written together: "
                    "rerun the pipeline from its last step to write them without new calls."
                ),
                code="pipeline_answer",
                interaction=interaction,
            )
        obj = interaction.page.specific if interaction.page_id else interaction.content_object
        if obj is None:
            error = _page_gone(interaction)
            self._keep_answer(interaction, error)
            raise error
        return self.write_answer(interaction, obj, user, on_success=on_success)

    def _keep_answer(self, interaction: LLMInteraction, error: LLMActionError) -> None:
        """Record why a stored answer was not written; it stays applicable unless the page is
        gone (or the answer cannot be written at all)."""
        interaction.revision = None
        interaction.rebased = False
        interaction.error_code = error.code
        interaction.error_message = error.message
        if isinstance(error, PageGone):
            interaction.status = InteractionStatus.ERROR
        elif error.code in (OutputRejected.code, ConfigurationProblem.code, "invalid"):
            interaction.status = InteractionStatus.ERROR
        else:
            interaction.status = InteractionStatus.ANSWERED
        interaction.outcome = InteractionOutcome.NONE

        def save() -> None:
            _detach_deleted(interaction)
            interaction.save()

        try:
            db.write(save, what="recording a stored answer")
        except Exception:  # the answer row itself is already committed  # noqa: BLE001
            logger.exception("Could not record why interaction %s was not written", interaction.pk)
        error.interaction = interaction
        logger.warning(
            "LLM action %s: answer stored, not written (%s): %s",
            interaction.action_name,
            error.code,
            error.message,
        )

    def dry_run(
        self, action: LLMAction, obj: Any, user=None, *, candidates: int = 1
    ) -> PreparedRun:
        """What a run would send, without calling the model or saving anything (so a locked
        page, or one in moderation, is shown too: nothing is written to it).

        The messages are rendered and the first call's request is built (``planned``) by the
        code the run itself uses, so a structured action's schema instruction or
        ``response_format`` is there; ``messages`` are then that request's. ``candidates`` is
        how many answers the run asks for (the editor and "Test on a page": the action's
        candidates; bulk runs and the command: one). A request that cannot be built (its key
        is not set…) leaves ``planned`` empty and says why in ``request_error``: the run
        would stop there, before sending anything.
        """
        from .providers import ProviderError

        if isinstance(obj, Page):
            obj = obj.specific
        self.check(action, obj, user, locks=False)
        working_obj, _revision = working_copy(obj)
        prepared = self.prepare(action, working_obj)
        try:
            prepared.planned = self.plan(prepared, working_obj, candidates)
        except ProviderError as e:
            prepared.request_error = str(e)
        else:
            prepared.messages = prepared.planned.request.messages
        return prepared

    # -- helpers ---------------------------------------------------------------------------

    def _new_interaction(self, action, obj, user, trigger, base_revision) -> LLMInteraction:
        from django.contrib.contenttypes.models import ContentType

        saved = obj.pk is not None  # a page being created in the editor has no id yet
        # A pipeline step with its own prompt runs as an unsaved action: no action row (the
        # name, run and step say what ran), no prompt revision.
        transient = action.pk is None
        return LLMInteraction(
            action=None if transient else action,
            action_name=action.name,
            page=obj if isinstance(obj, Page) and saved else None,
            content_type=ContentType.objects.get_for_model(obj, for_concrete_model=False),
            object_id=str(obj.pk) if saved else "",
            base_revision=base_revision,
            user=user if user is not None and user.is_authenticated else None,
            trigger=trigger,
            model=action.model,
            prompt_revision_id=None if transient else action.prompt.current_revision_id(),
            target_field=action.target_field,
        )

    @staticmethod
    def _save_draft(working_obj, user, action, *, clean: bool = True, written: Collection[str]):
        """``save_revision()`` of ``working_obj``; ``clean=False`` when it was validated
        already (:meth:`_validate_draft`). Only the ``written`` fields may differ from the
        revision ``working_obj`` was loaded from (see :mod:`drafts`)."""
        # A draft leaves the live row's content as it was, so Wagtail's reference index (built
        # from the live object) would be rebuilt unchanged: skip that work on every run.
        from wagtail.signal_handlers import disable_reference_index_auto_update

        try:
            # Called inside the write transaction: an error rolls it all back, so Wagtail's
            # atomic blocks need no savepoints of their own (two queries each).
            with (
                disable_reference_index_auto_update(),
                db.no_savepoints(),
                drafts.stored_form_kept(working_obj, written),
            ):
                return working_obj.save_revision(user=user, log_action=False, clean=clean)
        except Exception as e:  # a validation error on the draft: report, don't 500
            _raise_invalid_draft(e)
            raise

    @staticmethod
    def _validate_draft(working_obj) -> None:
        """The ``full_clean()`` that ``save_revision(clean=True)`` runs, as an
        :class:`OutputRejected` when the draft is invalid."""
        try:
            working_obj.full_clean()
        except Exception as e:
            _raise_invalid_draft(e)
            raise

    @staticmethod
    def _record_failure(interaction: LLMInteraction, error: LLMActionError, started) -> None:
        # Nothing to send is a skip, not an error (the report does not count it as one).
        skipped = error.code == SourceEmpty.code
        interaction.status = InteractionStatus.SKIPPED if skipped else InteractionStatus.ERROR
        interaction.error_code = error.code
        interaction.error_message = error.message
        interaction.revision = None
        interaction.outcome = InteractionOutcome.NONE
        if interaction.latency_ms is None:
            interaction.latency_ms = int((time.perf_counter() - started) * 1000)

        def save() -> None:
            if _detach_deleted(interaction) and error.code == "internal":
                interaction.error_code = PageGone.code
                interaction.error_message = str(_page_gone())
            interaction.save()

        write_logged(interaction, save, what="recording a failed run")
        error.interaction = interaction
        if error.code == SourceEmpty.code:
            # Nothing to send: the page is skipped (as a bulk job counts it), not a failure.
            logger.info(
                "LLM action %s skipped (%s): %s",
                interaction.action_name,
                error.code,
                error.message,
            )
            return
        logger.warning(
            "LLM action %s failed (%s): %s",
            interaction.action_name,
            error.code,
            error.message,
        )


def received(result, interaction: LLMInteraction):
    """The model's answer ``result`` with text no database can store cleaned (see
    :mod:`.storable`), so the answer, the interaction and the draft all hold the same text;
    what was cleaned is noted on ``interaction``."""
    from collections import Counter

    from .storable import clean_text, describe, merge_notes

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


def refused_content(error: BaseException) -> bool:
    """Whether the database refused a row for what it holds (text it cannot encode, a value
    it cannot take), rather than because it was busy or a linked row is gone."""
    from django.db import DataError

    return isinstance(error, ValueError | DataError) and not db.is_busy_error(error)


def not_stored(error: BaseException) -> AnswerNotStored:
    return AnswerNotStored(
        _(
            "The model answered, but the database could not store the answer (%(type)s). The "
            "call is logged with its tokens and cost; the content was not changed."
        )
        % {"type": type(error).__name__}
    )


def write_logged(interaction: LLMInteraction, save: Callable[[], None], *, what: str) -> bool:
    """``db.write(save)`` for a write of ``interaction``. If the database refuses the row
    for its content (:func:`refused_content`), the row is saved again without its texts
    (the call's model, tokens, cost and the reason are kept) and False is returned: a paid
    call is always logged."""
    try:
        db.write(save, what=what)
        return True
    except Exception as e:
        if not refused_content(e):
            raise
        logger.exception("The database refused the texts of a call of %s", interaction.action_name)
        _without_texts(interaction, e)
        db.write(save, what=what)
        return False


def _without_texts(interaction: LLMInteraction, error: BaseException) -> None:
    """Leave out every text of ``interaction`` (what the database refused), saying so."""
    from .storable import merge_notes

    interaction.messages = []
    interaction.response_text = interaction.output_value = interaction.previous_value = ""
    interaction.output_values, interaction.previous_values = {}, {}
    interaction.field_outcomes, interaction.candidates = {}, []
    note = _(
        "The database refused this call's texts (%(type)s), so they are left out; its "
        "tokens and cost are kept."
    ) % {"type": type(error).__name__}
    limit = LLMInteraction._meta.get_field("storage_note").max_length
    interaction.storage_note = merge_notes(interaction.storage_note, note, limit)


def save_run(run: LLMRun) -> None:
    """Save ``run`` (inside a write transaction), first clearing its links to rows deleted
    while it ran (its page and their revisions, its pipeline, the run it reran), one query."""
    from wagtail.models import Revision

    rows: dict[str, tuple[type, Any]] = {}
    if run.page_id is not None:
        rows["page"] = (Page, run.page_id)
    for name in ("base_revision", "revision"):
        if getattr(run, f"{name}_id") is not None:
            rows[name] = (Revision, getattr(run, f"{name}_id"))
    if run.pipeline_id is not None:
        from .models import LLMPipeline

        rows["pipeline"] = (LLMPipeline, run.pipeline_id)
    if run.rerun_of_id is not None:
        rows["rerun_of"] = (LLMRun, run.rerun_of_id)
    for name in rows.keys() - rowstate.existing(rows):
        setattr(run, name, None)
    run.save()


def _raise_invalid_draft(error: Exception) -> None:
    """A validation error on the draft becomes a readable :class:`OutputRejected`."""
    from django.core.exceptions import ValidationError

    if isinstance(error, ValidationError):
        raise OutputRejected(
            _("The draft could not be saved: %(errors)s") % {"errors": "; ".join(error.messages)},
            code="invalid",
        ) from error


def _checked_target(
    model, pk, user, working_obj: Any, base_revision_id, *, exists: dict | None = None
) -> tuple[Any, bool, frozenset[str] | None]:
    """Inside a write transaction: lock the object's row and check it again (it still exists,
    the user may still edit it, no lock or moderation stops it), then return what to write the
    answer into and whether that is a newer revision than the run read (``rebased``): the run's
    own working copy if nothing was saved since, else the newest revision. The lock check also
    asks which rows of ``exists`` (see ``rowstate.existing``) still exist: the third value
    (None if none were asked)."""
    fresh = _lock_row(model, pk)
    if fresh is None:
        raise _page_gone()
    # The user as they are now (a long job holds the user object with its caches).
    current_user = _reload_user(user)
    if user is not None and (current_user is None or not can_edit(current_user, fresh)):
        raise ActionNotAllowed()
    flags = rowstate.lock_flags(fresh, exists=exists) if exists else None
    lock = _lock_reason(current_user, fresh, flags)
    if lock is not None:
        raise lock
    found = flags.existing if flags is not None else None
    latest_id = getattr(fresh, "latest_revision_id", None)
    if working_obj is not None and base_revision_id is not None and latest_id == base_revision_id:
        return working_obj, False, found
    return drafts.latest_as_object(fresh), working_obj is not None, found


def page_deleted(interaction: LLMInteraction) -> bool:
    """Whether the page ``interaction`` was run on has been deleted (one query)."""
    return (
        interaction.page_id is not None and not Page.objects.filter(pk=interaction.page_id).exists()
    )


def page_gone(interaction: LLMInteraction | None = None) -> PageGone:
    """The error of a run whose page was deleted while the model answered."""
    return _page_gone(interaction)


def _page_gone(interaction: LLMInteraction | None = None) -> PageGone:
    return PageGone(
        _(
            "The page was deleted while the model was answering. The answer is kept in this "
            "log; nothing was written."
        ),
        interaction=interaction,
    )


def _detach_deleted(
    interaction: LLMInteraction,
    *,
    page_locked: bool = False,
    known: tuple[dict, frozenset[str] | None] | None = None,
) -> bool:
    """Clear references to a page (and revisions, an action) deleted meanwhile, so the
    interaction can still be saved; one query. Locks the page row against deletion until the
    transaction ends, unless the caller holds it (``page_locked``). ``known`` is ``(rows,
    found)``: rows (from :func:`_linked_rows`) this transaction has asked about already, and
    those found; if they are still the rows to ask about, no query is made. Returns whether
    the page is gone."""
    rows = _linked_rows(interaction, page_locked=page_locked)
    if known is not None and known[1] is not None and known[0] == rows:
        found = known[1]
    else:
        found = rowstate.existing(rows, lock="page" if "page" in rows else None)
    for name in rows.keys() - found:
        setattr(interaction, name, None)
    return "page" in rows and "page" not in found


def _linked_rows(interaction: LLMInteraction, *, page_locked: bool = False) -> dict:
    """The rows ``interaction`` links to that may be deleted while it runs (name → ``(model,
    pk)``): its page (unless the caller holds its row, ``page_locked``), revisions, action."""
    from wagtail.models import Revision

    rows: dict[str, tuple[type, Any]] = {}
    if interaction.page_id is not None and not page_locked:
        rows["page"] = (Page, interaction.page_id)
    for name in ("base_revision", "revision"):
        if getattr(interaction, f"{name}_id") is not None:
            rows[name] = (Revision, getattr(interaction, f"{name}_id"))
    if interaction.action_id is not None:
        # The action may be deleted while the model answers; the row keeps its name.
        rows["action"] = (LLMAction, interaction.action_id)
    return rows


def _reload_user(user):
    if user is None or user.pk is None:
        return user
    from django.contrib.auth import get_user_model

    # (request.user is a lazy object: ask the user model, not its type)
    return get_user_model()._default_manager.filter(pk=user.pk, is_active=True).first()


def _lock_row(model, pk):
    """``model`` row ``pk``, read again under a row lock (PostgreSQL; on SQLite the write
    transaction already holds the database's write lock); None if it was deleted."""
    lock = False
    if db.connections["default"].features.has_select_for_update:
        # Lock only the base row (a page's wagtailcore_page row): enough to order writers.
        base = model._meta.get_parent_list()[-1] if model._meta.get_parent_list() else model
        if base is not model:
            rowstate.existing({"row": (base, pk)}, lock="row")
        else:
            lock = True
    return rowstate.read_row(model, pk, lock=lock)


def _lock_reason(user, obj: Any, flags: rowstate.LockFlags | None = None) -> LLMActionError | None:
    """A :class:`PageLocked` (or :class:`PageInModeration`) if ``obj`` cannot be written now
    (``flags``: what ``rowstate.lock_flags`` found for it in this transaction, if asked)."""
    lock = rowstate.get_lock(obj, flags=flags)
    if lock is None:
        return None
    if user is not None and not lock.for_user(user):
        return None
    from wagtail.locks import WorkflowLock

    if isinstance(lock, WorkflowLock):
        message = (
            _plain(lock.get_message(user))
            if user is not None
            else _("The page is in moderation, so the answer was not written.")
        )
        return PageInModeration(message or _("The page is in moderation."))
    message = _plain(lock.get_message(user)) if user is not None else _("The page is locked.")
    return PageLocked(message or _("The page is locked."))


def _plain(message) -> str:
    """Wagtail's lock messages are HTML (the user's name in <b>); ours are plain text."""
    return html.unescape(strip_tags(str(message or "")))


def log_generated(obj, user, revision, action: LLMAction | None, interaction: LLMInteraction):
    """The page-history entry for an answer written into ``revision``.

    Wagtail's ``log()`` saves the entry after ``full_clean()``, which proves with one query per
    foreign key that the page, the revision and the content type exist; here they are the row
    this transaction locked, the revision it just saved and a cached content type. For a page
    the entry is built as ``log()`` builds it and validated without those queries; other
    objects go through ``log()``.
    """
    data = {
        "llm_action": {
            "id": action.pk if action else interaction.action_id,
            "name": action.name if action else interaction.action_name,
        },
        "interaction_id": interaction.pk,
        "target_field": ", ".join(interaction.output_values or {})
        or interaction.target_field
        or (action.target_field if action else ""),
    }
    from django.contrib.contenttypes.models import ContentType
    from django.db.models import Model
    from django.utils import timezone
    from wagtail.log_actions import get_active_log_context
    from wagtail.log_actions import registry as log_registry
    from wagtail.models import PageLogEntry

    log_registry.scan_for_actions()
    if (
        not isinstance(obj, Page)
        or log_registry.get_log_model_for_instance(obj) is not PageLogEntry
    ):
        log(
            instance=obj,
            action=LOG_ACTION,
            user=user,
            revision=revision,
            content_changed=True,
            data=data,
        )
        return
    context = get_active_log_context()
    entry = PageLogEntry(
        content_type=ContentType.objects.get_for_model(obj, for_concrete_model=False),
        label=PageLogEntry.objects.get_instance_title(obj),
        action=LOG_ACTION,
        timestamp=timezone.now(),
        data=data,
        user=user or context.user,
        uuid=context.uuid,
        page=obj,
        revision=revision,
        content_changed=True,
    )
    entry.full_clean(exclude=["content_type", "page", "revision", "user"])
    Model.save(entry)  # PageLogEntry.save() would run full_clean() again, with its queries


def run_action(action: LLMAction, obj: Any, user=None, **kwargs) -> LLMInteraction:
    """Shortcut for ``LLMService().run(...)``."""
    return LLMService().run(action, obj, user, **kwargs)


__all__ = ["LLMService", "PlannedRequest", "PreparedRun", "run_action", "LOG_ACTION", "SourceEmpty"]
