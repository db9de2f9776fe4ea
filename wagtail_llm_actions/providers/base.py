"""Provider interface: the request and result of one completion, and the errors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit, urlunsplit

from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

#: Parameter names containing one of these are never stored or shown.
SECRET_NAME_PARTS = ("key", "token", "secret", "authorization", "password")

#: Placeholder that replaces a secret.
REDACTED = "[redacted]"

_SECRET_PATTERNS = [
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"),
    re.compile(r"(?i)\b(api[_-]?key|access[_-]?token|token|secret|password)=[^\s&\"']+"),
]


def is_secret_name(name: str) -> bool:
    """Whether a parameter with this name may hold a credential."""
    lowered = str(name).lower()
    return any(part in lowered for part in SECRET_NAME_PARTS)


def scrub_params(params: Any) -> Any:
    """A copy of ``params`` with credential-like keys redacted, at any depth."""
    if isinstance(params, dict):
        return {
            key: REDACTED if is_secret_name(key) else scrub_params(value)
            for key, value in params.items()
        }
    if isinstance(params, list | tuple):
        return [scrub_params(value) for value in params]
    return params


def scrub_text(text: str, secrets: list[str | None] | tuple[str | None, ...] = ()) -> str:
    """``text`` without the given secret values or anything that looks like a credential."""
    text = str(text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def display_url(url: str | None) -> str:
    """``url`` without user info, query string or fragment, safe to show."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    except ValueError:
        return ""


class ActionSettings(Protocol):
    """What the provider layer reads from an action: plain values (``LLMAction`` has them; the
    provider layer never imports the models)."""

    model: str
    temperature: float | None
    max_tokens: int | None
    timeout: int | float | None
    api_base: str
    api_key_name: str
    extra_params: Any

    @property
    def fallback_model_list(self) -> list[str]: ...


@dataclass
class CompletionRequest:
    """Everything a provider needs for one call. ``api_key`` never leaves this object."""

    model: str
    messages: list[dict]
    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float = 60.0
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    extra_params: dict = field(default_factory=dict)
    fallbacks: list[str] = field(default_factory=list)
    num_retries: int = 0
    #: Name of the setting or environment variable the key came from (safe to show).
    api_key_name: str = ""
    #: A hint: the most characters the answer may have (the target field's ``max_length``).
    #: The offline provider honours it; providers that call a model ignore it.
    max_chars: int | None = None
    #: An OpenAI-style ``response_format`` (a JSON schema), for models that support it.
    response_format: dict | None = None
    #: How many answers to ask for in one call (the provider's ``n``).
    n: int = 1

    def public_parameters(self) -> dict[str, Any]:
        """The parameters safe to store in the audit log: no key, no secret-like extras."""
        return {
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "timeout": self.timeout,
            "api_base": display_url(self.api_base) or None,
            "api_key_name": self.api_key_name,
            "extra_params": scrub_params(dict(self.extra_params or {})),
            "fallbacks": list(self.fallbacks),
            "num_retries": self.num_retries,
            **({"response_format": self.response_format} if self.response_format else {}),
            **({"n": self.n} if self.n > 1 else {}),
        }

    def scrub(self, text: str) -> str:
        """``text`` without this request's key or anything that looks like a credential."""
        return scrub_text(text, [self.api_key])


@dataclass
class CompletionResult:
    """What came back. ``model`` is the model string that answered (maybe a fallback)."""

    text: str
    model: str
    finish_reason: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cost: Decimal | None = None
    latency_ms: int = 0
    #: The model name the server reported, e.g. a dated version of ``model``.
    response_model: str = ""
    #: Models tried before this one answered, with the error code of each.
    failed_attempts: list[dict] = field(default_factory=list)
    #: Every answer when several were asked for (``n``); ``text`` is the first.
    texts: list[str] = field(default_factory=list)
    #: The finish reason of each of ``texts`` (empty when ``texts`` is).
    finish_reasons: list[str] = field(default_factory=list)
    #: Answered from the response cache: no call was made (no tokens, no cost).
    cached: bool = False

    @property
    def truncated(self) -> bool:
        """Whether the answer was cut off by the token limit (finish reason "length")."""
        return self.finish_reason == "length"

    def answers(self) -> list[tuple[str, bool]]:
        """Every answer with whether it was cut off by the token limit."""
        texts = self.texts or [self.text]
        reasons = self.finish_reasons or [self.finish_reason]
        reasons = reasons + [self.finish_reason] * (len(texts) - len(reasons))
        return [(text, reason == "length") for text, reason in zip(texts, reasons, strict=False)]


class ProviderError(Exception):
    """A model call failed. ``str(error)`` is a translated message an editor can act on.

    ``code`` is stable and stored in the audit log; ``retryable`` says whether trying
    again later may help; ``detail`` is the provider's own (scrubbed) explanation.
    """

    code: ClassVar[str] = "error"
    retryable: bool = False
    default_message: ClassVar[Any] = _("The model call failed.")

    def __init__(
        self,
        message: str | None = None,
        *,
        model: str = "",
        detail: str = "",
        status_code: int | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.message = str(message if message is not None else self.default_message)
        self.model = model
        self.detail = detail
        self.status_code = status_code
        if retryable is not None:
            self.retryable = retryable
        #: Fallback models tried after the first failed: [{"model", "code", "message"}].
        self.attempts: list[dict] = []
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def as_dict(self) -> dict[str, Any]:
        """A JSON-safe summary for logs and API responses."""
        return {
            "code": self.code,
            "message": self.message,
            "detail": self.detail,
            "model": self.model,
            "status_code": self.status_code,
            "retryable": self.retryable,
        }


class ConfigurationError(ProviderError):
    """The action cannot be run as configured (model string, API key, URL)."""

    code = "configuration"
    default_message = _("The action's model settings are incomplete or invalid.")

    @classmethod
    def missing_key(cls, name: str, model: str = "") -> ConfigurationError:
        return cls(
            gettext(
                "The API key setting %(name)s is not set. Set the environment variable "
                "%(name)s, or add it to WAGTAIL_LLM_ACTIONS['API_KEYS']."
            )
            % {"name": name},
            model=model,
        )


class AuthenticationError(ProviderError):
    """The provider rejected the credentials."""

    code = "auth"
    default_message = _(
        "The model provider rejected the API key. Check the key the action's "
        "API key setting name points to."
    )


class RateLimitError(ProviderError):
    """Too many requests or tokens for the account right now."""

    code = "rate_limit"
    retryable = True
    default_message = _(
        "The model provider is limiting requests right now. Wait a minute and try again, "
        "or run fewer pages at once."
    )


class ContextWindowError(ProviderError):
    """The prompt does not fit in the model's context window."""

    code = "context_window"
    default_message = _(
        "The text is too long for this model. Use a model with a larger context window, "
        "or choose a shorter source field."
    )


class ProviderTimeout(ProviderError):
    """No answer within the action's timeout."""

    code = "timeout"
    retryable = True
    default_message = _(
        "The model did not answer in time. Try again, or raise the action's timeout."
    )

    @classmethod
    def after(cls, seconds: float, **kwargs: Any) -> ProviderTimeout:
        message = ngettext(
            "The model did not answer within %(seconds)s second. Try again, or raise the "
            "action's timeout.",
            "The model did not answer within %(seconds)s seconds. Try again, or raise the "
            "action's timeout.",
            max(1, round(seconds)),
        ) % {"seconds": f"{seconds:g}"}
        return cls(message, **kwargs)


class ProviderConnectionError(ProviderError):
    """The model server could not be reached."""

    code = "connection"
    retryable = True
    default_message = _(
        "Could not reach the model server. Check the network connection and try again."
    )

    @classmethod
    def for_url(cls, url: str | None, **kwargs: Any) -> ProviderConnectionError:
        shown = display_url(url)
        if not shown:
            return cls(**kwargs)
        return cls(
            gettext(
                "Could not reach the model server at %(url)s. Check that it is running and "
                "that the action's API base URL is correct."
            )
            % {"url": shown},
            **kwargs,
        )


class ServerError(ProviderError):
    """The provider failed (5xx). Retryable unless the status says otherwise."""

    code = "server_error"
    retryable = True
    default_message = _("The model server had a problem. Try again in a moment.")

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        status = kwargs.get("status_code")
        if kwargs.get("retryable") is None and status is not None:
            kwargs["retryable"] = status >= 500
        if message is None and status is not None:
            message = gettext(
                "The model server had a problem (HTTP %(status)s). Try again in a moment."
            ) % {"status": status}
        super().__init__(message, **kwargs)


class BadResponseError(ProviderError):
    """The answer was empty or could not be read."""

    code = "bad_response"
    default_message = _("The model returned an answer that could not be read.")


class BadRequestError(ProviderError):
    """The provider refused the request as invalid (parameters, content)."""

    code = "bad_request"
    default_message = _(
        "The model provider refused the request. Check the action's model settings and "
        "extra parameters."
    )


class BaseProvider:
    """A backend that turns a :class:`CompletionRequest` into a :class:`CompletionResult`.

    ``complete`` calls ``request.model`` only; fallbacks are tried by
    :func:`wagtail_llm_actions.providers.complete`. It raises :class:`ProviderError`.
    """

    #: Whether this backend needs network access (False for offline providers).
    remote: ClassVar[bool] = True

    def complete(self, request: CompletionRequest) -> CompletionResult:
        raise NotImplementedError

    def count_tokens(self, model: str, messages: list[dict]) -> int | None:
        """Tokens ``messages`` would use, or None when unknown."""
        return None

    def context_window(self, model: str) -> int | None:
        """Input tokens ``model`` accepts, or None when unknown."""
        return None

    def supports_response_schema(self, model: str) -> bool:
        """Whether ``model`` accepts a JSON schema as ``response_format``."""
        return False

    def supports_n(self, model: str) -> bool:
        """Whether ``model`` returns several answers for one call with ``n``."""
        return False

    def estimate_cost(
        self, model: str, prompt_tokens: int, completion_tokens: int
    ) -> Decimal | None:
        """Price in USD for these token counts, or None when the model has no known price."""
        return None
