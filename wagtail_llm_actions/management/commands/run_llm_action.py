"""Run an LLM action on pages from the command line; each page gets a new draft revision.

``--page`` runs one page here and now. ``--descendants`` and ``--all`` create a job on the
bulk job engine (:mod:`wagtail_llm_actions.jobs`): it runs in the foreground with a progress
bar and ends with a summary, or with ``--enqueue`` is handed to the django-q2 workers.
Every mode skips unchanged pages unless ``--force``, by the rule bulk jobs apply
(:mod:`wagtail_llm_actions.unchanged`: an answer of the action from the same inputs is in the
page's newest revision, or a person discarded it); ``--image`` and ``--images --all`` skip
unchanged images by the rule image jobs apply. A pipeline's slug runs the pipeline on each
selected page (one draft per page); pipelines are never skipped as unchanged.
A translation action's slug with ``--locale de --locale fr`` translates the pages into those
locales (:mod:`wagtail_llm_actions.management.translating`).
``--model app_label.ModelName`` with ``--id`` or ``--all`` runs on snippets
(:mod:`wagtail_llm_actions.management.snippet_runs`).
``--apply-stored JOB_ID`` writes the answers a finished job already received but could not
write (the write failed, or a page was locked), with no model call.
"""

from __future__ import annotations

import sys

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from wagtail.models import Page

from wagtail_llm_actions import jobs, response_cache
from wagtail_llm_actions.exceptions import LLMActionError
from wagtail_llm_actions.management import job_summary
from wagtail_llm_actions.management.dry_runs import write_request
from wagtail_llm_actions.models import (
    InteractionTrigger,
    ItemStatus,
    JobKind,
    LLMAction,
    LLMPipeline,
)
from wagtail_llm_actions.service import LLMService, lock_problem
from wagtail_llm_actions.unchanged import holds, unchanged_since_last_write, written_answers


class Command(BaseCommand):
    help = (
        "Run an LLM action on one page (--page), a page and its descendants (--descendants) "
        "or every page it applies to (--all). Answers are saved as draft revisions. Pages "
        "whose newest revision already has this action's answer for the same content, prompt "
        "and settings, or where a person discarded that answer, are skipped unless --force. "
        "An image action runs on one image (--image) or every image (--images --all); images "
        "whose field still holds this action's last answer are skipped unless --force."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", nargs="?", help="Slug of the LLM action or pipeline.")
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument(
            "--apply-stored",
            type=int,
            metavar="JOB_ID",
            help="Write the stored answers of a finished job's pages, calling no model.",
        )
        target.add_argument("--page", type=int, help="ID of one page.")
        target.add_argument(
            "--descendants", type=int, metavar="PAGE_ID", help="A page and all pages below it."
        )
        target.add_argument("--all", action="store_true", help="Every page the action applies to.")
        target.add_argument(
            "--image", type=int, help="ID of one image (an image action); skipped if unchanged."
        )
        target.add_argument("--id", help="With --model: the id of one snippet.")
        parser.add_argument(
            "--model",
            metavar="APP_LABEL.MODELNAME",
            help="Run on snippets of this model (with --id or --all).",
        )
        parser.add_argument(
            "--images",
            action="store_true",
            help="With --all: every image, for an action that runs on images.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Print the messages; call no model."
        )
        parser.add_argument("--user", help="Username recorded on interactions and revisions.")
        parser.add_argument(
            "--force",
            action="store_true",
            help=(
                "Also run unchanged pages: those where this action's answer for the same "
                "content, prompt and settings is in the newest revision, or was discarded; "
                "and images whose field still holds this action's last answer. Asks the model "
                "again, never the response cache. Pipelines always run."
            ),
        )
        parser.add_argument(
            "--enqueue",
            action="store_true",
            help="With --all/--descendants: hand the job to the django-q2 workers and exit.",
        )
        parser.add_argument(
            "--locale",
            action="append",
            metavar="CODE",
            help="With a translation action: translate into this locale (repeat for more).",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            help="Concurrent model calls in the foreground (default: the CONCURRENCY setting).",
        )

    def handle(self, *args, **options) -> None:
        if not options["dry_run"]:
            self.sqlite_notice()
        if options["apply_stored"] is not None:
            self.apply_stored(options)
            return
        if not options["action"]:
            raise CommandError("Give the slug of the LLM action to run.")
        try:
            action = LLMAction.objects.select_related("prompt").get(slug=options["action"])
        except LLMAction.DoesNotExist:
            pipeline = LLMPipeline.objects.filter(slug=options["action"]).first()
            if pipeline is not None:
                self.run_pipeline(pipeline, options)
                return
            slugs = ", ".join(LLMAction.objects.values_list("slug", flat=True)) or "none"
            raise CommandError(
                f"No LLM action with slug “{options['action']}”. Available: {slugs}."
            ) from None
        if not action.enabled:
            raise CommandError(f"The action “{action.slug}” is disabled.")
        user = self.get_user(options)
        if options["model"] and (options["locale"] or hasattr(action, "translation")):
            from wagtail_llm_actions.management import snippet_runs

            snippet_runs.run(self, action, user, options)  # translatable snippets
            return
        if options["locale"] or hasattr(action, "translation"):
            self.translate(action, user, options)
            return
        if options["model"] or options["id"] is not None:
            from wagtail_llm_actions.management import snippet_runs

            if not options["model"]:
                raise CommandError("--id is for snippets: name their model with --model.")
            snippet_runs.run(self, action, user, options)
            return
        if action.runs_on_images or options["images"] or options["image"] is not None:
            from wagtail_llm_actions.management import image_runs

            image_runs.run(self, action, user, options)
            return
        if options["page"] is not None or options["dry_run"]:
            pages = self.select_pages(action, options)
            if options["dry_run"]:
                self.dry_run(action, pages, user, force=options["force"])
                return
            self.run_pages(action, pages, user, force=options["force"])
            return
        self.run_job(action, user, options)

    def translate(self, action: LLMAction, user, options) -> None:
        """A translation action's run (see :mod:`wagtail_llm_actions.management.translating`)."""
        from wagtail_llm_actions.management import translating

        if not options["locale"]:
            raise CommandError(f"“{action.slug}” translates: name locales with --locale.")
        translating.run(self, action, user, options)

    def sqlite_notice(self) -> None:
        """The WAL suggestion (``wagtail_llm_actions.I001``), once, before writing drafts."""
        from wagtail_llm_actions.checks import sqlite_notice

        notice = sqlite_notice()
        if notice is not None:
            self.stderr.write(self.style.NOTICE("Note: " + "\n".join(notice)))

    def select_pages(self, action: LLMAction, options) -> list[Page]:
        page_types = list(action.page_types.all())
        if options["page"] is not None:
            page = Page.objects.filter(pk=options["page"]).first()
            if page is None:
                raise CommandError(f"No page with id {options['page']}.")
            if page.content_type_id not in {ct.pk for ct in page_types}:
                raise CommandError(
                    f"The action “{action.slug}” does not apply to "
                    f"{page.specific_class._meta.verbose_name} pages."
                )
            return [page]
        queryset = Page.objects.filter(content_type__in=page_types)
        if options["descendants"] is not None:
            root = Page.objects.filter(pk=options["descendants"]).first()
            if root is None:
                raise CommandError(f"No page with id {options['descendants']}.")
            queryset = queryset.descendant_of(root, inclusive=True)
        pages = list(queryset.order_by("path"))
        if not pages:
            raise CommandError("No pages to run on.")
        return pages

    def dry_run(self, action: LLMAction, pages: list[Page], user, *, force: bool) -> None:
        service = LLMService()
        # The unchanged rule as a run applies it (one query for all the pages).
        answers = {} if force else written_answers(action, [page.pk for page in pages])
        for page in pages:
            try:
                prepared = service.dry_run(action, page, user)
            except LLMActionError as e:
                self.stderr.write(f"Page {page.pk} “{page.title}”: {e}")
                continue
            # A dry run writes nothing, so a locked page is shown; a run would skip it.
            problem = lock_problem(user, page.specific)
            if problem is not None:
                self.stderr.write(f"Page {page.pk} “{page.title}”: {problem} (a run would skip it)")
            if holds(answers.get(page.pk, []), prepared):
                self.stderr.write(
                    f"Page {page.pk} “{page.title}”: a run would skip it: "
                    f"{jobs.skip_reason_label(jobs.SKIP_UNCHANGED).lower()} (use --force)"
                )
            self.stdout.write(self.style.MIGRATE_HEADING(f"Page {page.pk} “{page.title}”"))
            for message in prepared.messages:
                self.stdout.write(f"[{message['role']}]\n{message['content']}\n")
            self.write_request(prepared)

    def write_request(self, prepared) -> None:
        """The parameters of the request the messages above go in (as a run builds it)."""
        write_request(self, prepared)

    def run_pages(self, action: LLMAction, pages: list[Page], user, *, force: bool) -> None:
        service = LLMService()
        failures = 0
        for page in pages:
            try:
                if not force and unchanged_since_last_write(action, page, user, service=service):
                    self.stdout.write(
                        f"Page {page.pk} “{page.title}”: skipped, "
                        f"{jobs.skip_reason_label(jobs.SKIP_UNCHANGED).lower()} "
                        "(--force runs it)"
                    )
                    continue
                # --force asks the model again, never the response cache (as a forced job).
                with response_cache.bypassed(force):
                    interaction = service.run(
                        action, page, user, trigger=InteractionTrigger.COMMAND
                    )
            except LLMActionError as e:
                failures += 1
                self.stderr.write(self.style.ERROR(f"Page {page.pk} “{page.title}”: {e}"))
                continue
            self.stdout.write(
                self.style.SUCCESS(
                    f"Page {page.pk} “{page.title}”: draft revision {interaction.revision_id} "
                    f"({interaction.total_tokens or 0} tokens, {interaction.latency_ms} ms)"
                )
            )
        if failures:
            raise CommandError(
                f"{failures} of {len(pages)} page(s) failed; content left as it was."
            )

    # -- pipelines --------------------------------------------------------------------------

    def get_user(self, options):
        if not options["user"]:
            return None
        try:
            return get_user_model().objects.get_by_natural_key(options["user"])
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user “{options['user']}”.") from None

    def run_pipeline(self, pipeline: LLMPipeline, options) -> None:
        from wagtail_llm_actions.pipelines import run_pipeline

        if not pipeline.enabled:
            raise CommandError(f"The pipeline “{pipeline.slug}” is disabled.")
        if options["dry_run"]:
            raise CommandError("--dry-run is for actions, not pipelines.")
        if options["force"]:  # see README, "Unchanged pages": why pipelines always run
            self.stderr.write("--force changes nothing: a pipeline is never skipped as unchanged.")
        user = self.get_user(options)
        steps = pipeline.ordered_steps()
        if not steps:
            raise CommandError(f"The pipeline “{pipeline.slug}” has no steps.")
        if options["page"] is None:
            root = options["descendants"]
            if root is not None and not Page.objects.filter(pk=root).exists():
                raise CommandError(f"No page with id {root}.")
            from wagtail_llm_actions.pipelines import job_action

            try:
                _action, type_ids = job_action(pipeline)
                job = jobs.create_pipeline_job(
                    pipeline,
                    user,
                    jobs.page_ids_for_action(None, root, type_ids=type_ids),
                    kind=JobKind.COMMAND,
                )
            except LLMActionError as e:
                raise CommandError(str(e)) from None
            self.follow_job(job, options, pipeline.name)
            return
        pages = list(Page.objects.filter(pk=options["page"]))
        if not pages:
            raise CommandError(f"No page with id {options['page']}.")
        failures = 0
        for page in pages:
            try:
                run = run_pipeline(pipeline, page, user, trigger=InteractionTrigger.COMMAND)
            except LLMActionError as e:
                failures += 1
                self.stderr.write(self.style.ERROR(f"Page {page.pk} “{page.title}”: {e}"))
                continue
            self.stdout.write(
                self.style.SUCCESS(
                    f"Page {page.pk} “{page.title}”: run {run.pk}, draft revision {run.revision_id}"
                )
            )
        if failures:
            raise CommandError(
                f"{failures} of {len(pages)} page(s) failed; content left as it was."
            )

    # -- job engine (--all, --descendants) --------------------------------------------------

    def run_job(self, action: LLMAction, user, options) -> None:
        root = options["descendants"]
        if root is not None and not Page.objects.filter(pk=root).exists():
            raise CommandError(f"No page with id {root}.")
        job = jobs.create_job(
            action,
            user,
            jobs.page_ids_for_action(action, root),
            force=options["force"],
            kind=JobKind.COMMAND,
        )
        self.follow_job(job, options, action.name)

    def follow_job(self, job, options, name: str) -> None:
        total = job.items.count()
        if not total:
            job.delete()
            raise CommandError("No pages to run on.")
        if options["enqueue"]:
            jobs.enqueue_job(job, on_commit=False)
            self.stdout.write(
                self.style.SUCCESS(f"Job {job.pk}: {total} page(s) handed to the workers.")
            )
            return
        self.stdout.write(f"Job {job.pk}: {name} on {total} page(s)")
        tty = hasattr(self.stdout, "isatty") and self.stdout.isatty()
        state = {"last": -1}

        def show(job, progress) -> None:
            step = progress.percent // 10
            if tty:
                bar = "#" * (progress.percent // 4)
                self.stdout.write(
                    f"\r[{bar:<25}] {progress.done}/{progress.total} "
                    f"ok {progress.count(ItemStatus.SUCCEEDED)} "
                    f"failed {progress.count(ItemStatus.FAILED)} "
                    f"skipped {progress.count(ItemStatus.SKIPPED)}",
                    ending="",
                )
                self.stdout.flush()
            elif step != state["last"]:
                state["last"] = step
                self.stdout.write(f"{progress.percent:3d}% ({progress.done}/{progress.total})")

        try:
            jobs.run_job(job.pk, threads=options["concurrency"], progress=show)
        except KeyboardInterrupt:
            jobs.cancel_job(job)
            self.stderr.write("\nInterrupted: job cancelled (finished pages keep their drafts).")
            sys.exit(130)
        if tty:
            self.stdout.write("")
        job_summary.write(self, job)

    def apply_stored(self, options) -> None:
        from wagtail_llm_actions.models import JobStatus, LLMJob

        job = LLMJob.objects.filter(pk=options["apply_stored"], kind__in=jobs.ENGINE_KINDS)
        job = job.first()
        if job is None:
            raise CommandError(f"No bulk or command job with id {options['apply_stored']}.")
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            raise CommandError(f"Job {job.pk} is still running; apply its answers when it ends.")
        count = jobs.apply_stored_answers(job, enqueue=options["enqueue"])
        if not count:
            raise CommandError(f"Job {job.pk} has no stored answers to apply.")
        if options["enqueue"]:
            self.stdout.write(
                self.style.SUCCESS(f"Job {job.pk}: {count} stored answer(s) handed to the workers.")
            )
            return
        self.stdout.write(f"Job {job.pk}: writing {count} stored answer(s), no model calls")
        jobs.run_job(job.pk, threads=1)
        job_summary.write(self, job)
