"""Delete (or strip) recorded LLM interactions older than a number of days.

::

    python manage.py purge_llm_interactions                 # WAGTAIL_LLM_ACTIONS["RETENTION_DAYS"]
    python manage.py purge_llm_interactions --days 90
    python manage.py purge_llm_interactions --days 30 --keep-metrics   # blank the bodies only
    python manage.py purge_llm_interactions --dry-run

Runs (``LLMRun``: a pipeline's steps, a map-reduce's parts) created before the cutoff go
too once none of their interactions is left. ``--keep-metrics`` keeps each row (time,
action, page, user, model, status, outcome, tokens, cost, latency) so the report's usage
and cost figures stay right, and blanks what was sent and received: the messages, the
response, and the previous and written field values.
Run it daily from cron or a scheduled django-q2 task.
"""

from __future__ import annotations

import datetime

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from wagtail_llm_actions.conf import get_setting
from wagtail_llm_actions.models import JobKind, JobStatus, LLMInteraction, LLMJob, LLMRun

BATCH_SIZE = 5000

#: What --keep-metrics blanks: the content sent to and received from the model.
BODY_FIELDS = {
    "messages": [],
    "response_text": "",
    "previous_value": "",
    "output_value": "",
}


class Command(BaseCommand):
    help = (
        "Delete LLM interactions older than --days (default: the RETENTION_DAYS setting), "
        "or with --keep-metrics keep their counts, tokens and cost but blank the messages "
        "and answers."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            help="Age in days; older interactions are purged. Default: RETENTION_DAYS.",
        )
        parser.add_argument(
            "--keep-metrics",
            action="store_true",
            help="Keep the rows and their metrics; blank messages, response and field values.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Only say how many interactions would change."
        )

    def handle(self, *args, days=None, keep_metrics=False, dry_run=False, **options) -> None:
        if days is None:
            days = get_setting("RETENTION_DAYS")
        if days is None:
            raise CommandError(
                "Pass --days or set WAGTAIL_LLM_ACTIONS['RETENTION_DAYS'] to say how long "
                "interactions are kept."
            )
        try:
            days = int(days)
        except (TypeError, ValueError) as e:
            raise CommandError(f"The number of days must be a whole number, not {days!r}.") from e
        if days < 1:
            raise CommandError("The number of days must be at least 1.")

        cutoff = timezone.now() - datetime.timedelta(days=days)
        old = LLMInteraction.objects.filter(created_at__lt=cutoff)
        when = cutoff.strftime("%Y-%m-%d %H:%M %Z")
        self._purge_editor_jobs(cutoff, when, dry_run)
        self._purge_cached_answers(dry_run)

        if keep_metrics:
            # rows already stripped are left alone, so running it daily stays cheap
            to_strip = old.exclude(
                response_text="", previous_value="", output_value="", messages=[]
            )
            count = to_strip.count()
            if not dry_run:
                count = self._in_batches(to_strip, lambda qs: qs.update(**BODY_FIELDS))
            verb = "Would blank" if dry_run else "Blanked"
            self.stdout.write(
                f"{verb} the messages and answers of {count} interaction(s) "
                f"created before {when}; their tokens and cost are kept."
            )
            return

        count = old.count()
        if not dry_run:
            count = self._in_batches(old, lambda qs: qs.delete()[0])
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(f"{verb} {count} interaction(s) created before {when}.")
        self._purge_runs(cutoff, when, dry_run)

    def _purge_cached_answers(self, dry_run: bool) -> None:
        """Answers kept for identical calls whose CACHE_TTL has passed."""
        from wagtail_llm_actions import response_cache
        from wagtail_llm_actions.models import LLMCachedResponse

        if dry_run:
            count = LLMCachedResponse.objects.filter(expires_at__lte=timezone.now()).count()
        else:
            count = response_cache.purge_expired()
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(f"{verb} {count} expired cached answer(s).")

    def _purge_runs(self, cutoff, when: str, dry_run: bool) -> None:
        """Runs created before ``cutoff`` with no interaction left (after the purge)."""
        runs = LLMRun.objects.filter(created_at__lt=cutoff)
        if dry_run:
            # what would be left: interactions of the run created since the cutoff
            runs = runs.exclude(interactions__created_at__gte=cutoff)
        else:
            runs = runs.filter(interactions__isnull=True)
        ids = list(runs.values_list("pk", flat=True).distinct())
        count = len(ids)
        if not dry_run:
            count = 0
            for start in range(0, len(ids), BATCH_SIZE):
                with transaction.atomic():
                    batch = LLMRun.objects.filter(
                        pk__in=ids[start : start + BATCH_SIZE], interactions__isnull=True
                    )
                    count += batch.delete()[1].get(LLMRun._meta.label, 0)
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(f"{verb} {count} run(s) created before {when} with no interaction left.")

    def _purge_editor_jobs(self, cutoff, when: str, dry_run: bool) -> None:
        """Finished editor runs carry a copy of the unsaved form: they go with the bodies."""
        jobs = LLMJob.objects.filter(
            kind=JobKind.EDITOR,
            created_at__lt=cutoff,
            status__in=[JobStatus.COMPLETED, JobStatus.CANCELLED],
        )
        count = jobs.count() if dry_run else jobs.delete()[1].get(LLMJob._meta.label, 0)
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(f"{verb} {count} finished editor job(s) created before {when}.")

    @staticmethod
    def _in_batches(queryset, operation) -> int:
        """Apply ``operation`` to ``queryset`` a batch of primary keys at a time."""
        done = 0
        last_pk = 0
        while True:
            ids = list(
                queryset.filter(pk__gt=last_pk)
                .order_by("pk")
                .values_list("pk", flat=True)[:BATCH_SIZE]
            )
            if not ids:
                return done
            last_pk = ids[-1]
            with transaction.atomic():
                done += operation(LLMInteraction.objects.filter(pk__in=ids))
