"""The first request a run sends, built by the code the run uses (what dry runs show)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext as _

from ... import outputs
from ...models import LongContent
from ..prepare import PreparedRun
from . import map_reduce, structured
from .common import single_request


@dataclass
class PlannedRequest:
    """The first request a run sends, as the run builds it (what dry runs show)."""

    request: Any  # providers.CompletionRequest (the provider layer is imported lazily)
    #: How many calls send it: the candidates, for a model that takes no ``n``.
    calls: int = 1
    #: Map-reduce: the parts of the source (each a call with its messages; ``request`` is
    #: the first part's), then a call combining the answers. 0: the source is sent whole.
    parts: int = 0

    def parameters(self) -> list[tuple[str, Any]]:
        """The parameters that shape the answer, as sent (and as the interaction records
        them): model, temperature, max_tokens, n, response_format, and extra parameters."""
        sent = self.request.public_parameters()
        shown: list[tuple[str, Any]] = [
            ("model", sent["model"]),
            ("temperature", sent["temperature"]),
            ("max_tokens", sent["max_tokens"]),
            ("n", sent.get("n", 1)),
            ("response_format", sent.get("response_format")),
        ]
        if sent["extra_params"]:
            shown.append(("extra_params", sent["extra_params"]))
        return shown

    def parameters_as_text(self) -> list[tuple[str, str]]:
        """:meth:`parameters` for people: JSON values indented, unset ones said so."""
        shown = []
        for name, value in self.parameters():
            if value is None:
                text = _("none") if name == "response_format" else _("not set")
            elif isinstance(value, dict | list):
                text = json.dumps(value, indent=2, ensure_ascii=False)
            else:
                text = str(value)
            shown.append((name, text))
        return shown

    def notes(self) -> list[str]:
        """What else a run does with this request: several calls, or parts of the source."""
        notes = []
        if self.calls > 1:
            notes.append(
                _("The model takes no “n”: this request is sent %(calls)s times, once per answer.")
                % {"calls": self.calls}
            )
        if self.parts:
            notes.append(
                _(
                    "The source is split into %(parts)s parts: these are the first part's "
                    "messages. Each part is a call, then the answers are combined (in rounds "
                    "when they are too long to combine at once)."
                )
                % {"parts": self.parts}
            )
        return notes


def plan(prepared: PreparedRun, working_obj: Any, candidates: int = 1) -> PlannedRequest:
    """The first request a run of ``prepared`` sends (built by the code the run uses to
    build it, without calling anything), for a run asking for ``candidates`` answers.

    Raises ``ConfigurationProblem`` as the run would, and the provider layer's errors (a
    key that is not set, a refused extra parameter) from building the request.
    """
    action = prepared.action
    if action.is_structured:
        structured.check_whole(prepared)
        request, _schema = structured.request_for(prepared, type(working_obj))
        return PlannedRequest(request)
    max_chars = outputs.answer_max_chars(type(working_obj), action.target_field)
    parts = None
    if action.long_content == LongContent.MAP_REDUCE:
        parts = map_reduce.split_source(prepared)
    if parts:  # one candidate: each part is a call (as map_reduce makes them)
        messages = map_reduce.part_messages(prepared, parts[0])
        request = single_request(action, messages, None)
        request.max_tokens = map_reduce.reduce_plan(prepared).part_tokens  # as part_call sends
        return PlannedRequest(request, parts=len(parts))
    count = max(candidates or 1, 1)
    request = single_request(action, prepared.messages, max_chars, count)
    return PlannedRequest(request, calls=1 if request.n == count else count)
