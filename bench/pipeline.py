"""Per-step overhead of a pipeline against the same calls made as separate action runs.

Run by hand from the repository root::

    python bench/pipeline.py [--runs 30]

Three steps against tests/fakeserver.py (zero latency, real LiteLLM HTTP path, throwaway
SQLite file): "outline" (only feeds the next steps), "summary" and "intro" (write fields).
Separately, that is one ``LLMService.run(save=False)`` for the outline plus one
``LLMService.run`` per writing action (two drafts); as a pipeline, one ``run_pipeline``
(one run row, three interactions, one draft); and the same pipeline with "summary" and
"intro" as steps with their own prompt (transient actions, no prompt revision to look up).
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
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="llm-bench-")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="demo.settings",
        SANDBOX_DB=str(Path(tmp) / "bench.sqlite3"),
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        BENCH_LLM_API_KEY="sk-bench",
        LLM_ACTIONS_EXTRA_API_KEY_NAMES="BENCH_LLM_API_KEY",  # no provider's variable
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
    from wagtail_llm_actions.models import LLMAction, LLMPipeline, LLMPipelineStep, LLMPrompt
    from wagtail_llm_actions.pipelines import run_pipeline
    from wagtail_llm_actions.providers import preload
    from wagtail_llm_actions.service import LLMService

    root = Page.get_first_root_node()
    index = root.add_child(instance=BlogIndexPage(title="Blog", slug="blog"))
    page = index.add_child(instance=BlogPage(title="Bench", slug="bench", body=make_body()))
    page.save_revision().publish()
    page_type = ContentType.objects.get_for_model(BlogPage)

    with FakeLLMServer(reply="A short answer.") as server:

        def action(slug: str, template: str, target: str) -> LLMAction:
            prompt = LLMPrompt.objects.create(name=slug, slug=slug, template=template)
            prompt.save_revision()
            made = LLMAction.objects.create(
                name=slug,
                slug=slug,
                prompt=prompt,
                source_field="body",
                target_field=target,
                model="openai/fake",
                api_base=server.url,
                api_key_name="BENCH_LLM_API_KEY",
                timeout=10,
            )
            made.page_types.set([page_type])
            return made

        outline = action("outline", "Outline {body}", "summary")
        # Run separately, these two read the outline as plain text in their prompt.
        summary_alone = action("summary-alone", "Summarise {body} from an outline", "summary")
        intro_alone = action("intro-alone", "Intro for {title} from an outline", "intro")
        summary = action("summary", "Summarise {body} from {steps.outline}", "summary")
        intro = action("intro", "Intro for {title} from {steps.outline}", "intro")
        pipeline = LLMPipeline.objects.create(name="P", slug="p")
        for n, (name, step, writes) in enumerate(
            [("outline", outline, False), ("summary", summary, True), ("intro", intro, True)]
        ):
            LLMPipelineStep.objects.create(
                pipeline=pipeline, sort_order=n, name=name, action=step, writes=writes
            )

        own = LLMPipeline.objects.create(name="Own", slug="own")
        own.page_types.set([page_type])
        LLMPipelineStep.objects.create(
            pipeline=own, sort_order=0, name="outline", action=outline, writes=False
        )
        for n, (name, template, target) in enumerate(
            [
                ("summary", "Summarise {body} from {steps.outline}", "summary"),
                ("intro", "Intro for {title} from {steps.outline}", "intro"),
            ],
            start=1,
        ):
            LLMPipelineStep.objects.create(
                pipeline=own,
                sort_order=n,
                name=name,
                prompt_template=template,
                target_field=target,
                model="openai/fake",
                api_base=server.url,
                api_key_name="BENCH_LLM_API_KEY",
            )

        preload()
        service = LLMService()
        run_pipeline(pipeline, page)  # warm-up
        run_pipeline(own, page)
        service.run(summary_alone, page)

        separate, piped, inline = [], [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            service.run(outline, page, save=False)
            service.run(summary_alone, page)
            service.run(intro_alone, page)
            separate.append(time.perf_counter() - t)
            page = BlogPage.objects.get(pk=page.pk)
            t = time.perf_counter()
            run_pipeline(pipeline, page)
            piped.append(time.perf_counter() - t)
            page = BlogPage.objects.get(pk=page.pk)
            t = time.perf_counter()
            run_pipeline(own, page)
            inline.append(time.perf_counter() - t)
            page = BlogPage.objects.get(pk=page.pk)

    def ms(xs: list[float]) -> str:
        return f"median {statistics.median(xs) * 1000:.1f} ms"

    print(f"3 calls as separate runs (1 unsaved + 2 drafts), {args.runs}×: {ms(separate)}")
    print(f"3 calls as one pipeline run (1 draft), {args.runs}×: {ms(piped)}")
    delta = (statistics.median(piped) - statistics.median(separate)) * 1000
    print(f"pipeline minus separate: {delta:.1f} ms per run, {delta / 3:.1f} ms per step")
    print(f"3 calls as one pipeline run, 2 steps with their own prompt: {ms(inline)}")
    delta = (statistics.median(inline) - statistics.median(piped)) * 1000
    print(f"own prompts minus actions: {delta:.1f} ms per run, {delta / 2:.1f} ms per own step")


if __name__ == "__main__":
    main()
