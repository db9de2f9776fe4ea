"""Partial text of a streaming editor run, for the browser's status polls.

Transport: short polling of the status endpoint the browser already polls (every 300 ms at
first). It works behind every proxy and load balancer (no buffering of server-sent events,
no idle-connection timeouts) and holds no long-lived connection on a WSGI worker; a poll
costs what it cost before, one query, since the partial text is in the row it reads.

Where the text lives: the running item's ``result`` (``{"partial": text}``), a column the
status endpoint already reads, so the worker (which writes it) and any web process (which
reads it) agree without a shared cache. :class:`PartialText` writes it at most every
``STREAM_PUBLISH_INTERVAL`` seconds (0.25 by default: about four writes a second, whatever
the number of tokens), and the first piece at once. The same UPDATE is the cancel check: it
matches no row once the job is cancelled, and the stream is then stopped (the connection to
the model is closed, so no more tokens are paid). When the run ends, ``result`` is replaced
by the answer or the error as before, so the partial text is never reviewed or saved. It is
stored cleaned as the answer is (:func:`..storable.clean_text`: no NUL, no lone surrogate).
"""

from __future__ import annotations

import time
from collections import Counter

from ..conf import get_setting
from ..models import ItemStatus, JobStatus, LLMJobItem


class PartialText:
    """``publish(text)`` for :func:`..providers.streaming.offering`: the item's partial text,
    throttled; False once the job is cancelled (the stream stops)."""

    def __init__(self, item: LLMJobItem, interval: float | None = None) -> None:
        self.item_id = item.pk
        self.interval = float(
            get_setting("STREAM_PUBLISH_INTERVAL") if interval is None else interval
        )
        self.last = float("-inf")
        #: Database writes made (measured by the tests and the bench).
        self.writes = 0
        self.cancelled = False

    def __call__(self, text: str) -> bool:
        now = time.monotonic()
        if now - self.last < self.interval:
            return True
        self.last = now
        return self.write(text)

    def write(self, text: str) -> bool:
        from .. import db
        from ..storable import clean_text

        # Cleaned as the final answer is (NUL removed, lone surrogates U+FFFD): PostgreSQL's
        # jsonb refuses both, and the refusal ended the stream as broken.
        text = clean_text(text, Counter())

        def update() -> int:
            return (
                LLMJobItem.objects.filter(pk=self.item_id, status=ItemStatus.RUNNING)
                .exclude(job__status=JobStatus.CANCELLED)
                .update(result={"partial": text})
            )

        self.writes += 1
        self.cancelled = not db.write(update, what="publishing partial text")
        return not self.cancelled


def partial_text(item: LLMJobItem) -> str | None:
    """The partial text a running ``item`` has published, or None."""
    result = item.result if isinstance(item.result, dict) else {}
    text = result.get("partial")
    return text if isinstance(text, str) else None


def streams(action) -> bool:
    """Whether an editor run of ``action`` streams its answer: a single text answer (not a
    structured one, not candidates; map-reduce parts and pipelines never stream), unless the
    site turned streaming off (``STREAM_EDITOR_ANSWERS``)."""
    if not get_setting("STREAM_EDITOR_ANSWERS"):
        return False
    return not action.is_structured and (action.candidates or 1) <= 1
