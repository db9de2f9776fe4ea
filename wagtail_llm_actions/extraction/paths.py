"""Source paths: parsing and validating dotted, StreamField-aware paths such as
``body.section.text``, and the paths worth offering in the admin.

Paths only ever name model fields and block names: no methods are called and no private
attribute is read, so a path written in the admin cannot reach anything else.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.utils.translation import gettext as _
from taggit.managers import TaggableManager
from wagtail import blocks
from wagtail.fields import StreamField

# Fields of wagtailcore.Page that hold content; the rest is tree and workflow bookkeeping.
PAGE_CONTENT_FIELDS = ("title", "slug", "seo_title", "search_description")


_MAX_BLOCK_DEPTH = 6


class PathError(ValueError):
    """A source path or target field that does not exist or cannot be used."""


def _verbose_name(model_class: type[models.Model]) -> str:
    return str(model_class._meta.verbose_name)


def _is_page_internal(field: models.Field, allowed: Iterable[str]) -> bool:
    """True for wagtailcore.Page bookkeeping fields (path, depth, live, locale …)."""
    from wagtail.models import Page

    return field.model is Page and field.name not in allowed


def _is_user_relation(field: Any) -> bool:
    related = getattr(field, "related_model", None)
    return related is not None and related is get_user_model()


def _is_source_field(field: Any) -> bool:
    """Whether a path may start with ``field`` (whatever comes after it)."""
    if isinstance(field, TaggableManager):
        return True
    if not getattr(field, "concrete", False) or field.name.startswith("_"):
        return False
    if field.is_relation:
        remote = field.remote_field
        return not getattr(remote, "parent_link", False) and not _is_user_relation(field)
    return True


def _source_fields(model_class: type[models.Model], *, listed: bool = False) -> list[Any]:
    """Fields a source path may start with; ``listed`` leaves out bookkeeping fields."""
    fields = [f for f in model_class._meta.get_fields() if _is_source_field(f)]
    if listed:
        fields = [
            f
            for f in fields
            if not _is_page_internal(f, PAGE_CONTENT_FIELDS)
            and not getattr(f, "primary_key", False)
            and (getattr(f, "editable", True) or isinstance(f, TaggableManager))
        ]
    return fields


def _get_field(model_class: type[models.Model], name: str, path: str) -> Any:
    """The source field ``name`` of ``model_class``, or a PathError listing the choices."""
    try:
        field = model_class._meta.get_field(name)
    except FieldDoesNotExist:
        field = None
    if field is not None and getattr(field, "concrete", False) and _is_user_relation(field):
        raise PathError(
            _("“%(path)s” cannot be used: it refers to user accounts.") % {"path": path}
        )
    if field is None or not _is_source_field(field):
        raise PathError(
            _("“%(path)s” is not a field of %(model)s; choose one of: %(choices)s.")
            % {
                "path": path,
                "model": _verbose_name(model_class),
                "choices": ", ".join(f.name for f in _source_fields(model_class, listed=True)),
            }
        )
    return field


def _split_path(path: str) -> list[str]:
    segments = (path or "").strip().split(".")
    if not all(segments):
        raise PathError(
            _("“%(path)s” is not a valid path; write names separated by dots, e.g. body.paragraph.")
            % {"path": path}
        )
    for i, segment in enumerate(segments):
        if segment.startswith("_"):
            raise PathError(
                _("“%(path)s” is not allowed: names starting with “_” are private.")
                % {"path": ".".join(segments[: i + 1])}
            )
    return segments


def _too_deep(path: str, name: str) -> PathError:
    return PathError(
        _("“%(path)s” is not valid: %(name)s has no parts to choose from.")
        % {"path": path, "name": name}
    )


def _validate_blocks(block: blocks.Block, segments: list[str], done: list[str]) -> None:
    """Check that ``segments`` name blocks or struct children below ``block``."""
    while segments:
        if isinstance(block, blocks.ListBlock):
            block = block.child_block
            continue
        name, segments = segments[0], segments[1:]
        parent = ".".join(done)
        done = [*done, name]
        if isinstance(block, blocks.BaseStreamBlock | blocks.BaseStructBlock):
            if name not in block.child_blocks:
                if isinstance(block, blocks.BaseStreamBlock):
                    message = _(
                        "“%(path)s” is not a block of %(parent)s; choose one of: %(choices)s."
                    )
                else:
                    message = _(
                        "“%(path)s” is not a part of %(parent)s; choose one of: %(choices)s."
                    )
                raise PathError(
                    message
                    % {
                        "path": ".".join(done),
                        "parent": parent,
                        "choices": ", ".join(block.child_blocks),
                    }
                )
            block = block.child_blocks[name]
        else:
            raise _too_deep(".".join(done), parent)


def _validate(model_class: type[models.Model], segments: list[str], done: list[str]) -> None:
    name, rest = segments[0], segments[1:]
    done = [*done, name]
    path = ".".join(done)
    field = _get_field(model_class, name, path)
    if not rest:
        return
    if isinstance(field, StreamField):
        _validate_blocks(field.stream_block, rest, done)
    elif field.many_to_one or field.one_to_one:
        _validate(field.related_model, rest, done)
    else:
        raise _too_deep(f"{path}.{rest[0]}", name)


def validate_source_path(model_class: type[models.Model], path: str) -> None:
    """Raise PathError unless ``path`` names readable content of ``model_class``."""
    _validate(model_class, _split_path(path), [])


def _block_paths(block: blocks.Block, depth: int = 0) -> Iterator[str]:
    if depth > _MAX_BLOCK_DEPTH:
        return
    if isinstance(block, blocks.ListBlock):
        yield from _block_paths(block.child_block, depth + 1)
    elif isinstance(block, blocks.BaseStreamBlock | blocks.BaseStructBlock):
        for name, child in block.child_blocks.items():
            yield name
            yield from (f"{name}.{sub}" for sub in _block_paths(child, depth + 1))


def describe_paths(model_class: type[models.Model]) -> list[str]:
    """Source paths of ``model_class`` worth offering, in field declaration order."""
    paths: list[str] = []
    for field in _source_fields(model_class, listed=True):
        paths.append(field.name)
        if isinstance(field, StreamField):
            paths.extend(f"{field.name}.{sub}" for sub in _block_paths(field.stream_block))
        elif field.many_to_one or field.one_to_one:
            paths.extend(
                f"{field.name}.{sub.name}"
                for sub in _source_fields(field.related_model, listed=True)
                if not sub.is_relation
            )
    return paths
