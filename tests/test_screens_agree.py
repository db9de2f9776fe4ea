"""What the user sees agrees with itself (issue 21 §1): the job page's rows, chips, cards and
bar come from one reading; the preview, start and cancel messages use the same numbers and
words; a job whose pages failed says so; unknown prices read as unknown, totals included;
numbers follow the active language; the audit trail names what really happened."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from tests.interactions_factory import make_interactions, make_one
from tests.queued import finish_queued
from wagtail_llm_actions import jobs
from wagtail_llm_actions.formatting import format_cost, format_cost_total, format_ms, format_rate
from wagtail_llm_actions.models import LLMInteraction, LLMJob, LLMJobItem

pytestmark = pytest.mark.django_db

LISTING_HEADER = {"X-LLM-Job-Listing": "1"}


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def detail_url(job, **query) -> str:
    url = reverse("wagtail_llm_actions_jobs:detail", args=[job.pk])
    return f"{url}?{urlencode(query)}" if query else url


def status_url(job, **query) -> str:
    url = reverse("wagtail_llm_actions_jobs:status", args=[job.pk])
    return f"{url}?{urlencode(query)}" if query else url


def chips(html: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r'data-llm-chip="(\w+)" data-count="(\d+)"', html)}


def row_statuses(html: str) -> list[str]:
    return re.findall(r'<span class="w-status[^"]*">\s*(\w[\w ]*?)\s*</span>', html)


def set_status(job, n: int, status: str, **fields) -> None:
    ids = list(job.items.order_by("pk").values_list("pk", flat=True)[:n])
    LLMJobItem.objects.filter(pk__in=ids).update(status=status, **fields)


@pytest.fixture
def job(make_post, action, editor):
    posts = [make_post(title=f"Post {i}") for i in range(6)]
    return jobs.create_job(action, editor, [p.pk for p in posts])


# -- the job page, live throughout ---------------------------------------------------------


def test_the_live_update_carries_rows_and_chips_that_match_the_cards(job, editor):
    """While the job runs, one poll returns the cards' counts and the pages' listing (chips
    and rows), rendered for the page's own filter: they cannot disagree."""
    client = client_for(editor)
    page = client.get(detail_url(job, status="queued")).content.decode()
    assert chips(page) == {"all": 6, "queued": 6}

    set_status(job, 2, "running")
    first = job.items.filter(status="queued").order_by("pk").first()
    LLMJobItem.objects.filter(pk=first.pk).update(status="succeeded")

    payload = client.get(status_url(job, status="queued"), headers=LISTING_HEADER).json()
    listing = payload["listing_html"]
    cards = {card["status"]: card["count"] for card in payload["display"]["cards"]}
    assert cards == {
        "succeeded": 1,
        "failed": 0,
        "skipped": 0,
        "queued": 3,
        "running": 2,
        "cancelled": 0,
    }
    assert chips(listing) == {"all": 6, "succeeded": 1, "queued": 3, "running": 2}
    # the rows are the filter's rows, now: three queued pages, no longer six
    assert listing.count('data-llm-item-status="queued"') == 3
    assert 'data-llm-item-status="running"' not in listing


def test_sorting_and_filtering_links_survive_a_live_update(job, editor):
    """The listing the poll returns keeps the page's ordering and filter in its links, and
    not the poll's own URL."""
    client = client_for(editor)
    payload = client.get(
        status_url(job, ordering="-title", status="queued"), headers=LISTING_HEADER
    ).json()
    listing = payload["listing_html"]
    base = detail_url(job)
    assert f'href="{base}?ordering=title&amp;status=queued"' in listing  # sort toggles
    assert f'href="{base}?ordering=-title&amp;status=running"' not in listing  # no such chip
    assert f'href="{base}?ordering=-title&amp;status="' in listing  # "All" keeps the sort
    assert "/status/" not in listing
    titles = re.findall(r">(Post \d)<", listing)
    assert titles == sorted(titles, reverse=True)


def test_the_plain_status_endpoint_does_not_render_the_listing(job, editor):
    payload = client_for(editor).get(status_url(job)).json()
    assert "listing_html" not in payload


# -- counts that match ---------------------------------------------------------------------


def bulk_url(pages) -> str:
    base = reverse("wagtail_bulk_action", args=("wagtailcore", "page", "run_llm_action"))
    params = [("id", p.pk) for p in pages] + [("next", "/admin/pages/")]
    return f"{base}?{urlencode(params)}"


def test_the_start_message_repeats_the_previews_number_and_words(make_post, action, superuser):
    posts = [make_post() for _ in range(3)]
    posts.append(make_post(body=[]))  # empty source: skipped when it runs
    client = client_for(superuser)
    url = bulk_url(posts)

    preview = client.post(url, {"action": action.pk, "preview": "1"}).content.decode()
    assert "3 pages will run." in preview

    response = client.post(url, {"action": action.pk})
    message = str(list(response.wsgi_request._messages)[0])
    assert message.startswith("“Generate summary” started: 3 pages will run.")


def test_cancel_counts_the_pages_still_running(job, editor):
    """Cancelling stops queued pages; pages already running finish and are named as such,
    not "0 pages will not run"."""
    set_status(job, 3, "running", lease_expires_at=timezone.now() + timedelta(minutes=5))
    response = client_for(editor).post(
        reverse("wagtail_llm_actions_jobs:cancel", args=[job.pk]), follow=True
    )
    html = response.content.decode()
    assert "Job cancelled: 3 pages will not run. 3 pages already running will finish." in html
    # the page keeps polling: the running pages have not finished yet
    assert 'data-llm-job-progress-running-value="true"' in html


@pytest.mark.parametrize(
    ("succeeded", "failed", "label"),
    [(0, 6, "Failed"), (2, 4, "Partly failed"), (6, 0, "Completed")],
)
def test_a_finished_job_with_failed_pages_says_failed(job, editor, succeeded, failed, label):
    set_status(job, succeeded, "succeeded")
    ids = list(job.items.filter(status="queued").values_list("pk", flat=True)[:failed])
    LLMJobItem.objects.filter(pk__in=ids).update(status="failed")
    LLMJob.objects.filter(pk=job.pk).update(status="completed", finished_at=timezone.now())
    client = client_for(editor)

    page = client.get(detail_url(job)).content.decode()
    tag = page.split('data-llm-job-progress-target="statusTag"')[1][:300]
    assert f"{label}\n" in tag or f"{label} " in tag or f">{label}<" in tag.replace("\n", "")
    assert ("w-status--primary" in tag) == (label == "Completed")
    assert client.get(status_url(job)).json()["status_label"] == label

    listing = client.get(reverse("wagtail_llm_actions_jobs:index")).content.decode()
    assert label in row_statuses(listing)


def test_the_jobs_listing_filters_by_the_status_it_shows(make_post, action, editor):
    made = {}
    for name, (succeeded, failed) in {"all": (0, 2), "some": (1, 1), "none": (2, 0)}.items():
        job = jobs.create_job(action, editor, [make_post().pk, make_post().pk])
        set_status(job, succeeded, "succeeded")
        ids = list(job.items.filter(status="queued").values_list("pk", flat=True)[:failed])
        LLMJobItem.objects.filter(pk__in=ids).update(status="failed")
        LLMJob.objects.filter(pk=job.pk).update(status="completed")
        made[name] = job
    client = client_for(editor)
    index = reverse("wagtail_llm_actions_jobs:index")

    def listed(status):
        html = client.get(index, {"status": status}).content.decode()
        return {int(pk) for pk in re.findall(r'data-llm-job="(\d+)"', html)}

    assert listed("failed") == {made["all"].pk}
    assert listed("partly_failed") == {made["some"].pk}
    assert listed("completed") == {made["none"].pk}


# -- unknown is not zero -------------------------------------------------------------------


def test_format_cost_total_names_the_calls_at_unknown_price():
    assert format_cost_total(Decimal("1.2"), 14) == "$1.20 + 14 calls at unknown price"
    assert format_cost_total(Decimal("0"), 1) == "1 call at unknown price"
    assert format_cost_total(None, 3) == "3 calls at unknown price"
    assert format_cost_total(Decimal("0.5"), 0) == "$0.50"
    assert format_cost_total(None, 0) == "unknown"


def test_runs_and_cost_does_not_add_unknown_prices_as_zero(action, superuser):
    make_interactions(2, action=action, cost=Decimal("0.60"))
    make_interactions(14, action=action, cost=None)
    make_interactions(1, action=action, cost=None, status="error", total_tokens=0)
    html = client_for(superuser).get(reverse("wagtail_llm_actions_report:action", args=[action.pk]))
    cost = re.search(r'data-stat="cost">([^<]*)<', html.content.decode()).group(1)
    assert cost == "$1.20 + 14 calls at unknown price"


def test_the_report_totals_do_not_add_unknown_prices_as_zero(action, superuser):
    make_interactions(3, action=action, cost=None)
    html = client_for(superuser).get("/admin/llm-actions/report/").content.decode()
    cost = re.search(r'data-total="cost">([^<]*)<', html).group(1)
    assert cost == "3 calls at unknown price"


def test_the_job_page_names_calls_at_unknown_price(job, editor, action):
    priced, unpriced = job.items.order_by("pk")[:2]
    for item, cost in ((priced, Decimal("0.5")), (unpriced, None)):
        interaction = make_one(action=action, cost=cost)
        LLMJobItem.objects.filter(pk=item.pk).update(interaction=interaction, status="succeeded")
    payload = client_for(editor).get(status_url(job)).json()
    assert payload["display"]["cost"] == "$0.50 + 1 call at unknown price"
    html = client_for(editor).get(detail_url(job)).content.decode()
    assert "$0.50 + 1 call at unknown price" in html


# -- numbers -------------------------------------------------------------------------------


def test_numbers_follow_the_active_language():
    assert format_ms(6109) == "6,109 ms" and format_ms(None) == "—"
    assert format_rate(15.23) == "15 pages/s" and format_rate(0.254) == "0.25 pages/s"
    with translation.override("de"):
        assert format_cost(Decimal("1234.5")) == "$1.234,50"
        assert format_ms(6109) == "6.109 ms"
        assert format_rate(0.254) == "0,25 Seiten/s"  # German numbers, and words


def test_latency_and_costs_are_formatted_alike_on_every_screen(action, superuser, post):
    interaction = make_one(action=action, page=post, latency_ms=6109, cost=Decimal("0.0000004"))
    client = client_for(superuser)
    detail = client.get(
        reverse("wagtail_llm_actions_report:detail", args=[interaction.pk])
    ).content.decode()
    assert "6,109 ms" in detail and "6109 ms" not in detail
    assert "$0.0000004" in detail
    rows = client.get("/admin/llm-actions/report/").content.decode()
    assert "6,109 ms" in rows and "6109 ms" not in rows


# -- the audit trail -----------------------------------------------------------------------


def test_test_on_a_page_is_recorded_as_such(post, server_action, fake_llm, superuser):
    fake_llm.configure(reply=lambda request_json: "A fresh answer.")
    client = client_for(superuser)
    response = client.post(
        reverse("wagtail_llm_actions_report:test", args=[server_action.pk]),
        {"page": post.pk, "ask_model": "on"},
        follow=True,  # the old URL leads to "Try on a page", which queues the run
    )
    finish_queued(
        client, client.post(response.redirect_chain[-1][0], {"page": post.pk, "ask_model": "on"})
    )
    interaction = LLMInteraction.objects.get()
    client.post(reverse("wagtail_llm_actions_report:keep", args=[interaction.pk]))
    interaction.refresh_from_db()
    assert interaction.trigger == "test"
    html = client.get(
        reverse("wagtail_llm_actions_report:detail", args=[interaction.pk])
    ).content.decode()
    started = html.split("Started from")[1][:80]
    assert "Test on a page" in started and "Rerun" not in started


def test_the_job_pages_progress_is_the_engines(job, editor, action, django_assert_num_queries):
    """The job page's progress is the engine's, calls at unknown price included, read in
    the engine's two queries."""
    from wagtail_llm_actions import job_counts

    LLMJob.objects.filter(pk=job.pk).update(
        status="running", started_at=timezone.now() - timedelta(seconds=30)
    )
    job.refresh_from_db()
    first, second = job.items.order_by("pk")[:2]
    for item, cost in ((first, Decimal("0.25")), (second, None)):
        interaction = make_one(action=action, cost=cost, total_tokens=50)
        LLMJobItem.objects.filter(pk=item.pk).update(interaction=interaction, status="succeeded")
    with django_assert_num_queries(2):
        progress, unpriced = job_counts.job_progress(job)
    assert unpriced == progress.unpriced == 1
    assert progress.tokens == 100
    assert progress.cost == Decimal("0.25")
    assert progress.count("succeeded") == 2
    assert progress.rate and progress.rate > 0


# -- numbers on the review queue, the interaction page and the bar (audit of issue 21) ------


def test_token_counts_on_the_interaction_page_are_grouped(action, superuser, post):
    interaction = make_one(
        action=action, page=post, prompt_tokens=12345, completion_tokens=2345, total_tokens=14690
    )
    html = (
        client_for(superuser)
        .get(reverse("wagtail_llm_actions_report:detail", args=[interaction.pk]))
        .content.decode()
    )
    assert "12,345 in, 2,345 out (14,690 in total)" in html
    assert "12345" not in html and "14690" not in html
    rows = client_for(superuser).get("/admin/llm-actions/report/").content.decode()
    assert "12,345" in rows and ">12345<" not in rows


def test_the_bars_segment_titles_are_grouped(job, editor):
    LLMJobItem.objects.bulk_create(
        [
            LLMJobItem(job=job, page_id=job.items.first().page_id, status="succeeded")
            for _ in range(1500)
        ]
    )
    html = client_for(editor).get(detail_url(job)).content.decode()
    titles = dict(re.findall(r'title="([^":]+): ([^"]+)" data-segment', html))
    assert titles["Succeeded"] == "1,500", titles
    data = client_for(editor).get(status_url(job)).json()["display"]
    succeeded = next(s for s in data["segments"] if s["status"] == "succeeded")
    assert succeeded["text"] == "1,500"  # what the page's script writes into the title
    with translation.override("de"):
        from wagtail_llm_actions.views.jobs import job_progress, progress_display

        job.refresh_from_db()
        segments = progress_display(job, *job_progress(job))["segments"]
        assert next(s for s in segments if s["status"] == "succeeded")["text"] == "1.500"


def test_the_review_queues_filter_counts_are_grouped(job, editor, monkeypatch):
    from wagtail_llm_actions import review_queue

    jobs.run_job(job.pk)
    monkeypatch.setattr(
        review_queue.Queue,
        "counts",
        lambda self: dict.fromkeys(review_queue.RowState.labels, 1500),
    )
    html = (
        client_for(editor)
        .get(reverse("wagtail_llm_actions_review:queue", args=[job.pk]))
        .content.decode()
    )
    filters = html[html.index("llm-review__filters") :]
    filters = filters[: filters.index("</nav>")]
    assert "(1,500)" in filters and "(1500)" not in filters


def test_counts_inside_plural_sentences_are_grouped_in_the_users_language(job, editor):
    """The jobs listing's "1,500 cancelled" (a plural sentence): Django renders a
    ``blocktrans count`` counter ungrouped ("1500 abgebrochen"), so the sentences print a
    grouped copy of it."""
    from wagtail.users.models import UserProfile

    LLMJobItem.objects.bulk_create(
        [
            LLMJobItem(job=job, page_id=job.items.first().page_id, status="cancelled")
            for _ in range(1500)
        ]
    )
    listing = reverse("wagtail_llm_actions_jobs:index")
    html = client_for(editor).get(listing).content.decode()
    assert "1,500 cancelled" in html and "1500 cancelled" not in html
    profile = UserProfile.get_for_user(editor)
    profile.preferred_language = "de"
    profile.save(update_fields=["preferred_language"])
    html = client_for(editor).get(listing).content.decode()
    assert "1.500 abgebrochen" in html and "1500 abgebrochen" not in html


def test_no_plural_sentence_prints_its_raw_counter():
    """Every ``{% blocktrans count counter=… %}`` prints ``counter_text`` (the count through
    ``llm_number``), never ``{{ counter }}``, which Django leaves ungrouped."""
    from pathlib import Path

    import wagtail_llm_actions

    templates = Path(wagtail_llm_actions.__file__).parent / "templates"
    raw = [
        str(path.relative_to(templates))
        for path in templates.rglob("*.html")
        if "{{ counter }}" in path.read_text()
    ]
    assert raw == []
