"""Canary before bulk: try a changed action on a sample of pages before running it on many.

A canary is a small bulk job (``options["canary"]``) on N pages the user picks or the app
picks at random; its drafts go to the review queue like any job's, and its page shows each
page's previous answer of the action beside the new one. With the site setting
``WAGTAIL_LLM_ACTIONS["REQUIRE_CANARY"]``, a bulk run of more than ``CANARY_SIZE`` pages of
an action that changed since its last bulk run is refused until a canary of the action as
it is now has run and every one of its drafts was accepted or rejected. Domain only (no
HTTP): the screens are :mod:`.views.canary`.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass

from django.db.models import Max, Q
from django.forms.models import model_to_dict
from django.utils.translation import gettext as _

from .conf import get_setting
from .jobs import planning
from .models import (
    InteractionOutcome,
    InteractionStatus,
    ItemStatus,
    JobKind,
    JobStatus,
    LLMAction,
    LLMInteraction,
    LLMJob,
    LLMJobItem,
)
from .permissions import editable_pages_q

#: Fields of an action that do not change its answers.
NOT_ANSWER_FIELDS = {
    "id",
    "name",
    "slug",
    "description",
    "enabled",
    "selection_tool",
    "created_at",
    "updated_at",
}
DECIDED = (
    InteractionOutcome.ACCEPTED,
    InteractionOutcome.DISCARDED,
    InteractionOutcome.EDITED,
)


def size() -> int:
    return max(1, int(get_setting("CANARY_SIZE")))


def fingerprint(action: LLMAction) -> str:
    """A hash of what makes the action's answers: its settings and its prompt's text."""
    data = {
        key: value
        for key, value in model_to_dict(action).items()
        if key not in NOT_ANSWER_FIELDS and key != "page_types"
    }
    data["prompt_template"] = action.prompt.template if action.prompt_id else ""
    encoded = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:32]


def is_canary(job: LLMJob) -> bool:
    return bool((job.options or {}).get("canary"))


def changed_since_last_run(action: LLMAction) -> bool:
    """Whether the action (or its prompt) changed since its last bulk run, or has never had
    one. A bulk run is a (non-canary) bulk job that wrote at least one page, whatever its
    status now: completed, failed in part, cancelled half way or still running all ran the
    action as it was then; a job that wrote nothing (cancelled before any page ran, or every
    page failed) did not, and does not count."""
    last = (
        LLMJob.objects.filter(action=action, kind=JobKind.BULK, items__status=ItemStatus.SUCCEEDED)
        .exclude(options__has_key="canary")
        .aggregate(last=Max("created_at"))["last"]
    )
    if last is None:
        return True
    changed = action.updated_at
    if action.prompt_id and action.prompt.updated_at > changed:
        changed = action.prompt.updated_at
    return changed > last


def canaries(action: LLMAction):
    """The action's canaries with its current settings, newest first."""
    return LLMJob.objects.filter(
        action=action, options__canary__fingerprint=fingerprint(action)
    ).order_by("-created_at", "-pk")


def undecided(job: LLMJob) -> int:
    """Drafts of ``job`` nobody has accepted or rejected yet (one query)."""
    revisions = job.items.filter(status="succeeded").values("interaction__revision_id")
    return (
        LLMInteraction.objects.filter(revision_id__in=revisions, status=InteractionStatus.SUCCESS)
        .exclude(outcome__in=[*DECIDED, InteractionOutcome.FED])
        .count()
    )


def is_reviewed(job: LLMJob) -> bool:
    """A canary is reviewed once it finished, wrote a draft and each draft was decided on."""
    return (
        job.status == JobStatus.COMPLETED
        and job.items.filter(status="succeeded").exists()
        and undecided(job) == 0
    )


def canary_required(request=None) -> bool:
    """Whether this site asks for a canary: its "Bulk runs" site setting (Settings menu) if it
    chose, else ``WAGTAIL_LLM_ACTIONS["REQUIRE_CANARY"]``."""
    from django.apps import apps

    if request is not None and apps.is_installed("wagtail.contrib.settings"):
        from .models import BulkRunSettings, CanaryRule

        rule = BulkRunSettings.for_request(request).require_canary
        if rule:
            return rule == CanaryRule.REQUIRED
    return bool(get_setting("REQUIRE_CANARY"))


def canary_problem(action: LLMAction | None, pages: int, request=None) -> str | None:
    """Why a bulk run of ``action`` over ``pages`` pages may not start, or None
    (``request``: whose site's setting applies)."""
    if action is None or pages <= size() or not canary_required(request):
        return None
    if not changed_since_last_run(action):
        return None
    if any(is_reviewed(job) for job in canaries(action)[:5]):
        return None
    return _(
        "“%(action)s” has changed since its last bulk run, and this site asks for a canary "
        "first: run it on a sample of %(size)s pages, review its drafts (accept or reject "
        "each), then start the bulk run."
    ) % {"action": action.name, "size": size()}


def eligible_pages(action: LLMAction, user, pool: list[int] | None = None) -> list[int]:
    """Pages the action applies to that ``user`` may edit (of ``pool``, if given)."""
    from wagtail.models import Page

    type_ids = list(action.page_types.values_list("pk", flat=True))
    pages = Page.objects.filter(depth__gt=1)
    if type_ids:
        pages = pages.filter(content_type_id__in=type_ids)
    if pool is not None:
        pages = pages.filter(pk__in=pool)
    if not user.is_superuser:
        editable = editable_pages_q(user, prefix="")
        if editable is None:
            return []
        pages = pages.filter(editable)
    return list(pages.order_by("pk").values_list("pk", flat=True)[:10_000])


def pick(action: LLMAction, user, pool: list[int] | None = None, n: int | None = None):
    """``n`` (default ``CANARY_SIZE``) pages at random among the eligible ones."""
    candidates = eligible_pages(action, user, pool)
    n = min(n or size(), len(candidates))
    return sorted(random.sample(candidates, n))  # noqa: S311 - a sample, not a secret


def start_canary(action: LLMAction, user, page_ids: list[int]) -> LLMJob:
    """A canary job of ``action`` on ``page_ids`` (re-running unchanged pages), queued."""
    job = planning.create_job(action, user, page_ids, force=True, kind=JobKind.BULK)
    job.options = {**(job.options or {}), "canary": {"fingerprint": fingerprint(action)}}
    job.save(update_fields=["options"])
    planning.enqueue_job(job)
    return job


@dataclass
class CanaryRow:
    page_id: int
    title: str
    status: str
    status_label: str
    old: str | None  # the action's previous answer on the page (None: it never ran there)
    new: str | None
    outcome: str


def rows(job: LLMJob) -> list[CanaryRow]:
    """Each page of a canary: the previous answer of the action (its latest outside a
    canary) beside the new one (two queries, however many pages)."""
    items = list(job.items.select_related("page", "interaction").order_by("pk"))
    page_ids = [item.page_id for item in items if item.page_id]
    previous: dict[int, str] = {}
    if job.action_id:
        for page_id, value in (
            LLMInteraction.objects.filter(
                Q(outcome__in=[*DECIDED, InteractionOutcome.DRAFTED]) | Q(outcome=""),
                action_id=job.action_id,
                page_id__in=page_ids,
                status=InteractionStatus.SUCCESS,
                created_at__lt=job.created_at,
            )
            .exclude(  # earlier canaries tried the new settings: not the previous answer
                pk__in=LLMJobItem.objects.filter(
                    job__action_id=job.action_id, job__options__has_key="canary"
                ).values("interaction_id")
            )
            .order_by("created_at", "pk")
            .values_list("page_id", "output_value")
        ):
            previous[page_id] = value  # the latest wins
    return [
        CanaryRow(
            page_id=item.page_id,
            title=item.page.get_admin_display_title() if item.page else _("(deleted page)"),
            status=item.status,
            status_label=str(item.get_status_display()),
            old=previous.get(item.page_id),
            new=item.interaction.output_value if item.interaction_id else None,
            outcome=item.interaction.get_outcome_display() if item.interaction_id else "",
        )
        for item in items
    ]
