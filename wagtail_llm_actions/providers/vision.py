"""Whether a model reads images, by LiteLLM's model list (its offline cost map).

``True``: it does; ``False``: LiteLLM knows the model and does not list vision; ``None``:
nobody here can tell (a model LiteLLM does not know, a self-hosted server or an API base,
whose models the list cannot describe, a site's own provider). An action is refused at save
for ``False`` only; ``None`` is a warning, as the first call finds out.
"""

from __future__ import annotations

from ..conf import get_setting

#: The offline models that read images (see :mod:`.local_vision`).
LOCAL_VISION_MODELS = frozenset({"local/vision"})

#: Providers that serve whatever model the site runs: LiteLLM's list cannot tell.
SELF_HOSTED = frozenset(
    {
        "ollama",
        "ollama_chat",
        "hosted_vllm",
        "vllm",
        "lm_studio",
        "llamafile",
        "openai_like",
        "custom_openai",
        "xinference",
        "oobabooga",
        "docker_model_runner",
        "lemonade",
    }
)


def vision_support(model: str, api_base: str = "") -> bool | None:
    """Whether ``model`` reads images (see the module's docstring); LiteLLM is imported only
    for a remote model without an API base."""
    provider, _sep, _name = (model or "").partition("/")
    if provider == "local":
        return model in LOCAL_VISION_MODELS
    if provider in (get_setting("PROVIDERS") or {}) or provider in SELF_HOSTED:
        return None
    if (api_base or "").strip():
        return None
    from .litellm import get_litellm

    try:
        info = get_litellm().get_model_info(model)
    except Exception:  # a model LiteLLM does not know  # noqa: BLE001
        return None
    return bool(info.get("supports_vision"))
