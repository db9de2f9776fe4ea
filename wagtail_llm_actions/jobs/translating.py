"""Bulk translation as a job (issue 23 §1): one item per page (or translatable snippet, §2)
and target locale.

A translation job is an ordinary job of its translation action: the same claims, leases,
retries, budgets and pauses. Each item holds its target locale in ``payload["locale"]``
(:func:`item_locale`) and runs through :mod:`.translation_items`; the job lists its locales
in ``options["locales"]``. Items are created parents first (tree order), so a page whose
parent is translated in the same job waits for it rather than failing. A snippet item has no
page but a target (``target_type``/``target_id``, as in :mod:`.snippets`).

::

    plan = plan_translation(action, user, page_ids, ["de", "fr"])  # per-locale estimate
    job = create_translation_job(action, user, page_ids, ["de", "fr"])
    plan = plan_snippet_translation(action, user, Dish, ids, ["de"])  # snippets
    job = create_snippet_translation_job(action, user, Dish, ids, ["de"])
    enqueue_job(job)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.contrib.contenttypes.models import ContentType
from wagtail.models import Locale, Page

from .. import db, estimates
from ..exceptions import LLMActionError
from ..models import (
    InteractionTrigger,
    ItemStatus,
    JobKind,
    LLMAction,
    LLMJob,
    LLMJobItem,
)
from .options import engine_options
from .planning import (
    CHUNK_SIZE,
    PREVIEW_SAMPLE,
    Plan,
    _count_reasons,
    annotate_reasons,
    created,
    selection_parts,
)

#: The item's payload key holding its target locale's language code.
LOCALE_KEY = "locale"


def item_locale(item: LLMJobItem) -> str:
    """The target locale's code of a translation item ("" for any other item)."""
    payload = item.payload
    return str(payload.get(LOCALE_KEY) or "") if isinstance(payload, dict) else ""


def locale_labels(codes: list[str]) -> dict[str, str]:
    """Display names by code, in one query."""
    from ..translation.run import language_name

    found = {loc.language_code: loc for loc in Locale.objects.filter(language_code__in=codes)}
    return {code: language_name(found[code]) if code in found else code for code in codes}


def target_locales(action: LLMAction, user, page_ids: Iterable, codes: list[str], **kw):
    """The locales of ``codes``; :class:`~..translation.run.TranslationProblem` when
    translation cannot run at all: i18n off, an unknown locale, a selected page already in
    a chosen locale (its own locale), no locale chosen."""
    from ..translation.run import TranslationProblem, locales

    if not codes:
        raise TranslationProblem(_choose_locale())
    include_descendants = kw.get("include_descendants", False)
    for part in selection_parts(page_ids, include_descendants):
        own = part.filter(locale__language_code__in=codes).first()
        if own is not None:
            locales(own, codes)  # raises: the page's own locale (or i18n off)
    first = next(
        (p.first() for p in selection_parts(page_ids, include_descendants) if p.exists()), None
    )
    if first is None:
        raise TranslationProblem(_no_pages())
    return locales(first, codes)


def _choose_locale() -> str:
    from django.utils.translation import gettext as _

    return _("Choose at least one locale to translate into.")


def _no_pages() -> str:
    from django.utils.translation import gettext as _

    return _("No pages to translate.")


@dataclass
class LocaleRow:
    """The estimate of one target locale over the pages that will run."""

    code: str
    label: str
    pages: int = 0
    send: int = 0
    unchanged: int = 0
    review: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal | None = Decimal(0)
    #: Sampled pages that cannot be translated into this locale: pk, draft_title, message.
    problems: list[dict] = field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class TranslationPlan(Plan):
    """:class:`Plan` for pages × locales: row-level skips count pages, :attr:`rows` hold
    each locale's estimate, :attr:`refusal` says why nothing can start."""

    rows: list[LocaleRow] = field(default_factory=list)
    refusal: str = ""

    @property
    def will_run(self) -> int:
        """Items (page × locale) expected to translate (extrapolated from the sample)."""
        sampled = max(1, self.sampled)
        factor = 1 if self.is_exact else self.eligible / sampled
        return sum(round((row.pages) * factor) for row in self.rows)

    @property
    def locale_count(self) -> int:
        return len(self.rows)


def plan_translation(
    action: LLMAction,
    user,
    page_ids: Iterable,
    codes: list[str],
    *,
    include_descendants: bool = False,
    sample: int = PREVIEW_SAMPLE,
) -> TranslationPlan:
    """What a translation job would do, per locale: segments to translate, unchanged
    (skipped), edited by hand (kept), tokens and cost; nothing sent or written. The first
    ``sample`` eligible pages are estimated and the rest extrapolated."""
    plan = TranslationPlan(action=action)
    page_ids = list(page_ids)
    try:
        found = target_locales(
            action, user, page_ids, codes, include_descendants=include_descendants
        )
    except LLMActionError as e:
        plan.refusal = e.message
        return plan
    type_ids = list(action.page_types.values_list("pk", flat=True))
    eligible: set[int] = set()
    sample_ids: list[int] = []
    for part in selection_parts(page_ids, include_descendants):
        annotated = annotate_reasons(part, action, user, type_ids)
        _count_reasons(plan, annotated)
        runnable = annotated.filter(skip="").order_by("path").values_list("pk", flat=True)
        eligible.update(runnable)
        sample_ids.extend(runnable[: max(0, sample - len(sample_ids))])
    pages = list(Page.objects.filter(pk__in=sample_ids).order_by("path").specific())
    plan.sampled = len(pages)
    plan.rows = [_locale_row(action, user, pages, locale, eligible) for locale in found]
    plan.estimate = _total(plan)
    return plan


def _locale_row(action, user, sources, locale, eligible: set) -> LocaleRow:
    """One locale's estimate over ``sources`` (pages, or snippets of one model)."""
    from ..translation.estimate import estimate
    from ..translation.run import language_name

    row = LocaleRow(locale.language_code, language_name(locale))
    for source in sources:
        parent_in_job = isinstance(source, Page) and _parent_id(source) in eligible
        found = estimate(action, source, locale, user, after_parent=parent_in_job)
        if found.problem:
            row.problems.append(_problem(source, user, found.problem))
            continue
        row.pages += 1
        row.send += found.send
        row.unchanged += found.unchanged
        row.review += found.review
        row.prompt_tokens += found.prompt_tokens
        row.completion_tokens += found.completion_tokens
        if found.send and found.cost is None:
            row.cost = None
        elif row.cost is not None and found.cost is not None:
            row.cost += found.cost
    return row


def _problem(source: Any, user, message: str) -> dict:
    """A sampled page or snippet that cannot be translated: its name, editor and why."""
    from django.urls import reverse

    if isinstance(source, Page):
        title, url = source.draft_title, reverse("wagtailadmin_pages:edit", args=[source.pk])
    else:
        from wagtail.admin.admin_url_finder import AdminURLFinder

        title, url = str(source), AdminURLFinder(user).get_edit_url(source) or ""
    return {"pk": source.pk, "draft_title": title, "url": url, "message": message}


def _parent_id(page: Page) -> int | None:
    parent = page.get_parent()
    return parent.pk if parent is not None else None


def _total(plan: TranslationPlan) -> estimates.Estimate:
    """Every locale's estimate summed (extrapolated past the sample): for the budget line."""
    factor = 1 if plan.is_exact else plan.eligible / max(1, plan.sampled)
    costs = [row.cost for row in plan.rows]
    return estimates.Estimate(
        pages=plan.will_run,
        prompt_tokens=round(sum(r.prompt_tokens for r in plan.rows) * factor),
        completion_tokens=round(sum(r.completion_tokens for r in plan.rows) * factor),
        calls=plan.will_run,
        cost=None if None in costs else sum(costs, start=Decimal(0)) * Decimal(factor),
    )


def create_translation_job(
    action: LLMAction,
    user,
    page_ids: Iterable,
    codes: list[str],
    *,
    include_descendants: bool = False,
    kind: str = JobKind.BULK,
) -> LLMJob:
    """A job with one item per selected page and locale, parents first: queued, or skipped
    with a reason (as :func:`.planning.create_job`). Raises ``TranslationProblem`` as
    :func:`target_locales` does, before anything is written."""
    page_ids = list(page_ids)
    found = target_locales(action, user, page_ids, codes, include_descendants=include_descendants)
    codes = [locale.language_code for locale in found]

    def create() -> LLMJob:
        job = _new_job(action, user, kind, codes, include_descendants=include_descendants)
        skipped = _create_items(job, action, user, page_ids, codes, include_descendants)
        return created(job, skipped)

    return db.write(create, what="creating a translation job")


def _new_job(action: LLMAction, user, kind: str, codes: list[str], **fields) -> LLMJob:
    """The translation job's row (its items are added next)."""
    trigger = InteractionTrigger.COMMAND if kind == JobKind.COMMAND else InteractionTrigger.BULK
    extra = fields.pop("options", {})
    return LLMJob.objects.create(
        action=action,
        action_name=action.name,
        user=user,
        kind=kind,
        options={
            **engine_options(action.model, trigger),
            "locales": codes,
            **extra,
        },
        **fields,
    )


def _create_items(job, action, user, page_ids, codes, include_descendants) -> int:
    """The items, ``CHUNK_SIZE`` pages at a time in tree order; the number skipped."""
    type_ids = list(action.page_types.values_list("pk", flat=True))
    skipped = 0
    rows: list[tuple[str, int, str]] = []
    for part in selection_parts(page_ids, include_descendants):
        annotated = annotate_reasons(part, action, user, type_ids).order_by("path")
        last = ""
        while True:
            chunk = list(
                annotated.filter(path__gt=last).values_list("path", "pk", "skip")[:CHUNK_SIZE]
            )
            if not chunk:
                break
            last = chunk[-1][0]
            rows.extend(chunk)
    rows.sort()  # parents before children across parts: the claim order is the id order
    for i in range(0, len(rows), CHUNK_SIZE):
        LLMJobItem.objects.bulk_create(
            [
                LLMJobItem(
                    job=job,
                    page_id=pk,
                    status=ItemStatus.SKIPPED if skip else ItemStatus.QUEUED,
                    skip_reason=skip,
                    payload={LOCALE_KEY: code},
                )
                for _path, pk, skip in rows[i : i + CHUNK_SIZE]
                for code in codes
            ]
        )
        skipped += sum(len(codes) for _path, _pk, skip in rows[i : i + CHUNK_SIZE] if skip)
    return skipped


# -- translatable snippets (issue 23 §2) ---------------------------------------------------------


def snippet_target_locales(model: type, ids: list, codes: list[str]):
    """As :func:`target_locales` for snippets of ``model``: also refused when the model is
    not translatable or keeps no revisions (a translation is saved as a revision)."""
    from wagtail.models import TranslatableMixin

    from .. import snippets
    from ..translation import snippets as snippet_translation
    from ..translation.run import TranslationProblem, locales

    if not issubclass(model, TranslatableMixin):
        raise TranslationProblem(_not_translatable() % {"model": model._meta.verbose_name_plural})
    if not snippets.keeps_revisions(model):
        raise snippet_translation.no_revisions(model)
    if not codes:
        raise TranslationProblem(_choose_locale())
    selected = model._default_manager.filter(pk__in=ids)
    own = selected.filter(locale__language_code__in=codes).first()
    if own is not None:
        locales(own, codes)  # raises: the snippet's own locale (or i18n off)
    first = selected.first()
    if first is None:
        raise TranslationProblem(_no_snippets())
    return locales(first, codes)


def _not_translatable() -> str:
    from django.utils.translation import gettext as _

    return _("%(model)s are not translatable (no TranslatableMixin).")


def _no_snippets() -> str:
    from django.utils.translation import gettext as _

    return _("No snippets to translate.")


def _snippet_skips(action, user, model: type, ids: list) -> list[tuple[str, str]]:
    """(id, skip reason or "") of each snippet: deleted, wrong type, no permission to edit
    it (as for an action's snippet job, :mod:`.snippets`)."""
    from .snippets import _skip, _states

    existing, editable = _states(action, user, model, ids)
    return [(pk, _skip(action, model, pk, existing, editable)) for pk in ids]


def plan_snippet_translation(
    action: LLMAction, user, model: type, ids: Iterable, codes: list[str], *, sample=PREVIEW_SAMPLE
) -> TranslationPlan:
    """:func:`plan_translation` for snippets of ``model``: per locale, segments to translate,
    unchanged (skipped), edited by hand (kept), tokens and cost; nothing sent or written."""
    from .snippets import _sorted

    ids = _sorted(ids)
    plan = TranslationPlan(action=action, total=len(ids))
    try:
        found = snippet_target_locales(model, ids, codes)
    except LLMActionError as e:
        plan.refusal = e.message
        return plan
    runnable = []
    for pk, skip in _snippet_skips(action, user, model, ids):
        if skip:
            plan.skipped[skip] = plan.skipped.get(skip, 0) + 1
        else:
            runnable.append(pk)
    plan.eligible = len(runnable)
    sources = list(model._default_manager.filter(pk__in=runnable[:sample]))
    plan.sampled = len(sources)
    plan.rows = [_locale_row(action, user, sources, locale, set()) for locale in found]
    plan.estimate = _total(plan)
    return plan


def create_snippet_translation_job(
    action: LLMAction, user, model: type, ids: Iterable, codes: list[str], *, kind=JobKind.BULK
) -> LLMJob:
    """A job with one item per selected snippet and locale (a target, no page): queued, or
    skipped with a reason. Raises as :func:`snippet_target_locales` does, before anything is
    written."""
    from .snippets import CHUNK_SIZE as SNIPPETS_PER_CHUNK
    from .snippets import _sorted

    ids = _sorted(ids)
    codes = [locale.language_code for locale in snippet_target_locales(model, ids, codes)]
    content_type = ContentType.objects.get_for_model(model)
    options = {"targets": "snippets", "model": model._meta.label}

    def create() -> LLMJob:
        job = _new_job(action, user, kind, codes, options=options)
        skipped = 0
        for start in range(0, len(ids), SNIPPETS_PER_CHUNK):
            chunk = _snippet_skips(action, user, model, ids[start : start + SNIPPETS_PER_CHUNK])
            LLMJobItem.objects.bulk_create(
                LLMJobItem(
                    job=job,
                    target_type=content_type,
                    target_id=pk,
                    status=ItemStatus.SKIPPED if skip else ItemStatus.QUEUED,
                    skip_reason=skip,
                    payload={LOCALE_KEY: code},
                )
                for pk, skip in chunk
                for code in codes
            )
            skipped += sum(len(codes) for _pk, skip in chunk if skip)
        return created(job, skipped)

    return db.write(create, what="creating a translation job")
