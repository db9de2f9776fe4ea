"""Prompts, actions, interactions (the audit log) and jobs."""

from __future__ import annotations

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from modelcluster.fields import ParentalKey
from modelcluster.models import ClusterableModel
from wagtail.models import Orderable, RevisionMixin
from wagtail.search import index


class OrderedJSONField(models.JSONField):
    """A JSON object field that keeps its keys' order on every database.

    PostgreSQL's jsonb does not keep key order, so a non-empty object is stored as a list of
    ``[key, value]`` pairs and read back as a dict in that order. Rows stored as a plain
    object (before this field) read as they are. No JSON key lookups are used on it.
    """

    def get_prep_value(self, value):
        if isinstance(value, dict) and value:
            value = [[key, item] for key, item in value.items()]
        return super().get_prep_value(value)

    def from_db_value(self, value, expression, connection):
        value = super().from_db_value(value, expression, connection)
        if isinstance(value, list) and all(
            isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) for pair in value
        ):
            return dict((key, item) for key, item in value)  # noqa: C402 - pairs, in order
        return value


class LLMPrompt(RevisionMixin, index.Indexed, models.Model):
    """A reusable prompt template with ``{variable}`` placeholders; its history is kept."""

    name = models.CharField(_("name"), max_length=255)
    slug = models.SlugField(_("slug"), max_length=255, unique=True)
    template = models.TextField(
        _("template"),
        help_text=_(
            "Text sent to the model. Use {body}-style placeholders for fields of the page "
            "(dotted paths such as {body.paragraph}), {title}, {url}, {locale} and {context}. "
            "Write {{ and }} for literal braces."
        ),
    )
    description = models.TextField(_("description"), blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    search_fields = [
        index.SearchField("name"),
        index.AutocompleteField("name"),
        index.SearchField("template"),
        index.SearchField("description"),
        index.FilterField("slug"),
    ]

    class Meta:
        ordering = ["name"]
        verbose_name = _("LLM prompt")
        verbose_name_plural = _("LLM prompts")

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        from .templating import TemplateSyntaxError, parse_template

        try:
            parse_template(self.template or "")
        except TemplateSyntaxError as e:
            raise ValidationError({"template": str(e)}) from e

    def current_revision_id(self) -> int:
        """The id of the prompt's latest revision, snapshotting one silently if it has none.

        Prompts saved in the admin get a revision (and a history entry) on every save. One
        created in code has none until its first run, which records this snapshot with no
        user and no history entry: a run is not an edit of the prompt.
        """
        if self.latest_revision_id is not None:
            return self.latest_revision_id
        from wagtail.models import Revision

        from . import db

        def snapshot() -> int:
            locked = type(self).objects.select_for_update().only("latest_revision").get(pk=self.pk)
            if locked.latest_revision_id is None:
                revision = Revision.objects.create(
                    content_object=self,
                    base_content_type=self.get_base_content_type(),
                    user=None,
                    content=self.serializable_data(),
                    object_str=str(self),
                )
                type(self).objects.filter(pk=self.pk).update(latest_revision=revision)
                locked.latest_revision_id = revision.pk
            return locked.latest_revision_id

        # Workers of a bulk job may all do this at once: one write transaction, retried
        # while the database is busy (plain SQLite).
        self.latest_revision_id = db.write(snapshot, what="snapshotting a prompt")
        return self.latest_revision_id

    @property
    def variables(self) -> list[str]:
        """The template's variables; none when the template is invalid (say, made in code)."""
        from .templating import TemplateSyntaxError, template_variables

        try:
            return template_variables(self.template or "")
        except TemplateSyntaxError:
            return []


class LongContent(models.TextChoices):
    TRUNCATE = "truncate", _("Truncate the source (send its first part)")
    MAP_REDUCE = "map_reduce", _("Map-reduce: run on each part, then combine")


class CutAnswers(models.TextChoices):
    """What to do with an answer the model stopped at ``max_tokens`` (finish reason "length")."""

    REFUSE = "refuse", _("Refuse it (nothing is written; the answer stays in the log)")
    KEEP = "keep", _("Keep it, with a warning")


#: The reduce prompt used when an action sets none. ``{answers}`` holds the partial answers.
DEFAULT_REDUCE_PROMPT = (
    "Write one answer from these partial answers. Each was made from one part of "
    "\u201c{title}\u201d by the same instruction; answer as if you had read the whole page "
    "at once, in the form and length of a single answer, with no preamble.\n\n{answers}"
)


#: Variables a reduce prompt may use.
REDUCE_VARIABLES = frozenset({"answers", "title", "url", "locale", "context"})


class OutputMode(models.TextChoices):
    TEXT = "text", _("Plain text")
    TAGS = "tags", _("Tag list")
    RICH_TEXT = "rich_text", _("Rich text")


class LLMAction(models.Model):
    """What to run: a source field, a prompt, a model and settings, a target field."""

    name = models.CharField(_("name"), max_length=255)
    slug = models.SlugField(_("slug"), max_length=255, unique=True)
    description = models.TextField(_("description"), blank=True)
    page_types = models.ManyToManyField(
        ContentType,
        verbose_name=_("page types"),
        related_name="+",
        help_text=_("The page types this action can run on."),
    )
    source_field = models.CharField(
        _("source field"),
        max_length=255,
        default="body",
        help_text=_(
            "Dotted path of the content sent to the model, e.g. body, body.paragraph, "
            "body.section.text, intro. Available in the prompt as {source} and by its path."
        ),
    )
    target_field = models.CharField(
        _("target field"),
        max_length=255,
        blank=True,
        help_text=_(
            "Field of the page that receives the answer, e.g. summary or tags. Leave blank "
            "when output fields below map several fields."
        ),
    )
    output_fields = OrderedJSONField(
        _("output fields"),
        default=dict,
        blank=True,
        help_text=_(
            "Fill several fields from one call: a JSON object mapping each output key to a "
            'field, e.g. {"title": "seo_title", "description": "search_description", '
            '"tags": "tags"}. The model is asked for a JSON object with these keys.'
        ),
    )
    candidates = models.PositiveSmallIntegerField(
        _("candidates"),
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(5)],
        help_text=_(
            "How many suggestions the editor offers to choose from (1 to 5). Bulk runs and "
            "the command write the first one and ask the model for one only."
        ),
    )
    model = models.CharField(
        _("model"),
        max_length=200,
        help_text=_(
            "A LiteLLM model string such as openai/gpt-4o-mini, anthropic/claude-3-5-haiku-latest, "
            "ollama/mistral, or local/extractive for the offline provider."
        ),
    )
    api_base = models.URLField(
        _("API base URL"),
        blank=True,
        help_text=_("Optional, for Ollama, Azure or any OpenAI-compatible server."),
    )
    api_key_name = models.CharField(
        _("API key setting name"),
        max_length=100,
        blank=True,
        help_text=_(
            "Name of the environment variable (or WAGTAIL_LLM_ACTIONS['API_KEYS'] entry) that "
            "holds the key, never the key itself. Blank uses the provider's usual variable, "
            "such as OPENAI_API_KEY."
        ),
    )
    system_message = models.TextField(_("system message"), blank=True)
    prompt = models.ForeignKey(
        LLMPrompt,
        verbose_name=_("prompt"),
        on_delete=models.PROTECT,
        related_name="actions",
    )
    context_message = models.TextField(
        _("context / styling message"),
        blank=True,
        help_text=_("Optional guidance on tone or style; available in the prompt as {context}."),
    )
    temperature = models.FloatField(
        _("temperature"),
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(2.0)],
    )
    max_tokens = models.PositiveIntegerField(
        _("max tokens"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(200_000)],
    )
    timeout = models.PositiveIntegerField(
        _("timeout (seconds)"),
        default=60,
        validators=[MinValueValidator(1), MaxValueValidator(900)],
    )
    extra_params = models.JSONField(
        _("extra parameters"),
        default=dict,
        blank=True,
        help_text=_('Extra keyword arguments for the model call, e.g. {"top_p": 0.9}.'),
    )
    fallback_models = models.TextField(
        _("fallback models"),
        blank=True,
        help_text=_("Model strings tried in order if the main model fails, one per line."),
    )
    output_mode = models.CharField(
        _("output mode"),
        max_length=20,
        choices=OutputMode.choices,
        default=OutputMode.TEXT,
    )
    long_content = models.CharField(
        _("long content"),
        max_length=20,
        choices=LongContent.choices,
        default=LongContent.TRUNCATE,
        help_text=_(
            "What to do when the source does not fit the model's context window: cut it "
            "(the cut is recorded), or run the prompt on each part and combine the answers."
        ),
    )
    context_window = models.PositiveIntegerField(
        _("context window (tokens)"),
        null=True,
        blank=True,
        validators=[MinValueValidator(256), MaxValueValidator(10_000_000)],
        help_text=_(
            "Input tokens the model accepts. Blank uses the model's known window (LiteLLM's "
            "model list); needed for map-reduce with models it does not know."
        ),
    )
    reduce_prompt = models.TextField(
        _("reduce prompt"),
        blank=True,
        help_text=_(
            "Map-reduce only: how to combine the partial answers, with {answers}, {title}, "
            "{url}, {locale} and {context}. Blank uses a sensible default."
        ),
    )
    cut_answers = models.CharField(
        _("answers cut off by max tokens"),
        max_length=20,
        choices=CutAnswers.choices,
        default=CutAnswers.REFUSE,
        help_text=_(
            "When the model stops at max tokens (mid-sentence), or a partial answer of long "
            "content was cut before being combined: refuse the answer, or write it with a "
            "warning for the editor and in the log."
        ),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("LLM action")
        verbose_name_plural = _("LLM actions")
        permissions = [
            (
                "configure_llm_provider",
                _("Can configure LLM providers (model, API base, key name, extra parameters)"),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    # -- configuration helpers -------------------------------------------------------------

    @property
    def fallback_model_list(self) -> list[str]:
        return [m.strip() for m in (self.fallback_models or "").splitlines() if m.strip()]

    @property
    def is_structured(self) -> bool:
        """Whether the action fills several fields from one JSON answer."""
        return bool(self.output_fields) and isinstance(self.output_fields, dict)

    @property
    def target_fields(self) -> list[str]:
        """Every field the action writes, in the mapping's order."""
        if self.is_structured:
            return [str(name) for name in self.output_fields.values()]
        return [self.target_field] if self.target_field else []

    def get_page_models(self) -> list[type]:
        """Page classes this action applies to (cached per instance)."""
        if not hasattr(self, "_page_models"):
            self._page_models = [
                ct.model_class() for ct in self.page_types.all() if ct.model_class()
            ]
        return self._page_models

    def applies_to(self, page) -> bool:
        """Whether ``page``'s type is one of the action's (one query per action instance)."""
        if not hasattr(self, "_page_type_ids"):
            self._page_type_ids = set(self.page_types.values_list("pk", flat=True))
        return page.content_type_id in self._page_type_ids

    def provider_problems(self) -> dict[str, list[str]]:
        """What the provider policy refuses in the model, fallbacks, API base, key name and
        extra parameters, by field (see ``providers/policy.py``; checked again at call time).

        With a blank API base a model's requests go where its provider sends them by default
        (a local server for ``ollama/``, ``llamafile/``…; an ``*_API_BASE`` variable): that
        destination is checked like an API base, for the model and each fallback (which gets
        the action's API base only when it has the model's provider prefix).
        """
        from .conf import get_setting
        from .providers import split_model_string, validate_model_string
        from .providers.destinations import destination
        from .providers.policy import (
            PolicyError,
            check_api_base,
            check_destination,
            check_extra_params,
            check_key_name,
        )

        errors: dict[str, list[str]] = {}
        custom = set(get_setting("PROVIDERS") or {})
        main_prefix = split_model_string(self.model or "")[0]
        for name in [self.model, *self.fallback_model_list]:
            field = "model" if name == self.model else "fallback_models"
            try:
                validate_model_string(name)
            except ValueError as e:
                errors.setdefault(field, []).append(str(e))
                continue
            prefix = split_model_string(name)[0]
            if prefix == "local" or prefix in custom:
                continue
            base = self.api_base if prefix == main_prefix else ""
            try:
                check_destination(destination(name, base))
            except PolicyError as e:
                errors.setdefault(field, []).append(str(e))
        for field, check, value in (
            ("api_key_name", check_key_name, self.api_key_name),
            ("api_base", check_api_base, self.api_base),
        ):
            try:
                check(value)
            except PolicyError as e:
                errors.setdefault(field, []).append(str(e))
        try:
            check_extra_params(self.extra_params, (self.model or "").strip())
        except PolicyError as e:
            errors.setdefault("extra_params", []).append(str(e))
        return errors

    def clean(self) -> None:
        super().clean()
        errors: dict[str, list[str]] = {}
        for field, messages in self.provider_problems().items():
            errors.setdefault(field, []).extend(messages)
        if self.pk and not getattr(self, "_page_types_checked_by_form", False):
            # A saved action's page types are known: its paths and prompt must fit them, however
            # it is saved (code, fixture, another form). The admin form checks the page types
            # being chosen instead (forms.LLMActionForm), so it sets the flag.
            page_models = [ct.model_class() for ct in self.page_types.all() if ct.model_class()]
            for name, messages in self.validate_for_page_models(page_models).items():
                errors.setdefault(name, []).extend(dict.fromkeys(messages))
        if self.reduce_prompt:
            from .templating import TemplateSyntaxError, template_variables

            try:
                unknown = set(template_variables(self.reduce_prompt)) - REDUCE_VARIABLES
            except TemplateSyntaxError as e:
                errors.setdefault("reduce_prompt", []).append(str(e))
            else:
                if unknown:
                    errors.setdefault("reduce_prompt", []).append(
                        gettext("The reduce prompt can only use %(allowed)s, not %(names)s.")
                        % {
                            "allowed": ", ".join(f"{{{n}}}" for n in sorted(REDUCE_VARIABLES)),
                            "names": ", ".join(f"{{{n}}}" for n in sorted(unknown)),
                        }
                    )
        from .structured import mapping_problems

        if self.output_fields not in (None, "", {}):
            errors.setdefault("output_fields", []).extend(mapping_problems(self.output_fields))
        elif not (self.target_field or "").strip():
            errors.setdefault("target_field", []).append(
                gettext("Enter the field that receives the answer, or map output fields.")
            )
        if self.candidates is not None and not 1 <= self.candidates <= 5:
            errors.setdefault("candidates", []).append(gettext("Offer between 1 and 5 candidates."))
        elif self.candidates and self.candidates > 1 and self.is_structured:
            errors.setdefault("candidates", []).append(
                gettext("An action that fills several fields offers one candidate only.")
            )
        errors = {key: value for key, value in errors.items() if value}
        if errors:
            raise ValidationError(errors)

    def validate_for_page_models(self, page_models: list[type]) -> dict[str, list[str]]:
        """Field-specific errors for paths and prompt variables against ``page_models``."""
        from .extraction import PathError, validate_source_path, validate_target_field
        from .templating import (
            BUILTIN_VARIABLES,
            TemplateSyntaxError,
            is_step_variable,
            template_variables,
        )

        errors: dict[str, list[str]] = {}
        for model in page_models:
            try:
                validate_source_path(model, self.source_field)
            except PathError as e:
                errors.setdefault("source_field", []).append(str(e))
            if self.is_structured:
                from .structured import mapping_field_problems

                for problem in mapping_field_problems(model, self.output_fields):
                    errors.setdefault("output_fields", []).append(problem)
                continue
            try:
                validate_target_field(model, self.target_field, self.output_mode)
            except PathError as e:
                errors.setdefault("target_field", []).append(str(e))
        # A pipeline step's own prompt is an unsaved LLMPrompt (see LLMPipelineStep.as_action).
        prompt = self.prompt if self.prompt_id or "prompt" in self._state.fields_cache else None
        if prompt is not None:
            try:
                variables = template_variables(prompt.template)
            except TemplateSyntaxError as e:
                errors.setdefault("prompt", []).append(str(e))
                variables = []
            for var in variables:
                if var in BUILTIN_VARIABLES or var == "source" or is_step_variable(var):
                    # {steps.x} names are checked where the action is used in a pipeline.
                    continue
                for model in page_models:
                    try:
                        validate_source_path(model, var)
                    except PathError as e:
                        errors.setdefault("prompt", []).append(
                            gettext("The prompt uses {%(var)s}: %(error)s")
                            % {"var": var, "error": e}
                        )
        return errors


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


class InteractionTrigger(models.TextChoices):
    API = "api", _("Python API")
    EDITOR = "editor", _("Page editor")
    BULK = "bulk", _("Bulk action")
    COMMAND = "command", _("Management command")
    RERUN = "rerun", _("Rerun")
    TEST = "test", _("Test on a page")


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


class LLMInteraction(models.Model):
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
    revision = models.ForeignKey(
        "wagtailcore.Revision",
        verbose_name=_("revision written"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    base_revision = models.ForeignKey(
        "wagtailcore.Revision",
        verbose_name=_("revision read"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
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
        verbose_name = _("LLM interaction")
        verbose_name_plural = _("LLM interactions")
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
        from .storable import clean_row, merge_notes

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


class LLMRun(models.Model):
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
    revision = models.ForeignKey(
        "wagtailcore.Revision",
        verbose_name=_("revision written"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    base_revision = models.ForeignKey(
        "wagtailcore.Revision",
        verbose_name=_("revision read"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
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
        verbose_name = _("LLM run")
        verbose_name_plural = _("LLM runs")

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


class LLMPipeline(ClusterableModel):
    """An ordered list of steps run on a page as one run, writing one draft."""

    name = models.CharField(_("name"), max_length=255)
    slug = models.SlugField(_("slug"), max_length=255, unique=True)
    description = models.TextField(_("description"), blank=True)
    page_types = models.ManyToManyField(
        ContentType,
        verbose_name=_("page types"),
        related_name="+",
        blank=True,
        help_text=_(
            "The page types this pipeline runs on. Needed when a step has its own prompt; "
            "blank runs it on the page types every step's action applies to."
        ),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    panels: list = []  # set in viewsets.py

    class Meta:
        ordering = ["name"]
        verbose_name = _("LLM pipeline")
        verbose_name_plural = _("LLM pipelines")

    def __str__(self) -> str:
        return self.name

    def ordered_steps(self) -> list[LLMPipelineStep]:
        steps = list(self.steps.select_related("action", "action__prompt").order_by("sort_order"))
        if any(step.action_id is None for step in steps):
            type_ids = self.page_type_ids()
            for step in steps:
                step._pipeline_page_type_ids = type_ids
        return steps

    def page_type_ids(self) -> set[int]:
        """The ids of the pipeline's own page types (one query per instance; none if unsaved)."""
        if not hasattr(self, "_page_type_ids"):
            self._page_type_ids = (
                set(self.page_types.values_list("pk", flat=True)) if self.pk else set()
            )
        return self._page_type_ids


#: Step fields that make a step with its own prompt (as opposed to one that uses an action).
INLINE_STEP_FIELDS = (
    "prompt_template",
    "source_field",
    "target_field",
    "output_mode",
    "model",
    "api_base",
    "api_key_name",
    "temperature",
    "max_tokens",
)


class LLMPipelineStep(Orderable):
    """One step: an existing action, or a prompt, model and parameters of its own.

    Earlier steps' answers are available to its prompt as ``{steps.<name>}``. A step that
    should not write leaves "writes" off and only feeds later steps. A step with its own
    prompt runs as a transient (unsaved) :class:`LLMAction` built by :meth:`as_action`, so
    the one service path runs it; its interactions have no action and are named
    "<pipeline> › <step>".
    """

    pipeline = ParentalKey(LLMPipeline, on_delete=models.CASCADE, related_name="steps")
    name = models.SlugField(
        _("step name"),
        max_length=100,
        help_text=_("Later steps use this step's answer as {steps.<name>}, e.g. {steps.outline}."),
    )
    action = models.ForeignKey(
        LLMAction,
        verbose_name=_("action"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text=_("Run an existing action, or leave blank and write this step's own prompt."),
    )
    writes = models.BooleanField(
        _("writes its target field"),
        default=True,
        help_text=_("Off: the answer only feeds later steps."),
    )
    prompt_template = models.TextField(
        _("own prompt"),
        blank=True,
        help_text=_(
            "Instead of an action: the text sent to the model, with {source}, page fields "
            "such as {body} or {intro}, {title}, {url}, {locale} and earlier answers as "
            "{steps.<name>}."
        ),
    )
    source_field = models.CharField(
        _("source field"),
        max_length=255,
        default="body",
        blank=True,
        help_text=_("Own prompt: dotted path of the content available as {source}."),
    )
    target_field = models.CharField(
        _("target field"),
        max_length=255,
        blank=True,
        help_text=_("Own prompt: the field that receives the answer when the step writes."),
    )
    output_mode = models.CharField(
        _("output mode"),
        max_length=20,
        choices=OutputMode.choices,
        default=OutputMode.TEXT,
    )
    model = models.CharField(
        _("model"),
        max_length=200,
        blank=True,
        help_text=_("Own prompt: a LiteLLM model string, as for an action."),
    )
    api_base = models.URLField(_("API base URL"), blank=True)
    api_key_name = models.CharField(_("API key setting name"), max_length=100, blank=True)
    temperature = models.FloatField(
        _("temperature"),
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(2.0)],
    )
    max_tokens = models.PositiveIntegerField(
        _("max tokens"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(200_000)],
    )

    class Meta(Orderable.Meta):
        verbose_name = _("step")
        verbose_name_plural = _("steps")

    def __str__(self) -> str:
        return self.name

    @property
    def is_inline(self) -> bool:
        """Whether the step has its own prompt rather than an action."""
        return self.action_id is None and self.action is None

    def as_action(self) -> LLMAction:
        """The action this step runs: its action, or a transient (unsaved) one built from its
        own prompt, model and parameters (applying to the pipeline's page types)."""
        if self.action_id is not None or self.action is not None:
            return self.action
        pipeline_name = ""
        try:
            pipeline_name = self.pipeline.name
        except LLMPipeline.DoesNotExist:
            pass
        action = LLMAction(
            name=f"{pipeline_name} › {self.name}" if pipeline_name else self.name,
            slug="",
            source_field=self.source_field or "body",
            target_field=self.target_field,
            output_mode=self.output_mode or OutputMode.TEXT,
            model=self.model,
            api_base=self.api_base,
            api_key_name=self.api_key_name,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            prompt=LLMPrompt(name=self.name, slug="", template=self.prompt_template),
            enabled=True,
        )
        type_ids = getattr(self, "_pipeline_page_type_ids", None)
        if type_ids is None:
            try:
                type_ids = self.pipeline.page_type_ids()
            except LLMPipeline.DoesNotExist:
                type_ids = set()
        action._page_type_ids = set(type_ids)
        action.pipeline_step = self
        return action

    def clean(self) -> None:
        """Exactly one of an action or an own prompt; an own prompt's model, provider
        settings and template are checked as an action's are. Step references and fields
        of the page types are checked with the whole pipeline (``pipelines.validate_steps``
        and the pipeline form)."""
        super().clean()
        has_prompt = bool((self.prompt_template or "").strip())
        if self.action_id is not None or self.action is not None:
            if has_prompt:
                raise ValidationError(
                    {
                        "prompt_template": gettext(
                            "A step runs an action or its own prompt, not both: clear one."
                        )
                    }
                )
            return
        if not has_prompt:
            raise ValidationError(
                gettext("Choose an action for this step, or write its own prompt.")
            )
        errors: dict[str, list[str]] = {}
        if not (self.model or "").strip():
            errors.setdefault("model", []).append(gettext("Enter the model this step calls."))
        if self.writes and not (self.target_field or "").strip():
            errors.setdefault("target_field", []).append(
                gettext("Enter the field that receives the answer, or turn “writes” off.")
            )
        try:
            self.as_action().clean()
        except ValidationError as e:
            for field, messages in e.message_dict.items():
                if field == "target_field" and not self.writes:
                    continue
                name = {"prompt": "prompt_template"}.get(field, field)
                if name not in INLINE_STEP_FIELDS:
                    name = "__all__"
                errors.setdefault(name, []).extend(
                    m for m in messages if m not in errors.get(name, [])
                )
        from .templating import TemplateSyntaxError, parse_template

        try:
            parse_template(self.prompt_template)
        except TemplateSyntaxError as e:
            errors.setdefault("prompt_template", []).append(str(e))
        errors = {key: value for key, value in errors.items() if value}
        if errors:
            raise ValidationError(errors)


class JobStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    COMPLETED = "completed", _("Completed")
    CANCELLED = "cancelled", _("Cancelled")


class JobKind(models.TextChoices):
    EDITOR = "editor", _("Page editor")
    BULK = "bulk", _("Bulk action")
    COMMAND = "command", _("Management command")


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
    # The worker coordinating the job holds this lease (see jobs.py); any other worker of
    # the job takes the role over once it expires (on the database's clock).
    runner_token = models.CharField(max_length=100, blank=True)
    runner_lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("LLM job")
        verbose_name_plural = _("LLM jobs")

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
    """One page of a job. At most one draft revision is written per item."""

    job = models.ForeignKey(LLMJob, on_delete=models.CASCADE, related_name="items")
    page = models.ForeignKey(
        "wagtailcore.Page", null=True, on_delete=models.SET_NULL, related_name="+"
    )
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
        verbose_name = _("LLM job item")
        verbose_name_plural = _("LLM job items")
        indexes = [models.Index(fields=["job", "status"], name="llmjobitem_job_status_idx")]

    def __str__(self) -> str:
        return f"{self.job_id}/{self.page_id} {self.status}"


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
        verbose_name = _("LLM provider slots")
        verbose_name_plural = _("LLM provider slots")
        indexes = [
            models.Index(fields=["provider", "expires_at"], name="llmslots_provider_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.provider}: {self.slots} ({self.holder})"
