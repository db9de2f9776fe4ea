"""Editor panels: a field with "Generate …" buttons for the actions that write into it.

::

    from wagtail_llm_actions.panels import LLMActionPanel

    class BlogPage(Page):
        content_panels = Page.content_panels + [
            FieldPanel("body"),
            LLMActionPanel("summary"),          # a FieldPanel plus one button per action
        ]

No panel changes are needed: on the edit and create views, every enabled action gets its
button beside its target field (the form's own field wrapper), for the page types it applies
to, shown to users who may edit the page (or add it under its parent). The buttons of fields
the panels leave plain travel with the editor's action menu item and a small script
(``llm-action-placement``) puts them beside their field.

A pipeline's button goes where an action writing its first writing step's field would go.

Snippets with revisions get the same buttons in their editor (edit and create views): their
target (:class:`.views.snippet_menu.SnippetEditorTarget`) answers the questions
:class:`EditorTarget` answers for a page (who may run, which actions, the run URLs), and the
snippet action menu item carries the buttons the placement script moves.

``LLMActionPanel`` chooses the placement instead, and restricts what a field offers: it takes
every argument ``FieldPanel`` takes, and ``actions=["slug", ...]`` to offer only some actions
or pipelines (in the panel and in the action menu). Without buttons to show it renders exactly
like a ``FieldPanel``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.contrib.contenttypes.models import ContentType
from django.urls import reverse
from django.utils.functional import lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from wagtail.admin.action_menu import ActionMenuItem
from wagtail.admin.panels import FieldPanel
from wagtail.models import Page

from .conf import feature_name

__all__ = [
    "EditorTarget",
    "LLMActionMenuItem",
    "LLMActionPanel",
    "auto_entries",
    "automatic_draft_notice",
    "editor_context",
    "editor_messages",
    "menu_entries",
    "panel_restrictions",
]


def editor_messages(kind: str = "page") -> dict[str, str]:
    """Texts the browser script shows, translated here (``kind``: "page" or "snippet", what
    the editor edits)."""
    messages = _editor_messages()
    if kind == "snippet":
        messages["kept"] = _("Kept the generated value. It is saved with the snippet.")
        messages["tooLarge"] = _("The snippet is too large to send for generation.")
    return messages


def _editor_messages() -> dict[str, str]:
    return {
        "queued": _("Waiting to start…"),
        "running": _("Generating with “{action}”…"),
        "elapsed": _("{seconds} s"),
        "filled": _("“{action}” filled {field}. Review it: Undo, Regenerate, Discard or Keep."),
        "filledShort": _("Generated with “{action}”."),
        "undone": _("Restored the previous value of {field}."),
        "redone": _("Put the generated value back into {field}."),
        "discarded": _("Discarded the generated value; {field} is as it was."),
        "kept": _("Kept the generated value. It is saved with the page."),
        "cancelled": _("Cancelled. {field} was not changed."),
        "failed": _("{message} {field} was not changed."),
        "pipelineFailed": _("{message} Nothing in the form was changed."),
        "network": _("The server could not be reached. {field} was not changed."),
        "tooLarge": _("The page is too large to send for generation."),
        "httpError": _("The server answered with an error (HTTP {status})."),
        "noField": _("The field {field} is not in this form."),
        "stalledWaiting": _("Still waiting to start…"),
        "stalled": _(
            "This has not started yet. The site's background tasks may be busy or stopped: "
            "keep waiting or cancel, and tell your administrator if it keeps happening."
        ),
        "generatingField": _("Generating…"),
        "writingField": _("Being written…"),
        "undo": _("Undo"),
        "redo": _("Redo"),
        "regenerate": _("Regenerate"),
        "discard": _("Discard"),
        "keep": _("Keep"),
        "cancel": _("Cancel"),
        "keepWaiting": _("Keep waiting"),
        "candidatesOffered": _("“{action}” offers {count} suggestions. Pick one for {field}."),
        "candidates": _("Suggestions for {field}"),
        "filledFields": _("“{action}” filled {count} fields. Review each one."),
        "dismiss": _("Dismiss"),
    }


@dataclass(frozen=True)
class EditorTarget:
    """The page an editor form is about: a saved page (edit view) or a new one (create view).
    (A snippet's is :class:`.views.snippet_menu.SnippetEditorTarget`, with the same methods.)"""

    page_class: type
    page: Page | None = None
    parent: Page | None = None

    @classmethod
    def for_page(cls, page: Page) -> EditorTarget:
        return cls(page_class=page.specific_class, page=page)

    @classmethod
    def for_new_page(cls, page_class: type, parent: Page) -> EditorTarget:
        return cls(page_class=page_class, parent=parent)

    @property
    def is_new(self) -> bool:
        return self.page is None

    @property
    def key(self) -> tuple:
        return (self.page_class, self.page.pk if self.page else None, self.parent_id)

    @property
    def parent_id(self) -> int | None:
        return self.parent.pk if self.parent is not None else None

    @property
    def model(self) -> type:
        return self.page_class

    #: The editor's messages say "page" (see :func:`editor_messages`).
    kind = "page"

    def may_run(self, user) -> bool:
        """Whether ``user`` may run actions here: edit the page, or add it under its parent."""
        from .editor import user_may_create, user_may_run

        if self.page is not None:
            return user_may_run(user, self.page)
        return user_may_create(user, self.page_class, self.parent)

    def actions(self, request) -> list:
        from .editor import actions_for_type

        return actions_for_type(self.page_class, request)

    def pipelines(self) -> list:
        """Pipelines that run on the page (edit view only: a run needs a saved page)."""
        if self.page is None:
            return []
        from .pipelines import pipelines_for_page

        return pipelines_for_page(self.page.specific)

    def badges(self, actions) -> dict:
        """The provenance badges of the page's fields (edit view only)."""
        if self.page is None:
            return {}
        from .editor.badges import page_badges

        return page_badges(self.page.specific, actions)

    def edit_handler(self):
        return self.page_class.get_edit_handler()

    def pipeline_url(self, pipeline) -> str:
        return reverse("wagtail_llm_actions_editor:run_pipeline", args=[self.page.pk, pipeline.pk])

    def run_url(self, action) -> str:
        if self.page is not None:
            return reverse("wagtail_llm_actions_editor:run", args=[self.page.pk, action.pk])
        content_type = ContentType.objects.get_for_model(self.page_class)
        return reverse(
            "wagtail_llm_actions_editor:run_new",
            args=[self.parent_id, content_type.pk, action.pk],
        )


def target_from_context(context) -> EditorTarget | None:
    """The editor target of an action menu's context (edit or create view), or None."""
    view = context.get("view")
    if view == "edit":
        page = context.get("page")
        return EditorTarget.for_page(page) if page is not None and page.pk else None
    if view == "create":
        parent = context.get("parent_page")
        request = context.get("request")
        match = getattr(request, "resolver_match", None)
        kwargs = match.kwargs if match is not None else {}
        try:
            content_type = ContentType.objects.get_by_natural_key(
                kwargs["content_type_app_name"], kwargs["content_type_model_name"]
            )
        except (KeyError, ContentType.DoesNotExist):
            return None
        page_class = content_type.model_class()
        if parent is None or page_class is None or not issubclass(page_class, Page):
            return None
        return EditorTarget.for_new_page(page_class, parent)
    return None


def _request_cache(request, name: str) -> dict:
    cache = getattr(request, name, None)
    if cache is None:
        cache = {}
        setattr(request, name, cache)
    return cache


def _may_run(request, target: EditorTarget) -> bool:
    """Whether this request's user may run actions on ``target``, once per request."""
    cache = _request_cache(request, "_llm_editor_may_run")
    if target.key not in cache:
        cache[target.key] = target.may_run(request.user)
    return cache[target.key]


def _actions(target: EditorTarget, request) -> list:
    return target.actions(request)


def _pipelines(target: EditorTarget, request) -> list:
    """Pipelines that run on ``target``, once per request."""
    cache = _request_cache(request, "_llm_editor_pipelines")
    if target.key not in cache:
        cache[target.key] = target.pipelines()
    return cache[target.key]


def _badges(target: EditorTarget, request) -> dict:
    """The provenance badges of ``target``'s fields, once per request."""
    cache = _request_cache(request, "_llm_editor_badges")
    if target.key not in cache:
        cache[target.key] = target.badges(_actions(target, request))
    return cache[target.key]


def pipeline_field(pipeline) -> str:
    """The field a pipeline's button goes beside: its first writing step's, or ""."""
    for step in pipeline.steps.all():
        if not step.writes:
            continue
        # A step runs an action (one field, or several for a structured one) or has its own
        # prompt and target field.
        fields = step.action.target_fields if step.action is not None else [step.target_field]
        if fields and fields[0]:
            return fields[0]
    return ""


def _pipeline_key(pipeline) -> str:
    return f"pipeline:{pipeline.slug}"


def editor_context(
    target: EditorTarget | None,
    request,
    field_name: str,
    *,
    only=None,
    label: str = "",
    exclude=(),
) -> dict | None:
    """Template context for the buttons of ``field_name``, or None when there are none."""
    if target is None or request is None:
        return None
    if not _may_run(request, target):
        return None
    actions = [
        action
        for action in _actions(target, request)
        if field_name in action.target_fields
        and (only is None or action.slug in only)
        and action.slug not in exclude
    ]
    pipelines = [
        pipeline
        for pipeline in _pipelines(target, request)
        if pipeline_field(pipeline) == field_name
        and (only is None or pipeline.slug in only)
        and _pipeline_key(pipeline) not in exclude
    ]
    if not actions and not pipelines:
        return None
    from .conf import get_setting

    badge = _badges(target, request).get(field_name)
    regenerate = ""
    if badge is not None and badge.stale:
        regenerate = next((target.run_url(a) for a in actions if a.pk == badge.action_id), "")
    return {
        "badge": badge,
        "regenerate_url": regenerate,
        "field_name": field_name,
        "field_label": label or field_name,
        "actions": [
            *({"action": action, "url": target.run_url(action)} for action in actions),
            *(
                {"action": pipeline, "url": target.pipeline_url(pipeline), "pipeline": True}
                for pipeline in pipelines
            ),
        ],
        "pickup_timeout": get_setting("WORKER_PICKUP_TIMEOUT"),
        "messages_json": json.dumps(editor_messages(target.kind)),
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
                    self._target(),
                    self.request,
                    self.field_name,
                    only=self.panel.actions,
                    label=str(self.heading or self.field_name),
                )
            context["llm"] = llm
            return context

        def _target(self) -> EditorTarget | None:
            page = self.instance
            if page is not None and not isinstance(page, Page):
                from .views.snippet_menu import snippet_target

                return snippet_target(page)
            if page is None:
                return None
            if page.pk:
                return EditorTarget.for_page(page)
            parent = getattr(self.form, "parent_page", None)
            return EditorTarget.for_new_page(type(page), parent) if parent is not None else None


# -- placement: which fields get buttons where -------------------------------------------------


def panel_restrictions(page_class: type, edit_handler=None) -> dict[str, set[str] | None]:
    """Fields that ``page_class``'s panels (``edit_handler``: a snippet's) wrap in
    ``LLMActionPanel``, with the actions allowed.

    ``None`` means every action for the field. A field wrapped twice allows the union.
    """
    cached = _restrictions_cache.get(page_class)
    if cached is not None:
        return cached
    result: dict[str, set[str] | None] = {}

    def walk(panel) -> None:
        if isinstance(panel, LLMActionPanel):
            allowed = set(panel.actions) if panel.actions else None
            if panel.field_name in result:
                previous = result[panel.field_name]
                allowed = None if previous is None or allowed is None else previous | allowed
            result[panel.field_name] = allowed
        for child in getattr(panel, "children", ()) or ():
            walk(child)

    walk(edit_handler if edit_handler is not None else page_class.get_edit_handler())
    _restrictions_cache[page_class] = result
    return result


_restrictions_cache: dict[type, dict[str, set[str] | None]] = {}


def _form_fields(target: EditorTarget, request) -> dict[str, str]:
    """Names and labels of the fields in ``target``'s edit form (cached on the request)."""
    cache = _request_cache(request, "_llm_editor_form_fields")
    page_class = target.model
    if page_class not in cache:
        form_class = target.edit_handler().get_form_class()
        cache[page_class] = {
            name: str(field.label or name) for name, field in form_class.base_fields.items()
        }
    return cache[page_class]


def _entries(target: EditorTarget | None, request, *, auto: bool) -> list[dict]:
    if target is None or request is None or not _may_run(request, target):
        return []
    actions = _actions(target, request)
    pipelines = _pipelines(target, request)
    if not actions and not pipelines:
        return []
    fields = _form_fields(target, request)
    restrictions = panel_restrictions(target.model, target.edit_handler())
    entries = []
    listed: set[str] = set()  # an action filling several fields is listed once
    names = [name for a in actions for name in a.target_fields]
    names += [pipeline_field(p) for p in pipelines]
    for field_name in dict.fromkeys(names):
        if field_name not in fields:
            continue
        if auto and field_name in restrictions:
            continue  # the field's LLMActionPanel draws its buttons
        only = restrictions.get(field_name)
        context = editor_context(
            target, request, field_name, only=only, label=fields[field_name], exclude=listed
        )
        if context:
            entries.append(context)
            listed.update(
                _pipeline_key(item["action"]) if item.get("pipeline") else item["action"].slug
                for item in context["actions"]
            )
    return entries


def menu_entries(target: EditorTarget | None, request) -> list[dict]:
    """One entry per field of the form that actions write into, as panels restrict them."""
    return _entries(target, request, auto=False)


def auto_entries(target: EditorTarget | None, request) -> list[dict]:
    """Entries for fields not wrapped in ``LLMActionPanel``: buttons placed by the script."""
    return _entries(target, request, auto=True)


class LLMActionMenuItem(ActionMenuItem):
    """The page's actions in the editor's action menu (edit and create views), and on the
    edit view its pipelines (each runs on the unsaved form, like an action).

    It also carries the buttons for fields the page's panels leave plain, which the
    ``llm-action-placement`` script moves beside those fields.
    """

    name = "action-llm-actions"
    label = lazy(feature_name, str)()  # "AI", or the site's FEATURE_NAME
    template_name = "wagtail_llm_actions/editor/menu_item.html"

    def _entries(self, context) -> list[dict]:
        cached = context.get("_llm_menu_entries")
        if cached is None:
            target = target_from_context(context)
            cached = menu_entries(target, context["request"])
            context["_llm_menu_entries"] = cached
            context["_llm_auto_entries"] = auto_entries(target, context["request"])
        return cached

    def is_shown(self, context):
        if context.get("view") not in ("edit", "create") or context.get("locked_for_user"):
            return False
        return bool(self._entries(context))

    def get_context_data(self, parent_context):
        context = super().get_context_data(parent_context)
        context["llm_entries"] = self._entries(parent_context)
        context["llm_auto_entries"] = parent_context.get("_llm_auto_entries", [])
        context["feature_name"] = feature_name()
        return context


def automatic_draft_notice(request, page) -> None:
    """On the edit view, say when the page's newest revision is an automatic draft (a
    trigger's) nobody has reviewed yet: one query, none for a page without a draft."""
    if request.method != "GET":
        return
    from wagtail.admin import messages

    from .moderation import waiting_automatic_draft

    draft = waiting_automatic_draft(page)
    if draft is not None:
        messages.warning(
            request,
            _("An automatic draft from “%(action)s” is waiting for review.")
            % {"action": draft.action_name},
        )


class TranslateMenuItem(ActionMenuItem):
    """ "Translate into…" in the page editor's action menu: the page's translation actions
    and locales to choose (:mod:`.views.translate`); shown on the edit view when i18n is on
    and a translation action applies to the page."""

    name = "action-llm-translate"
    label = gettext_lazy("Translate into…")
    icon_name = "globe"

    def is_shown(self, context):
        if context.get("view") != "edit" or context.get("locked_for_user"):
            return False
        from .views.translate import offered

        return offered(context["page"], context["request"].user)

    def get_url(self, context):
        from .views.translate import translate_url

        return translate_url(context["page"])
