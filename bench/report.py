"""Benchmark the interaction report at scale (run by hand, not a test).

::

    python bench/report.py                       # 100,000 rows in a throwaway SQLite file
    python bench/report.py --rows 20000
    python bench/report.py --database-url postgres://postgres@127.0.0.1:5432/bench
    python bench/report.py --no-xlsx             # skip the XLSX export
    python bench/report.py --keep --only editor --profile "editor, search"

It creates a throwaway database (SQLite file in a temporary directory, or ``test_<name>`` on
the server given by ``--database-url``; dropped afterwards), bulk-creates N interactions over
90 days (200 pages, 3 actions, 4 users, 5% errors), then times, as a superuser and as an
editor who sees only some pages:

* the report page (unfiltered, filtered by status + action + the last 30 days, searched:
  a term in every page title, one in no row ("rare"), one page's title, the error text),
  as the superuser and as the restricted editor,
* the totals + chart query (one grouped query) and the model filter's choices on their own,
* the interaction detail page,
* as a baseline, Wagtail's own "Site history" report (what any admin listing costs here),
* the CSV and XLSX exports of everything (both streamed): the time to the first bytes (what
  the user waits for before the download starts) and to the whole file,

with the number of queries per request and the peak Python memory of the export
(``tracemalloc``, measured in a separate run so it does not slow the timings). Wall and CPU
times are medians of 3 (after one warm-up); CPU is this process's (``time.process_time``):
with SQLite that is all the work, with PostgreSQL it leaves out the server's. "DB" is the
time spent in queries as Django's query capture sees it (wall time around each query). ``--keep``
keeps the generated database for the next run, ``--only TEXT`` times some views,
``--profile TEXT`` prints a cProfile of them, ``--markdown`` a table for a note.
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_django(database_url: str | None, sqlite_path: str) -> None:
    sys.path[:0] = [str(ROOT), str(ROOT / "sandbox")]
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["DJANGO_DEBUG"] = "0"
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    else:
        os.environ.pop("DATABASE_URL", None)
        os.environ["TEST_SQLITE_NAME"] = sqlite_path
    import django

    django.setup()


#: CPU ms (this process) of the last timed() call: on a shared machine the steadier figure.
#: With SQLite it is all the work; with PostgreSQL it leaves out the server's.
last_cpu_ms = 0.0


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    """Median wall time in ms over ``repeat`` runs, and the last result."""
    global last_cpu_ms
    times, cpu = [], []
    result = None
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    last_cpu_ms = statistics.median(cpu)
    return statistics.median(times), result


def make_data(rows: int, seed: int = 1):
    from blog.models import BlogIndexPage, BlogPage
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group, Permission
    from django.contrib.contenttypes.models import ContentType
    from django.utils import timezone
    from wagtail.models import GroupPagePermission, Page, Site

    from wagtail_llm_actions.models import LLMAction, LLMInteraction, LLMPrompt

    rng = random.Random(seed)
    User = get_user_model()
    admin = User.objects.create_superuser("admin", "admin@example.com", "password")
    users = [admin] + [
        User.objects.create_user(f"user{i}", f"user{i}@example.com", "password") for i in range(3)
    ]
    root = Page.get_first_root_node()
    home = BlogIndexPage(title="Blog", slug="blog")
    root.add_child(instance=home)
    Site.objects.update_or_create(
        is_default_site=True, defaults={"hostname": "localhost", "root_page": home}
    )
    sections = []
    for s in range(4):
        section = BlogIndexPage(title=f"Section {s}", slug=f"section-{s}")
        home.add_child(instance=section)
        sections.append(section)
    pages = []
    for i in range(200):
        page = BlogPage(title=f"Post {i} about compost", slug=f"post-{i}")
        sections[i % 4].add_child(instance=page)
        pages.append(page)

    # an editor who may edit one section only (sees a quarter of the rows plus their own)
    editor = users[1]
    group = Group.objects.create(name="Section 0 editors")
    group.permissions.add(Permission.objects.get(codename="access_admin"))
    GroupPagePermission.objects.create(
        group=group, page=sections[0], permission=Permission.objects.get(codename="change_page")
    )
    editor.groups.add(group)

    prompt = LLMPrompt.objects.create(name="Summarize", slug="summarize", template="{body}")
    prompt.save_revision()
    blog_type = ContentType.objects.get_for_model(BlogPage)
    actions = []
    for slug, model, target in [
        ("summary", "openai/gpt-4o-mini", "summary"),
        ("tags", "anthropic/claude-3-5-haiku-latest", "tags"),
        ("seo", "local/extractive", "search_description"),
    ]:
        action = LLMAction.objects.create(
            name=slug.title(), slug=slug, model=model, prompt=prompt, target_field=target
        )
        action.page_types.set([blog_type])
        actions.append(action)

    now = timezone.now()
    field = LLMInteraction._meta.get_field("created_at")
    field.auto_now_add = False
    body = "Lorem ipsum dolor sit amet, compost and worms. " * 20
    try:
        batch = []
        for n in range(rows):
            action = actions[n % 3]
            error = rng.random() < 0.05
            tokens_in = rng.randint(200, 4000)
            tokens_out = None if error else rng.randint(20, 400)
            batch.append(
                LLMInteraction(
                    action=action,
                    action_name=action.name,
                    page=pages[rng.randrange(200)],
                    content_type=blog_type,
                    user=users[rng.randrange(4)],
                    trigger=rng.choice(["editor", "bulk", "command"]),
                    model=action.model,
                    messages=[{"role": "user", "content": body}],
                    parameters={"model": action.model, "temperature": 0.3},
                    response_text="" if error else body[:300],
                    output_value="" if error else body[:300],
                    previous_value=body[:200],
                    prompt_tokens=tokens_in,
                    completion_tokens=tokens_out,
                    total_tokens=tokens_in + (tokens_out or 0),
                    cost=None if error else Decimal(tokens_in) * Decimal("0.00000015"),
                    latency_ms=rng.randint(300, 9000),
                    status="error" if error else "success",
                    outcome="" if error else rng.choice(["drafted", "accepted", "edited"]),
                    error_code="timeout" if error else "",
                    error_message="The model did not answer in time." if error else "",
                    created_at=now - datetime.timedelta(seconds=rng.randrange(90 * 86400)),
                )
            )
            if len(batch) == 5000:
                LLMInteraction.objects.bulk_create(batch)
                batch = []
        if batch:
            LLMInteraction.objects.bulk_create(batch)
    finally:
        field.auto_now_add = True
    return admin, editor, actions


def existing_data(rows: int):
    """The admin, editor and actions of a database kept by an earlier ``--keep`` run."""
    from django.contrib.auth import get_user_model

    from wagtail_llm_actions.models import LLMAction, LLMInteraction

    if LLMInteraction.objects.count() != rows:
        return None
    User = get_user_model()
    try:
        admin, editor = User.objects.get(username="admin"), User.objects.get(username="user0")
    except User.DoesNotExist:
        return None
    return admin, editor, list(LLMAction.objects.order_by("pk"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database-url", default=None, help="e.g. postgres://user@host/name")
    parser.add_argument("--no-xlsx", dest="xlsx", action="store_false", help="skip XLSX")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the generated database (SQLite: in the temporary directory) and reuse it "
        "next time if it has --rows rows",
    )
    parser.add_argument(
        "--sqlite-path",
        metavar="FILE",
        help="with --keep: the SQLite file to keep and reuse (default: "
        "llm-report-bench-ROWS.sqlite3 in the temporary directory)",
    )
    parser.add_argument(
        "--profile",
        metavar="TEXT",
        help="cProfile the views whose label contains TEXT and print their top functions",
    )
    parser.add_argument("--only", metavar="TEXT", help="time only views whose label has TEXT")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--queries", action="store_true", help="print each view's slowest SQL")
    args = parser.parse_args()

    tmpdir = tempfile.TemporaryDirectory(prefix="llm-report-bench-")
    if args.keep:
        sqlite_path = args.sqlite_path or os.path.join(
            tempfile.gettempdir(), f"llm-report-bench-{args.rows}.sqlite3"
        )
    else:
        sqlite_path = os.path.join(tmpdir.name, "bench.sqlite3")
    setup_django(args.database_url, sqlite_path)

    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment
    from django.utils import timezone

    from wagtail_llm_actions.filters import recorded_values
    from wagtail_llm_actions.models import LLMInteraction
    from wagtail_llm_actions.permissions import visible_interactions
    from wagtail_llm_actions.reports import totals_and_series

    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=args.keep)
    try:
        data = existing_data(args.rows) if args.keep else None
        if data is None:
            if args.keep and LLMInteraction.objects.exists():
                connection.creation.destroy_test_db(old_name, verbosity=0, keepdb=False)
                connection.creation.create_test_db(verbosity=0, autoclobber=True)
            started = time.perf_counter()
            data = make_data(args.rows)
            with connection.cursor() as cursor:
                # PostgreSQL: VACUUM sets the visibility map so the covering index can be read
                # without the table, as autovacuum does on a live site after a bulk insert.
                vacuum = connection.vendor == "postgresql"
                cursor.execute("VACUUM ANALYZE" if vacuum else "ANALYZE")
            print(
                f"{connection.vendor}: {LLMInteraction.objects.count():,} interactions created "
                f"in {time.perf_counter() - started:.1f} s"
            )
        admin, editor, actions = data

        since = (timezone.localdate() - datetime.timedelta(days=30)).isoformat()
        filtered = f"?status=error&action={actions[0].pk}&created_at_from={since}"
        url = "/admin/llm-actions/report/"
        client = Client()
        vendor = connection.vendor
        rows: list[tuple[str, float | None, float | None, int | None, str]] = []
        load_start = os.getloadavg()[0]
        print(
            f"\n{args.rows:,} interactions on {vendor}; load average {load_start:.2f} (1 min) "
            f"at the start; wall and CPU (this process) are medians of 3",
            flush=True,
        )
        print(f"  {'view':<46}{'wall':>10}{'CPU':>10}{'DB':>10}{'queries':>9}   note", flush=True)
        db_ms: list[float] = []

        def wanted(label: str) -> bool:
            return not args.only or args.only in label

        def record(label, fn, repeat=3, note=lambda result: ""):
            """Time ``fn`` (returns its query count, or a (queries, result) pair)."""
            if not wanted(label):
                return None
            if repeat > 1:
                fn()  # warm up
            db_ms.clear()
            wall, result = timed(fn, repeat=repeat)
            queries, value = result if isinstance(result, tuple) else (result, None)
            db = statistics.median(db_ms) if db_ms else 0.0
            row = (label, wall, last_cpu_ms, db, queries, note(value))
            rows.append(row)
            print(
                f"  {label:<46}{wall:>7.0f} ms{last_cpu_ms:>7.0f} ms{db:>7.0f} ms{queries:>9}   "
                f"{row[5]}"
            )
            if args.profile and args.profile in label:
                profile(fn)
            return value

        def profile(fn):
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.runcall(fn)
            stats = pstats.Stats(profiler)
            stats.sort_stats("cumulative").print_stats(30)
            stats.sort_stats("tottime").print_stats(15)

        def counted(fn):
            def run():
                with CaptureQueriesContext(connection) as ctx:
                    value = fn()
                db_ms.append(sum(float(q["time"]) for q in ctx.captured_queries) * 1000)
                if args.queries:
                    for q in sorted(ctx.captured_queries, key=lambda q: -float(q["time"]))[:5]:
                        print(f"      {float(q['time']) * 1000:7.1f} ms  {q['sql'][:300]}")
                return len(ctx.captured_queries), value

            return run

        def page(who, user, query="", what=""):
            client.force_login(user)  # once: logging in is not part of the view

            def get():
                response = client.get(url + query)
                assert response.status_code == 200, response.status_code

            label = f"report page, {who}" + (f", {what}" if what else "")
            record(label, counted(get))

        def baseline():
            response = client.get("/admin/reports/site-history/")
            assert response.status_code == 200, response.status_code

        client.force_login(admin)
        record("baseline: Wagtail's site history report", counted(baseline))
        page("superuser", admin)
        page("superuser", admin, filtered, "filtered")
        page("superuser", admin, "?q=compost", "search")
        page("superuser", admin, "?q=timeout", "search, rare")
        page("superuser", admin, "?q=Post+42+about", "search, one page")
        page("superuser", admin, "?q=did+not+answer", "search, error text")
        page("superuser", admin, "?p=3", "page 3")
        page("restricted editor", editor)
        page("restricted editor", editor, filtered, "filtered")
        page("restricted editor", editor, "?q=compost", "search")
        page("restricted editor", editor, "?q=timeout", "search, rare")
        page("restricted editor", editor, "?q=Post+42+about", "search, one page")
        page("restricted editor", editor, "?q=did+not+answer", "search, error text")

        everything = LLMInteraction.objects.all()
        record(
            "totals + chart query, all rows",
            counted(lambda: totals_and_series(everything)),
            note=lambda value: f"{value[0]['calls']:,} calls, {len(value[1])} days",
        )
        record(
            "totals + chart query, restricted editor",
            counted(lambda: totals_and_series(visible_interactions(editor))),
            note=lambda value: f"{value[0]['calls']:,} calls",
        )
        record(
            "model filter choices",
            counted(lambda: recorded_values("model")),
            note=lambda value: f"{len(value)} models",
        )
        some = LLMInteraction.objects.filter(page__isnull=False).order_by("-pk").first()
        for who, user in (("superuser", admin), ("restricted editor", editor)):
            if who == "restricted editor":
                some = visible_interactions(editor).order_by("-pk").first()

            client.force_login(user)

            def detail(pk=some.pk):
                response = client.get(f"{url}{pk}/")
                assert response.status_code == 200, response.status_code

            record(f"interaction detail, {who}", counted(detail))

        def export(fmt, user, first_only=False):
            if client.session.get("_auth_user_id") != str(user.pk):
                client.force_login(user)
            response = client.get(f"{url}?export={fmt}")
            assert response.status_code == 200, response.status_code
            size = 0
            for chunk in response.streaming_content:
                size += len(chunk)
                if first_only:
                    response.close()
                    break
            return size

        formats = ["csv", "xlsx"] if args.xlsx else ["csv"]
        for fmt in formats:
            for who, user in (("superuser", admin), ("restricted editor", editor)):
                record(
                    f"{fmt.upper()} export, {who}, first bytes",
                    counted(lambda fmt=fmt, user=user: export(fmt, user, first_only=True)),
                )
                record(
                    f"{fmt.upper()} export, {who}, whole file",
                    counted(lambda fmt=fmt, user=user: export(fmt, user)),
                    repeat=1,
                    note=lambda size: f"{size / 1e6:.1f} MB",
                )

        if not args.only:
            for fmt in formats:
                tracemalloc.start()
                export(fmt, admin)
                _current, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                print(f"  {fmt.upper()} export peak Python memory: {peak / 1e6:.1f} MB")
            maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"  process max RSS (whole run): {maxrss:.0f} MB")
        load_end = os.getloadavg()[0]
        print(f"  load average at the end: {load_end:.2f} (1 min)")
        if args.markdown:
            print(f"\n{args.rows:,} rows, load {load_start:.2f} -> {load_end:.2f}\n")
            print("| view | DB | wall | CPU | in queries | queries | note |")
            print("|---|---|---:|---:|---:|---:|---|")
            for label, wall, cpu, db, queries, note in rows:
                print(
                    f"| {label} | {vendor} | {wall:.0f} ms | {cpu:.0f} ms | {db:.0f} ms | "
                    f"{queries} | {note} |"
                )
    finally:
        if args.keep:
            connection.close()
        else:
            connection.creation.destroy_test_db(old_name, verbosity=0)
        tmpdir.cleanup()


if __name__ == "__main__":
    main()
