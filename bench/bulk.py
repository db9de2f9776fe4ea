"""Benchmark the bulk job engine: N pages, a fake model with fixed latency, concurrency C.

Run by hand (not a test)::

    python bench/bulk.py                                  # 1000 pages, 200 ms, C=8, ORM + Redis
    python bench/bulk.py --pages 10000 --brokers orm      # memory at 10k pages
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench python bench/bulk.py

It creates a throwaway *plain* SQLite file database (Django's defaults: no WAL, deferred
transactions, 5 s timeout, as a new site has; or uses ``DATABASE_URL``), makes N blog pages,
starts the fake OpenAI-compatible server (``python -m tests.fakeserver``) and a real
``qcluster`` (``tests/qcluster_settings.py``, DEBUG off), waits until every worker process
has answered a probe task with LiteLLM imported (so the preload on ``post_spawn`` is over
everywhere and no worker starts later), creates one job over all pages and waits for it.

It prints the job's throughput (pages/s between the job's start and finish), the ratio to
the ideal ``C / latency``, the CPU time the whole cluster (every qcluster process) spent per
page during the job, the most model calls the fake server saw at once (never above C), and
the peak resident memory of the worker processes and of this process (which selected the
pages and created the items). CPU is shown for the whole cluster (its idle processes poll
the broker, which counts more the longer a job takes) and for the job's workers (the
``--runners`` busiest processes; by default as many as the hosts give bulk jobs, ``--workers``
less one each). ``--repeat 3`` runs each broker three times (new job, same pages, ``force``)
and prints the median too.

``--hosts N`` starts N clusters with the same queue name, each a host of its own
(``HOST_ID``, its own process group, ``--workers`` each), and prints the pages each host ran
and the most database connections open during the job. Several hosts share one database:
``--hosts`` above 1 needs PostgreSQL (``DATABASE_URL``); on SQLite it is refused::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench python bench/bulk.py \
        --hosts 3 --latency 2 --concurrency 24 --pages 600 --brokers redis

The Redis broker uses ``REDIS_URL`` (default ``redis://127.0.0.1:6379/15``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "sandbox")]


def peak_rss_mb_of_group(pgid: int) -> float:
    """Largest VmHWM (peak RSS) among the processes of a process group, in MB."""
    peak = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except (OSError, ValueError, IndexError):
            continue
    return peak / 1024


def cpu_seconds_of_group(pgid: int) -> dict[int, float]:
    """User + system CPU time of each process of a process group so far, in seconds."""
    result = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                ticks = int(fields[11]) + int(fields[12])  # utime, stime
                result[int(entry.name)] = ticks / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            continue
    return result


def probe(seconds: float) -> list:
    """A task for the workers: wait, then say which process ran it and whether LiteLLM is
    imported there (the ``post_spawn`` preload is over)."""
    time.sleep(seconds)
    return [os.getpid(), "litellm" in sys.modules]


def fake_stats(port: int) -> dict:
    from urllib.request import urlopen

    with urlopen(f"http://127.0.0.1:{port}/_fake/stats", timeout=5) as response:  # noqa: S310
        return json.loads(response.read())


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def setup_django(env: dict) -> None:
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.qcluster_settings"
    import django

    django.setup()


def make_pages(n: int) -> list[int]:
    from blog.models import BlogIndexPage, BlogPage
    from wagtail.models import Page
    from wagtail.rich_text import RichText

    root = Page.get_first_root_node()
    index = BlogIndexPage(title="Bench", slug=f"bench-{uuid.uuid4().hex[:6]}")
    root.add_child(instance=index)
    ids = []
    started = time.perf_counter()
    for i in range(n):
        page = BlogPage(
            title=f"Bench post {i}",
            slug=f"post-{i}",
            body=[("paragraph", RichText(f"<p>Post {i} is about compost, worms and soil.</p>"))],
        )
        index.add_child(instance=page)
        ids.append(page.pk)
        if (i + 1) % 1000 == 0:
            print(f"  {i + 1} pages ({time.perf_counter() - started:.0f} s)", flush=True)
    return ids


def wait_for_workers(broker, workers: int, *, timeout: float) -> None:
    """Block until ``workers`` distinct worker processes have answered a probe with LiteLLM
    imported: their ``post_spawn`` (preload, job recovery) is over before the job exists.

    A worker runs ``post_spawn`` before it takes its first task; probes are sent in rounds
    until every worker process has answered one.
    """
    from django_q.models import Task
    from django_q.tasks import async_task

    started = time.monotonic()
    deadline = started + timeout
    ready: set[int] = set()
    while time.monotonic() < deadline:
        ids = [async_task("bench.bulk.probe", 0.5, broker=broker) for _ in range(workers)]
        while time.monotonic() < deadline:
            done = list(Task.objects.filter(id__in=ids))
            if len(done) == len(ids):
                break
            time.sleep(0.2)
        for task in done:
            if task.success and task.result and task.result[1]:
                ready.add(task.result[0])
        if len(ready) >= workers:
            print(
                f"  {len(ready)} workers ready (LiteLLM loaded) after "
                f"{time.monotonic() - started:.1f} s",
                flush=True,
            )
            return
    raise SystemExit(f"the workers were not ready within {timeout} s ({len(ready)} ready)")


def run_once(broker_name: str, ids, action, user, env: dict, args, port: int) -> list[dict]:
    from django_q.brokers.orm import ORM

    from tests.workers import QCluster, redis_broker
    from wagtail_llm_actions import jobs
    from wagtail_llm_actions.models import LLMJob

    name = os.environ["Q_NAME"]  # tasks are signed with the cluster's name
    broker = redis_broker(name) if broker_name == "redis" else ORM(list_key=name)
    cluster_env = {
        **env,
        "Q_NAME": name,
        "Q_BROKER": broker_name,
        "Q_WORKERS": str(args.workers),
        "Q_TIMEOUT": "3600",
        "Q_RETRY": "4000",
        "LLM_LEASE_SECONDS": "60",
        "LLM_CONCURRENCY": str(args.concurrency),
    }
    log = Path(tempfile.gettempdir()) / f"{name}-{broker_name}.log"
    print(f"  qcluster log: {log}", flush=True)
    clusters = [
        QCluster(
            cluster_env,
            log_path=log.with_name(f"{log.stem}-host{n}.log") if args.hosts > 1 else log,
            host=f"host{n}" if args.hosts > 1 else "",
        ).start()
        for n in range(args.hosts)
    ]
    results = []
    try:
        wait_for_workers(broker, args.workers * args.hosts, timeout=args.warmup)
        for _run in range(args.repeat):
            created = time.perf_counter()
            job = jobs.create_job(action, user, ids, force=True)
            create_seconds = time.perf_counter() - created
            before = fake_stats(port)["completions"]
            cpu_before = cpu_of(clusters)
            jobs.enqueue_job(job, broker=broker, on_commit=False)
            deadline = time.monotonic() + args.timeout
            last = 0
            peak_connections = 0
            while time.monotonic() < deadline:
                job.refresh_from_db()
                if job.status == "completed":
                    break
                peak_connections = max(peak_connections, database_connections())
                done = job.items.exclude(status__in=["queued", "running"]).count()
                if done - last >= max(1, len(ids) // 5):
                    print(f"  {broker_name}: {done}/{len(ids)}", flush=True)
                    last = done
                time.sleep(0.25)
            cpu_after = cpu_of(clusters)
            spent = sorted(
                (cpu_after[pid] - cpu_before.get(pid, 0.0) for pid in cpu_after), reverse=True
            )
            cpu = sum(spent)
            # The job's workers: the busiest processes (the others are the clusters'
            # sentinels, pushers, monitors and idle workers polling the broker).
            job_cpu = sum(spent[: args.runners])
            worker_peak = max(peak_rss_mb_of_group(c.pid) for c in clusters)
            per_host = items_per_host(job)
            job = LLMJob.objects.get(pk=job.pk)
            progress = jobs.job_progress(job)
            if job.status != "completed":
                raise SystemExit(
                    f"{broker_name}: job did not finish in {args.timeout} s: {progress}"
                )
            stats = fake_stats(port)
            writes = writer_stats([c.log_path for c in clusters], job.pk)
            seconds = (job.finished_at - job.started_at).total_seconds()
            rate = len(ids) / seconds
            ideal = args.concurrency / args.latency
            result = {
                "broker": broker_name,
                "pages": len(ids),
                "succeeded": progress.count("succeeded"),
                "calls": stats["completions"] - before,
                "max_in_flight": stats["max_in_flight"],
                "seconds": seconds,
                "rate": rate,
                "ratio": rate / ideal,
                "cpu_ms_per_page": 1000 * cpu / len(ids),
                "job_cpu_ms_per_page": 1000 * job_cpu / len(ids),
                "create_seconds": create_seconds,
                "worker_peak_mb": worker_peak,
                "commits": writes["commits"],
                "write_seconds": writes["seconds"],
                "per_host": per_host,
                "peak_connections": peak_connections,
                "load": os.getloadavg()[0],
            }
            print(f"  {format_row(result)}", flush=True)
            results.append(result)
    finally:
        for c in clusters:
            c.kill()
        if broker_name == "redis":
            broker.delete_queue()
    return results


def cpu_of(clusters) -> dict[int, float]:
    cpu = {}
    for c in clusters:
        cpu.update(cpu_seconds_of_group(c.pid))
    return cpu


def items_per_host(job) -> dict[str, int]:
    """Pages each host ran (the host part of the claim token that finished each item)."""
    counts: dict[str, int] = {}
    for token in job.items.values_list("claimed_by", flat=True):
        host = token.split(":", 1)[0] if token else "-"
        counts[host] = counts.get(host, 0) + 1
    return dict(sorted(counts.items()))


def database_connections() -> int:
    """Connections to this database (PostgreSQL; 0 on SQLite), this process's left out."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


HEADER = (
    f"{'broker':<7}{'pages/s':>9}{'ratio':>7}{'seconds':>9}{'CPU ms/page':>13}"
    f"{'(workers)':>10}{'max calls':>11}{'worker MB':>11}"
)


def format_row(r: dict) -> str:
    return (
        f"{r['broker']:<7}{r['rate']:>9.1f}{r['ratio']:>7.2f}{r['seconds']:>9.1f}"
        f"{r['cpu_ms_per_page']:>13.1f}{r['job_cpu_ms_per_page']:>10.1f}"
        f"{r['max_in_flight']:>11}{r['worker_peak_mb']:>11.0f}"
        f"   (job created in {r['create_seconds']:.2f} s, {r['succeeded']} succeeded, "
        f"{r['calls']} calls, per host {r['per_host']}, peak connections "
        f"{r['peak_connections']}, load {r['load']:.1f}"
        + (
            f"; SQLite writer: {r['commits'] / r['pages']:.2f} commits/page, "
            f"{1000 * r['write_seconds'] / r['pages']:.1f} ms/page in write transactions)"
            if r.get("commits")
            else ")"
        )
    )


def writer_stats(logs: list[Path], job_id: int) -> dict:
    """Commits and seconds in write transactions of job ``job_id``'s batched writers, summed
    over its workers (logged by each on SQLite; zero on PostgreSQL)."""
    pattern = re.compile(
        rf"Job {job_id}: (\d+) writes in (\d+) commits, ([\d.]+) s in write transactions"
    )
    commits, seconds = 0, 0.0
    text = "\n".join(log.read_text(errors="replace") for log in logs)
    for match in pattern.finditer(text):
        commits += int(match.group(2))
        seconds += float(match.group(3))
    return {"commits": commits, "seconds": seconds}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per model call")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--workers",
        type=int,
        default=3,
        help="qcluster worker processes per host (bulk jobs take all but one)",
    )
    parser.add_argument("--hosts", type=int, default=1, help="clusters, each a host of its own")
    parser.add_argument("--brokers", default="orm,redis")
    parser.add_argument("--repeat", type=int, default=1, help="jobs per broker (median shown)")
    parser.add_argument(
        "--runners",
        type=int,
        default=None,
        help="processes counted as the job's workers (the busiest ones) in the CPU column; "
        "default: hosts x (workers - 1)",
    )
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument(
        "--warmup", type=float, default=300.0, help="longest wait for the workers to be ready"
    )
    args = parser.parse_args(argv)
    if args.hosts > 1 and not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        parser.error(
            f"--hosts {args.hosts}: several hosts share one PostgreSQL database; set "
            "DATABASE_URL=postgres://… (SQLite is a database of one host)"
        )
    if args.runners is None:
        args.runners = args.hosts * max(1, args.workers - 1)

    tmp = tempfile.mkdtemp(prefix="llm-bench-")
    env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "Q_NAME": f"bench{uuid.uuid4().hex[:8]}",
        # The job records its concurrency limit when it is created (here), so this process
        # must see the same CONCURRENCY setting as the workers.
        "LLM_CONCURRENCY": str(args.concurrency),
    }
    if os.environ.get("DATABASE_URL"):
        env["LLM_TEST_DB_NAME"] = os.environ["DATABASE_URL"].rsplit("/", 1)[1]
    else:
        env["LLM_TEST_SQLITE"] = str(Path(tmp) / "bench.sqlite3")
    setup_django(env)
    from blog.models import BlogPage
    from django.contrib.auth import get_user_model
    from django.contrib.contenttypes.models import ContentType
    from django.core.management import call_command
    from django.db import connection

    from wagtail_llm_actions.models import LLMAction, LLMPrompt

    call_command("migrate", verbosity=0)
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            print(f"SQLite journal mode: {cursor.fetchone()[0]} (plain, as Django creates it)")

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.fakeserver", "--port", str(port)]
        + ["--latency", str(args.latency)],
        cwd=str(ROOT),
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        print(f"Creating {args.pages} pages…", flush=True)
        ids = make_pages(args.pages)
        user = get_user_model().objects.create_superuser(
            f"bench{uuid.uuid4().hex[:6]}", "b@example.com", "x"
        )
        prompt = LLMPrompt.objects.create(
            name="Bench", slug=f"bench-{uuid.uuid4().hex[:6]}", template="Summarize: {body}"
        )
        os.environ["TEST_LLM_API_KEY"] = "sk-bench"  # named in tests/settings.py
        action = LLMAction.objects.create(
            name="Bench summary",
            slug=f"bench-{uuid.uuid4().hex[:6]}",
            source_field="body",
            target_field="summary",
            model="openai/bench-model",
            api_base=f"http://127.0.0.1:{port}/v1",
            api_key_name="TEST_LLM_API_KEY",
            prompt=prompt,
            timeout=30,
        )
        action.page_types.set([ContentType.objects.get_for_model(BlogPage)])
        results = []
        for broker_name in [b.strip() for b in args.brokers.split(",") if b.strip()]:
            if broker_name == "redis":
                from tests.workers import redis_available

                if not redis_available():
                    print("Redis is not running: skipped")
                    continue
            results.extend(run_once(broker_name, ids, action, user, env, args, port))
    finally:
        server.kill()
        server.wait(timeout=10)
    own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ideal = args.concurrency / args.latency
    print()
    print(
        f"{args.pages} pages, latency {args.latency * 1000:.0f} ms, concurrency "
        f"{args.concurrency}, ideal {ideal:.1f} pages/s, database {connection.vendor}, "
        f"{args.hosts} host(s) x {args.workers} workers"
    )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(HEADER)
    for r in results:
        print(format_row(r))
    for broker_name in dict.fromkeys(r["broker"] for r in results):
        runs = [r for r in results if r["broker"] == broker_name]
        if len(runs) > 1:
            print(
                f"median {broker_name}: {statistics.median(r['rate'] for r in runs):.1f} pages/s "
                f"(ratio {statistics.median(r['ratio'] for r in runs):.2f}), "
                f"{statistics.median(r['cpu_ms_per_page'] for r in runs):.1f} CPU ms/page "
                f"({statistics.median(r['job_cpu_ms_per_page'] for r in runs):.1f} in the "
                "job's workers)"
            )
    print(f"bench process (selection + item creation) peak RSS: {own_peak:.0f} MB")


if __name__ == "__main__":
    main()
