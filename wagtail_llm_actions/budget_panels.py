"""Budgets as their managers see them: the dashboard notice of budgets at 80% or more of a
cap, and the interaction report's "Spend against budgets" section (every budget's period,
use against its caps and share)."""

from __future__ import annotations

from django.forms import Media
from wagtail.admin.ui.components import Component
from wagtail.permission_policies import ModelPermissionPolicy

#: Share of a cap at which a budget is shown on the dashboard.
NOTICE_AT = 0.8


class BudgetNoticePanel(Component):
    name = "llm_budgets"
    order = 90
    template_name = "wagtail_llm_actions/budgets/notice_panel.html"

    def __init__(self, rows) -> None:
        self.rows = rows

    @property
    def media(self) -> Media:
        return Media()

    def get_context_data(self, parent_context=None):
        return {"rows": self.rows}


def manages_budgets(user) -> bool:
    from .models import LLMBudget

    return ModelPermissionPolicy(LLMBudget).user_has_any_permission(user, {"add", "change", "view"})


def spend_against_budgets(user) -> list[dict] | None:
    """Every budget with its period's use (``row["budget"].spend`` set for its labels), for
    the report; None if ``user`` does not manage budgets. Two queries however many budgets."""
    from .budgets import spend
    from .models import LLMBudget

    if not manages_budgets(user):
        return None
    budgets = list(LLMBudget.objects.select_related("action", "user", "group"))
    rows = spend(budgets)
    for row in rows:
        row["budget"].spend = row
        row["percent"] = round(row["share"] * 100)
    return rows


def budget_notice_panel(user) -> BudgetNoticePanel | None:
    """The panel, if ``user`` manages budgets and one is at 80% or more (two queries)."""
    from .budgets import spend
    from .models import LLMBudget

    if not manages_budgets(user):
        return None
    rows = []
    for row in spend(list(LLMBudget.objects.filter(enabled=True))):
        if row["share"] >= NOTICE_AT:
            row["budget"].spend = row
            rows.append(row)
    return BudgetNoticePanel(rows) if rows else None
