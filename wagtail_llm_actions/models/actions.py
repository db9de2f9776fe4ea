"""Actions: what to run (source, prompt, model and settings, target) and their choices."""

from __future__ import annotations

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from wagtail.models import Page

from .base import OrderedJSONField
from .image_fields import ImageSourceFields
from .prompts import LLMPrompt
from .snippet_fields import SnippetTargetFields


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


class ActionTrigger(models.TextChoices):
    """When an action runs by itself (through the job engine, as a draft)."""

    MANUAL = "manual", _("Manually only")
    ON_PUBLISH = "on_publish", _("When a page is published")
    ON_SOURCE_CHANGE = "on_source_change", _("When a page is saved with a changed source")
    ON_IMAGE_UPLOAD = "on_image_upload", _("When an image is uploaded (actions on images)")


#: Seconds a triggered run waits: saves within them make one run.
DEFAULT_TRIGGER_DELAY = 30


class OutputMode(models.TextChoices):
    TEXT = "text", _("Plain text")
    TAGS = "tags", _("Tag list")
    RICH_TEXT = "rich_text", _("Rich text")


class TriggerFields(models.Model):
    """When an action runs by itself (issue 22 §3): the event, its delay and a schedule."""

    trigger = models.CharField(
        _("trigger"),
        max_length=20,
        choices=ActionTrigger.choices,
        default=ActionTrigger.MANUAL,
        help_text=_(
            "Run by itself on the pages of its types: when one is published, or saved with a "
            "source that differs from the last run's. Answers are drafts, never published."
        ),
    )
    trigger_delay = models.PositiveIntegerField(
        _("trigger delay (seconds)"),
        default=DEFAULT_TRIGGER_DELAY,
        validators=[MaxValueValidator(86_400)],
        help_text=_(
            "How long a triggered run waits before it starts; saves meanwhile make one run."
        ),
    )
    trigger_schedule = models.CharField(
        _("schedule"),
        max_length=100,
        blank=True,
        help_text=_(
            "Optional cron expression, e.g. 0 3 * * * (every night at 3): runs the action "
            "over the pages of its types whose source changed since its last answer."
        ),
    )

    submit_for_moderation = models.BooleanField(
        _("submit drafts for moderation"),
        default=False,
        help_text=_(
            "Submit each draft a trigger writes to the page's moderation workflow (skipped "
            "when the page has none or is in moderation already)."
        ),
    )

    class Meta:
        abstract = True

    @property
    def has_trigger(self) -> bool:
        """Whether the action runs by itself (an event trigger or a schedule)."""
        return self.trigger != ActionTrigger.MANUAL or bool((self.trigger_schedule or "").strip())

    def trigger_problems(self, page_type_count: int | None = None) -> dict[str, list[str]]:
        """Why the trigger and schedule cannot be saved, by field. ``page_type_count``: how
        many page types the action has (None: not known yet, not checked)."""
        errors: dict[str, list[str]] = {}
        schedule = (self.trigger_schedule or "").strip()
        if schedule:
            from django_q.models import validate_cron

            try:
                validate_cron(schedule)
            except ImportError:
                errors.setdefault("trigger_schedule", []).append(
                    gettext("A schedule needs the croniter package (pip install croniter).")
                )
            except ValidationError:
                errors.setdefault("trigger_schedule", []).append(
                    gettext(
                        "“%(value)s” is not a cron expression django-q2 accepts; use five "
                        "fields: minute hour day month weekday, e.g. 0 3 * * *."
                    )
                    % {"value": schedule}
                )
        if not self.has_trigger:
            return errors
        field = "trigger" if self.trigger != ActionTrigger.MANUAL else "trigger_schedule"
        if not self.enabled:
            errors.setdefault(field, []).append(
                gettext(
                    "A disabled action cannot run by itself: enable it, or set the trigger "
                    "to “Manually only” and clear the schedule."
                )
            )
        if page_type_count == 0:
            errors.setdefault(field, []).append(
                gettext(
                    "This action applies to no page type, so a trigger could never run it: "
                    "choose its page types first."
                )
            )
        return errors


class SelectionToolFields(models.Model):
    """Whether an action is offered on a selection in the rich-text editor (issue 24 §2)."""

    selection_tool = models.BooleanField(
        _("selection tool"),
        default=False,
        help_text=_(
            "Offer this action in the rich-text editor's selection menu: its prompt is the "
            "instruction for the selected text. The built-in tools (rewrite, shorten, ...) "
            "use the model of the first such action that applies to the page."
        ),
    )

    class Meta:
        abstract = True


class LLMAction(TriggerFields, ImageSourceFields, SelectionToolFields, SnippetTargetFields):
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
    use_cache = models.BooleanField(
        _("reuse identical answers"),
        default=False,
        help_text=_(
            "Answer a call identical to an earlier one (same model, settings and text sent) "
            "from the stored answer, at no cost, for as long as the site keeps answers "
            "(CACHE_TTL). Regenerate and re-running unchanged pages always ask the model."
        ),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("action")
        verbose_name_plural = _("actions")
        permissions = [
            (
                "configure_llm_provider",
                _("Can configure model providers (model, API base, key name, extra parameters)"),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    # -- configuration helpers -------------------------------------------------------------

    @property
    def fallback_model_list(self) -> list[str]:
        return [m.strip() for m in (self.fallback_models or "").splitlines() if m.strip()]

    @property
    def translates(self) -> bool:
        """A translation action: it has translation settings (see :mod:`.translation`), or
        its form says it will (``_translates``)."""
        flag = getattr(self, "_translates", None)
        return flag if flag is not None else bool(self.pk) and hasattr(self, "translation")

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
        """Whether ``page``'s type is one of the action's (one query per action instance);
        never for an action that runs on images. A snippet: one of its snippet types."""
        if self.runs_on_images or not isinstance(page, Page):  # a snippet: its model's
            return not self.runs_on_images and self.applies_to_snippet(type(page))
        if not hasattr(self, "_page_type_ids"):
            self._page_type_ids = set(self.page_types.values_list("pk", flat=True))
        return page.content_type_id in self._page_type_ids

    def provider_problems(self) -> dict[str, list[str]]:
        """What the provider policy refuses in the model, fallbacks, API base, key name and
        extra parameters, by field (see :func:`.validation.provider_problems`)."""
        from .validation import provider_problems

        return provider_problems(self)

    def clean(self) -> None:
        super().clean()
        errors: dict[str, list[str]] = {}
        for field, messages in self.provider_problems().items():
            errors.setdefault(field, []).extend(messages)
        for field, messages in self.image_problems().items():
            errors.setdefault(field, []).extend(messages)
        page_action = not self.runs_on_images
        if page_action and self.pk and not getattr(self, "_page_types_checked_by_form", False):
            # A saved action's page types are known: its paths and prompt must fit them, however
            # it is saved (code, fixture, another form). The admin form checks the page types
            # being chosen instead (forms.LLMActionForm), so it sets the flag.
            page_models = [ct.model_class() for ct in self.page_types.all() if ct.model_class()]
            snippet_models = self.get_snippet_models()
            for name, messages in self.validate_for_page_models(
                page_models + snippet_models
            ).items():
                errors.setdefault(name, []).extend(dict.fromkeys(messages))
            for message in self.snippet_type_problems(snippet_models):
                errors.setdefault("snippet_types", []).append(message)
        if self.reduce_prompt:
            from ..templating import TemplateSyntaxError, template_variables

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
        from ..structured import mapping_problems

        if self.output_fields not in (None, "", {}) and page_action:
            errors.setdefault("output_fields", []).extend(mapping_problems(self.output_fields))
        elif not (self.target_field or "").strip() and not self.translates:
            errors.setdefault("target_field", []).append(
                gettext("Enter the field that receives the answer, or map output fields.")
            )
        if self.candidates is not None and not 1 <= self.candidates <= 5:
            errors.setdefault("candidates", []).append(gettext("Offer between 1 and 5 candidates."))
        elif self.candidates and self.candidates > 1 and self.is_structured:
            errors.setdefault("candidates", []).append(
                gettext("An action that fills several fields offers one candidate only.")
            )
        by_form = getattr(self, "_page_types_checked_by_form", False)
        count = self.page_types.count() if self.pk and not by_form and self.has_trigger else None
        count = None if self.runs_on_images else count
        for field, messages in self.trigger_problems(count).items():
            errors.setdefault(field, []).extend(messages)
        errors = {key: value for key, value in errors.items() if value}
        if errors:
            raise ValidationError(errors)

    def validate_for_page_models(self, page_models: list[type]) -> dict[str, list[str]]:
        """Field-specific errors for paths and prompt variables against ``page_models``."""
        from .validation import page_model_problems

        return page_model_problems(self, page_models)
