"""A machine translator for wagtail-localize (issue 23 §1): its "Machine translate" button
translates through a translation action, on the run path every other run takes.

Configure it in the settings::

    WAGTAILLOCALIZE_MACHINE_TRANSLATOR = {
        "CLASS": "wagtail_llm_actions.localize.LLMActionsTranslator",
        "OPTIONS": {"ACTION": "translate"},  # the slug of a translation action
    }

One request per call (every string wagtail-localize sends, as one JSON object with the markup
as placeholders), through :func:`~wagtail_llm_actions.run.calls.gate.ask`: the response cache,
the budgets, the action's model and parameter allow-lists, and an interaction in the log with
the user and the page when wagtail-localize's button made the call. Strings whose tags did not
all come back are asked again once, then left untranslated (wagtail-localize keeps them for a
person). A refusal (a budget, a disabled action, the provider) is an error the editor sees.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

from django.utils.translation import gettext as _
from wagtail_localize.machine_translators.base import BaseMachineTranslator
from wagtail_localize.strings import StringValue

from .conf import ACTIONS_LABEL
from .exceptions import ConfigurationProblem, LLMActionError
from .translation.markup import has_text, protect
from .translation.segments import RICH, Segment

#: wagtail-localize's views, which call the translator (see :func:`_caller`).
LOCALIZE_VIEWS = "wagtail_localize.views"


def _base(code: str) -> str:
    return code.split("-")[0].lower()


class LLMActionsTranslator(BaseMachineTranslator):
    """wagtail-localize's machine translator backed by a translation action
    (``OPTIONS["ACTION"]``: its slug)."""

    def __init__(self, options: dict) -> None:
        super().__init__(options or {})
        self.slug = self.options.get("ACTION", "")
        if not self.slug:
            raise ConfigurationProblem(
                _(
                    "WAGTAILLOCALIZE_MACHINE_TRANSLATOR needs the slug of a translation action: "
                    '"OPTIONS": {"ACTION": "<slug>"}.'
                )
            )

    @property
    def display_name(self) -> str:  # the button's "Translate with …" and each string's tool
        action = self._action_or_none()
        return action.name if action is not None else str(ACTIONS_LABEL)

    def _action_or_none(self):
        from .models import LLMAction

        return (
            LLMAction.objects.select_related("translation").filter(slug=self.slug).first()
            if self.slug
            else None
        )

    def action(self):
        """The configured action; :class:`ConfigurationProblem` unless it is an enabled
        translation action."""
        action = self._action_or_none()
        if action is None:
            raise ConfigurationProblem(
                _("There is no action “%(slug)s” (WAGTAILLOCALIZE_MACHINE_TRANSLATOR).")
                % {"slug": self.slug}
            )
        if not hasattr(action, "translation"):
            raise ConfigurationProblem(
                _("“%(action)s” is not a translation action (it has no translation settings).")
                % {"action": action.name}
            )
        if not action.enabled:
            raise ConfigurationProblem(_("The action “%s” is disabled.") % action.name)
        return action

    def can_translate(self, source_locale, target_locale) -> bool:
        if _base(source_locale.language_code) == _base(target_locale.language_code):
            return False
        try:
            self.action()
        except LLMActionError:
            return False
        return True

    def translate(self, source_locale, target_locale, strings) -> dict:
        """wagtail-localize's ``{StringValue: StringValue}``; a string left out is left
        untranslated. Raises :class:`LLMActionError` when the run is refused, unless
        wagtail-localize's button called: the editor is then shown the error as a message."""
        caller = _caller()
        try:
            return self._translate(source_locale, target_locale, list(strings), caller)
        except LLMActionError as error:
            if caller.request is None:
                raise
            from django.contrib import messages

            messages.error(
                caller.request,
                _("Nothing was machine translated: %(error)s") % {"error": error.message},
            )
            return {}

    def _translate(self, source_locale, target_locale, strings: list, caller) -> dict:
        from .models import InteractionStatus, InteractionTrigger
        from .run import access, recording

        action = self.action()
        obj = caller.instance if caller.instance is not None else action
        if caller.instance is not None:
            access.check(action, caller.instance, caller.user, locks=False)
        result: dict = {}
        send: list[Segment] = []
        for n, string in enumerate(strings, start=1):
            if has_text(protect(string.data)):
                send.append(Segment(str(n), RICH, string.data))
            else:  # markup or blanks only: nothing to translate
                result[string] = StringValue(string.data)
        if not send:
            return result
        interaction = recording.new_interaction(
            action, obj, caller.user, InteractionTrigger.WAGTAIL_LOCALIZE, None
        )
        texts, failed = _ask_segments(action, source_locale, target_locale, send, interaction)
        for n, string in enumerate(strings, start=1):
            if str(n) in texts:
                result[string] = StringValue(texts[str(n)])
        interaction.status = InteractionStatus.SUCCESS
        interaction.output_value = "\n\n".join(texts[s.path] for s in send if s.path in texts)
        interaction.error_message = "\n".join(
            _("String %(n)s left untranslated: %(why)s") % {"n": path, "why": why}
            for path, why in failed.items()
        )
        _save(interaction)
        return result


def _ask_segments(action, source_locale, target_locale, send, interaction):
    """The translation run's request and its one retry (``translation.run``), the source
    standing in as an object with only its locale; a failure is recorded on
    ``interaction`` and raised."""
    from .translation import run

    source = SimpleNamespace(locale=source_locale)
    return run.translate_segments(action, source, target_locale, send, interaction)


def _save(interaction) -> None:
    from . import db
    from .models import InteractionOutcome

    interaction.outcome = InteractionOutcome.ACCEPTED
    db.write(interaction.save, what="recording a wagtail-localize translation")


def _caller() -> Any:
    """The request, user and translated object of wagtail-localize's views when they are the
    caller (the "Machine translate" button, and "Sync translated pages" with machine
    translation ticked: both call ``apply_machine_translation``); all None otherwise."""
    from django.http import HttpRequest

    found = SimpleNamespace(request=None, user=None, instance=None)
    frame = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith(LOCALIZE_VIEWS):
            local = frame.f_locals
            if frame.f_code.co_name == "apply_machine_translation":
                found.user = local.get("user")
                found.instance = local.get("instance")
            elif found.request is None and isinstance(local.get("request"), HttpRequest):
                found.request = local["request"]
        frame = frame.f_back
    return found
