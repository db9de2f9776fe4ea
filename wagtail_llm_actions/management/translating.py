"""``run_llm_action <slug> --locale de --locale fr`` (with ``--page`` or ``--all``): translate
pages into Wagtail locales with a translation action, here and now, one draft per page and
locale (:mod:`wagtail_llm_actions.translation`).

Everything that can be refused is refused before any model call: an unknown locale, the
page's own locale, i18n switched off, and (for ``--page``) a parent with no translation in a
target locale. ``--all`` takes the pages of the action's types in the default locale, parents
before children, so a page's parent translated in the same run counts. ``--dry-run`` prints,
per page and locale, the segments to translate, unchanged or kept, and the tokens and cost.

``--descendants N`` (a page and the pages of the action's types below it) and ``--enqueue``
go through the job engine, as the page listing's "Translate into…" does: one job with an
item per page and locale, run here with a progress bar, or handed to the workers.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _
from wagtail.models import Locale, Page

from ..exceptions import LLMActionError
from ..models import InteractionTrigger, LLMAction
from ..translation.run import Outcome, check, language_name, locales, translate_page

#: Options that do not go with ``--locale``.
NOT_WITH_LOCALE = ("force",)


def run(command: BaseCommand, action: LLMAction, user, options) -> None:
    """Translate the pages ``options`` select into ``options["locale"]``."""
    given = [name for name in NOT_WITH_LOCALE if options.get(name)]
    if given:
        raise CommandError(
            _("--locale does not go with %(options)s: a translation sends only what changed.")
            % {"options": ", ".join("--" + name.replace("_", "-") for name in given)}
        )
    pages = _pages(action, options)
    try:
        targets = {page.pk: locales(page, options["locale"]) for page in pages}
        if options["page"] is not None:
            for locale in targets[pages[0].pk]:
                check(action, pages[0].specific, locale, user)
    except LLMActionError as e:
        raise CommandError(str(e)) from e
    if options.get("dry_run"):
        _dry_run(command, action, pages, targets, user)
        return
    if options.get("enqueue") or options.get("descendants") is not None:
        _as_job(command, action, user, pages, options)
        return
    failures = 0
    for page in pages:
        for locale in targets[page.pk]:
            try:
                outcome = translate_page(
                    action, page, locale, user, trigger=InteractionTrigger.COMMAND
                )
            except LLMActionError as e:
                failures += 1
                command.stderr.write(command.style.ERROR(_heading(page, locale) + str(e)))
                continue
            failures += bool(outcome.failed)
            _report(command, page, outcome)
    if failures:
        raise CommandError(
            _("%(count)s translation(s) failed or are incomplete; see above.") % {"count": failures}
        )


def _as_job(command: BaseCommand, action: LLMAction, user, pages, options) -> None:
    """One job of page × locale items (:mod:`wagtail_llm_actions.jobs.translating`), run
    here with a progress bar or, with ``--enqueue``, handed to the workers."""
    from ..jobs.translating import create_translation_job
    from ..models import JobKind

    try:
        job = create_translation_job(
            action, user, [page.pk for page in pages], options["locale"], kind=JobKind.COMMAND
        )
    except LLMActionError as e:
        raise CommandError(str(e)) from e
    command.follow_job(job, options, action.name)


def _dry_run(command: BaseCommand, action: LLMAction, pages, targets, user) -> None:
    """What each page × locale would send and cost; no call, nothing written."""
    from ..formatting import format_cost
    from ..translation.estimate import estimate

    total_tokens, total_cost, unpriced = 0, 0, False
    for page in pages:
        for locale in targets[page.pk]:
            found = estimate(action, page, locale, user)
            heading = _heading(page, locale)
            if found.problem:
                command.stderr.write(heading + found.problem)
                continue
            tokens = found.prompt_tokens + found.completion_tokens
            total_tokens += tokens
            if found.cost is None:
                unpriced = unpriced or bool(found.send)
            else:
                total_cost += found.cost
            command.stdout.write(
                heading
                + _(
                    "%(send)s segment(s) to translate, %(unchanged)s unchanged (skipped), "
                    "%(review)s edited by hand (kept); about %(tokens)s tokens."
                )
                % {
                    "send": found.send,
                    "unchanged": found.unchanged,
                    "review": found.review,
                    "tokens": tokens,
                }
            )
    cost = _("unknown for some") if unpriced else format_cost(total_cost)
    command.stdout.write(
        _("Dry run: nothing sent, nothing written. In all about %(tokens)s tokens, cost %(cost)s.")
        % {"tokens": total_tokens, "cost": cost}
    )


def _pages(action: LLMAction, options) -> list[Page]:
    types = list(action.page_types.all())
    if options["page"] is not None:
        page = Page.objects.filter(pk=options["page"]).first()
        if page is None:
            raise CommandError(_("No page with id %(id)s.") % {"id": options["page"]})
        return [page]
    pages = Page.objects.filter(content_type__in=types)
    if options.get("descendants") is not None:
        root = Page.objects.filter(pk=options["descendants"]).first()
        if root is None:
            raise CommandError(_("No page with id %(id)s.") % {"id": options["descendants"]})
        pages = pages.descendant_of(root, inclusive=True)
    else:
        pages = pages.filter(locale=Locale.get_default())
    pages = list(pages.order_by("path"))
    if not pages:
        raise CommandError(_("No pages to translate."))
    return pages


def _heading(page: Page, locale: Locale) -> str:
    return _("Page %(id)s “%(title)s” → %(locale)s: ") % {
        "id": page.pk,
        "title": page.title,
        "locale": language_name(locale),
    }


def _report(command: BaseCommand, page: Page, outcome: Outcome) -> None:
    heading = _heading(page, outcome.locale)
    if outcome.page is None or (outcome.interaction is None and not outcome.created):
        summary = _("unchanged, nothing sent (%(count)s segment(s) as translated).") % {
            "count": len(outcome.unchanged)
        }
    else:
        what = _("new draft page %(id)s") if outcome.created else _("new draft of page %(id)s")
        summary = (what % {"id": outcome.page.pk}) + _(
            ": %(sent)s segment(s) translated, %(unchanged)s unchanged."
        ) % {"sent": outcome.sent - len(outcome.failed), "unchanged": len(outcome.unchanged)}
    style = command.style.WARNING if outcome.failed or outcome.review else command.style.SUCCESS
    command.stdout.write(style(heading + summary))
    for path in outcome.review:
        command.stdout.write(
            "  " + path + ": " + _("source changed, translation edited by hand: review")
        )
    for path, why in outcome.failed.items():
        command.stderr.write(
            "  "
            + path
            + ": "
            + _("not translated (%(why)s); the text it had is kept.") % {"why": why}
        )
