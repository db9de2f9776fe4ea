"""Token and cost estimates for the bulk confirmation screen, without importing LiteLLM.

Importing LiteLLM costs about 4 s and 190 MB, too much for a web request, so this module
reads what LiteLLM ships instead of calling it:

* **Tokens**: `tiktoken <https://github.com/openai/tiktoken>`_ (a LiteLLM dependency, a small
  compiled library) with the ``cl100k_base`` encoding file LiteLLM bundles in
  ``litellm/litellm_core_utils/tokenizers`` (so nothing is downloaded). Other models'
  tokenizers differ by some percent, which is fine for an estimate. When tiktoken or the
  file is missing, the count is ``characters / 4``.
* **Prices**: LiteLLM's bundled price list ``model_prices_and_context_window_backup.json``,
  read once as plain JSON and reduced to ``model -> (input, output)`` USD per token. Models
  not in it (a local server, a custom provider) have an unknown price, shown as such.
  ``local/…`` models are free.

The worker records the real tokens and cost of each call on its ``LLMInteraction``; the
job progress page sums those.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

logger = logging.getLogger(__name__)

#: Characters per token for the fallback count.
CHARS_PER_TOKEN = 4
#: Tokens each chat message adds on top of its text (role, separators), as OpenAI counts.
TOKENS_PER_MESSAGE = 4
#: Answer length assumed when an action sets no ``max_tokens``.
DEFAULT_COMPLETION_TOKENS = 300

_lock = threading.Lock()
_encoding = None
_encoding_loaded = False
_prices: dict[str, tuple[Decimal, Decimal]] | None = None
_models: list[str] | None = None


def _litellm_dir() -> Path | None:
    """LiteLLM's package directory, found without importing it."""
    try:
        spec = importlib.util.find_spec("litellm")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _get_encoding():
    """tiktoken's cl100k_base from LiteLLM's bundled file, or None (then chars/4)."""
    global _encoding, _encoding_loaded
    if _encoding_loaded:
        return _encoding
    with _lock:
        if _encoding_loaded:
            return _encoding
        base = _litellm_dir()
        cache_dir = base / "litellm_core_utils" / "tokenizers" if base else None
        if cache_dir is not None and cache_dir.is_dir():
            os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(cache_dir))
            try:
                import tiktoken

                _encoding = tiktoken.get_encoding("cl100k_base")
            except Exception:  # missing package or file: fall back to chars/4  # noqa: BLE001
                logger.debug("tiktoken is not usable; estimating 4 characters a token")
                _encoding = None
        _encoding_loaded = True
        return _encoding


def count_text_tokens(text: str) -> int:
    if not text:
        return 0
    encoding = _get_encoding()
    if encoding is not None:
        return len(encoding.encode(text, disallowed_special=()))
    return max(1, (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN)


#: Tokens an image part is counted as before the call: about what a 1024 px image costs
#: at high detail with the common vision models (the provider reports the real count).
IMAGE_PART_TOKENS = 1100


def count_message_tokens(messages: list[dict]) -> int:
    """Prompt tokens of a chat request (text plus a few tokens a message; an image part
    counts :data:`IMAGE_PART_TOKENS`, never its base64 text)."""
    total = 3
    for message in messages:
        content = message.get("content")
        total += TOKENS_PER_MESSAGE
        if not isinstance(content, list):
            total += count_text_tokens(str(content or ""))
            continue
        for part in content:
            if isinstance(part, dict) and part.get("type") == "image_url":
                total += IMAGE_PART_TOKENS
            elif isinstance(part, dict):
                total += count_text_tokens(str(part.get("text") or ""))
    return total


def _load_prices() -> dict[str, tuple[Decimal, Decimal]]:
    global _prices
    if _prices is not None:
        return _prices
    with _lock:
        if _prices is not None:
            return _prices
        prices: dict[str, tuple[Decimal, Decimal]] = {}
        base = _litellm_dir()
        path = base / "model_prices_and_context_window_backup.json" if base else None
        if path is not None and path.is_file():
            try:
                with path.open(encoding="utf-8") as f:
                    data = json.load(f)
            except (OSError, ValueError):
                data = {}
            for name, info in data.items():
                if not isinstance(info, dict):
                    continue
                given_in = info.get("input_cost_per_token")
                given_out = info.get("output_cost_per_token")
                if given_in is None or given_out is None:
                    continue
                try:
                    prices[name] = (Decimal(str(given_in)), Decimal(str(given_out)))
                except ArithmeticError:
                    continue
            del data
        _prices = prices
        return prices


def known_models() -> list[str]:
    """LiteLLM model strings (``provider/model``) of the chat models in its bundled price list.

    Read once as plain JSON, like the prices; offered as suggestions in the action form.
    """
    global _models
    if _models is not None:
        return _models
    with _lock:
        if _models is not None:
            return _models
        names: set[str] = set()
        base = _litellm_dir()
        path = base / "model_prices_and_context_window_backup.json" if base else None
        data = {}
        if path is not None and path.is_file():
            try:
                with path.open(encoding="utf-8") as f:
                    data = json.load(f)
            except (OSError, ValueError):
                data = {}
        from .providers import KNOWN_PROVIDERS

        for name, info in data.items():
            if not isinstance(info, dict) or info.get("mode") != "chat":
                continue
            provider = info.get("litellm_provider")
            if not isinstance(provider, str) or provider not in KNOWN_PROVIDERS:
                continue
            names.add(name if name.startswith(f"{provider}/") else f"{provider}/{name}")
        del data
        from .providers import LOCAL_MODELS

        names.update(LOCAL_MODELS)
        _models = sorted(names)
        return _models


def price_per_token(model: str) -> tuple[Decimal, Decimal] | None:
    """USD per (prompt, completion) token for a LiteLLM model string, or None if unknown."""
    model = (model or "").strip()
    if model.startswith("local/"):
        return (Decimal(0), Decimal(0))
    prices = _load_prices()
    if model in prices:
        return prices[model]
    _prefix, _sep, name = model.partition("/")
    if name and name in prices:
        return prices[name]
    return None


@dataclass
class Estimate:
    """Estimated tokens and cost of running an action on some pages."""

    pages: int = 0
    prompt_tokens: int = 0
    calls: int = 0
    completion_tokens: int = 0
    cost: Decimal | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def estimate(
    model: str,
    prompt_tokens: int,
    pages: int,
    max_tokens: int | None = None,
    calls: int | None = None,
) -> Estimate:
    """Tokens and cost for ``pages`` pages (``calls`` calls, one a page unless given: a
    map-reduce run makes one a part plus one to combine) sending ``prompt_tokens`` in total.

    The answer length is the action's ``max_tokens`` (an upper bound) or a typical answer.
    """
    completion = (max_tokens or DEFAULT_COMPLETION_TOKENS) * (pages if calls is None else calls)
    result = Estimate(
        pages=pages,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion,
        calls=pages if calls is None else calls,
    )
    price = price_per_token(model)
    if price is not None:
        result.cost = price[0] * prompt_tokens + price[1] * completion
    return result


def structured_prompt_tokens(action, model_class) -> int:
    """Tokens a structured action adds to each call: the JSON schema (in the prompt, or as
    ``response_format``, which providers count as input too)."""
    from .structured import build_schema, json_instruction

    try:
        return count_text_tokens(json_instruction(build_schema(model_class, action.output_fields)))
    except Exception:  # a broken mapping is reported by the run itself  # noqa: BLE001
        return 0


#: Provider prefixes whose OpenAI-compatible API returns several answers for one call
#: (``n``); others get one call per candidate. A static list, so that estimating does not
#: import LiteLLM; the run itself asks LiteLLM (``providers.supports_n``).
N_PROVIDERS = frozenset({"openai", "azure", "openai_like", "custom_openai", "hosted_vllm"})


def candidate_calls(model: str, candidates: int) -> int:
    """Calls an editor run with ``candidates`` makes: one with ``n``, else one each."""
    prefix = (model or "").partition("/")[0]
    return 1 if candidates <= 1 or prefix in N_PROVIDERS else candidates


def estimate_candidates(
    model: str, prompt_tokens: int, candidates: int, max_tokens: int | None = None
) -> Estimate:
    """Tokens and cost of one editor run offering ``candidates``: the prompt is paid once
    per call, and every candidate is an answer."""
    calls = candidate_calls(model, candidates)
    completion = (max_tokens or DEFAULT_COMPLETION_TOKENS) * max(candidates, 1)
    result = Estimate(pages=1, prompt_tokens=prompt_tokens * calls, completion_tokens=completion)
    price = price_per_token(model)
    if price is not None:
        result.cost = price[0] * result.prompt_tokens + price[1] * completion
    return result
