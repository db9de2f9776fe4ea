"""Budgets and the response cache, seen (issue 22 §1, §4): the report's "Spend against
budgets" and its cache filter, a budget lowered below its spend, the job page's cache count."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.interactions_factory import make_interactions
from wagtail_llm_actions import budget_panels, budgets, jobs
from wagtail_llm_actions.exceptions import BudgetExceeded
from wagtail_llm_actions.models import LLMBudget, LLMBudgetUsage, LLMInteraction
from wagtail_llm_actions.service import LLMService

pytestmark = pytest.mark.django_db

REPORT_URL = "/admin/llm-actions/report/"


def spent(budget, tokens, cost=Decimal(0)):
    LLMBudgetUsage.objects.update_or_create(
        budget=budget,
        period_start=budgets.period_start(budget),
        defaults={"tokens": tokens, "cost": cost},
    )


def test_the_report_shows_spend_against_every_budget(client, superuser):
    monthly = LLMBudget.objects.create(name="Marketing", max_tokens=1000)
    daily = LLMBudget.objects.create(name="Daily dollars", max_cost=Decimal("2"), period="day")
    spent(monthly, 450)
    spent(daily, 0, Decimal("3"))
    client.force_login(superuser)
    html = client.get(REPORT_URL).content.decode()
    assert "Spend against budgets" in html
    assert "450 of 1,000 tokens (45%)" in html
    assert "Month" in html and "Day" in html
    assert "150%" in html and "Over budget: runs are refused" in html


def test_the_spend_section_is_only_for_budget_managers(client, editor):
    LLMBudget.objects.create(name="Marketing", max_tokens=1000)
    client.force_login(editor)
    response = client.get(REPORT_URL)
    assert "Spend against budgets" not in response.content.decode()


def test_the_spend_section_asks_two_queries_however_many_budgets(
    superuser, make_action, django_user_model
):
    team = Group.objects.create(name="Team")
    LLMBudget.objects.create(name="One", max_tokens=10)

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            rows = budget_panels.spend_against_budgets(superuser)
            for row in rows:  # what the template reads
                row["budget"].scope_label(), row["budget"].spend_label()
        return len(queries.captured_queries)

    assert count() == 2
    for n in range(6):
        user = django_user_model.objects.create_user(f"u{n}", f"u{n}@example.com", "pw")
        budget = LLMBudget.objects.create(
            name=f"B{n}",
            max_tokens=100,
            action=make_action(slug=f"a{n}", name=f"A{n}"),
            user=user,
            group=team,
        )
        spent(budget, 10 * n)
    assert count() == 2


def test_the_report_page_with_budgets_asks_no_query_per_budget(
    admin_client, django_assert_max_num_queries
):
    LLMBudget.objects.create(name="One", max_tokens=10)
    admin_client.get(REPORT_URL)
    with CaptureQueriesContext(connection) as few:
        admin_client.get(REPORT_URL)
    for n in range(8):
        spent(LLMBudget.objects.create(name=f"More {n}", max_tokens=10 + n), n)
    with django_assert_max_num_queries(len(few.captured_queries)):
        admin_client.get(REPORT_URL)


def test_the_report_filters_answers_from_the_response_cache(admin_client, post, action):
    paid = make_interactions(2, action=action, page=post)
    free = make_interactions(1, action=action, page=post, cached=True)
    html = admin_client.get(REPORT_URL + "?cached=yes").content.decode()
    assert f'data-interaction="{free[0].pk}"' in html
    assert f'data-interaction="{paid[0].pk}"' not in html
    html = admin_client.get(REPORT_URL + "?cached=no").content.decode()
    assert f'data-interaction="{free[0].pk}"' not in html
    assert all(f'data-interaction="{row.pk}"' in html for row in paid)
    assert "From the response cache" in admin_client.get(REPORT_URL).content.decode()


def test_a_budget_lowered_below_its_spend_refuses_runs_and_the_listing_says_so(
    client, superuser, server_action, post, fake_llm
):
    budget = LLMBudget.objects.create(name="Marketing", max_tokens=100_000)
    spent(budget, 500)
    budget.max_tokens = 100
    budget.save()
    with pytest.raises(BudgetExceeded, match="“Marketing” has 0 tokens left"):
        LLMService().run(server_action, post, superuser)
    assert fake_llm.request_count == 0
    client.force_login(superuser)
    html = client.get("/admin/llm-actions/budgets/").content.decode()
    assert "500 of 100 tokens (500%) · over budget: runs are refused" in html
    edit = client.get(f"/admin/llm-actions/budgets/edit/{budget.pk}/")
    assert edit.status_code == 200


def test_the_job_page_counts_and_marks_pages_answered_from_the_cache(
    client, superuser, server_action, make_post, fake_llm
):
    from tests.conftest import make_body
    from wagtail_llm_actions.views.jobs import job_url

    server_action.use_cache = True
    server_action.save()
    body = make_body(paragraph="Worms like it damp.")
    first = make_post(title="Same", body=body, intro="Same")
    second = make_post(title="Same", body=body, intro="Same")
    LLMService().run(server_action, first, superuser)  # fills the cache
    job = jobs.create_job(server_action, superuser, [second.pk])
    assert jobs.run_job(job.pk) == "completed"
    assert fake_llm.request_count == 1
    assert LLMInteraction.objects.filter(page=second, cached=True).count() == 1
    client.force_login(superuser)
    html = client.get(job_url(job.pk)).content.decode()
    assert 'data-llm-job-cached data-count="1"' in html
    assert html.count("data-llm-item-cached") == 1
