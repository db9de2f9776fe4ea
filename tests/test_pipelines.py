"""Pipelines: steps feeding each other, one draft per run, failures naming the step, reruns."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from wagtail.models import Revision

from tests.conftest import make_prompt
from tests.fakeserver import last_user_message
from tests.queued import finish_queued
from wagtail_llm_actions.exceptions import ConfigurationProblem
from wagtail_llm_actions.extraction import extract_text
from wagtail_llm_actions.models import (
    InteractionStatus,
    LLMInteraction,
    LLMRun,
    RunStatus,
)
from wagtail_llm_actions.pipelines import (
    PipelineStepFailed,
    StepSpec,
    rerun_pipeline,
    run_pipeline,
    validate_steps,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def steps_actions(make_server_action):
    outline = make_server_action(
        name="Outline",
        slug="outline",
        prompt=make_prompt("outline", "OUTLINE the page:\n\n{body}"),
    )
    summary = make_server_action(
        name="Summary from outline",
        slug="summary-from-outline",
        prompt=make_prompt("from-outline", "SUMMARY from this outline: {steps.outline}"),
    )
    intro = make_server_action(
        name="Intro",
        slug="intro",
        target_field="intro",
        prompt=make_prompt("intro", "INTRO for {title} using {steps.summary}"),
    )
    return outline, summary, intro


def reply_by_kind(payload):
    text = last_user_message(payload)
    return {"OUTLINE": "outline-answer", "SUMMARY": "summary-answer", "INTRO": "intro-answer"}[
        text.split()[0]
    ]


@pytest.fixture
def pipeline(steps_actions, make_pipeline):
    outline, summary, intro = steps_actions
    return make_pipeline(
        {"name": "outline", "action": outline, "writes": False},
        {"name": "summary", "action": summary},
        {"name": "intro", "action": intro},
        name="Summarise and introduce",
        slug="sum-intro",
        page_types=False,
    )


def test_steps_feed_later_steps_and_all_writes_go_into_one_draft(pipeline, post, fake_llm):
    fake_llm.configure(reply=reply_by_kind)
    revisions_before = Revision.objects.count()

    run = run_pipeline(pipeline, post)

    assert run.status == RunStatus.SUCCESS
    assert Revision.objects.count() == revisions_before + 1  # one draft for two writes
    draft = type(post).objects.get(pk=post.pk).get_latest_revision_as_object()
    assert draft.summary == "summary-answer"
    assert draft.intro == "intro-answer"
    assert extract_text(draft, "body").text == extract_text(post, "body").text  # untouched
    sent = [last_user_message(r["json"]) for r in fake_llm.requests]
    assert sent[1] == "SUMMARY from this outline: outline-answer"
    assert sent[2] == f"INTRO for {post.title} using summary-answer"
    timeline = run.timeline()
    assert [i.step_name for i in timeline] == ["outline", "summary", "intro"]
    assert [i.outcome for i in timeline] == ["fed", "drafted", "drafted"]
    assert {i.revision_id for i in timeline[1:]} == {run.revision_id}
    assert timeline[0].revision_id is None


def test_a_failing_step_stops_the_run_names_it_and_writes_nothing(pipeline, post, fake_llm):
    fake_llm.configure(reply=reply_by_kind)
    fake_llm.enqueue()  # outline answers
    fake_llm.enqueue(status=400, error_message="bad summary request")
    latest = post.latest_revision_id

    with pytest.raises(PipelineStepFailed) as caught:
        run_pipeline(pipeline, post)

    assert "summary" in caught.value.message
    run = caught.value.run
    run.refresh_from_db()
    assert run.status == RunStatus.ERROR
    assert run.failed_step == "summary"
    assert run.revision_id is None
    assert type(post).objects.get(pk=post.pk).latest_revision_id == latest
    assert fake_llm.request_count == 2  # the intro step never ran
    statuses = [i.status for i in run.timeline()]
    assert statuses == [InteractionStatus.SUCCESS, InteractionStatus.ERROR]


def test_a_page_with_nothing_to_send_is_a_skipped_run_as_its_job_and_calls_say(
    pipeline, make_post, fake_llm, superuser
):
    """An empty source is not an error: the run, its interaction and the job's item all say
    skipped."""
    from wagtail_llm_actions import jobs

    empty = make_post(body=[])

    with pytest.raises(PipelineStepFailed) as caught:
        run_pipeline(pipeline, empty)

    run = LLMRun.objects.get(pk=caught.value.run.pk)
    assert run.status == "skipped"
    assert run.get_status_display() == "Skipped (no content)"
    assert run.finished_at is not None and run.failed_step == ""
    assert run.error_message == (
        "Step “outline” had nothing to send, so nothing was written: "
        "There is no content in “body” to send to the model."
    )
    assert [i.status for i in run.timeline()] == [InteractionStatus.SKIPPED]

    job = jobs.create_pipeline_job(pipeline, superuser, [empty.pk])
    jobs.run_job(job.pk, threads=1)

    item = job.items.get()
    assert (item.status, item.skip_reason) == ("skipped", "source_empty")
    job_run = LLMRun.objects.exclude(pk=run.pk).get()
    assert job_run.status == "skipped"
    assert [i.status for i in job_run.timeline()] == [InteractionStatus.SKIPPED]
    assert fake_llm.request_count == 0


def test_a_runaway_step_answer_reaches_later_steps_cut_like_a_source(
    pipeline, post, fake_llm, settings
):
    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "MAX_SOURCE_CHARS": 2000}
    runaway = "compost " * 250_000  # 2 MB from the outline step

    def reply(payload):
        return runaway if last_user_message(payload).startswith("OUTLINE") else "short"

    fake_llm.configure(reply=reply)

    run = run_pipeline(pipeline, post)

    assert run.status == RunStatus.SUCCESS
    sent = last_user_message(fake_llm.requests[1]["json"])
    assert sent.startswith("SUMMARY from this outline: compost compost")
    assert len(sent) <= len("SUMMARY from this outline: ") + 2000  # not 2 MB
    summary = run.timeline()[1]
    assert summary.source_truncated  # the cut is recorded, as a source's is


def test_a_step_answer_cut_off_by_max_tokens_stops_the_run(pipeline, post, fake_llm):
    fake_llm.configure(reply=reply_by_kind)
    fake_llm.enqueue()
    fake_llm.enqueue(finish_reason="length")  # the summary stopped at its token limit
    latest = post.latest_revision_id

    with pytest.raises(PipelineStepFailed) as caught:
        run_pipeline(pipeline, post)

    assert caught.value.step == "summary"
    assert caught.value.code == "answer_cut"
    assert "cut off" in caught.value.message
    assert fake_llm.request_count == 2  # the intro step never read a cut answer
    assert type(post).objects.get(pk=post.pk).latest_revision_id == latest
    summary = caught.value.run.timeline()[1]
    assert summary.answer_truncated
    assert summary.response_text == "summary-answer"  # paid for: kept in the log


def test_a_step_answer_cut_off_is_kept_with_a_warning_when_its_action_keeps_them(
    pipeline, steps_actions, post, fake_llm
):
    _outline, summary_action, _intro = steps_actions
    summary_action.cut_answers = "keep"
    summary_action.save()
    fake_llm.configure(reply=reply_by_kind)
    fake_llm.enqueue()
    fake_llm.enqueue(finish_reason="length")

    run = run_pipeline(pipeline, post)

    assert run.status == RunStatus.SUCCESS
    summary = run.timeline()[1]
    assert summary.answer_truncated
    assert "cut off" in summary.cut_warning
    draft = type(post).objects.get(pk=post.pk).get_latest_revision_as_object()
    assert draft.summary == "summary-answer"


def test_a_bug_outside_a_step_ends_the_run_failed_not_running(
    pipeline, post, fake_llm, monkeypatch, caplog
):
    """A bug between steps (not a step's provider or content error) still ends the run:
    failed, with an end time and the error's type only (the traceback goes to the log), and
    nothing is written; the caller gets the error."""

    fake_llm.configure(reply=reply_by_kind)
    from wagtail_llm_actions.run import recording

    new_interaction = recording.new_interaction
    calls = []

    def bug_on_the_second_step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("internal detail /srv/secret/path")
        return new_interaction(self, *args, **kwargs)

    monkeypatch.setattr("wagtail_llm_actions.run.recording.new_interaction", bug_on_the_second_step)
    before = type(post).objects.get(pk=post.pk)
    revisions = Revision.objects.count()

    with pytest.raises(RuntimeError):
        run_pipeline(pipeline, post)

    run = LLMRun.objects.get()
    assert run.status == RunStatus.ERROR
    assert run.finished_at is not None
    assert run.error_message == "The pipeline failed unexpectedly (RuntimeError)."
    assert run.revision_id is None
    assert fake_llm.request_count == 1  # the outline step answered; nothing after
    assert "internal detail /srv/secret/path" in caplog.text
    after = type(post).objects.get(pk=post.pk)
    assert Revision.objects.count() == revisions
    assert after.latest_revision_id == before.latest_revision_id
    assert (after.summary, after.intro) == (before.summary, before.intro)


def test_rerun_from_a_step_reuses_the_earlier_answers(pipeline, post, fake_llm):
    fake_llm.configure(reply=reply_by_kind)
    first = run_pipeline(pipeline, post)
    fake_llm.reset()
    fake_llm.configure(reply=lambda payload: "new-" + reply_by_kind(payload))

    second = rerun_pipeline(first, from_step=2)

    assert fake_llm.request_count == 1  # only the intro step called the model
    draft = type(post).objects.get(pk=post.pk).get_latest_revision_as_object()
    assert draft.summary == "summary-answer"
    assert draft.intro == "new-intro-answer"
    reused = second.timeline()[:2]
    assert [i.reused_from_id for i in reused] == [i.pk for i in first.timeline()[:2]]
    assert all(i.cost == 0 for i in reused)
    assert second.rerun_of_id == first.pk


def test_validation_refuses_missing_later_and_own_step_references(steps_actions):
    outline, summary, intro = steps_actions

    errors = validate_steps(
        [
            StepSpec("summary", summary),  # uses {steps.outline}, which comes later
            StepSpec("outline", outline, writes=False),
            StepSpec("intro", intro),
        ]
    )
    assert "later step" in errors[0][0]
    assert 2 not in errors

    errors = validate_steps([StepSpec("intro", intro)])  # {steps.summary} does not exist
    assert "no step is called “summary”" in errors[0][0]

    errors = validate_steps(
        [StepSpec("outline", outline, writes=False), StepSpec("summary", summary)]
    )
    assert errors == {}
    assert validate_steps([StepSpec("summary", summary)])[0]  # itself


def test_validation_refuses_two_steps_writing_one_field_of_a_structured_action(steps_actions):
    outline, summary, _intro = steps_actions
    outline.output_fields = {"summary": "summary", "description": "search_description"}
    errors = validate_steps([StepSpec("outline", outline), StepSpec("summary", summary)])
    assert 0 not in errors  # a structured action is a valid step
    assert "already writes “summary”" in errors[1][0]


def test_validation_refuses_a_structured_step_that_splits_long_content(steps_actions):
    outline, _summary, _intro = steps_actions
    outline.output_fields = {"summary": "summary", "description": "search_description"}
    outline.long_content = "map_reduce"
    errors = validate_steps([StepSpec("outline", outline)])
    assert "splits long content" in errors[0][0]


def test_an_invalid_pipeline_makes_no_call(steps_actions, post, fake_llm, make_pipeline):
    outline, summary, _intro = steps_actions
    pipeline = make_pipeline(
        {"name": "summary", "action": summary},
        {"name": "outline", "action": outline},
        name="Backwards",
        slug="backwards",
        page_types=False,
    )

    with pytest.raises(ConfigurationProblem, match="later step"):
        run_pipeline(pipeline, post)
    assert fake_llm.request_count == 0


def test_an_action_using_steps_alone_fails_clearly(steps_actions, post, fake_llm):
    from wagtail_llm_actions.service import LLMService

    _outline, summary, _intro = steps_actions
    with pytest.raises(ConfigurationProblem, match="pipeline step"):
        LLMService().run(summary, post)
    assert fake_llm.request_count == 0


def test_command_runs_a_pipeline_by_slug(pipeline, post, fake_llm, superuser):
    fake_llm.configure(reply=reply_by_kind)

    call_command("run_llm_action", "sum-intro", "--page", str(post.pk), "--user", "admin")

    run = LLMRun.objects.get()
    assert run.status == RunStatus.SUCCESS
    draft = type(post).objects.get(pk=post.pk).get_latest_revision_as_object()
    assert draft.intro == "intro-answer"
    assert LLMInteraction.objects.filter(run=run).count() == 3


def test_detail_page_shows_the_run_as_a_timeline_and_reruns_from_a_step(
    pipeline, post, fake_llm, client, superuser
):
    from django.urls import reverse

    fake_llm.configure(reply=reply_by_kind)
    run = run_pipeline(pipeline, post)
    summary = run.timeline()[1]
    client.force_login(superuser)

    response = client.get(reverse("wagtail_llm_actions_report:detail", args=[summary.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert html.count("data-llm-timeline-entry") == 3
    for text in ("outline-answer", "SUMMARY from this outline", "intro-answer"):
        assert text in html
    assert "rerun-from-step" in html

    fake_llm.reset()
    fake_llm.configure(reply=lambda payload: "again-" + reply_by_kind(payload))
    response = client.post(
        reverse("wagtail_llm_actions_report:rerun_from_step", args=[summary.pk]),
        {"from_step": "1"},
    )
    assert fake_llm.request_count == 0  # queued: no model call inside the request
    finish_queued(client, response)
    assert fake_llm.request_count == 2  # summary and intro; the outline was reused
    newest = LLMRun.objects.order_by("-pk").first()
    assert newest.rerun_of_id == run.pk
    draft = type(post).objects.get(pk=post.pk).get_latest_revision_as_object()
    assert draft.summary == "again-summary-answer"


def test_a_pipeline_job_writes_one_draft_per_page_and_resumes_without_calling_again(
    pipeline, make_post, fake_llm, superuser
):
    from wagtail_llm_actions import jobs
    from wagtail_llm_actions.models import ItemStatus, LLMJobItem

    fake_llm.configure(reply=reply_by_kind)
    posts = [make_post() for _ in range(3)]
    # The second page's intro step fails once with a retryable error, then succeeds.
    fake_llm.enqueue().enqueue().enqueue().enqueue().enqueue().enqueue(status=503)
    revisions = {p.pk: p.latest_revision_id for p in posts}

    job = jobs.create_pipeline_job(pipeline, superuser, [p.pk for p in posts])
    jobs.run_job(job.pk, threads=1)

    items = list(LLMJobItem.objects.filter(job=job).order_by("page_id"))
    assert [i.status for i in items] == [ItemStatus.SUCCEEDED] * 3
    # 3 steps × 3 pages, plus the one failed intro call; the retried page reused its outline
    # and summary answers instead of asking again.
    assert fake_llm.request_count == 10
    for post in posts:
        fresh = type(post).objects.get(pk=post.pk)
        assert (
            Revision.objects.filter(object_id=str(post.pk), pk__gt=revisions[post.pk]).count() == 1
        )  # exactly one draft per page
        draft = fresh.get_latest_revision_as_object()
        assert (draft.summary, draft.intro) == ("summary-answer", "intro-answer")


def test_an_editor_save_during_the_run_is_kept(pipeline, post, fake_llm, monkeypatch):

    fake_llm.configure(reply=reply_by_kind)
    from wagtail_llm_actions.run.calls import single

    original = single.answer

    def answer(prepared, interaction, **kwargs):
        result = original(prepared, interaction, **kwargs)
        if interaction.step_name == "outline":  # an editor saves while the run goes on
            draft = type(post).objects.get(pk=post.pk).get_latest_revision_as_object()
            draft.title = "Edited meanwhile"
            draft.save_revision()
        return result

    monkeypatch.setattr("wagtail_llm_actions.run.calls.single.answer", answer)

    run = run_pipeline(pipeline, post)

    draft = type(post).objects.get(pk=post.pk).get_latest_revision_as_object()
    assert draft.title == "Edited meanwhile"
    assert (draft.summary, draft.intro) == ("summary-answer", "intro-answer")
    assert [i.rebased for i in run.timeline()[1:]] == [True, True]
