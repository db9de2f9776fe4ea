"""The bulk confirmation screen's budget line in a real browser (issue 22 §1): the estimate
against each budget that applies, Start refused while it does not fit, and "Run only the N
pages that fit" chosen on the form, the preview following the choice; a job a budget
paused, its notice and its Resume button.

Drives Debian's ``chromium`` through Playwright against ``live_server``. Screenshots:
``test-artifacts/bulk-confirm-budget.png``, ``test-artifacts/job-paused.png``.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.urls import reverse

from tests.browser.screens import log_in, save_screenshot
from wagtail_llm_actions import jobs
from wagtail_llm_actions.models import LLMBudget, LLMJob

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


@pytest.fixture(autouse=True)
def no_inline_runs(settings):
    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "RUN_INLINE": False}


def test_the_budget_line_refuses_start_until_only_the_pages_that_fit_are_chosen(
    live_server, browser_page, make_post, action, superuser
):
    posts = [make_post(title=f"Compost note {n}") for n in range(1, 5)]
    plan = jobs.plan_job(action, superuser, [p.pk for p in posts])
    each = plan.estimate.total_tokens / plan.will_run
    LLMBudget.objects.create(name="Monthly tokens", max_tokens=int(each * 2.5))
    page = browser_page
    log_in(page, live_server)
    base = reverse("wagtail_bulk_action", args=("wagtailcore", "page", "run_llm_action"))
    params = [("id", p.pk) for p in posts] + [("next", "/admin/pages/"), ("action", action.pk)]
    page.goto(f"{live_server.url}{base}?{urlencode(params)}")

    line = page.locator("[data-llm-budget-line]")
    line.wait_for(state="visible")
    assert "Monthly tokens" in line.inner_text() and "Month" in line.inner_text()
    assert "No: 2 pages fit" in line.inner_text()
    assert page.locator("[data-llm-budget-problem]").is_visible()
    assert page.locator("[data-llm-start]").is_disabled()
    choice = page.get_by_label("Run only the 2 pages that fit")
    assert choice.is_visible() and not choice.is_checked()

    choice.check()  # the preview follows the form: Start is offered for the two pages
    page.wait_for_function(
        "() => document.querySelector('[data-llm-within-budget]')?.checked"
        " && !document.querySelector('[data-llm-start]').disabled"
    )
    assert page.locator("[data-llm-budget-problem]").count() == 0
    save_screenshot(page, "bulk-confirm-budget", full_page=False)

    page.locator("[data-llm-start]").click()
    page.wait_for_url(f"{live_server.url}/admin/pages/")
    job = LLMJob.objects.get()
    assert job.items.filter(status="queued").count() == 2
    assert job.items.filter(status="skipped", skip_reason="over_budget").count() == 2


def test_a_paused_job_says_why_and_resumes_from_its_page(
    live_server, browser_page, make_post, server_action, fake_llm, superuser, monkeypatch
):
    from wagtail_llm_actions.jobs import pauses

    queued: list[int] = []
    monkeypatch.setattr(pauses, "enqueue_job", lambda job, **kw: queued.append(job.pk))
    fake_llm.configure(usage={"prompt_tokens": 900, "completion_tokens": 100, "total_tokens": 1000})
    posts = [make_post(title=f"Compost note {n}") for n in range(1, 4)]
    budget = LLMBudget.objects.create(name="Monthly tokens", max_tokens=1100)
    job = jobs.create_job(server_action, superuser, [p.pk for p in posts])
    assert jobs.run_job(job.pk, threads=1) == "paused"

    page = browser_page
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/llm-actions/jobs/{job.pk}/")
    notice = page.locator("[data-llm-job-paused]")
    notice.wait_for(state="visible")
    assert "Paused: budget “Monthly tokens” is exhausted" in notice.inner_text()
    assert page.locator("[data-llm-job-resume]").count() == 0
    assert page.locator('[data-llm-job-progress-target="queued"]').inner_text() == "2"
    save_screenshot(page, "job-paused", full_page=False)

    LLMBudget.objects.filter(pk=budget.pk).update(max_tokens=1_000_000)
    page.reload()
    page.locator("[data-llm-job-resume]").click()
    page.locator("[data-llm-job-paused]").wait_for(state="detached")
    assert queued == [job.pk]
