"""Jobs over snippets (issue 23 §2): an action run on many snippets of one model by the same
engine as pages (estimate, exactly one write per snippet, resume, skip-unchanged).

A snippet item is an ``LLMJobItem`` with no page and a target (``target_type``/``target_id``:
the snippet model and the snippet's id), as an image item is. Running it is a page's run
(:func:`.items.process_item`, through ``LLMService.run``) on the snippet.

::

    plan = plan_snippet_job(action, user, Dish, ids)    # counts and estimate, no writes
    job = create_snippet_job(action, user, Dish, ids)   # job + one item a snippet
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.utils.translation import gettext as _

from .. import db, estimates
from ..exceptions import LLMActionError
from ..models import (
    InteractionTrigger,
    JobKind,
    LLMAction,
    LLMJob,
    LLMJobItem,
)
from .options import engine_options
from .planning import (
    SKIP_DELETED,
    SKIP_NO_PERMISSION,
    SKIP_WRONG_TYPE,
    create_target_items,
)

#: Snippets per query and bulk insert.
CHUNK_SIZE = 500


@dataclass
class SnippetPlan:
    """What a snippet job would do, for the confirmation screen and the command."""

    action: LLMAction
    total: int = 0
    eligible: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    estimate: estimates.Estimate | None = None


def _sorted(ids: Iterable) -> list:
    return sorted({str(pk) for pk in ids}, key=lambda pk: (len(pk), pk))


def _states(action: LLMAction, user, model: type, ids: list) -> tuple[set, set]:
    """The ids among ``ids`` that exist, and those ``user`` may change (as strings)."""
    from ..snippets import editable_ids

    existing = {
        str(pk) for pk in model._default_manager.filter(pk__in=ids).values_list("pk", flat=True)
    }
    editable = {str(pk) for pk in editable_ids(user, model, existing)}
    return existing, editable


def _skip(action: LLMAction, model: type, pk: str, existing: set, editable: set) -> str:
    if not action.applies_to_snippet(model):
        return SKIP_WRONG_TYPE
    if pk not in existing:
        return SKIP_DELETED
    return "" if pk in editable else SKIP_NO_PERMISSION


def plan_snippet_job(action: LLMAction, user, model: type, ids: Iterable) -> SnippetPlan:
    """Count the snippets a job would run and skip, and estimate its tokens and cost from
    the prompt rendered for each one (no call)."""
    from ..service import LLMService

    ids = _sorted(ids)
    plan = SnippetPlan(action=action, total=len(ids))
    existing, editable = _states(action, user, model, ids)
    prompt_tokens = 0
    service = LLMService()
    for obj in model._default_manager.filter(pk__in=list(existing)):
        code = _skip(action, model, str(obj.pk), existing, editable)
        if not code:
            try:
                prepared = service.prepare(action, service.working_copy(obj)[0])
            except LLMActionError as e:
                code = getattr(e, "code", "error")
            else:
                prompt_tokens += sum(
                    estimates.count_text_tokens(m["content"]) for m in prepared.messages
                )
        if code:
            plan.skipped[code] = plan.skipped.get(code, 0) + 1
        else:
            plan.eligible += 1
    missing = len(ids) - len(existing)
    if missing:
        plan.skipped[SKIP_DELETED] = plan.skipped.get(SKIP_DELETED, 0) + missing
    plan.estimate = estimates.estimate(
        action.model, prompt_tokens, plan.eligible, action.max_tokens
    )
    return plan


def create_snippet_job(
    action: LLMAction,
    user,
    model: type,
    ids: Iterable,
    *,
    force: bool = False,
    kind: str = JobKind.BULK,
    trigger: str = InteractionTrigger.BULK,
) -> LLMJob:
    """A job with one item per snippet: queued, or skipped (wrong type, deleted, no
    permission). Empty sources and unchanged snippets are skipped when their item runs."""
    ids = _sorted(ids)
    return db.write(
        lambda: _create(action, user, model, ids, force, kind, trigger), what="a snippet job"
    )


def _create(action, user, model, ids, force, kind, trigger) -> LLMJob:
    job = LLMJob.objects.create(
        action=action,
        action_name=action.name,
        user=user,
        kind=kind,
        force=force,
        options={
            **engine_options(action.model, trigger),
            "targets": "snippets",
            "model": model._meta.label,
        },
    )
    content_type = ContentType.objects.get_for_model(model)

    def skips(chunk: list) -> list[tuple[Any, str]]:
        existing, editable = _states(action, user, model, chunk)
        return [(pk, _skip(action, model, pk, existing, editable)) for pk in chunk]

    return create_target_items(job, content_type, ids, skips, CHUNK_SIZE)


def snippet_of(item: LLMJobItem) -> Any | None:
    """The snippet an item targets (None: deleted, or the item targets no snippet)."""
    from ..snippets import is_snippet

    model = item.target_type.model_class() if item.target_type_id else None
    if model is None:
        return None
    obj = model._default_manager.filter(pk=item.target_id).first()
    return obj if obj is not None and is_snippet(obj) else None


def is_snippet_item(item: LLMJobItem) -> bool:
    """Whether ``item`` targets a snippet (not a page, not an image)."""
    from wagtail.images import get_image_model

    if item.page_id is not None or item.target_type_id is None:
        return False
    model = item.target_type.model_class()
    return model is not None and model is not get_image_model()


# -- a run from the snippet's edit view (queued as the editor's runs are) ---------------------


def run_queued(item: LLMJobItem) -> str:
    """Run a claimed snippet item to its outcome (``LLMService.run``: a new revision, or a
    direct write); an answer stored by a worker that died is written without calling again.
    Returns the status."""
    from ..queued_runs import run_claimed
    from ..service import LLMService

    obj = snippet_of(item)

    def run(stored, link, refuse_if_cancelled):
        job = item.job
        service = LLMService()
        if stored is not None:
            return service.apply_stored(stored, job.user, on_success=refuse_if_cancelled)
        return service.run(
            job.action,
            obj,
            job.user,
            trigger=InteractionTrigger.SNIPPET_EDITOR,
            on_answer=link,
            on_success=refuse_if_cancelled,
        )

    return run_claimed(item, obj, _("The snippet or the action no longer exists."), run)


__all__ = ["SnippetPlan", "create_snippet_job", "plan_snippet_job", "run_queued", "snippet_of"]
