"""Translating one page into one locale, as a new draft (issue 23 §1).

:func:`check` refuses bad input before anything is sent or written (i18n off, unknown
locale, the page's own locale, a parent not translated yet). :func:`translate_page` then asks
the model once for the segments that need it (through the action's provider, the response
cache and the budgets: :func:`~wagtail_llm_actions.run.calls.gate.ask`), asks again once for
the segments whose markup came back broken, and writes the result in one transaction: a new
page made by Wagtail's ``copy_for_translation`` (never published), or a new draft revision of
the existing translation. Segments that still fail keep the text they had (the source's, on a
new page) and are reported; none is written half-broken.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.utils.translation import gettext as _
from wagtail.models import Locale, Page

from .. import db
from ..exceptions import (
    ActionNotAllowed,
    ActionNotApplicable,
    ConfigurationProblem,
    LLMActionError,
)
from ..models import (
    InteractionOutcome,
    InteractionStatus,
    InteractionTrigger,
    LLMAction,
    LLMInteraction,
    LLMTranslationSegment,
)
from ..run import access, drafts, recording
from ..run.prepare import working_copy
from . import apply, memory, request
from . import snippets as snippet_translation
from .segments import segments, slots


class TranslationProblem(LLMActionError):
    code = "translation"


class ParentNotTranslated(TranslationProblem):
    """The page's parent has no translation in the target locale (yet)."""

    code = "parent_not_translated"


@dataclass
class Outcome:
    """What translating one page into one locale did."""

    locale: Locale
    page: Page | None
    created: bool = False
    interaction: LLMInteraction | None = None
    sent: int = 0
    unchanged: list[str] = field(default_factory=list)
    review: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    revision_id: int | None = None


def _specific(obj: Any) -> Any:
    """A page's specific instance; a snippet as it is."""
    return obj.specific if isinstance(obj, Page) else obj


def _title(obj: Any) -> str:
    return getattr(obj, "title", "") or str(obj)


def language_name(locale: Locale) -> str:
    try:
        return f"{locale.get_display_name()} ({locale.language_code})"
    except Exception:  # a code no longer in WAGTAIL_CONTENT_LANGUAGES
        return locale.language_code


def locales(page: Page, codes: list[str]) -> list[Locale]:
    """The target locales named by ``codes``; :class:`TranslationProblem` for i18n off, an
    unknown code, or the page's own locale."""
    if not getattr(settings, "WAGTAIL_I18N_ENABLED", False):
        raise TranslationProblem(
            _(
                "Translation needs Wagtail's internationalisation: set "
                "WAGTAIL_I18N_ENABLED = True and WAGTAIL_CONTENT_LANGUAGES in the settings."
            )
        )
    found = []
    for code in dict.fromkeys(codes):
        locale = Locale.objects.filter(language_code__iexact=code).first()
        if locale is None:
            known = ", ".join(
                Locale.objects.order_by("language_code").values_list("language_code", flat=True)
            )
            raise TranslationProblem(
                _("There is no locale “%(code)s”. The site's locales: %(known)s.")
                % {"code": code, "known": known}
            )
        if locale.pk == page.locale_id:
            raise TranslationProblem(
                _("“%(page)s” is in %(locale)s already: choose another locale.")
                % {"page": _title(page), "locale": language_name(locale)}
            )
        found.append(locale)
    return found


def check(action: LLMAction, page: Page, locale: Locale, user=None) -> Page | None:
    """The existing translation of ``page`` in ``locale`` (None: it will be created);
    :class:`TranslationProblem` when it cannot be; ``ActionNotAllowed`` or ``PageLocked``
    when ``user`` may not edit the translation (or add it), or it is locked or in
    moderation."""
    if not hasattr(action, "translation"):
        raise ConfigurationProblem(
            _("“%(action)s” is not a translation action (it has no translation settings).")
            % {"action": action.name}
        )
    if not action.enabled:
        raise ActionNotApplicable(_("The action “%s” is disabled.") % action.name)
    if not isinstance(page, Page):
        return snippet_translation.check(action, page, locale, user)
    if not action.applies_to(page):
        raise ActionNotApplicable(
            _("“%(action)s” does not apply to pages of this type.") % {"action": action.name}
        )
    existing = page.get_translation_or_none(locale)
    if existing is not None:
        existing = existing.specific
        if user is not None and not access.can_edit(user, existing):
            raise ActionNotAllowed()
        problem = access.lock_problem(user, existing)
        if problem is not None:
            raise problem
        return existing
    parent = page.get_parent()
    if parent is not None and not parent.is_root() and not parent.has_translation(locale):
        raise ParentNotTranslated(
            _(
                "The parent page “%(parent)s” has no translation in %(locale)s, so “%(page)s” "
                "cannot be translated into it. Translate the parent first (page %(id)s)."
            )
            % {
                "parent": parent.title,
                "locale": language_name(locale),
                "page": page.title,
                "id": parent.pk,
            }
        )
    if user is not None and not _may_add_under(user, parent, locale):
        raise ActionNotAllowed()
    return None


def _may_add_under(user, parent: Page, locale: Locale) -> bool:
    """Whether ``user`` may add the translation under ``parent``'s translation in ``locale``."""
    target_parent = parent if parent.is_root() else parent.get_translation(locale)
    return target_parent.permissions_for_user(user).can_add_subpage()


@dataclass
class Read:
    """The existing translation as the run read it (``obj`` None: there was none)."""

    obj: Any
    revision: Any
    texts: dict[str, str]

    @property
    def revision_id(self) -> int | None:
        return self.revision.pk if self.revision is not None else None


@dataclass
class Planned:
    """What translating a page into a locale will do, read before any call."""

    source: Any
    read: Read
    plan: memory.Plan


def plan_for(action: LLMAction, page: Page, locale: Locale, user=None) -> Planned:
    """Check, read the source and the existing translation, and decide which segments to
    send (:func:`memory.plan`); no call, nothing written. Raises as :func:`check` does."""
    page = _specific(page)
    existing = check(action, page, locale, user)
    source, _revision = working_copy(page)
    read = Read(None, None, {})
    records: dict = {}
    if existing is not None:
        target_obj, base_revision = working_copy(existing)
        read = Read(target_obj, base_revision, {})
        read.texts = apply.current_texts(target_obj)
        key = snippet_translation.memory_key(existing)
        records = {r.path: r for r in LLMTranslationSegment.objects.filter(**key)}
    texts = read.texts if read.obj is not None else None
    return Planned(source, read, memory.plan(segments(source), texts, records))


def translate_page(
    action: LLMAction,
    page: Page,
    locale: Locale,
    user=None,
    *,
    trigger: str = InteractionTrigger.API,
    on_written: Callable[[Outcome], None] | None = None,
) -> Outcome:
    """Translate ``page`` into ``locale`` as a new draft (see the module's docstring).

    ``on_written(outcome)`` is called inside the transaction that writes the draft (a job
    records its item there: raising rolls the draft back). ``page`` may be a translatable
    snippet with revisions (:mod:`.snippets`)."""
    page = _specific(page)
    prepared = plan_for(action, page, locale, user)
    source, read, planned = prepared.source, prepared.read, prepared.plan
    existing = read.obj
    outcome = Outcome(locale, existing, unchanged=planned.unchanged, review=planned.review)
    texts: dict[str, str] = {}
    interaction = None
    if planned.send:
        interaction = recording.new_interaction(
            action, existing or page, user, trigger, read.revision
        )
        texts, outcome.failed = translate_segments(
            action, source, locale, planned.send, interaction
        )
        outcome.failed.update(_too_long(source, texts))
        outcome.sent = len(planned.send)
        for path in outcome.failed:  # never half-broken: the text it had stays
            if path in read.texts:
                planned.keep[path] = read.texts[path]
    values = apply.translated_values(source, texts, planned.keep, locale)
    if existing is not None and not texts and _same(existing, values):
        return outcome
    hashes = {s.path: memory.segment_hash(s.source) for s in planned.send if s.path in texts}
    try:
        _write(action, page, locale, user, values, hashes, interaction, outcome, read, on_written)
    except LLMActionError as e:
        if interaction is None:
            raise
        raise recording.fail(interaction, e, time.perf_counter()) from e
    return outcome


def _too_long(source: Any, texts: dict[str, str]) -> dict[str, str]:
    """Translations longer than their field allows, taken out of ``texts`` with why."""
    failed = {}
    for name in list(texts):
        try:
            limit = getattr(type(source)._meta.get_field(name), "max_length", None)
        except FieldDoesNotExist:  # a path inside a StreamField, not a field name
            continue
        if limit and len(texts[name]) > limit:
            del texts[name]
            failed[name] = _("the translation is longer than the field's %(limit)s characters") % {
                "limit": limit
            }
    return failed


def _same(target_obj: Any, values: dict) -> bool:
    from .segments import stored_values

    return stored_values(target_obj) == values


def translate_segments(
    action, source, locale, send, interaction
) -> tuple[dict[str, str], dict[str, str]]:
    """Ask the model for the segments ``send`` (and once more for those it did not answer):
    the translated texts by path, and the segments that failed twice with why. A failure is
    recorded on ``interaction`` and raised."""
    from ..providers import ProviderError

    started = time.perf_counter()
    done: dict[str, str] = {}
    failed: dict[str, str] = {}
    pending = send
    try:
        for attempt in range(2):
            sent = request.prepare(pending)
            got, failed = _call(action, source, locale, sent, interaction, first=attempt == 0)
            done.update(got)
            if not failed:
                break
            pending = [s for s in send if s.path in failed]
    except ProviderError as e:
        error = LLMActionError(str(e), code=e.code, retryable=e.retryable)
        raise recording.fail(interaction, error, started) from e
    except LLMActionError as e:
        raise recording.fail(interaction, e, started) from e
    return done, failed


def _call(action, source, locale, sent, interaction, *, first: bool):
    from ..providers import build_request
    from ..run.calls.common import received, record_call
    from ..run.calls.gate import ask

    messages = request_messages(action, source, locale, sent)
    built = build_request(action, messages)
    if first:
        interaction.messages = messages
        interaction.parameters = built.public_parameters()
    result = received(ask(built, action, interaction), interaction)
    record_call(interaction, result, first=first)
    if not first:
        interaction.response_text += "\n\n" + result.text
    return request.results(sent, request.parse(result.text))


def _current(page: Page, locale: Locale, read: Read, values: dict, hashes: dict, outcome):
    """Inside the write transaction: the object to write the draft into, the translation's
    row locked. A translation saved by a person since the run read it is read again, and the
    texts they changed meanwhile are kept (and listed for review), never overwritten."""
    if read.obj is None:
        if page.get_translation_or_none(locale) is not None:
            raise TranslationProblem(
                _("“%(page)s” was translated into %(locale)s meanwhile: translate it again.")
                % {"page": _title(page), "locale": language_name(locale)}
            )
        if isinstance(page, Page):
            created = page.copy_for_translation(locale)
        else:
            created = snippet_translation.create(page, locale)
        outcome.created = True
        return working_copy(created)[0]
    if isinstance(read.obj, Page):
        fresh = Page.objects.select_for_update().get(pk=read.obj.pk)
    else:
        fresh = snippet_translation.locked(read.obj)
    if fresh.latest_revision_id == read.revision_id:
        return read.obj
    working = working_copy(_specific(fresh))[0]
    changed = {
        path: text
        for path, text in apply.current_texts(working).items()
        if read.texts.get(path) != text
    }
    apply.override(working, values, changed)
    for path in changed:
        hashes.pop(path, None)
        if path not in outcome.review:
            outcome.review.append(path)
    return working


def request_messages(action: LLMAction, source: Any, locale: Locale, sent) -> list[dict]:
    """The messages of the request translating ``sent`` from ``source`` into ``locale``."""
    source_locale = getattr(source, "locale", None)
    return request.messages(
        sent,
        source=language_name(source_locale) if source_locale else "the source language",
        target=language_name(locale),
        target_code=locale.language_code,
        settings=action.translation,
        system=action.system_message,
    )


def _write(
    action, page, locale, user, values, hashes, interaction, outcome, read: Read, on_written=None
) -> None:
    """Create the translation or add a draft to it, and remember what was translated."""

    def write() -> None:
        working = _current(page, locale, read, values, hashes, outcome)
        apply.set_values(working, values)
        revision = drafts.save_draft(working, user, action, clean=True, written=list(values))
        outcome.page = working
        if interaction is not None:
            if isinstance(working, Page):
                interaction.page = Page.objects.get(pk=working.pk)
            interaction.object_id = str(working.pk)
            interaction.revision = revision
            interaction.outcome = InteractionOutcome.DRAFTED
            interaction.status = InteractionStatus.SUCCESS
            written = {
                slot.path: slot.value for slot in slots(working, values) if slot.path in hashes
            }
            interaction.output_value = "\n\n".join(f"{p}: {t}" for p, t in written.items())
            if outcome.failed:
                interaction.error_message = "\n".join(
                    f"{path}: {why}" for path, why in outcome.failed.items()
                )
            interaction.save()
            _remember(working, written, hashes, interaction)
            recording.log_generated(working, user, revision, action, interaction)
        outcome.interaction = interaction
        outcome.revision_id = revision.pk if revision is not None else None
        if on_written is not None:
            on_written(outcome)

    db.write(write, what="writing a translation")


def _remember(target, written: dict[str, str], hashes: dict[str, str], interaction) -> None:
    """Store each newly translated segment's source hash and the text written for it."""
    for path, text in written.items():
        LLMTranslationSegment.objects.update_or_create(
            **snippet_translation.memory_key(target),
            path=path,
            defaults={
                "source_hash": hashes[path],
                "machine_text": text,
                "interaction": interaction,
            },
        )
