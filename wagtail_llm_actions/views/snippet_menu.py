"""The snippet editor's entries: one per action that runs on the snippet, in the edit view's
action menu (Wagtail's ``register_snippet_action_menu_item``). Each opens a confirmation of
what the run does and costs, then queues it (see :mod:`.snippets`). A translatable snippet
also gets "Translate into…" (:class:`SnippetTranslateMenuItem`, see :mod:`.translate`)."""

from __future__ import annotations

from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from wagtail.admin.action_menu import ActionMenuItem


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

    def is_shown(self, context) -> bool:
        return not context.get("locked_for_user") and bool(self._actions(context))

    def get_context_data(self, parent_context):
        context = super().get_context_data(parent_context)
        instance = parent_context["instance"]
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
