"""Benchmark the review queue of a bulk job (run by hand, not a test).

::

    python bench/review_queue.py                  # 500 drafts in a throwaway SQLite file
    python bench/review_queue.py --rows 2000
    python bench/review_queue.py --database-url postgres://postgres@127.0.0.1:5432/reviewq
    python bench/review_queue.py --profile "queue page"

It creates a throwaway database (a SQLite file in a temporary directory, or ``test_<name>``
on the server of ``--database-url``; dropped afterwards), N blog pages and a bulk job that
writes a draft summary on each (the job engine itself, with the local extractive model: no
network), then times, as a superuser and as an editor of the blog (the SQL permission
filter), the review queue page (its first page of 50 rows, a filtered page, the last
page), one Accept, a bulk Accept of 50 rows, and, for scale, building the rows and
Wagtail's comparisons of all N drafts at once (what a page of N rows would cost before
its template). Wall and CPU (this process) are medians of 5 after one warm-up; "DB" is
the time in queries as Django's query capture sees it. Target: the queue page under
300 ms at 500 drafts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 300


def setup_django(database_url: str | None, sqlite_path: str) -> None:
    sys.path[:0] = [str(ROOT), str(ROOT / "sandbox")]
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    else:
        os.environ.pop("DATABASE_URL", None)
        os.environ["TEST_SQLITE_NAME"] = sqlite_path
    import django

    django.setup()


def make_job(rows: int):
    """N published blog pages, a "Generate summary" action and a finished job over them."""
    from blog.models import BlogIndexPage, BlogPage
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group, Permission
    from django.contrib.contenttypes.models import ContentType
    from wagtail.models import GroupPagePermission, Page, Site
    from wagtail.rich_text import RichText

    from wagtail_llm_actions import jobs
    from wagtail_llm_actions.models import LLMAction, LLMPrompt

    User = get_user_model()
    admin = User.objects.create_superuser("admin", "admin@example.com", "password")
    editor = User.objects.create_user("editor", "editor@example.com", "password")
    root = Page.get_first_root_node()
    blog = BlogIndexPage(title="Blog", slug="blog")
    root.add_child(instance=blog)
    Site.objects.update_or_create(
        is_default_site=True, defaults={"hostname": "localhost", "root_page": blog}
    )
    group = Group.objects.create(name="Blog editors")
    group.permissions.add(Permission.objects.get(codename="access_admin"))
    group.permissions.add(Permission.objects.get(codename="view_llmjob"))
    for codename in ("add_page", "change_page"):
        GroupPagePermission.objects.create(
            group=group, page=blog, permission=Permission.objects.get(codename=codename)
        )
    editor.groups.add(group)
    pages = []
    for n in range(rows):
        page = BlogPage(
            title=f"Post {n} about compost",
            slug=f"post-{n}",
            intro=f"Intro {n}",
            body=[
                ("heading", "Background"),
                ("paragraph", RichText(f"<p>Post {n} talks about compost bins and worms.</p>")),
                ("quote", "Soil is alive."),
            ],
        )
        blog.add_child(instance=page)
        page.save_revision().publish()
        pages.append(page)
    prompt = LLMPrompt.objects.create(name="Summarize", slug="summarize", template="{body}")
    prompt.save_revision()
    action = LLMAction.objects.create(
        name="Generate summary",
        slug="generate-summary",
        source_field="body",
        target_field="summary",
        model="local/extractive",
        prompt=prompt,
    )
    action.page_types.set([ContentType.objects.get_for_model(BlogPage)])
    job = jobs.create_job(action, admin, [p.pk for p in pages])
    jobs.run_job(job.pk)
    return admin, editor, job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--database-url", default=None, help="e.g. postgres://user@host/name")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", metavar="TEXT", help="cProfile the timings with TEXT")
    parser.add_argument("--queries", action="store_true", help="print each timing's slowest SQL")
    args = parser.parse_args()

    tmpdir = tempfile.TemporaryDirectory(prefix="llm-review-bench-")
    setup_django(args.database_url, os.path.join(tmpdir.name, "bench.sqlite3"))

    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment
    from django.urls import reverse

    from wagtail_llm_actions import review_queue as rq

    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        started = time.perf_counter()
        admin, editor, job = make_job(args.rows)
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
        drafts = job.items.filter(status="succeeded").count()
        print(
            f"{connection.vendor}: {drafts} drafts written by a job of {args.rows} pages in "
            f"{time.perf_counter() - started:.1f} s; load average {os.getloadavg()[0]:.2f}"
        )
        print(f"  {'timing':<48}{'wall':>9}{'CPU':>9}{'DB':>9}{'queries':>9}")
        url = reverse("wagtail_llm_actions_review:queue", args=[job.pk])
        act = reverse("wagtail_llm_actions_review:act", args=[job.pk])
        results = []

        def record(label: str, fn, repeat: int = args.repeat) -> None:
            fn()  # warm up
            walls, cpus, dbs, counts = [], [], [], []
            for _ in range(repeat):
                with CaptureQueriesContext(connection) as ctx:
                    start, start_cpu = time.perf_counter(), time.process_time()
                    fn()
                    walls.append((time.perf_counter() - start) * 1000)
                    cpus.append((time.process_time() - start_cpu) * 1000)
                dbs.append(sum(float(q["time"]) for q in ctx.captured_queries) * 1000)
                counts.append(len(ctx.captured_queries))
            if args.queries:
                for q in sorted(ctx.captured_queries, key=lambda q: -float(q["time"]))[:3]:
                    print(f"      {float(q['time']) * 1000:7.1f} ms  {q['sql'][:400]}")
            wall, cpu, db = (statistics.median(v) for v in (walls, cpus, dbs))
            results.append((label, wall))
            print(f"  {label:<48}{wall:>6.0f} ms{cpu:>6.0f} ms{db:>6.0f} ms{max(counts):>9}")
            if args.profile and args.profile in label:
                import cProfile
                import pstats

                profiler = cProfile.Profile()
                profiler.runcall(fn)
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)

        for user, who in ((admin, "superuser"), (editor, "editor")):
            client = Client()
            client.force_login(user)

            def get(path, client=client):
                response = client.get(path)
                assert response.status_code == 200, response.status_code
                return response

            last = (drafts + rq.PER_PAGE - 1) // rq.PER_PAGE
            for label, path in (
                (f"queue page (50 of {drafts} rows), {who}", url),
                (f"queue page, filtered 'to review', {who}", f"{url}?state=to_review"),
                (f"queue page, last page (p={last}), {who}", f"{url}?p={last}"),
            ):
                record(label, lambda path=path, get=get: get(path))

        client = Client()
        client.force_login(admin)
        queue = rq.Queue.of(job, admin)
        pages = list(
            job.items.filter(status="succeeded").order_by("pk").values_list("page_id", flat=True)
        )
        remaining = iter(pages)

        def accept_one():
            client.post(act, {"page": next(remaining), "decision": "accept"})

        record("Accept one page (POST + redirect)", accept_one)

        batches = iter(range(10, len(pages), 50))

        def accept_fifty():
            start = next(batches)
            client.post(act, {"page": pages[start : start + 50], "decision": "accept"})

        record("Accept 50 selected pages (POST)", accept_fifty, repeat=3)

        def all_rows():
            rq.load_rows(job, admin, queue.revision_ids)

        record(f"rows + comparisons of all {drafts} drafts", all_rows, repeat=3)

        page_ms = [wall for label, wall in results if label.startswith("queue page")]
        verdict = "under" if max(page_ms) < TARGET_MS else "OVER"
        print(f"slowest queue page: {max(page_ms):.0f} ms ({verdict} the {TARGET_MS} ms target)")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        tmpdir.cleanup()


if __name__ == "__main__":
    main()
