"""Translating snippets (``TranslatableMixin``, issue 23 §2) as pages are translated: what
differs is only where the translation is found, who may write it, how a new one is made
(Wagtail's ``copy_for_translation``, saved as a draft when the model has drafts) and how the
translation memory names it (by content type and id instead of a page)."""

from __future__ import annotations

from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.utils.text import capfirst
from django.utils.translation import gettext as _

from .. import snippets
from ..exceptions import ActionNotAllowed, ActionNotApplicable


def is_translatable_snippet(obj: Any) -> bool:
    from wagtail.models import TranslatableMixin

    return snippets.is_snippet(obj) and isinstance(obj, TranslatableMixin)


def no_revisions(model: type) -> snippets.NoRevisions:
    """The error for a translatable snippet model without revisions: a translation is saved
    as a revision, so the action's "write directly" opt-in is no way out (not offered)."""
    return snippets.NoRevisions(
        _(
            "%(model)s snippets keep no revisions, so they cannot be translated by an "
            "action: a translation is saved as a draft revision. Nothing was written."
        )
        % {"model": capfirst(model._meta.verbose_name)}
    )


def check(action, obj: Any, locale, user=None) -> Any | None:
    """The existing translation of the snippet ``obj`` in ``locale`` (None: it will be
    created); raises when ``user`` may not write it or the snippet cannot be translated."""
    from ..run import access

    if not is_translatable_snippet(obj):
        raise ActionNotApplicable(
            _("%(model)s snippets are not translatable (no TranslatableMixin).")
            % {"model": type(obj)._meta.verbose_name}
        )
    if not action.applies_to(obj):
        raise ActionNotApplicable(
            _("“%(action)s” does not apply to snippets of this type.") % {"action": action.name}
        )
    if not snippets.keeps_revisions(type(obj)):
        raise no_revisions(type(obj))
    existing = obj.get_translation_or_none(locale)
    if existing is not None:
        if user is not None and not snippets.can_change(user, existing):
            raise ActionNotAllowed(_("You do not have permission to edit this snippet."))
        problem = access.lock_problem(user, existing)
        if problem is not None:
            raise problem
        return existing
    policy = snippets.permission_policy(type(obj))
    if user is not None and not policy.user_has_permission(user, "add"):
        raise ActionNotAllowed(_("You do not have permission to add this snippet."))
    return None


def create(obj: Any, locale) -> Any:
    """The new translation of ``obj`` in ``locale`` (Wagtail's ``copy_for_translation``),
    saved; with drafts, as a draft that is not live."""
    from wagtail.models import DraftStateMixin

    created = obj.copy_for_translation(locale)
    if isinstance(created, DraftStateMixin):
        created.live = False
        created.has_unpublished_changes = True
    created.save()
    return created


def locked(obj: Any) -> Any:
    """The translation's row read again under a lock (inside the write transaction)."""
    return type(obj)._default_manager.select_for_update().get(pk=obj.pk)


def memory_key(target: Any) -> dict[str, Any]:
    """The ``LLMTranslationSegment`` fields naming ``target`` (a page or a snippet)."""
    if snippets.is_snippet(target):
        return {
            "target_page": None,
            "target_type": ContentType.objects.get_for_model(type(target)),
            "target_id": str(target.pk),
        }
    return {"target_page_id": target.pk}
