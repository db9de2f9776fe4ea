"""Budgets, enforced before the call (issue 22 §1)."""

from __future__ import annotations

import datetime
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone

from wagtail_llm_actions import budgets
from wagtail_llm_actions.exceptions import BudgetExceeded
from wagtail_llm_actions.models import (
    LLMBudget,
    LLMBudgetReservation,
    LLMBudgetUsage,
    LLMInteraction,
)
from wagtail_llm_actions.service import LLMService

pytestmark = pytest.mark.django_db

USAGE = {"prompt_tokens": 40, "completion_tokens": 10, "total_tokens": 50}


def run(action, page, user):
    return LLMService().run(action, page, user)


def estimate_of(action, page, user) -> int:
    """The tokens a run reserves (what the dry run says it sends, answer at max tokens)."""
    from wagtail_llm_actions.estimates import count_message_tokens

    prepared = LLMService().prepare(action, page, user)
    return count_message_tokens(prepared.messages) + action.max_tokens


def test_a_run_the_budget_cannot_cover_is_refused_before_anything_is_sent(
    server_action, post, fake_llm, superuser
):
    LLMBudget.objects.create(name="Small", max_tokens=100, period="day")
    with pytest.raises(BudgetExceeded) as caught:
        run(server_action, post, superuser)
    assert fake_llm.request_count == 0
    message = str(caught.value)
    assert "“Small”" in message and "100 tokens" in message and "today" in message
    interaction = LLMInteraction.objects.get()
    assert interaction.status == "error" and interaction.error_code == "budget"
    assert (interaction.total_tokens, interaction.cost) == (0, Decimal(0))
    assert interaction.error_message == message
    assert type(post).objects.get(pk=post.pk).get_latest_revision_as_object().summary == ""


def test_a_run_within_the_budget_settles_what_it_really_used(
    server_action, post, fake_llm, superuser
):
    fake_llm.configure(usage=USAGE)
    budget = LLMBudget.objects.create(name="Monthly", max_tokens=100_000)
    run(server_action, post, superuser)
    run(server_action, post, superuser)
    usage = LLMBudgetUsage.objects.get(budget=budget)
    assert usage.tokens == 100 and usage.period_start == timezone.localdate().replace(day=1)
    assert not LLMBudgetReservation.objects.exists()
    assert budgets.spend()[0]["tokens"] == 100


def test_budgets_apply_only_to_their_action_user_and_group(
    server_action, make_action, post, fake_llm, superuser, editor, django_user_model
):
    other_action = make_action(name="Other", slug="other")
    other_user = django_user_model.objects.create_user("other", "o@example.com", "pw")
    team = Group.objects.create(name="Team")
    editor.groups.add(team)
    LLMBudget.objects.create(name="Other action", action=other_action, max_tokens=1)
    LLMBudget.objects.create(name="Other user", user=other_user, max_tokens=1)
    LLMBudget.objects.create(name="Team", group=team, max_tokens=1)
    run(server_action, post, superuser)  # none applies
    with pytest.raises(BudgetExceeded, match="“Team”"):
        run(server_action, post, editor)  # a member of the team
    assert budgets.applicable(server_action, None) == []
    site = LLMBudget.objects.create(name="Site", max_tokens=1)
    assert budgets.applicable(server_action, None) == [site]
    assert fake_llm.request_count == 1


def test_a_cost_cap_counts_known_prices_and_tokens_count_for_every_model(
    make_action, post, fake_llm, api_key_env, superuser
):
    priced = make_action(
        slug="priced",
        model="openai/gpt-4o-mini",
        api_base=fake_llm.url,
        api_key_name=api_key_env,
        max_tokens=100,
    )
    unpriced = make_action(
        slug="unpriced",
        model="openai/fake-model",
        api_base=fake_llm.url,
        api_key_name=api_key_env,
        max_tokens=100,
    )
    LLMBudget.objects.create(name="Cents", max_cost=Decimal("0.000001"))
    with pytest.raises(BudgetExceeded, match="“Cents”"):
        run(priced, post, superuser)
    run(unpriced, post, superuser)  # no known price: a cost cap does not hold it back
    assert fake_llm.request_count == 1


def test_the_period_rolls_over(server_action, post, fake_llm, superuser):
    budget = LLMBudget.objects.create(name="Daily", max_tokens=5000, period="day")
    yesterday = timezone.localdate() - datetime.timedelta(days=1)
    LLMBudgetUsage.objects.create(budget=budget, period_start=yesterday, tokens=5000)
    run(server_action, post, superuser)
    assert fake_llm.request_count == 1


def test_a_budget_lowered_below_its_spend_stops_runs_and_breaks_nothing(
    server_action, post, fake_llm, superuser
):
    fake_llm.configure(usage=USAGE)
    budget = LLMBudget.objects.create(name="Monthly", max_tokens=100_000)
    run(server_action, post, superuser)
    budget.max_tokens = 10
    budget.save()
    with pytest.raises(BudgetExceeded, match="0 tokens"):
        run(server_action, post, superuser)
    assert budgets.spend()[0]["share"] == 5.0  # 50 used of 10
    assert fake_llm.request_count == 1


def test_a_dead_workers_reservation_lapses(server_action, post, fake_llm, superuser):
    needed = estimate_of(server_action, post, superuser)
    budget = LLMBudget.objects.create(name="Tight", max_tokens=needed + 10)
    usage = LLMBudgetUsage.objects.create(budget=budget, period_start=budgets.period_start(budget))
    held = LLMBudgetReservation.objects.create(
        usage=usage, tokens=needed, expires_at=timezone.now() + datetime.timedelta(minutes=1)
    )
    with pytest.raises(BudgetExceeded):
        run(server_action, post, superuser)
    LLMBudgetReservation.objects.filter(pk=held.pk).update(
        expires_at=timezone.now() - datetime.timedelta(seconds=1)
    )
    run(server_action, post, superuser)
    assert fake_llm.request_count == 1


def test_reservations_follow_the_database_clock_not_the_hosts(
    server_action, post, fake_llm, superuser, monkeypatch
):
    """A host whose clock runs an hour ahead still counts another host's live reservation
    (it does not overspend), and its own reservation lapses on the database's clock."""
    from types import SimpleNamespace

    needed = estimate_of(server_action, post, superuser)
    budget = LLMBudget.objects.create(name="Tight", max_tokens=needed + 10, period="month")
    usage = LLMBudgetUsage.objects.create(budget=budget, period_start=budgets.period_start(budget))
    real_now = timezone.now()
    LLMBudgetReservation.objects.create(
        usage=usage, tokens=needed, expires_at=real_now + datetime.timedelta(minutes=1)
    )
    ahead = real_now + datetime.timedelta(hours=1)
    monkeypatch.setattr(timezone, "now", lambda: ahead)
    with pytest.raises(BudgetExceeded):
        run(server_action, post, superuser)
    assert fake_llm.request_count == 0
    assert budgets.spend([budget])[0]["tokens"] == needed

    LLMBudgetReservation.objects.all().delete()
    held = budgets.reserve([budget], SimpleNamespace(timeout=30), tokens=5, cost=None)
    expires = LLMBudgetReservation.objects.get(pk=held.ids[0]).expires_at
    margin = datetime.timedelta(seconds=30 + budgets.RESERVATION_MARGIN)
    assert real_now + margin - datetime.timedelta(seconds=5) < expires
    assert expires < real_now + margin + datetime.timedelta(minutes=5)


def test_bad_budgets_are_clear_errors():
    with pytest.raises(ValidationError, match="token limit, a cost limit or both"):
        LLMBudget(name="Nothing").full_clean()
    with pytest.raises(ValidationError) as caught:
        LLMBudget(name="Negative", max_cost=Decimal("-1")).full_clean()
    assert "max_cost" in caught.value.message_dict
    with pytest.raises(ValidationError) as caught:
        LLMBudget(name="Negative", max_tokens=-5).full_clean()
    assert "max_tokens" in caught.value.message_dict


def test_the_command_fails_when_the_budget_refuses(server_action, post, fake_llm, superuser):
    LLMBudget.objects.create(name="Small", max_tokens=10)
    out, err = StringIO(), StringIO()
    with pytest.raises((CommandError, SystemExit)):
        call_command(
            "run_llm_action", server_action.slug, "--page", str(post.pk), stdout=out, stderr=err
        )
    assert "“Small”" in out.getvalue() + err.getvalue()
    assert fake_llm.request_count == 0


def test_without_budgets_a_run_asks_one_query_more(server_action, post, fake_llm, superuser):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    run(server_action, post, superuser)
    with CaptureQueriesContext(connection) as queries:
        run(server_action, post, superuser)
    budget_queries = [q for q in queries.captured_queries if "llmbudget" in q["sql"]]
    assert len(budget_queries) == 1


# -- seen: the listing and the dashboard notice ------------------------------------------------


def spent(budget, tokens):
    LLMBudgetUsage.objects.update_or_create(
        budget=budget, period_start=budgets.period_start(budget), defaults={"tokens": tokens}
    )


def test_the_budgets_listing_shows_each_budgets_use_in_fixed_queries(
    client, superuser, django_assert_max_num_queries
):
    client.force_login(superuser)
    first = LLMBudget.objects.create(name="Marketing", max_tokens=1000)
    spent(first, 450)
    response = client.get("/admin/llm-actions/budgets/")
    assert response.status_code == 200
    assert "450 of 1,000 tokens (45%)" in response.content.decode()
    client.get("/admin/llm-actions/budgets/")
    for n in range(10):
        spent(LLMBudget.objects.create(name=f"Team {n}", max_cost=Decimal("5")), 0)
    with django_assert_max_num_queries(30) as few:
        client.get("/admin/llm-actions/budgets/")
    LLMBudget.objects.bulk_create(LLMBudget(name=f"More {n}", max_tokens=10) for n in range(10))
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get("/admin/llm-actions/budgets/")


def test_the_admin_form_refuses_a_budget_without_a_cap(client, superuser):
    client.force_login(superuser)
    response = client.post(
        "/admin/llm-actions/budgets/add/", {"name": "Nothing", "period": "month", "enabled": "on"}
    )
    assert response.status_code == 200
    assert "a budget without either caps nothing" in response.content.decode()
    assert not LLMBudget.objects.exists()


def test_the_dashboard_warns_budget_managers_at_80_percent(client, superuser, editor):
    budget = LLMBudget.objects.create(name="Marketing", max_tokens=1000)
    spent(budget, 790)
    client.force_login(superuser)
    assert "AI budgets nearly used" not in client.get("/admin/").content.decode()
    spent(budget, 800)
    html = client.get("/admin/").content.decode()
    assert "AI budgets nearly used" in html and "Marketing" in html
    client.force_login(editor)  # edits pages, manages no budget
    assert "AI budgets nearly used" not in client.get("/admin/").content.decode()
