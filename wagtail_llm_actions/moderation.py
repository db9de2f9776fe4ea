"""Automatic drafts and moderation (issue 22 §3, "Drafts only").

A draft a trigger wrote (on publish, on source change, on a schedule) is never published.
With ``LLMAction.submit_for_moderation`` on it is submitted to the page's moderation workflow
(Wagtail's ``page.get_workflow().start(page, user)``) once written; it is skipped, with the
reason logged, when workflows are off, the page has none, it is in moderation already, or a
newer revision replaced the draft. The editor says when the page's newest revision is such a
draft no person has reviewed yet, and the page listing can filter those pages.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db.models import F

from .models import InteractionOutcome, InteractionStatus, InteractionTrigger, LLMInteraction

logger = logging.getLogger(__name__)

#: What an automatic run records as its trigger.
AUTOMATIC = (
    InteractionTrigger.ON_PUBLISH,
    InteractionTrigger.ON_SOURCE_CHANGE,
    InteractionTrigger.SCHEDULE,
)


def submit_for_moderation(interaction: LLMInteraction, user: Any = None) -> Any:
    """Submit the draft ``interaction`` wrote to its page's workflow; the workflow state,
    or None when skipped (the reason is logged)."""
    from django.conf import settings
    from wagtail.models import Page

    page = Page.objects.filter(pk=interaction.page_id).first()
    skipped = None
    if page is None:
        skipped = "the page is gone"
    elif not getattr(settings, "WAGTAIL_WORKFLOW_ENABLED", True):
        skipped = "workflows are disabled"
    if skipped is None:
        page = page.specific
        workflow = page.get_workflow()
        if workflow is None:
            skipped = "the page has no workflow"
        elif page.workflow_in_progress:
            skipped = "the page is in moderation already"
        elif page.latest_revision_id != interaction.revision_id:
            skipped = "a newer revision replaced the draft"
    if skipped is not None:
        logger.info(
            "Draft of action %s on page %s not submitted for moderation: %s",
            interaction.action_id,
            interaction.page_id,
            skipped,
        )
        return None
    return workflow.start(page, user)


def _automatic_drafts():
    return LLMInteraction.objects.filter(
        trigger__in=AUTOMATIC,
        status=InteractionStatus.SUCCESS,
        outcome=InteractionOutcome.DRAFTED,
        revision__isnull=False,
    )


def waiting_automatic_draft(page: Any) -> LLMInteraction | None:
    """The automatic draft that is ``page``'s newest revision and not yet published, or
    None: one query (none without a newest revision)."""
    latest = getattr(page, "latest_revision_id", None)
    if latest is None or latest == getattr(page, "live_revision_id", None):
        return None
    return _automatic_drafts().filter(revision_id=latest).order_by("-pk").first()


def waiting_page_ids():
    """Ids of the pages whose newest revision is an unpublished automatic draft (a
    subquery): the page listing's filter."""
    return (
        _automatic_drafts()
        .filter(revision_id=F("page__latest_revision_id"))
        .exclude(page__live_revision_id=F("revision_id"))
        .values("page_id")
    )


__all__ = ["AUTOMATIC", "submit_for_moderation", "waiting_automatic_draft", "waiting_page_ids"]
