"""Settings a site's administrators change in the admin (Settings → Bulk runs), per site.

:class:`BulkRunSettings` is a Wagtail site setting (``wagtail.contrib.settings``): each
field left at "As configured" falls back to the Django setting of the same name
(``WAGTAIL_LLM_ACTIONS["REQUIRE_CANARY"]``), so a site that never opens the screen behaves as
configured, and one without ``wagtail.contrib.settings`` installed too.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _
from wagtail.contrib.settings.models import BaseSiteSetting


class CanaryRule(models.TextChoices):
    CONFIGURED = "", _("As configured for the whole installation")
    REQUIRED = "required", _("Required: a changed action needs a reviewed sample first")
    NOT_REQUIRED = "not_required", _("Not required")


class BulkRunSettings(BaseSiteSetting):
    require_canary = models.CharField(
        _("sample before a bulk run"),
        max_length=20,
        blank=True,
        default=CanaryRule.CONFIGURED,
        choices=CanaryRule.choices,
        help_text=_(
            "Whether a bulk run of an action changed since its last bulk run waits until the "
            "action was tried on a sample of pages (a canary) and each of its drafts was "
            "accepted or rejected."
        ),
    )

    class Meta:
        verbose_name = _("bulk runs")
        verbose_name_plural = _("bulk runs")
