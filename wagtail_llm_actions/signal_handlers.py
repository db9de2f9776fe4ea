"""Signal receivers, connected when the app is ready.

- django-q2 ``post_spawn``: resume unfinished bulk jobs (:func:`recover_jobs`), and import
  LiteLLM once in each worker process as it starts (setting
  ``PRELOAD_IN_WORKER``), so the first editor click after a deploy is as fast as the next.
  The web process never imports it.
- :func:`link_saved_interactions` runs after the page editor saves (``after_edit_page``
  hook, registered in ``wagtail_hooks``): it links generated values the form carried to the
  revision that saved them.
"""

from __future__ import annotations

import logging

from django_q.signals import post_spawn

from .conf import get_setting

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
    """Link the interactions named by the editor form to the revision just saved."""
    from .editor import INTERACTIONS_FIELD, parse_interaction_ids, record_saved_outcomes

    ids = parse_interaction_ids(request.POST.get(INTERACTIONS_FIELD, ""))
    if ids:
        record_saved_outcomes(page, request.user, ids)
