"""Template filters of the admin screens: ``{% load llm_actions_tags %}``."""

from django import template

from ..formatting import format_cost

register = template.Library()


@register.filter(name="llm_cost")
def llm_cost(value, unknown: str = "—") -> str:
    """``{{ interaction.cost|llm_cost }}`` → ``$0.00042``; ``|llm_cost:"unknown"`` for None."""
    return format_cost(value, unknown=unknown)
