"""What the user sees agrees with itself, in a real browser (audit of issue 21, §1): the
message after Start repeats the preview's number, Cancel while pages run says how many will
not run and how many are still finishing, a job whose pages failed is tagged failed or
partly failed, and a cost with calls at unknown price says so. Each flow runs three times
in a row ("under load": new pages and jobs each time on the same live server)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.browser.screens import log_in
from tests.interactions_factory import make_one
from tests.test_job_page import bulk_url
from wagtail_llm_actions import jobs
from wagtail_llm_actions.models import LLMJob, LLMJobItem

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

RUNS = 3


def job_page(page, live_server, job) -> None:
    page.goto(live_server.url + reverse("wagtail_llm_actions_jobs:detail", args=[job.pk]))
    page.locator("[data-llm-job-progress-target=statusTag]").wait_for()


def test_the_start_message_repeats_the_previews_number(
    live_server, browser_page, make_post, action, superuser
):
    page = browser_page
    log_in(page, live_server)
    for run in range(RUNS):
        posts = [make_post(title=f"Start {run}-{n}") for n in range(3 + run)]
        posts.append(make_post(title=f"Empty {run}", body=[]))  # skipped: not counted
        page.goto(live_server.url + bulk_url(posts))
        page.select_option("select[name=action]", label=action.name)
        will_run = page.locator("[data-llm-will-run]")
        will_run.wait_for()
        count = int(will_run.get_attribute("data-llm-will-run"))
        assert count == 3 + run
        assert f"{count} pages will run." in page.inner_text("main")
        page.locator("[data-llm-start]").click()
        page.wait_for_url(f"{live_server.url}/admin/pages/")
        message = page.inner_text(".messages")
        assert f"“{action.name}” started: {count} pages will run." in message, message


def test_cancel_while_pages_run_says_what_will_not_run_and_what_finishes(
    live_server, browser_page, make_post, action, superuser
):
    page = browser_page
    log_in(page, live_server)
    for run in range(RUNS):
        job = jobs.create_job(action, superuser, [make_post().pk for _ in range(6)])
        running = list(job.items.order_by("pk").values_list("pk", flat=True)[: run + 1])
        LLMJobItem.objects.filter(pk__in=running).update(
            status="running", lease_expires_at=timezone.now() + timedelta(minutes=5)
        )
        LLMJob.objects.filter(pk=job.pk).update(status="running")
        job_page(page, live_server, job)
        page.locator("[data-llm-job-cancel]").click()
        confirm = page.locator("[data-llm-confirm]")
        confirm.wait_for()
        waiting, busy = 6 - (run + 1), run + 1
        text = confirm.inner_text()
        assert f"{waiting} pages will not run" in text, text
        assert str(busy) in text and "finish" in text, text
        page.locator("[data-llm-confirm-button]").click()
        page.locator(".messages").wait_for()
        running_words = "page already running will" if busy == 1 else "pages already running will"
        message = page.inner_text(".messages")
        assert f"{waiting} pages will not run. {busy} {running_words} finish." in message, message


def test_retry_asks_first_saying_what_will_run_again_then_queues_only_that(
    live_server, browser_page, make_post, action, superuser
):
    page = browser_page
    log_in(page, live_server)
    for run in range(RUNS):
        job = jobs.create_job(action, superuser, [make_post().pk for _ in range(5)])
        items = list(job.items.order_by("pk"))
        failed = [i.pk for i in items[: run + 2]]
        LLMJobItem.objects.filter(pk__in=failed).update(status="failed")
        LLMJobItem.objects.filter(job=job).exclude(pk__in=failed).update(status="succeeded")
        LLMJob.objects.filter(pk=job.pk).update(status="completed", finished_at=timezone.now())
        job_page(page, live_server, job)
        page.locator("[data-llm-job-retry]").click()
        confirm = page.locator("[data-llm-confirm]")
        confirm.wait_for()
        text = confirm.inner_text()
        assert f"{len(failed)} pages will run again." in text, text
        assert page.locator("[data-llm-estimate-tokens]").is_visible()
        assert page.locator("[data-llm-estimate-cost]").is_visible()
        assert job.items.filter(status="failed").count() == len(failed)  # asking ran nothing

        page.locator("[data-llm-confirm-button]").click()
        page.locator(".messages").wait_for()
        queued = set(job.items.filter(status="queued").values_list("pk", flat=True))
        assert queued == set(failed), (run, queued, failed)
        assert job.items.filter(status="succeeded").count() == 5 - len(failed)


@pytest.mark.parametrize(
    ("succeeded", "failed", "label"), [(0, 4, "Failed"), (2, 2, "Partly failed")]
)
def test_a_job_whose_pages_failed_is_tagged_so_and_unknown_prices_read_unknown(
    live_server, browser_page, make_post, action, superuser, succeeded, failed, label
):
    page = browser_page
    log_in(page, live_server)
    for _run in range(RUNS):
        job = jobs.create_job(action, superuser, [make_post().pk for _ in range(4)])
        items = list(job.items.order_by("pk"))
        for item, cost in zip(items[:succeeded], (Decimal("0.5"), None), strict=False):
            interaction = make_one(action=action, cost=cost)
            done = LLMJobItem.objects.filter(pk=item.pk)
            done.update(interaction=interaction, status="succeeded")
        LLMJobItem.objects.filter(pk__in=[i.pk for i in items[succeeded:]]).update(status="failed")
        LLMJob.objects.filter(pk=job.pk).update(status="completed", finished_at=timezone.now())
        job_page(page, live_server, job)
        # (the words as written: Wagtail's status tags are upper-cased by CSS)
        tag = page.locator("[data-llm-job-progress-target=statusTag]").text_content().strip()
        assert tag == label, tag
        listing = page.goto(live_server.url + reverse("wagtail_llm_actions_jobs:index"))
        row = page.locator(f'[data-llm-job="{job.pk}"]').text_content()
        assert listing.ok and label in row, row
        if succeeded:
            job_page(page, live_server, job)
            assert "$0.50 + 1 call at unknown price" in page.inner_text("main")
