"""The snippet editor's entries: one per action that runs on the snippet, in the edit view's
action menu (Wagtail's ``register_snippet_action_menu_item``). Each opens a confirmation of
what the run does and costs on the saved snippet, then queues it (see :mod:`.snippets`). A
translatable snippet also gets "Translate into…" (:class:`SnippetTranslateMenuItem`, see
:mod:`.translate`).

The same menu item carries the "Generate …" buttons beside the target fields of a snippet
with revisions, on the edit and create views (as the page editor's does): the
``llm-action-placement`` script moves them beside their fields, and they run on the unsaved
form (:mod:`.snippet_editor`). A field in an ``LLMActionPanel`` draws its own buttons
(:class:`SnippetEditorTarget` is its target).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from wagtail.admin.action_menu import ActionMenuItem


@dataclass(frozen=True)
class SnippetEditorTarget:
    """A saved snippet in its edit view, as the page editor's buttons see a page
    (:class:`..panels.EditorTarget`): who may run, which actions, the run URLs."""

    model: type
    snippet: Any = None  # None on the create view
    locale: str = ""  # the create view's locale (a translatable model)

    kind = "snippet"  # the browser's messages say "snippet"

    @property
    def is_new(self) -> bool:
        return self.snippet is None

    @property
    def key(self) -> tuple:
        return ("snippet", self.model, None if self.is_new else self.snippet.pk, self.locale)

    def may_run(self, user) -> bool:
        from ..editor.snippets import user_may_create_snippet, user_may_run_snippet

        if self.is_new:
            return user_may_create_snippet(user, self.model)
        return user_may_run_snippet(user, self.snippet)

    def actions(self, request) -> list:
        from ..editor.snippets import snippet_actions

        return snippet_actions(self.model, request)

    def pipelines(self) -> list:
        return []  # pipelines run on pages

    def badges(self, actions) -> dict:
        return {}  # provenance badges are the page editor's

    def edit_handler(self):
        from wagtail.admin.panels import get_edit_handler

        return get_edit_handler(self.model)

    def run_url(self, action) -> str:
        opts = self.model._meta
        if self.is_new:
            url = reverse(
                "wagtail_llm_actions_editor:snippet_run_new",
                args=[opts.app_label, opts.model_name, action.pk],
            )
            return f"{url}?{urlencode({'locale': self.locale})}" if self.locale else url
        return reverse(
            "wagtail_llm_actions_editor:snippet_run",
            args=[opts.app_label, opts.model_name, str(self.snippet.pk), action.pk],
        )

    def pipeline_url(self, pipeline) -> str:
        return ""


def snippet_target(instance: Any) -> SnippetEditorTarget | None:
    """The editor target of a snippet (saved, or new on the create view) whose model has
    editor buttons, or None."""
    from ..editor.snippets import offers_buttons

    if instance is None or not offers_buttons(type(instance)):
        return None
    if instance.pk is None:
        locale = getattr(getattr(instance, "locale", None), "language_code", "")
        return SnippetEditorTarget(type(instance), locale=locale)
    return SnippetEditorTarget(type(instance), instance)


def _context_target(context) -> SnippetEditorTarget | None:
    """The target of a snippet action menu's context (edit or create view), or None."""
    from ..editor.snippets import offers_buttons

    if context.get("view") == "edit":
        instance = context.get("instance")
        return snippet_target(instance) if instance is not None and instance.pk else None
    model = context.get("model")
    if context.get("view") != "create" or model is None or not offers_buttons(model):
        return None
    locale = context["request"].GET.get("locale", "")
    return SnippetEditorTarget(model, locale=locale)


class SnippetActionsMenuItem(ActionMenuItem):
    """Links to run each action the user may run on the edited snippet."""

    name = "llm-snippet-actions"
    template_name = "wagtail_llm_actions/snippets/menu_items.html"
    order = 60

    def _actions(self, context) -> list:
        from .snippets import actions_for

        if "llm_snippet_actions" not in context:
            instance = context.get("instance")
            user = context["request"].user
            context["llm_snippet_actions"] = (
                actions_for(user, instance) if context.get("view") == "edit" else []
            )
        return context["llm_snippet_actions"]

    def _buttons(self, context) -> list[dict]:
        """The field buttons the placement script puts beside fields (edit, create views)."""
        from ..panels import auto_entries

        if "llm_snippet_buttons" not in context:
            target = _context_target(context)
            context["llm_snippet_buttons"] = auto_entries(target, context["request"])
        return context["llm_snippet_buttons"]

    def is_shown(self, context) -> bool:
        if context.get("locked_for_user"):
            return False
        return bool(self._actions(context)) or bool(self._buttons(context))

    def get_context_data(self, parent_context):
        context = super().get_context_data(parent_context)
        context["llm_auto_entries"] = self._buttons(parent_context)
        context["entries"] = []
        instance = parent_context.get("instance")
        if instance is None or instance.pk is None:
            return context  # the create view: its buttons only
        opts = type(instance)._meta
        context["entries"] = [
            {
                "url": reverse(
                    "wagtail_llm_actions_snippets:run",
                    args=[opts.app_label, opts.model_name, instance.pk, action.pk],
                ),
                "label": _("%(action)s → %(field)s")
                % {
                    "action": action.name,
                    "field": ", ".join(action.target_fields) or action.target_field,
                },
                "slug": action.slug,
            }
            for action in self._actions(parent_context)
        ]
        return context


class SnippetTranslateMenuItem(ActionMenuItem):
    """ "Translate into…": the snippet's translation actions and locales to choose; shown on
    the edit view when i18n is on and a translation action's snippet types include it."""

    name = "action-llm-translate"
    label = gettext_lazy("Translate into…")
    icon_name = "globe"
    order = 61

    def is_shown(self, context) -> bool:
        if context.get("view") != "edit" or context.get("locked_for_user"):
            return False
        from .translate import snippet_offered

        return snippet_offered(context.get("instance"), context["request"].user)

    def get_url(self, context) -> str:
        from .translate import snippet_translate_url

        return snippet_translate_url(context["instance"])
