"""Filters of Wagtail's page listings (the explorer, and flat page listings): "Has unreviewed
generated text", "Automatic draft waiting for review" and "Out of date for an action" (stale
for that action: answered by it before, and a bulk job of it would run the page again, by the
one "unchanged" rule of :mod:`.unchanged`).

Wagtail 8 has no hook adding filters to the page explorer: its listings use
``PageFilterSet`` (``GenericPageFilterSet`` in the explorer) or a page viewset's filter set
built on them. :func:`install` adds the filters to those classes (and to every subclass
defined so far or later), once, when the app's hooks load. Each filter costs one or two
queries whatever the number of pages ("stale": five for pages of one type); "stale" renders
each candidate page's messages in Python (no model call), see
:func:`.unchanged.stale_page_ids`.
"""

from __future__ import annotations

import django_filters
from django import forms
from django.utils.translation import gettext_lazy as _

from .models import LLMAction

UNREVIEWED = "llm_unreviewed"
STALE_FOR = "llm_stale_for"
AUTOMATIC_DRAFT = "llm_automatic_draft"


class UnreviewedGeneratedFilter(django_filters.ChoiceFilter):
    """Pages holding a draft an action wrote that no person has reviewed yet."""

    def filter(self, qs, value):
        if value != "true":
            return qs
        from .provenance import unreviewed_page_ids

        return qs.filter(pk__in=unreviewed_page_ids())


class AutomaticDraftFilter(django_filters.ChoiceFilter):
    """Pages whose newest revision is an automatic (trigger) draft not yet published."""

    def filter(self, qs, value):
        if value != "true":
            return qs
        from .moderation import waiting_page_ids

        return qs.filter(pk__in=waiting_page_ids())


class StaleForActionFilter(django_filters.ModelChoiceFilter):
    """Pages the chosen action answered before that a bulk job of it would run again (not
    skip as unchanged): an input changed since its answer was kept, the answer was replaced
    since, or it was never kept nor discarded by a person."""

    def filter(self, qs, value):
        if not value:
            return qs
        from .unchanged import stale_page_ids

        return qs.filter(pk__in=stale_page_ids(value, qs))


def _actions(request=None):
    return LLMAction.objects.filter(enabled=True).order_by("name")


def page_listing_filters() -> dict[str, django_filters.Filter]:
    """The filters, by the name of their query parameter."""
    return {
        UNREVIEWED: UnreviewedGeneratedFilter(
            label=_("Has unreviewed generated text"),
            empty_label=_("Any"),
            choices=[("true", _("Yes"))],
            widget=forms.RadioSelect,
        ),
        AUTOMATIC_DRAFT: AutomaticDraftFilter(
            label=_("Automatic draft waiting for review"),
            empty_label=_("Any"),
            choices=[("true", _("Yes"))],
            widget=forms.RadioSelect,
        ),
        STALE_FOR: StaleForActionFilter(
            label=_("Out of date for an action"),
            queryset=_actions,
            empty_label=_("Any"),
        ),
    }


def install() -> None:
    """Add the filters to Wagtail's page filter sets (idempotent)."""
    from wagtail.admin.views.pages.listing import PageFilterSet

    classes, todo = [], [PageFilterSet]
    while todo:
        cls = todo.pop()
        classes.append(cls)
        todo.extend(cls.__subclasses__())
    for cls in classes:
        for name, filter_ in page_listing_filters().items():
            # declared_filters: subclasses defined later inherit them too.
            cls.declared_filters.setdefault(name, filter_)
            cls.base_filters.setdefault(name, filter_)


__all__ = ["AUTOMATIC_DRAFT", "STALE_FOR", "UNREVIEWED", "install", "page_listing_filters"]
