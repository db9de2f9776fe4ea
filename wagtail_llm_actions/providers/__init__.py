"""The provider layer ("LLMFactory"): model strings, keys, requests and backends.

Importing this package does not import LiteLLM; that happens on the first remote call
(or in :func:`preload`). Typical use::

    request = build_request(action, messages)
    result = complete(request)  # tries request.fallbacks in order if the model fails
"""

from __future__ import annotations

import difflib
import logging
import os
import threading
from dataclasses import replace
from decimal import Decimal
from typing import Any

from django.utils.module_loading import import_string
from django.utils.translation import gettext

from ..conf import get_setting
from . import streaming
from .base import (
    ActionSettings,
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
from .destinations import Destination, destination
from .guard import guarded_connections, install_connection_guard, refused_connection
from .litellm import LiteLLMProvider, preload
from .local import LOCAL_MODELS, LocalProvider
from .params import params_for
from .policy import (
    PolicyError,
    check_api_base,
    check_destination,
    check_extra_params,
    check_key_name,
    scrub_value,
    site_secrets,
)

__all__ = [
    "KNOWN_PROVIDERS",
    "ActionSettings",
    "LOCAL_MODELS",
    "AuthenticationError",
    "BadRequestError",
    "BadResponseError",
    "BaseProvider",
    "CompletionRequest",
    "CompletionResult",
    "ConfigurationError",
    "ContextWindowError",
    "LiteLLMProvider",
    "LocalProvider",
    "PolicyError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "RateLimitError",
    "ServerError",
    "build_request",
    "complete",
    "context_window",
    "count_tokens",
    "estimate_cost",
    "get_provider",
    "preload",
    "missing_key_name",
    "resolve_api_key",
    "supports_n",
    "supports_response_schema",
    "validate_model_string",
]

logger = logging.getLogger(__name__)

#: Provider prefixes LiteLLM 1.110 accepts (``litellm.provider_list``), plus ``local``.
#: A static copy so that validating a model string does not import LiteLLM; a test
#: checks it still covers the installed LiteLLM.
KNOWN_PROVIDERS: frozenset[str] = frozenset(
    """
    a2a a2a_agent abliteration ai21 ai21_chat aiand aiml aiohttp_openai amazon_nova
    anthropic anthropic_text apertis assemblyai auto_router aws_polly aws_textract azure
    azure_ai azure_speech azure_text baseten bedrock bedrock_mantle bespoke bigmodel
    black_forest_labs bytez cerebras charity_engine chatgpt chutes clarifai clf_ai_gateway
    cloudflare codestral cognition cohere cohere_chat cometapi compactifai coralbricks
    cortecs cursor custom custom_openai darkbloom dashscope databricks databricks_agent
    datarobot deepgram deepinfra deepseek docker_model_runner dotprompt edenai elevenlabs
    empiriolabs empower eu_jev fal_ai featherless_ai fireworks_ai friendliai galadriel gdc
    gemini gigachat github github_copilot gradient_ai groq helicone heroku hosted_vllm
    hostinger_router huggingface humanloop hyperbolic inception inferenceapis infinity
    jina_ai kyma lambda_ai langflow langfuse langgraph laya lemonade libertai litellm_agent
    litellm_proxy llamafile lm_studio local manus maritalk meta meta_llama
    microsoft_365_copilot milvus minimax mistral modelscope mongodb moonshot morph nace
    nadir nano-gpt nebius neosantara nlp_cloud novita nscale nvidia_nim nvidia_riva oci
    ollama ollama_chat oobabooga openai openai_like opencode_go openinfer openrouter
    opensearch ovhcloud parallel_ai parasail perplexity petals pg_vector pinstripes poe
    predibase prism publicai qwen_ai_platform qwencloud ragflow recraft reducto refuseless
    reka replicate runwayml s3_vectors sagemaker sagemaker_chat sagemaker_nova sail
    sambanova sap scaledown scaleway scx-ai snowflake soniox stability strands_decider
    streamlake synthetic tencent tensormesh text-completion-codestral
    text-completion-inception text-completion-openai together_ai topaz transcribe triton
    typesafe v0 valkey vercel_ai_gateway vertex_ai vertex_ai_beta vllm volcengine voyage
    wally wandb watsonx watsonx_text xai xiaomi_mimo xinference zai zerogpu
    """.split()
)

#: Shown in error messages as examples of valid prefixes.
COMMON_PROVIDERS = ("openai", "anthropic", "gemini", "mistral", "ollama", "azure", "local")

#: Errors of the main model that are not worth trying the fallbacks for: the
#: configuration is wrong, and a fallback answering would hide it.
NO_FALLBACK_ERRORS: tuple[type[ProviderError], ...] = (AuthenticationError, ConfigurationError)

_providers: dict[str, BaseProvider] = {}
_providers_lock = threading.Lock()


def _custom_providers() -> dict[str, str]:
    return dict(get_setting("PROVIDERS") or {})


def split_model_string(model: str) -> tuple[str, str]:
    """``"openai/gpt-4o"`` → ``("openai", "gpt-4o")``; no slash gives ``("", model)``."""
    provider, sep, name = (model or "").partition("/")
    return (provider, name) if sep else ("", model or "")


def validate_model_string(model: str) -> None:
    """Raise ``ValueError`` with a translated message if ``model`` is not usable.

    Checks the form ``provider/model`` and the provider prefix only; whether the
    provider knows the model is found out on the first call.
    """
    example = "openai/gpt-4o-mini"
    if not isinstance(model, str) or not model.strip():
        raise ValueError(gettext("Enter a model string, e.g. %(example)s.") % {"example": example})
    if any(char.isspace() for char in model):
        raise ValueError(
            gettext("The model string %(model)s contains spaces. Remove them.")
            % {"model": repr(model)}
        )
    provider, name = split_model_string(model)
    if not provider:
        raise ValueError(
            gettext("%(model)s has no provider. Use the form provider/model, e.g. %(example)s.")
            % {"model": model, "example": example}
        )
    custom = _custom_providers()
    if provider not in KNOWN_PROVIDERS and provider not in custom:
        known = sorted(KNOWN_PROVIDERS | set(custom))
        close = difflib.get_close_matches(provider.lower(), known, n=1, cutoff=0.75)
        message = gettext(
            "Unknown provider %(provider)s in %(model)s. Known providers include %(known)s."
        ) % {
            "provider": repr(provider),
            "model": model,
            "known": ", ".join(COMMON_PROVIDERS),
        }
        if close:
            message += " " + gettext("Did you mean %(suggestion)s?") % {
                "suggestion": f"{close[0]}/{name}"
            }
        raise ValueError(message)
    if not name.strip("/"):
        raise ValueError(
            gettext("Enter the model name after %(prefix)s, e.g. %(example)s.")
            % {
                "prefix": f"{provider}/",
                "example": example if provider == "openai" else f"{provider}/model-name",
            }
        )
    if provider == "local" and provider not in custom and model not in LOCAL_MODELS:
        raise ValueError(
            gettext("Unknown local model %(model)s. Use one of: %(models)s.")
            % {"model": model, "models": ", ".join(LOCAL_MODELS)}
        )


def get_provider(model: str) -> BaseProvider:
    """The backend for ``model``: a ``PROVIDERS`` setting entry for its prefix, the
    offline provider for ``local/…``, LiteLLM otherwise. Instances are shared."""
    prefix, _name = split_model_string(model)
    custom = _custom_providers()
    if prefix in custom:
        key = f"custom:{custom[prefix]}"
    elif prefix == "local":
        key = "local"
    else:
        key = "litellm"
    provider = _providers.get(key)
    if provider is not None:
        return provider
    with _providers_lock:
        if key not in _providers:
            if key == "local":
                _providers[key] = LocalProvider()
            elif key == "litellm":
                _providers[key] = LiteLLMProvider()
            else:
                _providers[key] = _load_custom_provider(prefix, custom[prefix])
        return _providers[key]


def _load_custom_provider(prefix: str, path: Any) -> BaseProvider:
    try:
        cls = import_string(path) if isinstance(path, str) else path
        provider = cls()
    except (ImportError, TypeError, ValueError) as e:
        raise ConfigurationError(
            gettext(
                "The provider class %(path)s set for %(prefix)s in "
                "WAGTAIL_LLM_ACTIONS['PROVIDERS'] could not be loaded."
            )
            % {"path": path, "prefix": f"{prefix}/"},
            detail=str(e),
        ) from e
    if not callable(getattr(provider, "complete", None)):
        raise ConfigurationError(
            gettext("The provider class %(path)s has no complete() method.") % {"path": path}
        )
    return provider


def resolve_api_key(name: str) -> str | None:
    """The key named ``name``, from ``WAGTAIL_LLM_ACTIONS['API_KEYS']`` or the environment.

    A blank name gives None: LiteLLM then reads the provider's usual variable. Raises
    :class:`PolicyError` when an action may not use that name (see ``policy``), and
    :class:`ConfigurationError` naming the variable (never a value) when it is unset.
    """
    name = (name or "").strip()
    if not name:
        return None
    check_key_name(name)
    keys = get_setting("API_KEYS") or {}
    value = keys[name] if name in keys else os.environ.get(name)
    if not value:
        raise ConfigurationError.missing_key(name)
    return str(value)


#: The variable LiteLLM reads a provider's key from when an action names none (the common
#: providers; for others nothing is checked before the first call).
USUAL_KEY_VARIABLES: dict[str, str] = {
    "anthropic": "ANTHROPIC_API_KEY",
    "azure": "AZURE_API_KEY",
    "cohere": "COHERE_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "groq": "GROQ_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "openai": "OPENAI_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "perplexity": "PERPLEXITYAI_API_KEY",
    "together_ai": "TOGETHERAI_API_KEY",
    "xai": "XAI_API_KEY",
}


def missing_key_name(model: str, api_key_name: str = "", api_base: str = "") -> str | None:
    """The name of the key variable ``model`` needs that is not set here, or None.

    Plain values only (no action, no LiteLLM import), for a warning when an action is saved:
    the named setting when the action names one, else the provider's usual variable for the
    common providers, unless an API base is given (a local server may need no key).
    """
    name = (api_key_name or "").strip()
    if name:
        found = (get_setting("API_KEYS") or {}).get(name) or os.environ.get(name)
        return None if found else name
    if (api_base or "").strip():
        return None
    provider, _name = split_model_string(model or "")
    usual = USUAL_KEY_VARIABLES.get(provider or "")
    if usual and not os.environ.get(usual) and not (get_setting("API_KEYS") or {}).get(usual):
        return usual
    return None


def build_request(
    action: ActionSettings, messages: list[dict], *, max_chars: int | None = None
) -> CompletionRequest:
    """The request for running ``action`` (an ``LLMAction``, or anything with its provider
    settings) on ``messages``; ``max_chars`` is the answer's length hint (see
    ``CompletionRequest.max_chars``).

    Raises :class:`ConfigurationError` when the action's API key setting is not set, and
    :class:`PolicyError` when its key name or extra parameters are not allowed (an action
    saved without ``clean()`` is refused here, before any key is read).
    """
    extra = action.extra_params if isinstance(action.extra_params, dict) else {}
    check_extra_params(extra, (action.model or "").strip())
    return CompletionRequest(
        model=(action.model or "").strip(),
        messages=messages,
        temperature=action.temperature,
        max_tokens=action.max_tokens,
        timeout=float(action.timeout or get_setting("DEFAULT_TIMEOUT")),
        api_base=action.api_base or None,
        api_key=resolve_api_key(action.api_key_name),
        extra_params=dict(extra),
        fallbacks=action.fallback_model_list,
        num_retries=int(get_setting("NUM_RETRIES") or 0),
        api_key_name=(action.api_key_name or "").strip(),
        max_chars=max_chars,
    )


def _request_for(request: CompletionRequest, model: str) -> CompletionRequest:
    """``request`` for one model of the chain; the API base and key only go to models
    of the main model's provider, and another provider gets only the extra parameters it
    takes."""
    if model == request.model:
        return replace(request, fallbacks=[])
    if split_model_string(model)[0] == split_model_string(request.model)[0]:
        return replace(request, model=model, fallbacks=[])
    return replace(
        request,
        model=model,
        fallbacks=[],
        api_base=None,
        api_key=None,
        api_key_name="",
        extra_params=params_for(request.extra_params or {}, model),
    )


def default_destination(provider: BaseProvider, model: str) -> str | None:
    """The base URL ``model`` calls when no API base is given, by the provider's own
    resolution (``LiteLLMProvider.default_api_base``), or None."""
    method = getattr(provider, "default_api_base", None)
    return method(model) if method is not None else None


def enforce_policy(request: CompletionRequest, provider: BaseProvider) -> None:
    """Refuse (with :class:`PolicyError`) a request the provider policy does not allow.

    Runs before every call, whatever built the request: the key name, the extra parameters,
    and where the call goes, on the addresses its host resolves to now: the API base, or
    the destination the model resolves to when it is blank.
    """
    check_key_name(request.api_key_name)
    check_extra_params(request.extra_params, request.model)
    if not provider.remote:
        return
    if request.api_base:
        check_api_base(request.api_base, at_call=True)
        return
    target = destination(request.model)
    if target.url is None:
        # LiteLLM's own resolution, for a plain-http default the reviewed table lacks; its
        # https:// defaults (api.groq.com…) are public endpoints, left to the guard's check
        # of each request rather than resolved twice.
        url = default_destination(provider, request.model)
        if url and not url.lower().startswith("https://"):
            target = Destination(request.model, url, "default")
    check_destination(target, at_call=True)


def _scrubbed(error: ProviderError, request: CompletionRequest) -> ProviderError:
    others = site_secrets()
    error.message = scrub_value(request.scrub(error.message), request.api_key, others)
    error.detail = scrub_value(request.scrub(error.detail or ""), request.api_key, others)
    error.args = (error.message,)
    error.model = error.model or request.model
    return error


def _call(provider: BaseProvider, request: CompletionRequest) -> CompletionResult:
    """One provider call under the policy; the result and errors carry no key.

    A remote provider's call runs with the connection guard on (``guard``): every connection
    and HTTP request it makes is checked, whatever chose the destination, and redirects are
    refused.
    """
    remote = bool(provider.remote)
    try:
        if remote:
            install_connection_guard()
        with guarded_connections(remote):
            enforce_policy(request, provider)
            result = streaming.complete(provider, request)  # plain unless a sink is active
    except ProviderError as e:
        _scrubbed(e, request)
        raise
    except Exception as e:
        refused = refused_connection(e)
        if refused is None:
            raise
        raise _scrubbed(refused, request) from e
    others = site_secrets()
    result.text = scrub_value(result.text, request.api_key, others)
    result.response_model = scrub_value(result.response_model, request.api_key, others)
    return result


def complete(request: CompletionRequest) -> CompletionResult:
    """Call ``request.model``, then each of ``request.fallbacks`` until one answers.

    Fallbacks are not tried when the main model fails with an authentication or
    configuration error. If every model fails, the main model's error is raised with
    ``error.attempts`` listing each model's failure. A fallback receives the request's
    API base and key only when it has the same provider prefix as the main model.

    Every call is checked against the provider policy first (see ``policy``), and the
    resolved key is replaced by ``[redacted]`` in the answer and in error messages.
    """
    candidates = list(dict.fromkeys([request.model, *request.fallbacks]))
    attempts: list[dict] = []
    first_error: ProviderError | None = None
    for index, model in enumerate(candidates):
        try:
            result = _call(get_provider(model), _request_for(request, model))
        except ProviderError as e:
            e.model = e.model or model
            attempts.append({"model": model, "code": e.code, "message": str(e)})
            if first_error is None:
                first_error = e
            # A stream stopped or broken half way is not tried again on a fallback: the
            # editor saw part of an answer, and what was received is paid for.
            if isinstance(e, streaming.StreamStopped | streaming.StreamBroken) or (
                index == 0 and isinstance(e, NO_FALLBACK_ERRORS)
            ):
                e.attempts = attempts
                raise
            if index + 1 < len(candidates):
                logger.info("Model %s failed (%s); trying %s", model, e.code, candidates[index + 1])
            continue
        result.failed_attempts = attempts
        return result
    assert first_error is not None  # noqa: S101 - candidates is never empty
    first_error.attempts = attempts
    raise first_error


def context_window(model: str) -> int | None:
    """Input tokens ``model`` accepts, or None when unknown (LiteLLM is imported here, only
    when a map-reduce action sets no window of its own)."""
    provider = get_provider(model)
    method = getattr(provider, "context_window", None)
    if method is None:
        return None
    try:
        return method(model)
    except ProviderError:
        return None


def supports_response_schema(model: str) -> bool:
    """Whether ``model`` takes a JSON schema as ``response_format`` (else ask in the prompt)."""
    try:
        return bool(get_provider(model).supports_response_schema(model))
    except (ProviderError, AttributeError):
        return False


def supports_n(model: str) -> bool:
    """Whether ``model`` returns several answers for one call (else make several calls)."""
    try:
        return bool(get_provider(model).supports_n(model))
    except (ProviderError, AttributeError):
        return False


def count_tokens(model: str, messages: list[dict]) -> int | None:
    """Tokens ``messages`` would use with ``model``, or None when unknown."""
    try:
        return get_provider(model).count_tokens(model, messages)
    except ProviderError:
        return None


def estimate_cost(model: str, prompt_tokens: int, completion_tokens: int) -> Decimal | None:
    """Price in USD of a call with these token counts, or None when unknown."""
    try:
        return get_provider(model).estimate_cost(model, prompt_tokens, completion_tokens)
    except ProviderError:
        return None
