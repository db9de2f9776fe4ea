"""Log actions this app writes to a page's history, with their formatters."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from wagtail.log_actions import LogFormatter

from .conf import with_feature

GENERATE = "wagtail_llm_actions.generate"
DISCARD = "wagtail_llm_actions.discard"


def logged_fields(log_entry) -> str:
    """The entry's target field(s) by their labels ("Summary", "Title, Summary"), not their
    names; the names when the page type is gone."""
    from .labels import field_labels

    names = [name.strip() for name in str(log_entry.data["target_field"]).split(",")]
    try:
        model_class = log_entry.content_type.model_class()
    except AttributeError:
        model_class = None
    return field_labels(model_class, names) if model_class else ", ".join(names)


class GeneratedWithLLMAction(LogFormatter):
    label = with_feature(_("Generated with %(feature)s"))

    def format_message(self, log_entry):
        try:
            values = {
                "field": logged_fields(log_entry),
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
    label = with_feature(_("Discarded %(feature)s answer"))

    def format_message(self, log_entry):
        try:
            return _("Discarded the answer of “%(action)s” to %(field)s (draft)") % {
                "action": log_entry.data["llm_action"]["name"],
                "field": logged_fields(log_entry),
            }
        except (KeyError, TypeError):
            return self.label


def register(actions) -> None:
    """Body of the ``register_log_actions`` hook."""
    actions.register_action(GENERATE)(GeneratedWithLLMAction)
    actions.register_action(DISCARD)(DiscardedLLMAnswer)
