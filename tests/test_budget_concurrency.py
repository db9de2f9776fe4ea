"""Budgets under real concurrency: 8 runs at once against a cap that fits 3 (issue 22 §1).

The bound: a run reserves its estimate (prompt tokens + the answer at max tokens) before its
call, so no more calls start than the cap covers; overshoot is at most what the calls in
flight use beyond their estimates (here none: the fake server answers within max tokens).
"""

from __future__ import annotations

import threading

import pytest
from django.db import connections

from tests.threads import in_thread, join_checked
from wagtail_llm_actions.estimates import count_message_tokens
from wagtail_llm_actions.exceptions import BudgetExceeded
from wagtail_llm_actions.models import LLMBudget, LLMBudgetReservation, LLMBudgetUsage
from wagtail_llm_actions.service import LLMService

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_eight_concurrent_runs_against_a_cap_that_fits_three(
    shared_db, make_post, server_action, fake_llm, superuser
):
    fake_llm.configure(
        latency=0.5, usage={"prompt_tokens": 40, "completion_tokens": 10, "total_tokens": 50}
    )
    posts = [make_post(title="Same length") for _ in range(8)]
    prepared = LLMService().prepare(server_action, posts[0], superuser)
    estimate = count_message_tokens(prepared.messages) + server_action.max_tokens
    budget = LLMBudget.objects.create(name="Three calls", max_tokens=estimate * 3 + estimate // 2)
    start = threading.Barrier(8)
    outcomes: list[str] = []

    def one(page):
        def go():
            try:
                start.wait()
                LLMService().run(server_action, page, superuser)
                outcomes.append("ran")
            except BudgetExceeded:
                outcomes.append("refused")
            finally:
                connections.close_all()

        return go

    threads = [in_thread(one(page)) for page in posts]
    for thread in threads:
        join_checked(thread)
    assert sorted(outcomes) == ["ran"] * 3 + ["refused"] * 5
    assert fake_llm.request_count == 3
    usage = LLMBudgetUsage.objects.get(budget=budget)
    assert usage.tokens == 150  # what the three calls really used
    assert not LLMBudgetReservation.objects.exists()
