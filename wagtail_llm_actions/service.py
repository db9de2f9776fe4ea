"""Run an action on an object: the one code path shared by the editor, bulk jobs and commands.

::

    from wagtail_llm_actions.service import LLMService

    interaction = LLMService().run(action, page, user=request.user)
    interaction.revision  # the new draft revision holding the answer

``run`` never touches the live page: it starts from the latest revision, writes the answer
into the target field and saves a new *draft* revision. Every call that reaches the point of
calling a model (and every bad-input failure after the permission check) is recorded as an
``LLMInteraction``; failures raise an ``LLMActionError`` whose ``interaction`` is that row.

:class:`LLMService` only puts the steps of :mod:`.run` together: check (:mod:`.run.access`),
prepare (:mod:`.run.prepare`), call (:mod:`.run.calls`), record (:mod:`.run.recording`),
write (:mod:`.run.drafts`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from wagtail.models import Page

from . import db, snippets
from .exceptions import CallNotStarted, LLMActionError, SourceEmpty
from .models import (
    InteractionOutcome,
    InteractionStatus,
    InteractionTrigger,
    LLMAction,
    LLMInteraction,
    LLMRun,
)
from .run import access, calls, drafts, recording
from .run.access import can_edit, lock_message, lock_problem
from .run.calls import map_reduce
from .run.calls.plan import PlannedRequest, plan
from .run.drafts import WRITE_FIELDS
from .run.prepare import PreparedRun, content_hash, inputs_hash, prepare, working_copy
from .run.recording import LOG_ACTION, log_generated
from .snippets import direct

logger = logging.getLogger(__name__)


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
        access.check(action, obj, user, locks=locks)

    def prepare(
        self, action: LLMAction, obj: Any, steps: dict[str, str] | None = None
    ) -> PreparedRun:
        """Extract, render and hash; raises ``SourceEmpty``/``ConfigurationProblem``."""
        return prepare(action, obj, steps)

    def split_source(self, prepared: PreparedRun) -> list[str] | None:
        """The source in parts that fit the model's context window (map-reduce), or None."""
        return map_reduce.split_source(prepared)

    def reduce_plan(self, prepared: PreparedRun):
        """How a map-reduce run of ``prepared`` uses the model's context window."""
        return map_reduce.reduce_plan(prepared)

    def plan(self, prepared: PreparedRun, working_obj: Any, candidates: int = 1) -> PlannedRequest:
        """The first request a run of ``prepared`` sends (see :func:`.run.calls.plan.plan`)."""
        return plan(prepared, working_obj, candidates)

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
        if isinstance(obj, Page):
            obj = obj.specific
        self.check(action, obj, user)
        base_revision = None
        if working_obj is None:
            working_obj, base_revision = self.working_copy(obj)
        interaction = recording.new_interaction(action, obj, user, trigger, base_revision)
        candidates = action.candidates if not save and (action.candidates or 1) > 1 else 1
        strategy = calls.choose(action, candidates=candidates, on_run_started=self.on_run_started)
        started = time.perf_counter()
        try:
            prepared = prepare(action, working_obj)
            interaction.messages = prepared.messages
            interaction.source_hash = prepared.inputs_hash
            interaction.source_truncated = prepared.truncated
            with call_slot() if call_slot is not None else contextlib.nullcontext():
                strategy(working_obj, prepared, interaction)
            if not save:
                db.write(lambda: _record_pending(interaction, on_success), what="editor answer")
        except CallNotStarted:
            raise  # nothing was sent: nothing to record
        except Exception as e:
            error = recording.fail(interaction, recording.run_error(action, obj, e), started)
            if error is e:
                raise
            raise error from e
        if save and snippets.writes_directly(obj):
            direct.write(
                interaction,
                obj,
                user,
                action,
                on_answer=on_answer,
                on_success=on_success,
                sender=type(self),
            )
        elif save:
            self._write(interaction, obj, user, action, working_obj, on_answer, on_success)
        recording.end_run(interaction)
        logger.info(
            "LLM action %s on %s: %s tokens, %s ms",
            action.slug,
            interaction.object_id,
            interaction.total_tokens,
            interaction.latency_ms,
        )
        return interaction

    @staticmethod
    def working_copy(obj: Any) -> tuple[Any, Any]:
        """What a run reads and writes, and the revision it came from (see
        :func:`.run.prepare.working_copy`). A snippet's row is read again first (the caller's
        instance may predate its newest revision); without revisions, that row is the copy."""
        if snippets.writes_directly(obj):
            return snippets.fresh_copy(obj), None
        if snippets.is_snippet(obj) and obj.pk is not None:
            obj = snippets.fresh_copy(obj)
        return working_copy(obj)

    def _write(self, interaction, obj, user, action, working_obj, on_answer, on_success) -> None:
        """Store the paid answer, then write it as a draft (ending a map-reduce run if not)."""
        try:
            drafts.store_answer(interaction, on_answer, sender=type(self))
            drafts.write_answer(
                interaction,
                obj,
                user,
                action=action,
                working_obj=working_obj,
                on_success=on_success,
            )
        except LLMActionError as e:
            recording.end_run(interaction, e)
            raise

    # -- stored answers and dry runs ---------------------------------------------------------

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
        """Write a stored answer as a new draft of ``obj`` (see :func:`.run.drafts.write_answer`);
        no model is called."""
        return drafts.write_answer(
            interaction, obj, user, action=action, working_obj=working_obj, on_success=on_success
        )

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
        """Write the stored answers of a run's ``writes`` into one new draft of ``obj`` (see
        :func:`.run.drafts.write_run`)."""
        return drafts.write_run(
            run, obj, user, writes, working_obj=working_obj, on_success=on_success
        )

    def apply_stored(
        self,
        interaction: LLMInteraction,
        user=None,
        *,
        on_success: Callable[[LLMInteraction], None] | None = None,
    ) -> LLMInteraction:
        """Write the stored answer of ``interaction`` (status "answered") into a new draft of
        its page's newest revision, with zero model calls."""
        return drafts.apply_stored(interaction, user, on_success=on_success)

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
        working_obj, _revision = self.working_copy(obj)
        prepared = prepare(action, working_obj)
        try:
            prepared.planned = plan(prepared, working_obj, candidates)
        except ProviderError as e:
            prepared.request_error = str(e)
        else:
            prepared.messages = prepared.planned.request.messages
        return prepared


def _record_pending(
    interaction: LLMInteraction, on_success: Callable[[LLMInteraction], None] | None
) -> None:
    """An answer for the editor's review (``save=False``): recorded, nothing written."""
    interaction.outcome = InteractionOutcome.PENDING
    interaction.status = InteractionStatus.SUCCESS
    if recording.detach_deleted(interaction):
        raise recording.page_gone()
    interaction.save()
    if on_success is not None:
        on_success(interaction)


def run_action(action: LLMAction, obj: Any, user=None, **kwargs) -> LLMInteraction:
    """Shortcut for ``LLMService().run(...)``."""
    return LLMService().run(action, obj, user, **kwargs)


__all__ = [
    "LOG_ACTION",
    "WRITE_FIELDS",
    "LLMService",
    "PlannedRequest",
    "PreparedRun",
    "SourceEmpty",
    "can_edit",
    "content_hash",
    "inputs_hash",
    "lock_message",
    "lock_problem",
    "log_generated",
    "run_action",
    "working_copy",
]
