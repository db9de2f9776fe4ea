"""Pipelines: ordered steps run on a page as one run."""

from __future__ import annotations

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from modelcluster.fields import ParentalKey
from modelcluster.models import ClusterableModel
from wagtail.models import Orderable

from .actions import LLMAction, OutputMode
from .prompts import LLMPrompt


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
        verbose_name = _("pipeline")
        verbose_name_plural = _("pipelines")

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
        from ..templating import TemplateSyntaxError, parse_template

        try:
            parse_template(self.prompt_template)
        except TemplateSyntaxError as e:
            errors.setdefault("prompt_template", []).append(str(e))
        errors = {key: value for key, value in errors.items() if value}
        if errors:
            raise ValidationError(errors)
