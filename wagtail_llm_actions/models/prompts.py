"""Prompts: reusable templates with a revision history."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _
from wagtail.models import RevisionMixin
from wagtail.search import index


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
        verbose_name = _("prompt")
        verbose_name_plural = _("prompts")

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        from ..templating import TemplateSyntaxError, parse_template

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

        from .. import db

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
        from ..templating import TemplateSyntaxError, template_variables

        try:
            return template_variables(self.template or "")
        except TemplateSyntaxError:
            return []
