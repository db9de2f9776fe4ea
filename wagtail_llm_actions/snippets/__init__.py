"""Snippets as targets (issue 23 §2): which snippet models an action runs on, who may run it,
and how the answer is written.

* A snippet model with ``RevisionMixin`` is written as pages are: a new revision saved from
  the newest one (:mod:`..run.drafts`), the live row never changed.
* A snippet model without revisions is written only by an action that opts in
  (``LLMAction.writes_directly``): the answer goes into the row itself, the previous values
  are recorded on the interaction and :mod:`.direct` can put them back.
* Only users the snippet's permission policy lets "change" the snippet may run actions on it.
"""

from __future__ import annotations

from typing import Any

from django.utils.text import capfirst
from django.utils.translation import gettext as _

from ..exceptions import ConfigurationProblem


class NoRevisions(ConfigurationProblem):
    """A snippet without revisions, and an action that does not write directly."""

    code = "no_revisions"


def keeps_revisions(model: type) -> bool:
    """Whether ``model`` saves revisions (Wagtail's ``RevisionMixin``)."""
    from wagtail.models import RevisionMixin

    return isinstance(model, type) and issubclass(model, RevisionMixin)


def is_snippet(obj: Any) -> bool:
    """Whether ``obj`` is a registered snippet (not a page)."""
    from wagtail.models import Page

    return not isinstance(obj, Page) and hasattr(type(obj), "snippet_viewset")


def writes_directly(obj: Any) -> bool:
    """Whether an answer for ``obj`` is written into the row itself (a snippet without
    revisions)."""
    return is_snippet(obj) and not keeps_revisions(type(obj))


def permission_policy(model: type):
    """The snippet viewset's permission policy (Wagtail's registry as a fallback)."""
    viewset = getattr(model, "snippet_viewset", None)
    if viewset is not None:
        return viewset.permission_policy
    from wagtail.permissions import policy_registry

    return policy_registry.get_by_type(model)


def can_change(user, obj: Any) -> bool:
    """Whether ``user`` may edit the snippet ``obj`` (its policy's "change")."""
    return permission_policy(type(obj)).user_has_permission_for_instance(user, "change", obj)


def editable_ids(user, model: type, ids) -> set:
    """The ids among ``ids`` of ``model`` snippets ``user`` may change (None: any)."""
    if user is None:
        queryset = model._default_manager.all()
    else:
        queryset = permission_policy(model).instances_user_has_permission_for(user, "change")
    return set(queryset.filter(pk__in=list(ids)).values_list("pk", flat=True))


def no_revisions(model: type) -> NoRevisions:
    """The error for a snippet model without revisions and an action without the opt-in."""
    return NoRevisions(
        _(
            "%(model)s snippets keep no revisions, so the answer cannot be saved as a draft. "
            "Nothing was written. Tick “write snippets directly” on the action to write "
            "into the snippet itself (each write can be undone from the report)."
        )
        % {"model": capfirst(model._meta.verbose_name)}
    )


def check_writable(action, obj: Any) -> None:
    """Raise :class:`NoRevisions` if ``action`` cannot write to the snippet ``obj``."""
    if writes_directly(obj) and not action.writes_directly:
        raise no_revisions(type(obj))


def snippet_models() -> list[type]:
    """Every registered snippet model a site can target (not this app's own)."""
    from wagtail.snippets.models import get_snippet_models

    return [m for m in get_snippet_models() if m._meta.app_label != "wagtail_llm_actions"]


def snippet_model(label: str) -> type:
    """The registered snippet model ``app_label.ModelName``; ValueError if there is none."""
    from django.apps import apps

    try:
        model = apps.get_model(label)
    except (LookupError, ValueError) as e:
        raise ValueError(_("There is no model “%(label)s”.") % {"label": label}) from e
    if model not in snippet_models():
        raise ValueError(_("“%(label)s” is not a registered snippet model.") % {"label": label})
    return model


def fresh_copy(obj: Any) -> Any:
    """The snippet ``obj`` as its row is now (a new instance: ``obj`` is never written)."""
    return type(obj)._default_manager.get(pk=obj.pk)


def name_rows(rows: list, user) -> None:
    """Set ``snippet`` and ``snippet_edit_url`` on report rows that ran on a snippet (one
    query per snippet model on the page of rows)."""
    from django.contrib.contenttypes.models import ContentType
    from wagtail.admin.admin_url_finder import AdminURLFinder

    wanted: dict[int, set[str]] = {}
    for row in rows:
        row.snippet, row.snippet_edit_url = None, ""
        if row.page_id is None and row.content_type_id and row.object_id:
            wanted.setdefault(row.content_type_id, set()).add(row.object_id)
    found: dict[tuple[int, str], Any] = {}
    for type_id, ids in wanted.items():
        model = ContentType.objects.get_for_id(type_id).model_class()
        if model is None or model not in snippet_models():
            continue
        for obj in model._default_manager.filter(pk__in=list(ids)):
            found[type_id, str(obj.pk)] = obj
    finder = AdminURLFinder(user)
    urls: dict[tuple[int, str], str] = {}
    for row in rows:
        key = (row.content_type_id, row.object_id)
        row.snippet = found.get(key)
        if row.snippet is not None:
            if key not in urls:
                urls[key] = finder.get_edit_url(row.snippet) or ""
            row.snippet_edit_url = urls[key]
