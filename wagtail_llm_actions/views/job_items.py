"""The pages of one job on its progress page: a sortable, filterable, paginated Wagtail
table that the live page swaps in at each poll (see :class:`JobItemsListing`)."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db.models import F
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from wagtail.admin.ui.tables import (
    Column,
    StatusTagColumn,
    Table,
    TitleColumn,
)

from ..formatting import format_number
from ..lazy import lazy_module
from ..models import ItemStatus, LLMJob
from ..permissions import explorable_pages
from .jobs import ITEMS_PER_PAGE, interaction_url, job_url

jobs = lazy_module("wagtail_llm_actions.jobs")  # imported on the first request


class JobItemTable(Table):
    def get_row_attrs(self, instance):
        attrs = {**super().get_row_attrs(instance), "data-llm-item-status": instance.status}
        if getattr(instance, "locale_label", None):
            attrs["data-llm-item-locale"] = (instance.payload or {}).get("locale", "")
        return attrs


class PageTitleColumn(TitleColumn):
    """The page's title, linked to its editor when the user may see it."""

    def get_value(self, instance):
        return instance.row_title


class DetailsColumn(Column):
    cell_template_name = "wagtail_llm_actions/jobs/_details_cell.html"

    def get_value(self, instance):
        return instance


#: How a job's pages may be sorted (``?ordering=``), and the database order for each.
ITEM_ORDERINGS = {
    "pk": ("pk",),
    "title": ("page__draft_title", "pk"),  # the title shown
    "status": ("status", "pk"),
    "attempts": ("attempts", "pk"),
    "updated_at": ("updated_at", "pk"),
}


class JobItemsListing:
    """A job's pages as Wagtail's listing table, with status chips and pagination.

    The job page renders it, and the status endpoint renders it again for the same query
    (``?status=``, ``?ordering=``, ``?p=``) so that rows, chips, cards and bar update
    together while the job runs.
    """

    template_name = "wagtail_llm_actions/jobs/_items.html"

    def __init__(self, request, job: LLMJob, progress: jobs.Progress):
        self.request = request
        self.job = job
        self.progress = progress

    def visible_page_ids(self, page_ids: list[int | None]) -> set[int]:
        """Those of ``page_ids`` the user can see in the admin (one query): titles shown."""
        ids = {pk for pk in page_ids if pk}
        if self.request.user.is_superuser:
            return ids
        return set(
            explorable_pages(self.request.user).filter(pk__in=ids).values_list("pk", flat=True)
        )

    def ordering(self) -> str:
        value = self.request.GET.get("ordering", "pk")
        return value if value.lstrip("-") in ITEM_ORDERINGS else "pk"

    def status_filter(self) -> str:
        value = self.request.GET.get("status", "")
        return value if value in ItemStatus.values else ""

    def get_context(self) -> dict:
        job, progress = self.job, self.progress
        ordering = self.ordering()
        status_filter = self.status_filter()
        fields = ITEM_ORDERINGS[ordering.lstrip("-")]
        if ordering.startswith("-"):
            fields = tuple(f"-{f}" for f in fields)
        items = (
            job.items.select_related("page")
            .annotate(from_cache=F("interaction__cached"))
            .order_by(*fields)
        )
        if status_filter:
            items = items.filter(status=status_filter)
        # the chips' counts are the cards' counts: no second count of the filtered pages
        count = progress.count(status_filter) if status_filter else progress.total
        paginator = Paginator(items, ITEMS_PER_PAGE)
        paginator.count = count
        page = paginator.get_page(self.request.GET.get("p"))
        visible = self.visible_page_ids([item.page_id for item in page.object_list])
        for item in page.object_list:
            shown = bool(item.page and item.page_id in visible)
            item.row_title = (
                (item.page.draft_title if shown else _("Not available"))
                if item.page
                else _("(deleted page)")
            )
            item.edit_url = reverse("wagtailadmin_pages:edit", args=[item.page_id]) if shown else ""
            if item.target_id and (job.options or {}).get("targets") == "snippets":
                model = item.target_type.model_class() if item.target_type_id else None
                item.row_title = _("%(model)s %(id)s") % {
                    "model": capfirst(model._meta.verbose_name) if model else "",
                    "id": item.target_id,
                }
                item.edit_url = ""
            elif item.target_id:  # an image: its id, linked to its edit view
                item.row_title = _("Image %(id)s") % {"id": item.target_id}
                item.edit_url = reverse("wagtailimages:edit", args=[item.target_id])
            item.interaction_url = interaction_url(item.interaction_id)
            item.skip_label = jobs.skip_reason_label(item.skip_reason) if item.skip_reason else ""
        if (job.options or {}).get("locales"):  # a translation job: each item's locale
            from ..jobs.translating import item_locale, locale_labels

            labels = locale_labels(job.options["locales"])
            for item in page.object_list:
                item.locale_label = labels.get(item_locale(item), item_locale(item))
                target = (item.result or {}).get("page_id")
                if item.edit_url and target:  # the draft is the translation's
                    item.review_url = reverse("wagtailadmin_pages:edit", args=[target])
                elif target and item.target_type_id:  # a snippet's translation
                    item.edit_url = self.snippet_edit_url(item.target_type, target)
        base_url = job_url(job.pk)
        table = self.table(page.object_list, base_url, ordering)
        chips = self.chips(status_filter)
        return {
            "job": job,
            "table": table,
            "items": page,
            "filters": chips,
            "status_filter": status_filter,
            "ordering": ordering,
            "base_url": base_url,
            "request": self.request,
        }

    def snippet_edit_url(self, content_type, pk) -> str:
        """The editor of the snippet ``pk`` ("" if deleted or the user may not edit it)."""
        from wagtail.admin.admin_url_finder import AdminURLFinder

        model = content_type.model_class()
        obj = model._default_manager.filter(pk=pk).first() if model is not None else None
        return (AdminURLFinder(self.request.user).get_edit_url(obj) or "") if obj else ""

    def table(self, object_list, base_url: str, ordering: str) -> Table:
        """The page of items as Wagtail's listing table (sortable columns, status tags)."""
        locale = []
        if (self.job.options or {}).get("locales"):
            locale = [Column("locale", label=_("Locale"), accessor="locale_label")]
        return JobItemTable(
            [
                PageTitleColumn(
                    "title",
                    label=_("Page"),
                    get_url=lambda item: item.edit_url or None,
                    sort_key="title",
                ),
                *locale,
                StatusTagColumn(
                    "status",
                    label=_("Status"),
                    accessor="get_status_display",
                    primary=lambda item: item.status == ItemStatus.SUCCEEDED,
                    sort_key="status",
                ),
                Column(
                    "attempts",
                    label=_("Attempts"),
                    accessor=lambda item: format_number(item.attempts),
                    sort_key="attempts",
                ),
                DetailsColumn("details", label=_("Details")),
            ],
            object_list,
            base_url=base_url,
            ordering=ordering,
            attrs={"data-llm-job-items": True},
        )

    def chips(self, status_filter: str) -> list[dict]:
        """The status filter buttons, counted as the cards count (no second count)."""
        return [
            {
                "value": "",
                "label": _("All"),
                "count": self.progress.total,
                "count_text": format_number(self.progress.total),
                "active": not status_filter,
            }
        ] + [
            {
                "value": value,
                "label": label,
                "count": self.progress.count(value),
                "count_text": format_number(self.progress.count(value)),
                "active": status_filter == value,
            }
            for value, label in ItemStatus.choices
            if self.progress.count(value) or status_filter == value
        ]

    def render(self) -> str:
        return render_to_string(self.template_name, self.get_context(), request=self.request)
