"""A paid answer is never lost: it is stored before the draft write, a busy database retries
the write (never the call), and an answer that could not be written is applied later with
zero model calls (service, job engine, job page button, command)."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import OperationalError
from django.urls import reverse
from wagtail.models import PageLogEntry

from wagtail_llm_actions import jobs
from wagtail_llm_actions.exceptions import WriteFailed
from wagtail_llm_actions.models import LLMInteraction
from wagtail_llm_actions.service import LOG_ACTION, LLMService

# Transactional: retries happen only for an outermost transaction, as in production.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture(autouse=True)
def fast(settings, monkeypatch):
    settings.WAGTAIL_LLM_ACTIONS = {
        **settings.WAGTAIL_LLM_ACTIONS,
        "RETRY_BACKOFF": 0,
        "MAX_ATTEMPTS": 2,
    }
    monkeypatch.setattr("wagtail_llm_actions.db.FIRST_BACKOFF", 0.001)


def drafts(page) -> int:
    return PageLogEntry.objects.filter(page=page, action=LOG_ACTION).count()


def busy_draft_saves(monkeypatch, times: int | None):
    """Make the draft save raise SQLite's "database is locked" ``times`` times (None: always)."""
    from wagtail_llm_actions.run import drafts as run_drafts

    original = run_drafts.save_draft
    calls = {"n": 0}

    def flaky(working_obj, user, action, **kwargs):
        calls["n"] += 1
        if times is None or calls["n"] <= times:
            raise OperationalError("database is locked")
        return original(working_obj, user, action, **kwargs)

    monkeypatch.setattr("wagtail_llm_actions.run.drafts.save_draft", flaky)
    return calls


def test_a_busy_database_retries_the_write_not_the_call(post, server_action, fake_llm, monkeypatch):
    fake_llm.configure(reply="Worms like it damp.")
    attempts = busy_draft_saves(monkeypatch, times=3)
    interaction = LLMService().run(server_action, post)
    assert attempts["n"] == 4  # three busy writes, then the one that landed
    assert fake_llm.request_count == 1  # one paid call
    assert drafts(post) == 1  # one draft
    assert type(post).objects.get(pk=post.pk).get_latest_revision_as_object().summary == (
        "Worms like it damp."
    )
    assert interaction.status == "success"


def test_an_answer_whose_write_fails_is_stored_then_applied_without_a_call(
    post, server_action, fake_llm, monkeypatch, superuser
):
    fake_llm.configure(reply="Stored, not lost.")
    busy_draft_saves(monkeypatch, times=None)
    with pytest.raises(WriteFailed) as raised:
        LLMService().run(server_action, post, superuser)
    stored = LLMInteraction.objects.get()
    assert raised.value.interaction.pk == stored.pk
    assert stored.status == "answered"
    assert stored.response_text == "Stored, not lost."
    assert stored.output_value == "Stored, not lost."
    assert stored.total_tokens and stored.error_code == "write_failed"
    assert "Apply stored answer" in stored.error_message
    assert drafts(post) == 0

    monkeypatch.undo()
    LLMService().apply_stored(stored, superuser)
    stored.refresh_from_db()
    assert stored.status == "success" and stored.outcome == "drafted"
    assert fake_llm.request_count == 1  # no second call
    assert drafts(post) == 1
    draft = type(post).objects.get(pk=post.pk).get_latest_revision_as_object()
    assert draft.summary == "Stored, not lost."


def test_a_job_item_whose_write_fails_is_finished_from_the_job_page(
    client, make_post, server_action, fake_llm, monkeypatch, superuser
):
    posts = [make_post() for _ in range(2)]
    job = jobs.create_job(server_action, superuser, [p.pk for p in posts], force=True)
    busy_draft_saves(monkeypatch, times=None)
    jobs.run_job(job.pk, threads=1)
    items = list(job.items.select_related("interaction"))
    assert {i.status for i in items} == {"failed"}
    assert all(i.interaction.status == "answered" for i in items)
    assert all("Apply stored answer" in i.error for i in items)
    assert fake_llm.request_count == 2  # the retry wrote again, it did not call again

    client.force_login(superuser)
    url = reverse("wagtail_llm_actions_jobs:detail", args=[job.pk])
    page = client.get(url).content.decode()
    assert "Apply 2 stored answers" in page

    monkeypatch.undo()
    apply_url = reverse("wagtail_llm_actions_jobs:apply_stored", args=[job.pk])
    assert client.get(apply_url).status_code == 405  # POST only
    from django_q.brokers import get_broker

    from tests.workers import drain

    response = client.post(apply_url)
    assert response.status_code == 302
    drain(get_broker())
    job.refresh_from_db()
    assert job.status == "completed"
    assert set(job.items.values_list("status", flat=True)) == {"succeeded"}
    assert fake_llm.request_count == 2  # zero new calls
    assert [drafts(p) for p in posts] == [1, 1]


def test_apply_stored_needs_the_job_permission(client, post, server_action, editor, superuser):
    job = jobs.create_job(server_action, superuser, [post.pk])
    client.force_login(editor)  # may edit the page, but did not start this job
    response = client.post(reverse("wagtail_llm_actions_jobs:apply_stored", args=[job.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("wagtailadmin_home")  # Wagtail's refusal


def test_command_applies_stored_answers(make_post, server_action, fake_llm, monkeypatch, superuser):
    posts = [make_post() for _ in range(2)]
    job = jobs.create_job(server_action, superuser, [p.pk for p in posts], force=True)
    busy_draft_saves(monkeypatch, times=None)
    jobs.run_job(job.pk, threads=1)
    monkeypatch.undo()
    call_command("run_llm_action", "--apply-stored", str(job.pk))
    assert set(job.items.values_list("status", flat=True)) == {"succeeded"}
    assert fake_llm.request_count == 2
    assert [drafts(p) for p in posts] == [1, 1]
