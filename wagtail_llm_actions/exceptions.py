"""The app's own error types. Views turn them into messages; nothing leaks a traceback."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.utils.translation import gettext as _

if TYPE_CHECKING:
    from .models import LLMInteraction


class LLMActionError(Exception):
    """A run could not complete. ``message`` is written for an editor to act on."""

    code = "error"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool | None = None,
        interaction: LLMInteraction | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable
        self.interaction = interaction

    def __str__(self) -> str:
        return self.message


class ActionNotAllowed(LLMActionError):
    code = "permission"

    def __init__(self, message: str | None = None, **kwargs) -> None:
        super().__init__(message or _("You do not have permission to edit this page."), **kwargs)


class PageLocked(LLMActionError):
    code = "locked"


class ActionNotApplicable(LLMActionError):
    code = "not_applicable"


class SourceEmpty(LLMActionError):
    code = "source_empty"


class ConfigurationProblem(LLMActionError):
    code = "configuration"


class OutputRejected(LLMActionError):
    code = "output"


class AnswerCut(OutputRejected):
    """The model stopped at ``max_tokens`` and the action refuses answers cut off there."""

    code = "answer_cut"


class ExtractionError(LLMActionError):
    """A block of the page could not be read as text; the message names the block."""

    code = "extraction"


class PageInModeration(PageLocked):
    """The page is in a moderation workflow that does not let this user edit it now."""

    code = "moderation"


class PageGone(LLMActionError):
    """The page was deleted (while the model was answering)."""

    code = "page_deleted"


class WriteFailed(LLMActionError):
    """The answer is stored on the interaction, but the draft could not be written.

    Retryable: a job writes the stored answer on its next attempt, with no model call.
    """

    code = "write_failed"
    retryable = True


class AnswerNotStored(LLMActionError):
    """The database refused to store the model's answer (beyond what the app cleans): the
    call is logged without its texts, with its tokens and cost, and nothing was written."""

    code = "not_stored"


class CallNotStarted(LLMActionError):
    """The run stopped before its model call was sent (the caller withdrew its slot):
    nothing was paid, so nothing is recorded."""

    code = "not_started"
    retryable = True


class BudgetExceeded(LLMActionError):
    """A budget that applies to the run cannot cover its next call (estimated before the call:
    the prompt's tokens and the answer at its token limit). Nothing was sent."""

    code = "budget"

    def __init__(self, message: str, *, budget=None, tokens=None, cost=None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.budget = budget
        #: What the refused call needed (tokens, and cost where the price is known).
        self.tokens = tokens
        self.cost = cost
