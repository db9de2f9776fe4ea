"""Streaming an answer while the model writes it: partial text for the editor, one result.

The editor's worker offers a sink for the partial text (:func:`offering`); the one-answer
call path accepts it (:func:`accepting`) around its single call, so only a plain text
answer streams (and a selection rewrite's, whose preview reads its text out of the JSON):
never a structured (JSON) answer, several candidates, map-reduce parts or a pipeline.
Inside, :func:`complete` streams when a sink is active and the provider can
(``stream(request, publish)``: LiteLLM with ``stream=True`` and
``stream_options={"include_usage": True}``, and the offline provider), else it calls
``provider.complete`` as ever.

The stream ends in the same :class:`CompletionResult` a plain call gives (LiteLLM's
``stream_chunk_builder`` rebuilds the response, usage from the last chunk), so the answer is
recorded, cached, settled against budgets and reviewed exactly as a plain call's. A stream
that breaks raises :class:`StreamBroken`; a sink that says stop (the editor cancelled)
closes the connection (no more tokens are paid) and raises :class:`StreamStopped`. Both
carry ``partial``: a result with the tokens received so far, for the log and the budgets.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from decimal import Decimal
from typing import Any

from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .base import BaseProvider, CompletionRequest, CompletionResult, ProviderError

#: ``publish(text_so_far)``: False when the stream must stop (the run was cancelled).
Publish = Callable[[str], bool]

_offered: ContextVar[Publish | None] = ContextVar("llm_stream_offered", default=None)
_active: ContextVar[Publish | None] = ContextVar("llm_stream_active", default=None)


class StreamStopped(ProviderError):
    """The stream was stopped on purpose (the editor cancelled): the connection is closed."""

    code = "cancelled"
    default_message = _("Cancelled while the answer was being written. Nothing was written.")
    partial: CompletionResult | None = None


class StreamBroken(ProviderError):
    """The stream ended before the answer did (the connection dropped, no finish reason)."""

    code = "stream_broken"
    retryable = True
    default_message = _("The model's answer stopped half way. Nothing was written. Try again.")
    partial: CompletionResult | None = None


@contextlib.contextmanager
def offering(publish: Publish) -> Iterator[None]:
    """Offer ``publish`` to the one-answer call of the run inside the block."""
    token = _offered.set(publish)
    try:
        yield
    finally:
        _offered.reset(token)


@contextlib.contextmanager
def accepting() -> Iterator[None]:
    """Stream the call inside the block to the offered sink, if any (one text answer)."""
    token = _active.set(_offered.get())
    try:
        yield
    finally:
        _active.reset(token)


def complete(provider: BaseProvider, request: CompletionRequest) -> CompletionResult:
    """``provider.complete(request)``, streamed to the active sink when there is one and the
    provider streams (LiteLLM, the offline provider, or a custom provider's ``stream``)."""
    publish = _active.get()
    stream = _streamer(provider)
    if publish is None or stream is None or request.n > 1 or request.response_format:
        return provider.complete(request)
    return stream(request, publish)


def _streamer(provider: BaseProvider) -> Callable[[CompletionRequest, Publish], Any] | None:
    from .litellm import LiteLLMProvider
    from .local import LocalProvider

    if isinstance(provider, LiteLLMProvider):
        return lambda request, publish: stream_litellm(provider, request, publish)
    if isinstance(provider, LocalProvider):
        return lambda request, publish: stream_local(provider, request, publish)
    return getattr(provider, "stream", None)


def received_tokens(text: str) -> int:
    """About how many tokens ``text`` is (the count OpenAI's tokenizer gives, offline)."""
    from ..estimates import count_text_tokens

    return count_text_tokens(text) if text else 0


def partial_result(
    request: CompletionRequest, text: str, *, prompt_tokens: int | None = None, cost=None
) -> CompletionResult:
    """What a stream that did not finish had used: the tokens received so far."""
    completion = received_tokens(text)
    total = (prompt_tokens or 0) + completion
    return CompletionResult(
        text=text,
        model=request.model,
        finish_reason="",
        prompt_tokens=prompt_tokens,
        completion_tokens=completion,
        total_tokens=total or None,
        cost=cost if cost is None else Decimal(cost),
    )


def broken(request: CompletionRequest, text: str, detail: str = "") -> StreamBroken:
    """A :class:`StreamBroken` saying how far the answer got."""
    tokens = received_tokens(text)
    error = StreamBroken(
        gettext(
            "The model's answer stopped half way (after about %(tokens)s tokens): the "
            "stream ended before the answer was complete. Nothing was written. Try again."
        )
        % {"tokens": tokens},
        model=request.model,
        detail=detail,
    )
    error.partial = partial_result(request, text)
    return error


def stopped(request: CompletionRequest, text: str) -> StreamStopped:
    """A :class:`StreamStopped` saying how far the answer got."""
    error = StreamStopped(
        gettext(
            "Cancelled while the answer was being written (after about %(tokens)s tokens); "
            "the model was stopped. Nothing was written."
        )
        % {"tokens": received_tokens(text)},
        model=request.model,
    )
    error.partial = partial_result(request, text)
    return error


def stream_litellm(provider: Any, request: CompletionRequest, publish: Publish):
    """``LiteLLMProvider.stream``: ``litellm.completion(stream=True)`` read chunk by chunk,
    each piece of text published; the answer rebuilt with ``stream_chunk_builder``."""
    from .litellm import get_litellm, map_exception

    litellm = get_litellm()
    kwargs = provider.build_kwargs(request)  # the action's timeout, as a plain call
    kwargs.update(stream=True, stream_options={"include_usage": True})
    started = time.perf_counter()
    try:
        response = litellm.completion(**kwargs)
    except Exception as e:
        raise map_exception(e, request) from e
    chunks: list[Any] = []
    text = ""
    finished = False
    try:
        for chunk in response:
            chunks.append(chunk)
            for choice in getattr(chunk, "choices", None) or []:
                piece = getattr(getattr(choice, "delta", None), "content", None)
                if piece:
                    text += piece
                    if not publish(text):
                        raise stopped(request, text)
                finished = finished or bool(getattr(choice, "finish_reason", None))
    except ProviderError as e:
        _price(provider, request, e)
        raise
    except Exception as e:
        mapped = map_exception(e, request)
        if not text:  # nothing came: the same error as a plain call's (a timeout…)
            raise mapped from e
        error = broken(request, text, mapped.detail)
        _price(provider, request, error)
        raise error from e
    finally:
        response.close()  # a stopped stream: the connection closes, no more tokens
    if not finished:
        raise broken(request, text)
    built = litellm.stream_chunk_builder(chunks, messages=request.messages)
    latency_ms = int((time.perf_counter() - started) * 1000)
    return provider.parse_response(built, request, latency_ms)


def _price(provider: Any, request: CompletionRequest, error: ProviderError) -> None:
    """Put the prompt's tokens and the price of what was received on ``error.partial``."""
    partial = getattr(error, "partial", None)
    if partial is None:
        return
    partial.prompt_tokens = provider.count_tokens(request.model, request.messages)
    partial.total_tokens = (partial.prompt_tokens or 0) + (partial.completion_tokens or 0)
    if partial.prompt_tokens is not None:
        partial.cost = provider.estimate_cost(
            request.model, partial.prompt_tokens, partial.completion_tokens or 0
        )


def stream_local(provider: Any, request: CompletionRequest, publish: Publish):
    """``LocalProvider.stream``: its deterministic answer, published a few words at a time
    (``LOCAL_STREAM_DELAY`` seconds apart, so the sandbox shows the text arriving)."""
    import re

    from ..conf import get_setting

    result = provider.complete(request)
    delay = float(get_setting("LOCAL_STREAM_DELAY") or 0)
    pieces = re.findall(r"(?:\S+\s*){1,3}|\s+", result.text)
    text = ""
    for piece in pieces:
        if delay:
            time.sleep(delay)
        text += piece
        if not publish(text):
            raise stopped(request, text)
    return result
