"""Calling the model: one strategy a run, chosen once (:func:`choose`).

* :mod:`.single`: one field, one answer (the whole source, or :mod:`.map_reduce` parts and
  combining when it does not fit the model's context window);
* :mod:`.candidates`: one field, several answers to choose from;
* :mod:`.structured`: several fields from one JSON answer, with one repair;
* :mod:`.image_blocks`: the alt text of a page's image blocks, a vision call per image;
* :mod:`.common`: one recorded call, usage added up, cut-off answers refused;
* :mod:`.plan`: the first request, built without calling (dry runs);
* :mod:`.gate`: the one door every call goes through (response cache, budgets);
* :mod:`.resume`: map-reduce parts an unfinished run paid for, reused.

A strategy is ``strategy(working_obj, prepared, interaction)``: it calls the provider layer,
records the calls on the (unsaved) interaction and sets the answer on ``working_obj``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from ...models import LLMAction, LLMRun


def choose(
    action: LLMAction,
    *,
    candidates: int = 1,
    on_run_started: Callable[[LLMRun], None] | None = None,
) -> Callable[..., None]:
    """The strategy of a run of ``action`` asking for ``candidates`` answers;
    ``on_run_started(run)`` is called when a map-reduce run starts its run row."""
    from . import candidates as several
    from . import single, structured

    if action.runs_on_image_blocks:
        from .image_blocks import fill_alt_texts

        return fill_alt_texts
    if action.is_structured:
        return structured.fill_fields
    if candidates > 1:
        return functools.partial(
            several.fill_field, count=candidates, on_run_started=on_run_started
        )
    return functools.partial(single.fill_field, on_run_started=on_run_started)


__all__ = ["choose"]
