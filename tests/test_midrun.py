"""Mid-run rules: what changes while the model answers is honoured when the answer is written.

* An action disabled or deleted while a job runs stops the job's remaining pages, with that
  reason on each page and on the job.
* A page locked, sent to moderation, or no longer editable by the job's user while the model
  answered gets no draft: the answer is stored on the interaction with the reason, the page is
  skipped with it, and the answer can be applied later without a call.
* A page deleted while the model answered gives a recorded, readable failure; the paid call
  is in the log.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from wagtail.models import PageLogEntry, Workflow, WorkflowPage, WorkflowTask
from wagtail.models.workflows import GroupApprovalTask

from tests.fakeserver import last_user_message
from wagtail_llm_actions import db, jobs
from wagtail_llm_actions.exceptions import PageGone
from wagtail_llm_actions.models import LLMAction, LLMInteraction
from wagtail_llm_actions.service import LOG_ACTION, LLMService
from wagtail_llm_actions.signals import answer_stored

pytestmark = pytest.mark.django_db


def drafts(page) -> int:
    return PageLogEntry.objects.filter(page=page, action=LOG_ACTION).count()


@pytest.fixture
def on_first_answer():
    """Run a function once, right after the first answer is stored (before its write)."""
    handlers = []

    def register(func):
        state = {"done": False}

        def handler(sender, interaction, **kwargs):
            if not state["done"]:
                state["done"] = True
                func(interaction)

        answer_stored.connect(handler, weak=False)
        handlers.append(handler)

    yield register
    for handler in handlers:
        answer_stored.disconnect(handler)


def test_disabling_the_action_stops_the_remaining_pages(
    make_post, action, superuser, on_first_answer
):
    posts = [make_post() for _ in range(4)]
    job = jobs.create_job(action, superuser, [p.pk for p in posts])

    def disable(interaction):
        fresh = LLMAction.objects.get(pk=action.pk)
        fresh.enabled = False
        fresh.save()

    on_first_answer(disable)
    jobs.run_job(job.pk, threads=1)
    job.refresh_from_db()
    items = list(job.items.order_by("pk"))
    assert items[0].status == "succeeded"  # its answer was already paid for and written
    assert [(i.status, i.skip_reason) for i in items[1:]] == [("skipped", "action_disabled")] * 3
    assert jobs.skip_reason_label("action_disabled") == "The action was disabled while the job ran"
    assert job.status == "cancelled"
    assert job.options["stop_reason"] == "The action was disabled while the job ran"
    assert LLMInteraction.objects.count() == 1  # no call after the disable
    assert [drafts(p) for p in posts] == [1, 0, 0, 0]


def test_deleting_the_action_stops_the_remaining_pages(
    make_post, action, superuser, on_first_answer
):
    posts = [make_post() for _ in range(3)]
    job = jobs.create_job(action, superuser, [p.pk for p in posts])
    on_first_answer(lambda interaction: LLMAction.objects.filter(pk=action.pk).delete())
    jobs.run_job(job.pk, threads=1)
    job.refresh_from_db()
    statuses = sorted(job.items.values_list("status", "skip_reason"))
    assert statuses.count(("skipped", "action_deleted")) == 2
    assert job.status == "cancelled"


def test_a_changed_action_is_used_for_the_remaining_pages(
    make_post, action, superuser, on_first_answer
):
    posts = [make_post() for _ in range(3)]
    job = jobs.create_job(action, superuser, [p.pk for p in posts])

    def switch_model(interaction):
        fresh = LLMAction.objects.get(pk=action.pk)
        fresh.model = "local/echo"
        fresh.save()

    on_first_answer(switch_model)
    jobs.run_job(job.pk, threads=1)
    models = list(LLMInteraction.objects.order_by("pk").values_list("model", flat=True))
    assert models[0] != "local/echo"
    assert models[1:] == ["local/echo", "local/echo"]


def test_a_page_locked_during_the_call_gets_no_draft_and_keeps_the_answer(
    post, action, editor, superuser, on_first_answer
):
    job = jobs.create_job(action, editor, [post.pk])

    def lock(interaction):
        type(post).objects.filter(pk=post.pk).update(locked=True, locked_by=superuser)

    on_first_answer(lock)
    jobs.run_job(job.pk, threads=1)
    item = job.items.select_related("interaction").get()
    assert (item.status, item.skip_reason) == ("skipped", "locked")
    assert "locked" in item.error.lower()
    assert item.interaction.status == "answered"  # the paid answer is kept
    assert item.interaction.output_value
    assert "locked" in item.interaction.error_message.lower()
    assert drafts(post) == 0

    # unlocked later: the stored answer is written, with no new call
    type(post).objects.filter(pk=post.pk).update(locked=False, locked_by=None)
    assert jobs.apply_stored_answers(job, enqueue=False) == 1
    jobs.run_job(job.pk, threads=1)
    item.refresh_from_db()
    assert item.status == "succeeded"
    assert LLMInteraction.objects.count() == 1
    assert drafts(post) == 1


def test_a_page_sent_to_moderation_during_the_call_gets_no_draft(
    post, blog_index, action, editor, superuser, on_first_answer
):
    moderators = Group.objects.create(name="Reviewers")
    task = GroupApprovalTask.objects.create(name="Review")
    task.groups.set([moderators])
    workflow = Workflow.objects.create(name="Review first", active=True)
    WorkflowTask.objects.create(workflow=workflow, task=task.task_ptr, sort_order=1)
    WorkflowPage.objects.create(workflow=workflow, page=blog_index)
    job = jobs.create_job(action, editor, [post.pk])

    on_first_answer(lambda interaction: workflow.start(post, editor))  # submitted
    jobs.run_job(job.pk, threads=1)
    item = job.items.select_related("interaction").get()
    assert (item.status, item.skip_reason) == ("skipped", "moderation")
    assert item.error
    assert item.interaction.status == "answered"
    assert item.interaction.error_code == "moderation"
    assert drafts(post) == 0


def test_permission_removed_during_the_call_gets_no_draft(post, action, editor, on_first_answer):
    job = jobs.create_job(action, editor, [post.pk])
    on_first_answer(lambda interaction: editor.groups.clear())
    jobs.run_job(job.pk, threads=1)
    item = job.items.select_related("interaction").get()
    assert (item.status, item.skip_reason) == ("skipped", "no_permission")
    assert item.interaction.status == "answered"
    assert drafts(post) == 0


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_page_deleted_during_the_call_is_a_recorded_readable_failure(
    post, server_action, fake_llm, monkeypatch, superuser
):
    from wagtail_llm_actions import providers

    real_complete = providers.complete

    def complete_then_delete(request):
        result = real_complete(request)
        type(post).objects.get(pk=post.pk).delete()  # deleted while the model answered
        return result

    monkeypatch.setattr(providers, "complete", complete_then_delete)
    fake_llm.configure(reply="An answer for a page that is gone.")
    with pytest.raises(PageGone) as raised:
        LLMService().run(server_action, post, superuser)
    interaction = LLMInteraction.objects.get()
    assert raised.value.interaction.pk == interaction.pk
    assert interaction.page_id is None
    assert interaction.status == "error"
    assert interaction.error_code == "page_deleted"
    assert "deleted" in interaction.error_message
    assert interaction.response_text == "An answer for a page that is gone."  # paid, logged
    assert interaction.total_tokens


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_page_deleted_during_a_job_call_fails_its_item_readably(
    make_post, server_action, fake_llm, monkeypatch, superuser
):
    from wagtail_llm_actions import providers

    posts = [make_post() for _ in range(2)]
    job = jobs.create_job(server_action, superuser, [p.pk for p in posts], force=True)
    real_complete = providers.complete
    doomed = posts[0]

    def complete_then_delete(request):
        result = real_complete(request)
        if type(doomed).objects.filter(pk=doomed.pk).exists():
            # An editor deleting the page meanwhile: a writer that waits its turn, as it
            # would with SQLite's busy timeout in another process (the shared-cache test
            # database answers "table is locked" at once instead of waiting).
            db.write(lambda: type(doomed).objects.get(pk=doomed.pk).delete(), what="deleting")
        return result

    monkeypatch.setattr(providers, "complete", complete_then_delete)
    jobs.run_job(job.pk, threads=1)
    first, second = job.items.order_by("pk").select_related("interaction")
    assert first.status == "failed"
    assert "deleted" in first.error
    assert first.interaction is not None and first.interaction.page_id is None
    assert second.status == "succeeded"
    assert LLMInteraction.objects.count() == 2


def delete_after_call(monkeypatch, page, call_number: int) -> list:
    """Delete ``page`` right after the model's ``call_number``-th answer (while the run goes
    on); returns the list of calls made."""
    from wagtail_llm_actions import providers

    real_complete = providers.complete
    calls = []

    def complete_then_delete(request):
        result = real_complete(request)
        calls.append(request)
        if len(calls) == call_number:
            db.write(lambda: type(page).objects.get(pk=page.pk).delete(), what="deleting")
        return result

    monkeypatch.setattr(providers, "complete", complete_then_delete)
    return calls


@pytest.fixture
def two_steps(make_server_action, make_pipeline, fake_llm):
    """A pipeline: "outline" feeds "summary", which writes the summary."""
    from tests.conftest import make_prompt

    outline = make_server_action(
        name="Outline", slug="outline", prompt=make_prompt("o", "OUTLINE {body}")
    )
    summary = make_server_action(
        name="Summary", slug="summary", prompt=make_prompt("s", "SUMMARY of {steps.outline}")
    )
    pipeline = make_pipeline(
        {"name": "outline", "action": outline, "writes": False},
        {"name": "summary", "action": summary},
        name="Outline and summary",
        slug="outline-summary",
        page_types=False,
    )
    fake_llm.configure(reply=lambda payload: f"{last_user_message(payload).split()[0]}-answer")
    return pipeline


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_page_deleted_during_a_pipeline_ends_the_run_as_page_deleted_with_answers_kept(
    post, two_steps, fake_llm, monkeypatch, superuser
):
    from wagtail_llm_actions.models import LLMRun
    from wagtail_llm_actions.pipelines import PipelineStepFailed, run_pipeline

    pipeline = two_steps
    calls = delete_after_call(monkeypatch, post, 2)  # during the second step's call

    with pytest.raises(PipelineStepFailed) as raised:
        run_pipeline(pipeline, post, superuser)

    assert raised.value.code == "page_deleted"
    assert "deleted while the model was answering" in raised.value.message
    run = LLMRun.objects.get()
    assert run.status == "error" and run.finished_at is not None  # ended, not "running"
    assert "deleted" in run.error_message and run.failed_step == "summary"
    assert run.page_id is None
    outline, summary = run.timeline()
    assert (outline.status, outline.response_text) == ("success", "OUTLINE-answer")
    assert (summary.status, summary.error_code) == ("error", "page_deleted")
    assert summary.response_text == "SUMMARY-answer"  # the paid answer is kept
    assert len(calls) == 2


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_page_deleted_during_map_reduce_ends_the_run_as_page_deleted_with_parts_kept(
    make_map_reduce_action, make_long_post, fake_llm, monkeypatch
):
    from wagtail_llm_actions.exceptions import LLMActionError
    from wagtail_llm_actions.models import LLMRun

    post, _markers = make_long_post(paragraphs=300)
    action = make_map_reduce_action(max_tokens=120)
    fake_llm.configure(reply="A part answer.")
    calls = delete_after_call(monkeypatch, post, 2)  # during the second part's call

    with pytest.raises(LLMActionError) as raised:
        LLMService().run(action, post)

    assert raised.value.code == "page_deleted"
    run = LLMRun.objects.get()
    assert run.status == "error" and run.finished_at is not None
    assert "deleted" in run.error_message and run.page_id is None
    parts = list(run.interactions.filter(chunk_index__isnull=False).order_by("chunk_index"))
    assert [p.response_text for p in parts] == ["A part answer."] * 2  # both paid parts kept
    assert [p.status for p in parts] == ["success", "error"]
    assert parts[1].error_code == "page_deleted"
    assert len(calls) == 2  # nothing more was asked once the page was gone
