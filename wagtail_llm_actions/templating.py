"""Prompt templates with ``{variable}`` placeholders, parsed and rendered without ``str.format``.

::

    render_template("Summarise {body.paragraph} for {title}.", {...})

Placeholders are dotted names (``{body.section.text}``); ``{{`` and ``}}`` are literal braces.
Anything else between braces (indexing, conversions, format specs, private names) is
refused, and values are inserted as they are, never interpreted again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.utils.translation import gettext as _

__all__ = [
    "BUILTIN_VARIABLES",
    "MissingVariableError",
    "TemplateSyntaxError",
    "Variable",
    "parse_template",
    "is_step_variable",
    "render_template",
    "step_name_of",
    "template_variables",
]

BUILTIN_VARIABLES = frozenset({"title", "url", "locale", "context", "source"})

#: Pipeline steps' answers are ``{steps.<name>}``: one namespace, one level, no attributes.
STEP_NAMESPACE = "steps"

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*")


class TemplateSyntaxError(ValueError):
    """A template that cannot be parsed; ``line`` and ``column`` count from 1."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


class MissingVariableError(ValueError):
    """Variables the template uses but no value was given for, in ``names``."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = list(names)
        super().__init__(
            _("The prompt uses variables that have no value: %(names)s.")
            % {"names": ", ".join(f"{{{name}}}" for name in self.names)}
        )


@dataclass(frozen=True)
class Variable:
    """A ``{name}`` placeholder."""

    name: str


Segment = str | Variable


def _error(template: str, index: int, message: str, **params: object) -> TemplateSyntaxError:
    line = template.count("\n", 0, index) + 1
    column = index - (template.rfind("\n", 0, index) + 1) + 1
    text = _("%(problem)s (line %(line)s, column %(column)s)") % {
        "problem": message % params if params else message,
        "line": line,
        "column": column,
    }
    return TemplateSyntaxError(text, line, column)


def _check_name(template: str, index: int, name: str) -> None:
    """Raise TemplateSyntaxError unless the placeholder at ``index`` holds a dotted name."""
    placeholder = f"{{{name}}}"
    if not name.strip():
        raise _error(
            template, index, _("Empty placeholder “{}”; write {{ and }} for literal braces.")
        )
    head = re.match(r"[^!:\[]*", name).group()
    if head != name and re.fullmatch(r"[\w.]+", head):
        # a name followed by str.format syntax
        problems = {
            "!": _("Conversions such as “!r” are not allowed in “%(p)s”."),
            ":": _("Format specifications such as “:>10” are not allowed in “%(p)s”."),
            "[": _("Indexing with “[ ]” is not allowed in “%(p)s”."),
        }
        raise _error(template, index, problems[name[len(head)]], p=placeholder)
    if any(part.startswith("_") for part in name.split(".")):
        raise _error(
            template,
            index,
            _("Names starting with “_” are private and not allowed in “%(p)s”."),
            p=placeholder,
        )
    if name[0].isdigit():
        raise _error(
            template,
            index,
            _("Positional placeholders such as “%(p)s” are not allowed; use a name."),
            p=placeholder,
        )
    if not _NAME.fullmatch(name):
        raise _error(
            template,
            index,
            _(
                "“%(p)s” is not a valid placeholder: use letters, digits, underscores and dots, "
                "e.g. {body.paragraph}; write {{ and }} for literal braces."
            ),
            p=placeholder,
        )


def parse_template(template: str) -> list[Segment]:
    """Split ``template`` into literal strings and ``Variable`` placeholders."""
    segments: list[Segment] = []
    literal: list[str] = []
    i, length = 0, len(template)
    while i < length:
        char = template[i]
        if char == "{" and template.startswith("{{", i):
            literal.append("{")
            i += 2
        elif char == "}" and template.startswith("}}", i):
            literal.append("}")
            i += 2
        elif char == "}":
            raise _error(template, i, _("Unmatched “}”; write }} for a literal brace."))
        elif char == "{":
            end = i + 1
            while end < length and template[end] not in "{}":
                end += 1
            if end == length or template[end] == "{":
                raise _error(template, i, _("Unclosed “{”; write {{ for a literal brace."))
            name = template[i + 1 : end]
            _check_name(template, i, name)
            if literal:
                segments.append("".join(literal))
                literal = []
            segments.append(Variable(name))
            i = end + 1
        else:
            literal.append(char)
            i += 1
    if literal:
        segments.append("".join(literal))
    return segments


def template_variables(template: str) -> list[str]:
    """Names of the variables ``template`` uses, in order of first use."""
    names = (s.name for s in parse_template(template) if isinstance(s, Variable))
    return list(dict.fromkeys(names))


def render_template(template: str, variables: Mapping[str, object]) -> str:
    """Substitute ``variables`` into ``template``; MissingVariableError lists absent ones."""
    segments = parse_template(template)
    missing = [s.name for s in segments if isinstance(s, Variable) and s.name not in variables]
    if missing:
        raise MissingVariableError(dict.fromkeys(missing))
    return "".join(s if isinstance(s, str) else str(variables[s.name]) for s in segments)


def step_name_of(name: str) -> str | None:
    """``"outline"`` for ``{steps.outline}``; None for any other variable.

    Raises :class:`TemplateSyntaxError` for ``{steps}`` alone or ``{steps.a.b}``: a step's
    answer is text, so nothing can be looked up inside it.
    """
    head, _sep, rest = name.partition(".")
    if head != STEP_NAMESPACE:
        return None
    if not rest or "." in rest:
        raise TemplateSyntaxError(
            _("“{%(name)s}” is not a step answer; write {steps.<step name>}, e.g. {steps.outline}.")
            % {"name": name}
        )
    return rest


def is_step_variable(name: str) -> bool:
    """Whether ``name`` is in the ``steps`` namespace (valid or not)."""
    return name == STEP_NAMESPACE or name.startswith(STEP_NAMESPACE + ".")
