"""Time one action run against the fake server (zero latency) versus a bare save_revision().

Run by hand from the repository root::

    python bench/run_action.py [--runs 50]

It uses a throwaway SQLite file database, the sandbox's blog page type, the real LiteLLM HTTP
path (``openai/...`` with ``api_base`` pointing at tests/fakeserver.py on 127.0.0.1).
Not a test: figures go into the notes.
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
sys.path[:0] = [str(ROOT), str(ROOT / "sandbox")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="llm-bench-")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="demo.settings",
        SANDBOX_DB=str(Path(tmp) / "bench.sqlite3"),
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        BENCH_LLM_API_KEY="sk-bench",
        LLM_ACTIONS_ALLOWED_API_BASES="http://127.0.0.1:*",  # the fake server
    )
    import django

    django.setup()
    from django.contrib.contenttypes.models import ContentType
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from blog.models import BlogIndexPage, BlogPage
    from wagtail.models import Page

    from tests.conftest import make_body
    from tests.fakeserver import FakeLLMServer
    from wagtail_llm_actions.models import LLMAction, LLMPrompt
    from wagtail_llm_actions.providers import preload
    from wagtail_llm_actions.service import LLMService

    root = Page.get_first_root_node()
    index = root.add_child(instance=BlogIndexPage(title="Blog", slug="blog"))
    page = index.add_child(instance=BlogPage(title="Bench", slug="bench", body=make_body()))
    page.save_revision().publish()

    with FakeLLMServer(reply="A short summary.") as server:
        prompt = LLMPrompt.objects.create(name="S", slug="s", template="Summarize {body}")
        prompt.save_revision()
        action = LLMAction.objects.create(
            name="S",
            slug="s",
            prompt=prompt,
            source_field="body",
            target_field="summary",
            model="openai/fake",
            api_base=server.url,
            api_key_name="BENCH_LLM_API_KEY",
            timeout=10,
        )
        action.page_types.set([ContentType.objects.get_for_model(BlogPage)])

        t0 = time.perf_counter()
        preload()
        print(f"litellm import: {time.perf_counter() - t0:.2f} s (once per worker process)")
        service = LLMService()
        service.run(action, page)  # warm-up: first HTTP client, cost map lookups

        runs, saves = [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            service.run(action, page)
            runs.append(time.perf_counter() - t)
            page = BlogPage.objects.get(pk=page.pk)
            draft = page.get_latest_revision_as_object()
            t = time.perf_counter()
            draft.save_revision()
            saves.append(time.perf_counter() - t)
            page = BlogPage.objects.get(pk=page.pk)

    def fmt(xs: list[float]) -> str:
        return (
            f"median {statistics.median(xs) * 1000:.1f} ms, "
            f"p90 {sorted(xs)[int(len(xs) * 0.9) - 1] * 1000:.1f} ms"
        )

    print(f"LLMService.run (fake server, 0 ms latency), {args.runs} runs: {fmt(runs)}")
    print(f"bare save_revision() on the same page, {args.runs} runs: {fmt(saves)}")
    print(f"overhead per run: {(statistics.median(runs) - statistics.median(saves)) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
