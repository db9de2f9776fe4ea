"""Run test code in another thread with its own database connection (a second writer)."""

from __future__ import annotations

import threading

from django.db import connections


def in_thread(func) -> threading.Thread:
    """Start ``func`` in a daemon thread; its exceptions are kept for :func:`join_checked`."""
    errors: list[BaseException] = []

    def target():
        try:
            func()
        except BaseException as e:  # reported by join_checked
            errors.append(e)
        finally:
            connections.close_all()

    thread = threading.Thread(target=target, daemon=True)
    thread.errors = errors
    thread.start()
    return thread


def join_checked(thread: threading.Thread, timeout: float = 300) -> None:
    """Wait for ``thread``; fail if it is still running or raised."""
    thread.join(timeout)
    assert not thread.is_alive()
    assert not thread.errors, thread.errors
