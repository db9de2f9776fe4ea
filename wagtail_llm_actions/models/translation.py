"""Translation (issue 23 §1): an action's translation settings and the per-segment memory.

A translation action is an :class:`~.actions.LLMAction` with a
:class:`LLMTranslationSettings` row (``action.translation``): model, provider, API key,
budgets, response cache, allow-lists and the interaction log are the action's, as for every
other action; the settings row adds what only translation needs (style, glossary,
do-not-translate terms). :class:`LLMTranslationSegment` remembers, per target page and
segment path, the hash of the source it was translated from and the text the model wrote,
so a re-translation sends only changed segments and never overwrites a person's edit.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from .actions import LLMAction


class LLMTranslationSettings(models.Model):
    """What makes an action a translation action, and how it translates."""

    action = models.OneToOneField(
        LLMAction,
        verbose_name=_("action"),
        on_delete=models.CASCADE,
        related_name="translation",
    )
    style = models.TextField(
        _("style instruction"),
        blank=True,
        help_text=_("How the translation should read, e.g. “Informal, address the reader as du”."),
    )
    glossary = models.TextField(
        _("glossary"),
        blank=True,
        help_text=_(
            "One entry a line: locale: term = translation, e.g. “de: compost bin = Komposter”."
        ),
    )
    do_not_translate = models.TextField(
        _("do not translate"),
        blank=True,
        help_text=_("Terms kept as they are (brand and product names), one a line."),
    )

    class Meta:
        verbose_name = _("translation settings")
        verbose_name_plural = _("translation settings")

    def __str__(self) -> str:
        return str(self.action)

    def save(self, *args, **kwargs) -> None:
        """A glossary with duplicate or malformed entries is refused, however it is saved."""
        self.clean()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        from ..translation.glossary import glossary_problems

        problems = glossary_problems(self.glossary)
        if problems:
            raise ValidationError({"glossary": problems})


class LLMTranslationSegment(models.Model):
    """One segment of a translated page: what it was translated from, and what was written."""

    target_page = models.ForeignKey(
        "wagtailcore.Page",
        verbose_name=_("translated page"),
        on_delete=models.CASCADE,
        related_name="+",
        null=True,
        blank=True,
    )
    #: A translated snippet (no page): its model and id.
    target_type = models.ForeignKey(
        "contenttypes.ContentType",
        verbose_name=_("translated snippet type"),
        on_delete=models.CASCADE,
        related_name="+",
        null=True,
        blank=True,
    )
    target_id = models.CharField(_("translated snippet id"), max_length=255, blank=True)
    path = models.CharField(_("segment"), max_length=500)
    source_hash = models.CharField(_("source hash"), max_length=64)
    machine_text = models.TextField(_("machine translation"), blank=True)
    interaction = models.ForeignKey(
        "wagtail_llm_actions.LLMInteraction",
        verbose_name=_("interaction"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("translated segment")
        verbose_name_plural = _("translated segments")
        constraints = [
            models.UniqueConstraint(
                fields=["target_page", "path"], name="wla_translation_segment_unique"
            ),
            models.UniqueConstraint(
                fields=["target_type", "target_id", "path"],
                condition=models.Q(target_page__isnull=True),
                name="wla_translation_segment_snippet_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.target_page_id or self.target_id}:{self.path}"
