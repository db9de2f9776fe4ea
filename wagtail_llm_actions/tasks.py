"""django-q2 entry points of the bulk job engine (see :mod:`wagtail_llm_actions.jobs`).

* ``run_job(job_id)``: a worker task of a job. Any number of them, on any host, work on one
  job (:func:`jobs.run_job`); :func:`jobs.enqueue_job` queues the first, the job's
  coordinator queues more while the job can use them. Each works for at most a time budget
  below the django-q2 ``timeout``, then queues its successor.
* ``recover(sender, **kwargs)``: connected to django-q2's ``post_spawn`` signal, so each
  worker process that starts (a host starting or joining, a restart, a recycle) queues a
  worker task for every unfinished job, schedules the periodic check below, and ends the
  editor runs whose worker died (their lease ran out; see ``editor.expire_item``).
* ``keep_jobs_running()``: a django-q2 schedule (every minute) that queues a worker task for
  every unfinished job whose coordinator stopped renewing its lease, so a job always ends
  with the workers that are left, whatever the broker kept of lost tasks (and a trigger's
  delayed item once it is due); it also resumes the jobs a budget paused once their refused
  call fits again, e.g. the period rolled over (see :mod:`.jobs.pauses`).
* ``run_trigger_schedule(action_id)``: an action's ``trigger_schedule`` (see
  :func:`triggers.run_schedule`).
"""

from __future__ import annotations

import logging

from django.db import close_old_connections

from . import db, jobs
from .models import LLMJob

logger = logging.getLogger(__name__)

#: Seconds a worker leaves before the django-q2 timeout (to finish its calls and hand over).
TIMEOUT_MARGIN = 60
#: How often a worker task that found its host full is passed on to another host.
MAX_HOPS = 2
#: The name of the periodic check's django-q2 schedule.
SCHEDULE_NAME = "wagtail_llm_actions: keep bulk jobs running"
SCHEDULE_FUNC = "wagtail_llm_actions.tasks.keep_jobs_running"


def runner_budget() -> float:
    """How long one worker task may work on a job before handing over to a successor."""
    try:
        from django_q.conf import Conf

        timeout = float(Conf.TIMEOUT or 0)
    except Exception:  # noqa: BLE001 - django-q2 misconfigured: use a safe default
        timeout = 0
    if timeout <= 0:
        return 600.0
    job_margin = TIMEOUT_MARGIN + jobs.lease_seconds(None)
    return max(30.0, min(600.0, timeout - job_margin))


def run_job(job_id: int, hops: int = 0) -> str:
    """A worker task: work on ``job_id`` beside the job's other workers.

    It queues a successor if its time ran out, or if the database stayed busy past every
    retry (a loaded SQLite site), so that the job does not wait for the next worker start
    to continue. A task that found its host's job workers all taken is passed on (at most
    ``MAX_HOPS`` times), so that a worker of another host may take it.
    """
    try:
        result = jobs.run_job(
            job_id, budget=runner_budget(), host_cap=jobs.host_worker_cap(), pump=True
        )
    except Exception as e:
        if not db.is_busy_error(e):
            raise
        logger.warning("LLM job %s worker: database busy (%s); a successor continues", job_id, e)
        result = "budget"
    if result == "budget":
        jobs.enqueue_job(LLMJob(pk=job_id), on_commit=False)
    elif result == "full" and hops < MAX_HOPS:
        jobs.enqueue_job(LLMJob(pk=job_id), on_commit=False, hops=hops + 1)
    logger.info("LLM job %s worker (%s) finished: %s", job_id, jobs.host_id(), result)
    return result


def help_job(job_id: int) -> str:
    """Queued by earlier versions (a job's helpers): a worker task like any other."""
    return run_job(job_id)


def run_trigger_schedule(action_id: int) -> int | None:
    """An action's schedule: a job over its pages whose source changed (its id, or None)."""
    from .triggers import run_schedule

    job = run_schedule(action_id)
    return job.pk if job is not None else None


def keep_jobs_running() -> int:
    """The periodic check: a worker task for each unfinished job without a live
    coordinator (all its workers died, and the broker lost or holds back their tasks), and
    each job a budget paused whose refused call fits again (a new period)."""
    from .jobs.pauses import resume_fitting_jobs

    count = jobs.recover_jobs(orphaned=True)
    if count:
        logger.info("Queued workers for %s LLM job(s) without a coordinator", count)
    resumed = resume_fitting_jobs()  # after: a resumed job gets its own worker task
    if resumed:
        logger.info("Resumed %s LLM job(s) paused by a budget", resumed)
    return count


def ensure_schedule() -> None:
    """Schedule :func:`keep_jobs_running` every minute (once per site)."""
    from django_q.models import Schedule

    if not Schedule.objects.filter(name=SCHEDULE_NAME).exists():
        Schedule.objects.create(
            name=SCHEDULE_NAME,
            func=SCHEDULE_FUNC,
            schedule_type=Schedule.MINUTES,
            minutes=1,
            repeats=-1,
        )


def recover(sender=None, **kwargs) -> None:
    """``post_spawn`` receiver: queue workers for unfinished jobs (see jobs.recover_jobs) and
    end the editor runs whose worker died (see editor.recover_editor_items)."""
    try:
        close_old_connections()
        ensure_schedule()
        count = jobs.recover_jobs()
        if count:
            logger.info("Queued workers for %s unfinished LLM job(s)", count)
    except Exception:  # a worker must start even if recovery fails  # noqa: BLE001
        logger.exception("Could not recover unfinished LLM jobs")
    try:
        from . import editor

        count = editor.recover_editor_items()
        if count:
            logger.info("Ended %s editor run(s) whose worker stopped", count)
    except Exception:  # noqa: BLE001
        logger.exception("Could not recover editor runs")
