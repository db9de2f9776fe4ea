"""Runs started from the admin's screens, queued as the editor's runs are.

"Rerun" (interaction page), "Rerun from step" (a pipeline run) and "Try on a page" (an
action's page) used to call the model inside the web request. Now the request only queues an
editor-kind job (one item, see :mod:`.editor`); a worker runs it with :func:`run_item`; the
browser polls the editor's status endpoint, shows progress and Cancel, and when the job ends
goes to :func:`next_url`::

    job = create_job(KIND_RERUN, user, action=action, page=page, interaction=old)
    editor.enqueue_editor_job(job)          # django-q2, or inline with RUN_INLINE

The editor's task (``editor.run_editor_job``) claims the item, renews its lease and hands an
item whose payload has ``queued_run`` to :func:`run_item`; cancelling, leases and the status
JSON are the editor's. A rerun writes a draft as before (``save=True``); a cancelled rerun
writes none (its answer stays stored). "Try on a page" saves nothing (``save=False``).
"""

from __future__ import annotations

import logging
from typing import Any

from django.urls import reverse
from django.utils.translation import gettext as _

from . import db
from .exceptions import LLMActionError
from .models import (
    InteractionOutcome,
    InteractionStatus,
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

#: Payload key marking an editor-kind item as one of these runs (its value is the kind).
PAYLOAD_KEY = "queued_run"

KIND_RERUN = "rerun"  # the same action again on the interaction's page: a new draft
KIND_TRY = "try"  # the action on a chosen page, saving nothing (the answer awaits review)
KIND_STEP = "rerun_from_step"  # a pipeline run again from a step: a new draft
KIND_TRANSLATE = "translate"  # "Translate into…": the page (or snippet) into the payload's locales
KIND_IMAGE = "image"  # an image action on an image, from its edit view: the image's field
KIND_SNIPPET = "snippet"  # an action on a snippet, from its edit view: a revision (or a write)
KINDS = (KIND_RERUN, KIND_TRY, KIND_STEP, KIND_TRANSLATE, KIND_IMAGE, KIND_SNIPPET)


class RunCancelled(LLMActionError):
    """The job was cancelled while the model answered: nothing is written."""

    code = "cancelled"


def create_job(
    kind: str,
    user,
    *,
    page,
    action: LLMAction | None = None,
    pipeline=None,
    interaction: LLMInteraction | None = None,
    run=None,
    from_step: int = 0,
    locales: list[str] | None = None,
    target=None,
) -> LLMJob:
    """An editor-kind job of one queued item running ``kind`` for ``user`` on ``page`` (or
    on ``target``, an image, with ``page=None``; ``locales``: the language codes a
    translation goes into)."""
    if kind not in KINDS:
        raise ValueError(kind)
    payload: dict[str, Any] = {
        PAYLOAD_KEY: kind,
        "user": user.pk if user is not None else None,
        "interaction": interaction.pk if interaction is not None else None,
        "run": run.pk if run is not None else None,
        "from_step": from_step,
        "locales": list(locales or []),
    }
    with db.atomic_write():
        job = LLMJob.objects.create(
            action=action,
            pipeline=pipeline,
            action_name=(action.name if action is not None else getattr(pipeline, "name", "")),
            user=user,
            kind=JobKind.EDITOR,
            status=JobStatus.QUEUED,
            options={"target_field": action.target_field} if action is not None else {},
        )
        item = LLMJobItem(job=job, page=page, payload=payload)
        if target is not None:
            from django.contrib.contenttypes.models import ContentType

            item.target_type = ContentType.objects.get_for_model(target)
            item.target_id = str(target.pk)
        item.save()
    return job


def kind_of(item: LLMJobItem) -> str:
    """The kind of run ``item`` is ("" for an editor run)."""
    payload = item.payload if isinstance(item.payload, dict) else {}
    kind = payload.get(PAYLOAD_KEY) or ""
    return kind if kind in KINDS else ""


def _cancelled(job_id: int) -> bool:
    return LLMJob.objects.filter(pk=job_id, status=JobStatus.CANCELLED).exists()


def run_item(item: LLMJobItem) -> str:
    """Run a claimed item (called by ``editor.run_editor_job``); returns its outcome."""
    from .editor import leases as editor

    job = item.job
    kind = kind_of(item)
    if kind == KIND_IMAGE:
        from .images.queued import run_queued

        return run_queued(item)
    if kind == KIND_SNIPPET:
        from .jobs.snippets import run_queued as run_snippet

        return run_snippet(item)
    page = _source(item, kind)
    if page is None or (kind != KIND_STEP and job.action is None):
        editor._finish(
            item,
            ItemStatus.FAILED,
            {"code": "gone", "message": _("The page or the action no longer exists.")},
            error="gone",
        )
        return "failed"

    def refuse_if_cancelled(interaction: LLMInteraction) -> None:
        # Inside the transaction that writes the draft: a cancelled job writes none.
        if _cancelled(job.pk):
            raise RunCancelled(_("Cancelled: no draft was saved."), interaction=interaction)
        editor._link(item, interaction=interaction)

    translated: list[dict] = []
    try:
        if kind == KIND_STEP:
            new = _rerun_from_step(item, refuse_if_cancelled)
            interaction = new.timeline()[-1] if new.timeline() else None
        elif kind == KIND_TRANSLATE:
            interaction = _translate(item, page, translated)
        else:
            from .service import LLMService

            interaction = LLMService(on_run_started=editor._record_run(item)).run(
                job.action,
                page,
                job.user,
                save=kind == KIND_RERUN,
                trigger=InteractionTrigger.RERUN if kind == KIND_RERUN else InteractionTrigger.TEST,
                on_success=refuse_if_cancelled if kind == KIND_RERUN else None,
            )
    except RunCancelled as e:
        editor._finish(item, ItemStatus.CANCELLED, {}, interaction=e.interaction)
        return "cancelled"
    except LLMActionError as e:
        failed = e.interaction if e.interaction is not None and e.interaction.pk else None
        failed_run = getattr(e, "run", None)
        if failed is None and failed_run is not None and failed_run.pk:
            timeline = failed_run.timeline()
            failed = timeline[-1] if timeline else None
        editor._finish(
            item,
            ItemStatus.FAILED,
            {"code": e.code, "message": e.message, "retryable": e.retryable},
            interaction=failed,
            error=e.message,
        )
        return "failed"
    if kind == KIND_TRY and _cancelled(job.pk):
        db.write(
            lambda: LLMInteraction.objects.filter(pk=interaction.pk).update(
                outcome=InteractionOutcome.DISCARDED
            ),
            what="discarding a cancelled answer",
        )
        editor._finish(item, ItemStatus.CANCELLED, {}, interaction=interaction)
        return "cancelled"
    result = stored_result(item, interaction)
    if kind == KIND_TRANSLATE:
        result["translations"] = translated
    editor._finish(item, ItemStatus.SUCCEEDED, result, interaction)
    return "succeeded"


def run_claimed(item: LLMJobItem, target, gone: str, run) -> str:
    """Run a claimed image or snippet item to its outcome; returns the status. ``gone`` is
    the failure when ``target`` or the action no longer exists. ``run(stored, link,
    refuse_if_cancelled)`` returns the interaction: ``stored`` is an answer a worker that
    died stored (written without calling again) or None, ``link`` records the interaction on
    the item, ``refuse_if_cancelled`` does that too but raises inside the writing
    transaction when the job was cancelled meanwhile (a cancelled run writes nothing)."""
    from .editor import leases as editor

    job = item.job
    if target is None or job.action is None:
        editor._finish(item, ItemStatus.FAILED, {"code": "gone", "message": gone}, error="gone")
        return "failed"

    def link(interaction) -> None:
        editor._link(item, interaction=interaction)

    def refuse_if_cancelled(interaction) -> None:
        # Inside the transaction that writes: a cancelled run writes nothing.
        if _cancelled(job.pk):
            raise RunCancelled(_("Cancelled: nothing was written."), interaction=interaction)
        link(interaction)

    stored = item.interaction if item.interaction_id else None
    if stored is not None and stored.status != InteractionStatus.ANSWERED:
        stored = None
    try:
        interaction = run(stored, link, refuse_if_cancelled)
    except RunCancelled as e:
        editor._finish(item, ItemStatus.CANCELLED, {}, interaction=e.interaction)
        return "cancelled"
    except LLMActionError as e:
        failed = e.interaction if e.interaction is not None and e.interaction.pk else None
        result = {"code": e.code, "message": e.message, "retryable": e.retryable}
        editor._finish(item, ItemStatus.FAILED, result, interaction=failed, error=e.message)
        return "failed"
    editor._finish(item, ItemStatus.SUCCEEDED, stored_result(item, interaction), interaction)
    return "succeeded"


def _source(item: LLMJobItem, kind: str):
    """The page the run is on, or the translatable snippet a translation is of (None if
    deleted)."""
    if item.page is not None:
        return item.page.specific
    if kind == KIND_TRANSLATE:  # a translatable snippet (issue 23 §2)
        from .jobs.snippets import snippet_of

        return snippet_of(item)
    return None


def _translate(item: LLMJobItem, page, translated: list[dict]) -> LLMInteraction | None:
    """Translate ``page`` into the item's locales, one draft each (stops when cancelled);
    what each did is added to ``translated``; returns the last interaction."""
    from .translation.run import locales, translate_page

    job = item.job
    last = None
    for locale in locales(page, list((item.payload or {}).get("locales") or [])):
        if _cancelled(job.pk):
            raise RunCancelled(_("Cancelled: no further translation was saved."), interaction=last)
        outcome = translate_page(
            job.action, page, locale, job.user, trigger=InteractionTrigger.EDITOR
        )
        last = outcome.interaction or last
        translated.append(
            {
                "locale": locale.language_code,
                "page": outcome.page.pk if outcome.page is not None else None,
                "created": outcome.created,
                "sent": outcome.sent,
                "failed": sorted(outcome.failed),
                "review": list(outcome.review),
            }
        )
    return last


def _rerun_from_step(item: LLMJobItem, on_success):
    from .editor import leases as editor
    from .models import LLMRun
    from .pipelines import rerun_pipeline

    payload = item.payload or {}
    run = LLMRun.objects.filter(pk=payload.get("run")).select_related("pipeline", "page").first()
    if run is None:
        raise LLMActionError(_("The pipeline run no longer exists."), code="gone")
    return rerun_pipeline(
        run,
        int(payload.get("from_step") or 0),
        item.job.user,
        on_run_started=editor._record_run(item),
        on_success=on_success,
    )


def stored_result(item: LLMJobItem, interaction: LLMInteraction | None) -> dict:
    """The item's result: the interaction the run recorded (the status JSON's ``result``)."""
    return {
        "interaction": interaction.pk if interaction is not None else None,
        "kind": kind_of(item),
    }


# -- where the browser goes when the job ends ------------------------------------------------


def progress_url(job: LLMJob) -> str:
    return reverse("wagtail_llm_actions_report:queued_run", args=[job.pk])


def done_url(job: LLMJob) -> str:
    return reverse("wagtail_llm_actions_report:queued_run_done", args=[job.pk])


def get_item(job_id: int, user) -> LLMJobItem | None:
    """``user``'s queued run ``job_id`` (its item), ended first if its worker died."""
    from .editor import get_editor_item

    item = get_editor_item(job_id, user)
    if item is None or not kind_of(item):
        return None
    return item


def source_interaction_id(item: LLMJobItem) -> int | None:
    payload = item.payload if isinstance(item.payload, dict) else {}
    value = payload.get("interaction")
    return int(value) if value else None
