"""What the installed LiteLLM reads from the environment, derived from its own code.

The package ships reviewed copies (``providers.keynames``, ``providers.destinations``) so that
validating an action never imports LiteLLM; tests compare them with what is derived here, so
a LiteLLM upgrade that adds a provider key variable or a local default destination fails a
test until the copy is reviewed.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from unittest import mock

#: ``get_llm_provider`` authenticates for these (a device login over the network): skipped.
NETWORK_RESOLVERS = frozenset({"github_copilot", "chatgpt"})

_KEYISH = re.compile(r"^[A-Z][A-Z0-9_]*_(?:KEY|TOKEN)$")
_SECRET_READ = re.compile(r'get_secret(?:_str)?\(\s*"([A-Z][A-Z0-9_]*)"')
_DEFAULT_BASE = re.compile(
    r'get_secret(?:_str)?\(\s*"([A-Z][A-Z0-9_]*_API_BASE)"\s*\)\s*or\s*"(http://[^"]+)"', re.S
)


def _litellm():
    from wagtail_llm_actions.providers.litellm import get_litellm

    return get_litellm()


def _providers() -> set[str]:
    return {str(getattr(p, "value", p)) for p in _litellm().provider_list}


def _sources() -> list[Path]:
    """LiteLLM's provider resolution, its provider packages (``llms/<provider>/``) and
    ``main.py``."""
    root = Path(_litellm().__file__).parent
    providers = _providers()
    files = [root / "main.py", root / "litellm_core_utils" / "get_llm_provider_logic.py"]
    for folder in sorted((root / "llms").iterdir()):
        if folder.is_dir() and folder.name in providers:
            files.extend(sorted(folder.rglob("*.py")))
    return files


def litellm_key_variables() -> set[str]:
    """Environment variables LiteLLM reads as a provider's key (``…_KEY``/``…_TOKEN``)."""
    litellm = _litellm()
    root = Path(litellm.__file__).parent
    names: set[str] = set()
    with mock.patch.dict(os.environ, {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}, clear=True):
        for provider in sorted(_providers() - NETWORK_RESOLVERS):
            try:
                env = litellm.validate_environment(model=f"{provider}/some-model")
            except Exception:  # noqa: BLE001, S112 - a provider that needs more than a name
                continue
            names |= {n for n in env.get("missing_keys", []) if _KEYISH.match(n)}
    catalog = json.loads((root / "llms" / "openai_like" / "providers.json").read_text())
    names |= {str(v["api_key_env"]) for v in catalog.values() if v.get("api_key_env")}
    for path in _sources():
        if path.name == "main.py":
            continue
        names |= {n for n in _SECRET_READ.findall(path.read_text()) if _KEYISH.match(n)}
    return names


def litellm_local_defaults() -> dict[str, tuple[str, str]]:
    """Provider prefix -> (variable, URL) for each ``get_secret("X_API_BASE") or "http://…"``:
    a plain-HTTP default destination, used when an action leaves the API base blank."""
    found: dict[str, tuple[str, str]] = {}
    for path in _sources():
        for variable, url in _DEFAULT_BASE.findall(path.read_text()):
            prefix = variable.removesuffix("_API_BASE").lower()
            found[prefix] = (variable, url)
    return found


if __name__ == "__main__":  # print the lists, for a review after upgrading LiteLLM
    print(sorted(litellm_key_variables()))
    print(litellm_local_defaults())
