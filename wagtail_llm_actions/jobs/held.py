"""Pages a run would find held by a Wagtail lock the page row does not show: in a moderation
workflow, or scheduled for publishing. The bulk confirmation's plan asks here so that its
counts match what the engine skips (:func:`..run.access.lock_problem`, the run's own check).

One query finds the pages of a selection with an active workflow state or a revision
approved to go live; only those (usually none) are then checked one by one, by the check a
run makes (Wagtail's ``get_lock()`` and the task's ``locked_for_user``), since a workflow
task decides in Python whom it locks.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db.models import CharField, Exists, OuterRef, Value, When
from django.db.models.functions import Cast
from wagtail.models import Page, Revision, WorkflowState

from ..exceptions import PageInModeration
from ..run.access import lock_problem

#: The skip reasons (``planning.SKIP_MODERATION``, ``planning.SKIP_LOCKED``).
MODERATION, LOCKED = "moderation", "locked"


def held_pages(queryset, user) -> dict[int, str]:
    """``{page id: skip reason}`` for the pages of ``queryset`` a run by ``user`` (None: a
    trigger or schedule) would skip because of a workflow (in moderation) or a scheduled
    publication (locked)."""
    page_type = ContentType.objects.get_for_model(Page)  # cached by ContentType's manager
    object_id = Cast(OuterRef("pk"), output_field=CharField())
    scheduled = Revision.objects.filter(
        base_content_type=page_type, object_id=object_id, approved_go_live_at__isnull=False
    )
    condition = Exists(scheduled)
    if getattr(settings, "WAGTAIL_WORKFLOW_ENABLED", True):
        states = WorkflowState.objects.active().filter(
            base_content_type=page_type, object_id=object_id
        )
        condition |= Exists(states)
    held = {}
    for page in queryset.filter(condition).order_by().specific():
        problem = lock_problem(user, page)
        if problem is not None:
            held[page.pk] = MODERATION if isinstance(problem, PageInModeration) else LOCKED
    return held


def held_whens(queryset, user) -> list[When]:
    """:func:`held_pages` as the ``When`` clauses of ``planning.annotate_reasons``."""
    return [When(pk=pk, then=Value(code)) for pk, code in held_pages(queryset, user).items()]


__all__ = ["held_pages", "held_whens"]
