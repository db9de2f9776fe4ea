"""Signal receivers, connected when the app is ready.

- django-q2 ``post_spawn``: resume unfinished bulk jobs (:func:`recover_jobs`), and import
  LiteLLM once in each worker process as it starts (setting
  ``PRELOAD_IN_WORKER``), so the first editor click after a deploy is as fast as the next.
  The web process never imports it.
- :func:`link_saved_interactions` runs after the page editor saves (``after_edit_page``
  hook, registered in ``wagtail_hooks``; ``after_edit_snippet``/``after_create_snippet`` for
  the snippet editor): it links generated values the form carried to the revision that
  saved them.
- Triggers (:mod:`.triggers`): a page revision saved (``post_save`` of ``Revision``: the
  editor, the Python API and commands alike) or a page published (``page_published``)
  queues the actions whose trigger asks for it; an action saved or deleted keeps its
  django-q2 schedule in step; an image uploaded (``post_save`` of the image model, created)
  queues the image actions triggered on upload. A trigger never breaks a save: its errors
  are logged.
"""

from __future__ import annotations

import logging

from django.db.models.signals import post_delete, post_save
from django_q.signals import post_spawn
from wagtail.models import Revision
from wagtail.signals import page_published

from .conf import get_setting
from .models import LLMAction, LLMBudget

logger = logging.getLogger(__name__)


def preload_litellm(sender=None, proc_name: str = "", **kwargs) -> None:
    """Import LiteLLM now, in a django-q2 worker process that has just started."""
    if not get_setting("PRELOAD_IN_WORKER"):
        return
    from .providers import preload

    try:
        preload()
    except Exception:  # a broken install must not stop the worker; the first call reports it
        logger.exception("Could not preload LiteLLM in worker %s", proc_name)
    else:
        logger.info("LiteLLM preloaded in worker %s", proc_name)


def recover_jobs(sender=None, **kwargs) -> None:
    """django-q2 workers resume unfinished bulk jobs when they start (see ``tasks.recover``).

    Connected here so the job engine is imported in workers only, not at Django startup.
    """
    from .tasks import recover

    recover(sender, **kwargs)


post_spawn.connect(preload_litellm, dispatch_uid="wagtail_llm_actions_preload_litellm")
post_spawn.connect(recover_jobs, dispatch_uid="wagtail_llm_actions.recover_jobs")


def link_saved_interactions(request, page) -> None:
    """Link the interactions named by the editor form to the revision just saved (of a page
    or a snippet)."""
    from .editor import INTERACTIONS_FIELD, parse_interaction_ids, record_saved_outcomes

    ids = parse_interaction_ids(request.POST.get(INTERACTIONS_FIELD, ""))
    if ids:
        record_saved_outcomes(page, request.user, ids)


# -- triggers ------------------------------------------------------------------------------------


def revision_saved(sender, instance, created=False, raw=False, **kwargs) -> None:
    """A revision was created: queue the ``on_source_change`` actions it concerns."""
    if raw or not created:
        return
    try:
        from .triggers import on_revision_saved

        on_revision_saved(instance)
    except Exception:  # a trigger must never break a save  # noqa: BLE001
        logger.exception("LLM action triggers: could not handle a saved revision")


def page_was_published(sender, instance, revision=None, **kwargs) -> None:
    """A page was published: queue the ``on_publish`` actions it concerns."""
    try:
        from .triggers import on_page_published

        on_page_published(instance, revision)
    except Exception:  # a trigger must never break a publish  # noqa: BLE001
        logger.exception("LLM action triggers: could not handle a published page")


def action_saved(sender, instance, raw=False, **kwargs) -> None:
    """Keep the action's django-q2 schedule in step with its ``trigger_schedule``."""
    if raw:
        return
    try:
        from .triggers import sync_schedule

        sync_schedule(instance)
    except Exception:  # noqa: BLE001 - the action is saved; its schedule is reported
        logger.exception("LLM action %s: could not update its schedule", instance.pk)


def action_deleted(sender, instance, **kwargs) -> None:
    try:
        from .triggers import delete_schedule

        delete_schedule(instance.pk)
    except Exception:  # noqa: BLE001
        logger.exception("LLM action %s: could not delete its schedule", instance.pk)


def image_saved(sender, instance, created=False, raw=False, **kwargs) -> None:
    """An image was uploaded: queue the image actions whose trigger is "on upload"."""
    if raw or not created:
        return
    try:
        from .images.triggers import on_image_uploaded

        on_image_uploaded(instance)
    except Exception:  # a trigger must never break an upload  # noqa: BLE001
        logger.exception("LLM action triggers: could not handle an uploaded image")


def connect_image_trigger() -> None:
    from wagtail.images import get_image_model

    post_save.connect(
        image_saved, sender=get_image_model(), dispatch_uid="wagtail_llm_actions.image_upload"
    )


connect_image_trigger()
post_save.connect(revision_saved, sender=Revision, dispatch_uid="wagtail_llm_actions.triggers")
page_published.connect(page_was_published, dispatch_uid="wagtail_llm_actions.triggers")
post_save.connect(action_saved, sender=LLMAction, dispatch_uid="wagtail_llm_actions.schedule")
post_delete.connect(action_deleted, sender=LLMAction, dispatch_uid="wagtail_llm_actions.schedule")


def budget_saved(sender=None, instance=None, raw=False, **kwargs) -> None:
    """A budget saved (raised, disabled, …): after commit, resume the jobs a budget paused
    if their refused call fits now (see :mod:`.jobs.pauses`). Never breaks the save."""
    if raw:
        return
    from django.db import transaction

    def resume() -> None:
        from .jobs.pauses import resume_fitting_jobs

        try:
            resume_fitting_jobs()
        except Exception:  # noqa: BLE001 - the periodic check tries again
            logger.exception("Could not resume jobs paused by a budget")

    transaction.on_commit(resume)


post_save.connect(budget_saved, sender=LLMBudget, dispatch_uid="wagtail_llm_actions.budget_resume")
post_delete.connect(
    budget_saved, sender=LLMBudget, dispatch_uid="wagtail_llm_actions.budget_deleted_resume"
)
