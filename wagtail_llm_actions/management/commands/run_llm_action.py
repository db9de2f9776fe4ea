"""Run an LLM action on pages from the command line; each page gets a new draft revision."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from wagtail.models import Page

from wagtail_llm_actions.exceptions import LLMActionError
from wagtail_llm_actions.models import InteractionTrigger, LLMAction
from wagtail_llm_actions.service import LLMService


class Command(BaseCommand):
    help = (
        "Run an LLM action on one page (--page), a page and its descendants (--descendants) "
        "or every page it applies to (--all). Answers are saved as draft revisions."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", help="Slug of the LLM action.")
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--page", type=int, help="ID of one page.")
        target.add_argument(
            "--descendants", type=int, metavar="PAGE_ID", help="A page and all pages below it."
        )
        target.add_argument("--all", action="store_true", help="Every page the action applies to.")
        parser.add_argument(
            "--dry-run", action="store_true", help="Print the messages; call no model."
        )
        parser.add_argument("--user", help="Username recorded on interactions and revisions.")

    def handle(self, *args, **options) -> None:
        try:
            action = LLMAction.objects.select_related("prompt").get(slug=options["action"])
        except LLMAction.DoesNotExist:
            slugs = ", ".join(LLMAction.objects.values_list("slug", flat=True)) or "none"
            raise CommandError(
                f"No LLM action with slug “{options['action']}”. Available: {slugs}."
            ) from None
        if not action.enabled:
            raise CommandError(f"The action “{action.slug}” is disabled.")
        user = None
        if options["user"]:
            try:
                user = get_user_model().objects.get_by_natural_key(options["user"])
            except get_user_model().DoesNotExist:
                raise CommandError(f"No user “{options['user']}”.") from None

        pages = self.select_pages(action, options)
        if options["dry_run"]:
            self.dry_run(action, pages, user)
            return
        self.run_pages(action, pages, user)

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

    def dry_run(self, action: LLMAction, pages: list[Page], user) -> None:
        service = LLMService()
        for page in pages:
            try:
                prepared = service.dry_run(action, page, user)
            except LLMActionError as e:
                self.stderr.write(f"Page {page.pk} “{page.title}”: {e}")
                continue
            self.stdout.write(self.style.MIGRATE_HEADING(f"Page {page.pk} “{page.title}”"))
            for message in prepared.messages:
                self.stdout.write(f"[{message['role']}]\n{message['content']}\n")

    def run_pages(self, action: LLMAction, pages: list[Page], user) -> None:
        service = LLMService()
        failures = 0
        for page in pages:
            try:
                interaction = service.run(action, page, user, trigger=InteractionTrigger.COMMAND)
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
