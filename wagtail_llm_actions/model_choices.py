"""The model suggestions of the action and pipeline forms, the site's usable models first.

LiteLLM's price list is alphabetical, so the form used to open on "abliteration/…". Here the
models of providers the site has a key for (a provider variable set in the environment, or an
entry of ``API_KEYS``) come first, then the local models (no key needed), then the rest, each
group alphabetical. Which variable is whose: a provider ``together_ai`` is keyed by
``TOGETHERAI_API_KEY``, ``TOGETHER_AI_API_KEY``…: the name without its ``_API_KEY`` /
``_TOKEN`` / ``_KEY`` ending, compared without underscores. Nothing imports LiteLLM.
"""

from __future__ import annotations

import os
import re

from .conf import get_setting

_SUFFIX = re.compile(r"(_API_KEY|_API_TOKEN|_ACCESS_TOKEN|_AUTH_TOKEN|_TOKEN|_KEY)$")


def _squash(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def keyed_providers(environ=None) -> set[str]:
    """Squashed provider names the site has a key for (``openai``, ``togetherai``…)."""
    from .providers.keynames import LLM_KEY_NAMES

    environ = os.environ if environ is None else environ
    names = {name for name in LLM_KEY_NAMES if environ.get(name)}
    names.update(name for name, value in (get_setting("API_KEYS") or {}).items() if value)
    return {_squash(_SUFFIX.sub("", name)) for name in names}


def suggested_models(models: list[str] | None = None, environ=None) -> list[str]:
    """``models`` (LiteLLM's chat models by default): keyed providers', local, the rest."""
    if models is None:
        from .estimates import known_models

        models = known_models()
    keyed = keyed_providers(environ)

    def group(model: str) -> int:
        provider = model.partition("/")[0]
        if _squash(provider) in keyed:
            return 0
        if provider == "local":
            return 1
        return 2

    return sorted(models, key=lambda model: (group(model), model))
