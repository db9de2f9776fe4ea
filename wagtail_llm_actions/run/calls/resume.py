"""Resuming map-reduce: a part answer already paid for is reused, never bought again.

A map-reduce run stores each part's answer as it arrives (one interaction a part). When the
run stops before it ends (its worker is killed, django-q2's timeout stops the task, a later
part fails) and the page is run again, a part whose request would be exactly the same as
one already answered (same page, action, source, messages and model parameters) takes that
stored answer instead of calling the model: it is recorded as a part of the new run with
``reused_from`` set and no cost. Only parts of runs that did not succeed are reused (a run
asked for again after a success, e.g. Regenerate, gets new answers; a part a successful
run reused has served too). A run left "running"
by a dead worker is ended when its answers are reused, so every run ends.

Nothing here calls a model or knows about HTTP.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.db.models import Exists, OuterRef
from django.utils.translation import gettext as _

from ...models import InteractionStatus, LLMInteraction, LLMRun, RunStatus
from .. import recording

#: Request parameters that do not change an answer (left out of the comparison).
_IRRELEVANT = ("timeout", "num_retries")
#: Parts of earlier runs looked at, newest first.
MAX_CANDIDATES = 500


def _key(messages: list[dict], parameters: dict) -> str:
    relevant = {k: v for k, v in (parameters or {}).items() if k not in _IRRELEVANT}
    return json.dumps([messages, relevant], sort_keys=True, default=str)


def _parameters(action, messages: list[dict], max_tokens: int | None) -> dict | None:
    from ...providers import build_request

    try:
        request = build_request(action, messages)
        if max_tokens is not None:
            request.max_tokens = max_tokens  # the part's own limit (see chunking)
        return request.public_parameters()
    except Exception:  # noqa: BLE001 - the call itself will report it
        return None


def _load(run: LLMRun, part: LLMInteraction) -> dict[str, LLMInteraction]:
    """Answered parts of this page's unfinished runs for the same source, by request."""
    rows = LLMInteraction.objects.filter(
        page_id=part.page_id,
        action_id=part.action_id,
        source_hash=part.source_hash,
        status=InteractionStatus.SUCCESS,
        chunk_index__isnull=False,
        run__isnull=False,
    ).exclude(run_id=run.pk)
    if part.action_id is None:  # a pipeline step with its own prompt
        rows = rows.filter(action_name=part.action_name, step_name=part.step_name)
    # Parts of a run that succeeded, or that such a run reused, have served their answer.
    served = LLMInteraction.objects.filter(
        reused_from=OuterRef("pk"), run__status=RunStatus.SUCCESS
    )
    rows = rows.exclude(run__status=RunStatus.SUCCESS).exclude(Exists(served))
    rows = rows.select_related("run").order_by("-pk")
    found: dict[str, LLMInteraction] = {}
    for row in rows[:MAX_CANDIDATES]:
        found.setdefault(_key(row.messages, row.parameters), row)
    return found


def stored_part(
    run: LLMRun,
    part: LLMInteraction,
    action,
    messages: list[dict],
    *,
    max_tokens: int | None = None,
) -> LLMInteraction | None:
    """The stored answer of an earlier, unfinished run to exactly this part's request, or
    None. The candidates are read once per run (one query)."""
    if part.page_id is None or not part.source_hash:
        return None
    cache: dict[str, LLMInteraction] | None = getattr(run, "_stored_parts", None)
    if cache is None:
        cache = run._stored_parts = _load(run, part)  # type: ignore[attr-defined]
    if not cache:
        return None
    parameters = _parameters(action, messages, max_tokens)
    if parameters is None:
        return None
    return cache.get(_key(messages, parameters))


def reuse(part: LLMInteraction, stored: LLMInteraction, run: LLMRun) -> None:
    """Record ``stored``'s answer on ``part`` (not saved): no call, no cost; and end the run
    it came from if a dead worker left it "running"."""
    part.reused_from_id = stored.reused_from_id or stored.pk
    part.messages = stored.messages
    part.parameters = stored.parameters
    part.model = stored.model
    part.response_text = stored.response_text
    part.finish_reason = stored.finish_reason
    part.answer_truncated = stored.answer_truncated
    part.cost = Decimal(0)
    part.latency_ms = 0
    _end_abandoned(stored.run, run)


def _end_abandoned(old: Any, run: LLMRun) -> None:
    """End ``old`` (still "running", its worker gone) as failed, naming ``run``."""
    if old is None:
        return
    message = _(
        "This run stopped before it finished (its background task stopped or ran out of "
        "time); run "
        "#%(run)s reused the answers it had stored."
    ) % {"run": run.pk}
    recording.end_abandoned([old], message, what="ending an abandoned run")
