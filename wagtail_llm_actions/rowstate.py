"""What a run must know about the rows it reads and links to, one short SQL statement each.

A run asks the database two kinds of question on every call, before it calls the model and
again inside the transaction that writes the draft:

* **Can the object be written?** Wagtail's ``get_lock()`` answers, but on a page it makes two
  queries (a revision approved to go live; an active workflow state) that find nothing on
  almost every page. :func:`lock_flags` asks both in one statement; :func:`known_lock_state`
  hands the answers to Wagtail's own caches, so ``get_lock()`` (overrides and custom lock
  classes included) decides from them, querying only for what was found.
* **Do the rows an interaction links to still exist?** (A page, a revision, an action can be
  deleted while the model answers.) :func:`existing` asks for all of them at once, and can
  lock one row (the page) against deletion until the transaction ends; :func:`lock_flags`
  can ask the same in its statement.

The write transaction also reads the object's row again (:func:`read_row`): the ORM's query
for it is compiled once per model and connection, then only executed.

Through the ORM each of these is a query compiled anew on every run, which costs more than
the database's answer; these statements are plain SQL built from the models' metadata, for
SQLite, PostgreSQL, MySQL and Oracle alike.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model


def _exists_sql(connection, model: type[Model], where: list[str]) -> str:
    """``CASE WHEN EXISTS (SELECT 1 FROM <table> WHERE …) THEN 1 ELSE 0 END``."""
    table = connection.ops.quote_name(model._meta.db_table)
    # Names come from the models' metadata (quoted); values are always parameters.
    condition = " AND ".join(where)
    return f"CASE WHEN EXISTS (SELECT 1 FROM {table} WHERE {condition}) THEN 1 ELSE 0 END"  # noqa: S608


def _column(connection, model: type[Model], name: str) -> str:
    return connection.ops.quote_name(model._meta.get_field(name).column)


def existing(
    rows: Mapping[str, tuple[type[Model], Any]],
    *,
    lock: str | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> set[str]:
    """The names in ``rows`` (name → ``(model, pk)``) whose row exists, in one query.

    ``lock`` names one of them to lock against deletion until the transaction ends
    (``SELECT … FOR UPDATE`` where the database has it; SQLite's write transaction already
    excludes other writers).
    """
    if not rows:
        return set()
    connection = connections[using]
    quote = connection.ops.quote_name
    checks: list[str] = []
    params: list[Any] = []
    names = [name for name in rows if name != lock]
    for name in names:
        model, pk = rows[name]
        meta = model._meta
        checks.append(_exists_sql(connection, model, [f"{quote(meta.pk.column)} = %s"]))
        params.append(meta.pk.get_db_prep_value(pk, connection))
    if lock is None:
        sql = f"SELECT {', '.join(checks)}{connection.features.bare_select_suffix}"
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        return {name for name, found in zip(names, row, strict=True) if found}
    model, pk = rows[lock]
    meta = model._meta
    pk_column = quote(meta.pk.column)
    columns = ", ".join([pk_column, *checks])
    sql = f"SELECT {columns} FROM {quote(meta.db_table)} WHERE {pk_column} = %s"  # noqa: S608
    if connection.features.has_select_for_update:
        sql += " " + connection.ops.for_update_sql()
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, meta.pk.get_db_prep_value(pk, connection)])
        row = cursor.fetchone()
    if row is None:  # the locked row is gone: ask about the others on their own
        return existing({name: rows[name] for name in names}, using=using)
    return {lock} | {name for name, found in zip(names, row[1:], strict=True) if found}


@dataclass(frozen=True)
class LockFlags:
    """Whether rows exist that make Wagtail's ``get_lock()`` look further (None: not asked,
    the model has no such state)."""

    scheduled: bool | None
    in_workflow: bool | None
    #: The names of the ``exists`` rows found (None: none were asked).
    existing: frozenset[str] | None = None


def lock_flags(
    obj: Any,
    using: str = DEFAULT_DB_ALIAS,
    *,
    exists: Mapping[str, tuple[type[Model], Any]] | None = None,
) -> LockFlags | None:
    """Whether ``obj`` has a revision approved to go live and an active workflow state, the
    two queries of Wagtail's ``get_lock()``, asked in one statement (the same filters as
    ``obj.revisions`` and ``obj.workflow_states.active()``). None for an unsaved object or a
    model with neither, unless ``exists`` asks too: which of its rows (name → ``(model,
    pk)``, as :func:`existing` takes them) exist, in the same statement."""
    from wagtail.models import DraftStateMixin, Revision, WorkflowMixin, WorkflowState

    saved = getattr(obj, "pk", None) is not None
    draft_state = saved and isinstance(obj, DraftStateMixin)
    workflows = (
        saved
        and isinstance(obj, WorkflowMixin)
        and getattr(settings, "WAGTAIL_WORKFLOW_ENABLED", True)
    )
    if not (draft_state or workflows or exists):
        return None
    connection = connections[using]
    checks: list[str] = []
    params: list[Any] = []
    if draft_state or workflows:
        base_type = obj.get_base_content_type().pk
        object_id = str(obj.pk)
    if draft_state:
        checks.append(
            _exists_sql(
                connection,
                Revision,
                [
                    f"{_column(connection, Revision, 'base_content_type')} = %s",
                    f"{_column(connection, Revision, 'object_id')} = %s",
                    f"{_column(connection, Revision, 'approved_go_live_at')} IS NOT NULL",
                ],
            )
        )
        params += [base_type, object_id]
    if workflows:
        checks.append(
            _exists_sql(
                connection,
                WorkflowState,
                [
                    f"{_column(connection, WorkflowState, 'base_content_type')} = %s",
                    f"{_column(connection, WorkflowState, 'object_id')} = %s",
                    f"{_column(connection, WorkflowState, 'status')} IN (%s, %s)",
                ],
            )
        )
        params += [
            base_type,
            object_id,
            WorkflowState.STATUS_IN_PROGRESS,
            WorkflowState.STATUS_NEEDS_CHANGES,
        ]
    names = list(exists or ())
    for name in names:
        model, pk = exists[name]
        meta = model._meta
        pk_column = connection.ops.quote_name(meta.pk.column)
        checks.append(_exists_sql(connection, model, [f"{pk_column} = %s"]))
        params.append(meta.pk.get_db_prep_value(pk, connection))
    sql = f"SELECT {', '.join(checks)}{connection.features.bare_select_suffix}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = list(cursor.fetchone())
    scheduled = bool(row.pop(0)) if draft_state else None
    in_workflow = bool(row.pop(0)) if workflows else None
    found = frozenset(name for name, hit in zip(names, row, strict=True) if hit)
    return LockFlags(
        scheduled=scheduled, in_workflow=in_workflow, existing=found if exists else None
    )


def page_lock_flags(pages: list[Any], using: str = DEFAULT_DB_ALIAS) -> dict[Any, LockFlags]:
    """Page pk → :func:`lock_flags` of each of ``pages``, in two queries for any number of
    pages (the revisions approved to go live, the active workflow states): what Wagtail's
    ``get_lock()`` asks of each page, asked of all at once."""
    from wagtail.models import Revision, WorkflowState

    if not pages:
        return {}
    base_type = pages[0].get_base_content_type()  # every page's: Page's content type
    ids = [str(page.pk) for page in pages]
    scheduled = set(
        Revision.objects.using(using)
        .filter(base_content_type=base_type, object_id__in=ids, approved_go_live_at__isnull=False)
        .values_list("object_id", flat=True)
    )
    workflows = getattr(settings, "WAGTAIL_WORKFLOW_ENABLED", True)
    in_workflow = (
        set(
            WorkflowState.objects.using(using)
            .filter(
                base_content_type=base_type,
                object_id__in=ids,
                status__in=(WorkflowState.STATUS_IN_PROGRESS, WorkflowState.STATUS_NEEDS_CHANGES),
            )
            .values_list("object_id", flat=True)
        )
        if workflows
        else set()
    )
    return {
        page.pk: LockFlags(
            scheduled=str(page.pk) in scheduled,
            in_workflow=(str(page.pk) in in_workflow) if workflows else None,
        )
        for page in pages
    }


_MISSING = object()


@contextlib.contextmanager
def known_lock_state(obj: Any, flags: LockFlags | None) -> Iterator[None]:
    """Within this block, ``obj.get_lock()`` takes what ``flags`` found as known: no revision
    approved to go live (Wagtail's cached ``scheduled_revision`` is None), no active workflow
    (its prefetch cache ``_current_workflow_states`` is empty). What was found is left to
    Wagtail to read. The object's attributes are restored afterwards."""
    primed: dict[str, Any] = {}
    if flags is not None:
        if flags.scheduled is False:
            primed["scheduled_revision"] = None
        if flags.in_workflow is False:
            primed["_current_workflow_states"] = []
    saved = {name: obj.__dict__.get(name, _MISSING) for name in primed}
    obj.__dict__.update(primed)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is _MISSING:
                obj.__dict__.pop(name, None)
            else:
                obj.__dict__[name] = value


def get_lock(obj: Any, using: str = DEFAULT_DB_ALIAS, *, flags: LockFlags | None = None) -> Any:
    """``obj.get_lock()`` (Wagtail's lock object, or None) with one query instead of two;
    none with ``flags`` that :func:`lock_flags` gave for ``obj`` already."""
    from wagtail.models import LockableMixin

    if not isinstance(obj, LockableMixin):  # (DraftStateMixin's get_lock() needs it too)
        return None
    with known_lock_state(obj, flags if flags is not None else lock_flags(obj, using)):
        return obj.get_lock()


# -- reading a row again ----------------------------------------------------------------------


@dataclass(frozen=True)
class _RowReader:
    """A compiled ``SELECT`` of one row by primary key and how to turn its row into a model
    instance, as Django's ``ModelIterable`` does (converters included)."""

    model: type[Model]
    sql: str
    init_list: tuple[str, ...]
    converters: tuple[tuple[int, tuple, Any], ...]


#: Compiled readers per connection object (converters belong to one connection) and model.
_readers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_UNCACHEABLE = object()


def _compile_reader(queryset, pk: Any, connection) -> _RowReader | None:
    """The reader for ``queryset`` (filtered by ``pk`` only), or None if its query is not a
    plain one (select_related, annotations, deferred or composite fields, more parameters)."""
    compiler = queryset.query.get_compiler(connection=connection)
    sql, params = compiler.as_sql()
    klass_info = compiler.klass_info or {}
    columns = [column for column, _sql, _alias in compiler.select]
    prepped = queryset.model._meta.pk.get_db_prep_value(pk, connection)
    if (
        list(params) != [prepped]
        or klass_info.get("related_klass_infos")
        or compiler.annotation_col_map
        or klass_info.get("select_fields") != list(range(len(columns)))
        or compiler.has_composite_fields(columns)
        or queryset._known_related_objects
    ):
        return None
    converters = compiler.get_converters(columns)
    return _RowReader(
        model=klass_info["model"],
        sql=sql,
        init_list=tuple(column.target.attname for column in columns),
        converters=tuple((i, tuple(convs), expr) for i, (convs, expr) in converters.items()),
    )


def read_row(model: type[Model], pk: Any, *, lock: bool = False) -> Model | None:
    """``model._default_manager.filter(pk=pk).first()`` (``select_for_update()`` with
    ``lock``), or None: the same row and instance, without compiling the query each time."""
    from django.db import router

    using = router.db_for_write(model) if lock else router.db_for_read(model)
    connection = connections[using]
    by_model = _readers.setdefault(connection, {})
    reader = by_model.get((model, lock))
    if reader is None or reader is _UNCACHEABLE:
        queryset = model._default_manager.db_manager(using).filter(pk=pk).order_by()
        if lock:
            queryset = queryset.select_for_update()
        if reader is _UNCACHEABLE:
            return queryset.first()
        reader = _compile_reader(queryset, pk, connection)
        by_model[model, lock] = reader or _UNCACHEABLE
        if reader is None:
            return queryset.first()
    with connection.cursor() as cursor:
        cursor.execute(reader.sql, [model._meta.pk.get_db_prep_value(pk, connection)])
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row)
    for position, converters, expression in reader.converters:
        value = values[position]
        for converter in converters:
            value = converter(value, expression, connection)
        values[position] = value
    return reader.model.from_db(using, list(reader.init_list), values)


def update_row(obj: Model, names: tuple[str, ...]) -> None:
    """``obj.save(update_fields=names)`` for a row that exists, as one ``UPDATE`` whose SQL is
    built once per model, fields and connection. No ``pre_save``/``post_save`` signal is sent
    (nothing of this app listens to them for the rows it updates this way); fields whose
    values need SQL of their own (expressions, placeholders) go through ``save()``."""
    from django.db import DatabaseError, router

    model = type(obj)
    using = router.db_for_write(model, instance=obj)
    connection = connections[using]
    by_key = _readers.setdefault(connection, {})
    key = ("update", model, names)
    entry = by_key.get(key)
    if entry is None:
        meta = model._meta
        quote = connection.ops.quote_name
        fields = [meta.get_field(name) for name in names]
        if any(hasattr(field, "get_placeholder") for field in fields):
            entry = by_key[key] = _UNCACHEABLE
        else:
            sets = ", ".join(f"{quote(field.column)} = %s" for field in fields)
            table, pk_column = quote(meta.db_table), quote(meta.pk.column)
            sql = f"UPDATE {table} SET {sets} WHERE {pk_column} = %s"  # noqa: S608 - names quoted
            entry = by_key[key] = (sql, fields)
    values = None
    if entry is not _UNCACHEABLE:
        sql, fields = entry
        values = [
            field.get_db_prep_save(field.pre_save(obj, False), connection) for field in fields
        ]
        if any(hasattr(value, "resolve_expression") for value in values):
            values = None
    if values is None:
        obj.save(update_fields=names)
        return
    values.append(model._meta.pk.get_db_prep_value(obj.pk, connection))
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        if not cursor.rowcount:
            raise DatabaseError("Save with update_fields did not affect any rows.")
