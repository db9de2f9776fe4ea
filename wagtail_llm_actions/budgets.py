"""Budgets, enforced before the call.

Before each model call the run's estimate (the prompt's tokens, the answer at its token
limit, priced where the model's price is known) is reserved against every budget that applies,
in one write transaction; a budget that cannot cover it refuses the call
(:class:`~.exceptions.BudgetExceeded`) and nothing is sent. After the call the reservation is
replaced by what the call really used. Overshoot is bounded by the calls in flight: a reserved
estimate is an upper bound of the answer's tokens, so only a prompt counted low (a provider's
tokenizer against ours) can pass a cap, by that difference for each call in flight. A worker
that dies mid-call leaves its reservation until it expires (the call's timeout plus a minute,
on the database's clock).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db.models import Q, Sum
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext as _

from . import db
from .exceptions import BudgetExceeded
from .formatting import format_cost

if TYPE_CHECKING:
    from .models import LLMAction, LLMBudget
    from .providers.base import CompletionRequest, CompletionResult

#: Answer tokens assumed for a request without a token limit.
DEFAULT_ANSWER_TOKENS = 4096
#: Seconds a reservation outlives its call's timeout (a dead worker's reservation lapses).
RESERVATION_MARGIN = 60


@dataclass
class Reservation:
    """The estimate held for one call against each applicable budget's period."""

    ids: list[int] = field(default_factory=list)
    usage_ids: list[int] = field(default_factory=list)


def applicable(action: LLMAction | None, user_id: int | None) -> list[LLMBudget]:
    """The enabled budgets a run of ``action`` started by user ``user_id`` counts against:
    one query."""
    from .models import LLMBudget

    scope = Q(action__isnull=True)
    if action is not None and action.pk:
        scope |= Q(action=action.pk)
    if user_id is not None:
        who = (Q(user__isnull=True) | Q(user=user_id)) & (
            Q(group__isnull=True) | Q(group__user=user_id)
        )
    else:
        who = Q(user__isnull=True, group__isnull=True)
    return list(LLMBudget.objects.filter(scope, who, enabled=True).order_by("pk"))


def period_start(budget: LLMBudget, today: datetime.date | None = None) -> datetime.date:
    today = today or timezone.localdate()
    return today.replace(day=1) if budget.period == "month" else today


def estimate(request: CompletionRequest) -> tuple[int, Decimal | None]:
    """Tokens and cost (None: unknown price) a call of ``request`` can use at most."""
    from .estimates import count_message_tokens, price_per_token

    prompt = count_message_tokens(request.messages)
    answer = (request.max_tokens or DEFAULT_ANSWER_TOKENS) * max(1, request.n)
    price = price_per_token(request.model)
    cost = None if price is None else price[0] * prompt + price[1] * answer
    return prompt + answer, cost


def reserve(
    budgets: list[LLMBudget], request: CompletionRequest, *, tokens: int, cost: Decimal | None
) -> Reservation:
    """Hold ``tokens``/``cost`` against each budget's current period, atomically; raises
    :class:`BudgetExceeded` (holding nothing) if one cannot cover it."""
    from .models import LLMBudgetReservation, LLMBudgetUsage

    # On the database's clock, as every lease: a host whose clock runs ahead must not take
    # other hosts' live reservations for expired ones (and overspend).
    seconds = float(request.timeout) + RESERVATION_MARGIN

    def hold() -> Reservation:
        held = Reservation()
        for budget in budgets:
            usage, _created = LLMBudgetUsage.objects.select_for_update().get_or_create(
                budget=budget, period_start=period_start(budget)
            )
            live = usage.reservations.filter(expires_at__gt=Now()).aggregate(
                tokens=Sum("tokens"), cost=Sum("cost")
            )
            used_tokens = usage.tokens + (live["tokens"] or 0)
            used_cost = usage.cost + (live["cost"] or Decimal(0))
            _check(budget, used_tokens, used_cost, tokens, cost)
            row = LLMBudgetReservation.objects.create(
                usage=usage, tokens=tokens, cost=cost or Decimal(0), expires_at=db.db_in(seconds)
            )
            held.ids.append(row.pk)
            held.usage_ids.append(usage.pk)
        return held

    return db.write(hold, what="reserving a budget")


def _check(
    budget: LLMBudget, used_tokens: int, used_cost: Decimal, tokens: int, cost: Decimal | None
) -> None:
    over_tokens = budget.max_tokens is not None and used_tokens + tokens > budget.max_tokens
    over_cost = (
        budget.max_cost is not None and cost is not None and used_cost + cost > budget.max_cost
    )
    if not (over_tokens or over_cost):
        return
    period = _("today") if budget.period == "day" else _("this month")
    left = []
    if budget.max_tokens is not None:
        tokens_left = max(0, budget.max_tokens - used_tokens)
        left.append(
            _("%(tokens)s tokens") % {"tokens": number_format(tokens_left, force_grouping=True)}
        )
    if budget.max_cost is not None:
        left.append(format_cost(max(Decimal(0), budget.max_cost - used_cost)))
    needs = [_("about %(tokens)s tokens") % {"tokens": number_format(tokens, force_grouping=True)}]
    if cost is not None and budget.max_cost is not None:
        needs.append(format_cost(cost))
    raise BudgetExceeded(
        _(
            "The budget “%(budget)s” has %(left)s left %(period)s; this call needs %(needs)s. "
            "Nothing was sent. Raise the budget or wait for the next period."
        )
        % {
            "budget": budget.name,
            "left": _(" and ").join(left),
            "period": period,
            "needs": " / ".join(needs),
        },
        budget=budget,
        tokens=tokens,
        cost=cost,
    )


def settle(reservation: Reservation, result: CompletionResult | None) -> None:
    """Replace the reservation by what the call used (nothing if it failed unanswered)."""
    from django.db.models import F

    from .models import LLMBudgetReservation, LLMBudgetUsage

    if not reservation.ids:
        return
    tokens = (result.total_tokens or 0) if result is not None else 0
    cost = (result.cost or Decimal(0)) if result is not None else Decimal(0)

    def write() -> None:
        LLMBudgetReservation.objects.filter(pk__in=reservation.ids).delete()
        if tokens or cost:
            LLMBudgetUsage.objects.filter(pk__in=reservation.usage_ids).update(
                tokens=F("tokens") + tokens, cost=F("cost") + cost
            )

    db.write(write, what="settling a budget")


def spend(budgets: list[LLMBudget] | None = None) -> list[dict[str, Any]]:
    """Each budget with its current period's use (settled plus in flight), for the report."""
    from .models import LLMBudget, LLMBudgetUsage

    budgets = list(LLMBudget.objects.all()) if budgets is None else budgets
    starts = {b.pk: period_start(b) for b in budgets}
    live = Q(reservations__expires_at__gt=Now())
    usage = {
        u.budget_id: u
        for u in LLMBudgetUsage.objects.filter(budget__in=budgets).annotate(
            held_tokens=Sum("reservations__tokens", filter=live),
            held_cost=Sum("reservations__cost", filter=live),
        )
        if starts.get(u.budget_id) == u.period_start
    }
    rows = []
    for budget in budgets:
        u = usage.get(budget.pk)
        tokens = (u.tokens + (u.held_tokens or 0)) if u else 0
        cost = (u.cost + (u.held_cost or Decimal(0))) if u else Decimal(0)
        shares = []
        if budget.max_tokens:
            shares.append(tokens / budget.max_tokens)
        if budget.max_cost:
            shares.append(float(cost / budget.max_cost))
        rows.append(
            {"budget": budget, "tokens": tokens, "cost": cost, "share": max(shares or [0.0])}
        )
    return rows


def left(row: dict[str, Any]) -> tuple[int | None, Decimal | None]:
    """What a :func:`spend` row's budget has left this period: tokens and cost (None: that
    cap is not set); never below zero (a budget lowered below its spend has nothing left)."""
    budget = row["budget"]
    tokens = None if budget.max_tokens is None else max(0, budget.max_tokens - row["tokens"])
    cost = None if budget.max_cost is None else max(Decimal(0), budget.max_cost - row["cost"])
    return tokens, cost


def fits(row: dict[str, Any], tokens: int, cost: Decimal | None) -> bool:
    """Whether a call of ``tokens``/``cost`` fits what the row's budget has left (the test
    :func:`reserve` makes, without holding anything)."""
    try:
        _check(row["budget"], row["tokens"], row["cost"], tokens, cost)
    except BudgetExceeded:
        return False
    return True


def period_label(budget: LLMBudget) -> str:
    return _("today") if budget.period == "day" else _("this month")
