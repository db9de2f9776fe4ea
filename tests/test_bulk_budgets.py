"""The bulk confirmation screen's estimate against every budget that applies (issue 22 §1):
refused when it does not fit, or limited to the pages that fit, the rest listed."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from tests.test_bulk import bulk_url
from wagtail_llm_actions import budgets, jobs
from wagtail_llm_actions.models import LLMBudget, LLMBudgetUsage, LLMJob

pytestmark = pytest.mark.django_db


@pytest.fixture
def posts(make_post):
    return [make_post() for _ in range(4)]


def per_page(action, user, posts) -> float:
    plan = jobs.plan_job(action, user, [p.pk for p in posts])
    return plan.estimate.total_tokens / plan.will_run


def test_the_preview_shows_the_estimate_against_every_budget(client, posts, action, editor):
    each = per_page(action, editor, posts)
    team = Group.objects.create(name="Team")
    editor.groups.add(team)
    LLMBudget.objects.create(name="Whole site", max_tokens=1_000_000)
    tight = LLMBudget.objects.create(
        name="Team tokens", group=team, max_tokens=int(each * 2.5), period="day"
    )
    LLMBudget.objects.create(
        name="Switched off", user=None, action=None, max_tokens=5, enabled=False
    )
    client.force_login(editor)
    html = client.post(bulk_url(posts), {"action": action.pk, "preview": "1"}).content.decode()
    assert 'data-llm-budget-fit="over"' in html
    assert html.count("data-llm-budget-line=") == 2  # the disabled budget does not apply
    assert "Whole site" in html and "Team tokens" in html and "Switched off" not in html
    assert "Month" in html and "Day" in html
    assert f"{tight.max_tokens:,} tokens" in html
    assert "No: 2 pages fit" in html
    assert "Run only the 2 pages that fit" in html
    assert "The estimate does not fit the budget “Team tokens”" in html
    assert "data-llm-start disabled" in html


def test_start_is_refused_when_the_estimate_does_not_fit(client, posts, action, editor):
    LLMBudget.objects.create(name="Small", max_tokens=10)
    client.force_login(editor)
    response = client.post(bulk_url(posts), {"action": action.pk})
    html = response.content.decode()
    assert response.status_code == 200 and not LLMJob.objects.exists()
    assert "The estimate does not fit the budget “Small”" in html
    assert "nothing was started" in html
    assert "Run only" not in html  # not even one page fits


def test_run_only_the_pages_that_fit_lists_the_rest_as_not_started(client, posts, action, editor):
    each = per_page(action, editor, posts)
    budget = LLMBudget.objects.create(name="Monthly", max_tokens=int(each * 3.5))
    LLMBudgetUsage.objects.create(
        budget=budget, period_start=budgets.period_start(budget), tokens=int(each)
    )
    client.force_login(editor)
    url = bulk_url(posts)
    preview = client.post(url, {"action": action.pk, "within_budget": "on", "preview": "1"})
    html = preview.content.decode()
    assert "Run only the 2 pages that fit" in html and "data-llm-within-budget checked" in html
    assert "data-llm-start disabled" not in html
    response = client.post(url, {"action": action.pk, "within_budget": "on"})
    assert response.status_code == 302
    job = LLMJob.objects.get()
    assert job.items.filter(status="queued").count() == 2
    over = job.items.filter(status="skipped", skip_reason="over_budget")
    assert over.count() == 2
    assert all("the budget “Monthly” had" in item.error for item in over)
    first_two = sorted(p.pk for p in posts)[:2]
    assert sorted(job.items.filter(status="queued").values_list("page_id", flat=True)) == (
        first_two
    )
    page = client.get(f"/admin/llm-actions/jobs/{job.pk}/?status=skipped").content.decode()
    assert "Not started: over the budget" in page and "the budget “Monthly” had" in page
    assert "2 pages were not started: they did not fit the budgets" in page


def test_a_run_that_fits_starts_as_before(client, posts, action, editor):
    LLMBudget.objects.create(name="Roomy", max_tokens=10_000_000)
    client.force_login(editor)
    html = client.post(bulk_url(posts), {"action": action.pk, "preview": "1"}).content.decode()
    assert 'data-llm-budget-fit="fits"' in html and "Run only" not in html
    assert client.post(bulk_url(posts), {"action": action.pk}).status_code == 302
    assert LLMJob.objects.get().items.filter(status="queued").count() == 4
