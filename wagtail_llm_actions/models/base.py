"""What several models share: the ordered JSON field and the revision links."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class OrderedJSONField(models.JSONField):
    """A JSON object field that keeps its keys' order on every database.

    PostgreSQL's jsonb does not keep key order, so a non-empty object is stored as a list of
    ``[key, value]`` pairs and read back as a dict in that order. Rows stored as a plain
    object (before this field) read as they are. No JSON key lookups are used on it.
    """

    def deconstruct(self):
        # The path the migrations name it by (it was defined in models.py before the package).
        name, _path, args, kwargs = super().deconstruct()
        return name, "wagtail_llm_actions.models.OrderedJSONField", args, kwargs

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


class RevisionLinks(models.Model):
    """The page revision a run read (``base_revision``) and the one it wrote (``revision``)."""

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

    class Meta:
        abstract = True
