"""Write transactions that survive the database a site already has.

Every write of the app (a draft, an interaction, a job item's claim, lease or outcome) goes
through :func:`write`, which runs a function in one transaction and runs it *again* (never
more than the function itself: a model call is never inside) when the database says it is
busy:

* SQLite as Django configures it by default (rollback journal, deferred transactions, a
  5 s busy timeout) lets one writer at a time. Within a process, :func:`write` serialises
  write transactions with a process-wide lock, so threads of one worker never fight. Across
  processes, its transactions start with ``BEGIN IMMEDIATE`` (the write lock is taken first,
  so SQLite waits up to its timeout instead of failing at once, as a deferred transaction
  that read before writing does), and "database is locked" / "database table is locked" is
  retried with backoff and jitter.
* PostgreSQL: a serialization failure or a deadlock is retried the same way.

Nothing here needs WAL or any other setting from the site.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction
from django.db.utils import DatabaseError

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Attempts of one write transaction before the error is raised.
WRITE_ATTEMPTS = 8
#: First backoff in seconds (doubled each attempt, capped at MAX_BACKOFF, with jitter).
FIRST_BACKOFF = 0.05
MAX_BACKOFF = 2.0

_LOCK_MESSAGES = ("database is locked", "database table is locked", "database schema is locked")
#: PostgreSQL SQLSTATEs: serialization_failure, deadlock_detected, lock_not_available.
_RETRY_SQLSTATES = {"40001", "40P01", "55P03"}

#: Serialises write transactions on SQLite within this process (re-entrant: nested writes
#: of one thread go through).
_sqlite_write_lock = threading.RLock()


def is_busy_error(error: BaseException) -> bool:
    """Whether ``error`` means "the database is busy, try again", not a real failure."""
    if not isinstance(error, DatabaseError):
        return False
    text = str(error).lower()
    if isinstance(error, OperationalError) and any(m in text for m in _LOCK_MESSAGES):
        return True
    cause = error.__cause__
    code = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    return code in _RETRY_SQLSTATES


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1`` (1-based ``attempt``)."""
    delay = min(MAX_BACKOFF, FIRST_BACKOFF * (2 ** max(0, attempt - 1)))
    return delay * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not crypto


def is_sqlite(using: str = DEFAULT_DB_ALIAS) -> bool:
    return connections[using].vendor == "sqlite"


@contextlib.contextmanager
def serialised(using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Hold the process-wide write lock when the database is SQLite (else do nothing)."""
    if is_sqlite(using):
        with _sqlite_write_lock:
            yield
    else:
        yield


@contextlib.contextmanager
def atomic_write(using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """``transaction.atomic`` that, on SQLite, takes the write lock when it begins.

    Inside an outer transaction it is a plain savepoint (the outer one decides).
    """
    conn = connections[using]
    if conn.vendor != "sqlite" or conn.in_atomic_block:
        with transaction.atomic(using=using):
            yield
        return
    with _sqlite_write_lock:
        conn.ensure_connection()
        mode = getattr(conn, "transaction_mode", None)
        if mode in (None, "DEFERRED"):
            # Django's SQLite backend reads this attribute when it begins a transaction
            # (the OPTIONS["transaction_mode"] setting); only this block's BEGIN uses it.
            conn.transaction_mode = "IMMEDIATE"
        try:
            with transaction.atomic(using=using):
                conn.transaction_mode = mode
                yield
        finally:
            conn.transaction_mode = mode


def write(
    func: Callable[[], T],
    *,
    using: str = DEFAULT_DB_ALIAS,
    attempts: int = WRITE_ATTEMPTS,
    what: str = "write",
) -> T:
    """Run ``func()`` in one write transaction; retry it while the database is busy.

    ``func`` must be safe to run again (its transaction was rolled back). Called inside an
    outer transaction, ``func`` runs once: only the outermost transaction can be retried.
    """
    conn = connections[using]
    if conn.in_atomic_block:
        with atomic_write(using):
            return func()
    attempt = 1
    while True:
        try:
            with atomic_write(using):
                return func()
        except DatabaseError as e:
            if not is_busy_error(e) or attempt >= attempts:
                raise
            delay = backoff(attempt)
            logger.info(
                "Database busy during %s (attempt %s of %s): %s; retrying in %.2f s",
                what,
                attempt,
                attempts,
                e,
                delay,
            )
            time.sleep(delay)
            attempt += 1
