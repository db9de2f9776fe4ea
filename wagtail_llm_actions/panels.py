"""Editor panels: a field with "Generate …" buttons for the actions that write into it.

::

    from wagtail_llm_actions.panels import LLMActionPanel

    class BlogPage(Page):
        content_panels = Page.content_panels + [
            FieldPanel("body"),
            LLMActionPanel("summary"),          # a FieldPanel plus one button per action
        ]

``LLMActionPanel`` takes every argument ``FieldPanel`` takes, and ``actions=["slug", ...]`` to
offer only some actions. It shows a button for each enabled action whose target is the field
and whose page types include the page, to users who may edit the page; otherwise it renders
exactly like a ``FieldPanel``.
"""

from __future__ import annotations

import json

from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from wagtail.admin.action_menu import ActionMenuItem
from wagtail.admin.panels import FieldPanel

__all__ = [
    "LLMActionMenuItem",
    "LLMActionPanel",
    "editor_context",
    "editor_messages",
    "menu_entries",
]


def editor_messages() -> dict[str, str]:
    """Texts the browser script shows, translated here."""
    return {
        "queued": _("Waiting for a worker…"),
        "running": _("Generating with “{action}”…"),
        "elapsed": _("{seconds} s"),
        "filled": _("“{action}” filled {field}. Review it: Undo, Regenerate or Discard."),
        "filledShort": _("Generated with “{action}”."),
        "undone": _("Restored the previous value of {field}."),
        "redone": _("Put the generated value back into {field}."),
        "discarded": _("Discarded the generated value; {field} is as it was."),
        "kept": _("Kept the generated value. It is saved with the page."),
        "cancelled": _("Cancelled. {field} was not changed."),
        "failed": _("{message} {field} was not changed."),
        "network": _("The server could not be reached. {field} was not changed."),
        "tooLarge": _("The page is too large to send for generation."),
        "httpError": _("The server answered with an error (HTTP {status})."),
        "noField": _("The field {field} is not in this form."),
        "stalledWaiting": _("Still waiting for a worker…"),
        "undo": _("Undo"),
        "redo": _("Redo"),
        "regenerate": _("Regenerate"),
        "discard": _("Discard"),
        "keep": _("Keep"),
        "cancel": _("Cancel"),
        "keepWaiting": _("Keep waiting"),
        "dismiss": _("Dismiss"),
    }


def _may_run(request, page) -> bool:
    """``user_may_run`` for this request's user, computed once per page and request."""
    from .editor import user_may_run

    cache = getattr(request, "_llm_editor_may_run", None)
    if cache is None:
        cache = request._llm_editor_may_run = {}
    if page.pk not in cache:
        cache[page.pk] = user_may_run(request.user, page)
    return cache[page.pk]


def editor_context(page, request, field_name: str, *, only=None, label: str = "") -> dict | None:
    """Template context for the buttons of ``field_name``, or None when there are none."""
    from .editor import actions_for_page

    if page is None or page.pk is None or request is None:
        return None
    if not _may_run(request, page):
        return None
    actions = [
        action
        for action in actions_for_page(page, request)
        if action.target_field == field_name and (not only or action.slug in only)
    ]
    if not actions:
        return None
    from .conf import get_setting

    return {
        "field_name": field_name,
        "field_label": label or field_name,
        "actions": [
            {
                "action": action,
                "url": reverse("wagtail_llm_actions_editor:run", args=[page.pk, action.pk]),
            }
            for action in actions
        ],
        "pickup_timeout": get_setting("WORKER_PICKUP_TIMEOUT"),
        "messages_json": json.dumps(editor_messages()),
    }


class LLMActionPanel(FieldPanel):
    """A ``FieldPanel`` with a button for each action that writes into the field."""

    def __init__(self, field_name, *args, actions=None, **kwargs):
        super().__init__(field_name, *args, **kwargs)
        self.actions = list(actions) if actions else None

    def clone_kwargs(self):
        kwargs = super().clone_kwargs()
        kwargs["actions"] = self.actions
        return kwargs

    class BoundPanel(FieldPanel.BoundPanel):
        template_name = "wagtail_llm_actions/editor/panel.html"

        def get_context_data(self, parent_context=None):
            context = super().get_context_data(parent_context)
            llm = None
            if self.bound_field is not None and not self.read_only:
                llm = editor_context(
                    self.instance,
                    self.request,
                    self.field_name,
                    only=self.panel.actions,
                    label=str(self.heading or self.field_name),
                )
            context["llm"] = llm
            return context


def _form_fields(page, request) -> list[str]:
    """Names of the fields in ``page``'s edit form (cached on the request)."""
    cache = getattr(request, "_llm_editor_form_fields", None)
    if cache is None:
        cache = request._llm_editor_form_fields = {}
    key = page.specific_class
    if key not in cache:
        from .editor import form_class_for

        form_class = form_class_for(page)
        cache[key] = {
            name: str(field.label or name) for name, field in form_class.base_fields.items()
        }
    return cache[key]


def menu_entries(page, request) -> list[dict]:
    """One entry per field of the edit form that actions write into."""
    from .editor import actions_for_page

    if page is None or page.pk is None or not _may_run(request, page):
        return []
    actions = actions_for_page(page, request)
    if not actions:
        return []
    fields = _form_fields(page, request)
    entries = []
    for field_name in dict.fromkeys(a.target_field for a in actions):
        if field_name not in fields:
            continue
        context = editor_context(page, request, field_name, label=fields[field_name])
        if context:
            entries.append(context)
    return entries


class LLMActionMenuItem(ActionMenuItem):
    """The page's actions in the editor's action menu, for sites that keep plain panels."""

    name = "action-llm-actions"
    label = gettext_lazy("LLM actions")
    template_name = "wagtail_llm_actions/editor/menu_item.html"

    def is_shown(self, context):
        if context.get("view") != "edit" or context.get("locked_for_user"):
            return False
        return bool(menu_entries(context.get("page"), context["request"]))

    def get_context_data(self, parent_context):
        context = super().get_context_data(parent_context)
        context["llm_entries"] = menu_entries(parent_context.get("page"), parent_context["request"])
        return context
