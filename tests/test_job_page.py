"""The job progress page shows states honestly; the bulk confirmation screen guides the user."""

from __future__ import annotations

import datetime
import logging
import re
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.workers import drain
from wagtail_llm_actions import jobs
from wagtail_llm_actions.models import LLMInteraction, LLMJob, LLMJobItem

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def bulk_url(pages, **extra) -> str:
    base = reverse("wagtail_bulk_action", args=("wagtailcore", "page", "run_llm_action"))
    params = [("id", p.pk) for p in pages] + list(extra.items()) + [("next", "/admin/pages/")]
    return f"{base}?{urlencode(params)}"


def segments(html: str) -> dict[str, float]:
    return {
        status: float(width)
        for width, status in re.findall(
            r'style="width: ([\d.]+)%"\s+title="[^"]*" data-segment="(\w+)"', html
        )
    }


@pytest.fixture
def job(make_post, action, editor):
    posts = [make_post() for _ in range(4)]
    return jobs.create_job(action, editor, [p.pk for p in posts])


def detail(client, job) -> str:
    return client.get(reverse("wagtail_llm_actions_jobs:detail", args=[job.pk])).content.decode()


def status(client, job) -> dict:
    return client.get(reverse("wagtail_llm_actions_jobs:status", args=[job.pk])).json()


def test_a_cancelled_job_does_not_show_a_full_bar(job, editor):
    client = client_for(editor)
    first = job.items.order_by("pk").first()
    LLMJobItem.objects.filter(pk=first.pk).update(status="succeeded")
    jobs.cancel_job(job)
    html = detail(client, job)
    assert segments(html) == {
        "succeeded": 25.0,
        "failed": 0.0,
        "skipped": 0.0,
        "running": 0.0,
        "cancelled": 75.0,
    }
    assert 'aria-valuenow="25"' in html and "1 of 4 pages processed" in html
    assert "Cancelled: 3 pages did not run." in html
    assert (
        "w-status--primary" not in html.split('data-llm-job-progress-target="statusTag"')[1][:200]
    )
    payload = status(client, job)
    assert payload["finished"] and payload["display"]["processed_percent"] == 25


def test_a_completed_job_is_full_and_says_so(job, editor):
    jobs.run_job(job.pk)
    html = detail(client_for(editor), job)
    assert segments(html)["succeeded"] == 100.0
    assert 'aria-valuenow="100"' in html and "Finished." in html
    assert "Cancel job" not in html and "Retry failed pages" not in html


def test_failures_are_counted_and_offered_for_retry(post, server_action, fake_llm, editor):
    fake_llm.status = 401
    job = jobs.create_job(server_action, editor, [post.pk])
    jobs.run_job(job.pk)
    html = detail(client_for(editor), job)
    assert segments(html)["failed"] == 100.0
    assert "Finished with 1 failed page." in html and "help-critical" in html
    # Wagtail's button with an icon (styleguide: "bicolor button--icon", a wrapped icon)
    button = re.search(r"<button[^>]*data-llm-job-retry[^>]*>(.*?)</button>", html, re.S)
    assert 'class="button bicolor button--icon"' in button.group(0)
    assert '<span class="icon-wrapper">' in button.group(1)
    assert '<svg class="icon icon-rotate' in button.group(
        1
    ) and "Retry failed pages" in button.group(1)


def test_cancel_is_a_standard_secondary_button(job, editor):
    html = detail(client_for(editor), job)
    button = re.search(r"<button[^>]*data-llm-job-cancel[^>]*>(.*?)</button>", html, re.S)
    assert 'class="button bicolor button--icon button-secondary"' in button.group(0)
    assert '<span class="icon-wrapper">' in button.group(1)
    assert '<svg class="icon icon-cross' in button.group(1) and "Cancel job" in button.group(1)


def test_no_worker_notice_after_the_pickup_timeout(job, editor, settings):
    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "WORKER_PICKUP_TIMEOUT": 5}
    client = client_for(editor)
    assert not status(client, job)["display"]["no_worker"]
    assert re.search(r"data-llm-no-worker\s+hidden", detail(client, job))

    old = timezone.now() - datetime.timedelta(seconds=30)
    LLMJob.objects.filter(pk=job.pk).update(created_at=old)
    job.items.update(updated_at=old)
    payload = status(client, job)
    assert payload["display"]["no_worker"]
    assert "This job has not started after 5 seconds" in (payload["display"]["no_worker_message"])
    html = detail(client, job)
    assert not re.search(r"data-llm-no-worker\s+hidden", html)
    assert (
        "ask your administrator" in html and "worker" not in payload["display"]["no_worker_message"]
    )

    # once a worker takes the job, the notice goes
    jobs.run_job(job.pk)
    assert not status(client, job)["display"]["no_worker"]


def test_no_worker_notice_counts_from_a_retry(job, editor, settings):
    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "WORKER_PICKUP_TIMEOUT": 5}
    LLMJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - datetime.timedelta(hours=1))
    jobs.cancel_job(job)
    jobs.retry_failed(job, enqueue=False)  # the cancelled pages are queued again just now
    assert not status(client_for(editor), job)["display"]["no_worker"]


def test_job_page_shows_costs_with_the_shared_formatter(job, editor):
    client = client_for(editor)
    assert status(client, job)["display"]["cost"] == "unknown"  # nothing priced yet
    jobs.run_job(job.pk)
    interactions = LLMInteraction.objects.filter(pk__in=job.items.values("interaction_id"))
    interactions.update(cost=Decimal("0.000105"))
    assert status(client, job)["display"]["cost"] == "$0.00042"
    assert '<dd data-llm-job-progress-target="cost">$0.00042</dd>' in detail(client, job)


# -- the bulk confirmation screen ----------------------------------------------------------------


def test_options_come_before_the_preview_and_start(client, make_post, action, superuser):
    posts = [make_post() for _ in range(2)]
    client.force_login(superuser)
    # nothing is preselected (issue 21, §2): a link naming the action opens with it chosen
    html = client.get(bulk_url(posts, action=action.pk)).content.decode()
    assert html.index('name="action"') < html.index("Preview for") < html.index("data-llm-start")
    assert 'data-controller="llm-bulk-preview"' in html
    assert "bulk-preview-controller.js" in html
    start = re.search(r"<button[^>]*data-llm-start[^>]*>", html).group(0)
    assert "disabled" not in start


def test_start_is_disabled_and_refused_when_no_page_would_run(client, make_post, action, superuser):
    empty = make_post(title="Empty post", body=[])
    client.force_login(superuser)
    url = bulk_url([empty])
    html = client.get(bulk_url([empty], action=action.pk)).content.decode()
    start = re.search(r"<button[^>]*data-llm-start[^>]*>", html).group(0)
    assert "disabled" in start
    assert "0 pages will run" in html and "nothing to start" in html

    response = client.post(url, {"action": action.pk})
    assert response.status_code == 200
    assert "nothing was started" in response.content.decode()
    assert not LLMJob.objects.exists()


def test_the_preview_follows_the_chosen_action(client, make_post, make_action, superuser):
    posts = [make_post() for _ in range(2)]
    tags = make_action(name="Suggest tags", slug="suggest-tags", target_field="tags")
    make_action()
    client.force_login(superuser)
    html = client.post(bulk_url(posts), {"action": tags.pk, "preview": "1"}).content.decode()
    assert "Preview for “Suggest tags”" in html


def test_a_page_with_an_empty_source_is_logged_as_skipped(make_post, action, superuser, caplog):
    empty = make_post(title="Empty post", body=[])
    job = jobs.create_job(action, superuser, [empty.pk])
    with caplog.at_level(logging.INFO, logger="wagtail_llm_actions"):
        jobs.run_job(job.pk)
    assert job.items.get().skip_reason == "source_empty"
    texts = [r.getMessage() for r in caplog.records if "source_empty" in r.getMessage()]
    assert texts and all("skipped" in t and "failed" not in t for t in texts)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_queued_bulk_job_runs_from_the_confirmation(client, make_post, action, superuser):
    posts = [make_post() for _ in range(2)]
    client.force_login(superuser)
    client.post(bulk_url(posts), {"action": action.pk})
    job = LLMJob.objects.get()
    jobs.enqueue_job(job, on_commit=False)
    assert drain() == ["completed"]


def test_jobs_listing_does_not_count_cancelled_pages_as_done(job, editor):
    jobs.cancel_job(job)
    html = client_for(editor).get(reverse("wagtail_llm_actions_jobs:index")).content.decode()
    assert 'value="0"' in html and "0 / 4" in html
    assert 'data-llm-cancelled="4"' in html and "4 cancelled" in html
