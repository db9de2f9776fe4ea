"""Worker helpers for tests: run queued django-q2 tasks in-process, or a real ``qcluster``.

In-process (same thread, same transaction as the test)::

    from tests.workers import drain
    enqueue_job(job, on_commit=False)
    drain()                      # dequeues from the ORM broker and runs each task here
    drain(broker=redis_broker()) # ...or from Redis

A real cluster in a subprocess, against a database the test shares (see
:func:`shared_database` and the ``shared_db`` fixture of ``tests/conftest.py``)::

    with QCluster(env) as cluster:
        ...
        cluster.kill()   # SIGKILL the whole process group
        cluster.start()  # and start again

Several hosts of one site: clusters with the same ``Q_NAME`` (one broker list, one
database), each with its own host identity (``HOST_ID``) and process group::

    hosts = [QCluster(env, host=f"host-{n}") for n in range(2)]

Subprocesses are started in their own process group, bounded in time and always killed.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


# -- in-process ----------------------------------------------------------------------------------


def _call(task: dict):
    func = task["func"]
    if isinstance(func, str):
        module, name = func.rsplit(".", 1)
        func = getattr(importlib.import_module(module), name)
    return func(*task.get("args", ()), **task.get("kwargs", {}))


def drain(broker=None, *, max_tasks: int = 100) -> list:
    """Run the tasks waiting in ``broker`` (default: the configured one) here, in order.

    Tasks queued by the tasks themselves run too, up to ``max_tasks``. Returns the results.
    """
    from django_q.brokers import get_broker
    from django_q.signing import SignedPackage

    broker = broker or get_broker()
    results = []
    while len(results) < max_tasks:
        if broker.queue_size() == 0:
            break
        batch = broker.dequeue()
        if not batch:
            break
        for ack_id, payload in batch:
            task = SignedPackage.loads(payload)
            results.append(_call(task))
            broker.acknowledge(ack_id)
    return results


def redis_available() -> bool:
    try:
        import redis

        return bool(redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping())
    except Exception:  # noqa: BLE001
        return False


def redis_broker(list_key: str | None = None):
    """A django-q2 Redis broker on a private list (deleted by :func:`delete_redis_broker`)."""
    from django_q.brokers.redis_broker import Redis
    from django_q.conf import Conf

    Conf.REDIS = REDIS_URL  # get_connection() reads it; tests restore nothing else
    return Redis(list_key=list_key or f"llm-test-{uuid.uuid4().hex[:8]}")


def delete_redis_broker(broker) -> None:
    with contextlib.suppress(Exception):
        broker.delete_queue()


# -- a database shared with subprocesses ---------------------------------------------------------


@contextlib.contextmanager
def shared_database(tmp_path: Path) -> Iterator[dict]:
    """Point Django's default connection at a database other threads and processes can use.

    Use with pytest-django's ``transactional_db``. On PostgreSQL (``DATABASE_URL``) that is
    the test database itself. On SQLite the in-memory test database is copied into a file
    that stays a *plain* SQLite database, as Django creates it for a site: rollback journal
    (no WAL), deferred transactions, the default 5 s timeout. Threads started by the test
    then open their own connections to that file (as a real site's threads and workers do);
    the test's connection uses the file and switches back afterwards.

    Yields the environment variables for a subprocess (see ``tests/qcluster_settings.py``).
    """
    from django.db import connection

    if connection.vendor != "sqlite":
        yield {"LLM_TEST_DB_NAME": connection.settings_dict["NAME"]}
        return
    path = tmp_path / "shared.sqlite3"
    connection.ensure_connection()
    memory = connection.connection
    target = sqlite3.connect(str(path))
    memory.backup(target)
    mode = target.execute("PRAGMA journal_mode").fetchone()[0]
    target.close()
    assert mode == "delete", f"the shared test database must be plain SQLite, not {mode}"
    saved_settings = dict(connection.settings_dict)
    saved_options = dict(saved_settings.get("OPTIONS") or {})
    connection.connection = None
    # The settings dict is shared with every thread's new connection: they open the file too.
    connection.settings_dict["NAME"] = str(path)
    connection.settings_dict["OPTIONS"] = {}
    try:
        yield {"LLM_TEST_SQLITE": str(path)}
    finally:
        with contextlib.suppress(Exception):
            if connection.connection is not None:
                connection.connection.close()
        connection.connection = memory
        connection.settings_dict["NAME"] = saved_settings["NAME"]
        connection.settings_dict["OPTIONS"] = saved_options


# -- a real qcluster -----------------------------------------------------------------------------


class QCluster:
    """``manage.py qcluster`` in a subprocess with ``tests.qcluster_settings``."""

    def __init__(self, env: dict, *, log_path: Path | None = None, host: str = "") -> None:
        self.host = host
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.qcluster_settings",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "sandbox")]),
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            **{k: str(v) for k, v in env.items()},
        }
        if host:
            self.env["LLM_HOST_ID"] = host
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self._log = None
        self.killed_at: float | None = None

    def start(self) -> QCluster:
        if self.log_path is not None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in kill()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "django", "qcluster"],
            cwd=str(ROOT),
            env=self.env,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
            start_new_session=True,  # its own process group: kill() reaches every worker
        )
        return self

    def log_text(self) -> str:
        """What the cluster logged so far (with ``log_path``)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def kill(self) -> None:
        """SIGKILL the cluster and all its processes (no cleanup runs in them)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        #: time.monotonic() once the signal was sent: the cluster runs no code after it.
        self.killed_at = time.monotonic()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, then SIGKILL if it does not stop in time."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def __enter__(self) -> QCluster:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.kill()


def wait_for(predicate, *, timeout: float, interval: float = 0.2, message: str = "") -> None:
    """Poll ``predicate()`` until it is true; fail the test after ``timeout`` seconds."""
    import pytest

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    if predicate():
        return
    pytest.fail(message or f"condition not met within {timeout} s")


# -- killing a cluster mid-job -------------------------------------------------------------------


def orm_broker(name: str):
    """django-q2's ORM broker of the queue ``name``."""
    from django_q.brokers.orm import ORM

    return ORM(list_key=name)


def cluster_name(prefix: str, monkeypatch) -> str:
    """A new cluster (queue) name; the tasks this process queues are signed with it."""
    from django_q.conf import Conf

    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(Conf, "PREFIX", name)
    return name


def kill_after_answer_env(base: dict, name: str, marker: Path) -> dict:
    """The env of a cluster (two workers, one call at a time, 2 s leases) whose worker
    SIGKILLs itself right after it commits an answer, writing its id to ``marker``
    (``tests/crashhook``)."""
    return {
        **base,
        "Q_NAME": name,
        "Q_WORKERS": "2",
        "LLM_LEASE_SECONDS": "2",
        "LLM_CONCURRENCY": "1",
        "LLM_TEST_KILL_AFTER_ANSWER": str(marker),
    }


@contextlib.contextmanager
def cluster_running(env: dict, log: Path, broker, *, delete=None) -> Iterator[QCluster]:
    """A :class:`QCluster` of ``env`` started (its output in ``log``); on a failure the log's
    tail is printed; always killed at the end, and the broker's queue deleted (``delete``,
    default ``broker.delete_queue()``)."""
    cluster = QCluster(env, log_path=log)
    try:
        cluster.start()
        yield cluster
    except BaseException:
        cluster.kill()
        print(log.read_text(errors="replace")[-5000:])
        raise
    finally:
        cluster.kill()
        if delete is not None:
            delete(broker)
        else:
            broker.delete_queue()


def wait_until_completed(job, *, timeout: float, message: str) -> None:
    """Wait for ``job`` to complete (bounded: the test fails after ``timeout`` seconds)."""
    from wagtail_llm_actions.models import LLMJob

    wait_for(
        lambda: LLMJob.objects.get(pk=job.pk).status == "completed",
        timeout=timeout,
        message=message,
    )
