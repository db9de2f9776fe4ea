"""The "LLM interactions" report: every model call, filterable, with totals, chart and export.

Built on Wagtail's ``ReportView``. The number of queries does not depend on the number of
rows: rows come with their page and user (``select_related``), links are built from ids, and
the totals and the chart come from one grouped query (calls, tokens, cost and latency per day)
that reads only the narrow covering index ``llmi_report_cover_idx``. Search is limited to what
indexes can answer (see :func:`search_q`), and a page of search results is picked from the
covering index before its rows are read (:func:`page_by_index`). Exports stream rows with
``QuerySet.iterator()`` instead of loading the filtered set into memory; XLSX is written by
:mod:`.xlsx` as it goes.
"""

from __future__ import annotations

import csv
import datetime
from collections import OrderedDict
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import connections, transaction
from django.db.models import Avg, Count, Q, QuerySet, Sum
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.translation import gettext_lazy as _
from wagtail.admin.menu import MenuItem
from wagtail.admin.utils import get_user_display_name
from wagtail.admin.views.mixins import Echo, ExcelDateFormatter
from wagtail.admin.views.reports import ReportView
from wagtail.models import Page

from .charts import MAX_DAYS, Day, day_of, render_calls_and_cost, series_from_days
from .conf import INTERACTIONS_LABEL, feature_name, with_feature
from .filters import InteractionFilterSet, recorded_values
from .formatting import export_cost, export_cost_number, format_cost_total
from .jobs.control import UNPRICED
from .models import InteractionOutcome, InteractionStatus, InteractionTrigger, LLMInteraction
from .permissions import (
    can_view_all,
    may_use_report,
    page_edit_checker,
    per_row,
    visible_interactions,
)
from .xlsx import stream_xlsx

EXPORT_CHUNK_SIZE = 2000


class StreamedQuerySet:
    """Iterates a queryset in chunks (``.iterator()``) so an export never holds all rows."""

    def __init__(self, queryset: QuerySet, chunk_size: int = EXPORT_CHUNK_SIZE) -> None:
        self.queryset = queryset
        self.model = queryset.model
        self.chunk_size = chunk_size

    def __iter__(self):
        connection = connections[self.queryset.db]
        if connection.vendor != "postgresql" or connection.in_atomic_block:
            yield from self.queryset.iterator(chunk_size=self.chunk_size)
            return
        # Outside a transaction Django declares the server-side cursor WITH HOLD, and
        # PostgreSQL then runs the whole query (sorting every row) at the COMMIT that follows
        # DECLARE, before the first row is sent. In a read-only transaction the cursor streams.
        with transaction.atomic(using=self.queryset.db):
            yield from self.queryset.iterator(chunk_size=self.chunk_size)


#: A cell starting with one of these is a formula to a spreadsheet (OWASP "CSV injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value):
    """``value`` for a CSV cell: text a spreadsheet would run as a formula gets a leading
    single quote (OWASP's advice), and a zero amount is written as ``0``, not ``0E-8``."""
    if isinstance(value, str):
        return f"'{value}" if value.startswith(FORMULA_PREFIXES) else value
    if isinstance(value, Decimal) and not value:
        return 0
    return value


def interaction_totals(queryset: QuerySet) -> dict:
    """Calls, errors, tokens, cost and average latency of ``queryset`` in one query."""
    totals = queryset.order_by().aggregate(
        calls=Count("pk"),
        errors=Count("pk", filter=Q(status=InteractionStatus.ERROR)),
        unpriced=Count("pk", filter=UNPRICED),
        prompt_tokens=Sum("prompt_tokens"),
        completion_tokens=Sum("completion_tokens"),
        total_tokens=Sum("total_tokens"),
        cost=Sum("cost"),
        avg_latency_ms=Avg("latency_ms"),
    )
    return _finish_totals(totals)


def totals_and_series(queryset: QuerySet, max_days: int = MAX_DAYS) -> tuple[dict, list[Day]]:
    """The totals of :func:`interaction_totals` and the chart's days, in one grouped query.

    One row per day with activity (a few hundred at most), summed here for the totals.
    """
    rows = list(
        queryset.order_by()
        .annotate(day=day_of(queryset))
        .values("day")
        .annotate(
            # COUNT(*) and a column the index holds: each column read costs per row
            calls=Count("*"),
            errors=Count("status", filter=Q(status=InteractionStatus.ERROR)),
            unpriced=Count("status", filter=UNPRICED),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            total_tokens=Sum("total_tokens"),
            cost=Sum("cost"),
            latency_sum=Sum("latency_ms"),
            latency_count=Count("latency_ms"),
        )
        .order_by("-day")
    )
    totals: dict = {"calls": 0, "errors": 0, "cost": Decimal(0)}
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        totals[name] = sum(row[name] or 0 for row in rows)
    totals["calls"] = sum(row["calls"] for row in rows)
    totals["errors"] = sum(row["errors"] for row in rows)
    totals["unpriced"] = sum(row["unpriced"] for row in rows)
    totals["cost"] = sum((Decimal(row["cost"] or 0) for row in rows), Decimal(0))
    latency_count = sum(row["latency_count"] for row in rows)
    totals["avg_latency_ms"] = (
        sum(row["latency_sum"] or 0 for row in rows) / latency_count if latency_count else None
    )
    return _finish_totals(totals), series_from_days(rows, max_days)


def page_by_index(page: QuerySet) -> QuerySet:
    """The rows of ``page`` (a slice of the report's queryset), found in two steps.

    The slice's ids come from the report's covering index, read in its own order (day, then
    time: the listing's newest-first order) with the filter tested on the index's columns;
    then only those rows are read from the table. A search that matches few rows would
    otherwise read the wide rows of the whole table, newest first, to find a page of them.
    """
    query = page.query
    if not query.is_sliced or not connections[page.db].features.allow_sliced_subqueries_with_in:
        return page
    unsliced = page._chain()
    unsliced.query.clear_limits()
    ids = unsliced.order_by(day_of(unsliced).desc(), "-created_at", "-pk").values("pk")[
        query.low_mark : query.high_mark
    ]
    return (
        LLMInteraction.objects.using(page.db)
        .select_related("page", "user")
        .filter(pk__in=ids)
        .order_by(*query.order_by)
    )


def _finish_totals(totals: dict) -> dict:
    calls = totals["calls"] or 0
    totals["prompt_tokens"] = totals["prompt_tokens"] or 0
    totals["completion_tokens"] = totals["completion_tokens"] or 0
    totals["total_tokens"] = totals["total_tokens"] or 0
    totals["cost"] = Decimal(totals["cost"] or 0)
    totals["unpriced"] = totals.get("unpriced") or 0
    # unknown prices are named, never added as zero: "$1.20 + 14 calls at unknown price"
    totals["cost_display"] = format_cost_total(totals["cost"], totals["unpriced"])
    totals["successes"] = calls - totals["errors"]
    totals["error_rate"] = (totals["errors"] / calls * 100) if calls else 0.0
    totals["success_rate"] = (100.0 - totals["error_rate"]) if calls else 0.0
    avg = totals["avg_latency_ms"]
    totals["avg_latency_ms"] = round(avg) if avg is not None else None
    return totals


class InteractionReportView(ReportView):
    page_title = INTERACTIONS_LABEL
    header_icon = "cogs"
    template_name = "wagtail_llm_actions/reports/interactions.html"
    results_template_name = "wagtail_llm_actions/reports/interactions_results.html"
    filterset_class = InteractionFilterSet
    index_url_name = "wagtail_llm_actions_report:index"
    index_results_url_name = "wagtail_llm_actions_report:results"
    is_searchable = True
    search_backend_name = None  # no search index to keep: see search_q()
    search_fields = ["action_name", "model", "page__title", "error_message"]
    default_ordering = ("-created_at", "-pk")
    paginate_by = 50
    verbose_name = with_feature(_("%(feature)s interaction"))
    verbose_name_plural = INTERACTIONS_LABEL
    export_filename = "llm-interactions"

    list_export = [
        "id",
        "created_at",
        "action_name",
        "page_id",
        "page_title",
        "user",
        "trigger",
        "model",
        "status",
        "outcome",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cost",
        "latency_ms",
        "finish_reason",
        "answer_truncated",
        "error_code",
        "error_message",
    ]
    export_headings = {
        "id": _("ID"),
        "created_at": _("Time"),
        "action_name": _("Action"),
        "page_id": _("Page ID"),
        "page_title": _("Page"),
        "user": _("User"),
        "trigger": _("Started from"),
        "model": _("Model"),
        "status": _("Status"),
        "outcome": _("Outcome"),
        "prompt_tokens": _("Tokens in"),
        "completion_tokens": _("Tokens out"),
        "total_tokens": _("Total tokens"),
        "cost": _("Cost (USD)"),
        "latency_ms": _("Latency (ms)"),
        "finish_reason": _("Finish reason"),
        "answer_truncated": _("Answer cut off"),
        "error_code": _("Error code"),
        "error_message": _("Error"),
    }

    #: Costs are exact, in plain notation ("0", "0.00042"; never "0E-8"): text in CSV, a
    #: number in XLSX.
    custom_field_preprocess = {
        "cost": {
            "csv": export_cost,
            "xlsx": export_cost_number,
        }
    }

    def get_filename(self):
        return f"{self.export_filename}-{datetime.date.today().isoformat()}"

    # -- queryset ------------------------------------------------------------------------

    def get_base_queryset(self):
        queryset = LLMInteraction.objects.select_related("page", "user")
        return visible_interactions(self.request.user, queryset)

    def get_valid_orderings(self):
        return [self.default_ordering]

    def order_queryset(self, queryset):
        return queryset.order_by(*self.default_ordering)

    def search_queryset(self, queryset):
        if not self.is_searching:
            return queryset
        # the model filter's choices are the recorded models: no second query for them
        filters = self.filters
        models = None
        if filters is not None and "model" in filters.filters:
            models = [value for value, _label in filters.filters["model"].extra["choices"]]
        return queryset.filter(
            per_row(search_q(self.search_query, using=queryset.db, models=models))
        )

    def get_filterset_kwargs(self):
        kwargs = super().get_filterset_kwargs()
        kwargs["queryset"] = visible_interactions(self.request.user)
        return kwargs

    def get_filtered_queryset(self):
        # BaseListingView.get_queryset() already filters and searches
        return self.get_queryset()

    @cached_property
    def filtered_queryset(self):
        return self.get_filtered_queryset()

    # -- rendering -----------------------------------------------------------------------

    def get(self, request, *args, **kwargs):
        if self.is_export:
            # Skip the listing context (it would count and materialise every row).
            return self.as_spreadsheet(self.filtered_queryset, request.GET.get("export"))
        self.object_list = self.filtered_queryset
        context = self.get_context_data()
        context["object_list"] = self.decorate_paginated_queryset(context["object_list"])
        return self.render_to_response(context)

    def decorate_paginated_queryset(self, object_list):
        rows = list(object_list)
        may_edit = page_edit_checker(self.request.user)
        for row in rows:
            row.detail_url = reverse("wagtail_llm_actions_report:detail", args=[row.pk])
            row.page_edit_url = (
                reverse("wagtailadmin_pages:edit", args=[row.page_id])
                if row.page_id and may_edit(row.page)
                else ""
            )
            row.action_url = (
                reverse("wagtail_llm_actions_report:action", args=[row.action_id])
                if row.action_id
                else ""
            )
            row.user_display = get_user_display_name(row.user) if row.user_id else ""
        from .snippets import name_rows

        name_rows(rows, self.request.user)  # rows that ran on a snippet name it
        return rows

    @cached_property
    def totals_and_series(self) -> tuple[dict, list[Day]]:
        return totals_and_series(self.filtered_queryset)

    @cached_property
    def totals(self) -> dict:
        return self.totals_and_series[0]

    def get_paginator(self, queryset, *args, **kwargs):
        paginator = super().get_paginator(queryset, *args, **kwargs)
        # the totals query already counted the filtered rows: no second COUNT(*) scan
        paginator.count = self.totals["calls"]
        return paginator

    def paginate_queryset(self, queryset, page_size):
        paginator, page, object_list, is_paginated = super().paginate_queryset(queryset, page_size)
        if self.is_searching and isinstance(object_list, QuerySet):
            page.object_list = object_list = page_by_index(object_list)
        return paginator, page, object_list, is_paginated

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["totals"] = self.totals
        series = self.totals_and_series[1]
        context["chart"] = render_calls_and_cost(series)
        context["chart_days"] = len(series)
        context["sees_all"] = can_view_all(self.request.user)
        context["feature_name"] = feature_name()
        from .budget_panels import spend_against_budgets

        context["budget_rows"] = spend_against_budgets(self.request.user)
        return context

    # -- export --------------------------------------------------------------------------

    @cached_property
    def _labels(self) -> dict[str, dict[str, str]]:
        """Display labels of the choice columns, translated once per export."""
        return {
            "trigger": {k: str(v) for k, v in InteractionTrigger.choices},
            "status": {k: str(v) for k, v in InteractionStatus.choices},
            "outcome": {k: str(v) for k, v in InteractionOutcome.choices if k},
        }

    @cached_property
    def _user_fields(self) -> list[str]:
        User = get_user_model()
        names = {f.name for f in User._meta.get_fields()}
        return [f for f in ("first_name", "last_name") if f in names] + [User.USERNAME_FIELD]

    def export_rows(self, queryset: QuerySet) -> StreamedQuerySet:
        """Plain rows (``values()``: no model instances) streamed in chunks."""
        columns = [f for f in self.list_export if f not in ("page_title", "user")]
        user_columns = [f"user__{f}" for f in self._user_fields]
        return StreamedQuerySet(queryset.values(*columns, "page__title", "user_id", *user_columns))

    def row_values(self, item) -> list:
        """One exported row's values, in ``list_export`` order (``item`` from ``values()``)."""
        labels = self._labels
        user = ""
        if item["user_id"]:
            *names, username = (item.get(f"user__{f}") or "" for f in self._user_fields)
            user = " ".join(n for n in names if n).strip() or str(username)
        values = {
            "page_title": item["page__title"] or "",
            "user": user,
            "trigger": labels["trigger"].get(item["trigger"], item["trigger"]),
            "status": labels["status"].get(item["status"], item["status"]),
            "outcome": labels["outcome"].get(item["outcome"], ""),
        }
        return [values[field] if field in values else item[field] for field in self.list_export]

    def to_row_dict(self, item):
        return OrderedDict(zip(self.list_export, self.row_values(item), strict=True))

    def get_preprocess_function(self, field, value, export_format):
        # Wagtail looks the function up for every cell; the answer depends only on these.
        key = (field, type(value), export_format)
        cache = self.__dict__.setdefault("_preprocess_cache", {})
        if key not in cache:
            cache[key] = super().get_preprocess_function(field, value, export_format)
        return cache[key]

    def write_csv_row(self, writer, row_dict):
        """One CSV line; text that a spreadsheet would run as a formula is neutralised."""
        return writer.writerow(
            {
                field: csv_safe(self.preprocess_field_value(field, value, self.FORMAT_CSV))
                for field, value in row_dict.items()
            }
        )

    def stream_csv(self, queryset):
        """Wagtail's CSV (same headings, cells and quoting), sent in blocks of 500 rows.

        Wagtail preprocesses every cell (for CSV: ``force_str(strings_only=True)``, which
        leaves the text, numbers, dates and None that ``values()`` gives as they are) and
        looks its function up each time: at 100,000 rows that was most of the export's time.
        Here the columns with their own function (cost) are looked up once, other values go
        through Wagtail's rules only if they are of another type (a list, say), and the rows
        are written as lists rather than dicts. The bytes are the same (see the tests).
        """
        writer = csv.writer(Echo())
        fields = self.list_export
        own = {
            field: function
            for field in fields
            if (function := self.custom_field_preprocess.get(field, {}).get(self.FORMAT_CSV))
        }
        plain = (str, int, float, Decimal, datetime.date, datetime.time, type(None))
        block = [writer.writerow([self.get_heading(queryset, field) for field in fields])]
        for item in queryset:
            cells = []
            for field, value in zip(fields, self.row_values(item), strict=True):
                if field in own:
                    value = own[field](value)
                elif not isinstance(value, plain):
                    value = self.preprocess_field_value(field, value, self.FORMAT_CSV)
                cells.append(csv_safe(value))
            block.append(writer.writerow(cells))
            if len(block) >= 500:
                yield b"".join(block)
                block = []
        if block:
            yield b"".join(block)

    def write_csv_response(self, queryset):
        return super().write_csv_response(self.export_rows(queryset))

    def write_xlsx_response(self, queryset):
        # Streamed as it is written (see xlsx.py): memory stays flat with row count.
        rows = self.export_rows(queryset)
        stream = stream_xlsx(
            (self.get_heading(queryset, field) for field in self.list_export),
            (self.row_values(item) for item in rows),
            date_format=ExcelDateFormatter().get(),
        )
        response = StreamingHttpResponse(
            stream,
            content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        )
        response["Content-Disposition"] = f'attachment; filename="{self.get_filename()}.xlsx"'
        return response


def search_q(query: str, using: str = "default", models: list[str] | None = None) -> Q:
    """Rows whose action name, model, page title or error text contains ``query``.

    The same matches as ``icontains`` on those four columns, found without scanning the wide
    rows: action names and models among their few distinct values (loose index scans, compared
    here; ``models`` if the caller has them already), pages by title in the page table, and
    error texts among the rows that have one, through the partial index of migration 0011 (on
    PostgreSQL a ``pg_trgm`` index of the ``UPPER()`` that ``icontains`` compares, when the
    extension exists).
    """
    needle = query.casefold()
    condition = Q(page__in=Page.objects.filter(title__icontains=query).values("pk"))
    condition |= Q(
        pk__in=LLMInteraction.objects.exclude(error_message="")  # the index's condition
        .filter(error_message__icontains=query)
        .values("pk")
    )
    if models is None:
        models = recorded_values("model", using=using)
    for field, recorded in (
        ("model", models),
        ("action_name", recorded_values("action_name", using=using)),
    ):
        values = [v for v in recorded if needle in v.casefold()]
        if values:
            condition |= Q(**{f"{field}__in": values})
    return condition


class InteractionReportMenuItem(MenuItem):
    """The report's entry in the Reports menu, shown to users who may see interactions."""

    def is_shown(self, request):
        return may_use_report(request.user)
