"""A bulk run's estimate against the budgets that apply to it (issue 22 §1): for the
confirmation screen, before anything is started.

Every budget that applies to the action and the user (:func:`budgets.applicable`) gets a
line: its period, what it has left (settled and in flight, :func:`budgets.spend`) and this
run's estimate (the plan's: prompts counted, answers at the action's token limit, priced
where the price is known — the same upper bound each call reserves). When the estimate does
not fit, the pages that fit are those whose share of the estimate fits every budget: the run
may be limited to them (the rest are listed on the job as not started, with the reason).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from django.utils.formats import number_format
from django.utils.translation import gettext as _

from . import budgets
from .formatting import format_cost

if TYPE_CHECKING:
    from .estimates import Estimate
    from .models import LLMAction, LLMBudget


@dataclass
class BudgetLine:
    """One budget against this run: what it has left, what the run needs, how many pages
    fit (None: all of them)."""

    budget: LLMBudget
    tokens_left: int | None
    cost_left: Decimal | None
    tokens: int
    cost: Decimal | None
    pages: int | None = None

    @property
    def period(self) -> str:
        return str(self.budget.get_period_display())

    @property
    def fits(self) -> bool:
        return self.pages is None

    @property
    def left_text(self) -> str:
        parts = []
        if self.tokens_left is not None:
            parts.append(
                _("%(tokens)s tokens")
                % {"tokens": number_format(self.tokens_left, force_grouping=True)}
            )
        if self.cost_left is not None:
            parts.append(format_cost(self.cost_left))
        return _(" and ").join(parts)

    @property
    def needs_text(self) -> str:
        parts = [
            _("about %(tokens)s tokens")
            % {"tokens": number_format(self.tokens, force_grouping=True)}
        ]
        if self.cost is not None and self.budget.max_cost is not None:
            parts.append(format_cost(self.cost))
        return " / ".join(parts)


@dataclass
class BudgetFit:
    """The run's estimate against every budget that applies."""

    pages: int
    lines: list[BudgetLine] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return all(line.fits for line in self.lines)

    @property
    def pages_that_fit(self) -> int:
        return min([self.pages, *(line.pages for line in self.lines if line.pages is not None)])

    @property
    def blocking(self) -> BudgetLine | None:
        """The budget that lets the fewest pages run (the reason given for the rest)."""
        short = [line for line in self.lines if not line.fits]
        return min(short, key=lambda line: line.pages) if short else None

    def reason(self) -> str:
        """Why the pages beyond :attr:`pages_that_fit` are not started."""
        line = self.blocking
        if line is None:
            return ""
        return _(
            "Not started: the budget “%(budget)s” had %(left)s left (%(period)s) when the job "
            "was started, enough for %(pages)s of its pages."
        ) % {
            "budget": line.budget.name,
            "left": line.left_text,
            "period": budgets.period_label(line.budget),
            "pages": number_format(line.pages, force_grouping=True),
        }


def _pages_within(left, per_page, pages: int) -> int:
    if left is None or per_page is None or per_page <= 0:
        return pages
    return min(pages, int(math.floor(left / per_page)))


def budget_fit(
    action: LLMAction, user_id: int | None, estimate: Estimate | None, pages: int
) -> BudgetFit | None:
    """The estimate of a run of ``action`` by ``user_id`` over ``pages`` pages against every
    budget that applies; None when none applies (or nothing would run). Two queries."""
    if estimate is None or pages <= 0:
        return None
    applying = budgets.applicable(action, user_id)
    if not applying:
        return None
    tokens, cost = estimate.total_tokens, estimate.cost
    per_page_tokens = tokens / pages
    per_page_cost = None if cost is None else cost / pages
    fit = BudgetFit(pages=pages)
    for row in budgets.spend(applying):
        tokens_left, cost_left = budgets.left(row)
        line = BudgetLine(row["budget"], tokens_left, cost_left, tokens, cost)
        if not budgets.fits(row, tokens, cost):
            line.pages = min(
                _pages_within(tokens_left, per_page_tokens, pages),
                _pages_within(cost_left, per_page_cost, pages),
            )
            line.pages = min(line.pages, pages - 1)  # the whole run does not fit
        fit.lines.append(line)
    return fit
