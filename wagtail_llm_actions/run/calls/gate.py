"""One model call as every run makes it: from the response cache when the action allows,
else within the budgets that apply (reserved before the call, settled after it)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from ... import budgets, response_cache
from ...exceptions import BudgetExceeded

if TYPE_CHECKING:
    from ...models import LLMAction, LLMInteraction
    from ...providers.base import CompletionRequest, CompletionResult


def ask(
    request: CompletionRequest,
    action: LLMAction | None,
    interaction: LLMInteraction,
    *,
    cache: bool = True,
) -> CompletionResult:
    """The answer to ``request`` for ``interaction``'s run; raises ProviderError, or
    :class:`BudgetExceeded` before anything is sent (the interaction then shows 0 tokens).
    ``cache=False``: always ask the model (another answer to the same request)."""
    from ...providers import ProviderError, complete

    key = response_cache.cache_key(request) if cache and response_cache.enabled(action) else ""
    if key and not response_cache.is_bypassed():
        hit = response_cache.lookup(key)
        if hit is not None:
            return hit
    applying = budgets.applicable(action, interaction.user_id)
    reservation = None
    if applying:
        tokens, cost = budgets.estimate(request)
        try:
            reservation = budgets.reserve(applying, request, tokens=tokens, cost=cost)
        except BudgetExceeded:
            interaction.prompt_tokens = interaction.completion_tokens = 0
            interaction.total_tokens = 0
            interaction.cost = Decimal(0)
            raise
    result = None
    try:
        result = complete(request)
    except ProviderError as e:
        # A stream that stopped or broke half way: what was received is paid for.
        result = getattr(e, "partial", None)
        if result is not None:
            interaction.prompt_tokens = result.prompt_tokens
            interaction.completion_tokens = result.completion_tokens
            interaction.total_tokens = result.total_tokens
            interaction.cost = result.cost
        raise
    finally:
        if reservation is not None:
            budgets.settle(reservation, result)
    if key:
        response_cache.store(key, result)
    return result
