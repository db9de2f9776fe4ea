"""The page an editor run works on: built from the unsaved edit (or create) form, the
actions a page offers, and who may run them.

::

    obj = build_page_from_form(page, request.POST, user)       # like Wagtail's preview
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils.translation import gettext as _
from wagtail.models import Page

from ..exceptions import LLMActionError
from ..models import LLMAction

#: Widget kinds the editor's script knows how to fill.
WIDGET_TEXT = "text"
WIDGET_TAGS = "tags"
WIDGET_DRAFTAIL = "draftail"


class FormInvalid(LLMActionError):
    """The unsaved form has errors, so there is no page to run on."""

    code = "form_invalid"

    def __init__(self, message: str, errors: dict[str, list[str]], **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.errors = errors


# -- which actions a page offers ---------------------------------------------------------------


def actions_for_type(page_class: type, request=None) -> list[LLMAction]:
    """Enabled actions whose page types include ``page_class``, cached on ``request``."""
    from django.contrib.contenttypes.models import ContentType

    content_type_id = ContentType.objects.get_for_model(page_class).pk
    cache = getattr(request, "_llm_editor_actions", None) if request is not None else None
    if cache is not None and content_type_id in cache:
        return cache[content_type_id]
    actions = list(
        LLMAction.objects.filter(enabled=True, page_types__id=content_type_id)
        .filter(translation__isnull=True)  # translation actions translate pages, not fields
        .exclude(source_kind="image_blocks")  # they write drafts: bulk, command, triggers
        .select_related("prompt")
        .order_by("name")
        .distinct()
    )
    if request is not None:
        if cache is None:
            cache = {}
            request._llm_editor_actions = cache
        cache[content_type_id] = actions
    return actions


def actions_for_page(page: Page, request=None) -> list[LLMAction]:
    """Enabled actions whose page types include ``page``'s type, cached on ``request``."""
    return actions_for_type(page.specific_class, request)


def user_may_create(user, page_class: type, parent: Page | None) -> bool:
    """Whether ``user`` may add a ``page_class`` page under ``parent`` (the create view)."""
    if user is None or not user.is_authenticated or parent is None:
        return False
    parent = parent.specific
    if not parent.permissions_for_user(user).can_add_subpage():
        return False
    return page_class in parent.creatable_subpage_models() and page_class.can_create_at(parent)


def user_may_run(user, page: Page) -> bool:
    """Whether ``user`` may run actions on ``page`` from the editor: may edit, not locked."""
    if user is None or not user.is_authenticated:
        return False
    if not page.permissions_for_user(user).can_edit():
        return False
    lock = page.get_lock()
    return lock is None or not lock.for_user(user)


def widget_kind(widget: Any) -> str:
    """How the editor's script fills ``widget``: "draftail", "tags" or "text"."""
    from taggit.forms import TagWidget
    from wagtail.admin.rich_text import DraftailRichTextArea

    if isinstance(widget, DraftailRichTextArea):
        return WIDGET_DRAFTAIL
    if isinstance(widget, TagWidget):
        return WIDGET_TAGS
    return WIDGET_TEXT


def form_class_for(obj: Any):
    """The editor form class of ``obj``: a page's, or a snippet's (its viewset's panels)."""
    if isinstance(obj, Page):
        return obj.specific_class.get_edit_handler().get_form_class()
    from wagtail.admin.panels import get_edit_handler

    return get_edit_handler(type(obj)).get_form_class()


# -- unsaved form -> page object -------------------------------------------------------------


def build_page_from_form(page: Page, data, user) -> Page:
    """The page as the editor's unsaved form has it, without saving anything.

    This is what Wagtail's ``PreviewOnEditView`` does: bind the page's edit form to the posted
    data on top of the latest revision, validate it with required fields deferred (as for a
    draft save), then ``form.save(commit=False)``. Raises :class:`FormInvalid`.
    """
    page = page.specific
    working = page.get_latest_revision_as_object()
    return _bind_and_build(form_class_for(page), working, page.get_parent(), data, user)


def new_page(page_class: type, parent: Page, user) -> Page:
    """An unsaved ``page_class`` page under ``parent``, placed in the tree as Wagtail's preview
    of the create view places it (so permissions and tree lookups work), owned by ``user``."""
    page = page_class(owner=user)
    page.locale = parent.locale
    page.depth = parent.depth + 1
    page.path = Page._get_children_path_interval(parent.path)[1]
    return page


def build_new_page_from_form(page_class: type, parent: Page, data, user) -> Page:
    """The page the create view's unsaved form describes, without saving anything.

    Raises :class:`FormInvalid`."""
    page = new_page(page_class, parent, user)
    form_class = page_class.get_edit_handler().get_form_class()
    return _bind_and_build(form_class, page, parent, data, user)


def _bind_and_build(form_class, working: Page, parent: Page, data, user) -> Page:
    data = data.copy()
    # As the preview does: a draft being written may have no title or slug yet.
    if not data.get("title"):
        data["title"] = working.title or _("Placeholder title")
    if not data.get("slug"):
        data["slug"] = working.slug or str(uuid.uuid4())
    form = form_class(data, instance=working, parent_page=parent, for_user=user)
    return validate_form(
        form,
        _(
            "The page form that was sent is incomplete or malformed. Reload the editor "
            "and try again."
        ),
    )


def validate_form(form, malformed: str):
    """The object an editor's bound ``form`` describes, unsaved: validated with required
    fields deferred (as for a draft save). Raises :class:`FormInvalid` (``malformed``: the
    message for a post that is not the editor's form)."""
    form.defer_required_fields()
    try:
        valid = form.is_valid()
    except (KeyError, ValueError, TypeError) as e:
        # Widgets such as StreamField's read their keys without a default: a post that is
        # not the editor's form (missing "body-count"…) is bad input, not a server error.
        raise FormInvalid(malformed, errors={}, code="malformed_form") from e
    if not valid:
        errors = {
            str(form.fields[name].label if name in form.fields else name): [str(m) for m in msgs]
            for name, msgs in form.errors.items()
        }
        if form.formsets:
            for formset in form.formsets.values():
                if formset.non_form_errors() or any(formset.errors):
                    errors.setdefault(_("Inline panels"), []).append(
                        _("An inline panel has errors.")
                    )
        fields = ", ".join(errors) or _("the form")
        raise FormInvalid(
            _("Fix the errors in %(fields)s, then try again.") % {"fields": fields},
            errors=errors,
        )
    return form.save(commit=False)


def serialise_page(obj: Page) -> dict:
    """JSON-safe content of ``obj``, the way a revision stores it."""
    return json.loads(json.dumps(obj.serializable_data(), cls=DjangoJSONEncoder))


def _new_page_of(payload: dict) -> Page | None:
    """The unsaved page a create-view job runs on, from its stored content, or None."""
    from django.contrib.contenttypes.models import ContentType

    new = payload.get("new") or {}
    try:
        page_class = ContentType.objects.get_for_id(new["content_type"]).model_class()
        parent = Page.objects.get(pk=new["parent"])
    except (KeyError, TypeError, ContentType.DoesNotExist, Page.DoesNotExist):
        return None
    if page_class is None or not issubclass(page_class, Page):
        return None
    obj = page_class.from_serializable_data(payload["content"])
    obj.pk = obj.id = None
    obj.depth = parent.depth + 1
    obj.path = Page._get_children_path_interval(parent.path)[1]
    return obj
