"""What an action that runs on snippets sets (issue 23 §2): the snippet models it runs on,
and the opt-in to write snippets that keep no revisions directly."""

from __future__ import annotations

from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils.text import capfirst
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _


class SnippetTargetFields(models.Model):
    """An action's snippet types and direct-write opt-in, and their checks."""

    snippet_types = models.ManyToManyField(
        ContentType,
        verbose_name=_("snippet types"),
        related_name="+",
        blank=True,
        help_text=_(
            "The snippet models this action can run on. Answers are saved as a new revision "
            "of snippets that keep revisions; others need “write snippets directly”."
        ),
    )
    writes_directly = models.BooleanField(
        _("write snippets directly"),
        default=False,
        help_text=_(
            "Snippets that keep no revisions get the answer written into the snippet itself "
            "(it goes live at once). Each write is recorded and can be undone from the report."
        ),
    )

    class Meta:
        abstract = True

    def get_snippet_models(self) -> list[type]:
        """Snippet models this action applies to (cached per instance)."""
        if not hasattr(self, "_snippet_models"):
            self._snippet_models = [
                ct.model_class() for ct in self.snippet_types.all() if ct.model_class()
            ]
        return self._snippet_models

    def applies_to_snippet(self, model: type) -> bool:
        """Whether snippets of ``model`` are among the action's snippet types."""
        if self.runs_on_images or self.pk is None:
            return False
        concrete = model._meta.concrete_model
        return any(m._meta.concrete_model is concrete for m in self.get_snippet_models())

    def snippet_type_problems(self, snippet_models: list[type]) -> list[str]:
        """Snippet models the action cannot write to: no revisions, and no direct writes."""
        from ..snippets import keeps_revisions

        if self.writes_directly:
            return []
        return [
            gettext(
                "%(model)s snippets keep no revisions, so an answer can only be written into "
                "them directly: tick “write snippets directly” or remove them."
            )
            % {"model": capfirst(model._meta.verbose_name)}
            for model in snippet_models
            if not keeps_revisions(model)
        ]
