"""What translating a page into a locale will send and cost, read before anything is sent:
segments to translate, segments unchanged (skipped) or kept for review, tokens and cost."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ..exceptions import LLMActionError
from ..run.prepare import working_copy
from . import memory, request
from .run import ParentNotTranslated, Planned, Read, plan_for, request_messages
from .segments import segments


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


def estimate(action, page, locale, user=None, *, after_parent: bool = False) -> LocaleEstimate:
    """The estimate of translating ``page`` into ``locale`` with ``action`` (no call).

    ``after_parent``: the page's parent is translated first (in the same job), so a parent
    with no translation yet is no problem: the page is estimated as a new translation."""
    from .. import estimates

    try:
        planned = plan_for(action, page, locale, user)
    except ParentNotTranslated as e:
        if not after_parent:
            return LocaleEstimate(problem=e.message)
        source = working_copy(page.specific)[0]
        planned = Planned(source, Read(None, None, {}), memory.plan(segments(source), None, {}))
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
