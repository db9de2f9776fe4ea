"""Several hosts, one job: clusters in their own process groups, each with its own host
identity (``HOST_ID``) and the same ``Q_CLUSTER["name"]``, on one PostgreSQL database and
one broker (Redis or the ORM), the fake provider in this process.

A host's death is SIGKILL of its whole process group. The fake server's log says which
pages were called and when each call was answered, so a page called twice can be checked
against the calls that were in flight on the dead host. SQLite is single-host: skipped there.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections import Counter

import pytest
from django.db import connection
from wagtail.models import PageLogEntry

from tests.workers import QCluster, delete_redis_broker, redis_available, redis_broker, wait_for
from wagtail_llm_actions import jobs
from wagtail_llm_actions.models import LLMJob
from wagtail_llm_actions.service import LOG_ACTION

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

LEASE_SECONDS = 2
TIMEOUT = 5  # the action's: an item's lease is LEASE_SECONDS + TIMEOUT
ITEM_LEASE = LEASE_SECONDS + TIMEOUT
#: A call answered this shortly before its host died may not have been stored yet: it
#: counts as in flight there.
STORE_SLACK = 1.0
BROKERS = ["orm", pytest.param("redis", marks=pytest.mark.redis)]


def need_services(broker_name: str) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("several hosts share one PostgreSQL database (SQLite runs on one host)")
    if broker_name == "redis" and not redis_available():
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail("Redis is not running on 127.0.0.1:6379")
        pytest.skip("Redis is not running on 127.0.0.1:6379")


class Site:
    """The hosts of one site (same queue name, database and broker) and the test's view."""

    def __init__(self, shared_db, broker_name, tmp_path, monkeypatch, **env) -> None:
        from django_q.brokers.orm import ORM
        from django_q.conf import Conf

        self.name = f"llmhosts{uuid.uuid4().hex[:8]}"
        monkeypatch.setattr(Conf, "PREFIX", self.name)  # tasks are signed with its name
        self.broker_name = broker_name
        self.broker = redis_broker(self.name) if broker_name == "redis" else ORM(self.name)
        self.env = {
            **shared_db,
            "Q_NAME": self.name,
            "Q_BROKER": broker_name,
            "Q_WORKERS": "2",  # one job worker per host, one worker free for the editor
            # No task hands over to a successor within a test (its time budget is the
            # timeout less a margin), and the ORM broker's redelivery of a dead host's task
            # is not what recovers a job here.
            "Q_TIMEOUT": "600",
            "Q_RETRY": "700",
            "LLM_LEASE_SECONDS": str(LEASE_SECONDS),
            "LLM_CONCURRENCY": "4",
            **env,
        }
        self.tmp_path = tmp_path
        self.hosts: dict[str, QCluster] = {}

    def host(self, name: str) -> QCluster:
        cluster = QCluster(self.env, host=name, log_path=self.tmp_path / f"{name}.log")
        self.hosts[name] = cluster
        return cluster.start()

    def close(self) -> None:
        for cluster in self.hosts.values():
            cluster.kill()
        if self.broker_name == "redis":
            delete_redis_broker(self.broker)
        else:
            self.broker.delete_queue()

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}\n" + (self.tmp_path / f"{name}.log").read_text(errors="replace")[-3000:]
            for name in self.hosts
        )


@pytest.fixture
def make_site(shared_db, tmp_path, monkeypatch):
    """``with make_site("redis") as site:`` the hosts are killed on the way out, and their
    logs printed if the test failed."""

    @contextlib.contextmanager
    def make(broker_name: str, **env):
        site = Site(shared_db, broker_name, tmp_path, monkeypatch, **env)
        try:
            yield site
        except BaseException:
            for cluster in site.hosts.values():
                cluster.kill()
            print(site.logs())
            raise
        finally:
            site.close()

    return make


def host_of(token: str) -> str:
    return token.split(":", 1)[0]


def items_per_host(job) -> Counter:
    return Counter(host_of(t) for t in job.items.values_list("claimed_by", flat=True) if t)


def succeeded(job) -> int:
    return job.items.filter(status="succeeded").count()


def calls_by_title(fake_llm) -> dict[str, list[dict]]:
    """The model calls of each page (by its title in the prompt)."""
    calls: dict[str, list[dict]] = {}
    for request in fake_llm.requests:
        if request["method"] != "POST":
            continue
        text = " ".join(str(m.get("content", "")) for m in request["json"]["messages"])
        match = re.search(r"“([^”]+)”", text)
        if match:
            calls.setdefault(match.group(1), []).append(request)
    return calls


def posts_calls(fake_llm) -> list[dict]:
    return [r for r in fake_llm.requests if r["method"] == "POST"]


def most_at_once(calls: list[dict]) -> int:
    """The most of ``calls`` that were being answered at the same moment."""
    events = sorted(
        [(c["started"], 1) for c in calls] + [(c["finished"] or 1e12, -1) for c in calls],
        key=lambda e: (e[0], e[1]),
    )
    now = most = 0
    for _t, delta in events:
        now += delta
        most = max(most, now)
    return most


def completed(job) -> bool:
    return LLMJob.objects.get(pk=job.pk).status == "completed"


def exactly_one_draft_each(posts) -> None:
    for post in posts:
        assert PageLogEntry.objects.filter(page=post, action=LOG_ACTION).count() == 1, post.title


def make_job(make_post, server_action, superuser, pages: int, posts=None, timeout=TIMEOUT):
    server_action.timeout = timeout
    server_action.save()
    posts = posts or [make_post() for _ in range(pages)]
    return jobs.create_job(server_action, superuser, [p.pk for p in posts], force=True), posts


@pytest.mark.parametrize("broker_name", BROKERS)
def test_killing_the_coordinating_host_mid_job_the_survivor_completes_it(
    broker_name, make_site, make_post, server_action, fake_llm, superuser
):
    need_services(broker_name)
    with make_site(broker_name) as site:
        fake_llm.latency = 0.5
        job, posts = make_job(make_post, server_action, superuser, 32)
        site.host("host-a")
        site.host("host-b")
        jobs.enqueue_job(job, broker=site.broker, on_commit=False)
        wait_for(
            lambda: len(items_per_host(job)) == 2 and succeeded(job) >= 4,
            timeout=90,
            message="both hosts did not take part in the job",
        )
        coordinator = host_of(LLMJob.objects.get(pk=job.pk).runner_token)
        assert coordinator in site.hosts
        site.hosts[coordinator].kill()  # SIGKILL: its calls in flight are lost
        killed_at = time.monotonic()
        assert succeeded(job) < len(posts), "the job ended before the host died"

        # The survivor takes the coordinator role and the dead host's pages over.
        wait_for(
            lambda: completed(job),
            timeout=ITEM_LEASE + 10,
            message="the survivor did not complete the job",
        )
        assert set(job.items.values_list("status", flat=True)) == {"succeeded"}
        exactly_one_draft_each(posts)
        # A page was called twice only if its first call was in flight on the dead host.
        for title, calls in calls_by_title(fake_llm).items():
            if len(calls) > 1:
                first = calls[0]
                assert len(calls) == 2, title
                assert first["started"] <= killed_at, title
                assert first["finished"] >= killed_at - STORE_SLACK, title
        # Slots follow the work: once the dead host's slots expired, the survivor used all.
        later = [r for r in posts_calls(fake_llm) if r["started"] > killed_at + LEASE_SECONDS + 1]
        assert most_at_once(later) == 4
        assert fake_llm.max_in_flight <= 4


@pytest.mark.parametrize("broker_name", BROKERS)
def test_a_host_joining_mid_job_takes_a_share_of_the_pages(
    broker_name, make_site, make_post, server_action, fake_llm, superuser
):
    need_services(broker_name)
    with make_site(broker_name) as site:
        # Slow calls until host-b is up (a worker's start, LiteLLM's import included, takes
        # many seconds on a loaded machine), so that pages are left for it to share.
        fake_llm.latency = 8
        job, posts = make_job(make_post, server_action, superuser, 48, timeout=20)
        site.host("host-a")
        jobs.enqueue_job(job, broker=site.broker, on_commit=False)
        wait_for(lambda: succeeded(job) >= 4, timeout=90, message="host-a did not start the job")
        joiner = site.host("host-b")
        # Its workers have started (and asked for work: post_spawn) ...
        wait_for(
            lambda: "unfinished LLM job" in joiner.log_text(),
            timeout=120,
            message="host-b did not start",
        )
        left = len(posts) - succeeded(job)
        fake_llm.latency = 1
        wait_for(lambda: completed(job), timeout=180, message="the job did not complete")
        # ... and it took at least a quarter of the pages left then.
        per_host = items_per_host(job)
        assert per_host["host-b"] >= left / 4, (left, per_host)
        exactly_one_draft_each(posts)
        assert fake_llm.max_in_flight <= 4


def test_two_jobs_on_one_provider_both_make_progress(
    make_site, make_post, server_action, fake_llm, superuser, settings
):
    """The second job does not wait for the first to finish: the provider's slots are
    shared between them as soon as it starts (CONCURRENCY 4: two each)."""
    need_services("redis")
    # As sites had it before workers joined jobs on their own (ignored now): each job was
    # queued with a runner and a helper, together holding the provider's whole limit.
    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "RUNNERS_PER_JOB": 2}
    with make_site("redis") as site:
        fake_llm.latency = 1.0
        first, first_posts = make_job(make_post, server_action, superuser, 40)
        second_posts = [make_post() for _ in range(40)]
        site.host("host-a")
        site.host("host-b")
        jobs.enqueue_job(first, broker=site.broker, on_commit=False)
        wait_for(
            lambda: succeeded(first) >= 4 and fake_llm.max_in_flight == 4,
            timeout=90,
            message="the first job did not start (with every slot)",
        )
        second, _posts = make_job(make_post, server_action, superuser, 0, posts=second_posts)
        jobs.enqueue_job(second, broker=site.broker, on_commit=False)
        wait_for(lambda: succeeded(second) >= 1, timeout=60, message="the second job did not start")
        # Both ran side by side: the first had most of its pages left when the second started.
        assert succeeded(first) < len(first_posts) / 2
        wait_for(
            lambda: completed(first) and completed(second),
            timeout=180,
            message="the jobs did not complete",
        )
        exactly_one_draft_each(first_posts + second_posts)
        assert fake_llm.max_in_flight <= 4


def database_connections() -> int:
    """Connections to the test database, this test's own left out."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_database_connections_stay_within_the_formula_at_concurrency_16(
    make_site, make_post, server_action, fake_llm, superuser, settings
):
    """About one connection per call slot plus a few per worker: at most CONCURRENCY
    + 3 x job workers + hosts x (workers + 3) (the README's formula)."""
    need_services("redis")
    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "CONCURRENCY": {"*": 16}}
    hosts, workers, job_workers = 2, 2, 2  # one job worker per host
    with make_site("redis", LLM_CONCURRENCY="16") as site:
        fake_llm.latency = 1.0
        job, posts = make_job(make_post, server_action, superuser, 96)
        for n in range(hosts):
            site.host(f"host-{n}")
        jobs.enqueue_job(job, broker=site.broker, on_commit=False)
        peak = 0
        deadline = time.monotonic() + 240
        while not completed(job) and time.monotonic() < deadline:
            peak = max(peak, database_connections())
            time.sleep(0.1)
        assert completed(job)
        assert peak <= 16 + 3 * job_workers + hosts * (workers + 3), peak
        assert len(items_per_host(job)) == hosts  # both hosts took part
        assert fake_llm.max_in_flight <= 16
