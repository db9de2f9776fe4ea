"""The bulk job engine: eligibility, runs, unchanged skips, retries, idempotency, recovery."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone
from wagtail.models import PageLogEntry, Revision

from tests.workers import ROOT, delete_redis_broker, drain, redis_available, redis_broker
from wagtail_llm_actions import jobs
from wagtail_llm_actions.models import (
    JobStatus,
    LLMInteraction,
    LLMJob,
    LLMJobItem,
    LLMProviderSlots,
)
from wagtail_llm_actions.service import LOG_ACTION, LLMService

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_retries(settings):
    settings.WAGTAIL_LLM_ACTIONS = {
        **settings.WAGTAIL_LLM_ACTIONS,
        "RETRY_BACKOFF": 0,
        "MAX_ATTEMPTS": 3,
    }


def reload(page):
    return type(page).objects.get(pk=page.pk)


def drafts(page) -> int:
    return PageLogEntry.objects.filter(page=page, action=LOG_ACTION).count()


def statuses(job) -> dict:
    return {item.page_id: (item.status, item.skip_reason) for item in job.items.all()}


def test_items_are_created_skipped_with_reasons(make_post, blog_index, action, editor, superuser):
    ok = make_post()
    locked = make_post()
    locked.locked, locked.locked_by = True, superuser
    locked.save()
    job = jobs.create_job(action, editor, [ok.pk, locked.pk, blog_index.pk])
    assert statuses(job) == {
        ok.pk: ("queued", ""),
        locked.pk: ("skipped", "locked"),
        blog_index.pk: ("skipped", "wrong_type"),
    }
    assert job.options["initial_skipped"] == 2


def test_pages_the_user_cannot_edit_are_skipped(make_post, action, author):
    post = make_post()  # not the author's own page: visible to them, not editable
    job = jobs.create_job(action, author, [post.pk])
    assert statuses(job) == {post.pk: ("skipped", "no_permission")}
    assert job.status == JobStatus.COMPLETED


def test_pages_the_user_cannot_see_are_not_available(make_post, action, outsider):
    post = make_post()
    job = jobs.create_job(action, outsider, [post.pk])
    assert statuses(job) == {post.pk: ("skipped", "not_available")}


def test_descendants_are_included(make_post, blog_index, action, superuser):
    posts = [make_post() for _ in range(3)]
    job = jobs.create_job(action, superuser, [blog_index.pk], include_descendants=True)
    assert job.items.count() == 4
    assert set(job.items.filter(status="queued").values_list("page_id", flat=True)) == {
        p.pk for p in posts
    }


def test_run_writes_one_draft_per_page_and_completes(make_post, action, superuser):
    posts = [make_post() for _ in range(3)]
    job = jobs.create_job(action, superuser, [p.pk for p in posts])

    assert jobs.run_job(job.pk) == "completed"

    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED and job.finished_at
    assert set(job.items.values_list("status", flat=True)) == {"succeeded"}
    for post in posts:
        assert drafts(post) == 1
        assert reload(post).get_latest_revision_as_object().summary
        assert reload(post).summary == ""  # live page untouched
    assert set(LLMInteraction.objects.values_list("trigger", flat=True)) == {"bulk"}
    item = job.items.first()
    assert item.interaction.revision_id == item.result["revision_id"]


def test_rerun_without_changes_skips_every_page_without_calling_the_model(
    make_post, server_action, fake_llm, superuser
):
    posts = [make_post() for _ in range(3)]
    ids = [p.pk for p in posts]
    jobs.run_job(jobs.create_job(server_action, superuser, ids).pk)
    assert fake_llm.request_count == 3

    again = jobs.create_job(server_action, superuser, ids)
    jobs.run_job(again.pk)
    assert fake_llm.request_count == 3  # no provider call
    assert set(statuses(again).values()) == {("skipped", "unchanged")}

    # An edited page runs again; forced jobs run everything.
    draft = posts[0].get_latest_revision_as_object()
    draft.body = [("paragraph", "<p>Completely new text about worms.</p>")]
    draft.save_revision()
    changed = jobs.create_job(server_action, superuser, ids)
    jobs.run_job(changed.pk)
    assert statuses(changed)[posts[0].pk] == ("succeeded", "")
    assert fake_llm.request_count == 4
    forced = jobs.create_job(server_action, superuser, ids, force=True)
    jobs.run_job(forced.pk)
    assert set(forced.items.values_list("status", flat=True)) == {"succeeded"}
    assert fake_llm.request_count == 7


def test_empty_source_is_skipped(make_post, action, superuser):
    post = make_post(body=[])
    job = jobs.create_job(action, superuser, [post.pk])
    jobs.run_job(job.pk)
    assert statuses(job) == {post.pk: ("skipped", "source_empty")}
    assert drafts(post) == 0


def test_page_locked_after_the_job_was_created_is_skipped(make_post, action, editor, superuser):
    post = make_post()
    job = jobs.create_job(action, editor, [post.pk])
    post.locked, post.locked_by = True, superuser
    post.save()
    jobs.run_job(job.pk)
    assert statuses(job) == {post.pk: ("skipped", "locked")}


def test_retryable_errors_are_retried_then_succeed(post, server_action, fake_llm, superuser):
    fake_llm.enqueue(status=503).enqueue(status=429)
    job = jobs.create_job(server_action, superuser, [post.pk])
    jobs.run_job(job.pk)
    item = job.items.get()
    assert item.status == "succeeded" and item.attempts == 3
    assert fake_llm.request_count == 3
    assert drafts(post) == 1


def test_retries_stop_at_max_attempts(post, server_action, fake_llm, superuser):
    fake_llm.status = 500
    job = jobs.create_job(server_action, superuser, [post.pk])
    jobs.run_job(job.pk)
    item = job.items.get()
    assert item.status == "failed" and item.attempts == 3
    assert fake_llm.request_count == 3
    assert item.error and item.interaction.status == "error"
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED


def test_non_retryable_errors_fail_at_once(post, server_action, fake_llm, superuser):
    fake_llm.status = 401
    job = jobs.create_job(server_action, superuser, [post.pk])
    jobs.run_job(job.pk)
    item = job.items.get()
    assert item.status == "failed" and item.attempts == 1
    assert fake_llm.request_count == 1


def test_backoff_delays_the_next_attempt(settings, post, server_action, fake_llm, superuser):
    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "RETRY_BACKOFF": 100}
    fake_llm.enqueue(status=503)
    job = jobs.create_job(server_action, superuser, [post.pk])
    assert jobs.run_job(job.pk, budget=0.5) == "budget"
    item = job.items.get()
    assert item.status == "queued" and item.not_before > timezone.now() + timedelta(seconds=60)
    assert fake_llm.request_count == 1


def test_a_busy_database_during_a_page_retries_it_instead_of_failing_it(
    post, action, superuser, monkeypatch, settings
):
    """SQLite may refuse a read while another connection writes ("database table is
    locked"): the page is queued again with its backoff, not failed as a bug."""
    from django.db import OperationalError

    from wagtail_llm_actions.service import LLMService

    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "RETRY_BACKOFF": 0}
    original = LLMService.run
    calls = {"n": 0}

    def busy_once(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("database table is locked: wagtailcore_page")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LLMService, "run", busy_once)
    job = jobs.create_job(action, superuser, [post.pk], force=True)
    jobs.run_job(job.pk, threads=1)
    item = job.items.get()
    assert item.status == "succeeded" and item.attempts == 2
    assert drafts(post) == 1


def test_retry_failed_queues_them_again(post, server_action, fake_llm, superuser):
    fake_llm.status = 401
    job = jobs.create_job(server_action, superuser, [post.pk])
    jobs.run_job(job.pk)
    fake_llm.status = 200
    assert jobs.retry_failed(job, enqueue=False) == 1
    assert job.status == JobStatus.QUEUED
    jobs.run_job(job.pk)
    assert job.items.get().status == "succeeded"
    assert drafts(post) == 1


def test_cancel_stops_queued_items(make_post, action, superuser):
    posts = [make_post() for _ in range(3)]
    job = jobs.create_job(action, superuser, [p.pk for p in posts])
    assert jobs.cancel_job(job) == 3
    assert jobs.run_job(job.pk) == "gone"
    assert set(job.items.values_list("status", flat=True)) == {"cancelled"}
    assert not LLMInteraction.objects.exists()
    assert job.status == JobStatus.CANCELLED


def test_a_page_gets_at_most_one_draft_when_its_lease_was_taken_over(post, action, superuser):
    """A slow runner whose lease expired must not write a second draft."""
    job = jobs.create_job(action, superuser, [post.pk], force=True)
    lease = jobs.lease_seconds(action)
    first = jobs.claim_item(job, "slow:1", lease=lease)
    # Expired a second ago (the database's clock has millisecond steps on SQLite).
    expired = timezone.now() - timedelta(seconds=1)
    LLMJobItem.objects.filter(pk=first.pk).update(lease_expires_at=expired)
    second = jobs.claim_item(job, "fast:1", lease=lease)
    assert second.pk == first.pk and second.attempts == 2

    ctx = jobs._RunContext(
        job=job, action=action, trigger="bulk", token="x", lease=lease, limit=4, max_attempts=3
    )
    assert jobs.process_item(ctx, second, "fast:1") == "succeeded"
    assert jobs.process_item(ctx, first, "slow:1") == "lost"  # its answer is rolled back
    assert drafts(post) == 1
    assert LLMInteraction.objects.filter(status="success").count() == 1
    assert job.items.get().status == "succeeded"


def test_redelivered_runner_task_does_nothing_twice(make_post, action, superuser):
    posts = [make_post() for _ in range(2)]
    job = jobs.create_job(action, superuser, [p.pk for p in posts])
    assert jobs.run_job(job.pk) == "completed"
    revisions = Revision.objects.count()
    assert jobs.run_job(job.pk) == "gone"
    assert Revision.objects.count() == revisions
    assert all(drafts(p) == 1 for p in posts)


def test_items_left_running_by_a_dead_worker_are_recovered(make_post, action, superuser):
    posts = [make_post() for _ in range(2)]
    job = jobs.create_job(action, superuser, [p.pk for p in posts])
    # A worker claimed both, then died: its leases (and the runner's) run out.
    for token in ("dead:1", "dead:2"):
        jobs.claim_item(job, token, lease=60)
    past = timezone.now() - timedelta(seconds=1)
    job.items.update(lease_expires_at=past)
    LLMJob.objects.filter(pk=job.pk).update(
        status="running", runner_token="dead", runner_lease_expires_at=past
    )

    assert jobs.run_job(job.pk) == "completed"
    assert set(job.items.values_list("status", "attempts")) == {("succeeded", 2)}
    assert all(drafts(p) == 1 for p in posts)


def test_a_second_worker_joins_a_job_another_worker_coordinates(post, action, superuser):
    """Work goes to whoever is free: a worker joins a job whose coordinator (elsewhere) is
    alive, runs its pages, and leaves the coordinator role where it is."""
    job = jobs.create_job(action, superuser, [post.pk])
    LLMJob.objects.filter(pk=job.pk).update(
        status="running",
        runner_token="alive",
        runner_lease_expires_at=timezone.now() + timedelta(minutes=5),
    )
    assert jobs.run_job(job.pk, wait=False) == "completed"
    assert job.items.get().status == "succeeded"
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert job.runner_token == "alive"
    assert drafts(post) == 1


def test_concurrency_is_bounded_per_provider(make_post, action, superuser):
    """Runners reserve slots of their provider's limit; together they never hold more, and
    a claimed page holds none (only a call in flight does)."""
    posts = [make_post() for _ in range(3)]
    job = jobs.create_job(action, superuser, [p.pk for p in posts])
    assert [jobs.claim_item(job, f"a:{n}", lease=60).page_id for n in range(3)] == [
        p.pk for p in posts
    ]
    assert jobs.reserve_slots("openai", "a", want=2, limit=3, seconds=60) == 2
    assert jobs.reserve_slots("openai", "b", want=2, limit=3, seconds=60) == 1
    assert jobs.reserve_slots("openai", "c", want=2, limit=3, seconds=60) == 0
    assert jobs.reserve_slots("anthropic", "d", want=2, limit=3, seconds=60) == 2
    jobs.release_slots("a")
    assert jobs.reserve_slots("openai", "c", want=2, limit=3, seconds=60) == 2
    # The runner holding "b" died: its reservation expires and its slot is free again.
    LLMProviderSlots.objects.filter(holder="b").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert jobs.reserve_slots("openai", "e", want=2, limit=3, seconds=60) == 1


def test_jobs_share_a_provider_fairly_and_each_job_its_workers(make_post, action, superuser):
    """No job waits for another: a second job on the provider gets half of the limit as soon
    as the first job's worker renews (its calls finish), and a job's new worker its share
    of the job's half. The sum of reservations never exceeds the limit."""
    first = jobs.create_job(action, superuser, [make_post().pk])
    second = jobs.create_job(action, superuser, [make_post().pk])

    def reserve(holder, job, busy=0):
        grant = jobs.reserve_grant(
            "openai", holder, want=4, limit=4, seconds=60, job_id=job.pk, busy=busy
        )
        assert sum(LLMProviderSlots.objects.values_list("slots", flat=True)) <= 4
        return grant.slots

    assert reserve("a1", first) == 4
    assert reserve("b1", second) == 0  # all four are in use by the first job's calls
    assert reserve("a1", first, busy=3) == 2  # it gives back what it no longer uses
    assert reserve("b1", second) == 1
    assert reserve("a1", first, busy=1) == 2
    assert reserve("b1", second) == 2
    assert reserve("a2", first) == 0  # a new worker of the first job: 1 once a1 gives one
    assert reserve("a1", first) == 1
    assert reserve("a2", first) == 1
    assert sorted(LLMProviderSlots.objects.values_list("holder", "slots")) == [
        ("a1", 1),
        ("a2", 1),
        ("b1", 2),
    ]


def test_a_full_host_takes_no_more_job_workers_unless_a_job_has_none(make_post, action, superuser):
    first = jobs.create_job(action, superuser, [make_post().pk])
    second = jobs.create_job(action, superuser, [make_post().pk])

    def join(holder, job):
        grant = jobs.reserve_grant(
            "openai", holder, want=4, limit=4, seconds=60, job_id=job.pk, host="h", host_cap=1
        )
        return "full" if grant.full else "joined"

    assert join("a1", first) == "joined"
    assert join("a2", first) == "full"  # the host's last worker stays free for the editor
    assert join("b1", second) == "joined"  # ...unless a job would otherwise wait for others
    assert join("b2", second) == "full"


def test_leases_follow_the_database_clock_not_the_hosts(make_post, action, superuser, monkeypatch):
    """A host whose clock runs an hour ahead takes over none of the live leases: not the
    pages', not the job's coordinator lease, not the provider slots another host holds."""
    from wagtail_llm_actions.jobs.leases import _take_coordinator

    posts = [make_post() for _ in range(2)]
    job = jobs.create_job(action, superuser, [p.pk for p in posts])
    assert len(jobs.claim_items(job, "alive:1", count=2, lease=60)) == 2
    assert _take_coordinator(job.pk, "alive", 60)
    assert jobs.reserve_slots("openai", "alive", want=3, limit=3, seconds=60) == 3
    ahead = timezone.now() + timedelta(hours=1)
    monkeypatch.setattr(timezone, "now", lambda: ahead)
    assert jobs.claim_items(job, "ahead:1", count=2, lease=60) == []
    assert set(job.items.values_list("claimed_by", flat=True)) == {"alive:1"}
    assert not _take_coordinator(job.pk, "ahead", 60)
    assert LLMJob.objects.get(pk=job.pk).runner_token == "alive"
    assert jobs.reserve_slots("openai", "ahead", want=3, limit=3, seconds=60) == 0
    assert LLMProviderSlots.objects.get(holder="alive").slots == 3


def test_claims_take_several_items_in_one_query(make_post, action, superuser):
    posts = [make_post() for _ in range(5)]
    job = jobs.create_job(action, superuser, [p.pk for p in posts])
    items = jobs.claim_items(job, "batch:1", count=3, lease=60)
    assert [i.page_id for i in items] == [p.pk for p in posts[:3]]
    assert {(i.status, i.claimed_by, i.attempts) for i in items} == {("running", "batch:1", 1)}
    assert [i.page_id for i in jobs.claim_items(job, "batch:2", count=3, lease=60)] == [
        p.pk for p in posts[3:]
    ]
    assert jobs.claim_items(job, "batch:3", count=3, lease=60) == []


def test_concurrency_setting_by_prefix(settings):
    settings.WAGTAIL_LLM_ACTIONS = {"CONCURRENCY": {"*": 3, "openai": 8, "openai/big": 1}}
    assert jobs.concurrency_for("openai/gpt-4o-mini") == 8
    assert jobs.concurrency_for("openai/big") == 1
    assert jobs.concurrency_for("anthropic/claude") == 3


def test_progress_counts_tokens_rate_and_eta(make_post, server_action, fake_llm, superuser):
    fake_llm.usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    posts = [make_post() for _ in range(2)]
    job = jobs.create_job(server_action, superuser, [p.pk for p in posts])
    progress = jobs.job_progress(job)
    assert (progress.total, progress.done, progress.percent) == (2, 0, 0)
    jobs.run_job(job.pk)
    job.refresh_from_db()
    progress = jobs.job_progress(job)
    assert (progress.done, progress.percent, progress.tokens) == (2, 100, 30)
    assert progress.count("succeeded") == 2 and progress.rate > 0
    assert progress.as_dict()["counts"]["succeeded"] == 2


def test_plan_counts_skips_and_estimates(make_post, blog_index, action, superuser):
    posts = [make_post() for _ in range(3)]
    empty = make_post(body=[])
    LLMService().run(action, posts[0], superuser)
    plan = jobs.plan_job(action, superuser, [blog_index.pk], include_descendants=True)
    assert plan.total == 5
    assert plan.is_exact and plan.will_run == 2
    rows = {row["code"]: row for row in plan.skip_rows}
    assert rows["wrong_type"]["count"] == 1
    assert rows["unchanged"]["count"] == 1
    assert rows["source_empty"]["examples"][0]["pk"] == empty.pk
    assert plan.estimate.prompt_tokens > 0 and plan.estimate.cost == 0  # local/ is free
    forced = jobs.plan_job(action, superuser, [p.pk for p in posts], force=True)
    assert forced.will_run == 3


def test_plan_samples_large_selections(make_post, action, superuser):
    posts = [make_post() for _ in range(4)]
    plan = jobs.plan_job(action, superuser, [p.pk for p in posts], sample=2)
    assert plan.sampled == 2 and not plan.is_exact
    assert plan.will_run == 4 and plan.estimate.pages == 4


def test_enqueued_job_runs_on_the_orm_broker(make_post, action, superuser):
    posts = [make_post() for _ in range(2)]
    job = jobs.create_job(action, superuser, [p.pk for p in posts])
    jobs.enqueue_job(job, on_commit=False)
    assert drain() == ["completed"]
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert all(drafts(p) == 1 for p in posts)


def test_a_job_is_queued_as_one_task_and_more_workers_join_on_their_own(
    make_post, action, superuser
):
    """No runner set is fixed when a job is queued: one task starts it (the job's
    coordinator queues more while the job can use them, see test_multi_host)."""
    posts = [make_post() for _ in range(3)]
    job = jobs.create_job(action, superuser, [p.pk for p in posts])
    jobs.enqueue_job(job, on_commit=False)
    assert drain() == ["completed"]
    assert all(drafts(p) == 1 for p in posts)


def test_a_helper_runs_items_but_leaves_completion_to_the_runner(make_post, action, superuser):
    posts = [make_post() for _ in range(3)]
    job = jobs.create_job(action, superuser, [p.pk for p in posts])
    assert jobs.run_job(job.pk, helper=True) == "completed"
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED  # items done, job not closed by a helper
    assert set(job.items.values_list("status", flat=True)) == {"succeeded"}
    assert jobs.run_job(job.pk) == "completed"
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert all(drafts(p) == 1 for p in posts)  # the runner found nothing left to run


def test_recover_jobs_queues_a_runner_for_unfinished_jobs(make_post, action, superuser):
    post = make_post()
    job = jobs.create_job(action, superuser, [post.pk])
    done = jobs.create_job(action, superuser, [post.pk], force=True)
    LLMJob.objects.filter(pk=done.pk).update(status="completed")
    assert jobs.recover_jobs() == 1
    assert drain() == ["completed"]
    assert job.items.get().status == "succeeded"


def test_the_periodic_check_ends_a_job_whose_only_host_died(make_post, action, superuser):
    """The only host working on a job died (no other host had a worker on it) and the
    broker kept no task of it: the every-minute check (``keep_jobs_running``) queues a
    worker once the coordinator lease expired, and the job ends, one draft per page."""
    from wagtail_llm_actions import tasks

    posts = [make_post() for _ in range(3)]
    job = jobs.create_job(action, superuser, [p.pk for p in posts])
    assert len(jobs.claim_items(job, "dead-host:1:a", count=2, lease=60)) == 2
    LLMJob.objects.filter(pk=job.pk).update(
        status="running",
        runner_token="dead-host:1:a",
        runner_lease_expires_at=timezone.now() + timedelta(minutes=1),
    )
    assert tasks.keep_jobs_running() == 0  # its coordinator lease is live: nothing to do
    past = timezone.now() - timedelta(seconds=1)
    LLMJob.objects.filter(pk=job.pk).update(runner_lease_expires_at=past)
    job.items.filter(status="running").update(lease_expires_at=past)
    assert tasks.keep_jobs_running() == 1
    assert drain() == ["completed"]
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert set(job.items.values_list("status", flat=True)) == {"succeeded"}
    assert all(drafts(p) == 1 for p in posts)


@pytest.mark.redis
def test_enqueued_job_runs_on_the_redis_broker(make_post, action, superuser):
    if not redis_available():
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail("Redis is not running on 127.0.0.1:6379")
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    broker = redis_broker()
    try:
        posts = [make_post() for _ in range(2)]
        job = jobs.create_job(action, superuser, [p.pk for p in posts])
        jobs.enqueue_job(job, broker=broker, on_commit=False)
        assert broker.queue_size() == 1
        assert drain(broker) == ["completed"]
        assert all(drafts(p) == 1 for p in posts)
    finally:
        delete_redis_broker(broker)


def test_estimates_do_not_import_litellm():
    code = (
        "import sys; from wagtail_llm_actions import estimates;"
        "n = estimates.count_message_tokens([{'role': 'user', 'content': 'Hello world'}]);"
        "p = estimates.price_per_token('openai/gpt-4o-mini');"
        "print(n > 0, p is not None and p[0] > 0, 'litellm' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "True", "False"]


def test_a_runner_that_meets_a_busy_database_hands_over_to_a_successor(
    make_post, action, superuser, monkeypatch
):
    from django.db import OperationalError
    from django_q.brokers import get_broker

    from wagtail_llm_actions import tasks

    job = jobs.create_job(action, superuser, [make_post().pk])

    def busy(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(jobs, "run_job", busy)
    assert tasks.run_job(job.pk) == "budget"
    assert get_broker().queue_size() == 1  # the successor runner that will continue the job
    monkeypatch.undo()
    drain()
    job.refresh_from_db()
    assert job.status == "completed"


def test_a_runner_does_not_hide_real_errors(make_post, action, superuser, monkeypatch):
    from wagtail_llm_actions import tasks

    job = jobs.create_job(action, superuser, [make_post().pk])
    monkeypatch.setattr(jobs, "run_job", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        tasks.run_job(job.pk)


class _FlakyPageReads:
    """Stands in for ``Page`` in the claim code: its reads of claimed pages fail with
    ``error`` the first ``times`` times (None: always)."""

    def __init__(self, error: Exception, times: int | None) -> None:
        self.error, self.times, self.calls = error, times, 0

    @property
    def objects(self):
        return self

    def filter(self, **kwargs):
        from wagtail.models import Page

        self.calls += 1
        if self.times is None or self.calls <= self.times:
            raise self.error
        return Page.objects.filter(**kwargs)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_locked_table_while_reading_claimed_pages_is_waited_out(
    make_post, action, superuser, monkeypatch
):
    # SQLite with a shared cache (Django's in-memory test database) answers a read that
    # meets a writer with "database table is locked" at once: the claim reads again.
    from django.db import OperationalError

    flaky = _FlakyPageReads(OperationalError("database table is locked: wagtailcore_page"), 2)
    monkeypatch.setattr("wagtail_llm_actions.jobs.claims.Page", flaky)
    posts = [make_post() for _ in range(3)]
    job = jobs.create_job(action, superuser, [p.pk for p in posts])
    assert jobs.run_job(job.pk, threads=1) == "completed"
    assert flaky.calls > 2
    outcomes = list(job.items.values_list("status", "error"))
    assert {status for status, _ in outcomes} == {"succeeded"}, outcomes
    for post in posts:
        assert reload(post).get_latest_revision_as_object().summary


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_claimed_items_whose_pages_cannot_be_read_are_given_back_at_once(
    make_post, action, superuser, monkeypatch
):
    # A claim that cannot read its pages leaves no item "running" under a lease nobody
    # renews: they are queued again, and the next run does them.
    flaky = _FlakyPageReads(RuntimeError("disk on fire"), None)
    monkeypatch.setattr("wagtail_llm_actions.jobs.claims.Page", flaky)
    posts = [make_post() for _ in range(2)]
    job = jobs.create_job(action, superuser, [p.pk for p in posts])
    jobs.run_job(job.pk, threads=1)
    items = list(job.items.values_list("status", "claimed_by", "attempts"))
    assert items == [("queued", "", 0)] * 2
    monkeypatch.undo()
    assert jobs.run_job(job.pk, threads=1) == "completed"
    assert set(job.items.values_list("status", flat=True)) == {"succeeded"}


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_busy_database_during_a_heartbeat_skips_the_beat_not_the_job(
    make_post, server_action, fake_llm, superuser, monkeypatch
):
    from django.db import OperationalError

    from wagtail_llm_actions.jobs import worker

    original = worker._Worker._as_coordinator
    calls = {"n": 0}

    def busy_twice(self, grant, *, working):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise OperationalError("database table is locked: wagtail_llm_actions_llmjobitem")
        return original(self, grant, working=working)

    monkeypatch.setattr(worker._Worker, "_as_coordinator", busy_twice)
    monkeypatch.setattr(worker, "HEARTBEAT", 0.2)
    fake_llm.configure(latency=0.5)  # several beats while the pages run
    posts = [make_post() for _ in range(3)]
    job = jobs.create_job(server_action, superuser, [p.pk for p in posts])
    assert jobs.run_job(job.pk, threads=1) == "completed"
    assert calls["n"] > 2
    assert set(job.items.values_list("status", flat=True)) == {"succeeded"}
