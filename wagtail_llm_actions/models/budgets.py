"""Budgets: caps on tokens and cost per period, their use and the calls in flight
(see :mod:`..budgets`, which enforces them)."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils.formats import number_format
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .actions import LLMAction


class BudgetPeriod(models.TextChoices):
    DAY = "day", _("Day")
    MONTH = "month", _("Month")


class LLMBudget(models.Model):
    """A cap on spending, checked before every call: tokens and/or cost (USD) per day or
    month, for an action, a user, a group, any combination, or the whole site (none set)."""

    name = models.CharField(_("name"), max_length=255)
    action = models.ForeignKey(
        LLMAction,
        verbose_name=_("action"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="budgets",
        help_text=_("Only runs of this action count (blank: every action)."),
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text=_("Only runs started by this user count (blank: everyone)."),
    )
    group = models.ForeignKey(
        "auth.Group",
        verbose_name=_("group"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text=_("Only runs started by members of this group count (blank: everyone)."),
    )
    period = models.CharField(
        _("period"), max_length=10, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTH
    )
    max_tokens = models.PositiveBigIntegerField(
        _("token limit"),
        null=True,
        blank=True,
        help_text=_("Tokens (prompt and answer) per period. Every model counts here."),
    )
    max_cost = models.DecimalField(
        _("cost limit (USD)"),
        max_digits=12,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text=_("US dollars per period. Models without a known price count in tokens only."),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("budget")
        verbose_name_plural = _("budgets")

    def __str__(self) -> str:
        return self.name

    def scope_label(self) -> str:
        """Whose runs count: "Generate summary · Ana · Editors", or "Whole site"."""
        parts = [str(value) for value in (self.action, self.user, self.group) if value is not None]
        return " · ".join(parts) or gettext("Whole site")

    scope_label.short_description = _("applies to")

    def spend_label(self) -> str:
        """This period's use against the caps (set on the listing by its view)."""
        from ..formatting import format_cost

        spend = getattr(self, "spend", None)
        if spend is None:
            return ""
        parts = []
        if self.max_tokens is not None:
            parts.append(
                gettext("%(used)s of %(cap)s tokens")
                % {
                    "used": number_format(spend["tokens"], force_grouping=True),
                    "cap": number_format(self.max_tokens, force_grouping=True),
                }
            )
        if self.max_cost is not None:
            parts.append(
                gettext("%(used)s of %(cap)s")
                % {"used": format_cost(spend["cost"]), "cap": format_cost(self.max_cost)}
            )
        share = number_format(round(spend["share"] * 100))
        label = gettext("%(parts)s (%(share)s%%)") % {"parts": " · ".join(parts), "share": share}
        if spend["share"] > 1:  # lowered below what the period already spent
            label += " · " + gettext("over budget: runs are refused")
        return label

    spend_label.short_description = _("used this period")

    def clean(self) -> None:
        super().clean()
        if self.max_tokens is None and self.max_cost is None:
            raise ValidationError(
                _("Set a token limit, a cost limit or both: a budget without either caps nothing.")
            )


class LLMBudgetUsage(models.Model):
    """What a budget's period has used (settled calls) — its running total."""

    budget = models.ForeignKey(LLMBudget, on_delete=models.CASCADE, related_name="usage")
    period_start = models.DateField()
    tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal(0))

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["budget", "period_start"], name="llm_budget_period")
        ]

    def __str__(self) -> str:
        return f"{self.budget_id} from {self.period_start}"


class LLMBudgetReservation(models.Model):
    """A call in flight: its estimate held against a period until the call settles (or, if
    its worker died, until ``expires_at``)."""

    usage = models.ForeignKey(LLMBudgetUsage, on_delete=models.CASCADE, related_name="reservations")
    tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal(0))
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.tokens} tokens until {self.expires_at}"
