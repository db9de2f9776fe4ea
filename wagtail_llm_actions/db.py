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

A commit is the expensive part of a write (plain SQLite syncs its journal to disk every
time; PostgreSQL its WAL). The bulk job engine's threads therefore write through a
:class:`WriteBatcher` (see :func:`batching`): one thread of the process runs the write
transactions that are waiting at that moment together, each in its own savepoint (one
failing rolls back only itself), under a single commit. The more threads write, the larger
the batches, and the commits per page fall.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from django.db import (
    DEFAULT_DB_ALIAS,
    InternalError,
    OperationalError,
    connections,
    transaction,
)
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, Value
from django.db.models.functions import Now
from django.db.transaction import TransactionManagementError
from django.db.utils import DatabaseError

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Attempts of one write transaction before the error is raised.
WRITE_ATTEMPTS = 8
#: First backoff in seconds (doubled each attempt, capped at MAX_BACKOFF, with jitter).
FIRST_BACKOFF = 0.05
MAX_BACKOFF = 2.0
#: Busy attempts of a whole batch before its requests are written one by one.
BATCH_ATTEMPTS = 3

_LOCK_MESSAGES = ("database is locked", "database table is locked", "database schema is locked")
#: PostgreSQL SQLSTATEs: serialization_failure, deadlock_detected, lock_not_available.
_RETRY_SQLSTATES = {"40001", "40P01", "55P03"}

#: Serialises write transactions on SQLite within this process (re-entrant: nested writes
#: of one thread go through).
_sqlite_write_lock = threading.RLock()


def db_in(seconds: float) -> ExpressionWrapper:
    """The database's clock plus ``seconds``: leases (a job item's, a coordinator's, provider
    slots, budget reservations) are set and compared on one clock, whichever host's clock is
    off."""
    return ExpressionWrapper(
        Now() + Value(datetime.timedelta(seconds=seconds), output_field=DurationField()),
        output_field=DateTimeField(),
    )


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


def is_retryable(error: BaseException) -> bool:
    """:func:`is_busy_error`, or a transaction an error inside it broke after the error was
    swallowed (a search-index update deadlocking on PostgreSQL, caught by the index code):
    the next query then fails with "An error occurred in the current transaction"; the whole
    transaction can run again."""
    if is_busy_error(error):
        return True
    text = str(error)
    if isinstance(error, TransactionManagementError):
        return "error occurred in the current transaction" in text
    return isinstance(error, InternalError) and "current transaction is aborted" in text


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


@contextlib.contextmanager
def no_savepoints(using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Inside a transaction, ``atomic`` blocks entered within this block take no savepoint.

    Wagtail's ``save_revision()`` and ``Page.save()`` are atomic: inside a write transaction
    each costs a ``SAVEPOINT`` and a ``RELEASE`` query. Where an error in them rolls back
    the whole write anyway (it reaches :func:`write`), the savepoints buy nothing; without
    them such an error marks the transaction for rollback, as Django does for an atomic
    block without a savepoint. Outside a transaction this does nothing.
    """
    conn = connections[using]
    if not conn.in_atomic_block or "_savepoint_allowed" in conn.__dict__:
        yield
        return
    # Shadows the backend's method on this connection object (one thread's) only.
    conn._savepoint_allowed = _no_savepoint
    try:
        yield
    finally:
        del conn._savepoint_allowed


def _no_savepoint() -> bool:
    return False


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
    batcher = getattr(_local, "batcher", None)
    if batcher is not None and batcher.using == using:
        return batcher.submit(func, what)
    attempt = 1
    while True:
        try:
            with atomic_write(using):
                return func()
        except DatabaseError as e:
            if not is_retryable(e) or attempt >= attempts:
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


def read(
    func: Callable[[], T],
    *,
    using: str = DEFAULT_DB_ALIAS,
    attempts: int = WRITE_ATTEMPTS,
    what: str = "read",
) -> T:
    """Run the reads of ``func()``, again while the database is busy.

    On SQLite a read can meet a writer's lock ("database is locked" once the busy timeout
    runs out; "database table is locked" at once with a shared cache, as in-memory test
    databases use). Inside a transaction ``func`` runs once (the transaction decides).
    """
    if connections[using].in_atomic_block:
        return func()
    attempt = 1
    while True:
        try:
            return func()
        except DatabaseError as e:
            if not is_busy_error(e) or attempt >= attempts:
                raise
            delay = backoff(attempt)
            logger.info("Database busy during %s (attempt %s): %s", what, attempt, e)
            time.sleep(delay)
            attempt += 1


# -- batched writes ------------------------------------------------------------------------------

_local = threading.local()


class _Request:
    __slots__ = ("func", "what", "done", "result", "error")

    def __init__(self, func: Callable[[], Any], what: str) -> None:
        self.func = func
        self.what = what
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class WriteBatcher:
    """A thread that runs the write transactions submitted to it in batches: the requests
    waiting when it starts a transaction (up to ``max_batch``) each run in a savepoint of
    one transaction, committed once. A request that raises rolls back its savepoint only
    and gets its exception; if the database is busy the whole batch runs again (each
    request is safe to run again, as :func:`write` requires)."""

    def __init__(self, using: str = DEFAULT_DB_ALIAS, *, max_batch: int = 32) -> None:
        self.using = using
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="llm-writer", daemon=True)
        self._thread.start()
        #: Transactions committed, requests written and seconds spent in write transactions,
        #: the database's write lock held on SQLite (for benchmarks).
        self.commits = 0
        self.requests = 0
        self.seconds = 0.0

    def submit(self, func: Callable[[], T], what: str = "write") -> T:
        """Run ``func`` in the next batch and return its result (or raise its error)."""
        request = _Request(func, what)
        self._queue.put(request)
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result

    def close(self) -> None:
        """Finish the waiting requests and stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is None:
                    break
                batch = [first]
                while len(batch) < self.max_batch:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stopping = True
                        break
                    batch.append(more)
                self._run(batch)
        finally:
            connections.close_all()

    def _run(self, batch: list[_Request]) -> None:
        started = time.perf_counter()
        try:
            self._run_batch(batch)
        finally:
            self.seconds += time.perf_counter() - started

    def _run_batch(self, batch: list[_Request]) -> None:
        attempt = 1
        while True:
            for request in batch:
                request.result, request.error = None, None
            try:
                with atomic_write(self.using):
                    for request in batch:
                        try:
                            with transaction.atomic(using=self.using):
                                request.result = request.func()
                        except DatabaseError as e:
                            if is_retryable(e):
                                raise
                            request.error = e
                        except BaseException as e:  # noqa: BLE001 - handed to the caller
                            request.error = e
            except DatabaseError as e:
                if is_retryable(e) and len(batch) > 1 and attempt >= BATCH_ATTEMPTS:
                    # One request may be the one that stays busy: run each on its own (with
                    # its own retries), so it fails alone and the others are written.
                    self._run_alone(batch)
                    break
                if is_retryable(e) and attempt < WRITE_ATTEMPTS:
                    delay = backoff(attempt)
                    logger.info(
                        "Database busy during %s writes (attempt %s): %s; retrying in %.2f s",
                        len(batch),
                        attempt,
                        e,
                        delay,
                    )
                    time.sleep(delay)
                    attempt += 1
                    continue
                for request in batch:
                    request.error = e
            except BaseException as e:  # noqa: BLE001 - the commit failed: every request fails
                for request in batch:
                    request.error = e
            else:
                self.commits += 1
                self.requests += len(batch)
            break
        for request in batch:
            request.done.set()

    def _run_alone(self, batch: list[_Request]) -> None:
        for request in batch:
            request.result, request.error = None, None
            try:
                request.result = write(request.func, using=self.using, what=request.what)
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                request.error = e
            else:
                self.commits += 1
                self.requests += 1


@contextlib.contextmanager
def batching(batcher: WriteBatcher | None) -> Iterator[None]:
    """Within the block, this thread's :func:`write` calls go through ``batcher``."""
    previous = getattr(_local, "batcher", None)
    _local.batcher = batcher
    try:
        yield
    finally:
        _local.batcher = previous
