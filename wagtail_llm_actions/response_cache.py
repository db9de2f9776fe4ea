"""Never pay twice for an identical call: answers kept by model, parameters and messages.

Opt-in per action (``LLMAction.use_cache``); kept for ``WAGTAIL_LLM_ACTIONS["CACHE_TTL"]``
seconds (None: the cache is off for every action). A hit costs no tokens and no money and the
interaction says so (``LLMInteraction.cached``). Regenerate and re-running unchanged pages
(``force``) ask the model again, within :func:`bypassed`, and keep the new answer.
The cache lives in the database (``LLMCachedResponse``); ``purge_llm_interactions`` deletes
expired rows.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError
from django.utils import timezone

from . import db
from .conf import get_setting

if TYPE_CHECKING:
    from .models import LLMAction
    from .providers.base import CompletionRequest, CompletionResult

logger = logging.getLogger(__name__)

_bypass: contextvars.ContextVar[bool] = contextvars.ContextVar("llm_cache_bypass", default=False)


@contextlib.contextmanager
def bypassed(active: bool = True) -> Iterator[None]:
    """Within the block, calls ask the model even when an identical answer is kept (the new
    answer replaces it): Regenerate, and runs that re-run unchanged pages."""
    token = _bypass.set(active or _bypass.get())
    try:
        yield
    finally:
        _bypass.reset(token)


def is_bypassed() -> bool:
    return _bypass.get()


def ttl() -> int | None:
    value = get_setting("CACHE_TTL")
    return None if value is None else int(value)


def enabled(action: LLMAction | None) -> bool:
    return bool(action is not None and getattr(action, "use_cache", False) and ttl())


def cache_key(request: CompletionRequest) -> str:
    """A hash of everything that shapes the answer: model, parameters (the key's name and the
    API base, never the key), messages, response format and ``n``."""
    payload = {
        "parameters": {
            k: v for k, v in request.public_parameters().items() if k not in ("timeout",)
        },
        "messages": request.messages,
        "max_chars": request.max_chars,
    }
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def lookup(key: str) -> CompletionResult | None:
    """The kept answer for ``key`` as a result costing nothing, or None."""
    from .models import LLMCachedResponse
    from .providers.base import CompletionResult

    started = time.perf_counter()
    row = LLMCachedResponse.objects.filter(key=key, expires_at__gt=timezone.now()).first()
    if row is None:
        return None
    fields = {f.name for f in dataclasses.fields(CompletionResult)}
    kept = {k: v for k, v in row.result.items() if k in fields}
    try:
        db.write(
            lambda: type(row).objects.filter(pk=row.pk).update(hits=row.hits + 1),
            what="counting a cache hit",
        )
    except DatabaseError:
        logger.warning("Could not count a hit of cached answer %s", row.pk, exc_info=True)
    return CompletionResult(
        **{
            **kept,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "cost": Decimal(0),
            "latency_ms": int((time.perf_counter() - started) * 1000),
            "failed_attempts": [],
            "cached": True,
        }
    )


def store(key: str, result: CompletionResult) -> None:
    """Keep ``result`` for ``key``; a failure to keep it is logged, never the run's."""
    from .models import LLMCachedResponse

    if not (result.text or result.texts):
        return
    data: dict[str, Any] = {
        "text": result.text,
        "model": result.model,
        "finish_reason": result.finish_reason,
        "response_model": result.response_model,
        "texts": list(result.texts),
        "finish_reasons": list(result.finish_reasons),
    }
    expires = timezone.now() + timedelta(seconds=ttl() or 0)

    def keep() -> None:
        LLMCachedResponse.objects.update_or_create(
            key=key,
            defaults={"model": result.model, "result": data, "expires_at": expires, "hits": 0},
        )

    try:
        db.write(keep, what="keeping an answer for identical calls")
    except DatabaseError:
        logger.warning("Could not keep an answer for identical calls", exc_info=True)


def purge_expired() -> int:
    """Delete expired answers; returns how many."""
    from .models import LLMCachedResponse

    deleted, _ = LLMCachedResponse.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted
