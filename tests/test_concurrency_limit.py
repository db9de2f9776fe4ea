"""The provider's concurrency limit holds across runners and jobs: the fake server never
answers more calls at once than ``CONCURRENCY`` allows, while every page is written.

Runs on the shared test database (threads with their own connections); on SQLite a plain
file with Django's defaults.
"""

from __future__ import annotations

import pytest

from tests.threads import in_thread, join_checked
from wagtail_llm_actions import jobs
from wagtail_llm_actions.models import LLMProviderSlots

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_runners_of_two_jobs_never_exceed_the_provider_limit(
    shared_db, make_post, server_action, intro_action, fake_llm, superuser, settings
):
    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "CONCURRENCY": {"*": 3}}
    fake_llm.configure(latency=0.1)
    posts = [make_post() for _ in range(10)]
    ids = [p.pk for p in posts]
    summary_job = jobs.create_job(server_action, superuser, ids, force=True)
    intro_job = jobs.create_job(intro_action, superuser, ids, force=True)
    assert summary_job.options["concurrency"] == 3

    # A runner and a helper for one job, a runner for the other: each would take 2 slots.
    runners = [
        in_thread(lambda: jobs.run_job(summary_job.pk, share=2)),
        in_thread(lambda: jobs.run_job(summary_job.pk, share=2, helper=True)),
        in_thread(lambda: jobs.run_job(intro_job.pk, share=2)),
    ]
    for thread in runners:
        join_checked(thread)

    for job in (summary_job, intro_job):
        job.refresh_from_db()
        assert job.status == "completed"
        assert set(job.items.values_list("status", flat=True)) == {"succeeded"}
    assert fake_llm.request_count == 20
    assert 1 <= fake_llm.max_in_flight <= 3
    assert not LLMProviderSlots.objects.exists()  # every runner gave its slots back
