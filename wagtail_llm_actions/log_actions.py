"""Log actions this app writes to a page's history, with their formatters."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from wagtail.log_actions import LogFormatter

from .conf import with_feature

GENERATE = "wagtail_llm_actions.generate"
DISCARD = "wagtail_llm_actions.discard"


class GeneratedWithLLMAction(LogFormatter):
    label = with_feature(_("Generated with %(feature)s"))

    def format_message(self, log_entry):
        try:
            values = {
                "field": log_entry.data["target_field"],
                "action": log_entry.data["llm_action"]["name"],
            }
        except (KeyError, TypeError):
            return self.label
        outcome = log_entry.data.get("outcome")
        if outcome == "accepted":
            return (
                _("Generated %(field)s with “%(action)s” in the editor, saved as generated")
                % values
            )
        if outcome == "edited":
            return (
                _("Generated %(field)s with “%(action)s” in the editor, edited before saving")
                % values
            )
        if outcome == "discarded":
            return _("Generated %(field)s with “%(action)s” in the editor, then discarded") % values
        return _("Generated %(field)s with “%(action)s” (draft)") % values


class DiscardedLLMAnswer(LogFormatter):
    label = _("Discarded LLM answer")

    def format_message(self, log_entry):
        try:
            return _("Discarded the answer of “%(action)s” to %(field)s (draft)") % {
                "action": log_entry.data["llm_action"]["name"],
                "field": log_entry.data["target_field"],
            }
        except (KeyError, TypeError):
            return self.label


def register(actions) -> None:
    """Body of the ``register_log_actions`` hook."""
    actions.register_action(GENERATE)(GeneratedWithLLMAction)
    actions.register_action(DISCARD)(DiscardedLLMAnswer)
