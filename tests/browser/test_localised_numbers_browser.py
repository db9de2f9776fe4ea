"""Numbers as the user's admin language writes them (issue 21 §1), in a real browser.

The same data seen by a user whose Wagtail admin language (Account → Preferences) is German
and by one whose language is English: the job page (counter cards, tokens, cost, rate, and the
same after the page's live poll rewrote them from the server's JSON), the jobs listing
(pages processed, "1,100 cancelled"), "Runs and cost" (the action's figures and its recent
runs) and the report (totals and rows). German groups with "." and writes decimals with ",";
English the other way round; neither leaves a number ungrouped ("6109 ms").
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.browser.screens import log_in
from tests.interactions_factory import make_interactions
from wagtail_llm_actions import jobs
from wagtail_llm_actions.models import LLMJob, LLMJobItem

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

CALLS = 1234  # successful calls of the action, each one page of the job
ERRORS = 6  # failed calls: a success rate with a decimal (99.5 %)
QUEUED = 1500  # the job's pages still to run

#: What each language shows for the same figures.
EXPECTED = {
    "de": {
        "count": "1.234",
        "queued": "1.500",
        "tokens_total": "15.233.730",  # 1234 x 12,345
        "avg_tokens": "12.285",  # 1234 x 12,345 over 1,240 calls (failed ones used none)
        "cost_total": "$1.542,50",  # 1234 x $1.25
        "cost": "$1,25",
        "latency": "6.109 ms",
        "success_rate": "99,5%",
        "rate": re.compile(r"^\d,\d\d Seiten/s$"),  # about 1.2 pages a second
        "eta": re.compile(r"\b1\.\d{3} s$"),  # about 1,200 s left
        "calls": "1.240",
        "cancelled": "1.100 abgebrochen",
        "tokens_in": "10.000",
        "tokens_out": "2.345",
    },
    "en": {
        "count": "1,234",
        "queued": "1,500",
        "tokens_total": "15,233,730",
        "avg_tokens": "12,285",
        "cost_total": "$1,542.50",
        "cost": "$1.25",
        "latency": "6,109 ms",
        "success_rate": "99.5%",
        "rate": re.compile(r"^\d\.\d\d pages/s$"),
        "eta": re.compile(r"^about 1,\d{3} s$"),
        "calls": "1,240",
        "cancelled": "1,100 cancelled",
        "tokens_in": "10,000",
        "tokens_out": "2,345",
    },
}


@pytest.fixture
def running_job(make_post, action, superuser):
    """A job still running: 1,234 pages done (each call 12,345 tokens, $1.25, 6,109 ms),
    1,500 queued, started 1,000 s ago (about 1.2 pages a second)."""
    post = make_post(title="Compost in numbers")
    job = jobs.create_job(action, superuser, [post.pk])
    done = make_interactions(
        CALLS,
        action=action,
        page=post,
        user=superuser,
        prompt_tokens=10000,
        completion_tokens=2345,
        total_tokens=12345,
        cost=Decimal("1.25"),
        latency_ms=6109,
    )
    make_interactions(
        ERRORS,
        action=action,
        page=post,
        user=superuser,
        status="error",
        outcome="",
        error_code="timeout",
        error_message="The model did not answer in time.",
        cost=None,
        prompt_tokens=None,
        completion_tokens=None,
        total_tokens=None,
        latency_ms=6109,
    )
    job.items.all().delete()
    LLMJobItem.objects.bulk_create(
        [LLMJobItem(job=job, page=post, status="succeeded", interaction=i) for i in done]
        + [LLMJobItem(job=job, page=post, status="queued") for _ in range(QUEUED)],
        batch_size=500,
    )
    LLMJob.objects.filter(pk=job.pk).update(
        status="running", started_at=timezone.now() - timedelta(seconds=1000)
    )
    return job


@pytest.fixture
def cancelled_job(make_post, action, superuser):
    """A job cancelled before it ran any of its 1,100 pages."""
    post = make_post(title="Cancelled in numbers")
    job = jobs.create_job(action, superuser, [post.pk])
    job.items.all().delete()
    LLMJobItem.objects.bulk_create(
        [LLMJobItem(job=job, page=post, status="cancelled") for _ in range(1100)],
        batch_size=500,
    )
    LLMJob.objects.filter(pk=job.pk).update(status="cancelled", finished_at=timezone.now())
    return job


def set_language(user, code: str) -> None:
    from wagtail.users.models import UserProfile

    profile = UserProfile.get_for_user(user)
    profile.preferred_language = code
    profile.save(update_fields=["preferred_language"])


def text(page, selector: str) -> str:
    return " ".join(page.locator(selector).first.inner_text().split())


def assert_job_cards(page, want: dict) -> None:
    assert text(page, "[data-llm-job-progress-target=succeeded]") == want["count"]
    assert text(page, "[data-llm-job-progress-target=queued]") == want["queued"]
    assert text(page, "[data-llm-job-progress-target=done]") == want["count"]
    assert text(page, "[data-llm-job-progress-target=tokens]") == want["tokens_total"]
    assert text(page, "[data-llm-job-progress-target=cost]") == want["cost_total"]
    rate = text(page, "[data-llm-job-progress-target=rate]")
    assert want["rate"].match(rate), rate
    eta = text(page, "[data-llm-job-progress-target=eta]")
    assert want["eta"].search(eta), eta


def assert_rows(page, want: dict) -> None:
    """The listing's numeric cells (tokens in, out, cost, latency): a successful call's are
    the expected figures, and no cell holds an ungrouped number ("6109")."""
    rows = [
        [" ".join(c.split()) for c in cells]
        for cells in page.eval_on_selector_all(
            "table.llm-interactions tbody tr",
            "rows => rows.map((r) => [...r.querySelectorAll('td.llm-num')]"
            ".map((c) => c.textContent))",
        )
    ]
    success = [want["tokens_in"], want["tokens_out"], want["cost"], want["latency"]]
    assert success in rows, rows[:3]
    assert not [cell for row in rows for cell in row if re.search(r"\d{4}", cell)], rows[:3]


@pytest.mark.parametrize("language", ["de", "en"])
def test_numbers_follow_the_users_admin_language(
    language, live_server, browser_page, superuser, action, running_job, cancelled_job
):
    want = EXPECTED[language]
    set_language(superuser, language)
    page = browser_page
    log_in(page, live_server)

    # the job page, as rendered
    page.goto(live_server.url + reverse("wagtail_llm_actions_jobs:detail", args=[running_job.pk]))
    page.locator("[data-controller=llm-job-progress]").wait_for()
    assert page.get_attribute("html", "lang") == language
    assert_job_cards(page, want)
    # ... and after a poll rewrote the cards and the listing from the server's JSON (the
    # listing is replaced whole: the mark on its first child goes)
    assert (
        page.get_attribute(
            "[data-controller=llm-job-progress]", "data-llm-job-progress-running-value"
        )
        == "true"
    )
    page.evaluate(
        "document.querySelector('[data-llm-job-progress-target=listing]')"
        ".firstElementChild.dataset.beforePoll = '1'"
    )
    page.locator("[data-before-poll]").wait_for(state="detached")
    assert_job_cards(page, want)
    chip = page.locator("[data-llm-chip=succeeded]").inner_text()
    assert f"({want['count']})" in chip, chip

    # the jobs listing: pages processed, and a plural sentence's count ("1,100 cancelled")
    page.goto(live_server.url + reverse("wagtail_llm_actions_jobs:index"))
    running = text(page, f'[data-llm-job="{running_job.pk}"]')
    assert f"{want['count']} / " in running, running
    cancelled = text(page, f'[data-llm-job="{cancelled_job.pk}"]')
    assert want["cancelled"] in cancelled, cancelled

    # "Runs and cost" of the action
    page.goto(live_server.url + reverse("wagtail_llm_actions_report:action", args=[action.pk]))
    page.locator("[data-llm-action-stats]").wait_for()
    assert text(page, '[data-stat="calls"]') == want["calls"]
    assert text(page, '[data-stat="success-rate"]') == want["success_rate"]
    assert text(page, '[data-stat="latency"]') == want["latency"]
    assert text(page, '[data-stat="tokens"]') == want["avg_tokens"]
    assert text(page, '[data-stat="cost"]') == want["cost_total"]
    assert_rows(page, want)

    # the report: totals and rows
    page.goto(live_server.url + reverse("wagtail_llm_actions_report:index"))
    page.locator("[data-llm-totals]").wait_for()
    assert text(page, '[data-total="calls"]') == want["calls"]
    assert text(page, '[data-total="cost"]') == want["cost_total"]
    assert text(page, '[data-total="latency"]') == want["latency"]
    assert page.locator("table.llm-interactions tbody tr").count() == 50
    assert_rows(page, want)
