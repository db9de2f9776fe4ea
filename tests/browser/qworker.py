"""A small in-process django-q2 worker for tests: dequeue from the broker and execute.

``run_queued_tasks()`` runs what is queued now (unit tests); ``WorkerThread`` keeps doing so
in a background thread, sharing the test database (browser tests against ``live_server``).
"""

from __future__ import annotations

import pydoc
import threading

from django.db import connections


def run_queued_tasks(limit: int = 100) -> int:
    """Execute the tasks waiting in the django-q2 broker; returns how many ran."""
    from django_q.brokers import get_broker
    from django_q.signing import SignedPackage

    broker = get_broker()
    count = 0
    while count < limit:
        tasks = broker.dequeue()
        if not tasks:
            break
        for task_id, payload in tasks:
            task = SignedPackage.loads(payload)
            func = task["func"]
            if not callable(func):
                func = pydoc.locate(func)
            try:
                func(*task["args"], **task["kwargs"])
            finally:
                broker.acknowledge(task_id)
            count += 1
    return count


def queued_task_count() -> int:
    from django_q.brokers import get_broker

    return get_broker().queue_size()


class WorkerThread(threading.Thread):
    """Polls the broker like ``qcluster`` does, in this process.

    ``connection`` (the test's own database connection) is shared with the thread when the
    database is SQLite in memory, as Django's live server thread does.
    """

    def __init__(self, poll: float = 0.05, connection=None):
        super().__init__(name="test-qworker", daemon=True)
        self.poll = poll
        self.connection = connection
        self.stopped = threading.Event()
        self.started_up = threading.Event()
        self.errors: list[BaseException] = []

    def run(self) -> None:
        from django_q.signals import post_spawn

        if self.connection is not None:
            connections["default"] = self.connection
        try:
            # As a qcluster worker process does when it starts (preloads LiteLLM).
            post_spawn.send(sender="django_q", proc_name=self.name)
        finally:
            self.started_up.set()
        while not self.stopped.is_set():
            try:
                ran = run_queued_tasks(limit=10)
            except Exception as e:  # keep the worker alive; the test reports it
                self.errors.append(e)
                ran = 0
            if not ran:
                self.stopped.wait(self.poll)
        if self.connection is None:
            connections.close_all()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)
