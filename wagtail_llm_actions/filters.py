"""Filters of the interaction report: date range, action, model, status, outcome, user, page.

Every choice filter offers "All" as its empty choice (never Django's "---------").
"""

from __future__ import annotations

import django_filters
from django import forms
from django.contrib.auth import get_user_model
from django.db import connections
from django.db.models import Exists, OuterRef
from django.utils.translation import gettext_lazy as _
from wagtail.admin.filters import (
    ContentTypeFilter,
    DateRangePickerWidget,
    WagtailFilterSet,
)
from wagtail.admin.utils import get_user_display_name
from wagtail.models import Locale, Site, get_page_content_types

from .models import (
    InteractionOutcome,
    InteractionStatus,
    InteractionTrigger,
    LLMAction,
    LLMInteraction,
    LLMJob,
)

#: The outcome filter's value for rows whose outcome is not known (stored as "").
UNKNOWN_OUTCOME = "unknown"


def outcome_choices():
    return [(value or UNKNOWN_OUTCOME, label) for value, label in InteractionOutcome.choices]


def recorded_values(field: str, using: str = "default") -> list[str]:
    """The distinct non-empty values of an indexed ``LLMInteraction`` column, sorted.

    A "loose index scan": one index seek per distinct value (a recursive query, same SQL on
    SQLite and PostgreSQL), so a few models or action names cost a few milliseconds however
    many rows there are. ``field`` must lead an index (``model``, ``action_name``).
    """
    connection = connections[using]
    quote = connection.ops.quote_name
    table = quote(LLMInteraction._meta.db_table)
    column = quote(LLMInteraction._meta.get_field(field).column)
    sql = (
        f"WITH RECURSIVE v(x) AS ("  # noqa: S608  # names from the model, no user input
        f"SELECT MIN({column}) FROM {table} WHERE {column} > %s "
        f"UNION ALL SELECT (SELECT MIN({column}) FROM {table} WHERE {column} > v.x) "
        f"FROM v WHERE v.x IS NOT NULL"
        f") SELECT x FROM v WHERE x IS NOT NULL"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [""])
        return sorted(row[0] for row in cursor.fetchall())


class UserChoiceField(django_filters.fields.ModelChoiceField):
    def label_from_instance(self, obj):
        return get_user_display_name(obj)


class UserFilter(django_filters.ModelChoiceFilter):
    field_class = UserChoiceField


class InteractionFilterSet(WagtailFilterSet):
    created_at = django_filters.DateFromToRangeFilter(label=_("Date"), widget=DateRangePickerWidget)
    action = django_filters.ModelChoiceFilter(
        label=_("Action"), queryset=LLMAction.objects.order_by("name"), empty_label=_("All")
    )
    model = django_filters.ChoiceFilter(label=_("Model"), empty_label=_("All"))
    status = django_filters.ChoiceFilter(
        label=_("Status"),
        choices=InteractionStatus.choices,
        empty_label=_("All"),
        widget=forms.RadioSelect,
    )
    outcome = django_filters.ChoiceFilter(
        label=_("Outcome"),
        choices=outcome_choices,
        empty_label=_("All"),
        method="filter_outcome",
    )
    trigger = django_filters.ChoiceFilter(
        label=_("Started from"), choices=InteractionTrigger.choices, empty_label=_("All")
    )
    user = UserFilter(
        label=_("User"), queryset=get_user_model().objects.none(), empty_label=_("All")
    )
    content_type = ContentTypeFilter(
        label=_("Page type"),
        queryset=lambda request: get_page_content_types(include_base_page_type=False),
        empty_label=_("All"),
    )
    cached = django_filters.ChoiceFilter(
        label=_("From the response cache"),
        choices=[("yes", _("Yes")), ("no", _("No"))],
        empty_label=_("All"),
        method="filter_cached",
        widget=forms.RadioSelect,
    )
    site = django_filters.ChoiceFilter(label=_("Site"), empty_label=_("All"), method="filter_site")
    page_locale = django_filters.ChoiceFilter(
        label=_("Locale"), empty_label=_("All"), method="filter_locale"
    )

    class Meta:
        model = LLMInteraction
        fields = []

    def __init__(self, data=None, queryset=None, *, request=None, prefix=None):
        super().__init__(data, queryset, request=request, prefix=prefix)
        base = queryset if queryset is not None else LLMInteraction.objects.all()
        base = base.order_by()

        # Every model ever recorded, not only those of the rows this user sees: a DISTINCT
        # over the visible rows scanned them all on each page view. Model names are not
        # secret, and one without visible rows simply filters to an empty list.
        self.filters["model"].extra["choices"] = [
            (m, m) for m in recorded_values("model", using=base.db)
        ]

        User = get_user_model()
        # one EXISTS per user on the (user, created_at) index, not a scan of every row
        self.filters["user"].queryset = User.objects.filter(
            Exists(base.filter(user=OuterRef("pk")))
        ).order_by(User.USERNAME_FIELD)

        sites = list(Site.objects.select_related("root_page").order_by("hostname", "port"))
        if len(sites) > 1:
            self.filters["site"].extra["choices"] = [
                (site.root_page.path, str(site)) for site in sites
            ]
        else:
            del self.filters["site"]

        locales = list(Locale.objects.order_by("language_code"))
        if len(locales) > 1:
            self.filters["page_locale"].extra["choices"] = [
                (locale.language_code, locale.get_display_name() or locale.language_code)
                for locale in locales
            ]
        else:
            del self.filters["page_locale"]

    def filter_outcome(self, queryset, name, value):
        if not value:
            return queryset
        return queryset.filter(outcome="" if value == UNKNOWN_OUTCOME else value)

    def filter_cached(self, queryset, name, value):
        if value not in ("yes", "no"):
            return queryset
        return queryset.filter(cached=value == "yes")

    def filter_site(self, queryset, name, value):
        if not value:
            return queryset
        return queryset.filter(page__path__startswith=value)

    def filter_locale(self, queryset, name, value):
        if not value:
            return queryset
        return queryset.filter(page__locale__language_code=value)


def job_status_choices():
    """The statuses a job's tag shows: its own, and "Failed"/"Partly failed" when finished
    with failed pages (:mod:`job_counts`)."""
    from .job_counts import DISPLAY_LABELS, FAILED, PARTLY_FAILED, PAUSED
    from .models import JobStatus

    return [
        *JobStatus.choices,
        (PAUSED, DISPLAY_LABELS[PAUSED]),
        (PARTLY_FAILED, DISPLAY_LABELS[PARTLY_FAILED]),
        (FAILED, DISPLAY_LABELS[FAILED]),
    ]


class JobFilterSet(WagtailFilterSet):
    """The jobs listing's filters: status as shown, where it started, who started it, when.

    The queryset must carry the listing's ``n_failed`` and ``n_succeeded`` annotations.
    """

    status = django_filters.ChoiceFilter(
        label=_("Status"),
        choices=job_status_choices,
        empty_label=_("All"),
        method="filter_status",
        widget=forms.RadioSelect,
    )
    kind = django_filters.ChoiceFilter(label=_("Started from"), empty_label=_("All"))
    user = UserFilter(
        label=_("Started by"), queryset=get_user_model().objects.none(), empty_label=_("All")
    )
    created_at = django_filters.DateFromToRangeFilter(
        label=_("Created"), widget=DateRangePickerWidget
    )

    class Meta:
        model = LLMJob
        fields: list[str] = []

    def __init__(self, *args, user_queryset=None, **kwargs):
        from .models import JobKind

        super().__init__(*args, **kwargs)
        self.filters["kind"].extra["choices"] = JobKind.choices
        if user_queryset is not None:
            self.filters["user"].queryset = user_queryset

    def filter_status(self, queryset, name, value):
        from .job_counts import FAILED, PARTLY_FAILED, PAUSED
        from .models import JobStatus

        if value == PAUSED:  # open, paused by a budget (jobs.pauses)
            return queryset.filter(
                status__in=[JobStatus.QUEUED, JobStatus.RUNNING], options__has_key="paused"
            )
        if value in (JobStatus.QUEUED, JobStatus.RUNNING):
            return queryset.filter(status=value).exclude(options__has_key="paused")
        completed = queryset.filter(status=JobStatus.COMPLETED)
        if value == FAILED:
            return completed.filter(n_failed__gt=0, n_succeeded=0)
        if value == PARTLY_FAILED:
            return completed.filter(n_failed__gt=0, n_succeeded__gt=0)
        if value == JobStatus.COMPLETED:
            return completed.filter(n_failed=0)
        return queryset.filter(status=value)
