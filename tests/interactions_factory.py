"""Bulk-made ``LLMInteraction`` rows for the report, detail and retention tests."""

from __future__ import annotations

import contextlib
import datetime
from decimal import Decimal

from django.utils import timezone

from wagtail_llm_actions.models import LLMInteraction


def clear_of_midnight(now: datetime.datetime | None = None) -> datetime.datetime:
    """``now``, or three hours earlier in the small hours: rows made a few minutes or hours
    before it then fall on the same local day whatever the clock says when the test runs."""
    now = now or timezone.now()
    if timezone.localtime(now).hour < 3:
        now -= datetime.timedelta(hours=3)
    return now


@contextlib.contextmanager
def explicit_created_at():
    """Let ``created_at`` be set by hand (it is ``auto_now_add``) while the block runs."""
    field = LLMInteraction._meta.get_field("created_at")
    field.auto_now_add = False
    try:
        yield
    finally:
        field.auto_now_add = True


def make_interactions(n, *, action=None, page=None, user=None, start=None, **fields):
    """``n`` successful calls, one minute apart going back from ``start`` (default now)."""
    start = start or timezone.now()
    defaults = {
        "action": action,
        "action_name": action.name if action else "Generate summary",
        "page": page,
        "user": user,
        "model": action.model if action else "local/extractive",
        "status": "success",
        "outcome": "drafted",
        "trigger": "editor",
        "messages": [{"role": "user", "content": "Summarize this."}],
        "parameters": {"model": "local/extractive"},
        "response_text": "A summary.",
        "output_value": "A summary.",
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "total_tokens": 120,
        "cost": Decimal("0.001"),
        "latency_ms": 250,
    }
    defaults.update(fields)
    rows = [
        LLMInteraction(created_at=start - datetime.timedelta(minutes=i), **defaults)
        for i in range(n)
    ]
    with explicit_created_at():
        return LLMInteraction.objects.bulk_create(rows, batch_size=500)


def make_one(**fields):
    return make_interactions(1, **fields)[0]
