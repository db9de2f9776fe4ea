"""Running one claimed translation item (one page, or a translatable snippet, into one
locale, see :mod:`.translating`).

Exactly once: the item is recorded as succeeded inside the transaction that writes the
translation's draft (``translate_page(on_written=…)``), and only while this claim still owns
it; a worker whose lease was taken over rolls its draft back (``LeaseLost``). A worker that
dies before the write leaves no draft, and the next claim translates the page again; one
that dies after it leaves the item succeeded. Budgets refuse before any call and pause the
job (:func:`.items._item_error`), as for every item.
"""

from __future__ import annotations

from django.db.models import F
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from wagtail.models import Locale

from .. import db
from ..exceptions import LLMActionError
from ..models import ItemStatus, LLMJobItem
from .claims import LOST, _done, _finish
from .context import _RunContext
from .items import LeaseLost, _item_busy, _item_crashed, _item_error, _stop_for_action
from .leases import db_in
from .planning import SKIP_DELETED, SKIP_PARENT_NOT_TRANSLATED, SKIP_UNCHANGED
from .translating import LOCALE_KEY, item_locale

#: Seconds an item waits for its parent's item (same job and locale) to finish.
PARENT_WAIT = 1.0


def process_translation_item(ctx: _RunContext, item: LLMJobItem, claim_token: str) -> str:
    """Translate the item's page (or snippet) into its locale as a new draft; its new status
    (or ``LOST``)."""
    from ..translation.run import ParentNotTranslated, translate_page

    action, stop_code = ctx.current_action()
    if action is None:
        return _stop_for_action(ctx, item, claim_token, stop_code)
    code = item_locale(item)
    locale = Locale.objects.filter(language_code=code).first()
    if locale is None:
        message = _("The locale “%(code)s” no longer exists.") % {"code": code}
        return _done(item, claim_token, ItemStatus.FAILED, error=message)
    if item.page_id is not None:
        page = item.page.specific
    else:  # a translatable snippet (issue 23 §2)
        from .snippets import snippet_of

        page = snippet_of(item)
        if page is None:
            return _done(item, claim_token, ItemStatus.SKIPPED, skip_reason=SKIP_DELETED)

    def on_written(outcome) -> None:
        ok = _finish(item, claim_token, **_succeeded(outcome, code))
        if not ok:
            raise LeaseLost(_("Another run of the job took this page over; answer discarded."))

    try:
        with ctx.call_slot():
            outcome = translate_page(
                action, page, locale, ctx.job.user, trigger=ctx.trigger, on_written=on_written
            )
    except LeaseLost:
        return LOST
    except ParentNotTranslated as e:
        if _parent_pending(item, page, code):
            return _done(
                item,
                claim_token,
                ItemStatus.QUEUED,
                claimed_by="",
                attempts=F("attempts") - 1,
                not_before=db_in(PARENT_WAIT),
            )
        return _done(
            item,
            claim_token,
            ItemStatus.SKIPPED,
            skip_reason=SKIP_PARENT_NOT_TRANSLATED,
            error=e.message,
        )
    except LLMActionError as e:
        return _item_error(ctx, item, claim_token, e)
    except Exception as e:  # never leave an item running because of a bug  # noqa: BLE001
        if db.is_busy_error(e):
            return _item_busy(ctx, item, claim_token, e)
        return _item_crashed(ctx.job, item, claim_token, e)
    if outcome.revision_id is None:  # nothing changed since the last translation
        return _done(item, claim_token, ItemStatus.SKIPPED, skip_reason=SKIP_UNCHANGED)
    return ItemStatus.SUCCEEDED


def _succeeded(outcome, code: str) -> dict:
    """The item's fields once its draft is written."""
    interaction = outcome.interaction
    error = ""
    kept = len(outcome.failed) + len(outcome.review)
    if kept:
        error = ngettext(
            "%(count)s segment kept as it was (not translated, or edited by hand): review it.",
            "%(count)s segments kept as they were (not translated, or edited by hand): review "
            "them.",
            kept,
        ) % {"count": kept}
    return {
        "status": ItemStatus.SUCCEEDED,
        "interaction": interaction,
        "error": error,
        "skip_reason": "",
        "result": {
            "revision_id": outcome.revision_id,
            "page_id": outcome.page.pk if outcome.page is not None else None,
            "locale": code,
            "created": outcome.created,
            "sent": outcome.sent,
            "failed": list(outcome.failed),
            "review": list(outcome.review),
            "tokens": getattr(interaction, "total_tokens", None),
        },
    }


def _parent_pending(item: LLMJobItem, page, code: str) -> bool:
    """Whether the page's parent is translated into ``code`` by this job and not done yet."""
    parent = page.get_parent()
    if parent is None:
        return False
    return LLMJobItem.objects.filter(
        job_id=item.job_id,
        page_id=parent.pk,
        status__in=[ItemStatus.QUEUED, ItemStatus.RUNNING],
        **{f"payload__{LOCALE_KEY}": code},
    ).exists()
