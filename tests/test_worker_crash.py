"""Crash safety with a real ``qcluster``: SIGKILL it mid-job, start it again, nothing is lost.

Each test starts ``manage.py qcluster`` (``tests/qcluster_settings.py``) in its own process
group against the test's database (a SQLite file copy, or the PostgreSQL test database),
lets it process part of a job whose calls take a while (the fake server's latency), kills
every process of the cluster with SIGKILL while calls are in flight, starts a new cluster and
waits for the job to complete. Every page must then have exactly one new draft revision and
every item must have succeeded; the items that were in flight are recovered once their lease
expires. The subprocesses are always killed, and every wait is bounded.
"""

from __future__ import annotations

import os
import uuid

import pytest
from django.db import connection
from wagtail.models import PageLogEntry

from tests.workers import (
    QCluster,
    cluster_name,
    cluster_running,
    delete_redis_broker,
    kill_after_answer_env,
    orm_broker,
    redis_available,
    redis_broker,
    wait_for,
    wait_until_completed,
)
from wagtail_llm_actions import jobs
from wagtail_llm_actions.models import LLMInteraction, LLMRun
from wagtail_llm_actions.service import LOG_ACTION

PAGES = 16
LATENCY = 1.0


#: Transactional, and the migrations' rows (root page, locale, site) restored afterwards.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.mark.parametrize("broker_name", ["orm", pytest.param("redis", marks=pytest.mark.redis)])
def test_killed_worker_job_completes_each_page_exactly_once(
    broker_name, shared_db, make_post, server_action, fake_llm, superuser, tmp_path, monkeypatch
):
    if broker_name == "redis" and not redis_available():
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail("Redis is not running on 127.0.0.1:6379")
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    name = cluster_name("llmcrash", monkeypatch)  # tasks are signed with the cluster's name
    broker = redis_broker(name) if broker_name == "redis" else orm_broker(name)
    env = {
        **shared_db,
        "Q_NAME": name,
        "Q_BROKER": broker_name,
        "Q_WORKERS": "2",
        "LLM_LEASE_SECONDS": "2",
        "LLM_CONCURRENCY": "4",
    }
    fake_llm.latency = LATENCY
    server_action.timeout = 5
    server_action.save()
    posts = [make_post() for _ in range(PAGES)]
    job = jobs.create_job(server_action, superuser, [p.pk for p in posts])

    def count(status):
        return job.items.filter(status=status).count()

    delete = delete_redis_broker if broker_name == "redis" else None
    with cluster_running(env, tmp_path / "qcluster.log", broker, delete=delete) as cluster:
        jobs.enqueue_job(job, broker=broker, on_commit=False)
        wait_for(
            lambda: count("succeeded") >= 3 and count("running") >= 1,
            timeout=90,
            message="the first cluster did not start processing the job",
        )
        cluster.kill()  # SIGKILL: no cleanup, calls in flight are lost
        in_flight = set(job.items.filter(status="running").values_list("pk", flat=True))
        assert in_flight, "some pages were in flight when the worker was killed"
        assert count("succeeded") < PAGES

        cluster.start()
        wait_until_completed(job, timeout=120, message="the job did not complete after the restart")

    items = list(job.items.all())
    assert {item.status for item in items} == {"succeeded"}  # none lost
    for post in posts:  # none twice
        assert PageLogEntry.objects.filter(page=post, action=LOG_ACTION).count() == 1
        assert (
            LLMInteraction.objects.filter(page=post, status="success", trigger="bulk").count() == 1
        )
    recovered = [item for item in items if item.pk in in_flight]
    assert recovered and all(item.attempts >= 2 for item in recovered)
    assert connection.vendor in ("sqlite", "postgresql")


def test_worker_killed_after_the_answer_is_stored_recovers_with_zero_new_calls(
    shared_db, make_post, server_action, fake_llm, superuser, tmp_path, monkeypatch, settings
):
    """The worker SIGKILLs itself right after an answer is committed and before its draft is
    written (``tests/crashhook``). The job recovers: that page gets its draft exactly once,
    from the stored answer, and the model is not called again for it."""
    from wagtail_llm_actions.models import LLMJobItem

    name = cluster_name("llmkill", monkeypatch)
    broker = orm_broker(name)
    marker = tmp_path / "killed-after-answer"
    env = kill_after_answer_env(shared_db, name, marker)
    # One call at a time (the job records its limit when it is created here). A slot is
    # held for the call only, so the killed worker may have started the next page's call
    # before it stored this answer: that call dies with it and is made again.
    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "CONCURRENCY": {"*": 1}}
    fake_llm.latency = 0.2
    server_action.timeout = 5
    server_action.save()
    posts = [make_post() for _ in range(3)]
    job = jobs.create_job(server_action, superuser, [p.pk for p in posts], force=True)
    with cluster_running(env, tmp_path / "qcluster.log", broker):
        jobs.enqueue_job(job, broker=broker, on_commit=False)
        wait_for(marker.exists, timeout=90, message="no worker stored an answer")
        wait_until_completed(
            job, timeout=120, message="the job did not complete after the worker was killed"
        )

    killed = LLMInteraction.objects.get(pk=int(marker.read_text()))
    item = LLMJobItem.objects.get(job=job, interaction=killed)
    assert item.status == "succeeded"
    assert item.attempts >= 2  # claimed again after the worker died...
    assert item.result["from_stored_answer"] is True  # ...and written from the stored answer
    assert killed.status == "success" and killed.revision_id is not None
    calls = [
        " ".join(m["content"] for m in request["json"]["messages"])
        for request in fake_llm.requests
        # a request cut off by the kill may have arrived without its body
        if request["method"] == "POST" and request["json"]
    ]
    killed_title = item.page.title
    # zero new calls for the killed page on recovery; at most one other call was lost
    assert sum(f"“{killed_title}”" in text for text in calls) == 1
    assert 3 <= len(calls) <= 4
    for post in posts:  # each page got its draft exactly once
        assert PageLogEntry.objects.filter(page=post, action=LOG_ACTION).count() == 1
    assert set(job.items.values_list("status", flat=True)) == {"succeeded"}


# -- editor runs: a lease that runs out ends them ------------------------------------------------


def editor_status(client, job) -> dict:
    from django.urls import reverse

    return client.get(reverse("wagtail_llm_actions_editor:status", args=[job.pk])).json()


def start_editor_job(action, page, user, name):
    """An editor job queued on the cluster ``name``'s broker, as the editor's button does."""
    from django_q.tasks import async_task

    from wagtail_llm_actions import editor

    job = editor.create_editor_job(action, page, page.get_latest_revision_as_object(), user)
    async_task(editor.TASK, job.items.get().pk, broker=orm_broker(name))
    return job


@pytest.fixture
def editor_cluster(shared_db, monkeypatch, tmp_path):
    """A cluster name, its environment (leases of 2 s) and a logged-in client's polling."""
    from django_q.conf import Conf

    name = f"llmeditor{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(Conf, "PREFIX", name)
    monkeypatch.setattr(Conf, "CLUSTER_NAME", name)  # the status endpoint queues here too
    env = {**shared_db, "Q_NAME": name, "Q_WORKERS": "2", "LLM_LEASE_SECONDS": "2"}
    yield name, env, tmp_path / "qcluster.log"
    orm_broker(name).delete_queue()


def test_an_editor_run_whose_worker_is_killed_is_run_again_and_answers(
    editor_cluster, post, server_action, fake_llm, superuser
):
    """SIGKILL during the model call: the editor's polling sees the lease run out, the run
    is queued again, and the next worker answers it. Before leases it said "Generating…"
    for ever."""
    from django.test import Client

    name, env, log = editor_cluster
    client = Client()
    client.force_login(superuser)
    fake_llm.configure(reply="A summary about compost.", latency=30)  # the call in flight
    cluster = QCluster(env, log_path=log)
    try:
        cluster.start()
        job = start_editor_job(server_action, post, superuser, name)
        wait_for(
            lambda: (
                editor_status(client, job)["state"] == "running" and fake_llm.request_count >= 1
            ),
            timeout=90,
            message="no worker started the editor run",
        )
        cluster.kill()  # SIGKILL while the model is answering
        fake_llm.configure(latency=0)
        wait_for(
            lambda: editor_status(client, job)["state"] != "running",
            timeout=30,
            message="the editor still shows a run whose worker was killed as running",
        )
        assert editor_status(client, job)["state"] in ("queued", "stalled")  # run again
        cluster.start()
        wait_for(
            lambda: editor_status(client, job)["state"] == "succeeded",
            timeout=90,
            message="the editor run did not answer after the restart",
        )
    except BaseException:
        cluster.kill()
        print(log.read_text(errors="replace")[-5000:])
        raise
    finally:
        cluster.kill()

    body = editor_status(client, job)
    assert body["result"]["output"] == "A summary about compost."
    item = job.items.get()
    assert (item.status, item.attempts) == ("succeeded", 2)
    assert LLMInteraction.objects.get().status == "success"  # the lost call left no row


def test_a_map_reduce_outliving_the_task_timeout_resumes_without_paying_twice(
    editor_cluster, make_long_post, make_map_reduce_action, fake_llm, superuser
):
    """django-q2's timeout stops an editor map-reduce halfway (its 4th call hangs): the run
    is queued again when the lease runs out and reuses the 3 parts already paid for. The
    fake server counts the calls: every part once, the lost one twice, the combining once."""
    from django.test import Client

    name, env, log = editor_cluster
    env = {**env, "Q_TIMEOUT": "8"}
    post, _markers = make_long_post(paragraphs=300)
    action = make_map_reduce_action(
        max_tokens=120,
        timeout=60,
    )
    fake_llm.configure(reply="A part answer.")
    for _part in range(3):
        fake_llm.enqueue(latency=0.2)
    fake_llm.enqueue(latency=60)  # the 4th call outlives the task's timeout
    client = Client()
    client.force_login(superuser)
    cluster = QCluster(env, log_path=log)
    try:
        cluster.start()  # stays up: its guard replaces the worker the timeout stops
        job = start_editor_job(action, post, superuser, name)
        wait_for(
            lambda: editor_status(client, job)["state"] in ("succeeded", "failed"),
            timeout=120,
            message="the editor run stopped by the timeout never ended",
        )
    except BaseException:
        cluster.kill()
        print(log.read_text(errors="replace")[-5000:])
        raise
    finally:
        cluster.kill()

    assert editor_status(client, job)["state"] == "succeeded"
    assert "after timeout" in log.read_text(errors="replace")  # django-q2 stopped the task
    runs = list(LLMRun.objects.order_by("pk"))
    assert [r.status for r in runs] == ["error", "success"]  # the stopped run ended too
    parts = runs[1].interactions.filter(chunk_index__isnull=False)
    assert parts.filter(reused_from__isnull=False).count() == 3
    posts = sum(1 for r in fake_llm.requests if r["method"] == "POST")
    assert posts == parts.count() + 1 + 1  # each part once, the combining call, the lost call
