"""What every job's engine reads from a job's options, taken from the settings when the job is
created: the provider its calls are paced under, how many run at once, how often one is tried.
"""

from __future__ import annotations

from typing import Any

from ..conf import get_setting


def provider_prefix(model: str) -> str:
    prefix, sep, _name = (model or "").strip().partition("/")
    return prefix if sep else ""


def concurrency_for(model: str) -> int:
    """Concurrent calls allowed for ``model``: ``CONCURRENCY[model]``, ``[prefix]`` or ``["*"]``."""
    limits = get_setting("CONCURRENCY") or {}
    for key in ((model or "").strip(), provider_prefix(model), "*"):
        if key in limits:
            return max(1, int(limits[key]))
    return 4


def max_attempts() -> int:
    return max(1, int(get_setting("MAX_ATTEMPTS") or 1))


def engine_options(model: str, trigger: str) -> dict[str, Any]:
    """A new job's options for the engine: calls to ``model``, started by ``trigger``."""
    return {
        "provider": provider_prefix(model),
        "trigger": trigger,
        "concurrency": concurrency_for(model),
        "max_attempts": max_attempts(),
    }
