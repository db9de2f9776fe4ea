"""Starting an editor run: the checks, creating the editor job (``LLMJob(kind="editor")``
with one item holding the unsaved page) and queueing it on django-q2, or running it
inline.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from wagtail.models import Page

from .. import db
from ..conf import get_setting
from ..exceptions import ActionNotAllowed, ActionNotApplicable, PageLocked
from ..models import JobKind, JobStatus, LLMAction, LLMJob, LLMJobItem
from .pages import serialise_page, user_may_create

#: The django-q2 task that runs an editor job.
TASK = "wagtail_llm_actions.editor.run_editor_job"


# -- jobs ----------------------------------------------------------------------------------------


def check_can_start(action: LLMAction, page: Page, user) -> None:
    """Raise if ``user`` may not run ``action`` on ``page`` from the editor."""
    page = page.specific
    if not page.permissions_for_user(user).can_edit():
        raise ActionNotAllowed()
    from ..service import lock_message

    message = lock_message(user, page)
    if message:
        raise PageLocked(message)
    if not action.enabled:
        raise ActionNotApplicable(_("The action “%(action)s” is disabled.") % {"action": action})
    if not action.applies_to(page):
        raise ActionNotApplicable(
            _("The action “%(action)s” does not apply to %(type)s pages.")
            % {"action": action.name, "type": page.specific_class._meta.verbose_name}
        )


def check_can_create(action: LLMAction, page_class: type, parent: Page, user) -> None:
    """Raise if ``user`` may not run ``action`` on a new ``page_class`` page under ``parent``."""
    if not user_may_create(user, page_class, parent):
        raise ActionNotAllowed()
    if not action.enabled:
        raise ActionNotApplicable(_("The action “%(action)s” is disabled.") % {"action": action})
    from django.contrib.contenttypes.models import ContentType

    content_type_id = ContentType.objects.get_for_model(page_class).pk
    if not action.page_types.filter(pk=content_type_id).exists():
        raise ActionNotApplicable(
            _("The action “%(action)s” does not apply to %(type)s pages.")
            % {"action": action.name, "type": page_class._meta.verbose_name}
        )


def create_editor_job(
    action: LLMAction,
    page: Any,
    obj: Any,
    user,
    *,
    parent: Page | None = None,
    regenerate: bool = False,
) -> LLMJob:
    """An editor job for ``obj`` (built from the unsaved form): one queued item.

    ``page`` is None for a page not created yet; ``parent`` is then where it will go. A
    snippet in its editor is ``page`` too: the item targets it by type and id.
    ``regenerate``: the editor asked again, so the model answers (never the response cache).
    """
    payload: dict[str, Any] = {
        "action": action.pk,
        "user": user.pk if user is not None else None,
        "base_revision": page.latest_revision_id if page is not None else None,
        "content": serialise_page(obj),
    }
    if regenerate:
        payload["regenerate"] = True
    if page is None:
        from django.contrib.contenttypes.models import ContentType

        content_type = ContentType.objects.get_for_model(type(obj)).pk
        if isinstance(obj, Page):
            parent_id = parent.pk if parent is not None else None
            payload["new"] = {"parent": parent_id, "content_type": content_type}
        else:  # a snippet in its create view
            payload["new_snippet"] = {"content_type": content_type}
    with db.atomic_write():
        job = LLMJob.objects.create(
            action=action,
            action_name=action.name,
            user=user,
            kind=JobKind.EDITOR,
            status=JobStatus.QUEUED,
            options={"target_field": action.target_field},
        )
        LLMJobItem.objects.create(job=job, payload=payload, **_item_target(page))
    return job


def _item_target(obj) -> dict[str, Any]:
    """The job item's fields naming what it runs on: a page, or a snippet by type and id."""
    if obj is None or isinstance(obj, Page):
        return {"page": obj}
    from django.contrib.contenttypes.models import ContentType

    return {"target_type": ContentType.objects.get_for_model(type(obj)), "target_id": str(obj.pk)}


def check_can_start_pipeline(pipeline, page: Page, user, obj: Page | None = None) -> None:
    """Raise if ``user`` may not run ``pipeline`` on ``page`` from the editor (as for an
    action: may edit, not locked; and the pipeline runs on this page: enabled, valid, every
    step's action applies). ``obj`` (the page as the form has it) is what the steps read."""
    from ..pipelines import check_pipeline, pipelines_for_page

    page = page.specific
    if not page.permissions_for_user(user).can_edit():
        raise ActionNotAllowed()
    from ..service import lock_message

    message = lock_message(user, page)
    if message:
        raise PageLocked(message)
    if pipeline not in pipelines_for_page(page):
        raise ActionNotApplicable(
            _("The pipeline “%(name)s” does not run on this page.") % {"name": pipeline.name}
        )
    check_pipeline(pipeline, page, user)


def create_editor_pipeline_job(pipeline, page: Page, obj: Page, user) -> LLMJob:
    """An editor job running ``pipeline`` on ``obj`` (built from the unsaved form)."""
    payload: dict[str, Any] = {
        "pipeline": pipeline.pk,
        "user": user.pk if user is not None else None,
        "base_revision": page.latest_revision_id,
        "content": serialise_page(obj),
    }
    with db.atomic_write():
        job = LLMJob.objects.create(
            pipeline=pipeline,
            action_name=pipeline.name,
            user=user,
            kind=JobKind.EDITOR,
            status=JobStatus.QUEUED,
        )
        LLMJobItem.objects.create(job=job, page=page, payload=payload)
    return job


def enqueue_editor_job(job: LLMJob, *, inline: bool | None = None) -> None:
    """Queue ``job`` on django-q2, or run it now when ``RUN_INLINE`` is set."""
    item = job.items.only("pk").first()
    if inline is None:
        inline = bool(get_setting("RUN_INLINE"))
    if inline:
        from .runs import run_editor_job  # runs imports the leases, which queue this task

        run_editor_job(item.pk)
        return
    from django_q.tasks import async_task

    async_task(TASK, item.pk, task_name=f"llm-editor-{job.pk}")
