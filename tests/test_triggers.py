"""Triggers: actions that run by themselves on publish, on a changed source, or on a
schedule, through the job engine, as drafts, once per burst of saves."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule
from wagtail.models import PageLogEntry

from tests.conftest import make_body
from tests.threads import in_thread, join_checked
from tests.workers import drain
from wagtail_llm_actions import jobs, triggers
from wagtail_llm_actions.models import (
    ActionTrigger,
    ItemStatus,
    JobKind,
    LLMAction,
    LLMInteraction,
    LLMJob,
)
from wagtail_llm_actions.service import LOG_ACTION


def drafts(page) -> int:
    return PageLogEntry.objects.filter(page=page, action=LOG_ACTION).count()


def trigger_jobs():
    return LLMJob.objects.filter(kind=JobKind.TRIGGER)


def latest(page):
    return type(page.specific).objects.get(pk=page.pk).get_latest_revision_as_object()


def edit(page, user, *, paragraph=None, publish=False, **fields):
    """Save a new revision of ``page`` from its newest one (as the editor does), changing
    the body's paragraph and/or other fields; publish it if asked."""
    obj = latest(page)
    if paragraph is not None:
        obj.body = make_body(paragraph=paragraph)
    for name, value in fields.items():
        setattr(obj, name, value)
    revision = obj.save_revision(user=user)
    if publish:
        revision.publish(user=user)
    return revision


def set_trigger(action, trigger, delay=0, **fields):
    action.trigger = trigger
    action.trigger_delay = delay
    for name, value in fields.items():
        setattr(action, name, value)
    action.full_clean()
    action.save()
    return action


@pytest.mark.django_db
def test_publish_triggers_one_draft_that_is_never_published(
    post, server_action, fake_llm, superuser, django_capture_on_commit_callbacks
):
    fake_llm.configure(reply="A short summary.")
    set_trigger(server_action, ActionTrigger.ON_PUBLISH)
    with django_capture_on_commit_callbacks(execute=True):
        edit(post, superuser, paragraph="Worms eat the peel.")  # a draft save: not a publish
    assert not trigger_jobs().exists()

    with django_capture_on_commit_callbacks(execute=True):
        edit(post, superuser, paragraph="Worms eat the peel.", publish=True)
    assert drain() == ["completed"]  # the worker task queued by the trigger
    assert fake_llm.request_count == 1
    interaction = LLMInteraction.objects.get()
    assert interaction.trigger == "on_publish"
    assert interaction.get_trigger_display() == "On publish"
    assert drafts(post) == 1
    live = type(post).objects.get(pk=post.pk)
    assert live.has_unpublished_changes  # the answer waits in a draft
    assert live.summary != "A short summary."
    assert latest(post).summary == "A short summary."


@pytest.mark.django_db
def test_ten_saves_in_two_seconds_make_one_call(
    post, server_action, fake_llm, superuser, django_capture_on_commit_callbacks
):
    # Ten saves 0.2 s apart (2 s of editing), each well within the 5 s delay of the one
    # before: however long a save takes on a busy machine, no gap reaches the delay.
    set_trigger(server_action, ActionTrigger.ON_SOURCE_CHANGE, delay=5)
    for n in range(10):
        with django_capture_on_commit_callbacks(execute=True):  # each save commits
            edit(post, superuser, paragraph=f"Version {n} of the text about compost.")
        time.sleep(0.2)
    job = trigger_jobs().get()
    item = job.items.get()
    assert item.status == ItemStatus.QUEUED and item.not_before > timezone.now()
    pickup = Schedule.objects.get(name=triggers.pickup_name(job.pk))
    assert pickup.schedule_type == Schedule.ONCE and pickup.next_run > timezone.now()

    # Nothing runs before the delay is over; then the worker runs the newest text once.
    assert jobs.claim_item(job, "early:1", lease=60) is None
    assert jobs.run_job(job.pk) == "completed"
    assert fake_llm.request_count == 1
    assert "Version 9 of the text" in str(fake_llm.requests[0]["json"]["messages"])
    assert drafts(post) == 1
    assert trigger_jobs().count() == 1  # the run's own draft triggered nothing


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_delayed_item_is_picked_up_by_its_schedule(post, server_action, fake_llm, superuser):
    """django-q2's scheduler (it closes the connection: no test transaction) queues the
    worker once the item is due."""
    from django_q.scheduler import scheduler

    set_trigger(server_action, ActionTrigger.ON_SOURCE_CHANGE, delay=1)
    edit(post, superuser, paragraph="A new paragraph.")
    job = trigger_jobs().get()
    # Waiting: the periodic check does not send a worker to wait idle.
    assert jobs.recover_jobs(orphaned=True) == 0
    time.sleep(1.1)
    Schedule.objects.filter(name=triggers.pickup_name(job.pk)).update(
        next_run=timezone.now() - timedelta(seconds=1)
    )
    scheduler()
    # Due now: the periodic check would queue a worker too, if the schedule was lost.
    assert jobs.recover_jobs(orphaned=True) == 1
    assert drain() == ["completed", "gone"]
    assert fake_llm.request_count == 1
    assert not Schedule.objects.filter(name=triggers.pickup_name(job.pk)).exists()


@pytest.mark.django_db
def test_an_unchanged_source_never_runs(
    post, server_action, fake_llm, superuser, django_capture_on_commit_callbacks
):
    set_trigger(server_action, ActionTrigger.ON_SOURCE_CHANGE)
    with django_capture_on_commit_callbacks(execute=True):
        edit(post, superuser, paragraph="Changed once.")
    assert drain() == ["completed"]
    assert fake_llm.request_count == 1

    with django_capture_on_commit_callbacks(execute=True):
        edit(post, superuser, intro="Another intro")  # not in the prompt: same inputs
        edit(post, superuser, publish=True)
    assert trigger_jobs().count() == 1
    assert drain() == []
    assert fake_llm.request_count == 1


@pytest.mark.django_db
def test_a_page_with_a_queued_item_gets_no_second(
    post, server_action, fake_llm, superuser, django_capture_on_commit_callbacks
):
    bulk = jobs.create_job(server_action, superuser, [post.pk])  # queued, not run yet
    set_trigger(server_action, ActionTrigger.ON_SOURCE_CHANGE)
    with django_capture_on_commit_callbacks(execute=True):
        edit(post, superuser, paragraph="Changed while a bulk job waits.")
    assert not trigger_jobs().exists()
    assert jobs.run_job(bulk.pk) == "completed"
    assert fake_llm.request_count == 1

    # Nor does the schedule add one for a page whose triggered item still waits.
    set_trigger(server_action, ActionTrigger.ON_SOURCE_CHANGE, delay=60)
    with django_capture_on_commit_callbacks(execute=True):
        edit(post, superuser, paragraph="Changed again.")
        edit(post, superuser, paragraph="And again.")
    assert trigger_jobs().count() == 1
    server_action.trigger_schedule = "0 3 * * *"
    server_action.save()
    assert triggers.run_schedule(server_action.pk) is None
    assert trigger_jobs().count() == 1


@pytest.mark.django_db
def test_a_disabled_action_stops_triggering(
    post, server_action, fake_llm, superuser, django_capture_on_commit_callbacks
):
    set_trigger(server_action, ActionTrigger.ON_SOURCE_CHANGE, delay=1)
    with django_capture_on_commit_callbacks(execute=True):
        edit(post, superuser, paragraph="Queued before the action was disabled.")
    job = trigger_jobs().get()
    LLMAction.objects.filter(pk=server_action.pk).update(enabled=False)
    with django_capture_on_commit_callbacks(execute=True):
        edit(post, superuser, paragraph="Saved after.", publish=True)
    assert trigger_jobs().count() == 1
    # The item queued before runs into the disabled action: skipped, nothing sent.
    jobs.run_job(job.pk)
    assert job.items.get().skip_reason == "action_disabled"
    assert fake_llm.request_count == 0


@pytest.mark.django_db
def test_the_schedule_follows_the_action_and_runs_changed_pages_only(
    make_post, server_action, fake_llm, superuser
):
    done, changed, new = make_post(), make_post(), make_post()
    jobs.run_job(jobs.create_job(server_action, superuser, [done.pk, changed.pk]).pk)
    assert fake_llm.request_count == 2
    edit(changed, superuser, paragraph="Changed since its summary.")

    set_trigger(server_action, ActionTrigger.MANUAL, trigger_schedule="0 3 * * *")
    schedule = Schedule.objects.get(name=triggers.schedule_name(server_action.pk))
    assert schedule.schedule_type == Schedule.CRON and schedule.cron == "0 3 * * *"
    assert schedule.next_run > timezone.now()
    assert schedule.func == "wagtail_llm_actions.tasks.run_trigger_schedule"

    from wagtail_llm_actions.tasks import run_trigger_schedule

    job = LLMJob.objects.get(pk=run_trigger_schedule(server_action.pk))
    assert jobs.run_job(job.pk) == "completed"
    outcomes = {item.page_id: (item.status, item.skip_reason) for item in job.items.all()}
    assert outcomes[done.pk] == ("skipped", "unchanged")
    assert outcomes[changed.pk] == outcomes[new.pk] == ("succeeded", "")
    assert fake_llm.request_count == 4
    scheduled = LLMInteraction.objects.filter(trigger="schedule")
    assert set(scheduled.values_list("page_id", flat=True)) == {changed.pk, new.pk}

    server_action.enabled = False
    server_action.save()
    assert not Schedule.objects.filter(name=triggers.schedule_name(server_action.pk)).exists()
    assert triggers.run_schedule(server_action.pk) is None


@pytest.mark.django_db
def test_bad_trigger_input_is_refused_at_save(server_action):
    server_action.trigger = ActionTrigger.ON_PUBLISH
    server_action.enabled = False
    with pytest.raises(ValidationError) as e:
        server_action.full_clean()
    assert "A disabled action cannot run by itself" in str(e.value.message_dict["trigger"])

    server_action.enabled = True
    server_action.page_types.clear()
    with pytest.raises(ValidationError) as e:
        server_action.full_clean()
    assert "applies to no page type" in str(e.value.message_dict["trigger"])

    server_action.trigger = ActionTrigger.MANUAL
    server_action.trigger_schedule = "every night"
    with pytest.raises(ValidationError) as e:
        server_action.full_clean()
    assert "is not a cron expression" in str(e.value.message_dict["trigger_schedule"])

    server_action.trigger_delay = -1
    with pytest.raises(ValidationError) as e:
        server_action.full_clean()
    assert "trigger_delay" in e.value.message_dict


@pytest.mark.django_db
def test_the_action_form_refuses_a_trigger_on_a_disabled_action(client, superuser, action):
    from tests.test_action_form import action_data

    client.force_login(superuser)
    data = action_data(
        action.prompt,
        slug=action.slug,
        trigger="on_publish",
        trigger_delay="30",
        trigger_schedule="",
    )
    data.pop("enabled", None)
    url = reverse("wagtailsnippets_wagtail_llm_actions_llmaction:edit", args=[action.pk])
    response = client.post(url, data)
    assert response.status_code == 200
    assert "A disabled action cannot run by itself" in response.content.decode()
    action.refresh_from_db()
    assert action.trigger == "manual"

    data.update(enabled="on", trigger_schedule="61 3 * * *")
    response = client.post(url, data)
    assert "is not a cron expression" in response.content.decode()
    data.update(trigger_schedule="0 3 * * *")
    response = client.post(url, data)
    assert response.status_code == 302
    action.refresh_from_db()
    assert (action.trigger, action.trigger_schedule) == ("on_publish", "0 3 * * *")


@pytest.mark.django_db
def test_the_report_says_what_triggered_the_run(
    client, post, server_action, fake_llm, superuser, django_capture_on_commit_callbacks
):
    set_trigger(server_action, ActionTrigger.ON_SOURCE_CHANGE)
    with django_capture_on_commit_callbacks(execute=True):
        edit(post, superuser, paragraph="A new paragraph.")
    assert drain() == ["completed"]
    client.force_login(superuser)
    html = client.get(reverse("wagtail_llm_actions_report:index")).content.decode()
    assert "On source change" in html
    interaction = LLMInteraction.objects.get()
    detail = client.get(reverse("wagtail_llm_actions_report:detail", args=[interaction.pk]))
    assert "On source change" in detail.content.decode()


@pytest.mark.django_db
def test_a_save_costs_one_query_and_a_failing_trigger_never_breaks_it(
    post, server_action, superuser, django_assert_num_queries, monkeypatch
):
    from wagtail.models import Revision

    revision = Revision.objects.get(pk=edit(post, superuser, paragraph="No trigger.").pk)
    with django_assert_num_queries(1):
        triggers.on_revision_saved(revision)
        triggers.on_page_published(post, revision)  # asked once per revision

    set_trigger(server_action, ActionTrigger.ON_SOURCE_CHANGE)

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(triggers, "queue_run", broken)
    edit(post, superuser, paragraph="Still saved.")  # outside a transaction: runs now
    assert "Still saved." in str(latest(post).body)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_exactly_once_holds_with_two_workers(
    shared_db, make_post, server_action, fake_llm, superuser
):
    fake_llm.configure(latency=0.2)
    posts = [make_post() for _ in range(4)]
    set_trigger(server_action, ActionTrigger.ON_SOURCE_CHANGE)
    for n, post in enumerate(posts):
        edit(post, superuser, paragraph=f"Page {n} changed.")
        edit(post, superuser, paragraph=f"Page {n} changed again.")  # its item is queued
    assert trigger_jobs().count() == 4
    workers = [
        in_thread(lambda job=job: jobs.run_job(job.pk, threads=2))
        for job in trigger_jobs()
        for _worker in range(2)
    ]
    for worker in workers:
        join_checked(worker)
    assert fake_llm.request_count == 4
    assert all(drafts(post) == 1 for post in posts)
    assert set(trigger_jobs().values_list("items__status", flat=True)) == {ItemStatus.SUCCEEDED}
    assert trigger_jobs().count() == 4  # the drafts they wrote triggered nothing


@pytest.mark.django_db
def test_an_action_that_reads_what_it_writes_does_not_loop(
    post, make_server_action, fake_llm, superuser, django_capture_on_commit_callbacks
):
    from tests.conftest import make_prompt

    fake_llm.configure(reply="A new intro.")
    action = make_server_action(
        slug="intro-from-intro",
        target_field="intro",
        prompt=make_prompt("rewrite-intro", "Rewrite this intro: {intro}\n\n{body}"),
    )
    set_trigger(action, ActionTrigger.ON_SOURCE_CHANGE)
    with django_capture_on_commit_callbacks(execute=True):
        edit(post, superuser, paragraph="A change.")
    with django_capture_on_commit_callbacks(execute=True):
        assert drain() == ["completed"]  # its draft changed {intro}: no second run
    assert latest(post).intro == "A new intro."
    assert trigger_jobs().count() == 1
    assert fake_llm.request_count == 1


@pytest.mark.django_db
def test_a_spent_budget_stops_triggering(
    post, server_action, fake_llm, superuser, django_capture_on_commit_callbacks
):
    from wagtail_llm_actions.budgets import period_start
    from wagtail_llm_actions.models import LLMBudget, LLMBudgetUsage

    budget = LLMBudget.objects.create(name="Daily", max_tokens=1000, period="day")
    LLMBudgetUsage.objects.create(budget=budget, period_start=period_start(budget), tokens=1000)
    set_trigger(server_action, ActionTrigger.ON_PUBLISH, trigger_schedule="0 3 * * *")
    with django_capture_on_commit_callbacks(execute=True):
        edit(post, superuser, paragraph="Published after the budget ran out.", publish=True)
    assert triggers.run_schedule(server_action.pk) is None
    assert not trigger_jobs().exists()

    budget.max_tokens = 100_000  # raised: triggers run again
    budget.save()
    with django_capture_on_commit_callbacks(execute=True):
        edit(post, superuser, paragraph="Published again.", publish=True)
    assert drain() == ["completed"]
    assert fake_llm.request_count == 1


@pytest.mark.django_db
def test_trigger_jobs_are_listed_with_the_other_jobs(client, make_post, server_action, superuser):
    make_post()
    set_trigger(server_action, ActionTrigger.MANUAL, trigger_schedule="0 3 * * *")
    job = triggers.run_schedule(server_action.pk)  # no user: started by the schedule
    client.force_login(superuser)
    listing = client.get(reverse("wagtail_llm_actions_jobs:index")).content.decode()
    assert reverse("wagtail_llm_actions_jobs:detail", args=[job.pk]) in listing
    detail = client.get(reverse("wagtail_llm_actions_jobs:detail", args=[job.pk]))
    assert detail.status_code == 200
    assert "Started from: Trigger" in detail.content.decode()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_saves_queue_one_item(shared_db, post, server_action, superuser):
    """Saves in two processes at once (threads with their own connections): the check and
    the creation are one write transaction, serialised per action."""
    import threading

    edit(post, superuser, paragraph="Changed in both.")  # no trigger yet
    LLMAction.objects.filter(pk=server_action.pk).update(
        trigger=ActionTrigger.ON_SOURCE_CHANGE, trigger_delay=60
    )
    barrier = threading.Barrier(4)

    def save_event():
        action = LLMAction.objects.get(pk=server_action.pk)
        barrier.wait()
        triggers.queue_run(action, type(post).objects.get(pk=post.pk), "on_source_change")

    threads = [in_thread(save_event) for _ in range(4)]
    for thread in threads:
        join_checked(thread)
    assert trigger_jobs().count() == 1
    assert trigger_jobs().get().items.get().status == ItemStatus.QUEUED


@pytest.mark.django_db
def test_a_publish_after_an_editor_answer_never_saved_runs(
    post, server_action, fake_llm, superuser, django_capture_on_commit_callbacks
):
    """Triggers apply the unchanged rule (:mod:`.unchanged`): an editor answer never saved
    wrote nothing, so the publish makes a run (before, the trigger compared with the last
    answer of any kind: no job, and the page was never processed)."""
    from wagtail_llm_actions import editor

    set_trigger(server_action, ActionTrigger.ON_PUBLISH)
    job = editor.create_editor_job(server_action, post, latest(post), superuser)
    editor.run_editor_job(job.items.get().pk)  # answered in the editor, never saved
    assert fake_llm.request_count == 1
    with django_capture_on_commit_callbacks(execute=True):
        edit(post, superuser, publish=True)  # same inputs as the editor's answer
    assert trigger_jobs().count() == 1
    assert drain() == ["completed"]
    assert fake_llm.request_count == 2
    assert drafts(post) == 1

    with django_capture_on_commit_callbacks(execute=True):
        edit(post, superuser, intro="Another intro", publish=True)  # the draft holds the answer
    assert trigger_jobs().count() == 1
    assert fake_llm.request_count == 2


@pytest.mark.django_db
def test_a_save_replacing_the_answer_a_trigger_wrote_runs_again_and_a_discard_stops_it(
    post, server_action, fake_llm, superuser, django_capture_on_commit_callbacks
):
    """The rule's "in the newest revision": a person replacing the written value makes the
    next save run again, whatever the source; discarding that draft stops it."""
    from wagtail_llm_actions import review

    fake_llm.configure(reply="A short summary.")
    set_trigger(server_action, ActionTrigger.ON_SOURCE_CHANGE)
    with django_capture_on_commit_callbacks(execute=True):
        edit(post, superuser, paragraph="Worms eat the peel.")
    assert drain() == ["completed"] and fake_llm.request_count == 1
    with django_capture_on_commit_callbacks(execute=True):
        edit(post, superuser, summary="My own summary.")
    assert trigger_jobs().count() == 2
    assert drain() == ["completed"] and fake_llm.request_count == 2
    newest = LLMInteraction.objects.order_by("-pk").first()
    review.discard(newest, superuser)
    with django_capture_on_commit_callbacks(execute=True):
        edit(post, superuser, intro="Another intro")
    assert trigger_jobs().count() == 2
