"""Triggers: actions that run by themselves, through the job engine, as drafts.

An action's ``trigger`` is ``manual`` (the default), ``on_publish`` (a page of its types is
published) or ``on_source_change`` (a page of its types is saved, by anyone or anything:
the editor, the Python API, a command, and the page is not unchanged for the action);
``trigger_schedule`` (a cron expression, a django-q2 schedule) runs it over the pages of its
types whose source changed. Nothing here knows about HTTP: :mod:`.signal_handlers` calls
:func:`on_revision_saved` and :func:`on_page_published`; the schedule's task calls
:func:`run_schedule`.

Every run is a job item (``JobKind.TRIGGER``) run by the engine, so what holds for bulk jobs
holds here: one draft at most per item however often a task is redelivered, never
published, budgets checked before each call, an unchanged source skipped (:mod:`.unchanged`),
the run recorded with what triggered it (``InteractionTrigger``).

* **Debounce.** A triggered item waits ``trigger_delay`` seconds (``not_before``) and reads
  the page's newest revision only when it runs. A page and action that have a queued or
  running item (of any job) get no second one: the saves made meanwhile are in the run.
  Checking and creating happen in one write transaction, serialised per action (a row lock
  on PostgreSQL, SQLite's write lock), so concurrent saves make one item.
* **Unchanged pages never run.** A save or a publish after which the page is unchanged for
  the action by the rule of :mod:`.unchanged` (an answer of the same inputs: rendered
  messages, model and settings, is in the newest revision, or a person discarded it) creates
  nothing; answers that wrote nothing (unsaved editor answers, feeding pipeline steps,
  stored but unwritten answers) never hold a trigger back. The engine checks the rule again
  when the item runs. Drafts the app writes itself (any interaction's revision) trigger nothing, so
  an action that reads what it writes cannot loop.
* **Picked up.** A delayed item is started by a one-off django-q2 schedule at its time; if
  that is lost, ``tasks.keep_jobs_running`` (every minute) queues a worker for any job with
  an item due and no live coordinator.
* **Stopped.** A disabled action triggers nothing (and its queued items are skipped when they
  run); nor does one with a budget spent for the period (:func:`exhausted_budget`), and a
  budget that runs out meanwhile refuses the calls before they are sent (:mod:`.budgets`).
* **Cost per save.** One query finds the triggered actions of the page's type (kept on the
  revision, so a publish that also saves asks once); nothing more when there are none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import timedelta

from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.utils import timezone

from .models import (
    ActionTrigger,
    InteractionTrigger,
    ItemStatus,
    JobKind,
    JobStatus,
    LLMAction,
    LLMInteraction,
    LLMJob,
    LLMJobItem,
)

logger = logging.getLogger(__name__)

#: The task a one-off schedule queues when a delayed item is due (the job engine's worker).
PICKUP_FUNC = "wagtail_llm_actions.tasks.run_job"
#: The task of an action's ``trigger_schedule``.
SCHEDULE_FUNC = "wagtail_llm_actions.tasks.run_trigger_schedule"
#: Seconds after ``not_before`` at which the one-off schedule queues the worker.
PICKUP_MARGIN = 1

#: What the interactions of each event trigger record.
EVENT_TRIGGERS = {
    ActionTrigger.ON_PUBLISH: InteractionTrigger.ON_PUBLISH,
    ActionTrigger.ON_SOURCE_CHANGE: InteractionTrigger.ON_SOURCE_CHANGE,
}
_CACHE_ATTR = "_llm_triggered_actions"


def schedule_name(action_id: int) -> str:
    """The name of ``action_id``'s django-q2 schedule."""
    return f"wagtail_llm_actions: trigger schedule of action {action_id}"


def pickup_name(job_id: int) -> str:
    return f"wagtail_llm_actions: start triggered job {job_id}"


# -- the events ----------------------------------------------------------------------------------


def triggered_actions(content_type_id: int) -> list[tuple[int, str]]:
    """``(action id, trigger)`` of the enabled actions with an event trigger that apply to
    pages of ``content_type_id``: one query."""
    return list(
        LLMAction.objects.filter(enabled=True, page_types=content_type_id)
        .exclude(trigger=ActionTrigger.MANUAL)
        .values_list("pk", "trigger")
    )


def _actions_for(revision, content_type_id: int) -> list[tuple[int, str]]:
    """:func:`triggered_actions`, asked once per revision (a publish also saves one)."""
    cached = getattr(revision, _CACHE_ATTR, None)
    if cached is None:
        cached = triggered_actions(content_type_id)
        if revision is not None:
            setattr(revision, _CACHE_ATTR, cached)
    return cached


def _page_type_id() -> int:
    from wagtail.models import Page

    return ContentType.objects.get_for_model(Page).pk  # cached by ContentType's manager


def on_revision_saved(revision) -> None:
    """A page revision was created: queue the ``on_source_change`` actions of its type
    whose inputs changed (after the save commits)."""
    if revision.base_content_type_id != _page_type_id():
        return
    ids = [
        pk
        for pk, trigger in _actions_for(revision, revision.content_type_id)
        if trigger == ActionTrigger.ON_SOURCE_CHANGE
    ]
    if ids:
        page_id, revision_id, user_id = int(revision.object_id), revision.pk, revision.user_id
        _after_commit(
            lambda: fire(
                ids,
                page_id,
                InteractionTrigger.ON_SOURCE_CHANGE,
                user_id=user_id,
                revision_id=revision_id,
            )
        )


def on_page_published(page, revision=None) -> None:
    """A page was published: queue the ``on_publish`` actions of its type whose inputs
    changed (after the publish commits)."""
    ids = [
        pk
        for pk, trigger in _actions_for(revision, page.content_type_id)
        if trigger == ActionTrigger.ON_PUBLISH
    ]
    if ids:
        page_id = page.pk
        user_id = getattr(revision, "user_id", None)
        _after_commit(lambda: fire(ids, page_id, InteractionTrigger.ON_PUBLISH, user_id=user_id))


def _after_commit(func: Callable[[], None]) -> None:
    """Run ``func`` once the current transaction commits (now, outside one); an error is
    logged, never raised into the save."""

    def safe() -> None:
        try:
            func()
        except Exception:  # a trigger must never break a save  # noqa: BLE001
            logger.exception("LLM action trigger failed")

    if connection.in_atomic_block:
        transaction.on_commit(safe)
    else:
        safe()


def fire(
    action_ids: Iterable[int],
    page_id: int,
    trigger: str,
    *,
    user_id: int | None = None,
    revision_id: int | None = None,
) -> list[LLMJob]:
    """Queue a run of each of ``action_ids`` on ``page_id`` whose inputs changed (see
    :func:`queue_run`); ``revision_id``: the revision saved, none if the app wrote it."""
    from django.contrib.auth import get_user_model
    from wagtail.models import Page

    if revision_id is not None and LLMInteraction.objects.filter(revision_id=revision_id).exists():
        return []  # a draft the app wrote: never a trigger (no loops)
    page = Page.objects.filter(pk=page_id).first()
    if page is None:
        return []
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    queued = []
    for action in LLMAction.objects.filter(pk__in=list(action_ids)).select_related("prompt"):
        try:
            job = queue_run(action, page, trigger, user)
        except Exception:  # one action's problem must not stop the others  # noqa: BLE001
            logger.exception("Trigger of action %s on page %s failed", action.pk, page_id)
            continue
        if job is not None:
            queued.append(job)
    return queued


def source_changed(action: LLMAction, page) -> bool:
    """Whether a run of ``action`` on ``page``'s newest revision would not be skipped as
    unchanged: the rule of :mod:`.unchanged` (the one bulk jobs, the command and the preview
    apply), so only an answer of the same inputs that is in the newest revision, or that a
    person discarded, holds a trigger back. An empty source: False (nothing to send).

    The run's own checks (permission, lock, moderation) are the engine's, when the item
    runs. Reads the newest revision, renders the messages and makes one query; no model call.
    """
    from .exceptions import SourceEmpty
    from .service import LLMService, working_copy
    from .unchanged import holds, written_answers

    working, _revision = working_copy(page.specific)
    try:
        prepared = LLMService().prepare(action, working)
    except SourceEmpty:
        return False
    return not holds(written_answers(action, [page.pk]).get(page.pk, []), prepared)


def exhausted_budget(action: LLMAction, user_id: int | None):
    """A budget that applies to a run of ``action`` by ``user_id`` and has nothing left this
    period, or None: a trigger then queues nothing (a run would be refused before the call
    anyway, see :mod:`.budgets`). A query, and one per budget that applies."""
    from .budgets import applicable, period_start
    from .models import LLMBudgetUsage

    for budget in applicable(action, user_id):
        usage = (
            LLMBudgetUsage.objects.filter(budget=budget, period_start=period_start(budget))
            .values_list("tokens", "cost")
            .first()
        )
        if usage is None:
            continue
        tokens, cost = usage
        if (budget.max_tokens is not None and tokens >= budget.max_tokens) or (
            budget.max_cost is not None and cost >= budget.max_cost
        ):
            return budget
    return None


def open_item_exists(action: LLMAction, page_id: int) -> bool:
    """Whether ``action`` has a queued or running item on ``page_id`` in an engine job."""
    from .jobs.planning import ENGINE_KINDS

    return LLMJobItem.objects.filter(
        page_id=page_id,
        job__action=action,
        job__pipeline__isnull=True,
        job__kind__in=ENGINE_KINDS,
        status__in=[ItemStatus.QUEUED, ItemStatus.RUNNING],
    ).exists()


def queue_run(action: LLMAction, page, trigger: str, user=None) -> LLMJob | None:
    """A trigger job with one item for ``page``, waiting ``action.trigger_delay`` seconds;
    None when the action is disabled, the page is unchanged (:func:`source_changed`), or
    the page has a queued or running item of the action already."""
    from . import db
    from .jobs.leases import db_in
    from .jobs.planning import create_job

    if not action.enabled or not action.applies_to(page):
        return None
    if not source_changed(action, page):
        return None
    spent = exhausted_budget(action, getattr(user, "pk", None))
    if spent is not None:
        logger.info("Trigger of action %s skipped: budget “%s” is spent", action.pk, spent.name)
        return None
    delay = int(action.trigger_delay or 0)

    def create() -> LLMJob | None:
        # One trigger at a time per action: PostgreSQL locks its row; SQLite's write
        # transaction (BEGIN IMMEDIATE) is serialised anyway.
        list(LLMAction.objects.select_for_update().filter(pk=action.pk).values_list("pk"))
        if open_item_exists(action, page.pk):
            return None
        job = create_job(action, user, [page.pk], kind=JobKind.TRIGGER, trigger=trigger)
        if delay:
            job.items.filter(status=ItemStatus.QUEUED).update(not_before=db_in(delay))
        return job

    job = db.write(create, what="queueing a triggered run")
    if job is not None and job.status == JobStatus.QUEUED:
        start_later(job, delay)
    return job


def start_later(job: LLMJob, delay: float) -> None:
    """Start ``job``'s worker when its items are due: now (no delay), or by a one-off
    django-q2 schedule (``tasks.keep_jobs_running`` queues it too if that is lost)."""
    from .jobs.planning import enqueue_job

    if delay <= 0:
        enqueue_job(job)
        return

    def schedule() -> None:
        from django_q.models import Schedule

        Schedule.objects.create(
            name=pickup_name(job.pk),
            func=PICKUP_FUNC,
            args=repr(job.pk),
            schedule_type=Schedule.ONCE,
            repeats=-1,  # deleted once it ran
            next_run=timezone.now() + timedelta(seconds=delay + PICKUP_MARGIN),
        )

    transaction.on_commit(schedule)


# -- the schedule --------------------------------------------------------------------------------


def sync_schedule(action: LLMAction) -> None:
    """Create, update or delete ``action``'s django-q2 schedule to match its
    ``trigger_schedule`` (none when it is blank or the action is disabled)."""
    from django_q.models import Schedule

    cron = (action.trigger_schedule or "").strip()
    name = schedule_name(action.pk)
    if not cron or not action.enabled:
        Schedule.objects.filter(name=name).delete()
        return
    schedule = Schedule.objects.filter(name=name).first()
    if schedule is not None and schedule.cron == cron:
        return
    schedule = schedule or Schedule(name=name, func=SCHEDULE_FUNC, args=repr(action.pk))
    schedule.schedule_type = Schedule.CRON
    schedule.cron = cron
    schedule.repeats = -1
    schedule.next_run = schedule.calculate_next_run()
    schedule.save()


def delete_schedule(action_id: int) -> None:
    from django_q.models import Schedule

    Schedule.objects.filter(name=schedule_name(action_id)).delete()


def run_schedule(action_id: int) -> LLMJob | None:
    """The schedule's run: one job over the pages of the action's types that have no
    queued or running item of it; the engine skips those whose source is unchanged (no
    call). None when the action is gone, disabled or has no schedule any more."""
    from . import db
    from .jobs.planning import ENGINE_KINDS, create_job, enqueue_job, page_ids_for_action

    action = LLMAction.objects.filter(pk=action_id).select_related("prompt").first()
    if action is None or not action.enabled or not (action.trigger_schedule or "").strip():
        return None
    spent = exhausted_budget(action, None)
    if spent is not None:
        logger.info("Schedule of action %s skipped: budget “%s” is spent", action.pk, spent.name)
        return None
    busy = set(
        LLMJobItem.objects.filter(
            job__action=action,
            job__pipeline__isnull=True,
            job__kind__in=ENGINE_KINDS,
            status__in=[ItemStatus.QUEUED, ItemStatus.RUNNING],
        ).values_list("page_id", flat=True)
    )
    page_ids = [pk for pk in page_ids_for_action(action) if pk not in busy]
    if not page_ids:
        return None

    def create() -> LLMJob:
        return create_job(
            action, None, page_ids, kind=JobKind.TRIGGER, trigger=InteractionTrigger.SCHEDULE
        )

    job = db.write(create, what="creating a scheduled job")
    if job.status == JobStatus.QUEUED:
        enqueue_job(job)
    return job


__all__ = [
    "EVENT_TRIGGERS",
    "fire",
    "on_page_published",
    "on_revision_saved",
    "open_item_exists",
    "queue_run",
    "run_schedule",
    "source_changed",
    "sync_schedule",
    "triggered_actions",
]
