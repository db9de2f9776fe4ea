"""Interactions (one model call each: the audit log) and runs (several calls as one)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .actions import LLMAction
from .base import OrderedJSONField, RevisionLinks


class InteractionStatus(models.TextChoices):
    SUCCESS = "success", _("Success")
    ERROR = "error", _("Error")
    #: The model answered and the answer is stored here, but it is not (yet) in a draft:
    #: the write failed or was refused. It can be applied later without calling again.
    ANSWERED = "answered", _("Answered, not written")
    #: Nothing was sent: the source was empty. Not an error (a bulk job skips the page).
    SKIPPED = "skipped", _("Skipped (no content)")


class InteractionOutcome(models.TextChoices):
    NONE = "", _("Unknown")
    PENDING = "pending", _("Awaiting review")
    DRAFTED = "drafted", _("Saved as draft")
    ACCEPTED = "accepted", _("Accepted as generated")
    EDITED = "edited", _("Edited before saving")
    DISCARDED = "discarded", _("Discarded")
    #: A pipeline step or map-reduce part whose answer only feeds later calls of its run.
    FED = "fed", _("Used by a later step")
    #: An image action's answer, written to the image itself (images keep no revisions).
    WRITTEN = "written", _("Written directly")
    #: An image action's answer taken back: the image holds its previous value again.
    UNDONE = "undone", _("Undone")


class InteractionTrigger(models.TextChoices):
    API = "api", _("Python API")
    EDITOR = "editor", _("Page editor")
    BULK = "bulk", _("Bulk action")
    COMMAND = "command", _("Management command")
    RERUN = "rerun", _("Rerun")
    TEST = "test", _("Test on a page")
    ON_PUBLISH = "on_publish", _("On publish")
    ON_SOURCE_CHANGE = "on_source_change", _("On source change")
    SCHEDULE = "schedule", _("Schedule")
    IMAGE_EDITOR = "image_editor", _("Image editor")
    SNIPPET_EDITOR = "snippet_editor", _("Snippet editor")
    ON_IMAGE_UPLOAD = "on_image_upload", _("On image upload")
    WAGTAIL_LOCALIZE = "wagtail_localize", _("wagtail-localize")


#: Columns of the report's covering index: what its filters, totals and chart read.
REPORT_INDEX_FIELDS = [
    "created_at",
    "status",
    "action",
    "user",
    "page",
    "model",
    "action_name",
    "cost",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "latency_ms",
    "id",
]


class ReportCoverIndex(models.Index):
    """The report's covering index: ``fields``, led by the day the report groups by.

    The report's totals and chart group by the local day of ``created_at`` (``charts.day_of``).
    Leading the index with that expression lets the database read the rows already grouped,
    with no sort of every row: ``date(created_at)`` on SQLite, ``(created_at AT TIME ZONE
    <TIME_ZONE>)::date`` on PostgreSQL (immutable, and it gives the planner statistics on the
    number of days). It matches the report's query while the site's ``TIME_ZONE`` is the one
    the index was created with (and, on SQLite, is UTC); otherwise it is still a narrow index
    to scan. Other databases get the plain ``fields``.
    """

    def deconstruct(self):
        # The path the migrations name it by (it was defined in models.py before the package).
        _path, args, kwargs = super().deconstruct()
        return "wagtail_llm_actions.models.ReportCoverIndex", args, kwargs

    def create_sql(self, model, schema_editor, using="", **kwargs):
        vendor = schema_editor.connection.vendor
        if vendor == "sqlite":
            day = models.Func(
                models.F("created_at"), function="date", output_field=models.DateField()
            )
            names = [name for name in self.fields if name != "id"]  # id is the rowid
        elif vendor == "postgresql":
            from django.db.models.functions import TruncDate
            from django.utils import timezone

            day = TruncDate("created_at", tzinfo=timezone.get_default_timezone())
            names = list(self.fields)
        else:
            return super().create_sql(model, schema_editor, using=using, **kwargs)
        index = models.Index(day, *(models.F(name) for name in names), name=self.name)
        return index.create_sql(model, schema_editor, using=using, **kwargs)


class LLMInteraction(RevisionLinks):
    """One call to a model: what was sent, what came back, what it cost, what it changed."""

    action = models.ForeignKey(
        LLMAction,
        verbose_name=_("action"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="interactions",
    )
    action_name = models.CharField(_("action name"), max_length=255, blank=True)
    page = models.ForeignKey(
        "wagtailcore.Page",
        verbose_name=_("page"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    content_type = models.ForeignKey(
        ContentType,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    object_id = models.CharField(max_length=255, blank=True)
    content_object = GenericForeignKey("content_type", "object_id")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    trigger = models.CharField(
        _("trigger"), max_length=20, choices=InteractionTrigger.choices, default="api"
    )
    model = models.CharField(_("model"), max_length=200, blank=True)
    messages = models.JSONField(_("messages"), default=list, blank=True)
    parameters = models.JSONField(_("parameters"), default=dict, blank=True)
    response_text = models.TextField(_("response"), blank=True)
    output_value = models.TextField(_("value written"), blank=True)
    previous_value = models.TextField(_("previous value"), blank=True)
    finish_reason = models.CharField(_("finish reason"), max_length=50, blank=True)
    prompt_tokens = models.PositiveIntegerField(_("prompt tokens"), null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(_("completion tokens"), null=True, blank=True)
    total_tokens = models.PositiveIntegerField(_("total tokens"), null=True, blank=True)
    cost = models.DecimalField(_("cost (USD)"), max_digits=14, decimal_places=8, null=True)
    latency_ms = models.PositiveIntegerField(_("latency (ms)"), null=True, blank=True)
    status = models.CharField(
        _("status"), max_length=20, choices=InteractionStatus.choices, db_index=False
    )
    outcome = models.CharField(
        _("outcome"), max_length=20, choices=InteractionOutcome.choices, blank=True, default=""
    )
    error_code = models.CharField(_("error code"), max_length=50, blank=True)
    error_message = models.TextField(_("error"), blank=True)
    #: ``service.inputs_hash`` of the run: the rendered messages (source, prompt text, every
    #: variable), model, parameters and output mapping. The skip-unchanged rule compares it
    #: (:mod:`.unchanged`). Older rows hold a hash of the source texts alone, which never
    #: matches: their pages run once more.
    source_hash = models.CharField(_("source hash"), max_length=64, blank=True)
    target_field = models.CharField(_("target field"), max_length=255, blank=True)
    rebased = models.BooleanField(
        _("rebased"),
        default=False,
        help_text=_(
            "The page changed while the model was answering, so the answer was written into "
            "the newest revision (only the target field changed)."
        ),
    )
    source_truncated = models.BooleanField(_("source truncated"), default=False)
    #: The answer, or a partial answer it was combined from, stopped at ``max_tokens``.
    answer_truncated = models.BooleanField(_("answer cut off"), default=False)
    #: Answered from the response cache: no call was made, no tokens or cost.
    cached = models.BooleanField(_("from cache"), default=False)
    #: Structured runs: {field: value written}, {field: value before} and, from the
    #: editor, {field: "accepted" | "edited" | "discarded" | "pending"}.
    output_values = OrderedJSONField(_("values written"), default=dict, blank=True)
    previous_values = OrderedJSONField(_("previous values"), default=dict, blank=True)
    field_outcomes = OrderedJSONField(_("outcome per field"), default=dict, blank=True)
    #: Several candidates: every usable value offered, and the index the editor picked.
    candidates = models.JSONField(_("candidates"), default=list, blank=True)
    chosen_candidate = models.PositiveSmallIntegerField(
        _("chosen candidate"), null=True, blank=True
    )
    prompt_revision = models.ForeignKey(
        "wagtailcore.Revision",
        verbose_name=_("prompt version"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    run = models.ForeignKey(
        "LLMRun",
        verbose_name=_("run"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="interactions",
    )
    step_index = models.PositiveSmallIntegerField(_("step"), null=True, blank=True)
    step_name = models.CharField(_("step name"), max_length=100, blank=True)
    chunk_index = models.PositiveIntegerField(_("part"), null=True, blank=True)
    reused_from = models.ForeignKey(
        "self",
        verbose_name=_("answer reused from"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    #: What was changed so the database could store this row (text no column takes: lone
    #: surrogates, NUL characters, values longer than their column), in words; "" if nothing.
    storage_note = models.CharField(_("cleaned for storage"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("interaction")
        verbose_name_plural = _("interactions")
        indexes = [
            models.Index(fields=["-created_at"], name="llmi_created_idx"),
            models.Index(fields=["action", "-created_at"], name="llmi_action_created_idx"),
            models.Index(fields=["status", "-created_at"], name="llmi_status_created_idx"),
            models.Index(fields=["user", "-created_at"], name="llmi_user_created_idx"),
            models.Index(fields=["page", "action", "status"], name="llmi_page_action_idx"),
            models.Index(fields=["model", "-created_at"], name="llmi_model_created_idx"),
            # The report's totals and chart read only these columns: a scan of this narrow
            # index instead of the wide rows (messages, responses). See migration 0005.
            ReportCoverIndex(fields=REPORT_INDEX_FIELDS, name="llmi_report_cover_idx"),
            # Search resolves action names through this index (a few distinct values).
            models.Index(fields=["action_name"], name="llmi_action_name_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action_name} #{self.pk} ({self.get_status_display()})"

    def save(self, *args, **kwargs) -> None:
        """Save, first cleaning what no database column takes (see :mod:`.storable`) and
        saying so in ``storage_note``: a paid call is always logged."""
        from ..storable import clean_row, merge_notes

        update_fields = kwargs.get("update_fields")
        note = clean_row(self, None if update_fields is None else list(update_fields))
        if note:
            limit = self._meta.get_field("storage_note").max_length
            self.storage_note = merge_notes(self.storage_note, note, limit)
            if update_fields is not None:
                kwargs["update_fields"] = [*update_fields, "storage_note"]
        super().save(*args, **kwargs)

    @property
    def is_success(self) -> bool:
        return self.status == InteractionStatus.SUCCESS

    @property
    def cut_warning(self) -> str:
        """Why the answer may be incomplete (it was cut off by the token limit), or ""."""
        if not self.answer_truncated:
            return ""
        limit = (self.parameters or {}).get("max_tokens")
        if len(self.candidates or []) > 1:
            return gettext(
                "Some suggestions were cut off by the token limit, so they may end "
                "mid-sentence. Check the end of the one you choose."
            )
        if self.finish_reason == "length" and limit:
            return gettext(
                "The answer was cut off at the action's max tokens (%(tokens)s), so it may "
                "end mid-sentence. Check its end, or raise max tokens and run it again."
            ) % {"tokens": limit}
        if self.finish_reason == "length":
            return gettext(
                "The answer was cut off by the model's token limit, so it may end "
                "mid-sentence. Check its end."
            )
        return gettext(
            "Some partial answers of the long content were cut off at their token limit "
            "before they were combined, so the answer may miss part of the page."
        )


class RunKind(models.TextChoices):
    PIPELINE = "pipeline", _("Pipeline")
    MAP_REDUCE = "map_reduce", _("Map-reduce")


class RunStatus(models.TextChoices):
    RUNNING = "running", _("Running")
    SUCCESS = "success", _("Success")
    ERROR = "error", _("Error")
    ANSWERED = "answered", _("Answered, not written")
    #: A step had nothing to send (its source was empty): nothing was written, no error.
    SKIPPED = "skipped", _("Skipped (no content)")


class LLMRun(RevisionLinks):
    """One run made of several model calls (a pipeline, or a map-reduce over long content);
    each call is an :class:`LLMInteraction` linked here."""

    kind = models.CharField(_("kind"), max_length=20, choices=RunKind.choices)
    pipeline = models.ForeignKey(
        "LLMPipeline",
        verbose_name=_("pipeline"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
    )
    name = models.CharField(_("name"), max_length=255, blank=True)
    page = models.ForeignKey(
        "wagtailcore.Page",
        verbose_name=_("page"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    object_id = models.CharField(max_length=255, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    trigger = models.CharField(
        _("trigger"), max_length=20, choices=InteractionTrigger.choices, default="api"
    )
    status = models.CharField(
        _("status"), max_length=20, choices=RunStatus.choices, default=RunStatus.RUNNING
    )
    failed_step = models.CharField(_("failed step"), max_length=100, blank=True)
    error_message = models.TextField(_("error"), blank=True)
    rerun_of = models.ForeignKey(
        "self",
        verbose_name=_("rerun of"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("run")
        verbose_name_plural = _("runs")

    def __str__(self) -> str:
        return f"{self.name} #{self.pk} ({self.get_status_display()})"

    def timeline(self):
        """The run's calls in order: step by step, parts before the step's combining call."""
        return sorted(
            self.interactions.all(),
            key=lambda i: (
                i.step_index if i.step_index is not None else -1,
                i.chunk_index is None,
                i.chunk_index or 0,
                i.pk,
            ),
        )
