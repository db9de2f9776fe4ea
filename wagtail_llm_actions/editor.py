"""Page editor runs: build a page from unsaved form data, queue it, run it, report it.

The editor's "Generate summary" button posts the whole, possibly unsaved, edit form. The
request only validates it and queues a job::

    obj = build_page_from_form(page, request.POST, user)       # like Wagtail's preview
    job = create_editor_job(action, page, obj, user)          # LLMJob(kind="editor")
    enqueue_editor_job(job)                                     # django-q2, or inline

A worker runs :func:`run_editor_job`, which calls ``LLMService().run(..., working_obj=obj,
save=False)``: the answer goes into the job item's ``result`` for the browser to put into
the open form, and no revision is written (so the editor's next save causes no "newer
version" conflict). :func:`record_saved_outcomes` links an interaction to the revision that
first saved its output when the editor saves, and records whether it was kept as generated
or edited; :func:`set_outcome` records a discard.

A pipeline runs the same way (:func:`create_editor_pipeline_job`): ``run_pipeline(...,
working_obj=obj, save=False)``; each writing step's interaction comes back as one field of the
result (:func:`pipeline_result`), reviewed and recorded on its own like any editor answer.

Nothing here imports views or templates, or LiteLLM.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, connections
from django.db.models import BooleanField, DateTimeField, ExpressionWrapper, F, Q
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.translation import gettext as _
from wagtail.models import Page

from . import db
from .conf import get_setting
from .exceptions import ActionNotAllowed, ActionNotApplicable, LLMActionError, PageLocked
from .extraction import PathError, get_target_field, html_to_text
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
    LLMRun,
    RunStatus,
)

logger = logging.getLogger(__name__)

#: Name of the hidden input the editor's script adds to the page form, listing the ids of
#: interactions whose output is in the form (comma separated).
INTERACTIONS_FIELD = "llm_action_interactions"

#: The django-q2 task that runs an editor job.
TASK = "wagtail_llm_actions.editor.run_editor_job"

#: Widget kinds the editor's script knows how to fill.
WIDGET_TEXT = "text"
WIDGET_TAGS = "tags"
WIDGET_DRAFTAIL = "draftail"


class FormInvalid(LLMActionError):
    """The unsaved form has errors, so there is no page to run on."""

    code = "form_invalid"

    def __init__(self, message: str, errors: dict[str, list[str]], **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.errors = errors


# -- which actions a page offers ---------------------------------------------------------------


def actions_for_type(page_class: type, request=None) -> list[LLMAction]:
    """Enabled actions whose page types include ``page_class``, cached on ``request``."""
    from django.contrib.contenttypes.models import ContentType

    content_type_id = ContentType.objects.get_for_model(page_class).pk
    cache = getattr(request, "_llm_editor_actions", None) if request is not None else None
    if cache is not None and content_type_id in cache:
        return cache[content_type_id]
    actions = list(
        LLMAction.objects.filter(enabled=True, page_types__id=content_type_id)
        .select_related("prompt")
        .order_by("name")
        .distinct()
    )
    if request is not None:
        if cache is None:
            cache = {}
            request._llm_editor_actions = cache
        cache[content_type_id] = actions
    return actions


def actions_for_page(page: Page, request=None) -> list[LLMAction]:
    """Enabled actions whose page types include ``page``'s type, cached on ``request``."""
    return actions_for_type(page.specific_class, request)


def user_may_create(user, page_class: type, parent: Page | None) -> bool:
    """Whether ``user`` may add a ``page_class`` page under ``parent`` (the create view)."""
    if user is None or not user.is_authenticated or parent is None:
        return False
    parent = parent.specific
    if not parent.permissions_for_user(user).can_add_subpage():
        return False
    return page_class in parent.creatable_subpage_models() and page_class.can_create_at(parent)


def user_may_run(user, page: Page) -> bool:
    """Whether ``user`` may run actions on ``page`` from the editor: may edit, not locked."""
    if user is None or not user.is_authenticated:
        return False
    if not page.permissions_for_user(user).can_edit():
        return False
    lock = page.get_lock()
    return lock is None or not lock.for_user(user)


def widget_kind(widget: Any) -> str:
    """How the editor's script fills ``widget``: "draftail", "tags" or "text"."""
    from taggit.forms import TagWidget
    from wagtail.admin.rich_text import DraftailRichTextArea

    if isinstance(widget, DraftailRichTextArea):
        return WIDGET_DRAFTAIL
    if isinstance(widget, TagWidget):
        return WIDGET_TAGS
    return WIDGET_TEXT


def form_class_for(page: Page):
    return page.specific_class.get_edit_handler().get_form_class()


# -- unsaved form -> page object -------------------------------------------------------------


def build_page_from_form(page: Page, data, user) -> Page:
    """The page as the editor's unsaved form has it, without saving anything.

    This is what Wagtail's ``PreviewOnEditView`` does: bind the page's edit form to the posted
    data on top of the latest revision, validate it with required fields deferred (as for a
    draft save), then ``form.save(commit=False)``. Raises :class:`FormInvalid`.
    """
    page = page.specific
    working = page.get_latest_revision_as_object()
    return _bind_and_build(form_class_for(page), working, page.get_parent(), data, user)


def new_page(page_class: type, parent: Page, user) -> Page:
    """An unsaved ``page_class`` page under ``parent``, placed in the tree as Wagtail's preview
    of the create view places it (so permissions and tree lookups work), owned by ``user``."""
    page = page_class(owner=user)
    page.locale = parent.locale
    page.depth = parent.depth + 1
    page.path = Page._get_children_path_interval(parent.path)[1]
    return page


def build_new_page_from_form(page_class: type, parent: Page, data, user) -> Page:
    """The page the create view's unsaved form describes, without saving anything.

    Raises :class:`FormInvalid`."""
    page = new_page(page_class, parent, user)
    form_class = page_class.get_edit_handler().get_form_class()
    return _bind_and_build(form_class, page, parent, data, user)


def _bind_and_build(form_class, working: Page, parent: Page, data, user) -> Page:
    data = data.copy()
    # As the preview does: a draft being written may have no title or slug yet.
    if not data.get("title"):
        data["title"] = working.title or _("Placeholder title")
    if not data.get("slug"):
        data["slug"] = working.slug or str(uuid.uuid4())
    form = form_class(data, instance=working, parent_page=parent, for_user=user)
    form.defer_required_fields()
    try:
        valid = form.is_valid()
    except (KeyError, ValueError, TypeError) as e:
        # Widgets such as StreamField's read their keys without a default: a post that is
        # not the editor's form (missing "body-count"…) is bad input, not a server error.
        raise FormInvalid(
            _(
                "The page form that was sent is incomplete or malformed. Reload the editor "
                "and try again."
            ),
            errors={},
            code="malformed_form",
        ) from e
    if not valid:
        errors = {
            str(form.fields[name].label if name in form.fields else name): [str(m) for m in msgs]
            for name, msgs in form.errors.items()
        }
        if form.formsets:
            for formset in form.formsets.values():
                if formset.non_form_errors() or any(formset.errors):
                    errors.setdefault(_("Inline panels"), []).append(
                        _("An inline panel has errors.")
                    )
        fields = ", ".join(errors) or _("the form")
        raise FormInvalid(
            _("Fix the errors in %(fields)s, then try again.") % {"fields": fields},
            errors=errors,
        )
    return form.save(commit=False)


def serialise_page(obj: Page) -> dict:
    """JSON-safe content of ``obj``, the way a revision stores it."""
    return json.loads(json.dumps(obj.serializable_data(), cls=DjangoJSONEncoder))


# -- jobs ----------------------------------------------------------------------------------------


def check_can_start(action: LLMAction, page: Page, user) -> None:
    """Raise if ``user`` may not run ``action`` on ``page`` from the editor."""
    page = page.specific
    if not page.permissions_for_user(user).can_edit():
        raise ActionNotAllowed()
    from .service import lock_message

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
    action: LLMAction, page: Page | None, obj: Page, user, *, parent: Page | None = None
) -> LLMJob:
    """An editor job for ``obj`` (built from the unsaved form): one queued item.

    ``page`` is None for a page not created yet; ``parent`` is then where it will go.
    """
    payload: dict[str, Any] = {
        "action": action.pk,
        "user": user.pk if user is not None else None,
        "base_revision": page.latest_revision_id if page is not None else None,
        "content": serialise_page(obj),
    }
    if page is None:
        from django.contrib.contenttypes.models import ContentType

        payload["new"] = {
            "parent": parent.pk if parent is not None else None,
            "content_type": ContentType.objects.get_for_model(type(obj)).pk,
        }
    with db.atomic_write():
        job = LLMJob.objects.create(
            action=action,
            action_name=action.name,
            user=user,
            kind=JobKind.EDITOR,
            status=JobStatus.QUEUED,
            options={"target_field": action.target_field},
        )
        LLMJobItem.objects.create(job=job, page=page, payload=payload)
    return job


def check_can_start_pipeline(pipeline, page: Page, user, obj: Page | None = None) -> None:
    """Raise if ``user`` may not run ``pipeline`` on ``page`` from the editor (as for an
    action: may edit, not locked; and the pipeline runs on this page: enabled, valid, every
    step's action applies). ``obj`` (the page as the form has it) is what the steps read."""
    from .pipelines import check_pipeline, pipelines_for_page

    page = page.specific
    if not page.permissions_for_user(user).can_edit():
        raise ActionNotAllowed()
    from .service import lock_message

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
        run_editor_job(item.pk)
        return
    from django_q.tasks import async_task

    async_task(TASK, item.pk, task_name=f"llm-editor-{job.pk}")


# -- leases: an item whose worker died ends -------------------------------------------------------
#
# A claimed item holds a lease (``lease_expires_at``, set and compared by the database's clock)
# that its worker renews every third of ``LEASE_SECONDS`` while it runs (:func:`_renewing`).
# A worker that dies (SIGKILL, django-q2's timeout) stops renewing it. Once it has run out,
# :func:`expire_item` ends the item: from the answer it had stored, if any; else it runs it
# again (up to ``MAX_CLAIMS`` claims; map-reduce parts already paid for are reused, see
# resume.py); else it fails it with a readable message. The status endpoint the browser polls
# asks for this (so the editor's spinner stops), and so does every worker that starts
# (:func:`recover_editor_items`, with a check scheduled for the leases still running).

#: Claims of one editor item: a worker that keeps dying on it fails it after this many.
MAX_CLAIMS = 2
#: The django-q2 schedule that checks editor leases still running when a worker started.
RECOVERY_SCHEDULE = "wagtail_llm_actions.editor_leases"


def lease_seconds() -> float:
    """How long an editor item's lease lasts (its worker renews it while it runs)."""
    return float(get_setting("LEASE_SECONDS") or 120)


def _lease_until(seconds: float) -> ExpressionWrapper:
    """The database's now plus ``seconds``, as an expression."""
    return ExpressionWrapper(Now() + timedelta(seconds=seconds), output_field=DateTimeField())


def lapsed() -> Q:
    """Running editor items whose lease has run out, by the database's clock (an item
    claimed before leases existed: not touched for a lease's length)."""
    return Q(status=ItemStatus.RUNNING) & (
        Q(lease_expires_at__lt=Now())
        | Q(
            lease_expires_at__isnull=True,
            updated_at__lt=timezone.now() - timedelta(seconds=lease_seconds()),
        )
    )


def _token(kind: str = "editor") -> str:
    return f"{kind}:{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _claim(item_id: int) -> LLMJobItem | None:
    """Mark a queued item running under a new claim token and lease; None if it is gone,
    cancelled or already claimed."""
    now = timezone.now()
    token = _token()

    def claim() -> int | None:
        claimed = LLMJobItem.objects.filter(pk=item_id, status=ItemStatus.QUEUED).update(
            status=ItemStatus.RUNNING,
            attempts=F("attempts") + 1,
            claimed_by=token,
            lease_expires_at=_lease_until(lease_seconds()),
            updated_at=now,
        )
        if not claimed:
            return None
        job_id = LLMJobItem.objects.filter(pk=item_id).values_list("job_id", flat=True)[0]
        LLMJob.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
            status=JobStatus.RUNNING, started_at=now
        )
        return job_id

    if db.write(claim, what="claiming an editor job") is None:
        return None
    return LLMJobItem.objects.select_related("job", "job__action", "job__user", "page").get(
        pk=item_id
    )


@contextlib.contextmanager
def _renewing(item: LLMJobItem) -> Iterator[None]:
    """Renew ``item``'s lease every third of its length until the block ends (a thread with
    its own connection; not inside a transaction, whose rows it could not see)."""
    if connection.in_atomic_block:
        yield
        return
    stop = threading.Event()
    seconds = lease_seconds()

    def renew() -> int:
        return LLMJobItem.objects.filter(
            pk=item.pk, status=ItemStatus.RUNNING, claimed_by=item.claimed_by
        ).update(lease_expires_at=_lease_until(seconds))

    def loop() -> None:
        try:
            while not stop.wait(seconds / 3):
                try:
                    db.write(renew, what="renewing an editor lease")
                except Exception:  # a busy database: the next renewal tries again  # noqa: BLE001
                    logger.warning("Editor job %s: lease not renewed", item.job_id, exc_info=True)
        finally:
            connections.close_all()  # this thread's connections only

    thread = threading.Thread(target=loop, name=f"llm-editor-lease-{item.pk}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def _finish(item: LLMJobItem, status: str, result: dict, interaction=None, error="") -> bool:
    """Record the item's outcome if its claim still holds it; False if the claim was lost
    (its lease ran out and the item was ended or claimed again meanwhile)."""
    now = timezone.now()
    item.status = status
    item.result = result
    item.error = error
    item.interaction = interaction if interaction is not None and interaction.pk else None

    def finish() -> bool:
        done = LLMJobItem.objects.filter(
            pk=item.pk, status=ItemStatus.RUNNING, claimed_by=item.claimed_by
        ).update(
            status=status,
            result=result,
            error=error,
            interaction=item.interaction,
            lease_expires_at=None,
            updated_at=now,
        )
        if done:
            LLMJob.objects.filter(pk=item.job_id).exclude(status=JobStatus.CANCELLED).update(
                status=JobStatus.COMPLETED, finished_at=now
            )
        return bool(done)

    done = db.write(finish, what="finishing an editor job")
    if not done:
        logger.warning("Editor job %s: its lease ran out before it finished", item.job_id)
    return done


def _link(item: LLMJobItem, **fields) -> None:
    """Inside a write transaction: record ``fields`` on the item while its claim holds it."""
    LLMJobItem.objects.filter(pk=item.pk, claimed_by=item.claimed_by).update(**fields)


def _record_run(item: LLMJobItem):
    """``on_run_started``: note the run on the item, to end it if the worker dies."""

    def record(run: LLMRun) -> None:
        runs = [*((item.result or {}).get("runs") or []), run.pk]
        item.result = {"runs": runs}
        _link(item, result=item.result)

    return record


def worker_lost_message(reused: bool) -> str:
    message = _(
        "The background worker running this stopped before it finished (it was restarted "
        "or ran out of time), so nothing was filled in. Try again."
    )
    if reused:
        message += " " + _(
            "The answers it had already received are kept and reused, so they are not paid "
            "for again."
        )
    return message


def expire_item(item_id: int) -> bool:
    """End a running editor item whose lease has run out (by the database's clock): with
    the answer its worker stored, if any; else run it again, up to ``MAX_CLAIMS`` claims;
    else fail it with a readable message. Runs its worker left "running" are ended. False
    if the item's lease has not run out (or someone else ended it first)."""
    token = _token("expired")
    taken = db.write(
        lambda: LLMJobItem.objects.filter(lapsed(), pk=item_id, job__kind=JobKind.EDITOR).update(
            claimed_by=token, lease_expires_at=None, updated_at=timezone.now()
        ),
        what="ending an editor job whose worker stopped",
    )
    if not taken:
        return False
    item = LLMJobItem.objects.select_related(
        "job", "job__action", "job__user", "page", "interaction"
    ).get(pk=item_id)
    runs = [int(pk) for pk in (item.result or {}).get("runs") or []]
    logger.warning("Editor job %s: its worker stopped (claim %s)", item.job_id, item.attempts)
    _end_runs(runs, worker_lost_message(False))
    stored = item.interaction
    if item.job.status == JobStatus.CANCELLED:
        _finish(item, ItemStatus.CANCELLED, {}, interaction=stored)
        return True
    if stored is not None and stored.status == InteractionStatus.SUCCESS:
        try:
            result = _stored_result(item, stored)
        except Exception:  # noqa: BLE001 - fall through: run again or fail plainly
            logger.exception("Editor job %s: the stored answer cannot be shown", item.job_id)
            result = None
        if result is not None:
            _finish(item, ItemStatus.SUCCEEDED, result, interaction=stored)
            return True
    if item.attempts < MAX_CLAIMS and not get_setting("RUN_INLINE"):
        if _run_again(item):
            return True
    message = worker_lost_message(bool(runs))
    _finish(item, ItemStatus.FAILED, {"code": "worker_lost", "message": message}, error=message)
    return True


def _run_again(item: LLMJobItem) -> bool:
    """Queue the item again for a new claim (its stored parts are reused); False if it
    could not be queued."""
    requeued = db.write(
        lambda: LLMJobItem.objects.filter(
            pk=item.pk, status=ItemStatus.RUNNING, claimed_by=item.claimed_by
        ).update(
            status=ItemStatus.QUEUED,
            claimed_by="",
            result=None,
            updated_at=timezone.now(),
        ),
        what="queueing an editor job again",
    )
    if not requeued:
        return False
    try:
        from django_q.tasks import async_task

        async_task(TASK, item.pk, task_name=f"llm-editor-{item.job_id}-{item.attempts + 1}")
    except Exception:  # the queue is unreachable: fail the item plainly instead  # noqa: BLE001
        logger.exception("Editor job %s could not be queued again", item.job_id)
        db.write(
            lambda: LLMJobItem.objects.filter(pk=item.pk, status=ItemStatus.QUEUED).update(
                status=ItemStatus.RUNNING, claimed_by=item.claimed_by
            ),
            what="taking back an editor job",
        )
        return False
    logger.info("Editor job %s: queued again after its worker stopped", item.job_id)
    return True


def _end_runs(run_ids: list[int], message: str) -> None:
    """End the runs a dead worker left "running"."""
    if not run_ids:
        return
    db.write(
        lambda: LLMRun.objects.filter(pk__in=run_ids, status=RunStatus.RUNNING).update(
            status=RunStatus.ERROR, error_message=message, finished_at=timezone.now()
        ),
        what="ending runs whose worker stopped",
    )


def _stored_result(item: LLMJobItem, interaction: LLMInteraction) -> dict | None:
    """The result the worker would have recorded for the answer it stored, or None."""
    payload = item.payload or {}
    if payload.get("queued_run"):  # a rerun or try from the admin's screens
        from .queued_runs import stored_result

        return stored_result(item, interaction)
    page = item.page.specific if item.page is not None else _new_page_of(payload)
    if page is None:
        return None
    obj = page if page.pk is None else page.with_content_json(payload["content"])
    if payload.get("pipeline"):
        run = interaction.run
        if run is None:
            return None
        return pipeline_result(obj, run, _writers(run))
    action = item.job.action
    if action is None:
        return None
    return editor_result(obj, action, interaction)


def recover_editor_items() -> int:
    """End the editor items whose worker died (called when a worker starts); returns how
    many. Items whose lease still runs (the worker may be alive, or was just killed, e.g.
    by django-q2's timeout) get a check scheduled for when their leases run out."""
    running = LLMJobItem.objects.filter(job__in=_editor_jobs(), status=ItemStatus.RUNNING)
    rows = list(running.annotate(gone=_lapsed_flag()).values_list("pk", "gone"))
    ended = sum(1 for pk, gone in rows if gone and expire_item(pk))
    if any(not gone for _pk, gone in rows):
        _schedule_check(running.exclude(lapsed()))
    return ended


def check_editor_leases() -> int:
    """The scheduled check: end the editor items whose lease has run out meanwhile."""
    ids = LLMJobItem.objects.filter(lapsed(), job__in=_editor_jobs()).values_list("pk", flat=True)
    return sum(1 for pk in list(ids) if expire_item(pk))


def _editor_jobs():
    """Editor jobs that may hold a running item: unfinished, or cancelled while running."""
    return LLMJob.objects.filter(
        kind=JobKind.EDITOR,
        status__in=[JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.CANCELLED],
    )


def _lapsed_flag() -> ExpressionWrapper:
    return ExpressionWrapper(lapsed(), output_field=BooleanField())


def _schedule_check(items) -> None:
    """Schedule :func:`check_editor_leases` for just after the leases of ``items`` run out."""
    from django.db.models import Max
    from django_q.models import Schedule

    latest = items.aggregate(latest=Max("lease_expires_at"))["latest"]
    if latest is None:
        return
    at = latest + timedelta(seconds=1)
    try:
        db.write(
            lambda: Schedule.objects.update_or_create(
                name=RECOVERY_SCHEDULE,
                defaults={
                    "func": "wagtail_llm_actions.editor.check_editor_leases",
                    "schedule_type": Schedule.ONCE,
                    "repeats": -1,
                    "next_run": at,
                },
            ),
            what="scheduling an editor lease check",
        )
    except Exception:  # the next worker start or status poll ends them  # noqa: BLE001
        logger.warning("Could not schedule the editor lease check", exc_info=True)


def _fill_value(obj: Page, field_name: str, output_value: str) -> dict:
    """What the browser puts into the field, in the form its widget needs."""
    form_class = form_class_for(obj)
    form_field = form_class.base_fields.get(field_name)
    kind = widget_kind(form_field.widget) if form_field is not None else WIDGET_TEXT
    value: Any = output_value
    if kind == WIDGET_TAGS:
        value = [t.strip() for t in output_value.split(",") if t.strip()]
    elif kind == WIDGET_DRAFTAIL:
        value = form_field.widget.format_value(output_value)
    return {"widget": kind, "value": value, "text": _display_text(obj, field_name, output_value)}


def _display_text(obj, field_name: str, output_value: str) -> str:
    try:
        field = get_target_field(type(obj), field_name)
    except PathError:
        return output_value
    from wagtail.fields import RichTextField

    if isinstance(field, RichTextField):
        return html_to_text(output_value)
    return output_value


def editor_result(obj: Page, action: LLMAction, interaction: LLMInteraction) -> dict:
    """The job result the browser fills the form from: one field, several fields (a
    structured action) or one field with candidates to choose from. ``warning`` says why
    the answer may be incomplete (cut off by the token limit), when it may."""
    result: dict[str, Any] = {"interaction": interaction.pk}
    if interaction.cut_warning:
        result["warning"] = interaction.cut_warning
    if interaction.output_values:
        result["fields"] = [
            {"field": name, "output": value, **_fill_value(obj, name, value)}
            for name, value in interaction.output_values.items()
        ]
        return result
    result.update(
        field=action.target_field,
        output=interaction.output_value,
        **_fill_value(obj, action.target_field, interaction.output_value),
    )
    if len(interaction.candidates or []) > 1:
        result["candidates"] = [
            {"index": index, "output": value, **_fill_value(obj, action.target_field, value)}
            for index, value in enumerate(interaction.candidates)
        ]
    return result


def run_editor_job(item_id: int) -> str:
    """The django-q2 task: run an editor job's one item and store the field value.

    A claimed item always ends: a bug or a broken payload anywhere after the claim fails it
    with the error's type only (the traceback goes to the log), never leaving a spinner; a
    worker that dies stops renewing the item's lease, and :func:`expire_item` ends it.
    """
    item = _claim(item_id)
    if item is None:
        return "skipped"
    pipeline = isinstance(item.payload, dict) and bool(item.payload.get("pipeline"))
    try:
        with _renewing(item):
            if isinstance(item.payload, dict) and item.payload.get("queued_run"):
                from .queued_runs import run_item  # a rerun or try from the admin's screens

                return run_item(item)
            if pipeline:
                return _run_pipeline_item(item)
            return _run_action_item(item)
    except Exception as e:
        if pipeline:
            logger.exception("Editor pipeline job %s failed", item.job_id)
            return _crashed(item, e, _("The pipeline failed unexpectedly (%(type)s)."))
        logger.exception("Editor job %s failed", item.job_id)
        return _crashed(item, e, _("The action failed unexpectedly (%(type)s)."))


def _run_action_item(item: LLMJobItem) -> str:
    """Run an editor action job on the unsaved form's content; write no revision."""
    from .service import LLMService

    job = item.job
    payload = item.payload or {}
    action = job.action
    page = item.page.specific if item.page is not None else _new_page_of(payload)
    if action is None or page is None:
        _finish(
            item,
            ItemStatus.FAILED,
            {"code": "gone", "message": _("The page or the action no longer exists.")},
            error="gone",
        )
        return "failed"

    def discard_if_cancelled(interaction: LLMInteraction) -> None:
        # In the transaction that records the answer: an answer whose job was cancelled while
        # the model answered is never visible as "awaiting review"; the item holds the
        # answer, so that a worker dying now leaves it to be shown (see expire_item).
        if LLMJob.objects.filter(pk=job.pk, status=JobStatus.CANCELLED).exists():
            interaction.outcome = InteractionOutcome.DISCARDED
            interaction.save(update_fields=["outcome"])
        _link(item, interaction=interaction)

    try:
        obj = page if page.pk is None else page.with_content_json(payload["content"])
        interaction = LLMService(on_run_started=_record_run(item)).run(
            action,
            page,
            job.user,
            working_obj=obj,
            save=False,
            trigger=InteractionTrigger.EDITOR,
            on_success=discard_if_cancelled,
        )
    except LLMActionError as e:
        _finish(
            item,
            ItemStatus.FAILED,
            {"code": e.code, "message": e.message, "retryable": e.retryable},
            interaction=e.interaction,
            error=e.message,
        )
        return "failed"
    if LLMJob.objects.filter(pk=job.pk, status=JobStatus.CANCELLED).exists():
        # Cancelled while the model was answering: nothing will be shown or saved.
        db.write(
            lambda: LLMInteraction.objects.filter(pk=interaction.pk).update(
                outcome=InteractionOutcome.DISCARDED
            ),
            what="discarding a cancelled answer",
        )
        _finish(item, ItemStatus.CANCELLED, {}, interaction=interaction)
        return "cancelled"
    result = editor_result(obj, action, interaction)
    _finish(item, ItemStatus.SUCCEEDED, result, interaction=interaction)
    return "succeeded"


def pipeline_result(obj: Page, run, writers: list[LLMInteraction]) -> dict:
    """The job result of an editor pipeline run: one entry per written field, each with its
    own interaction (the writing step's; "<id>:<field>" for one field of a structured step),
    filled and reviewed like a structured answer's fields."""
    fields = []
    for i in writers:
        if i.output_values:  # a structured step: several fields, one outcome each
            for name, value in i.output_values.items():
                fields.append(
                    {
                        "field": name,
                        "output": value,
                        "interaction": f"{i.pk}:{name}",
                        "interaction_id": i.pk,
                        "outcome_field": name,
                        "step": i.step_name,
                        **_fill_value(obj, name, value),
                    }
                )
            continue
        fields.append(
            {
                "field": i.target_field,
                "output": i.output_value,
                "interaction": i.pk,
                "interaction_id": i.pk,
                "step": i.step_name,
                **({"warning": i.cut_warning} if i.cut_warning else {}),
                **_fill_value(obj, i.target_field, i.output_value),
            }
        )
    return {
        "run": run.pk,
        "interaction": writers[-1].pk if writers else None,
        "pipeline": True,
        "fields": fields,
    }


def _run_pipeline_item(item: LLMJobItem) -> str:
    """Run an editor pipeline job on the unsaved form's content; write no revision."""
    from .models import LLMPipeline
    from .pipelines import PipelineStepFailed, run_pipeline

    job = item.job
    payload = item.payload or {}
    pipeline = LLMPipeline.objects.filter(pk=payload.get("pipeline")).first()
    page = item.page.specific if item.page is not None else None
    if pipeline is None or page is None:
        _finish(
            item,
            ItemStatus.FAILED,
            {"code": "gone", "message": _("The page or the pipeline no longer exists.")},
            error="gone",
        )
        return "failed"
    try:
        obj = page.with_content_json(payload["content"])
        run = run_pipeline(
            pipeline,
            page,
            job.user,
            trigger=InteractionTrigger.EDITOR,
            working_obj=obj,
            save=False,
            on_run_started=_record_run(item),
            on_success=lambda last: _link(item, interaction=last),
        )
    except LLMActionError as e:
        result = {"code": e.code, "message": e.message, "retryable": e.retryable}
        if isinstance(e, PipelineStepFailed):
            result["step"] = e.step
        _finish(item, ItemStatus.FAILED, result, interaction=e.interaction, error=e.message)
        return "failed"
    writers = _writers(run)
    last = writers[-1] if writers else None
    if LLMJob.objects.filter(pk=job.pk, status=JobStatus.CANCELLED).exists():
        # Cancelled while the model was answering: nothing will be shown or saved.
        db.write(
            lambda: LLMInteraction.objects.filter(pk__in=[i.pk for i in writers]).update(
                outcome=InteractionOutcome.DISCARDED
            ),
            what="discarding a cancelled answer",
        )
        _finish(item, ItemStatus.CANCELLED, {}, interaction=last)
        return "cancelled"
    _finish(item, ItemStatus.SUCCEEDED, pipeline_result(obj, run, writers), interaction=last)
    return "succeeded"


def _writers(run) -> list[LLMInteraction]:
    """The interactions of an editor pipeline run whose answers fill the form."""
    return list(
        run.interactions.filter(
            chunk_index__isnull=True,
            status=InteractionStatus.SUCCESS,
            outcome=InteractionOutcome.PENDING,
        ).order_by("step_index", "pk")
    )


def _new_page_of(payload: dict) -> Page | None:
    """The unsaved page a create-view job runs on, from its stored content, or None."""
    from django.contrib.contenttypes.models import ContentType

    new = payload.get("new") or {}
    try:
        page_class = ContentType.objects.get_for_id(new["content_type"]).model_class()
        parent = Page.objects.get(pk=new["parent"])
    except (KeyError, TypeError, ContentType.DoesNotExist, Page.DoesNotExist):
        return None
    if page_class is None or not issubclass(page_class, Page):
        return None
    obj = page_class.from_serializable_data(payload["content"])
    obj.pk = obj.id = None
    obj.depth = parent.depth + 1
    obj.path = Page._get_children_path_interval(parent.path)[1]
    return obj


def cancel_editor_job(job: LLMJob) -> None:
    """Cancel a job: a queued item is not run; a running one's answer is thrown away."""
    now = timezone.now()

    def cancel() -> None:
        LLMJob.objects.filter(pk=job.pk, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).update(
            status=JobStatus.CANCELLED, finished_at=now
        )
        LLMJobItem.objects.filter(job=job, status=ItemStatus.QUEUED).update(
            status=ItemStatus.CANCELLED, updated_at=now
        )

    db.write(cancel, what="cancelling an editor job")


# -- status --------------------------------------------------------------------------------------


@dataclass
class EditorStatus:
    state: str  # queued | running | stalled | succeeded | failed | cancelled
    elapsed: float
    message: str = ""
    result: dict | None = None

    def as_dict(self) -> dict:
        data: dict[str, Any] = {
            "state": self.state,
            "elapsed": round(self.elapsed, 1),
            "message": self.message,
        }
        if self.result is not None:
            data["result"] = self.result
        return data


def get_editor_item(job_id: int, user) -> LLMJobItem | None:
    """The item of ``user``'s editor job ``job_id`` (one query), or None. An item whose
    worker died (its lease ran out, by the database's clock) is ended first (see
    :func:`expire_item`), so the editor's polling ends with what happened."""
    items = LLMJobItem.objects.select_related("job").filter(
        job_id=job_id, job__kind=JobKind.EDITOR, job__user=user
    )
    item = items.annotate(lease_lapsed=_lapsed_flag()).first()
    if item is not None and item.lease_lapsed and expire_item(item.pk):
        item = items.first()
    return item


def editor_status(item: LLMJobItem, now=None) -> EditorStatus:
    """What the browser shows for ``item``; reads nothing more from the database."""
    now = now or timezone.now()
    job = item.job
    elapsed = (now - job.created_at).total_seconds()
    if item.status == ItemStatus.QUEUED:
        timeout = float(get_setting("WORKER_PICKUP_TIMEOUT"))
        # Queued again after its worker stopped: waiting since then.
        since = item.updated_at if item.attempts and item.updated_at else job.created_at
        if job.status != JobStatus.CANCELLED and now - since > timedelta(seconds=timeout):
            return EditorStatus(
                "stalled",
                elapsed,
                _(
                    "No background worker has picked this up after %(seconds)s seconds. The "
                    "site's task worker (manage.py qcluster) may not be running: ask your "
                    "administrator. You can keep waiting or cancel."
                )
                % {"seconds": int(timeout)},
            )
        return EditorStatus("queued", elapsed, _("Waiting for a worker…"))
    if item.status == ItemStatus.RUNNING:
        return EditorStatus("running", elapsed, _("Generating…"))
    if item.status == ItemStatus.SUCCEEDED:
        return EditorStatus("succeeded", elapsed, "", item.result or {})
    if item.status == ItemStatus.CANCELLED or job.status == JobStatus.CANCELLED:
        return EditorStatus("cancelled", elapsed, _("Cancelled."))
    result = item.result or {}
    failed = {"code": result.get("code", "error")}
    if result.get("step"):
        failed["step"] = result["step"]  # a pipeline's failed step
    return EditorStatus(
        "failed",
        elapsed,
        result.get("message") or item.error or _("The action failed."),
        failed,
    )


# -- outcomes ------------------------------------------------------------------------------------


def parse_interaction_ids(value: str) -> list[int]:
    """Interaction ids from the hidden input: "12,13:seo_title" gives [12, 13] (a field after
    the colon marks one field of a structured answer)."""
    ids = [int(v) for v in re.findall(r"(?:^|,)\s*(\d+)", value or "")]
    return list(dict.fromkeys(ids))[:50]


def _normalise_value(field: Any, value: str) -> Any:
    from taggit.managers import TaggableManager
    from wagtail.fields import RichTextField

    if isinstance(field, TaggableManager):
        return sorted({t.strip().casefold() for t in (value or "").split(",") if t.strip()})
    if isinstance(field, RichTextField):
        value = html_to_text(value or "")
    return " ".join((value or "").split())


def saved_outcome(page: Page, interaction: LLMInteraction, field_name: str) -> str:
    """ "accepted" if ``page`` holds the interaction's output unchanged, else "edited"."""
    from .outputs import read_field_value

    try:
        field = get_target_field(type(page), field_name)
        saved = read_field_value(page, field_name)
    except PathError:
        return InteractionOutcome.EDITED
    same = _normalise_value(field, saved) == _normalise_value(field, interaction.output_value)
    return InteractionOutcome.ACCEPTED if same else InteractionOutcome.EDITED


def record_saved_outcomes(page: Page, user, ids: list[int]) -> list[LLMInteraction]:
    """After the editor saved ``page``: link each listed interaction to the new revision.

    An interaction is linked to the revision that first saved its output and never moved to
    a later one; while Wagtail's autosave keeps overwriting that same revision, its outcome
    (accepted or edited) follows what was saved last. Runs made on the create view, before
    the page existed, are attached to the page now. Each newly linked run gets the page
    history entry bulk runs get ("Generated summary with …"), with its outcome.
    """
    from django.contrib.contenttypes.models import ContentType
    from django.db.models import Q

    revision_id = getattr(page, "latest_revision_id", None)
    if not ids or revision_id is None or user is None:
        return []
    page = page.specific if type(page) is Page else page
    content_type = ContentType.objects.get_for_model(page, for_concrete_model=False)
    changed = []
    interactions = (
        LLMInteraction.objects.filter(
            Q(page_id=page.pk) | Q(page__isnull=True, object_id="", content_type=content_type),
            pk__in=ids,
            user=user,
            trigger=InteractionTrigger.EDITOR,
            status=InteractionStatus.SUCCESS,
        )
        .exclude(outcome=InteractionOutcome.DISCARDED)
        .select_related("action")
    )
    for interaction in interactions:
        if interaction.revision_id not in (None, revision_id):
            continue
        if interaction.output_values:
            # Read the per-field outcomes afresh inside the write, so a Discard that lands
            # while this autosave runs is kept, not overwritten with a stale copy.
            with db.atomic_write():
                interaction.field_outcomes = _locked(interaction).field_outcomes
                if _record_fields(page, user, interaction, revision_id):
                    changed.append(interaction)
            continue
        field_name = _target_of(interaction)
        if not field_name:
            continue
        outcome = saved_outcome(page, interaction, field_name)
        if interaction.revision_id == revision_id and interaction.outcome == outcome:
            continue
        with db.atomic_write():
            _save_linked(page, user, interaction, revision_id, outcome, field_name)
        changed.append(interaction)
    return changed


def _locked(interaction: LLMInteraction) -> LLMInteraction:
    """The interaction's row as stored now, locked until the transaction ends."""
    return (
        LLMInteraction.objects.select_for_update()
        .only("outcome", "field_outcomes")
        .get(pk=interaction.pk)
    )


def _record_fields(page: Page, user, interaction: LLMInteraction, revision_id: int) -> bool:
    """Link a structured answer to the saved revision with its outcome per field."""
    found = _field_outcomes(page, interaction)
    if found is None:
        return False
    outcome, field_outcomes = found
    if (
        interaction.revision_id == revision_id
        and interaction.outcome == outcome
        and interaction.field_outcomes == field_outcomes
    ):
        return False
    interaction.field_outcomes = field_outcomes
    field_name = ", ".join(interaction.output_values)
    _save_linked(page, user, interaction, revision_id, outcome, field_name)
    return True


def _save_linked(
    page: Page, user, interaction: LLMInteraction, revision_id: int, outcome: str, field_name: str
) -> None:
    """Save the interaction's link to the revision and its page-history entry."""
    first_save = interaction.revision_id is None
    interaction.revision_id = revision_id
    interaction.outcome = outcome
    interaction.page = page
    interaction.object_id = str(page.pk)
    interaction.save(update_fields=["revision", "outcome", "field_outcomes", "page", "object_id"])
    _log_saved_generation(page, user, interaction, field_name, first=first_save)


def _crashed(item, e: Exception, message: str) -> str:
    """Finish an editor job item that failed on a bug, with a readable internal error."""
    _finish(
        item,
        ItemStatus.FAILED,
        {"code": "internal", "message": message % {"type": type(e).__name__}},
        error=type(e).__name__,
    )
    return "failed"


def _log_saved_generation(page, user, interaction, field_name: str, *, first: bool) -> None:
    """The page-history entry of an editor run saved with the page, kept up to date."""
    from wagtail.log_actions import log
    from wagtail.models import PageLogEntry

    from .log_actions import GENERATE

    data = {
        "llm_action": {"id": interaction.action_id, "name": interaction.action_name},
        "interaction_id": interaction.pk,
        "target_field": field_name,
        "outcome": interaction.outcome,
        "trigger": InteractionTrigger.EDITOR,
    }
    if not first:
        # Autosave overwrote the same revision and the outcome changed: update the entry.
        entry = (
            PageLogEntry.objects.filter(
                page_id=page.pk, action=GENERATE, data__interaction_id=interaction.pk
            )
            .order_by("-pk")
            .first()
        )
        if entry is not None:
            entry.data = data
            entry.save(update_fields=["data"])
            return
    log(
        instance=page,
        action=GENERATE,
        user=user,
        revision=interaction.revision,
        content_changed=True,
        data=data,
    )


def _field_outcomes(page: Page, interaction: LLMInteraction) -> tuple[str, dict] | None:
    """The saved outcome per field of a structured answer (a discarded field stays
    discarded) and the interaction's outcome: "edited" if any kept field was edited, else
    "accepted". None when every field was discarded."""
    outcomes = dict(interaction.field_outcomes or {})
    for name, value in interaction.output_values.items():
        if outcomes.get(name) == InteractionOutcome.DISCARDED:
            continue
        probe = LLMInteraction(output_value=value)
        outcomes[name] = saved_outcome(page, probe, name)
    kept = [o for o in outcomes.values() if o != InteractionOutcome.DISCARDED]
    if not kept:
        return None
    if InteractionOutcome.EDITED in kept:
        return InteractionOutcome.EDITED, outcomes
    return InteractionOutcome.ACCEPTED, outcomes


def _target_of(interaction: LLMInteraction) -> str:
    if interaction.run_id and interaction.target_field:
        return interaction.target_field  # a pipeline step: the field it wrote
    item = (
        LLMJobItem.objects.filter(interaction=interaction, job__kind=JobKind.EDITOR)
        .select_related("job")
        .first()
    )
    if item is not None and item.job.options.get("target_field"):
        return item.job.options["target_field"]
    return interaction.action.target_field if interaction.action_id else ""


def set_outcome(interaction: LLMInteraction, outcome: str, field: str = "") -> bool:
    """Record a discard (or undo one) for an editor interaction not yet saved in a revision.

    With ``field`` (one field of a structured answer), only that field's outcome changes; the
    interaction is "discarded" once every field is. Returns False when nothing changed (the
    output is already in a saved revision, where the save decided the outcome, or the value
    or field is not allowed).
    """
    if outcome not in (InteractionOutcome.DISCARDED, InteractionOutcome.PENDING):
        return False
    if interaction.status != InteractionStatus.SUCCESS:
        return False
    if interaction.revision_id is not None and outcome == InteractionOutcome.PENDING:
        return False
    if field:
        if field not in (interaction.output_values or {}):
            return False

        def record() -> None:
            # Read-modify-write under the row lock: an autosave recording the other fields'
            # outcomes at the same moment cannot overwrite this one.
            stored = _locked(interaction)
            outcomes = dict(stored.field_outcomes or {})
            outcomes[field] = str(outcome)
            interaction.field_outcomes = outcomes
            every = [outcomes.get(name) for name in interaction.output_values]
            if all(o == InteractionOutcome.DISCARDED for o in every):
                interaction.outcome = InteractionOutcome.DISCARDED
            elif interaction.revision_id is None:
                interaction.outcome = InteractionOutcome.PENDING
            else:
                interaction.outcome = stored.outcome
            interaction.save(update_fields=["outcome", "field_outcomes"])

        db.write(record, what="recording an outcome")
        return True
    if interaction.outcome == outcome:
        return True
    interaction.outcome = outcome
    with db.atomic_write():
        interaction.save(update_fields=["outcome"])
        if interaction.revision_id is not None and interaction.page_id is not None:
            # Autosave had already saved it: the history entry now says it was discarded.
            from wagtail.models import PageLogEntry

            from .log_actions import GENERATE

            for entry in PageLogEntry.objects.filter(
                page_id=interaction.page_id, action=GENERATE, data__interaction_id=interaction.pk
            ):
                entry.data = {**entry.data, "outcome": outcome}
                entry.save(update_fields=["data"])
    return True


def choose_candidate(interaction: LLMInteraction, index: int) -> bool:
    """Record that the editor picked candidate ``index``: it becomes the interaction's value.

    False when there is no such candidate or the answer is already in a saved revision.
    """
    candidates = interaction.candidates or []
    if interaction.status != InteractionStatus.SUCCESS or interaction.revision_id is not None:
        return False
    if not 0 <= index < len(candidates):
        return False
    interaction.chosen_candidate = index
    interaction.output_value = candidates[index]
    interaction.outcome = InteractionOutcome.PENDING
    db.write(
        lambda: interaction.save(update_fields=["chosen_candidate", "output_value", "outcome"]),
        what="recording a chosen candidate",
    )
    return True
