"""Prepare a run: read the content, fill the prompt's variables, render the messages, hash.

No model is called and nothing is saved here (``prepare`` is also what estimates, dry runs
and "unchanged since the last write" use).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext as _
from wagtail.models import Page

from ..conf import get_setting
from ..exceptions import ConfigurationProblem, SourceEmpty
from ..extraction import PathError, extract_text
from ..extraction import _truncate as cut_text
from ..models import LLMAction, LongContent
from ..templating import (
    BUILTIN_VARIABLES,
    MissingVariableError,
    TemplateSyntaxError,
    is_step_variable,
    render_template,
    step_name_of,
    template_variables,
)
from . import stored_form

if TYPE_CHECKING:
    from .calls.plan import PlannedRequest


@dataclass
class PreparedRun:
    """Everything needed to call the model, built from an object without any I/O."""

    action: LLMAction
    obj: Any
    messages: list[dict[str, str]]
    source_text: str
    #: Hash of the extracted texts alone.
    source_hash: str
    truncated: bool
    variables: dict[str, str] = field(default_factory=dict)
    #: Dry runs: the first call's request (see :meth:`LLMService.dry_run`).
    planned: PlannedRequest | None = None
    #: Dry runs: why that request cannot be built (the run would stop there), if it cannot.
    request_error: str = ""
    #: Hash of everything that shapes the request and what is done with its answer
    #: (:func:`inputs_hash`); stored on the interaction, compared by :mod:`..unchanged`.
    inputs_hash: str = ""
    #: Alt text of a page's images: the image blocks to write (see :mod:`.image_blocks`).
    image_spots: list = field(default_factory=list)


def working_copy(obj: Any) -> tuple[Any, Any]:
    """The object as its latest revision has it, and that revision.

    Never ``obj`` itself (see :func:`stored_form.latest_as_object`): the copy remembers how
    its StreamFields are stored, so the draft saved from it keeps them so.
    """
    if isinstance(obj, Page):
        obj = obj.specific
    if hasattr(obj, "get_latest_revision_as_object"):
        revision = obj.get_latest_revision() if hasattr(obj, "get_latest_revision") else None
        return stored_form.latest_as_object(obj), revision
    raise ConfigurationProblem(
        _("%(object)s keeps no revisions, so an answer cannot be saved as a draft.")
        % {"object": obj}
    )


def prepare(action: LLMAction, obj: Any, steps: dict[str, str] | None = None) -> PreparedRun:
    """Extract, render and hash; raises ``SourceEmpty``/``ConfigurationProblem``."""
    if getattr(action, "runs_on_image_blocks", False):
        from .image_blocks import prepare_image_blocks

        return prepare_image_blocks(action, obj)
    values, truncated, sources = variables_for(action, obj, steps)
    if not values["source"].strip():
        raise SourceEmpty(
            _("There is no content in “%(path)s” to send to the model.")
            % {"path": action.source_field}
        )
    messages = render_messages(action, values)
    return PreparedRun(
        action=action,
        obj=obj,
        messages=messages,
        source_text=values["source"],
        source_hash=content_hash(sources),
        truncated=truncated,
        variables=values,
        inputs_hash=inputs_hash(action, messages, values),
    )


def variables_for(
    action: LLMAction, obj: Any, steps: dict[str, str] | None = None
) -> tuple[dict[str, str], bool, list[str]]:
    """Values for every variable the prompt uses, whether any was cut, and source texts.

    ``steps`` holds earlier pipeline steps' answers by step name (``{steps.<name>}``),
    cut at ``MAX_SOURCE_CHARS`` as a source is (the cut is recorded). A map-reduce action
    reads its source in full (it is split later, not cut).
    """
    max_chars = get_setting("MAX_SOURCE_CHARS")
    try:
        names = template_variables(action.prompt.template)
    except TemplateSyntaxError as e:
        raise ConfigurationProblem(str(e)) from e
    values, truncated, sources = _step_values(names, steps, max_chars)
    map_reduce = action.long_content == LongContent.MAP_REDUCE
    paths = [("source", action.source_field)] + [
        (name, name)
        for name in names
        if name not in BUILTIN_VARIABLES and not is_step_variable(name)
    ]
    read: dict[tuple[str, int | None], Any] = {}  # {body} is usually the source again
    for name, path in paths:
        limit = None if map_reduce and path == action.source_field else max_chars
        extracted = read.get((path, limit))
        if extracted is None:
            try:
                extracted = read[path, limit] = extract_text(obj, path, max_chars=limit)
            except PathError as e:
                raise ConfigurationProblem(str(e)) from e
        values[name] = extracted.text
        truncated = truncated or extracted.truncated
        sources.append(extracted.text)
    values.update(_page_values(action, obj, names))
    return values, truncated, sources


def _step_values(
    names: list[str], steps: dict[str, str] | None, max_chars: int | None
) -> tuple[dict[str, str], bool, list[str]]:
    """The ``{steps.<name>}`` values among ``names``: earlier pipeline steps' answers."""
    values: dict[str, str] = {}
    truncated = False
    sources: list[str] = []
    for name in names:
        try:
            step = step_name_of(name)
        except TemplateSyntaxError as e:
            raise ConfigurationProblem(str(e)) from e
        if step is None:
            continue
        if steps is None or step not in steps:
            raise ConfigurationProblem(
                _(
                    "The prompt uses {%(name)s}, the answer of a pipeline step, but no "
                    "earlier step of this run is called “%(step)s”."
                )
                % {"name": name, "step": step}
            )
        # An earlier answer is capped like the source (a runaway answer of megabytes
        # would otherwise be sent whole to every later step).
        answer = steps[step]
        if max_chars is not None and len(answer) > max_chars:
            answer = cut_text(answer, max_chars)
            truncated = True
        values[name] = answer
        sources.append(answer)
    return values, truncated, sources


def _page_values(action: LLMAction, obj: Any, names: list[str]) -> dict[str, str]:
    """``{title}``, ``{url}``, ``{locale}`` and ``{context}``."""
    # {url} and {locale} cost queries (site, locale): read only for a prompt that uses them.
    used = set(names)
    if action.long_content == LongContent.MAP_REDUCE:
        from ..models import DEFAULT_REDUCE_PROMPT

        try:
            used.update(template_variables(action.reduce_prompt.strip() or DEFAULT_REDUCE_PROMPT))
        except TemplateSyntaxError as e:
            raise ConfigurationProblem(str(e)) from e
    locale = getattr(obj, "locale", None) if "locale" in used else None
    return {
        "title": getattr(obj, "title", "") or str(obj),
        "url": page_url(obj) if "url" in used else "",
        "locale": getattr(locale, "language_code", "") if locale else "",
        "context": action.context_message or "",
    }


def page_url(obj: Any) -> str:
    try:
        return (obj.get_full_url() if hasattr(obj, "get_full_url") else "") or ""
    except Exception:  # an unsaved or unrouted page has no URL  # noqa: BLE001
        return ""


def render_messages(action: LLMAction, values: dict[str, str]) -> list[dict[str, str]]:
    """The messages of a call: the system and context messages, then the rendered prompt."""
    try:
        prompt = render_template(action.prompt.template, values)
    except (MissingVariableError, TemplateSyntaxError) as e:
        raise ConfigurationProblem(str(e)) from e
    messages: list[dict[str, str]] = []
    if action.system_message.strip():
        messages.append({"role": "system", "content": action.system_message.strip()})
    uses_context = "context" in template_variables(action.prompt.template)
    if action.context_message.strip() and not uses_context:
        messages.append({"role": "system", "content": action.context_message.strip()})
    messages.append({"role": "user", "content": prompt})
    return messages


def content_hash(texts: list[str]) -> str:
    """Stable hash of the extracted content a run depends on."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def inputs_hash(
    action: LLMAction, messages: list[dict[str, str]], variables: dict[str, str] | None = None
) -> str:
    """Stable hash of what a run of ``action`` sends and what it does with the answer.

    The rendered messages (system and context messages, the prompt's text with every variable
    filled: source, ``{title}``, ``{url}``, ``{locale}``, ``{context}``, step answers), the model,
    API base and parameters, the fields written and how (output mode, the structured mapping
    in its order), and for map-reduce what decides the parts and how they are combined (the
    window, the reduce prompt and the page ``variables`` it may use). Not the key, timeout or
    fallback models: they do not change what the model is asked.
    """
    extra = action.extra_params if isinstance(action.extra_params, dict) else {}
    mapping = action.output_fields if action.is_structured else {}
    shape: dict[str, Any] = {
        "messages": messages,
        "model": (action.model or "").strip(),
        "api_base": (action.api_base or "").strip(),
        "temperature": action.temperature,
        "max_tokens": action.max_tokens,
        "extra": extra,
        "target": action.target_field if not mapping else "",
        "output_mode": action.output_mode if not mapping else "",
        "fields": [[str(k), str(v)] for k, v in mapping.items()],
        "long_content": action.long_content,
    }
    if action.long_content == LongContent.MAP_REDUCE:
        shape["context_window"] = action.context_window
        shape["reduce_prompt"] = (action.reduce_prompt or "").strip()
        shape["reduce_variables"] = {
            name: (variables or {}).get(name, "") for name in ("title", "url", "locale", "context")
        }
    data = json.dumps(shape, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()
