"""A plain SQLite site (Django's defaults: rollback journal, deferred transactions, 5 s timeout)
runs bulk jobs in several threads and worker processes, and the command, with no failure.

The database is the shared test database: on SQLite a file copy with no WAL and no OPTIONS
(``tests.workers.shared_database``); with ``DATABASE_URL`` the PostgreSQL test database.
"""

from __future__ import annotations

import uuid

import pytest
from django.core.management import call_command
from wagtail.models import PageLogEntry

from tests.workers import QCluster, orm_broker, wait_for
from wagtail_llm_actions import jobs
from wagtail_llm_actions.models import LLMInteraction, LLMJob
from wagtail_llm_actions.service import LOG_ACTION

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def draft_count(pages) -> int:
    return PageLogEntry.objects.filter(page__in=pages, action=LOG_ACTION).count()


def test_the_shared_database_is_plain_sqlite(shared_db):
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    assert connection.settings_dict["OPTIONS"] == {}
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "delete"


def test_command_all_on_plain_sqlite_with_eight_threads(
    shared_db, make_post, server_action, fake_llm, settings
):
    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "CONCURRENCY": {"*": 8}}
    fake_llm.configure(latency=0.2)
    posts = [make_post() for _ in range(20)]
    call_command("run_llm_action", server_action.slug, "--all", "--concurrency", "8")
    job = LLMJob.objects.get()
    assert set(job.items.values_list("status", flat=True)) == {"succeeded"}
    assert fake_llm.request_count == 20  # calls made
    assert draft_count(posts) == 20  # drafts written
    assert LLMInteraction.objects.filter(status="success").count() == 20


def test_bulk_job_of_fifty_pages_at_concurrency_eight_with_real_workers(
    shared_db, make_post, server_action, fake_llm, superuser, tmp_path, monkeypatch, settings
):
    """Three ``qcluster`` worker processes (a runner and a helper of the job, plus one free),
    each running up to four threads, on the same plain SQLite file as this process."""
    from django_q.conf import Conf

    name = f"llmplain{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(Conf, "PREFIX", name)  # tasks are signed with the cluster's name
    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "CONCURRENCY": {"*": 8}}
    broker = orm_broker(name)
    env = {
        **shared_db,
        "Q_NAME": name,
        "Q_WORKERS": "3",
        "LLM_LEASE_SECONDS": "20",
        "LLM_CONCURRENCY": "8",
    }
    fake_llm.configure(latency=0.3)
    posts = [make_post() for _ in range(50)]
    job = jobs.create_job(server_action, superuser, [p.pk for p in posts], force=True)
    assert job.options["concurrency"] == 8
    log = tmp_path / "qcluster.log"
    cluster = QCluster(env, log_path=log)
    try:
        cluster.start()
        jobs.enqueue_job(job, broker=broker, on_commit=False)
        wait_for(
            lambda: LLMJob.objects.get(pk=job.pk).status == "completed",
            timeout=240,
            message="the job did not complete",
        )
    except BaseException:
        cluster.kill()
        print(log.read_text(errors="replace")[-5000:])
        raise
    finally:
        cluster.kill()
        broker.delete_queue()
    statuses = list(job.items.values_list("status", "error"))
    assert {status for status, _error in statuses} == {"succeeded"}, statuses
    assert fake_llm.request_count == 50  # calls made
    assert draft_count(posts) == 50  # == drafts written
