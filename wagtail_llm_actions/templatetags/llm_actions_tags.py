"""Template filters of the admin screens: ``{% load llm_actions_tags %}``."""

from django import template

from ..formatting import format_cost, format_cost_total, format_ms

register = template.Library()


@register.filter(name="llm_cost")
def llm_cost(value, unknown: str = "—") -> str:
    """``{{ interaction.cost|llm_cost }}`` → ``$0.00042``; ``|llm_cost:"unknown"`` for None."""
    return format_cost(value, unknown=unknown)


@register.filter(name="llm_ms")
def llm_ms(value) -> str:
    """``{{ interaction.latency_ms|llm_ms }}`` → ``2,226 ms`` (localised), a dash for None."""
    return format_ms(value)


@register.simple_tag(name="llm_cost_total")
def llm_cost_total(value, unpriced=0) -> str:
    """``{% llm_cost_total totals.cost totals.unpriced %}`` → ``$1.20 + 14 calls at unknown
    price``: a sum that names the calls without a known price instead of counting them as 0."""
    return format_cost_total(value, unpriced)


@register.filter(name="llm_will_run")
def llm_will_run(plan) -> str:
    """``{{ plan|llm_will_run }}`` → "6 pages will run." (the start message's words)."""
    from ..job_counts import will_run_text

    return will_run_text(plan.will_run, exact=plan.is_exact)


@register.filter(name="llm_role")
def llm_role(role) -> str:
    """``{{ message.role|llm_role }}`` → "System", "User" (not the request's codes)."""
    from ..labels import role_label

    return role_label(role)


@register.filter(name="llm_error")
def llm_error(code) -> str:
    """``{{ interaction.error_code|llm_error }}`` → "Connection failed" (not ``connection``)."""
    from ..labels import error_label

    return error_label(code)
