"""Batched writes (``db.WriteBatcher``): writes waiting together share one commit; one that
fails rolls back only itself."""

from __future__ import annotations

import threading

import pytest
from django.db import connections

from wagtail_llm_actions import db
from wagtail_llm_actions.models import LLMProviderSlots

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_writes_share_commits_and_a_failing_one_rolls_back_alone(shared_db):
    from django.utils import timezone

    batcher = db.WriteBatcher()
    errors: dict[int, BaseException] = {}
    start = threading.Barrier(6)

    def writer(n: int) -> None:
        try:
            with db.batching(batcher):
                start.wait()

                def write():
                    LLMProviderSlots.objects.create(
                        provider="p", holder=f"h{n}", slots=1, expires_at=timezone.now()
                    )
                    if n == 3:
                        raise ValueError("this one fails")

                db.write(write, what="test write")
        except BaseException as e:  # noqa: BLE001 - checked below
            errors[n] = e
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    batcher.close()

    assert list(errors) == [3] and isinstance(errors[3], ValueError)
    holders = set(LLMProviderSlots.objects.values_list("holder", flat=True))
    assert holders == {"h0", "h1", "h2", "h4", "h5"}
    assert batcher.requests == 6
    assert 1 <= batcher.commits <= 6


def test_a_write_that_stays_busy_fails_alone_and_its_batch_is_written(monkeypatch):
    """A request that keeps getting "database is locked" (a draft save under a held lock)
    must not take the claims and answers batched with it down: they are written, it fails."""
    from django.db import OperationalError
    from django.utils import timezone

    monkeypatch.setattr(db, "FIRST_BACKOFF", 0.001)
    monkeypatch.setattr(db, "MAX_BACKOFF", 0.002)

    def slot(n: int):
        def write():
            LLMProviderSlots.objects.create(
                provider="p", holder=f"h{n}", slots=1, expires_at=timezone.now()
            )
            if n == 1:
                raise OperationalError("database is locked")
            return n

        return write

    batcher = db.WriteBatcher()
    try:
        requests = [db._Request(slot(n), f"write {n}") for n in range(3)]
        batcher._run_batch(requests)  # one batch, deterministically
    finally:
        batcher.close()
    assert [r.result for r in requests] == [0, None, 2]
    assert requests[0].error is None and requests[2].error is None
    assert db.is_busy_error(requests[1].error)
    assert set(LLMProviderSlots.objects.values_list("holder", flat=True)) == {"h0", "h2"}


def test_a_transaction_broken_by_a_swallowed_error_is_written_again(monkeypatch):
    """Code inside a write may catch a database error itself (Wagtail's search index does, on
    a PostgreSQL deadlock), leaving the transaction unusable: the write runs again, once."""
    from django.db import IntegrityError, transaction
    from django.utils import timezone

    monkeypatch.setattr(db, "FIRST_BACKOFF", 0.001)
    attempts = {"n": 0}

    def write():
        attempts["n"] += 1
        if attempts["n"] == 1:
            try:
                with transaction.atomic(savepoint=False):
                    raise IntegrityError("deadlock detected")  # what the index code swallows
            except IntegrityError:
                pass
        return LLMProviderSlots.objects.create(
            provider="p", holder="h", slots=1, expires_at=timezone.now()
        ).pk

    pk = db.write(write, what="a write whose first attempt breaks its transaction")
    assert attempts["n"] == 2
    assert list(LLMProviderSlots.objects.values_list("pk", flat=True)) == [pk]
