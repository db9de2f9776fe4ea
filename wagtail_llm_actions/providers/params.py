"""Which extra parameters an action may pass to its model: an allow-list.

Only sampling and format options LiteLLM documents for ``completion()`` are accepted (its
OpenAI-style parameters, translated or passed on per provider), plus a few a provider defines
itself (Azure's ``api_version``, Ollama's ``num_ctx``…), for that provider only. Anything
else, above all what changes where a call goes or how it is made (``custom_llm_provider``,
``api_base``, ``ssl_verify``, ``aws_region_name``, ``vertex_location``, ``fallbacks``,
``extra_body``, headers, credentials), is refused when the action is saved and again before
every call. Each value is checked too (a number, a short string, a known choice).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from django.utils.translation import gettext

#: Checks one value; returns why it is not acceptable, or None.
Check = Callable[[Any], str | None]


def _number(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return gettext("a number")
    return None


def _integer(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return gettext("a whole number")
    return None


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else gettext("true or false")


def _short_text(value: Any) -> str | None:
    if not isinstance(value, str) or not 0 < len(value) <= 200:
        return gettext("a text of up to 200 characters")
    return None


def _stop(value: Any) -> str | None:
    if isinstance(value, str) and len(value) <= 200:
        return None
    if (
        isinstance(value, list)
        and 0 < len(value) <= 16
        and all(isinstance(item, str) and len(item) <= 200 for item in value)
    ):
        return None
    return gettext("a text or a list of up to 16 texts")


def _logit_bias(value: Any) -> str | None:
    if isinstance(value, dict) and all(
        re.fullmatch(r"\d{1,9}", str(key)) and _number(bias) is None and -100 <= bias <= 100
        for key, bias in value.items()
    ):
        return None
    return gettext("an object of token ids and numbers between -100 and 100")


def _choice(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        if value in choices:
            return None
        return gettext("one of %(choices)s") % {"choices": ", ".join(choices)}

    return check


def _response_format(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind in ("text", "json_object") and set(value) == {"type"}:
        return None
    if kind == "json_schema" and isinstance(value.get("json_schema"), dict):
        if set(value) == {"type", "json_schema"}:
            return None
    return gettext(
        'an object with "type": "text", "json_object", or "json_schema" (with "json_schema")'
    )


def _thinking(value: Any) -> str | None:
    if (
        isinstance(value, dict)
        and value.get("type") in ("enabled", "disabled")
        and set(value) <= {"type", "budget_tokens"}
        and (_integer(value.get("budget_tokens", 0)) is None)
    ):
        return None
    return gettext('an object with "type" ("enabled" or "disabled") and "budget_tokens"')


_API_VERSION_RE = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?|v1|latest|preview")


def _api_version(value: Any) -> str | None:
    if isinstance(value, str) and _API_VERSION_RE.fullmatch(value):
        return None
    return gettext("a version such as 2024-10-21 or 2025-01-01-preview")


def _text_or_number(value: Any) -> str | None:
    if _short_text(value) is None or _number(value) is None:
        return None
    return gettext("a text or a number")


def _format(value: Any) -> str | None:
    if value == "json" or isinstance(value, dict):
        return None
    return gettext('"json" or a JSON schema object')


def _safety_settings(value: Any) -> str | None:
    if (
        isinstance(value, list)
        and len(value) <= 20
        and all(
            isinstance(item, dict)
            and set(item) <= {"category", "threshold", "method"}
            and all(_short_text(v) is None for v in item.values())
            for item in value
        )
    ):
        return None
    return gettext('a list of objects with "category" and "threshold"')


#: Sampling and format parameters of LiteLLM's ``completion()``, for every provider.
COMMON_PARAMS: dict[str, Check] = {
    "temperature": _number,
    "top_p": _number,
    "top_k": _integer,
    "min_p": _number,
    "seed": _integer,
    "stop": _stop,
    "max_completion_tokens": _integer,
    "presence_penalty": _number,
    "frequency_penalty": _number,
    "repetition_penalty": _number,
    "logit_bias": _logit_bias,
    "logprobs": _boolean,
    "top_logprobs": _integer,
    "response_format": _response_format,
    "reasoning_effort": _choice("none", "minimal", "low", "medium", "high"),
    "verbosity": _choice("low", "medium", "high"),
    "thinking": _thinking,
    "drop_params": _boolean,
}

_OLLAMA: dict[str, Check] = {
    "num_ctx": _integer,
    "num_predict": _integer,
    "repeat_penalty": _number,
    "repeat_last_n": _integer,
    "mirostat": _integer,
    "mirostat_eta": _number,
    "mirostat_tau": _number,
    "tfs_z": _number,
    "keep_alive": _text_or_number,
    "format": _format,
}
_GOOGLE: dict[str, Check] = {"safety_settings": _safety_settings}

#: Parameters only a provider (a model prefix) takes.
PROVIDER_PARAMS: dict[str, dict[str, Check]] = {
    "azure": {"api_version": _api_version},
    "azure_ai": {"api_version": _api_version},
    "azure_text": {"api_version": _api_version},
    "ollama": _OLLAMA,
    "ollama_chat": _OLLAMA,
    "gemini": _GOOGLE,
    "vertex_ai": _GOOGLE,
    "vertex_ai_beta": _GOOGLE,
    "mistral": {"safe_prompt": _boolean},
}


def allowed_params(model: str | None) -> dict[str, Check]:
    """The parameters ``model`` (a ``provider/model`` string) may be given."""
    prefix = (model or "").partition("/")[0]
    return {**COMMON_PARAMS, **PROVIDER_PARAMS.get(prefix, {})}


def param_problems(params: Any, model: str | None) -> list[str]:
    """Why ``params`` may not be passed to ``model``: one message per parameter."""
    if not isinstance(params, Mapping):
        return [gettext("Extra parameters must be a JSON object.")]
    allowed = allowed_params(model)
    problems: list[str] = []
    unknown = [str(name) for name in params if name not in allowed]
    if unknown:
        prefix = (model or "").partition("/")[0]
        problems.append(
            gettext(
                "Extra parameters may only set sampling and format options. Not allowed"
                "%(for)s: %(names)s. Allowed: %(allowed)s."
            )
            % {
                "for": (gettext(" for %(prefix)s models") % {"prefix": f"{prefix}/"})
                if prefix
                else "",
                "names": ", ".join(sorted(unknown)),
                "allowed": ", ".join(allowed),
            }
        )
    for name, value in params.items():
        check = allowed.get(name)
        reason = check(value) if check is not None else None
        if reason:
            problems.append(
                gettext("The extra parameter %(name)s must be %(expected)s.")
                % {"name": name, "expected": reason}
            )
    return problems


def params_for(params: Mapping[str, Any], model: str) -> dict[str, Any]:
    """``params`` without those ``model``'s provider does not take (for a fallback of another
    provider than the action's model)."""
    allowed = allowed_params(model)
    return {name: value for name, value in params.items() if name in allowed}
