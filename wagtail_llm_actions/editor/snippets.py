"""The snippet an editor run works on (issue 23 §2): built from the snippet editor's unsaved
form, the actions a snippet model offers beside its fields, and who may run them. As
:mod:`.pages` does for pages; the run itself, its status, review and outcomes are the
page editor's.

::

    obj = build_snippet_from_form(snippet, request.POST, user)   # like Wagtail's preview
    obj = build_new_snippet_from_form(Dish, request.POST, user)  # the create view

Only snippet models with revisions (``RevisionMixin``) get buttons: the editor saves the
answer with the snippet as a new revision, as it does for a page.
"""

from __future__ import annotations

from typing import Any

from django.utils.text import capfirst
from django.utils.translation import gettext as _

from ..exceptions import ActionNotAllowed, ActionNotApplicable
from ..models import LLMAction
from .pages import FormInvalid, validate_form


def offers_buttons(model: type) -> bool:
    """Whether the editor of ``model``'s snippets has action buttons: a registered snippet
    model (not this app's own) that keeps revisions."""
    from ..snippets import keeps_revisions, snippet_models

    return keeps_revisions(model) and model in snippet_models()


def snippet_actions(model: type, request=None) -> list[LLMAction]:
    """Enabled actions whose snippet types include ``model``, cached on ``request`` (none for
    a model without editor buttons)."""
    from django.contrib.contenttypes.models import ContentType

    if not offers_buttons(model):
        return []
    content_type_id = ContentType.objects.get_for_model(model).pk
    cache = getattr(request, "_llm_snippet_actions", None) if request is not None else None
    if cache is not None and content_type_id in cache:
        return cache[content_type_id]
    actions = list(
        LLMAction.objects.filter(enabled=True, snippet_types__id=content_type_id)
        .filter(translation__isnull=True)  # translation actions translate, not fill fields
        .exclude(source_kind="image_blocks")
        .select_related("prompt")
        .order_by("name")
        .distinct()
    )
    if request is not None:
        if cache is None:
            cache = {}
            request._llm_snippet_actions = cache
        cache[content_type_id] = actions
    return actions


def user_may_run_snippet(user, obj: Any) -> bool:
    """Whether ``user`` may run actions on the snippet ``obj`` from its editor: the snippet's
    permission policy lets them change it, and nobody else holds a lock on it."""
    from ..run.access import lock_problem
    from ..snippets import can_change

    if user is None or not user.is_authenticated or obj is None or obj.pk is None:
        return False
    return can_change(user, obj) and lock_problem(user, obj) is None


def user_may_create_snippet(user, model: type) -> bool:
    """Whether ``user`` may run actions in the create view of ``model``'s snippets: its
    permission policy lets them add such snippets, and change them (what a run checks)."""
    from ..snippets import permission_policy

    if user is None or not user.is_authenticated or not offers_buttons(model):
        return False
    policy = permission_policy(model)
    return policy.user_has_permission(user, "add") and policy.user_has_permission(user, "change")


def check_can_create_snippet(action: LLMAction, model: type, user) -> None:
    """Raise if ``user`` may not run ``action`` on a new ``model`` snippet (the create view)."""
    if not user_may_create_snippet(user, model):
        raise ActionNotAllowed(_("You do not have permission to add this snippet."))
    if not action.enabled:
        raise ActionNotApplicable(_("The action “%(action)s” is disabled.") % {"action": action})
    if action not in snippet_actions(model):
        raise ActionNotApplicable(
            _("The action “%(action)s” does not apply to %(type)s snippets.")
            % {"action": action.name, "type": model._meta.verbose_name}
        )


def new_snippet(model: type, locale: str = "") -> Any:
    """An unsaved ``model`` snippet, as the create view starts it (in the locale with code
    ``locale``, else the default one, for a translatable model)."""
    from wagtail.models import Locale, TranslatableMixin

    obj = model()
    if isinstance(obj, TranslatableMixin):
        found = Locale.objects.filter(language_code=locale).first() if locale else None
        obj.locale = found or Locale.get_default()
    return obj


def build_new_snippet_from_form(model: type, data, user, locale: str = "") -> Any:
    """The snippet the create view's unsaved form describes, without saving anything.
    Raises :class:`FormInvalid`."""
    instance = new_snippet(model, locale)
    form = snippet_form_class(model)(data.copy(), instance=instance, for_user=user)
    return validate_form(
        form,
        _(
            "The snippet form that was sent is incomplete or malformed. Reload the editor "
            "and try again."
        ),
    )


def check_can_start_snippet(action: LLMAction, obj: Any, user) -> None:
    """Raise if ``user`` may not run ``action`` on the snippet ``obj`` from its editor."""
    from ..run.access import check

    model = type(obj)
    if not offers_buttons(model):
        raise ActionNotApplicable(
            _("%(model)s snippets keep no revisions, so they have no action buttons.")
            % {"model": capfirst(model._meta.verbose_name)}
        )
    from ..snippets import can_change

    if not can_change(user, obj):
        raise ActionNotAllowed(_("You do not have permission to edit this snippet."))
    check(action, obj, user)  # enabled, one of its snippet types, not locked
    if action.translates or action.source_kind == "image_blocks":
        raise ActionNotApplicable(
            _("The action “%(action)s” cannot run in the editor.") % {"action": action.name}
        )


def snippet_form_class(model: type):
    """The form class of ``model``'s snippet editor."""
    from wagtail.admin.panels import get_edit_handler

    return get_edit_handler(model).get_form_class()


def build_snippet_from_form(obj: Any, data, user) -> Any:
    """The snippet as its editor's unsaved form has it, without saving anything.

    As Wagtail's preview does: bind the edit form to the posted data on top of the newest
    revision, validate it with required fields deferred (as for a draft save), then
    ``form.save(commit=False)``. Raises :class:`FormInvalid`.
    """
    working = obj.get_latest_revision_as_object()
    form = snippet_form_class(type(obj))(data.copy(), instance=working, for_user=user)
    return validate_form(
        form,
        _(
            "The snippet form that was sent is incomplete or malformed. Reload the editor "
            "and try again."
        ),
    )


def working_object(item) -> tuple[Any, Any]:
    """What an editor job item runs on: the saved page or snippet (or the unsaved page of the
    create view) and the object built from the form's content; (None, None) when gone."""
    from .pages import _new_page_of

    payload = item.payload or {}
    if item.page is not None:
        page = item.page.specific
        return page, page.with_content_json(payload["content"])
    if payload.get("new_snippet"):  # the create view: the snippet has no id yet
        return _new_snippet_of(payload)
    if item.target_type_id is None:
        page = _new_page_of(payload)
        return page, page
    model = item.target_type.model_class()
    snippet = model._default_manager.filter(pk=item.target_id).first() if model else None
    if snippet is None:
        return None, None
    return snippet, snippet.with_content_json(payload["content"])


def _new_snippet_of(payload: dict) -> tuple[Any, Any]:
    """The unsaved snippet a create-view job runs on, from its stored content."""
    from django.contrib.contenttypes.models import ContentType

    try:
        model = ContentType.objects.get_for_id(payload["new_snippet"]["content_type"])
    except (KeyError, TypeError, ContentType.DoesNotExist):
        return None, None
    model = model.model_class()
    if model is None or not offers_buttons(model):
        return None, None
    obj = model.from_serializable_data(payload["content"])
    obj.pk = None
    return obj, obj


__all__ = [
    "FormInvalid",
    "build_new_snippet_from_form",
    "build_snippet_from_form",
    "check_can_create_snippet",
    "check_can_start_snippet",
    "offers_buttons",
    "snippet_actions",
    "new_snippet",
    "snippet_form_class",
    "user_may_create_snippet",
    "user_may_run_snippet",
    "working_object",
]
