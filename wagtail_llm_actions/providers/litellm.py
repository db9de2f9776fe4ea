"""The LiteLLM backend: any ``provider/model`` string LiteLLM understands.

LiteLLM takes seconds to import, so it is imported on first use (or by :func:`preload`
when a worker starts), never when this module is imported.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from types import ModuleType
from typing import Any

from django.utils.translation import gettext

from .base import (
    AuthenticationError,
    BadRequestError,
    BadResponseError,
    BaseProvider,
    CompletionRequest,
    CompletionResult,
    ConfigurationError,
    ContextWindowError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    ServerError,
)

logger = logging.getLogger(__name__)

#: Keyword arguments ``extra_params`` may not set: they are set from the action itself,
#: or would change what this backend expects back (streaming, LiteLLM's own fallbacks).
RESERVED_PARAMS = frozenset(
    {
        "model",
        "messages",
        "api_key",
        "api_base",
        "base_url",
        "timeout",
        "request_timeout",
        "stream",
        "headers",
        "extra_headers",
        "fallbacks",
        "context_window_fallback_dict",
    }
)

#: Environment defaults set before LiteLLM is first imported: use the bundled price list,
#: catalogs and tokenizers instead of fetching them (from GitHub, Hugging Face). Calls to
#: the configured model servers are not affected. Operators can override them.
LITELLM_ENVIRONMENT = {
    "LITELLM_OFFLINE_MODE": "true",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
}

_LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")

_MISSING_KEY_HINTS = (
    "missing credentials",
    "api_key client option must be set",
    "missing api key",
    "api key is missing",
    "no api key",
)

_litellm: ModuleType | None = None
_import_lock = threading.Lock()


def get_litellm() -> ModuleType:
    """Import and configure LiteLLM once: no telemetry, no remote price list, quiet logs."""
    global _litellm
    if _litellm is not None:
        return _litellm
    with _import_lock:
        if _litellm is None:
            for name, value in LITELLM_ENVIRONMENT.items():
                os.environ.setdefault(name, value)
            import litellm

            from .guard import install_connection_guard

            install_connection_guard()
            litellm.telemetry = False
            litellm.suppress_debug_info = True
            if not os.environ.get("LITELLM_LOG"):
                # LiteLLM attaches its own stderr handler and logs every call at DEBUG/INFO.
                for name in _LITELLM_LOGGERS:
                    logging.getLogger(name).setLevel(logging.WARNING)
            _litellm = litellm
    return _litellm


def preload() -> None:
    """Import LiteLLM now (e.g. when a worker starts) rather than on the first call."""
    started = time.perf_counter()
    get_litellm()
    logger.debug("LiteLLM imported in %.2fs", time.perf_counter() - started)


def _to_int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _to_decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() and result >= 0 else None


#: The key sent to an API base the action sets when it names no key (servers that need
#: none ignore it; LiteLLM then reads no provider variable from the environment).
NO_KEY = "no-key"


class LiteLLMProvider(BaseProvider):
    """Calls ``litellm.completion`` and maps its answers and errors to ours."""

    def build_kwargs(self, request: CompletionRequest) -> dict[str, Any]:
        """Keyword arguments for ``litellm.completion`` (the key included: do not log)."""
        kwargs: dict[str, Any] = {
            key: value
            for key, value in (request.extra_params or {}).items()
            if key not in RESERVED_PARAMS
        }
        kwargs.update(
            model=request.model,
            messages=request.messages,
            timeout=request.timeout,
            num_retries=kwargs.get("num_retries", request.num_retries),
        )
        if request.api_base:
            kwargs["api_base"] = request.api_base
        if request.api_key:
            kwargs["api_key"] = request.api_key
        elif request.api_base:
            # Only a key the action names goes to an API base the action sets: without one,
            # LiteLLM would read the provider's own variable (OPENAI_API_KEY…) and send it there.
            kwargs["api_key"] = NO_KEY
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.max_tokens is not None:
            kwargs["max_tokens"] = request.max_tokens
        if request.response_format:
            kwargs["response_format"] = request.response_format
        if request.n > 1:
            kwargs["n"] = request.n
        return kwargs

    def default_api_base(self, model: str) -> str | None:
        """The base URL LiteLLM's own provider resolution gives ``model`` when the action
        sets none (an ``*_API_BASE`` variable, a local server's default), or None. Called
        with the connection guard on: resolving some providers logs in over the network."""
        try:
            resolved = get_litellm().get_llm_provider(model=model)
        except Exception:  # noqa: BLE001 - an unknown provider fails the call itself
            return None
        base = resolved[3] if isinstance(resolved, tuple) and len(resolved) > 3 else None
        return str(base) if base else None

    def supports_response_schema(self, model: str) -> bool:
        """LiteLLM's model info: whether ``model`` takes a JSON schema ``response_format``."""
        try:
            return bool(get_litellm().supports_response_schema(model=model))
        except Exception:  # an unknown model: ask in the prompt instead  # noqa: BLE001
            return False

    def supports_n(self, model: str) -> bool:
        """Whether LiteLLM passes ``n`` on for ``model`` (OpenAI-compatible providers)."""
        try:
            return "n" in (get_litellm().get_supported_openai_params(model=model) or [])
        except Exception:  # noqa: BLE001
            return False

    def complete(self, request: CompletionRequest) -> CompletionResult:
        litellm = get_litellm()
        kwargs = self.build_kwargs(request)
        started = time.perf_counter()
        try:
            response = litellm.completion(**kwargs)
        except Exception as e:
            raise map_exception(e, request) from e
        latency_ms = int((time.perf_counter() - started) * 1000)
        return self.parse_response(response, request, latency_ms)

    def parse_response(
        self, response: Any, request: CompletionRequest, latency_ms: int
    ) -> CompletionResult:
        """Read text, finish reason, usage and cost from a LiteLLM ``ModelResponse``."""
        try:
            choice = (getattr(response, "choices", None) or [None])[0]
            message = getattr(choice, "message", None)
            text = getattr(message, "content", None)
            finish_reason = str(getattr(choice, "finish_reason", None) or "")
        except (AttributeError, IndexError, TypeError) as e:
            raise BadResponseError(model=request.model, detail=request.scrub(repr(e))) from e
        if choice is None:
            raise BadResponseError(
                gettext("The model returned no answer at all."), model=request.model
            )
        if not isinstance(text, str) or not text.strip():
            if finish_reason == "length":
                message_text = gettext(
                    "The model used up its token limit before writing an answer. Raise the "
                    "action's max tokens, or leave it blank."
                )
            elif finish_reason == "content_filter":
                message_text = gettext("The model provider's content filter withheld the answer.")
            else:
                message_text = gettext("The model returned an empty answer.")
            raise BadResponseError(message_text, model=request.model, detail=finish_reason)

        usage = getattr(response, "usage", None)
        prompt_tokens = _to_int(getattr(usage, "prompt_tokens", None))
        completion_tokens = _to_int(getattr(usage, "completion_tokens", None))
        total_tokens = _to_int(getattr(usage, "total_tokens", None))
        if not (prompt_tokens or completion_tokens or total_tokens):
            # LiteLLM fills in zeros when the server sent no usage at all.
            prompt_tokens = completion_tokens = total_tokens = None
        elif total_tokens is None and prompt_tokens is not None and completion_tokens is not None:
            total_tokens = prompt_tokens + completion_tokens

        texts = [text]
        finish_reasons = [finish_reason]
        for other in list(getattr(response, "choices", None) or [])[1:]:
            content = getattr(getattr(other, "message", None), "content", None)
            if isinstance(content, str) and content.strip():
                texts.append(content)
                finish_reasons.append(str(getattr(other, "finish_reason", None) or ""))
        return CompletionResult(
            text=text,
            texts=texts,
            finish_reasons=finish_reasons,
            model=request.model,
            finish_reason=finish_reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=total_tokens,
            cost=self.response_cost(response) if total_tokens else None,
            latency_ms=latency_ms,
            response_model=str(getattr(response, "model", "") or ""),
        )

    def response_cost(self, response: Any) -> Decimal | None:
        """The call's price in USD by LiteLLM's price list, or None if unknown.

        ``litellm.completion`` prices every answer itself (``response_cost`` in the response's
        hidden parameters; None for an unpriced model), honouring prices passed with the call
        and cache hits: that figure is used as it is. Only a response without it (another
        client's, a test double) is priced here.
        """
        hidden = getattr(response, "_hidden_params", None)
        if isinstance(hidden, Mapping) and "response_cost" in hidden:
            return _to_decimal(hidden["response_cost"])
        litellm = get_litellm()
        try:
            return _to_decimal(litellm.completion_cost(completion_response=response))
        except Exception:  # an unpriced model is not an error
            return None

    def context_window(self, model: str) -> int | None:
        """Input tokens ``model`` accepts, by LiteLLM's model list (``max_input_tokens``)."""
        litellm = get_litellm()
        try:
            info = litellm.get_model_info(model)
        except Exception:  # a model LiteLLM does not know
            return None
        return _to_int(info.get("max_input_tokens") or info.get("max_tokens"))

    def count_tokens(self, model: str, messages: list[dict]) -> int | None:
        litellm = get_litellm()
        try:
            return _to_int(litellm.token_counter(model=model, messages=messages))
        except Exception:
            return None

    def estimate_cost(
        self, model: str, prompt_tokens: int, completion_tokens: int
    ) -> Decimal | None:
        litellm = get_litellm()
        try:
            prompt_cost, completion_cost = litellm.cost_per_token(
                model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
            )
        except Exception:
            return None
        prompt_cost, completion_cost = _to_decimal(prompt_cost), _to_decimal(completion_cost)
        if prompt_cost is None or completion_cost is None:
            return None
        return prompt_cost + completion_cost


# -- errors ----------------------------------------------------------------------------------

_PREFIX_RE = re.compile(
    r"^\s*(?:(?:litellm\.)?[A-Za-z]*(?: ?Error|Exception|Timeout)\s*(?::|-)\s*)+"
)
_RETRIED_RE = re.compile(r"\s*LiteLLM (?:Retried|Max Retries):.*$", re.DOTALL)


#: Characters of a provider's own explanation shown in an error message.
DETAIL_LIMIT = 200

_HTML_RE = re.compile(r"<\s*(?:!doctype\s+html|html|head|body|title)\b", re.IGNORECASE)
_TAG_RE = re.compile(r"<[^>]{0,500}>")


def looks_like_html(text: str) -> bool:
    """Whether ``text`` contains an HTML page (a proxy's, a login page…)."""
    return bool(_HTML_RE.search(text or ""))


def sanitise_detail(text: str, request: CompletionRequest, limit: int = DETAIL_LIMIT) -> str:
    """A provider's text made safe to store and show: no markup, no secrets, short."""
    text = _TAG_RE.sub(" ", str(text))
    text = re.sub(r"\s+", " ", text).strip()
    text = request.scrub(text)
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def upstream_detail(
    exc: BaseException, request: CompletionRequest, limit: int = DETAIL_LIMIT
) -> str:
    """The provider's explanation without LiteLLM's prefixes, markup, secrets or debug info.

    An HTML page (an internal server's error page, say) is never quoted: it is reported as
    such, so that no internal body reaches the audit log or the admin.
    """
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    text = _RETRIED_RE.sub("", _PREFIX_RE.sub("", str(text)))
    for marker in ("Received Model Group=", ", Received response - "):
        text = text.split(marker)[0]
    if looks_like_html(text):
        return gettext("The server answered with an HTML page.")
    return sanitise_detail(text, request, limit)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen) and len(seen) < 20:
        seen.append(current)
        current = current.__cause__ or current.__context__
    for item in list(seen):
        original = getattr(item, "original_exception", None)
        if isinstance(original, BaseException) and all(original is not s for s in seen):
            seen.append(original)
    return seen


def _status_code(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    try:
        return int(status) if status is not None else None
    except (TypeError, ValueError):
        return None


def _missing_key_error(request: CompletionRequest, detail: str) -> ConfigurationError:
    names: list[str] = []
    try:
        env = get_litellm().validate_environment(model=request.model)
        names = [n for n in env.get("missing_keys", []) if n.endswith(("_KEY", "_TOKEN"))]
    except Exception:
        names = []
    if request.api_key_name:
        return ConfigurationError.missing_key(request.api_key_name, model=request.model)
    if names:
        message = gettext(
            "No API key is set for %(model)s. Set the environment variable %(names)s, or "
            "enter an API key setting name on the action."
        ) % {"model": request.model, "names": " / ".join(names)}
    else:
        message = gettext(
            "No API key is set for %(model)s. Enter an API key setting name on the action."
        ) % {"model": request.model}
    return ConfigurationError(message, model=request.model, detail=detail)


def map_exception(exc: BaseException, request: CompletionRequest) -> ProviderError:
    """Translate a LiteLLM/OpenAI/httpx exception into a :class:`ProviderError`."""
    if isinstance(exc, ProviderError):
        return exc
    import httpx
    import openai

    from .guard import refused_connection

    refused = refused_connection(exc)
    if refused is not None:
        refused.model = request.model
        return refused
    ex = get_litellm().exceptions
    model = request.model
    status = _status_code(exc)
    raw = str(getattr(exc, "message", None) or exc)
    detail = upstream_detail(exc, request)
    chain = _chain(exc)
    lowered = detail.lower()
    kwargs: dict[str, Any] = {"model": model, "detail": detail, "status_code": status}

    def in_chain(*types: type) -> bool:
        return any(isinstance(item, types) for item in chain)

    # LiteLLM reports a 200 page it cannot read as JSON as an HTTP 500 of its own.
    if looks_like_html(raw) and (
        status is None or status < 400 or "invalid response from llm endpoint" in raw.lower()
    ):
        return BadResponseError(
            gettext(
                "The provider answered with an HTML page, not JSON. Check the action's API "
                "base URL: it may point at a website, a login page or a proxy."
            ),
            model=model,
            detail=detail,
        )

    if isinstance(exc, ex.ContextWindowExceededError) or (
        getattr(exc, "code", None) == "context_length_exceeded"
    ):
        return ContextWindowError(
            gettext(
                "The text is too long for %(model)s. Use a model with a larger context window, "
                "or choose a shorter source field."
            )
            % {"model": model},
            **kwargs,
        )
    if isinstance(exc, ex.AuthenticationError) or status == 401:
        if request.api_key_name:
            message = gettext(
                "The model provider rejected the API key from %(name)s. Check that it is "
                "correct and has not expired."
            ) % {"name": request.api_key_name}
        else:
            message = None
        return AuthenticationError(message, **kwargs)
    if isinstance(exc, ex.PermissionDeniedError) or status == 403:
        return AuthenticationError(
            gettext(
                "The model provider refused access to %(model)s with this API key. Check the "
                "key's permissions and the model name."
            )
            % {"model": model},
            **kwargs,
        )
    if isinstance(exc, ex.RateLimitError) or status == 429:
        return RateLimitError(**kwargs)
    if isinstance(exc, ex.Timeout | openai.APITimeoutError) or in_chain(
        openai.APITimeoutError, httpx.TimeoutException, TimeoutError, socket.timeout
    ):
        if status == 504:
            return ServerError(**kwargs)
        return ProviderTimeout.after(request.timeout, **kwargs)
    if in_chain(json.JSONDecodeError, openai.APIResponseValidationError):
        return BadResponseError(**kwargs)
    if isinstance(exc, ex.APIConnectionError) or in_chain(
        openai.APIConnectionError, httpx.TransportError, ConnectionError, socket.gaierror
    ):
        kwargs["status_code"] = None
        return ProviderConnectionError.for_url(request.api_base, **kwargs)
    if any(hint in lowered for hint in _MISSING_KEY_HINTS):
        return _missing_key_error(request, detail)
    if isinstance(exc, ex.LiteLLMUnknownProvider) or "llm provider not provided" in lowered:
        return ConfigurationError(
            gettext(
                "LiteLLM does not know the provider of %(model)s. Use the form provider/model, "
                "e.g. openai/gpt-4o-mini."
            )
            % {"model": model},
            **kwargs,
        )
    if isinstance(exc, ex.NotFoundError) or status == 404:
        return ConfigurationError(
            gettext(
                "The model server does not know %(model)s (HTTP 404). Check the model name and "
                "the action's API base URL."
            )
            % {"model": model},
            **kwargs,
        )
    if isinstance(exc, ex.ContentPolicyViolationError):
        return BadRequestError(
            gettext("The model provider's content policy blocked the request: %(detail)s")
            % {"detail": detail},
            **kwargs,
        )
    if status is not None and status >= 500:
        return ServerError(**kwargs)
    if isinstance(exc, ex.BadRequestError | openai.BadRequestError) or (
        status is not None and 400 <= status < 500
    ):
        return BadRequestError(
            gettext(
                "The model provider refused the request: %(detail)s Check the action's model "
                "settings and extra parameters."
            )
            % {"detail": detail if detail.endswith(".") else f"{detail}."},
            **kwargs,
        )
    if isinstance(exc, openai.APIError):
        return ServerError(**kwargs)
    return ProviderError(
        gettext("The model call failed: %(detail)s") % {"detail": detail}, **kwargs
    )
