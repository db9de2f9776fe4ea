"""The response cache's rows: answers kept for identical calls (see :mod:`..response_cache`)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class LLMCachedResponse(models.Model):
    """An answer kept for identical calls: the same model, parameters and messages (``key``
    hashes them; the API key is never part of it). Expired rows are deleted by
    ``purge_llm_interactions``."""

    key = models.CharField(_("key"), max_length=64, unique=True)
    model = models.CharField(_("model"), max_length=200)
    #: The answer as the provider gave it (texts, finish reasons, answering model).
    result = models.JSONField(_("answer"), default=dict)
    hits = models.PositiveIntegerField(_("hits"), default=0)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    expires_at = models.DateTimeField(_("expires"), db_index=True)

    class Meta:
        verbose_name = _("cached answer")
        verbose_name_plural = _("cached answers")

    def __str__(self) -> str:
        return f"{self.model} {self.key[:12]}"
