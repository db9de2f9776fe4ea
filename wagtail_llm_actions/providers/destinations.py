"""Where a model string sends its requests when the action leaves the API base blank.

Most providers then call their own public ``https://`` endpoint. Some default to a server on
this machine (``ollama/`` to ``http://localhost:11434``, ``llamafile/`` to
``http://127.0.0.1:8080/v1``…), and LiteLLM lets the environment choose the base of a provider
(``OLLAMA_API_BASE``, ``OPENAI_API_BASE``…). :func:`destination` resolves which URL a blank
base means, without importing LiteLLM, so that saving an action checks it like an API base
typed in; at call time LiteLLM's own resolution is asked too (``LiteLLMProvider``), and the
connection guard checks every connection whatever chose it.

:data:`LOCAL_DEFAULTS` is a reviewed copy of LiteLLM 1.110's defaults: a test derives them from
the installed LiteLLM (``tests/litellm_catalog.py``) and fails when one is missing here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from django.utils.translation import gettext

#: Provider prefix -> (environment variable, LiteLLM's default base): the providers whose
#: requests go to plain ``http://`` on this machine when nothing else is set.
LOCAL_DEFAULTS: dict[str, tuple[str, str]] = {
    "docker_model_runner": (
        "DOCKER_MODEL_RUNNER_API_BASE",
        "http://localhost:22088/engines/llama.cpp",
    ),
    "langflow": ("LANGFLOW_API_BASE", "http://localhost:7860"),
    "langgraph": ("LANGGRAPH_API_BASE", "http://localhost:2024"),
    "lemonade": ("LEMONADE_API_BASE", "http://localhost:8000/api/v1"),
    "llamafile": ("LLAMAFILE_API_BASE", "http://127.0.0.1:8080/v1"),
    "ollama": ("OLLAMA_API_BASE", "http://localhost:11434"),
    "ollama_chat": ("OLLAMA_API_BASE", "http://localhost:11434"),
    "ragflow": ("RAGFLOW_API_BASE", "http://localhost:9380"),
    "xinference": ("XINFERENCE_API_BASE", "http://127.0.0.1:9997/v1"),
}

#: Variables that set a provider's base besides ``<PREFIX>_API_BASE``, in LiteLLM's order.
BASE_VARIABLES: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
    "text-completion-openai": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
}


@dataclass(frozen=True)
class Destination:
    """The base URL a model's requests go to (None: the provider's own public endpoint), and
    what chose it: ``api_base`` (the action), an environment variable's name, or ``default``
    (LiteLLM's default for the prefix)."""

    model: str
    url: str | None
    source: str = ""

    def describe(self) -> str:
        """Why requests go to :attr:`url`, for a message."""
        prefix = self.model.partition("/")[0]
        if self.source == "default":
            return gettext("LiteLLM's default for %(prefix)s models") % {"prefix": f"{prefix}/"}
        if self.source and self.source != "api_base":
            return gettext("the %(variable)s environment variable") % {"variable": self.source}
        return gettext("the API base")


def base_variables(prefix: str) -> tuple[str, ...]:
    """The environment variables that set the API base of ``prefix``'s models."""
    if prefix in BASE_VARIABLES:
        return BASE_VARIABLES[prefix]
    if prefix in LOCAL_DEFAULTS:
        return (LOCAL_DEFAULTS[prefix][0],)
    return (f"{prefix.upper().replace('-', '_')}_API_BASE",) if prefix else ()


def destination(model: str, api_base: str | None = None) -> Destination:
    """Where ``model``'s requests go with this API base (blank: see the module docstring)."""
    model = (model or "").strip()
    if (api_base or "").strip():
        return Destination(model, api_base.strip(), "api_base")
    prefix = model.partition("/")[0]
    for variable in base_variables(prefix):
        value = (os.environ.get(variable) or "").strip()
        if value:
            return Destination(model, value, variable)
    if prefix in LOCAL_DEFAULTS:
        return Destination(model, LOCAL_DEFAULTS[prefix][1], "default")
    return Destination(model, None)
