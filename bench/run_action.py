"""Time one action run against its floor (run by hand from the repository root; not a test).

::

    python bench/run_action.py [--runs 60] [--profile]

* **run**: ``LLMService().run(action, page)``: read the latest revision, extract, render, call
  the model, write the draft revision, the interaction row and the page-history entry.
* **floor**: what any code doing this job must do, with nothing of ours in between:
  ``page.get_latest_revision_as_object()`` + one bare ``litellm.completion()`` with the same
  messages and parameters + ``save_revision()``.

Both use the real LiteLLM HTTP path against tests/fakeserver.py (zero latency) running in its
own process, an ~800-word StreamField body, a throwaway SQLite file and DEBUG off. Runs and
floors alternate; medians are compared. ``--profile`` adds a cProfile of the runs with the
time per run of the calls where our overhead goes.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "sandbox")]

WORDS = (
    "compost worms soil bin moist peelings coffee grounds carbon nitrogen heat turn "
    "leaves garden balcony flat small bokashi bran airflow smell balance"
).split()


def long_paragraph(words: int = 760) -> str:
    """About ``words`` words of plain prose, in sentences of twelve."""
    out = []
    for i in range(words):
        word = WORDS[(i * 7) % len(WORDS)]
        out.append(word.capitalize() if i % 12 == 0 else word)
        if i % 12 == 11:
            out[-1] += "."
    return " ".join(out) + "."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_fake_server(*options: str) -> tuple[subprocess.Popen, str]:
    """tests/fakeserver.py in its own process, with ``options`` (default: no latency);
    returns it and its base URL once it listens."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakeserver",
            "--port",
            str(port),
            *(options or ("--latency", "0")),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        process.kill()
        raise SystemExit("the fake server did not start")
    return process, f"http://127.0.0.1:{port}/v1"


def setup_django(tmp: str) -> None:
    """The sandbox site on a throwaway SQLite file in ``tmp``, DEBUG off, migrated; the fake
    server's key and API base allowed; one log line per run."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="demo.settings",
        DJANGO_DEBUG="0",
        SANDBOX_DB=str(Path(tmp) / "bench.sqlite3"),
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        BENCH_LLM_API_KEY="sk-bench",
        LLM_ACTIONS_EXTRA_API_KEY_NAMES="BENCH_LLM_API_KEY",  # no provider's variable
        LLM_ACTIONS_ALLOWED_API_BASES="http://127.0.0.1:*",  # the fake server
    )
    os.environ.pop("DATABASE_URL", None)
    import logging

    import django

    django.setup()
    logging.getLogger("wagtail_llm_actions").setLevel(logging.WARNING)  # one line per run
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def fmt(xs: list[float]) -> str:
    xs = sorted(xs)
    p90 = xs[int(len(xs) * 0.9)]
    return f"median {statistics.median(xs) * 1000:6.2f} ms, p90 {p90 * 1000:6.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--profile", action="store_true", help="also profile the runs")
    parser.add_argument("--verbose", action="store_true", help="profile: every call > 0.5 ms")
    parser.add_argument("--queries", action="store_true", help="profile: print each query")
    args = parser.parse_args()

    setup_django(tempfile.mkdtemp(prefix="llm-bench-"))
    from django.conf import settings
    from django.contrib.contenttypes.models import ContentType

    assert not settings.DEBUG
    from blog.models import BlogIndexPage, BlogPage
    from wagtail.models import Page

    from tests.conftest import make_body
    from wagtail_llm_actions.models import LLMAction, LLMPrompt
    from wagtail_llm_actions.providers import preload
    from wagtail_llm_actions.service import LLMService

    root = Page.get_first_root_node()
    index = root.add_child(instance=BlogIndexPage(title="Blog", slug="blog"))
    body = make_body(paragraph=long_paragraph())
    page = index.add_child(instance=BlogPage(title="Bench", slug="bench", body=body))
    page.save_revision().publish()

    server, url = start_fake_server()
    try:
        prompt = LLMPrompt.objects.create(name="S", slug="s", template="Summarize:\n\n{body}")
        prompt.save_revision()
        action = LLMAction.objects.create(
            name="S",
            slug="s",
            prompt=prompt,
            source_field="body",
            target_field="summary",
            model="openai/fake",
            api_base=url,
            api_key_name="BENCH_LLM_API_KEY",
            timeout=10,
        )
        action.page_types.set([ContentType.objects.get_for_model(BlogPage)])

        t0 = time.perf_counter()
        preload()
        print(f"litellm import: {time.perf_counter() - t0:.2f} s (once per worker process)")
        import litellm

        service = LLMService()
        prepared = service.dry_run(action, page)
        words = len(prepared.source_text.split())
        params = {
            "model": action.model,
            "messages": prepared.messages,
            "api_base": url,
            "api_key": os.environ["BENCH_LLM_API_KEY"],
            "timeout": action.timeout,
            "num_retries": 0,
        }
        if action.temperature is not None:
            params["temperature"] = action.temperature
        if action.max_tokens is not None:
            params["max_tokens"] = action.max_tokens

        def run_once():
            service.run(action, BlogPage.objects.get(pk=page.pk))

        def floor_once(obj):
            draft = obj.get_latest_revision_as_object()
            litellm.completion(**params)
            draft.save_revision()

        for _ in range(3):  # warm-up: HTTP client, cost map lookups, caches
            run_once()
            floor_once(BlogPage.objects.get(pk=page.pk))

        def timed(func, obj, walls: list[float], cpus: list[float]) -> None:
            t, c = time.perf_counter(), time.process_time()
            func(obj)
            walls.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)

        def run_obj(obj):
            service.run(action, obj)

        runs, floors, run_cpu, floor_cpu = [], [], [], []
        for i in range(args.runs):
            # Alternate which goes first, so that drift (caches, load, the growing
            # tables) hits both alike.
            pairs = [(run_obj, runs, run_cpu), (floor_once, floors, floor_cpu)]
            for func, walls, cpus in pairs if i % 2 == 0 else pairs[::-1]:
                timed(func, BlogPage.objects.get(pk=page.pk), walls, cpus)

        ratio = statistics.median(runs) / statistics.median(floors)
        cpu_ratio = statistics.median(run_cpu) / statistics.median(floor_cpu)
        print(f"body: {words} words extracted; {len(str(prepared.messages))} characters sent")
        print(f"load average: {os.getloadavg()[0]:.2f} (1 min)")
        print(f"LLMService.run, {args.runs} runs:            {fmt(runs)}")
        print(f"floor (revision + completion + save), {args.runs}: {fmt(floors)}")
        overhead = (statistics.median(runs) - statistics.median(floors)) * 1000
        print(f"overhead per run: {overhead:.2f} ms; ratio run/floor: {ratio:.3f} (goal <= 1.10)")
        print(
            f"CPU time of this process (the fake server excluded): run {fmt(run_cpu)}; "
            f"floor {fmt(floor_cpu)}; ratio {cpu_ratio:.3f}"
        )

        if args.profile:
            profile(service, action, page.pk, BlogPage, floor_once, args.runs, args)
    finally:
        server.terminate()
        server.wait(timeout=10)


#: Where a run's time goes beyond the floor: functions reported by --profile, per run.
PROFILED = [
    ("wagtail_llm_actions/service.py", "run"),
    ("wagtail_llm_actions/run/access.py", "check"),
    ("wagtail_llm_actions/run/prepare.py", "prepare"),
    ("wagtail_llm_actions/run/prepare.py", "working_copy"),
    ("wagtail_llm_actions/run/recording.py", "log_generated"),
    ("wagtail_llm_actions/run/drafts.py", "save_draft"),
    ("wagtail_llm_actions/run/recording.py", "new_interaction"),
    ("wagtail_llm_actions/extraction/extract.py", "extract_text"),
    ("wagtail_llm_actions/templating.py", "render"),
    ("wagtail_llm_actions/outputs.py", "apply_output"),
    ("wagtail_llm_actions/providers/litellm.py", "complete"),
    ("wagtail_llm_actions/providers/litellm.py", "parse_response"),
    ("wagtail_llm_actions/providers/__init__.py", "complete"),
    ("litellm/main.py", "completion"),
    ("litellm/cost_calculator.py", "completion_cost"),
    ("wagtail/models/revisions.py", "save_revision"),
    ("wagtail/models/draft_state.py", "save_revision"),
    ("wagtail/models/revisions.py", "get_latest_revision_as_object"),
    ("wagtail/models/locking.py", "get_lock"),
    ("wagtail/models/pages.py", "get_lock"),
    ("django/db/models/base.py", "save"),
    ("django/db/backends/utils.py", "execute"),
    ("django/db/backends/utils.py", "_execute"),
]


def profile(
    service,
    action,
    page_pk,
    page_class,
    floor_once,
    runs: int,
    args: argparse.Namespace,
) -> None:
    """cProfile ``runs`` service runs (and as many floors) and print ms per run."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        service.run(action, page_class.objects.get(pk=page_pk))
    run_queries = len(ctx.captured_queries) - 1  # the page fetch
    run_sql = [q["sql"] for q in ctx.captured_queries[1:]]
    with CaptureQueriesContext(connection) as ctx:
        floor_once(page_class.objects.get(pk=page_pk))
    floor_queries = len(ctx.captured_queries) - 1
    floor_sql = [q["sql"] for q in ctx.captured_queries[1:]]
    if args.queries:
        for label, sql in (("run", run_sql), ("floor", floor_sql)):
            print(f"\nqueries of one {label}:")
            for number, text in enumerate(sql, start=1):
                print(f"  {number:2}. {text[:160]}")

    by_owner: dict[str, dict[str, float]] = {}
    own_times: dict[str, dict[tuple, float]] = {}
    for label, target in (("run", "run"), ("floor", "floor")):
        # CPU time, not wall time: other processes on a shared machine do not count.
        profiler = cProfile.Profile(time.process_time)
        for _ in range(runs):
            obj = page_class.objects.get(pk=page_pk)
            profiler.enable()
            if target == "run":
                service.run(action, obj)
            else:
                floor_once(obj)
            profiler.disable()
        stats = pstats.Stats(profiler).stats
        total = sum(tt for (_cc, _nc, tt, _ct, _callers) in stats.values()) / runs * 1000
        own_times[label] = {key: value[2] / runs * 1000 for key, value in stats.items()}
        owners = by_owner[label] = {}
        for (path, _line, _name), (_cc, _nc, tt, _ct, callers) in stats.items():
            owner = owner_of(path)
            shares = {owner: tt}
            if owner == STDLIB and callers:
                # Builtins and the standard library (sqlite3, json, copy…) count for the
                # package that called them, in proportion to the time of each call site.
                spent = sum(edge[3] for edge in callers.values()) or 1.0
                shares = {}
                for (caller_path, _l, _n), edge in callers.items():
                    caller = owner_of(caller_path)
                    shares[caller] = shares.get(caller, 0.0) + tt * edge[3] / spent
            for name, value in shares.items():
                owners[name] = owners.get(name, 0.0) + value / runs * 1000
        print(f"\nprofile of {label} ({runs} runs; CPU time under the profiler, per run): ")
        print(f"  total {total:.2f} ms")
        for (path, _line, name), (_cc, calls, _tt, cumulative, _callers) in sorted(
            stats.items(), key=lambda kv: -kv[1][3]
        ):
            if any(path.endswith(p) and name == n for p, n in PROFILED) or (
                args.verbose and cumulative / runs > 0.0005
            ):
                short = path.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
                print(f"  {cumulative / runs * 1000:8.2f} ms  {calls / runs:5.1f}x  {short}:{name}")
    print("\nCPU time per run by whose code runs it (own time of its functions, profiled):")
    print(f"  {'':24} {'run':>9} {'floor':>9} {'run - floor':>12}")
    for owner in sorted(by_owner["run"], key=lambda o: -by_owner["run"][o]):
        mine, floor = by_owner["run"][owner], by_owner["floor"].get(owner, 0.0)
        print(f"  {owner:24} {mine:8.2f}  {floor:8.2f}  {mine - floor:+11.2f}")
    if args.verbose:
        print("\nlargest differences in own CPU time per run (run - floor):")
        run_own, floor_own = own_times["run"], own_times["floor"]
        diffs = {key: run_own.get(key, 0.0) - floor_own.get(key, 0.0) for key in run_own}
        for (path, line, name), diff in sorted(diffs.items(), key=lambda kv: -kv[1])[:40]:
            short = path.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
            print(f"  {diff:+8.3f} ms  {short}:{line}:{name}")
    print(f"\nqueries per run: {run_queries} (floor: {floor_queries})")


#: Package prefixes (after ``site-packages/``) and who owns them, for the profile's summary.
OWNERS = (
    ("wagtail_llm_actions/", "wagtail-llm-actions (us)"),
    ("wagtail/", "Wagtail"),
    ("modelsearch/", "Wagtail (search index)"),
    ("modelcluster/", "Wagtail (modelcluster)"),
    ("treebeard/", "Wagtail (treebeard)"),
    ("django/", "Django"),
    ("django_tasks/", "Django (tasks)"),
    ("litellm/", "LiteLLM"),
    ("openai/", "LiteLLM (OpenAI SDK)"),
    ("httpx/", "LiteLLM (httpx)"),
    ("httpcore/", "LiteLLM (httpx)"),
    ("pydantic", "LiteLLM (pydantic)"),
)


STDLIB = "Python (stdlib, builtins)"


def owner_of(path: str) -> str:
    """Whose code ``path`` is: us, Wagtail, Django, LiteLLM, or the standard library."""
    if path.startswith(str(ROOT)):
        rest = path[len(str(ROOT)) + 1 :]
        return "bench" if rest.startswith("bench/") else owner_of("site-packages/" + rest)
    rest = path.split("site-packages/")[-1] if "site-packages/" in path else None
    if rest is None:
        return STDLIB
    for prefix, owner in OWNERS:
        if rest.startswith(prefix):
            return owner
    return "other packages"


if __name__ == "__main__":
    main()
