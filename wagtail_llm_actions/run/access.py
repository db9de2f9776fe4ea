"""Who may run an action on an object, and whether anything may be written to it now."""

from __future__ import annotations

import html
from typing import Any

from django.utils.html import strip_tags
from django.utils.translation import gettext as _
from wagtail.models import Page

from .. import rowstate, snippets
from ..exceptions import (
    ActionNotAllowed,
    ActionNotApplicable,
    LLMActionError,
    PageInModeration,
    PageLocked,
)
from ..models import LLMAction


def check(action: LLMAction, obj: Any, user=None, *, locks: bool = True) -> None:
    """Raise if ``user`` may not run ``action`` on ``obj`` (permission, type, and with
    ``locks`` a lock or moderation: nothing may be written to ``obj`` now)."""
    if not action.enabled:
        raise ActionNotApplicable(_("The action “%s” is disabled.") % action.name)
    if isinstance(obj, Page) and not action.applies_to(obj):
        raise ActionNotApplicable(
            _("The action “%(action)s” does not apply to %(type)s pages.")
            % {"action": action.name, "type": obj.specific_class._meta.verbose_name}
        )
    if snippets.is_snippet(obj):
        if not action.applies_to(obj):
            raise ActionNotApplicable(
                _("The action “%(action)s” does not apply to %(type)s snippets.")
                % {"action": action.name, "type": obj._meta.verbose_name}
            )
        if user is not None and not can_edit(user, obj):
            raise ActionNotAllowed(_("You do not have permission to edit this snippet."))
        snippets.check_writable(action, obj)
    if user is not None and not can_edit(user, obj):
        raise ActionNotAllowed()
    problem = lock_problem(user, obj) if locks else None
    if problem is not None:
        raise problem


def can_edit(user, obj: Any) -> bool:
    if isinstance(obj, Page):
        return obj.permissions_for_user(user).can_edit()
    if snippets.is_snippet(obj):
        return snippets.can_change(user, obj)
    opts = obj._meta
    return user.has_perm(f"{opts.app_label}.change_{opts.model_name}")


def lock_problem(user, obj: Any) -> PageLocked | None:
    """Why ``obj`` cannot be changed by ``user`` now (by anyone, without a user), or None: a
    :class:`PageInModeration` for a page in a moderation workflow, else a :class:`PageLocked`."""
    lock = rowstate.get_lock(obj)
    if lock is None or (user is not None and not lock.for_user(user)):
        return None
    from wagtail.locks import WorkflowLock

    # Wagtail's message is HTML (the user's name in <b>); ours is shown as plain text.
    message = plain(lock.get_message(user)) if user is not None else ""
    if isinstance(lock, WorkflowLock):
        return PageInModeration(message or _("The page is in moderation."))
    return PageLocked(message or _("The page is locked."))


def lock_message(user, obj: Any) -> str | None:
    """Why ``obj`` cannot be changed by ``user`` (or by anyone, without a user), or None."""
    problem = lock_problem(user, obj)
    return problem.message if problem is not None else None


def lock_reason(user, obj: Any, flags: rowstate.LockFlags | None = None) -> LLMActionError | None:
    """A :class:`PageLocked` (or :class:`PageInModeration`) if ``obj`` cannot be written now
    (``flags``: what ``rowstate.lock_flags`` found for it in this transaction, if asked)."""
    lock = rowstate.get_lock(obj, flags=flags)
    if lock is None:
        return None
    if user is not None and not lock.for_user(user):
        return None
    from wagtail.locks import WorkflowLock

    if isinstance(lock, WorkflowLock):
        message = (
            plain(lock.get_message(user))
            if user is not None
            else _("The page is in moderation, so the answer was not written.")
        )
        return PageInModeration(message or _("The page is in moderation."))
    message = plain(lock.get_message(user)) if user is not None else _("The page is locked.")
    return PageLocked(message or _("The page is locked."))


def reload_user(user):
    """The user as they are now (None if deleted or inactive); a long job holds the user
    object with its caches."""
    if user is None or user.pk is None:
        return user
    from django.contrib.auth import get_user_model

    # (request.user is a lazy object: ask the user model, not its type)
    return get_user_model()._default_manager.filter(pk=user.pk, is_active=True).first()


def plain(message) -> str:
    """Wagtail's lock messages are HTML (the user's name in <b>); ours are plain text."""
    return html.unescape(strip_tags(str(message or "")))
