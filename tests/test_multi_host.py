"""Several hosts, one job: clusters in their own process groups, each with its own host
identity (``HOST_ID``) and the same ``Q_CLUSTER["name"]``, on one PostgreSQL database and
one broker (Redis or the ORM), the fake provider in this process.

A host's death is SIGKILL of its whole process group. The fake server's log says which
pages were called, by which host (each sends its own API key) and when each call started
and was answered, so a page called twice can be checked against the calls that were in
flight on the dead host. SQLite is single-host: skipped there.
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
from wagtail_llm_actions.jobs.worker import PUMP_MAX
from wagtail_llm_actions.models import LLMJob
from wagtail_llm_actions.service import LOG_ACTION

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

LEASE_SECONDS = 2
TIMEOUT = 5  # the action's: an item's lease is LEASE_SECONDS + TIMEOUT
ITEM_LEASE = LEASE_SECONDS + TIMEOUT
#: A call answered this shortly before its host died may not have been stored yet: it
#: counts as in flight there.
STORE_SLACK = 1.0
#: A call answered this long after its host was killed was cut off by the kill.
CUT_MARGIN = 0.05
#: Each host's API key is this and its name (see ``Site.host``).
KEY_PREFIX = "sk-test-"
#: How soon a host that joins a job makes its first call once its workers are up. Its
#: workers queue a task for the job as they start (post_spawn), which reaches it at once
#: unless another host's free worker takes it first (a full host passes it on); failing
#: that, the job's coordinator queues the next one within PUMP_MAX seconds (while the job
#: could use another worker); then a few seconds for a worker's start on the job (slots,
#: threads, a claim) on a loaded machine. Measured: 6.6 s (ORM broker, load ~7 on 2 CPUs).
JOIN_SECONDS = PUMP_MAX + 4
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
        # Each host sends its own API key: the fake server's log says which host made a call.
        env = {**self.env, "TEST_LLM_API_KEY": KEY_PREFIX + name}
        cluster = QCluster(env, host=name, log_path=self.tmp_path / f"{name}.log")
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


def host_of_call(call: dict) -> str:
    """The host that made a call to the fake server (by the API key it sent)."""
    key = call["headers"].get("authorization", "").removeprefix("Bearer ")
    assert key.startswith(KEY_PREFIX), key
    return key.removeprefix(KEY_PREFIX)


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
        wait_for(
            lambda: any(
                host_of_call(c) == coordinator and c["finished"] is None
                for c in posts_calls(fake_llm)
            ),
            timeout=30,
            message="the coordinating host had no call in flight",
        )
        site.hosts[coordinator].kill()  # SIGKILL: its calls in flight are lost
        killed_at = site.hosts[coordinator].killed_at
        assert succeeded(job) < len(posts), "the job ended before the host died"

        # The survivor takes the coordinator role and the dead host's pages over.
        wait_for(
            lambda: completed(job),
            timeout=ITEM_LEASE + 10,
            message="the survivor did not complete the job",
        )
        assert set(job.items.values_list("status", flat=True)) == {"succeeded"}
        exactly_one_draft_each(posts)
        # A page was called twice only if its first call was in flight on the dead host
        # (made by it, started before the kill, not answered well before it), and then by
        # the survivor.
        survivor = next(name for name in site.hosts if name != coordinator)
        calls_by_page = calls_by_title(fake_llm)
        assert {host_of_call(c) for cs in calls_by_page.values() for c in cs} == {
            coordinator,
            survivor,
        }
        twice = 0
        for title, calls in calls_by_page.items():
            if len(calls) > 1:
                twice += 1
                first, second = calls[0], calls[1]
                assert len(calls) == 2, title
                assert host_of_call(first) == coordinator, (title, host_of_call(first))
                assert first["started"] <= killed_at, title
                assert first["finished"] >= killed_at - STORE_SLACK, title
                assert host_of_call(second) == survivor, title
        # Conversely, a call the kill cut off (answered after its host was gone, or never)
        # was made again.
        cut = [
            title
            for title, calls in calls_by_page.items()
            if host_of_call(calls[0]) == coordinator
            and calls[0]["started"] <= killed_at
            and (calls[0]["finished"] or 1e12) > killed_at + CUT_MARGIN
        ]
        print(f"pages called twice: {twice}; calls cut off by the kill: {len(cut)}")
        assert cut and all(len(calls_by_page[title]) == 2 for title in cut), cut
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
        # Its workers start (LiteLLM preloaded, then they ask for work: post_spawn) and it
        # makes its first call. Meanwhile the test notes how many pages were done, to count
        # those left when host-b joined (its first call).
        samples: list[tuple[float, int]] = []
        up = None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            samples.append((time.monotonic(), succeeded(job)))
            if up is None and "unfinished LLM job" in joiner.log_text():
                up = samples[-1][0]
            if any(host_of_call(c) == "host-b" for c in posts_calls(fake_llm)):
                break
            time.sleep(0.2)
        mine = [c["started"] for c in posts_calls(fake_llm) if host_of_call(c) == "host-b"]
        assert mine, "host-b made no call"
        joined = min(mine)
        if up is None:  # its first call came before the test read its log
            assert "unfinished LLM job" in joiner.log_text()
            up = joined
        left = len(posts) - max([n for t, n in samples if t <= joined] or [samples[0][1]])
        fake_llm.latency = 1
        print(f"host-b's first call {joined - up:.2f} s after it was up; {left} pages left then")
        # ... it made its first call within a few seconds: at once if a task its workers
        # queued as they started reached it, else when the coordinator queues the next one
        # (every PUMP_MAX seconds at most, while host-a's worker cannot use all the slots),
        # plus a worker's start on the job (slots, threads, a claim) on a loaded machine.
        assert joined - up <= JOIN_SECONDS, joined - up
        wait_for(lambda: completed(job), timeout=180, message="the job did not complete")
        # ... and it took at least a quarter of the pages left then.
        per_host = items_per_host(job)
        assert per_host["host-b"] >= left / 4, (left, per_host)
        exactly_one_draft_each(posts)
        assert fake_llm.max_in_flight <= 4


@pytest.mark.parametrize("broker_name", BROKERS)
def test_when_the_only_host_of_a_job_dies_a_host_started_later_ends_it(
    broker_name, make_site, make_post, server_action, fake_llm, superuser
):
    """host-a alone works on the job and dies (no other host had a worker on it; the broker
    does not give its task to anyone: Q_RETRY is beyond the test). host-b, started
    afterwards, ends the job: its workers ask for work as they start, take the coordinator
    role and the dead host's pages once their leases expire."""
    need_services(broker_name)
    with make_site(broker_name) as site:
        fake_llm.latency = 0.5
        job, posts = make_job(make_post, server_action, superuser, 24)
        site.host("host-a")
        jobs.enqueue_job(job, broker=site.broker, on_commit=False)
        wait_for(lambda: succeeded(job) >= 4, timeout=90, message="host-a did not start the job")
        site.hosts["host-a"].kill()
        killed_at = site.hosts["host-a"].killed_at
        assert succeeded(job) < len(posts), "the job ended before the host died"
        assert set(items_per_host(job)) == {"host-a"}
        joiner = site.host("host-b")
        wait_for(
            lambda: "unfinished LLM job" in joiner.log_text(),
            timeout=120,
            message="host-b did not start",
        )
        wait_for(
            lambda: completed(job),
            timeout=ITEM_LEASE + 30,
            message="host-b did not end the job",
        )
        assert set(job.items.values_list("status", flat=True)) == {"succeeded"}
        exactly_one_draft_each(posts)
        for title, calls in calls_by_title(fake_llm).items():
            if len(calls) > 1:  # only a call in flight on the dead host was made again
                assert len(calls) == 2, title
                assert [host_of_call(c) for c in calls] == ["host-a", "host-b"], title
                assert calls[0]["started"] <= killed_at, title
                assert calls[0]["finished"] >= killed_at - STORE_SLACK, title
        assert items_per_host(job)["host-b"] > 0
        assert fake_llm.max_in_flight <= 4


def calls_of(fake_llm, prefix: str) -> list[dict]:
    """The model calls of the pages whose title starts with ``prefix``, first started first."""
    calls = [
        c for title, cs in calls_by_title(fake_llm).items() if title.startswith(prefix) for c in cs
    ]
    return sorted(calls, key=lambda c: c["started"])


def in_flight_at(calls: list[dict], moment: float) -> int:
    return sum(1 for c in calls if c["started"] <= moment < (c["finished"] or 1e12))


#: "Within a few seconds" for two jobs side by side: once the second job calls, both have
#: calls in flight, two each of the four slots, within this. The second job's worker gets
#: slots at its next heartbeat (HEARTBEAT, 1 s) after the first job's workers give slots
#: back, which they do as their calls end (a call: 1 s) and they renew (1 s).
FEW_SECONDS = 5.0
#: ... and the second job's first call after it was queued: its task is taken by the next
#: free worker, which may be busy for a moment with a task the first job's coordinator
#: queued (every PUMP_MAX s at most; a host with no worker to spare passes it on), and the
#: ORM broker does not hand tasks out in order; then the worker waits for slots (above).
#: Measured on a loaded 2-CPU machine: 1.1 s (Redis), 4.5 and 6.5 s (ORM).
FIRST_CALL_SECONDS = PUMP_MAX + FEW_SECONDS


@pytest.mark.parametrize("broker_name", BROKERS)
def test_two_jobs_on_one_provider_both_make_progress(
    broker_name, make_site, make_post, server_action, fake_llm, superuser
):
    """The second job does not wait for the first to finish: it calls within a few seconds
    of being queued, the provider's slots are then shared between the two (CONCURRENCY 4:
    two each) and the first keeps calling all the while. The fake server's log tells the
    jobs apart by the pages' titles in the prompts."""
    need_services(broker_name)
    with make_site(broker_name) as site:
        fake_llm.latency = 1.0
        first_posts = [make_post(title=f"First job {n}") for n in range(40)]
        second_posts = [make_post(title=f"Second job {n}") for n in range(40)]
        first, _posts = make_job(make_post, server_action, superuser, 0, posts=first_posts)
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
        queued = time.monotonic()
        wait_for(
            lambda: calls_of(fake_llm, "Second"), timeout=60, message="the second job made no call"
        )
        began = calls_of(fake_llm, "Second")[0]["started"]
        window = (began, began + FEW_SECONDS)
        time.sleep(max(0.0, window[1] + 1 - time.monotonic()))
        firsts, seconds = calls_of(fake_llm, "First"), calls_of(fake_llm, "Second")
        side_by_side = [
            (in_flight_at(firsts, began + t / 2), in_flight_at(seconds, began + t / 2))
            for t in range(2 * int(FEW_SECONDS))
        ]
        print(
            f"the second job's first call {began - queued:.2f} s after it was queued; "
            f"calls in flight (first job, second job) every 0.5 s from then: {side_by_side}"
        )
        # The second job called within a few seconds of being queued ...
        assert began - queued <= FIRST_CALL_SECONDS, began - queued
        # ... the first kept calling all the while (it waits for nothing either) ...
        half = began + FEW_SECONDS / 2
        assert any(began <= c["started"] < half for c in firsts)
        assert any(half <= c["started"] < window[1] for c in firsts)
        # ... and within a few seconds both had calls in flight at once, as many as their
        # fair shares (two each of the four) at some moment.
        moments = [c["started"] for c in firsts + seconds if window[0] <= c["started"] < window[1]]
        assert any(in_flight_at(firsts, t) >= 1 and in_flight_at(seconds, t) >= 1 for t in moments)
        assert any(in_flight_at(firsts, t) == 2 and in_flight_at(seconds, t) == 2 for t in moments)
        assert succeeded(first) < len(first_posts)
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


@pytest.mark.parametrize("broker_name", BROKERS)
def test_database_connections_stay_within_the_formula_at_concurrency_16(
    broker_name, make_site, make_post, server_action, fake_llm, superuser, settings
):
    """About one connection per call slot plus a few per worker: at most CONCURRENCY
    + 3 x job workers + hosts x (workers + 3) (the README's formula), measured while all 16
    calls are in flight (and, with the ORM broker, its polling on the same database)."""
    need_services(broker_name)
    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "CONCURRENCY": {"*": 16}}
    hosts, workers, job_workers = 2, 2, 2  # one job worker per host
    with make_site(broker_name, LLM_CONCURRENCY="16") as site:
        fake_llm.latency = 1.0
        job, posts = make_job(make_post, server_action, superuser, 96)
        for n in range(hosts):
            site.host(f"host-{n}")
        jobs.enqueue_job(job, broker=site.broker, on_commit=False)
        peak = peak_at_full_load = 0
        deadline = time.monotonic() + 240
        while not completed(job) and time.monotonic() < deadline:
            connections = database_connections()
            peak = max(peak, connections)
            if fake_llm.max_in_flight == 16:
                peak_at_full_load = max(peak_at_full_load, connections)
            time.sleep(0.05)
        assert completed(job)
        print(f"peak connections {peak} ({peak_at_full_load} once 16 calls were in flight)")
        # The job really ran 16 calls at once (its two workers together), so the peak was
        # taken under full load ...
        assert fake_llm.max_in_flight == 16
        assert peak_at_full_load > 0
        # ... and stayed within the formula.
        assert peak <= 16 + 3 * job_workers + hosts * (workers + 3), peak
        assert len(items_per_host(job)) == hosts  # both hosts took part
