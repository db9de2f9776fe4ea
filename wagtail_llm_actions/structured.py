"""Structured output: one JSON answer fills several fields.

::

    mapping = {"title": "seo_title", "tags": "tags"}      # output key -> field
    schema = build_schema(BlogPage, mapping)               # a JSON schema object
    data = parse_answer(text, mapping)                     # dict, or StructuredError
    written = apply_answer(page, mapping, data)            # {field: value}, or StructuredError

Each value goes through the same output rules as a single-field action (outputs.py: length,
tag parsing, rich text sanitising); the field's type decides the mode (a tag field takes a
list of tags, a rich text field HTML, any other field plain text). Nothing here does I/O.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.db import models
from django.utils.translation import gettext as _
from taggit.managers import TaggableManager
from wagtail.fields import RichTextField

from . import outputs
from .extraction import RICH_TEXT, TAGS, TEXT, PathError, get_target_field, validate_target_field

__all__ = [
    "StructuredError",
    "apply_answer",
    "build_schema",
    "field_mode",
    "json_instruction",
    "mapping_field_problems",
    "mapping_problems",
    "parse_answer",
    "repair_message",
    "response_format",
    "structured_request",
]

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(?P<body>.*?)\n?```$", re.DOTALL)


class StructuredError(ValueError):
    """A JSON answer that cannot be written. ``code``: "invalid_json", "schema_ignored",
    "invalid_value" or "truncated"."""

    def __init__(self, message: str, code: str = "invalid_json") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# -- the mapping -------------------------------------------------------------------------------


def mapping_problems(mapping: Any) -> list[str]:
    """What is wrong with a mapping regardless of page types: shape, keys, duplicate fields."""
    if not isinstance(mapping, dict):
        return [_('Output fields must be a JSON object such as {"title": "seo_title"}.')]
    problems: list[str] = []
    seen: dict[str, str] = {}
    for key, field_name in mapping.items():
        if not _KEY.match(str(key)):
            problems.append(
                _("“%(key)s” is not a usable output key: use letters, digits and underscores.")
                % {"key": key}
            )
        if not isinstance(field_name, str) or not field_name.strip():
            problems.append(_("The output key “%(key)s” names no field.") % {"key": key})
            continue
        if field_name in seen:
            problems.append(
                _("The field “%(field)s” is mapped twice (from “%(first)s” and “%(second)s”).")
                % {"field": field_name, "first": seen[field_name], "second": key}
            )
        seen[field_name] = str(key)
    return problems


def field_mode(model_class: type[models.Model], field_name: str) -> str:
    """The output mode a field's type calls for: tags, rich text or plain text."""
    field = get_target_field(model_class, field_name)
    if isinstance(field, TaggableManager):
        return TAGS
    if isinstance(field, RichTextField):
        return RICH_TEXT
    return TEXT


def mapping_field_problems(model_class: type[models.Model], mapping: dict) -> list[str]:
    """Mapped fields that ``model_class`` lacks or that cannot receive generated text."""
    problems: list[str] = []
    for key, field_name in mapping.items():
        try:
            validate_target_field(model_class, field_name, field_mode(model_class, field_name))
        except PathError as e:
            problems.append(_("Output key “%(key)s”: %(error)s") % {"key": key, "error": e})
    return problems


# -- the schema ----------------------------------------------------------------------------------


def _property_schema(model_class: type[models.Model], field_name: str) -> dict[str, Any]:
    field = get_target_field(model_class, field_name)
    label = str(getattr(field, "verbose_name", field_name) or field_name)
    mode = field_mode(model_class, field_name)
    if mode == TAGS:
        return {
            "type": "array",
            "items": {"type": "string", "maxLength": outputs.MAX_TAG_LENGTH},
            "maxItems": outputs.MAX_TAGS,
            "description": _("Tags for %(field)s.") % {"field": label},
        }
    schema: dict[str, Any] = {"type": "string"}
    if mode == RICH_TEXT:
        schema["description"] = _(
            "%(field)s as HTML using only p, b, i, a, ul, ol, li and h2-h4."
        ) % {"field": label}
    else:
        schema["description"] = _("%(field)s as plain text.") % {"field": label}
    limit = getattr(field, "max_length", None)
    if limit:
        schema["maxLength"] = int(limit)
    return schema


def build_schema(model_class: type[models.Model], mapping: dict) -> dict[str, Any]:
    """A JSON schema for an object with every output key, typed and limited by its field."""
    properties = {
        str(key): _property_schema(model_class, field_name) for key, field_name in mapping.items()
    }
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def response_format(schema: dict[str, Any], name: str = "page_fields") -> dict[str, Any]:
    """The OpenAI-style ``response_format`` asking for ``schema``."""
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": schema, "strict": True},
    }


def json_instruction(schema: dict[str, Any]) -> str:
    """The instruction appended to the prompt when the model cannot be given a schema."""
    return _(
        "Answer with only a JSON object, no other text, that matches this JSON schema:\n%(schema)s"
    ) % {"schema": json.dumps(schema, ensure_ascii=False)}


def structured_request(action: Any, model_class: type[models.Model], messages: list[dict]):
    """The first request of a run of ``action`` (an action that fills several fields) on
    ``messages``, and the schema it asks for.

    The schema goes as ``response_format`` to a model whose LiteLLM info says it takes one,
    else as an instruction appended to the last message. The run sends this request, and
    dry runs show it. Raises PathError for a mapped field ``model_class`` lacks, and the
    provider layer's errors (a key that is not set…) from ``build_request``.
    """
    from .providers import build_request, supports_response_schema

    schema = build_schema(model_class, action.output_fields)
    messages = [dict(m) for m in messages]
    request = build_request(action, messages)
    if supports_response_schema(request.model):
        request.response_format = response_format(schema)
    else:
        messages[-1]["content"] = f"{messages[-1]['content']}\n\n{json_instruction(schema)}"
    return request, schema


def repair_message(error: StructuredError, schema: dict[str, Any]) -> str:
    """The follow-up message asking the model to fix its answer."""
    return _(
        "Your answer could not be used: %(error)s Answer again with only a JSON object, no "
        "other text, that matches this JSON schema:\n%(schema)s"
    ) % {"error": error.message, "schema": json.dumps(schema, ensure_ascii=False)}


# -- reading and applying the answer -----------------------------------------------------------


def parse_answer(text: str, mapping: dict) -> dict[str, Any]:
    """The JSON object in ``text`` with exactly the mapped keys, or StructuredError."""
    text = (text or "").strip()
    fence = _FENCE.match(text)
    if fence:
        text = fence.group("body").strip()
    try:
        data = json.loads(text)
    except ValueError as e:
        raise StructuredError(
            _("The answer is not valid JSON (%(error)s).") % {"error": e}, code="invalid_json"
        ) from e
    if not isinstance(data, dict):
        raise StructuredError(_("The answer is JSON but not an object."), code="schema_ignored")
    expected = [str(key) for key in mapping]
    missing = [key for key in expected if key not in data]
    extra = [key for key in data if key not in expected]
    if missing:
        message = _("The answer lacks the keys %(missing)s.") % {"missing": ", ".join(missing)}
        if extra:
            message += " " + _("It has keys that were not asked for: %(extra)s.") % {
                "extra": ", ".join(extra)
            }
        raise StructuredError(message, code="schema_ignored")
    return {key: data[key] for key in expected}


def _as_text(key: str, value: Any, mode: str) -> str:
    if mode == TAGS and isinstance(value, list):
        if not all(isinstance(item, str) for item in value):
            raise StructuredError(
                _("“%(key)s” must be a list of strings.") % {"key": key}, code="invalid_value"
            )
        return ", ".join(value)
    if not isinstance(value, str):
        raise StructuredError(
            _("“%(key)s” must be a string.") % {"key": key}
            if mode != TAGS
            else _("“%(key)s” must be a list of strings.") % {"key": key},
            code="invalid_value",
        )
    return value


def apply_answer(
    obj: models.Model, mapping: dict, data: dict[str, Any], *, truncate: bool = False
) -> dict[str, str]:
    """Write every value of ``data`` to its field of ``obj`` through the output rules.

    Returns ``{field: value written}``. Every value is checked on a copy first, so a
    StructuredError leaves ``obj`` as it was.
    """
    model_class = type(obj)
    staged: list[tuple[str, str, str]] = []
    for key, field_name in mapping.items():
        mode = field_mode(model_class, field_name)
        text = _as_text(str(key), data[str(key)], mode)
        field = get_target_field(model_class, field_name)
        if not isinstance(field, TaggableManager):
            # Check on a scratch instance first: apply_output sets the value when it passes.
            scratch = model_class()
            try:
                outputs.apply_output(scratch, field_name, text, mode, truncate=truncate)
            except outputs.OutputError as e:
                raise StructuredError(
                    _("“%(key)s” (%(field)s): %(error)s")
                    % {"key": key, "field": field_name, "error": e.message},
                    code="invalid_value",
                ) from e
        elif not outputs.split_tags(outputs.clean_model_text(text)):
            raise StructuredError(
                _("“%(key)s” (%(field)s): %(error)s")
                % {
                    "key": key,
                    "field": field_name,
                    "error": _("The model returned an empty answer."),
                },
                code="invalid_value",
            )
        staged.append((str(key), field_name, text))
    written: dict[str, str] = {}
    for _key, field_name, text in staged:
        written[field_name] = outputs.apply_output(
            obj, field_name, text, field_mode(model_class, field_name), truncate=truncate
        )
    return written
