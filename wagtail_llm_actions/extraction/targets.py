"""Target fields: which field of a model can receive an answer, in which output mode."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.utils.translation import gettext as _
from taggit.managers import TaggableManager
from wagtail.fields import RichTextField, StreamField

from .paths import PathError, _is_page_internal, _verbose_name

TEXT = "text"


TAGS = "tags"


RICH_TEXT = "rich_text"


OUTPUT_MODES = (TEXT, TAGS, RICH_TEXT)


PAGE_TARGET_FIELDS = ("title", "seo_title", "search_description")


# Char fields whose values must follow a format, so free text cannot go into them.
_FORMATTED_CHAR_FIELDS = (models.SlugField, models.EmailField, models.URLField)


def _mode_label(mode: str) -> str:
    return {TEXT: _("Plain text"), TAGS: _("Tag list"), RICH_TEXT: _("Rich text")}[mode]


def get_target_field(model_class: type[models.Model], name: str) -> Any:
    """The model field called ``name`` (a single name, not a path), or PathError."""
    return _lookup_target(model_class, name, None)


def _lookup_target(model_class: type[models.Model], name: str, output_mode: str | None) -> Any:
    name = (name or "").strip()
    if not name:
        raise PathError(_("Enter the name of a field to write to."))
    if "." in name:
        raise PathError(
            _("“%(name)s” is a path; choose a single field: %(choices)s.")
            % {"name": name, "choices": ", ".join(_target_names(model_class, output_mode)) or "-"}
        )
    if name.startswith("_"):
        raise PathError(
            _("“%(path)s” is not allowed: names starting with “_” are private.") % {"path": name}
        )
    try:
        field = model_class._meta.get_field(name)
    except FieldDoesNotExist:
        field = None
    if field is None or not (
        getattr(field, "concrete", False) or isinstance(field, TaggableManager)
    ):
        raise PathError(
            _("“%(name)s” is not a field of %(model)s; choose one of: %(choices)s.")
            % {
                "name": name,
                "model": _verbose_name(model_class),
                "choices": ", ".join(_target_names(model_class, output_mode)) or "-",
            }
        )
    return field


def _target_problem(field: Any, output_mode: str) -> str | None:
    """Why ``field`` cannot receive an answer in ``output_mode``, or None if it can."""
    name = field.name
    params = {"name": name, "mode": _mode_label(output_mode)}
    if isinstance(field, TaggableManager):
        if output_mode != TAGS:
            return _("“%(name)s” holds tags; choose the “%(tags)s” output mode to write to it.") % {
                **params,
                "tags": _mode_label(TAGS),
            }
        return None
    if getattr(field, "primary_key", False):
        return _("“%(name)s” identifies the object and cannot be changed.") % params
    if _is_page_internal(field, PAGE_TARGET_FIELDS):
        return _("“%(name)s” is managed by Wagtail and cannot receive generated text.") % params
    if not field.editable:
        return _("“%(name)s” cannot be edited, so generated text cannot be written to it.") % params
    if isinstance(field, StreamField):
        return (
            _(
                "“%(name)s” is a StreamField; generated text can only be written to a text, rich "
                "text or tag field."
            )
            % params
        )
    if field.is_relation:
        return _("“%(name)s” links to other objects and cannot hold generated text.") % params
    if isinstance(field, RichTextField):
        if output_mode == TAGS:
            return (
                _(
                    "“%(name)s” is a rich text field; the “%(mode)s” output mode needs a tag field "
                    "or a plain text field."
                )
                % params
            )
        return None
    if isinstance(field, models.CharField | models.TextField) and not isinstance(
        field, _FORMATTED_CHAR_FIELDS
    ):
        if field.choices:
            return _("“%(name)s” only accepts a fixed set of choices.") % params
        if output_mode == RICH_TEXT:
            return (
                _(
                    "“%(name)s” is a plain text field; the “%(mode)s” output mode needs a "
                    "rich text field."
                )
                % params
            )
        return None
    kind = field.description % field.__dict__
    return _(
        "“%(name)s” (%(kind)s) cannot hold generated text; choose a text, rich text or tag field."
    ) % {**params, "kind": kind}


def _target_names(model_class: type[models.Model], output_mode: str | None = None) -> list[str]:
    """Fields that can receive an answer, in any mode or in ``output_mode``."""
    modes = [output_mode] if output_mode else list(OUTPUT_MODES)
    return [
        field.name
        for field in model_class._meta.get_fields()
        if (getattr(field, "concrete", False) or isinstance(field, TaggableManager))
        and any(_target_problem(field, mode) is None for mode in modes)
    ]


def describe_targets(model_class: type[models.Model]) -> list[tuple[str, str]]:
    """Fields of ``model_class`` that can receive an answer, with the modes each accepts."""
    result = []
    for field in model_class._meta.get_fields():
        if not (getattr(field, "concrete", False) or isinstance(field, TaggableManager)):
            continue
        modes = [mode for mode in OUTPUT_MODES if _target_problem(field, mode) is None]
        if modes:
            label = str(getattr(field, "verbose_name", field.name)).capitalize()
            kinds = ", ".join(str(_mode_label(mode)).lower() for mode in modes)
            result.append((field.name, f"{label} ({kinds})"))
    return result


def validate_target_field(model_class: type[models.Model], name: str, output_mode: str) -> None:
    """Raise PathError unless the field ``name`` can receive an answer in ``output_mode``."""
    if output_mode not in OUTPUT_MODES:
        raise PathError(
            _("“%(mode)s” is not an output mode; choose one of: %(choices)s.")
            % {"mode": output_mode, "choices": ", ".join(OUTPUT_MODES)}
        )
    field = _lookup_target(model_class, name, output_mode)
    problem = _target_problem(field, output_mode)
    if problem:
        raise PathError(problem)
