"""django-q2 entry points of the bulk job engine (see :mod:`wagtail_llm_actions.jobs`).

* ``run_job(job_id)``: the runner task :func:`jobs.enqueue_job` queues. It drives the job
  for at most a time budget below the django-q2 ``timeout``, then queues its successor.
* ``recover(sender, **kwargs)``: connected to django-q2's ``post_spawn`` signal, so each
  worker process that starts (after a crash, a restart or a recycle) queues a runner for
  every unfinished job (runners are exclusive per job, so duplicates exit at once) and ends
  the editor runs whose worker died (their lease ran out; see ``editor.expire_item``).
"""

from __future__ import annotations

import logging

from django.db import close_old_connections

from . import db, jobs
from .models import LLMJob

logger = logging.getLogger(__name__)

#: Seconds a runner leaves before the django-q2 timeout (to finish its calls and hand over).
TIMEOUT_MARGIN = 60


def runner_budget() -> float:
    """How long one runner task may drive a job before handing over to a successor."""
    try:
        from django_q.conf import Conf

        timeout = float(Conf.TIMEOUT or 0)
    except Exception:  # noqa: BLE001 - django-q2 misconfigured: use a safe default
        timeout = 0
    if timeout <= 0:
        return 600.0
    job_margin = TIMEOUT_MARGIN + jobs.lease_seconds(None)
    return max(30.0, min(600.0, timeout - job_margin))


def run_job(job_id: int) -> str:
    """The runner task: run ``job_id`` and queue a successor if time ran out.

    If the database stayed busy past every retry (a loaded SQLite site), a successor is
    queued too, so that the job does not wait for the next worker start to continue.
    """
    try:
        result = jobs.run_job(job_id, budget=runner_budget(), share=jobs.runners_per_job())
    except Exception as e:
        if not db.is_busy_error(e):
            raise
        logger.warning("LLM job %s runner: database busy (%s); a successor continues", job_id, e)
        result = "budget"
    if result == "budget":
        jobs.enqueue_job(LLMJob(pk=job_id), on_commit=False)
    logger.info("LLM job %s runner finished: %s", job_id, result)
    return result


def help_job(job_id: int) -> str:
    """A helper task: claim items of ``job_id`` beside its runner until none are left."""
    result = jobs.run_job(job_id, budget=runner_budget(), helper=True, share=jobs.runners_per_job())
    logger.info("LLM job %s helper finished: %s", job_id, result)
    return result


def recover(sender=None, **kwargs) -> None:
    """``post_spawn`` receiver: queue runners for unfinished jobs (see jobs.recover_jobs) and
    end the editor runs whose worker died (see editor.recover_editor_items)."""
    try:
        close_old_connections()
        count = jobs.recover_jobs()
        if count:
            logger.info("Queued runners for %s unfinished LLM job(s)", count)
    except Exception:  # a worker must start even if recovery fails  # noqa: BLE001
        logger.exception("Could not recover unfinished LLM jobs")
    try:
        from . import editor

        count = editor.recover_editor_items()
        if count:
            logger.info("Ended %s editor run(s) whose worker stopped", count)
    except Exception:  # noqa: BLE001
        logger.exception("Could not recover editor runs")
