"""Draft revisions that change only the fields an action wrote.

Wagtail's ``save_revision()`` stores the object's ``serializable_data()``. A StreamField nobody
has read serialises exactly as it was stored; once its blocks are read (a run reads its
source, a site's ``clean()`` may read the body) Wagtail serialises it again through each
block's ``get_prep_value()``, which adds what the stored data lacks: the default of a child
block added to a StructBlock after the content was saved, TableBlock's
``table_header_choice``, TypedTableBlock's ``caption``, ids of ListBlock items stored in the
old format. Wagtail's revision comparison then lists the field as changed, though nobody
changed it. (TableBlock even writes its default into the stored dict it reads.)

So the object a run reads and writes comes from :func:`latest_as_object`, which remembers how
each of its StreamFields is stored (and never hands out the caller's own object, whose blocks
the run would read), and the draft is saved within :func:`stored_form_kept`, which puts that
stored form back into the revision's content for every StreamField the action did not write.
Every other key is Wagtail's own serialisation: other fields serialise the same whether read
or not, and Wagtail's bookkeeping keys (latest revision, draft title, comments…) are set as a
plain ``save_revision()`` sets them.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Collection, Iterator
from typing import Any

from django.db import models
from wagtail.fields import StreamField

__all__ = ["latest_as_object", "replace_stored", "stored_form_kept", "stored_streams"]

#: Instance attribute holding ``{field name: stored JSON}`` of an object's StreamFields.
_STORED = "_llm_actions_stored_streams"
#: Instance attribute naming the StreamFields whose stored JSON a run patched in place.
_PATCHED = "_llm_actions_patched_streams"


@functools.cache
def _stream_fields(model: type[models.Model]) -> tuple[StreamField, ...]:
    return tuple(f for f in model._meta.concrete_fields if isinstance(f, StreamField))


def _stored_form(obj: models.Model) -> dict[str, str]:
    """Each StreamField of ``obj`` as a revision stores it (blocks not read: as loaded)."""
    return {field.name: field.value_to_string(obj) for field in _stream_fields(type(obj))}


def stored_streams(obj: Any) -> dict[str, str]:
    """What :func:`latest_as_object` remembered for ``obj`` (empty for any other object)."""
    return dict(getattr(obj, "__dict__", {}).get(_STORED) or {})


def _copy(obj: models.Model, stored: dict[str, str]) -> models.Model:
    """``obj`` with StreamField values of its own, loaded again from ``stored`` (no query):
    reading the copy's blocks leaves ``obj``'s as they were."""
    working = copy.copy(obj)  # Django copies the row state and its caches
    for cached in ("specific", "specific_deferred"):  # would point back at ``obj``
        working.__dict__.pop(cached, None)
    for field in _stream_fields(type(obj)):
        value = getattr(obj, field.attname)
        if getattr(value, "raw_text", None) is None:  # not legacy non-JSON text: keep that
            setattr(working, field.attname, field.to_python(stored[field.name]))
    return working


def latest_as_object(obj: Any) -> Any:
    """``obj.get_latest_revision_as_object()``, remembering how its StreamFields are stored.

    Where Wagtail answers with ``obj`` itself (a page without unpublished changes: the live
    row), a copy is returned instead, so the caller's object is never read through.
    """
    working = obj.get_latest_revision_as_object()
    if not isinstance(working, models.Model):
        return working
    stored = _stored_form(working)
    if working is obj:
        working = _copy(obj, stored)
    working.__dict__[_STORED] = stored
    return working


def replace_stored(obj: models.Model, name: str, stored: str) -> None:
    """Give ``obj``'s StreamField ``name`` the stored JSON ``stored`` (a patch of the JSON it
    was loaded from, changing only what was written): the object's value is loaded from it,
    and the draft stores it as it is, even though the field is written."""
    field = obj._meta.get_field(name)
    setattr(obj, field.attname, field.to_python(stored))
    if _STORED not in obj.__dict__:
        obj.__dict__[_STORED] = _stored_form(obj)
    obj.__dict__[_STORED][name] = stored
    obj.__dict__.setdefault(_PATCHED, set()).add(name)


def stored_json(obj: models.Model, name: str) -> str:
    """The stored JSON of ``obj``'s StreamField ``name``: as loaded, if remembered."""
    remembered = stored_streams(obj).get(name)
    if remembered is not None:
        return remembered
    return obj._meta.get_field(name).value_to_string(obj)


@contextlib.contextmanager
def stored_form_kept(obj: Any, written: Collection[str]) -> Iterator[None]:
    """While a revision of ``obj`` is saved, its content holds every StreamField not in
    ``written`` as it was stored when :func:`latest_as_object` loaded ``obj``."""
    patched = getattr(obj, "__dict__", {}).get(_PATCHED) or set()
    kept = {
        name: value
        for name, value in stored_streams(obj).items()
        if name not in written or name in patched
    }
    if not kept:
        yield
        return
    serialise = obj.serializable_data

    def serializable_data() -> dict:
        data = serialise()
        data.update({name: value for name, value in kept.items() if name in data})
        return data

    obj.serializable_data = serializable_data  # what save_revision() stores as the content
    try:
        yield
    finally:
        obj.__dict__.pop("serializable_data", None)
