"""Who may do what: use actions, configure them, configure providers; see interactions.

Three rights, each granted in Settings → Groups:

* *Use* actions: run them on pages one may edit (Wagtail's page permissions; nothing else).
* *Configure* actions and prompts: the snippet add/change/delete permissions on
  ``LLMAction`` and ``LLMPrompt`` (prompt fields, action text, page types, fields).
* *Configure providers*: ``wagtail_llm_actions.configure_llm_provider`` (the action's
  :data:`PROVIDER_FIELDS`: where a request goes, with which key, for how long). Whoever has
  it is trusted with the site's provider keys, because they choose where keys are sent.

Interactions:

* Users with ``wagtail_llm_actions.view_llminteraction`` (and superusers) see every
  interaction.
* Other users with admin access see their own runs and runs on pages they can edit.
* Anyone else sees nothing.

The "pages they can edit" condition is built from the user's page permissions (one cached
query per request, as Wagtail's ``PagePermissionPolicy`` does) as ``path__startswith``
conditions, so filtering a report never issues a query per row.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce
from operator import or_

from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet, Value
from django.db.models.functions import Coalesce
from wagtail.models import Page
from wagtail.permission_policies.pages import PagePermissionPolicy

from .models import LLMInteraction

VIEW_ALL_PERMISSION = "wagtail_llm_actions.view_llminteraction"
ADMIN_ACCESS_PERMISSION = "wagtailadmin.access_admin"
PROVIDER_PERMISSION = "wagtail_llm_actions.configure_llm_provider"
CHANGE_ACTION_PERMISSION = "wagtail_llm_actions.change_llmaction"
CHANGE_PROMPT_PERMISSION = "wagtail_llm_actions.change_llmprompt"

#: Action fields only users with :data:`PROVIDER_PERMISSION` may set: the model and its
#: fallbacks, where requests go, which key they carry, raw extra parameters, and how long a
#: worker waits. Temperature and max tokens stay with the action's other settings.
PROVIDER_FIELDS = (
    "model",
    "fallback_models",
    "api_base",
    "api_key_name",
    "extra_params",
    "timeout",
)


def has_admin_access(user) -> bool:
    return bool(
        user is not None
        and user.is_authenticated
        and user.is_active
        and user.has_perm(ADMIN_ACCESS_PERMISSION)
    )


def can_configure_providers(user) -> bool:
    """Whether ``user`` may set an action's :data:`PROVIDER_FIELDS`."""
    return has_admin_access(user) and user.has_perm(PROVIDER_PERMISSION)


def can_change_actions(user) -> bool:
    """Whether ``user`` may edit actions (the snippet's change permission)."""
    return has_admin_access(user) and user.has_perm(CHANGE_ACTION_PERMISSION)


def can_change_prompts(user) -> bool:
    """Whether ``user`` may edit prompts (the snippet's change permission)."""
    return has_admin_access(user) and user.has_perm(CHANGE_PROMPT_PERMISSION)


def can_edit_any_page(user) -> bool:
    """Whether ``user`` may edit (or add, and so edit their own) any page at all."""
    return has_admin_access(user) and PagePermissionPolicy().user_has_any_permission(
        user, {"add", "change"}
    )


def explorable_pages(user) -> QuerySet:
    """The pages ``user`` can see in the admin's page explorer (Wagtail's own rule).

    Pages with any permission and their ancestors below the common root; nothing for users
    without admin access or page permissions.
    """
    if not has_admin_access(user):
        return Page.objects.none()
    policy = PagePermissionPolicy()
    if not user.is_superuser and not policy.get_cached_permissions_for_user(user):
        return Page.objects.none()
    return policy.explorable_instances(user)


def can_view_all(user) -> bool:
    """True if ``user`` may see every interaction (superuser or the view permission)."""
    return has_admin_access(user) and (user.is_superuser or user.has_perm(VIEW_ALL_PERMISSION))


def _page_paths(user) -> tuple[list[str], list[str]]:
    """Tree paths where ``user`` may edit any page, and where only pages they own."""
    policy = PagePermissionPolicy()
    any_page: set[str] = set()
    owned: set[str] = set()
    for perm in policy.get_cached_permissions_for_user(user):
        codename = perm.permission.codename
        if codename == "change_page":
            any_page.add(perm.page.path)
        elif codename == "add_page":
            owned.add(perm.page.path)

    def outermost(paths):
        kept: list[str] = []
        for path in sorted(paths):  # a parent sorts before its descendants
            if not any(path.startswith(parent) for parent in kept):
                kept.append(path)
        return kept

    any_page_paths = outermost(any_page)
    owned_paths = [p for p in outermost(owned) if not any(p.startswith(a) for a in any_page_paths)]
    return any_page_paths, owned_paths


def page_edit_checker(user) -> Callable[[Page | None], bool]:
    """A test "may ``user`` edit this page?" that runs no query per page (for listings).

    Uses the page's ``path`` and ``owner_id``, as :func:`editable_pages_q` does; Wagtail's
    own checks still run when the page is opened.
    """
    if not has_admin_access(user):
        return lambda page: False
    if user.is_superuser:
        return lambda page: page is not None
    any_page, owned = _page_paths(user)

    def check(page) -> bool:
        if page is None:
            return False
        if any(page.path.startswith(path) for path in any_page):
            return True
        return page.owner_id == user.pk and any(page.path.startswith(path) for path in owned)

    return check


def editable_pages_q(user, prefix: str = "page__") -> Q | None:
    """A condition matching rows whose page ``user`` can edit, or None if there are none."""
    any_page, owned = _page_paths(user)
    conditions = [Q(**{f"{prefix}path__startswith": path}) for path in any_page]
    conditions += [
        Q(**{f"{prefix}path__startswith": path, f"{prefix}owner": user.pk}) for path in owned
    ]
    return reduce(or_, conditions) if conditions else None


def visibility_q(user) -> Q:
    """The condition on ``LLMInteraction`` rows a user without the view permission may see.

    Pages are matched with ``page__in`` a subquery on the page tree rather than a join, so the
    condition reads only the interaction's ``user_id`` and ``page_id`` (both in the report's
    covering index).
    """
    condition = Q(user=user.pk)
    pages = editable_pages_q(user, prefix="")
    if pages is None:
        return condition
    return condition | Q(page__in=Page.objects.filter(pages).values("pk"))


def per_row(condition: Q) -> Coalesce:
    """``condition`` as one expression tested on each row of an index scan.

    An ``OR`` of indexed columns tempts SQLite into one index lookup per branch followed by a
    table read per matching row (slow when a quarter of 100,000 rows match). Wrapped, it is
    evaluated while scanning ``created_at`` order (the listing stops after a page of rows) or
    the report's narrow covering index (totals and chart). Same rows either way.
    """
    return Coalesce(ExpressionWrapper(condition, output_field=BooleanField()), Value(False))


def visible_interactions(user, queryset: QuerySet | None = None) -> QuerySet:
    """``queryset`` (all interactions by default) restricted to what ``user`` may see."""
    if queryset is None:
        queryset = LLMInteraction.objects.all()
    if not has_admin_access(user):
        return queryset.none()
    if can_view_all(user):
        return queryset
    return queryset.filter(per_row(visibility_q(user)))


def can_view_interaction(user, interaction: LLMInteraction) -> bool:
    """Whether ``user`` may see ``interaction`` (checked in Python, no extra row query)."""
    if not has_admin_access(user):
        return False
    if can_view_all(user) or (interaction.user_id and interaction.user_id == user.pk):
        return True
    page = interaction.page
    return page is not None and page.permissions_for_user(user).can_edit()


def can_edit_page(user, page) -> bool:
    return (
        page is not None and has_admin_access(user) and page.permissions_for_user(user).can_edit()
    )


def may_use_report(user) -> bool:
    """Whether to show the report in the menu: the view permission or any page edit rights."""
    return can_view_all(user) or can_edit_any_page(user)
