"""Wiring only: viewsets, menu items, log actions, bulk action, editor assets."""

from django.utils.translation import gettext_lazy as _
from wagtail import hooks
from wagtail.log_actions import LogFormatter
from wagtail.snippets.models import register_snippet

from .service import LOG_ACTION
from .viewsets import LLMActionsViewSetGroup

register_snippet(LLMActionsViewSetGroup)


@hooks.register("register_log_actions")
def register_log_actions(actions):
    @actions.register_action(LOG_ACTION)
    class GeneratedWithLLMAction(LogFormatter):
        label = _("Generated with LLM action")

        def format_message(self, log_entry):
            try:
                return _("Generated %(field)s with “%(action)s” (draft)") % {
                    "field": log_entry.data["target_field"],
                    "action": log_entry.data["llm_action"]["name"],
                }
            except (KeyError, TypeError):
                return _("Generated with LLM action")
