"""What translating a page into a locale will send and cost, read before anything is sent:
segments to translate, segments unchanged (skipped) or kept for review, tokens and cost."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ..exceptions import LLMActionError
from . import request
from .run import plan_for, request_messages


@dataclass
class LocaleEstimate:
    send: int = 0
    unchanged: int = 0
    review: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal | None = None
    #: Why the page cannot be translated into the locale ("" if it can).
    problem: str = ""


def estimate(action, page, locale, user=None) -> LocaleEstimate:
    """The estimate of translating ``page`` into ``locale`` with ``action`` (no call)."""
    from .. import estimates

    try:
        planned = plan_for(action, page, locale, user)
    except LLMActionError as e:
        return LocaleEstimate(problem=e.message)
    plan = planned.plan
    result = LocaleEstimate(
        send=len(plan.send), unchanged=len(plan.unchanged), review=len(plan.review)
    )
    if not plan.send:
        return result
    sent = request.prepare(plan.send)
    messages = request_messages(action, planned.source, locale, sent)
    prompt = estimates.count_message_tokens(messages)
    # The answer holds every segment again, in another language: about as long as it.
    answer = estimates.count_message_tokens(messages[1:])
    found = estimates.estimate(action.model, prompt, 1, max_tokens=action.max_tokens or answer)
    result.prompt_tokens, result.completion_tokens = found.prompt_tokens, found.completion_tokens
    result.cost = found.cost
    return result
