"""Bulk jobs: the job, its items (one per page) and the provider slots its workers hold."""

from __future__ import annotations

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .actions import LLMAction
from .interactions import LLMInteraction
from .pipelines import LLMPipeline


class JobStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    COMPLETED = "completed", _("Completed")
    CANCELLED = "cancelled", _("Cancelled")


class JobKind(models.TextChoices):
    EDITOR = "editor", _("Page editor")
    BULK = "bulk", _("Bulk action")
    COMMAND = "command", _("Management command")
    TRIGGER = "trigger", _("Trigger")


class LLMJob(models.Model):
    """A batch of pages to run one action on, processed item by item by workers."""

    action = models.ForeignKey(
        LLMAction,
        verbose_name=_("action"),
        null=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
    )
    action_name = models.CharField(_("action name"), max_length=255, blank=True)
    pipeline = models.ForeignKey(
        LLMPipeline,
        verbose_name=_("pipeline"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("started by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    kind = models.CharField(_("kind"), max_length=20, choices=JobKind.choices)
    status = models.CharField(
        _("status"), max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED
    )
    force = models.BooleanField(_("re-run unchanged pages"), default=False)
    include_descendants = models.BooleanField(_("include descendants"), default=False)
    options = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    # The worker coordinating the job holds this lease (see the job engine); any other worker of
    # the job takes the role over once it expires (on the database's clock).
    runner_token = models.CharField(max_length=100, blank=True)
    runner_lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("job")
        verbose_name_plural = _("jobs")

    def __str__(self) -> str:
        return gettext("%(action)s job #%(id)s") % {"action": self.action_name, "id": self.pk}


class ItemStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")
    SKIPPED = "skipped", _("Skipped")
    CANCELLED = "cancelled", _("Cancelled")


class LLMJobItem(models.Model):
    """One page (or image) of a job. At most one write is made per item: a draft revision
    of the page, or the image's field."""

    job = models.ForeignKey(LLMJob, on_delete=models.CASCADE, related_name="items")
    page = models.ForeignKey(
        "wagtailcore.Page", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    #: An item that is not a page (an image): the type and id of what it runs on.
    target_type = models.ForeignKey(
        ContentType, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    target_id = models.CharField(max_length=255, blank=True)
    status = models.CharField(
        _("status"), max_length=20, choices=ItemStatus.choices, default=ItemStatus.QUEUED
    )
    skip_reason = models.CharField(_("skip reason"), max_length=255, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    error = models.TextField(_("error"), blank=True)
    interaction = models.ForeignKey(
        LLMInteraction, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=100, blank=True)
    not_before = models.DateTimeField(null=True, blank=True)
    payload = models.JSONField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pk"]
        verbose_name = _("job item")
        verbose_name_plural = _("job items")
        indexes = [models.Index(fields=["job", "status"], name="llmjobitem_job_status_idx")]

    def __str__(self) -> str:
        target = self.page_id if self.target_type_id is None else self.target_id
        return f"{self.job_id}/{target} {self.status}"


class LLMProviderSlots(models.Model):
    """One worker process taking part in a bulk job, and the model calls it may have in
    flight to the job's provider.

    The job engine reserves slots here (the sum over live rows of a provider never exceeds
    its ``CONCURRENCY``; jobs and their workers share it fairly, see ``jobs.fair_shares``)
    and hands them to its threads in memory, one per call in flight, so claiming, saving and
    logging a page hold no slot. A row with no slots still counts: it asks for a share. A row
    whose holder died expires (``expires_at``, on the database's clock).
    """

    provider = models.CharField(max_length=100)
    holder = models.CharField(max_length=100, unique=True)
    slots = models.PositiveSmallIntegerField(default=0)
    expires_at = models.DateTimeField()
    #: The job the holder works on (None: a reservation outside a job).
    job = models.ForeignKey(
        "LLMJob", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    #: The host the holder runs on (``HOST_ID``).
    host = models.CharField(max_length=100, blank=True)
    #: Slots the holder would use, and its job's own limit.
    wanted = models.PositiveSmallIntegerField(default=0)
    job_limit = models.PositiveSmallIntegerField(default=0)

    class Meta:
        verbose_name = _("provider slots")
        verbose_name_plural = _("provider slots")
        indexes = [
            models.Index(fields=["provider", "expires_at"], name="llmslots_provider_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.provider}: {self.slots} ({self.holder})"
