"""Planning a bulk job: which pages it would run and skip, what it would cost, and creating it.

The confirmation screen (``bulk_actions.py``), the pipeline screen and ``run_llm_action``
import this module; nothing here runs a job (that is the engine, :mod:`.worker`).

::

    plan = plan_job(action, user, page_ids, include_descendants=True)   # preview, no writes
    job = create_job(action, user, page_ids, include_descendants=True)  # job + one item a page
    enqueue_job(job)                     # a runner task on django-q2 (after commit)

A job has one ``LLMJobItem`` per selected page (and descendant). Pages that cannot run are
created *skipped* with a reason (wrong type, no permission, locked); the rest are *queued*.
Whether the source is empty, or unchanged (:mod:`.unchanged`), is decided by the engine when
the item runs (the screen only samples it, see :func:`plan_job`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Count, Q, Value, When
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from wagtail.models import Page
from wagtail.permission_policies.pages import PagePermissionPolicy

from .. import db, estimates
from ..exceptions import LLMActionError, SourceEmpty
from ..models import (
    InteractionTrigger,
    ItemStatus,
    JobKind,
    JobStatus,
    LLMAction,
    LLMJob,
    LLMJobItem,
    LLMPipeline,
)
from ..permissions import explorable_pages, has_admin_access
from ..service import LLMService
from ..unchanged import decide
from .held import held_whens
from .options import engine_options

logger = logging.getLogger(__name__)

#: The django-q2 task that runs a job.
#: The worker task of a bulk job (any number of them, on any host, work on one job).
RUNNER_TASK = "wagtail_llm_actions.tasks.run_job"
#: Queued by earlier versions (a job's helpers); runs as a plain worker task now.
HELPER_TASK = "wagtail_llm_actions.tasks.help_job"
#: Job kinds this engine runs (editor jobs belong to :mod:`wagtail_llm_actions.editor`).
ENGINE_KINDS = (JobKind.BULK, JobKind.COMMAND, JobKind.TRIGGER)
#: Pages per query/bulk insert when selecting pages and creating items.
CHUNK_SIZE = 500
#: Selected pages per query when descendants are included (SQL ``OR`` of path prefixes).
ROOTS_PER_QUERY = 200
#: Pages whose content the confirmation screen inspects (source empty, unchanged, tokens).
PREVIEW_SAMPLE = 50
#: Example titles listed for each skip reason on the confirmation screen.
EXAMPLES_PER_REASON = 5

SKIP_NOT_AVAILABLE = "not_available"
SKIP_WRONG_TYPE = "wrong_type"
SKIP_NO_PERMISSION = "no_permission"
SKIP_LOCKED = "locked"
SKIP_SOURCE_EMPTY = "source_empty"
SKIP_UNCHANGED = "unchanged"
SKIP_DELETED = "deleted"
SKIP_MODERATION = "moderation"
SKIP_ACTION_DISABLED = "action_disabled"
SKIP_ACTION_DELETED = "action_deleted"
SKIP_PIPELINE_DISABLED = "pipeline_disabled"
SKIP_PIPELINE_DELETED = "pipeline_deleted"
SKIP_OVER_BUDGET = "over_budget"  # beyond the pages that fit (see .budget_limits)
SKIP_PARENT_NOT_TRANSLATED = "parent_not_translated"  # a translation item (.translating)

SKIP_REASONS = {
    SKIP_NOT_AVAILABLE: _("Not available to you"),
    SKIP_WRONG_TYPE: _("The action does not apply to this page type"),
    SKIP_NO_PERMISSION: _("No permission to edit the page"),
    SKIP_LOCKED: _("The page is locked"),
    SKIP_SOURCE_EMPTY: _("The source field is empty"),
    SKIP_UNCHANGED: _("Unchanged since this action’s answer was written or discarded"),
    SKIP_DELETED: _("The page was deleted"),
    SKIP_MODERATION: _("The page is in moderation"),
    SKIP_ACTION_DISABLED: _("The action was disabled while the job ran"),
    SKIP_ACTION_DELETED: _("The action was deleted while the job ran"),
    SKIP_PIPELINE_DISABLED: _("The pipeline was disabled while the job ran"),
    SKIP_PIPELINE_DELETED: _("The pipeline was deleted while the job ran"),
    SKIP_OVER_BUDGET: _("Not started: over the budget"),
    SKIP_PARENT_NOT_TRANSLATED: _(
        "The parent page has no translation in this locale: translate the parent first"
    ),
}


def skip_reason_label(code: str) -> str:
    return str(SKIP_REASONS.get(code, code))


# -- selection and eligibility -----------------------------------------------------------------


def selection_parts(page_ids: Iterable, include_descendants: bool = False) -> list:
    """Querysets of pages that together make the selection (without overlaps).

    One queryset per ``CHUNK_SIZE`` selected ids, or per ``ROOTS_PER_QUERY`` selected pages
    when their descendants are included (an ``OR`` of tree path prefixes).
    """
    ids = sorted({int(pk) for pk in page_ids})
    if not include_descendants:
        return [
            Page.objects.filter(pk__in=ids[i : i + CHUNK_SIZE])
            for i in range(0, len(ids), CHUNK_SIZE)
        ]
    paths = sorted(Page.objects.filter(pk__in=ids).values_list("path", flat=True))
    roots: list[str] = []
    for path in paths:  # sorted, so a descendant directly follows its ancestors
        if not roots or not path.startswith(roots[-1]):
            roots.append(path)
    parts = []
    for i in range(0, len(roots), ROOTS_PER_QUERY):
        query = Q()
        for path in roots[i : i + ROOTS_PER_QUERY]:
            query |= Q(path__startswith=path)
        parts.append(Page.objects.filter(query))
    return parts


def _editable_pages(user):
    """A queryset of the pages ``user`` may edit (Wagtail's page permission policy)."""
    return PagePermissionPolicy().instances_user_has_any_permission_for(user, {"change"})


def _lock_condition(user) -> Q:
    if user is None or getattr(settings, "WAGTAILADMIN_GLOBAL_EDIT_LOCK", False):
        return Q(locked=True)
    return Q(locked=True) & ~Q(locked_by_id=user.pk)


def annotate_reasons(queryset, action: LLMAction, user, type_ids=None, *, held: bool = False):
    """``queryset`` with a ``skip`` annotation: a skip reason code, or "" to run.

    What the page row tells: not available (a page the user cannot see in the admin:
    nothing more is said about it), wrong type, no permission, locked (in that order); with
    ``held`` (the plan), also the locks a run finds (:mod:`.held`: moderation, scheduled).
    """
    if type_ids is None:
        type_ids = list(action.page_types.values_list("pk", flat=True))
    whens = []
    if has_admin_access(user) and not user.is_superuser:
        visible = explorable_pages(user)
        whens.append(When(~Q(pk__in=visible.values("pk")), then=Value(SKIP_NOT_AVAILABLE)))
    whens.append(When(~Q(content_type_id__in=type_ids), then=Value(SKIP_WRONG_TYPE)))
    if user is not None:
        editable = _editable_pages(user)
        whens.append(When(~Q(pk__in=editable.values("pk")), then=Value(SKIP_NO_PERMISSION)))
    whens.append(When(_lock_condition(user), then=Value(SKIP_LOCKED)))
    if held:
        whens += held_whens(queryset.filter(content_type_id__in=type_ids), user)
    return queryset.annotate(skip=Case(*whens, default=Value("")))


@dataclass
class ContentCheck:
    page_id: int
    skip: str = ""
    prompt_tokens: int = 0
    calls: int = 1
    error: str = ""


def check_content(
    action: LLMAction, page_ids: list[int], *, force: bool = False
) -> dict[int, ContentCheck]:
    """Source empty / unchanged / prompt tokens for ``page_ids``, in a fixed number of queries.

    Unchanged is :mod:`.unchanged`'s rule (the one the job engine applies when the page runs),
    decided by :func:`.unchanged.decide`, as the page listing's "stale" filter decides it.
    """
    service = LLMService()
    result: dict[int, ContentCheck] = {}
    for page_id, decision in decide(action, page_ids, force=force).items():
        check = ContentCheck(page_id)
        if isinstance(decision.error, SourceEmpty):
            check.skip = SKIP_SOURCE_EMPTY
        elif decision.error is not None:
            check.error = decision.error.message
        elif decision.unchanged:
            check.skip = SKIP_UNCHANGED
        else:
            from ..pipelines import estimate_calls

            prepared = decision.prepared
            check.calls, check.prompt_tokens = estimate_calls(service, prepared)
            if action.is_structured:
                check.prompt_tokens += estimates.structured_prompt_tokens(
                    action, type(prepared.obj)
                )
        result[page_id] = check
    return result


@dataclass
class Plan:
    """What a job would do: for the confirmation screen. Built without writing anything."""

    action: LLMAction
    total: int = 0
    eligible: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[dict]] = field(default_factory=dict)
    sampled: int = 0
    sample_skipped: dict[str, int] = field(default_factory=dict)
    sample_errors: int = 0
    #: Sampled pages that will fail (e.g. a block that cannot be read): pk, title, message.
    errors: list[dict] = field(default_factory=list)
    estimate: estimates.Estimate | None = None

    @property
    def will_run(self) -> int:
        """Pages expected to call the model (content checks extrapolated from the sample)."""
        if not self.sampled:
            return self.eligible
        runnable = self.sampled - sum(self.sample_skipped.values()) - self.sample_errors
        if self.sampled >= self.eligible:
            return runnable
        return round(self.eligible * runnable / self.sampled)

    @property
    def is_exact(self) -> bool:
        return self.sampled >= self.eligible

    @property
    def skip_rows(self) -> list[dict]:
        rows = []
        for code in SKIP_REASONS:
            count = self.skipped.get(code, 0) + (
                self.sample_skipped.get(code, 0) if self.is_exact else 0
            )
            if count:
                rows.append(
                    {
                        "code": code,
                        "label": skip_reason_label(code),
                        "count": count,
                        "examples": self.examples.get(code, []),
                    }
                )
        return rows


def plan_job(
    action: LLMAction,
    user,
    page_ids: Iterable,
    *,
    include_descendants: bool = False,
    force: bool = False,
    sample: int = PREVIEW_SAMPLE,
    type_ids: list[int] | None = None,
) -> Plan:
    """Count what a job would run and skip, and estimate its tokens and cost.

    Row-level reasons are counted over the whole selection with a fixed number of queries
    (per part of :func:`selection_parts`); content checks and the token estimate look at the
    first ``sample`` eligible pages and are extrapolated for larger selections.
    """
    plan = Plan(action=action)
    if type_ids is None:
        type_ids = list(action.page_types.values_list("pk", flat=True))
    sample_ids: list[int] = []
    for part in selection_parts(page_ids, include_descendants):
        annotated = annotate_reasons(part, action, user, type_ids, held=True)
        _count_reasons(plan, annotated)
        if len(sample_ids) < sample:
            sample_ids.extend(
                annotated.filter(skip="")
                .order_by("path")
                .values_list("pk", flat=True)[: sample - len(sample_ids)]
            )
    if sample_ids:
        _check_sample(plan, action, sample_ids, force=force)
    return plan


def _count_reasons(plan: Plan, annotated) -> None:
    """Add one part of the selection (see :func:`annotate_reasons`) to ``plan``'s counts,
    with example titles for each skip reason."""
    counts = annotated.values("skip").annotate(n=Count("pk")).order_by()
    for row in counts:
        plan.total += row["n"]
        if row["skip"]:
            plan.skipped[row["skip"]] = plan.skipped.get(row["skip"], 0) + row["n"]
        else:
            plan.eligible += row["n"]
    for code in list(plan.skipped):
        if code == SKIP_NOT_AVAILABLE:
            continue  # counted, never named
        have = plan.examples.setdefault(code, [])
        if len(have) < EXAMPLES_PER_REASON:
            have.extend(
                annotated.filter(skip=code)
                .order_by("path")
                .values("pk", "draft_title")[: EXAMPLES_PER_REASON - len(have)]
            )


def _check_sample(plan: Plan, action: LLMAction, sample_ids: list[int], *, force: bool) -> None:
    """Content checks of the sampled pages, and the estimate extrapolated from them."""
    checks = check_content(action, sample_ids, force=force)
    prompt_tokens = 0
    calls = 0
    titles = dict(Page.objects.filter(pk__in=sample_ids).values_list("pk", "draft_title"))
    for check in checks.values():
        if check.skip:
            plan.sample_skipped[check.skip] = plan.sample_skipped.get(check.skip, 0) + 1
            have = plan.examples.setdefault(check.skip, [])
            if len(have) < EXAMPLES_PER_REASON:
                have.append({"pk": check.page_id, "draft_title": titles.get(check.page_id)})
        elif check.error:
            plan.sample_errors += 1
            plan.errors.append(
                {
                    "pk": check.page_id,
                    "draft_title": titles.get(check.page_id),
                    "message": check.error,
                }
            )
        else:
            prompt_tokens += check.prompt_tokens
            calls += check.calls
    plan.errors.sort(key=lambda row: (str(row["draft_title"] or ""), row["pk"]))
    plan.sampled = len(checks)
    runnable_sampled = plan.sampled - sum(plan.sample_skipped.values()) - plan.sample_errors
    if runnable_sampled > 0:
        per_page = prompt_tokens / runnable_sampled
        pages = plan.will_run
        plan.estimate = estimates.estimate(
            action.model,
            round(per_page * pages),
            pages,
            action.max_tokens,
            calls=round(calls / runnable_sampled * pages),
        )
    else:
        plan.estimate = estimates.estimate(action.model, 0, 0, action.max_tokens)


def plan_pipeline_job(
    pipeline: LLMPipeline,
    user,
    page_ids: Iterable,
    *,
    include_descendants: bool = False,
    sample: int = 5,
) -> Plan:
    """:func:`plan_job` for a pipeline: pages by its page types (else its first step's
    action's), checked by the action of :func:`pipelines.job_action`, and an estimate
    that sums every step (and every part of a map-reduce step) on the first ``sample``
    pages that will run, extrapolated to all of them."""
    from ..pipelines import estimate_pipeline, job_action

    action, type_ids = job_action(pipeline)
    plan = plan_job(
        action,
        user,
        page_ids,
        include_descendants=include_descendants,
        force=True,
        type_ids=type_ids,
    )
    plan.action = pipeline
    pages = plan.will_run
    sampled = []
    for part in selection_parts(page_ids, include_descendants):
        annotated = annotate_reasons(part, action, user, type_ids, held=True)
        for page in Page.objects.filter(
            pk__in=annotated.filter(skip="").order_by("path").values("pk")[:sample]
        ):
            try:
                sampled.append(estimate_pipeline(pipeline, page))
            except LLMActionError:
                continue
        if len(sampled) >= sample:
            break
    if sampled and pages:
        factor = pages / len(sampled)
        costs = [e.cost for e in sampled]
        plan.estimate = estimates.Estimate(
            pages=pages,
            prompt_tokens=round(sum(e.prompt_tokens for e in sampled) * factor),
            completion_tokens=round(sum(e.completion_tokens for e in sampled) * factor),
            calls=round(sum(e.calls for e in sampled) * factor),
            cost=None if None in costs else sum(costs, start=Decimal(0)) * Decimal(factor),
        )
    return plan


# -- creating and starting jobs ----------------------------------------------------------------


def create_job(
    action: LLMAction,
    user,
    page_ids: Iterable,
    *,
    include_descendants: bool = False,
    force: bool = False,
    kind: str = JobKind.BULK,
    pipeline: LLMPipeline | None = None,
    type_ids: list[int] | None = None,
    trigger: str | None = None,
) -> LLMJob:
    """A job with one item per selected page: queued, or skipped with a reason.

    Pages are read and items inserted ``CHUNK_SIZE`` at a time (memory stays flat). With
    ``pipeline``, each item runs the pipeline; ``action`` (:func:`pipelines.job_action`)
    sets the provider and concurrency, and is kept on the job only if it is saved (a
    pipeline made only of steps with their own prompt: the job has no action).
    """
    if trigger is None:  # what the interactions record as having started each run
        trigger = InteractionTrigger.COMMAND if kind == JobKind.COMMAND else InteractionTrigger.BULK
    if type_ids is None:
        type_ids = list(action.page_types.values_list("pk", flat=True))
    page_ids = list(page_ids)
    return db.write(
        lambda: _create_job(
            action, user, page_ids, include_descendants, force, kind, trigger, type_ids, pipeline
        ),
        what="creating a job",
    )


def create_pipeline_job(pipeline: LLMPipeline, user, page_ids: Iterable, **kwargs) -> LLMJob:
    """:func:`create_job` for a pipeline: one item a page, each one pipeline run."""
    from ..pipelines import job_action

    action, type_ids = job_action(pipeline)
    return create_job(action, user, page_ids, pipeline=pipeline, type_ids=type_ids, **kwargs)


def _create_job(
    action, user, page_ids, include_descendants, force, kind, trigger, type_ids, pipeline=None
):
    """The body of :func:`create_job`: one transaction (run again if the database was busy)."""
    options = {}
    if pipeline is not None:
        options["calls_per_item"] = pipeline.steps.count()
        if action.pk is None:
            # Steps with their own prompt only: the pipeline paces and checks the job.
            options["paced_by"] = "pipeline"
            options["model"] = action.model
    job = LLMJob.objects.create(
        action=action if action.pk is not None else None,
        action_name=pipeline.name if pipeline is not None else action.name,
        pipeline=pipeline,
        user=user,
        kind=kind,
        force=force,
        include_descendants=include_descendants,
        options={
            **engine_options(action.model, trigger),
            **options,
        },
    )
    skipped = 0
    for part in selection_parts(page_ids, include_descendants):
        annotated = annotate_reasons(part, action, user, type_ids).order_by("pk")
        last = 0
        while True:
            rows = list(annotated.filter(pk__gt=last).values_list("pk", "skip")[:CHUNK_SIZE])
            if not rows:
                break
            last = rows[-1][0]
            LLMJobItem.objects.bulk_create(
                [
                    LLMJobItem(
                        job=job,
                        page_id=pk,
                        status=ItemStatus.SKIPPED if skip else ItemStatus.QUEUED,
                        skip_reason=skip,
                    )
                    for pk, skip in rows
                ]
            )
            skipped += sum(1 for _pk, skip in rows if skip)
    return created(job, skipped)


def created(job: LLMJob, skipped: int) -> LLMJob:
    """The job with its items: the number skipped recorded; completed if none is queued."""
    job.options["initial_skipped"] = skipped
    if not job.items.filter(status=ItemStatus.QUEUED).exists():
        job.status = JobStatus.COMPLETED
        job.started_at = job.finished_at = timezone.now()
    job.save(update_fields=["options", "status", "started_at", "finished_at"])
    return job


def create_target_items(job: LLMJob, content_type, ids: list, skips, chunk_size: int) -> LLMJob:
    """The items of an image or snippet job, ``chunk_size`` targets at a time:
    ``skips(chunk)`` gives each target id of the chunk with its skip reason ("": it runs)."""
    skipped = 0
    for start in range(0, len(ids), chunk_size):
        rows = skips(ids[start : start + chunk_size])
        LLMJobItem.objects.bulk_create(
            [
                LLMJobItem(
                    job=job,
                    target_type=content_type,
                    target_id=pk,
                    status=ItemStatus.SKIPPED if skip else ItemStatus.QUEUED,
                    skip_reason=skip,
                )
                for pk, skip in rows
            ]
        )
        skipped += sum(1 for _pk, skip in rows if skip)
    return created(job, skipped)


def enqueue_job(
    job: LLMJob,
    *,
    broker=None,
    on_commit: bool = True,
    hops: int = 0,
    **_legacy,
) -> None:
    """Queue a worker task for ``job`` on django-q2 (after the current transaction commits).

    Whichever worker takes it works on the job; more workers, on any host, join while the
    job can use them (see :mod:`.worker`: the job's coordinator keeps one task waiting for a
    free worker). ``hops`` counts how often the task was passed on by a host that had no
    worker to spare.
    """

    def _enqueue():
        from django_q.tasks import async_task

        kwargs = {"task_name": f"llm-job-{job.pk}", "q_options": {}}
        if broker is not None:
            kwargs["broker"] = broker
        if hops:
            kwargs["hops"] = hops
        async_task(RUNNER_TASK, job.pk, **kwargs)

    if on_commit:
        transaction.on_commit(_enqueue)
    else:
        _enqueue()


def page_ids_for_action(
    action: LLMAction | None, root_id: int | None = None, type_ids: Iterable[int] | None = None
) -> Iterator[int]:
    """Ids of pages ``action`` (or the page types ``type_ids``) applies to (below
    ``root_id``, inclusive), in chunks."""
    if type_ids is not None:
        queryset = Page.objects.filter(content_type_id__in=list(type_ids))
    else:
        queryset = Page.objects.filter(content_type__in=action.page_types.all())
    if root_id is not None:
        root = Page.objects.get(pk=root_id)
        queryset = queryset.descendant_of(root, inclusive=True)
    last = 0
    while True:
        ids = list(
            queryset.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:CHUNK_SIZE]
        )
        if not ids:
            return
        yield from ids
        last = ids[-1]
