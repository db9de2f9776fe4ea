"""An editor run whose worker dies ends: its lease runs out and the editor is told.

The worker's death is played in-process: the task raises :class:`Killed` (a BaseException,
which no ``except Exception`` of the app catches, as SIGKILL or django-q2's timeout leave
nothing to catch), then the item's lease is made to have run out by the database's clock.
The editor's polling (the status endpoint) and a worker that starts then end the item: with
the answer stored before the death, by running it again (stored map-reduce parts reused), or
with a readable failure. (The real-worker versions are in ``tests/test_worker_crash.py``.)
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models.functions import Now
from django.test import Client
from django.urls import reverse

from tests.browser.qworker import queued_task_count, run_queued_tasks
from wagtail_llm_actions import editor
from wagtail_llm_actions.editor import runs as editor_runs
from wagtail_llm_actions.models import LLMInteraction, LLMJobItem, LLMRun

pytestmark = pytest.mark.django_db


#: Claims of an editor item before a worker that keeps dying on it fails it (MAX_CLAIMS).
CLAIMS = 2


class Killed(BaseException):
    """The worker process dies here."""


def killed(*args, **kwargs):
    raise Killed


def start_job(action, page, user):
    job = editor.create_editor_job(action, page, page.get_latest_revision_as_object(), user)
    editor.enqueue_editor_job(job, inline=False)
    return job


def run_and_die(monkeypatch, target, name):
    """Run the queued editor task; it dies in ``target.name``."""
    with monkeypatch.context() as patch:
        patch.setattr(target, name, killed)
        with pytest.raises(Killed):
            run_queued_tasks()


def lease_runs_out(job) -> None:
    """Time passes: the dead worker's lease is over (by the database's clock)."""
    LLMJobItem.objects.filter(job=job).update(lease_expires_at=Now() - timedelta(seconds=1))


def poll(user, job) -> dict:
    client = Client()
    client.force_login(user)
    response = client.get(reverse("wagtail_llm_actions_editor:status", args=[job.pk]))
    assert response.status_code == 200
    return response.json()


def posts(fake_llm) -> int:
    return sum(1 for r in fake_llm.requests if r["method"] == "POST")


def test_a_dead_worker_holds_a_lease_and_its_run_is_run_again(
    post, server_action, fake_llm, superuser, monkeypatch
):
    from wagtail_llm_actions.service import LLMService

    fake_llm.configure(reply="A summary about compost.")
    job = start_job(server_action, post, superuser)
    run_and_die(monkeypatch, LLMService, "run")  # killed during the model call
    item = LLMJobItem.objects.get(job=job)
    assert item.status == "running" and item.lease_expires_at is not None
    assert poll(superuser, job)["state"] == "running"  # alive as far as anyone knows

    lease_runs_out(job)
    assert poll(superuser, job)["state"] == "queued"  # nothing was paid: run again
    assert queued_task_count() == 1
    run_queued_tasks()

    body = poll(superuser, job)
    assert body["state"] == "succeeded"
    assert body["result"]["output"] == "A summary about compost."
    assert LLMJobItem.objects.get(job=job).attempts == 2
    assert LLMInteraction.objects.count() == 1


def test_a_worker_dying_again_ends_the_run_with_a_readable_message(
    post, server_action, superuser, monkeypatch
):
    from wagtail_llm_actions.service import LLMService

    job = start_job(server_action, post, superuser)
    for _claim in range(CLAIMS):
        run_and_die(monkeypatch, LLMService, "run")
        lease_runs_out(job)
        body = poll(superuser, job)

    assert body["state"] == "failed"  # the editor's polling stops here, with the reason
    assert body["result"] == {"code": "worker_lost"}
    assert "background task running this stopped before it finished" in body["message"]
    item = LLMJobItem.objects.select_related("job").get(job=job)
    assert item.status == "failed" and item.job.status == "completed"
    assert item.attempts == CLAIMS
    assert queued_task_count() == 0


def test_an_answer_stored_before_the_worker_died_is_shown_not_paid_again(
    post, server_action, fake_llm, superuser, monkeypatch
):
    fake_llm.configure(reply="A summary about compost.")
    job = start_job(server_action, post, superuser)
    run_and_die(monkeypatch, editor_runs, "editor_result")  # after the answer was stored
    assert posts(fake_llm) == 1

    lease_runs_out(job)
    body = poll(superuser, job)

    assert body["state"] == "succeeded"
    assert body["result"]["output"] == "A summary about compost."
    assert posts(fake_llm) == 1  # shown from the stored answer
    assert queued_task_count() == 0
    interaction = LLMInteraction.objects.get()
    assert body["result"]["interaction"] == interaction.pk
    assert interaction.outcome == "pending"


def test_a_map_reduce_run_again_reuses_the_parts_its_dead_worker_stored(
    make_map_reduce_action, make_long_post, fake_llm, superuser, monkeypatch
):
    from wagtail_llm_actions import providers

    post, _markers = make_long_post(paragraphs=300)
    action = make_map_reduce_action(
        max_tokens=120,
    )
    fake_llm.configure(reply="A part answer.")
    job = start_job(action, post, superuser)
    real_complete = providers.complete

    def complete(request):  # the worker dies as it sends the fourth call
        if posts(fake_llm) == 3:
            raise Killed
        return real_complete(request)

    with monkeypatch.context() as patch:
        patch.setattr(providers, "complete", complete)
        with pytest.raises(Killed):
            run_queued_tasks()
    dead = LLMRun.objects.get()
    lease_runs_out(job)
    assert poll(superuser, job)["state"] == "queued"
    dead.refresh_from_db()
    assert dead.status == "error" and "stopped before it finished" in dead.error_message

    run_queued_tasks()

    assert poll(superuser, job)["state"] == "succeeded"
    run = LLMRun.objects.exclude(pk=dead.pk).get()
    parts = run.interactions.filter(chunk_index__isnull=False)
    assert posts(fake_llm) == 3 + (parts.count() - 3) + 1  # no part was paid for twice
    assert parts.filter(reused_from__isnull=False).count() == 3


def test_a_worker_starting_ends_runs_whose_worker_died_and_schedules_a_check(
    post, server_action, superuser, monkeypatch
):
    from django_q.models import Schedule

    from wagtail_llm_actions import tasks
    from wagtail_llm_actions.service import LLMService

    dead = start_job(server_action, post, superuser)
    alive = start_job(server_action, post, superuser)
    run_and_die(monkeypatch, LLMService, "run")  # both workers die...
    run_and_die(monkeypatch, LLMService, "run")
    LLMJobItem.objects.filter(job=dead).update(attempts=CLAIMS)
    lease_runs_out(dead)  # ...one long ago, one just now

    # A worker starts (its post_spawn signal); nobody polls. (The test's transaction keeps its
    # connection: the worker's own would be closed and reopened.)
    monkeypatch.setattr(tasks, "close_old_connections", lambda: None)
    tasks.recover()

    assert LLMJobItem.objects.get(job=dead).status == "failed"
    assert LLMJobItem.objects.get(job=alive).status == "running"  # its lease still runs
    check = Schedule.objects.get(name="wagtail_llm_actions.editor_leases")
    assert check.func == "wagtail_llm_actions.editor.check_editor_leases"
    assert check.next_run > LLMJobItem.objects.get(job=alive).lease_expires_at

    LLMJobItem.objects.filter(job=alive).update(attempts=CLAIMS)
    lease_runs_out(alive)
    assert editor.check_editor_leases() == 1  # what the schedule runs
    assert LLMJobItem.objects.get(job=alive).status == "failed"
