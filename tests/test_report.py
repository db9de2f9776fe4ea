"""The "LLM interactions" report: rows, filters, search, totals, chart, export, query counts."""

from __future__ import annotations

import csv
import datetime
import io
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from openpyxl import load_workbook
from wagtail.models import Locale, Page, Site

from tests.interactions_factory import make_interactions, make_one
from wagtail_llm_actions.models import LLMInteraction

pytestmark = pytest.mark.django_db

REPORT_URL = "/admin/llm-actions/report/"
RESULTS_URL = "/admin/llm-actions/report/results/"


def rows_of(response) -> list[int]:
    """Interaction ids in the order the report lists them."""
    html = response.content.decode()
    ids = []
    marker = 'data-interaction="'
    start = 0
    while (i := html.find(marker, start)) != -1:
        j = html.index('"', i + len(marker))
        ids.append(int(html[i + len(marker) : j]))
        start = j
    return ids


def csv_rows(response) -> list[dict]:
    body = b"".join(response.streaming_content).decode("utf-8")
    return list(csv.DictReader(io.StringIO(body)))


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def mixed(post, make_post, action, make_action, superuser, editor):
    """A varied set: two actions, two pages, two users, errors and outcomes, three days."""
    other_page = make_post(title="Worm farms")
    tags = make_action(name="Suggest tags", slug="suggest-tags", target_field="tags")
    now = timezone.now()
    if timezone.localtime(now).hour < 2:
        # "a" and "d" (an hour apart) share a day, apart from "b" (a day back), at any hour.
        now -= datetime.timedelta(hours=2)
    rows = {
        "a": make_one(action=action, page=post, user=superuser, start=now, cost=Decimal("0.01")),
        "b": make_one(
            action=action,
            page=other_page,
            user=editor,
            start=now - datetime.timedelta(days=1),
            model="openai/gpt-4o-mini",
            cost=Decimal("0.02"),
            outcome="accepted",
        ),
        "c": make_one(
            action=tags,
            page=post,
            user=editor,
            start=now - datetime.timedelta(days=2),
            status="error",
            outcome="",
            error_code="timeout",
            error_message="The model did not answer in time.",
            prompt_tokens=50,
            completion_tokens=None,
            total_tokens=50,
            cost=None,
            trigger="bulk",
        ),
        "d": make_one(
            action=tags,
            page=other_page,
            user=superuser,
            start=now - datetime.timedelta(hours=1),
            outcome="discarded",
            cost=Decimal("0.03"),
        ),
    }
    return rows, other_page, tags


def test_report_is_in_the_reports_menu(admin_client):
    response = admin_client.get("/admin/")
    assert REPORT_URL in response.content.decode()
    assert "AI interactions" in response.content.decode()


def test_report_menu_item_is_hidden_from_users_with_nothing_to_see(client, outsider, editor):
    client.force_login(outsider)
    assert REPORT_URL not in client.get("/admin/").content.decode()
    client.force_login(editor)
    assert REPORT_URL in client.get("/admin/").content.decode()


def test_report_lists_newest_first_with_every_column(admin_client, mixed, post, superuser):
    rows, _other, _tags = mixed
    response = admin_client.get(REPORT_URL)
    assert response.status_code == 200
    assert rows_of(response) == [rows["a"].pk, rows["d"].pk, rows["b"].pk, rows["c"].pk]
    html = response.content.decode()
    # page linked to its edit view, action to its per-action view, detail link per row
    assert reverse("wagtailadmin_pages:edit", args=[post.pk]) in html
    assert reverse("wagtail_llm_actions_report:action", args=[rows["a"].action_id]) in html
    assert reverse("wagtail_llm_actions_report:detail", args=[rows["a"].pk]) in html
    for text in ("openai/gpt-4o-mini", "Accepted as generated", "Discarded", "Error", "admin"):
        assert text in html
    assert "250 ms" in html and "$0.01<" in html  # one cost format: cents from $0.01


def test_pagination(admin_client, post, action):
    make_interactions(55, action=action, page=post)
    first = admin_client.get(REPORT_URL)
    second = admin_client.get(REPORT_URL + "?p=2")
    assert len(rows_of(first)) == 50
    assert len(rows_of(second)) == 5
    assert not set(rows_of(first)) & set(rows_of(second))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=error", ["c"]),
        ("status=success", ["a", "d", "b"]),
        ("model=openai/gpt-4o-mini", ["b"]),
        ("outcome=unknown", ["c"]),
        ("outcome=discarded", ["d"]),
        ("outcome=accepted", ["b"]),
        ("trigger=bulk", ["c"]),
    ],
)
def test_filters_by_column(admin_client, mixed, query, expected):
    rows, _other, _tags = mixed
    response = admin_client.get(f"{REPORT_URL}?{query}")
    assert rows_of(response) == [rows[k].pk for k in expected]


def test_filters_by_action_user_page_type_and_date(admin_client, mixed, editor):
    rows, _other, tags = mixed
    assert rows_of(admin_client.get(f"{REPORT_URL}?action={tags.pk}")) == [
        rows["d"].pk,
        rows["c"].pk,
    ]
    assert rows_of(admin_client.get(f"{REPORT_URL}?user={editor.pk}")) == [
        rows["b"].pk,
        rows["c"].pk,
    ]
    blog_page_type = rows["a"].page.specific.content_type_id
    LLMInteraction.objects.update(content_type_id=blog_page_type)
    simple_type = Page.objects.get(depth=1).content_type_id
    LLMInteraction.objects.filter(pk=rows["d"].pk).update(content_type_id=simple_type)
    response = admin_client.get(f"{REPORT_URL}?content_type={blog_page_type}")
    assert rows_of(response) == [rows["a"].pk, rows["b"].pk, rows["c"].pk]

    day = timezone.localdate(rows["b"].created_at).isoformat()
    response = admin_client.get(f"{REPORT_URL}?created_at_from={day}&created_at_to={day}")
    assert rows_of(response) == [rows["b"].pk]


def test_filters_by_site_and_locale(admin_client, mixed, post, blog_index):
    rows, other_page, _tags = mixed
    root = Page.get_first_root_node()
    from blog.models import BlogIndexPage

    second_home = BlogIndexPage(title="Second site", slug="second")
    root.add_child(instance=second_home)
    Site.objects.create(hostname="second.example", root_page=second_home)
    moved = make_one(action=rows["a"].action, page=second_home)

    response = admin_client.get(f"{REPORT_URL}?site={second_home.path}")
    assert rows_of(response) == [moved.pk]
    response = admin_client.get(f"{REPORT_URL}?site={blog_index.path}")
    assert moved.pk not in rows_of(response)
    assert len(rows_of(response)) == 4

    french = Locale.objects.create(language_code="fr")
    Page.objects.filter(pk=other_page.pk).update(locale=french)
    response = admin_client.get(f"{REPORT_URL}?page_locale=fr")
    assert rows_of(response) == [rows["d"].pk, rows["b"].pk]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("worm farms", ["d", "b"]),
        ("did not answer", ["c"]),
        ("gpt-4o", ["b"]),
        ("tags", ["d", "c"]),
    ],
)
def test_search(admin_client, mixed, q, expected):
    rows, _other, _tags = mixed
    response = admin_client.get(REPORT_URL, {"q": q})
    assert rows_of(response) == [rows[k].pk for k in expected]


def test_totals_cover_the_filtered_set(admin_client, mixed):
    response = admin_client.get(REPORT_URL)
    totals = response.context["totals"]
    assert totals["calls"] == 4
    assert totals["errors"] == 1
    assert totals["error_rate"] == 25.0
    assert totals["prompt_tokens"] == 350
    assert totals["completion_tokens"] == 60
    assert totals["total_tokens"] == 410
    assert totals["cost"] == Decimal("0.06")
    html = response.content.decode()
    assert 'data-total="calls">4<' in html
    assert 'data-total="error-rate">25.0%<' in html
    # the failed call spent 50 tokens at no known price: named, not added as zero (issue 21)
    assert 'data-total="cost">$0.06 + 1 call at unknown price<' in html

    filtered = admin_client.get(REPORT_URL + "?status=success").context["totals"]
    assert (filtered["calls"], filtered["errors"], filtered["cost"]) == (3, 0, Decimal("0.06"))


def test_results_fragment_refreshes_totals_and_rows(admin_client, mixed):
    rows, _other, _tags = mixed
    response = admin_client.get(RESULTS_URL + "?status=error")
    html = response.content.decode()
    assert "<html" not in html
    assert rows_of(response) == [rows["c"].pk]
    assert 'data-total="calls">1<' in html


def test_chart_shows_calls_and_cost_per_day(admin_client, mixed):
    html = admin_client.get(REPORT_URL).content.decode()
    assert "<svg" in html and 'class="llm-chart"' in html
    assert html.count('class="llm-chart__bar"') == 3  # three consecutive days
    assert "llm-chart__line" in html
    assert 'data-calls="2"' in html  # today: two calls
    assert "Calls per day" in html and "Cost per day" in html


def test_empty_report(admin_client, db):
    response = admin_client.get(REPORT_URL)
    html = response.content.decode()
    assert "No AI interactions have been recorded yet." in html
    assert 'class="llm-chart"' not in html


def test_csv_export_contains_the_filtered_rows(admin_client, mixed, superuser):
    rows, _other, _tags = mixed
    response = admin_client.get(REPORT_URL + "?status=success&export=csv")
    assert response["Content-Type"] == "text/csv"
    assert "llm-interactions-" in response["Content-Disposition"]
    exported = csv_rows(response)
    assert [int(r["ID"]) for r in exported] == [rows[k].pk for k in ("a", "d", "b")]
    first = exported[0]
    assert first["Action"] == "Generate summary"
    assert first["Page"] == "Composting in a small flat"
    assert first["User"] == "admin"
    assert first["Status"] == "Success"
    assert first["Outcome"] == "Saved as draft"
    assert first["Tokens in"] == "100" and first["Tokens out"] == "20"
    assert Decimal(first["Cost (USD)"]) == Decimal("0.01")
    assert first["Latency (ms)"] == "250"


def test_csv_export_streams_with_an_iterator(admin_client, post, action, monkeypatch):
    make_interactions(30, action=action, page=post)
    from wagtail_llm_actions import reports

    calls = []
    original = LLMInteraction.objects.all().__class__.iterator

    def spy(self, chunk_size=None):
        calls.append(chunk_size)
        return original(self, chunk_size=chunk_size)

    monkeypatch.setattr(type(LLMInteraction.objects.all()), "iterator", spy)
    response = admin_client.get(REPORT_URL + "?export=csv")
    assert len(csv_rows(response)) == 30
    assert response.streaming  # rows are sent as they are read, not built up first
    assert calls == [reports.EXPORT_CHUNK_SIZE]


def exported_ids(response, export: str) -> list[int]:
    """The interaction ids in a CSV or XLSX export, in order."""
    if export == "csv":
        return [int(row["ID"]) for row in csv_rows(response)]
    sheet = load_workbook(io.BytesIO(b"".join(response.streaming_content))).active
    return [row[0] for row in list(sheet.values)[1:]]


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="server-side cursors are PostgreSQL's"
)
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("export", ["csv", "xlsx"])
def test_postgresql_export_reads_its_rows_inside_a_transaction(
    shared_db, admin_client, post, action, export
):
    """Outside a transaction Django declares its server-side cursor WITH HOLD, and PostgreSQL
    then sorts every row at the COMMIT before the first is sent (a second's wait at 100k
    rows): the export reads inside a transaction instead, so its first rows go out at once.

    Transactional (the view must run outside a test transaction, as on a site), so marked and
    fixtured like the other transactional tests (``shared_db`` first, serialized rollback):
    the migrated rows later tests need are restored, not flushed away."""
    rows = make_interactions(5, action=action, page=post)
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(f"{REPORT_URL}?export={export}")
        assert response.streaming
        assert sorted(exported_ids(response, export)) == sorted(row.pk for row in rows)
    declares = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DECLARE")]
    assert len(declares) == 1, "the export reads its rows through one server-side cursor"
    assert "WITH HOLD" not in declares[0]
    assert LLMInteraction._meta.db_table in declares[0]


def test_xlsx_export_contains_the_filtered_rows(admin_client, mixed):
    rows, _other, tags = mixed
    response = admin_client.get(f"{REPORT_URL}?action={tags.pk}&export=xlsx")
    assert response.status_code == 200
    assert "spreadsheetml" in response["Content-Type"]
    workbook = load_workbook(io.BytesIO(b"".join(response.streaming_content)))
    sheet = workbook.active
    values = list(sheet.values)
    assert values[0][:3] == ("ID", "Time", "Action")
    assert [row[0] for row in values[1:]] == [rows["d"].pk, rows["c"].pk]
    assert values[2][8] == "Error"
    assert values[2][-1] == "The model did not answer in time."


def _count_queries(client, url, consume=False):
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
        assert response.status_code == 200
        if consume:
            b"".join(response.streaming_content)
    return len(ctx.captured_queries)


@pytest.mark.parametrize(
    "url",
    [REPORT_URL, RESULTS_URL + "?status=success", REPORT_URL + "?q=compost&page_locale=&site="],
)
def test_report_query_count_does_not_grow_with_rows(
    admin_client, make_post, action, superuser, editor, url, django_assert_max_num_queries
):
    pages = [make_post() for _ in range(5)]
    users = [superuser, editor]

    def add(n):
        for i in range(n):
            make_interactions(1, action=action, page=pages[i % 5], user=users[i % 2])

    add(10)
    admin_client.get(url)  # warm caches (content types, site root paths)
    small = _count_queries(admin_client, url)
    make_interactions(990, action=action, page=pages[0], user=editor)
    with django_assert_max_num_queries(small):
        admin_client.get(url)
    assert _count_queries(admin_client, url) == small


def test_export_query_count_does_not_grow_with_rows(
    admin_client, post, action, editor, django_assert_max_num_queries
):
    make_interactions(10, action=action, page=post, user=editor)
    url = REPORT_URL + "?export=csv"
    admin_client.get(url)
    small = _count_queries(admin_client, url, consume=True)
    make_interactions(990, action=action, page=post, user=editor)
    with django_assert_max_num_queries(small):
        response = admin_client.get(url)
        assert len(csv_rows(response)) == 1000


def test_report_for_a_restricted_user_counts_only_their_rows(client, mixed, outsider):
    rows, _other, _tags = mixed
    own = make_one(action=rows["a"].action, page=rows["a"].page, user=outsider, cost=Decimal(1))
    client.force_login(outsider)
    response = client.get(REPORT_URL)
    assert rows_of(response) == [own.pk]
    assert response.context["totals"]["calls"] == 1
    assert response.context["totals"]["cost"] == Decimal(1)
    assert "You see your own runs" in response.content.decode()


def test_view_permission_is_listed_in_the_group_editor(admin_client):
    permission = Permission.objects.get(
        content_type__app_label="wagtail_llm_actions", codename="view_llminteraction"
    )
    html = admin_client.get("/admin/groups/new/").content.decode()
    assert f'value="{permission.pk}"' in html


def test_search_ignores_case_in_models_and_action_names(admin_client, mixed):
    rows, _other, _tags = mixed
    assert rows_of(admin_client.get(REPORT_URL, {"q": "GPT-4O"})) == [rows["b"].pk]
    assert rows_of(admin_client.get(REPORT_URL, {"q": "SUGGEST"})) == [
        rows["d"].pk,
        rows["c"].pk,
    ]


def test_search_finds_why_a_stored_answer_was_not_written(admin_client, mixed):
    rows, _other, _tags = mixed
    kept = make_one(
        action=rows["a"].action,
        page=rows["a"].page,
        status="answered",
        outcome="",
        error_code="locked",
        error_message="The page is locked by another editor.",
    )
    assert rows_of(admin_client.get(REPORT_URL, {"q": "LOCKED BY another"})) == [kept.pk]


def test_search_finds_every_row_with_the_error_text(admin_client, post, action):
    failed = make_interactions(
        3, action=action, page=post, status="error", error_message="Rate limit reached."
    )
    make_interactions(2, action=action, page=post, status="error", error_message="Timed out.")
    expected = [row.pk for row in failed]
    assert rows_of(admin_client.get(REPORT_URL, {"q": "rate LIMIT"})) == expected


def test_search_results_are_paged_newest_first(admin_client, make_post, action):
    worms, other = make_post(title="Worm farms"), make_post(title="Bokashi")
    now = timezone.now()
    found = []
    for i in range(70):
        # two matches at the same instant (the newer id is listed first), one on each page
        at = now - datetime.timedelta(minutes=(i + 1) // 2)
        status = "success" if i % 2 else "error"
        found += make_interactions(1, action=action, page=worms, start=at, status=status)
        make_interactions(1, action=action, page=other, start=at)
    expected = [r.pk for r in sorted(found, key=lambda r: (r.created_at, r.pk), reverse=True)]

    first = rows_of(admin_client.get(REPORT_URL, {"q": "worm farm"}))
    second = rows_of(admin_client.get(REPORT_URL, {"q": "worm farm", "p": 2}))
    assert len(first) == 50
    assert first + second == expected
    assert rows_of(admin_client.get(RESULTS_URL, {"q": "worm farm", "p": 2})) == expected[50:]


def test_xlsx_export_is_streamed_with_texts_as_text_and_times_as_dates(admin_client, post, action):
    row = make_one(
        action=action,
        page=post,
        status="error",
        error_code="bad",
        error_message='=HYPERLINK("http://example.com", "x")',
        cost=None,
    )
    response = admin_client.get(REPORT_URL + "?export=xlsx")
    assert response.streaming
    assert response["Content-Disposition"].endswith('.xlsx"')
    sheet = load_workbook(io.BytesIO(b"".join(response.streaming_content))).active
    header = [c.value for c in sheet[1]]
    values = dict(zip(header, (c for c in sheet[2]), strict=True))
    assert values["ID"].value == row.pk
    assert values["Error"].data_type == "s"  # never a formula
    assert "HYPERLINK" in values["Error"].value
    assert isinstance(values["Time"].value, datetime.datetime)
    assert values["Time"].value.date() == row.created_at.astimezone(datetime.UTC).date()


def test_a_page_with_nothing_to_send_is_skipped_not_an_error(admin_client, make_post, action):
    from wagtail_llm_actions.exceptions import SourceEmpty
    from wagtail_llm_actions.service import LLMService

    empty = make_post(body=[])
    with pytest.raises(SourceEmpty):
        LLMService().run(action, empty)
    skipped = LLMInteraction.objects.get()
    assert (skipped.status, skipped.error_code) == ("skipped", "source_empty")

    response = admin_client.get(REPORT_URL)

    totals = response.context["totals"]
    assert (totals["calls"], totals["errors"]) == (1, 0)
    html = response.content.decode()
    assert "Skipped (no content)" in html
    assert admin_client.get(REPORT_URL + "?status=skipped").context["totals"]["calls"] == 1
    assert admin_client.get(REPORT_URL + "?status=error").context["totals"]["calls"] == 0
    assert rows_of(admin_client.get(REPORT_URL, {"q": "no content"})) == [skipped.pk]


def test_csv_export_bytes_match_wagtails_per_cell_preprocessing(admin_client, mixed, post, action):
    """The fast CSV writer gives the same bytes as Wagtail's cell-by-cell path would: headings,
    labels, empty cells for missing values, plain costs, times, and formulas neutralised."""
    make_one(
        action=action,
        page=post,
        status="error",
        error_code="bad",
        error_message='=HYPERLINK("http://evil")',
        cost=Decimal("0"),
        completion_tokens=None,
        outcome="",
    )
    response = admin_client.get(REPORT_URL + "?export=csv")
    body = b"".join(response.streaming_content)

    from django.test import RequestFactory
    from wagtail.admin.views.mixins import Echo

    from wagtail_llm_actions.reports import InteractionReportView

    request = RequestFactory().get(REPORT_URL, {"export": "csv"})
    request.user = mixed[0]["a"].user  # the superuser
    view = InteractionReportView()
    view.setup(request)
    queryset = view.filtered_queryset
    writer = csv.DictWriter(Echo(), fieldnames=view.list_export)
    expected = [
        writer.writerow({field: view.get_heading(queryset, field) for field in view.list_export})
    ]
    for item in view.export_rows(queryset):
        expected.append(view.write_csv_row(writer, view.to_row_dict(item)))  # Wagtail's way
    assert body == b"".join(expected)
    assert b"'=HYPERLINK" in body and len(expected) == 6
