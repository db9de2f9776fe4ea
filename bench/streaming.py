"""Time to first text against time to the whole answer of a streaming editor run (run by
hand from the repository root; not a test).

::

    python bench/streaming.py [--runs 5] [--delay 0.05] [--words 100]

An editor job (the page editor's "Generate" button) runs the real path: the worker's
``run_editor_job`` calls tests/fakeserver.py in its own process through LiteLLM with
``stream=True``; the fake server is in its slow mode (``--stream-delay``: this many seconds
before each chunk of one to three words). Meanwhile this process polls the job's status
as the browser does (``editor_status``, every 20 ms here, to time it finely) and notes when
partial text first shows and when the answer is complete. Also printed: how many times the
worker wrote the partial text (``STREAM_PUBLISH_INTERVAL``: at most every 0.25 s) and the
same run with streaming off (the field shows nothing until the whole answer).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "sandbox")]

from bench import run_action  # noqa: E402


def start_fake_server(
    delay: float, reply: str, latency: float = 0.0
) -> tuple[subprocess.Popen, str]:
    """tests/fakeserver.py in its own process, streaming slowly; its URL once it listens."""
    return run_action.start_fake_server(
        "--stream-delay", str(delay), "--latency", str(latency), "--reply", reply
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds before each chunk")
    parser.add_argument("--words", type=int, default=100, help="words in the answer")
    args = parser.parse_args()
    run_action.setup_django(tempfile.mkdtemp(prefix="llm-bench-stream-"))

    from blog.models import BlogIndexPage, BlogPage
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.contenttypes.models import ContentType
    from django.test import override_settings
    from wagtail.models import Page

    from wagtail_llm_actions import editor
    from wagtail_llm_actions.editor import streams
    from wagtail_llm_actions.models import LLMAction, LLMPrompt
    from wagtail_llm_actions.providers import preload

    user = get_user_model().objects.create_superuser("bench", "b@example.com", "x")
    root = Page.get_first_root_node()
    index = root.add_child(instance=BlogIndexPage(title="Blog", slug="blog"))
    answer = " ".join(f"w{n}" for n in range(args.words))  # within the summary's 600
    intro = "Worms turn peelings into soil."
    page = index.add_child(instance=BlogPage(title="Bench", slug="bench", intro=intro))
    page.save_revision()
    prompt = LLMPrompt.objects.create(name="S", slug="s", template="Summarize: {intro}")
    prompt.save_revision()
    server, url = start_fake_server(args.delay, answer)
    action = LLMAction.objects.create(
        name="S",
        slug="s",
        prompt=prompt,
        source_field="intro",
        target_field="summary",
        model="openai/fake",
        api_base=url,
        api_key_name="BENCH_LLM_API_KEY",
        timeout=120,
    )
    action.page_types.set([ContentType.objects.get_for_model(BlogPage)])
    preload()
    writes: list[int] = []
    original = streams.PartialText.write

    def counted(self, text):
        writes[-1] += 1
        return original(self, text)

    streams.PartialText.write = counted

    def one_run() -> tuple[float | None, float, int]:
        obj = BlogPage.objects.get(pk=page.pk)
        job = editor.create_editor_job(action, obj, obj, user)
        item_id = job.items.get().pk
        writes.append(0)
        started = time.perf_counter()
        worker = threading.Thread(target=editor.run_editor_job, args=[item_id])
        worker.start()
        first = None
        while True:
            state = editor.editor_status(editor.get_editor_item(job.pk, user))
            if first is None and state.partial:
                first = time.perf_counter() - started
            if state.state not in ("queued", "running"):
                break
            time.sleep(0.02)
        whole = time.perf_counter() - started
        worker.join()
        assert state.state == "succeeded", state.message
        return first, whole, writes[-1]

    try:
        one_run()  # warm-up
        results = [one_run() for _ in range(args.runs)]
        off = {**settings.WAGTAIL_LLM_ACTIONS, "STREAM_EDITOR_ANSWERS": False}
        with override_settings(WAGTAIL_LLM_ACTIONS=off):
            server.kill()
            # streaming off: the server answers in one piece after the same time
            latency = statistics.median(r[1] for r in results)
            server, url = start_fake_server(0.0, answer, latency=latency)
            LLMAction.objects.filter(pk=action.pk).update(api_base=url)
            action.refresh_from_db()
            plain = [one_run() for _ in range(min(args.runs, 3))]
    finally:
        server.kill()
    firsts = [r[0] for r in results]
    wholes = [r[1] for r in results]
    print(
        f"{args.words}-word answer, {args.delay * 1000:.0f} ms before each chunk of 1-3 words "
        f"(median of {args.runs} runs):"
    )
    print(f"  streaming: first text after {statistics.median(firsts):.2f} s")
    print(f"  streaming: whole answer after {statistics.median(wholes):.2f} s")
    print(f"  partial-text writes a run: {statistics.median(r[2] for r in results):.0f}")
    off = statistics.median(p[1] for p in plain)
    print(f"  streaming off: first text = whole answer after {off:.2f} s")


if __name__ == "__main__":
    main()
