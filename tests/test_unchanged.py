"""Skipping unchanged pages: one rule for jobs, the command and the preview.

A page is unchanged for an action when an answer of that action made from the same inputs
(the rendered messages, model, parameters, output mapping) is in the page's newest revision,
or a person discarded it. Calls that wrote nothing never count.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from wagtail.models import PageLogEntry

from tests.conftest import WINDOW, make_prompt
from wagtail_llm_actions import editor, jobs, review
from wagtail_llm_actions.exceptions import LLMActionError
from wagtail_llm_actions.models import (
    InteractionOutcome,
    LLMInteraction,
)
from wagtail_llm_actions.pipelines import run_pipeline
from wagtail_llm_actions.service import LOG_ACTION, LLMService

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_retries(settings):
    settings.WAGTAIL_LLM_ACTIONS = {
        **settings.WAGTAIL_LLM_ACTIONS,
        "RETRY_BACKOFF": 0,
        "MAX_ATTEMPTS": 3,
    }


def reload(page):
    return type(page).objects.get(pk=page.pk)


def drafts(page) -> int:
    return PageLogEntry.objects.filter(page=page, action=LOG_ACTION).count()


def bulk(action, user, page, **kwargs) -> tuple[str, str]:
    """Run a bulk job of ``action`` on ``page``; the item's status and skip reason."""
    job = jobs.create_job(action, user, [page.pk], **kwargs)
    jobs.run_job(job.pk)
    item = job.items.get()
    return item.status, item.skip_reason


def edit(page, publish=False, **fields):
    """A person saves a new revision of ``page`` with ``fields`` changed (and publishes it)."""
    draft = reload(page).get_latest_revision_as_object()
    for name, value in fields.items():
        setattr(draft, name, value)
    revision = draft.save_revision()
    if publish:
        revision.publish()


RAN = ("succeeded", "")
SKIPPED = ("skipped", "unchanged")


# -- runs that wrote nothing do not count ---------------------------------------------------


@pytest.fixture
def map_reduce_action(make_map_reduce_action, fake_llm):
    fake_llm.configure(context_window=WINDOW, reply="A partial summary about compost.")
    return make_map_reduce_action(slug="long-summary", max_tokens=120)


def test_a_map_reduce_page_whose_third_part_failed_once_is_retried_and_drafted(
    make_long_post, map_reduce_action, fake_llm, superuser
):
    post, _markers = make_long_post(paragraphs=300)
    fake_llm.enqueue().enqueue().enqueue(status=500)  # the third call fails once

    assert bulk(map_reduce_action, superuser, post) == RAN

    assert drafts(post) == 1
    draft = reload(post).get_latest_revision_as_object()
    assert draft.summary == "A partial summary about compost."
    # The page now holds the answer: the next job skips it without a call.
    calls = fake_llm.request_count
    assert bulk(map_reduce_action, superuser, post) == SKIPPED
    assert fake_llm.request_count == calls


def test_parts_left_by_a_map_reduce_run_that_stopped_do_not_count(
    make_long_post, map_reduce_action, fake_llm, superuser
):
    """As after a worker killed mid map-reduce: parts answered, nothing written."""
    post, _markers = make_long_post(paragraphs=300)
    fake_llm.enqueue().enqueue().enqueue(status=400)
    with pytest.raises(LLMActionError, match="Part 3 of"):
        LLMService().run(map_reduce_action, reload(post))
    assert LLMInteraction.objects.filter(chunk_index__isnull=False, status="success").count() == 2

    assert bulk(map_reduce_action, superuser, post) == RAN
    assert drafts(post) == 1


def test_a_feeding_pipeline_step_does_not_count_and_a_writing_step_does(
    make_server_action, make_pipeline, post, fake_llm, superuser
):
    outline = make_server_action(
        name="Outline",
        slug="outline",
        target_field="highlights",
        prompt=make_prompt("o", "OUTLINE:\n\n{body}"),
    )
    summary = make_server_action(
        name="Summary", slug="summary", prompt=make_prompt("s", "SUMMARY:\n\n{body}")
    )
    intro = make_server_action(
        name="Intro",
        slug="intro",
        target_field="intro",
        prompt=make_prompt("i", "INTRO from {steps.outline}"),
    )
    pipeline = make_pipeline(
        {"name": "outline", "action": outline, "writes": False},
        {"name": "summary", "action": summary, "writes": True},
        {"name": "intro", "action": intro, "writes": True},
        name="Outline first",
        slug="outline-first",
        page_types=False,
    )
    run_pipeline(pipeline, post, superuser)
    assert fake_llm.request_count == 3

    # The outline only fed the intro: nothing of it is in the page.
    assert bulk(outline, superuser, post) == RAN
    # The summary step wrote its answer into the draft, from the inputs a run sends now.
    assert bulk(summary, superuser, post) == SKIPPED
    assert fake_llm.request_count == 4


def run_in_editor(action, page, user) -> LLMInteraction:
    """The editor's run on the form as saved: the answer fills the form, nothing is saved."""
    obj = reload(page).get_latest_revision_as_object()
    job = editor.create_editor_job(action, page, obj, user)
    editor.enqueue_editor_job(job, inline=True)
    return job.items.get().interaction


def test_an_editor_answer_never_saved_does_not_count(post, server_action, fake_llm, superuser):
    interaction = run_in_editor(server_action, post, superuser)
    assert interaction.outcome == InteractionOutcome.PENDING

    assert bulk(server_action, superuser, post) == RAN
    assert drafts(post) == 1


def test_an_editor_answer_saved_edited_counts_while_the_page_keeps_it(
    post, server_action, fake_llm, superuser
):
    interaction = run_in_editor(server_action, post, superuser)
    saved = reload(post).get_latest_revision_as_object()
    saved.summary = interaction.output_value + " The editor added this."
    saved.save_revision(user=superuser)
    editor.record_saved_outcomes(saved, superuser, [interaction.pk])
    assert LLMInteraction.objects.get(pk=interaction.pk).outcome == InteractionOutcome.EDITED

    assert bulk(server_action, superuser, post) == SKIPPED
    edit(post, intro="Another field changed later.")
    assert bulk(server_action, superuser, post) == SKIPPED
    edit(post, summary="Someone rewrote the summary by hand.")
    assert bulk(server_action, superuser, post) == RAN
    assert fake_llm.request_count == 2


# -- what counts ----------------------------------------------------------------------------


def test_a_draft_counts_while_the_newest_revision_holds_it(
    post, server_action, fake_llm, superuser
):
    assert bulk(server_action, superuser, post) == RAN
    assert bulk(server_action, superuser, post) == SKIPPED

    edit(post, intro="A person changed another field.")
    assert bulk(server_action, superuser, post) == SKIPPED  # the summary is still the answer

    edit(post, summary="A person replaced the generated summary.")
    assert bulk(server_action, superuser, post) == RAN  # the answer is no longer in the page
    assert fake_llm.request_count == 2
    assert drafts(post) == 2


def test_an_answer_counts_when_a_person_discarded_it_not_when_its_job_was_cancelled(
    post, server_action, fake_llm, superuser, monkeypatch
):
    # Cancelled while the model answered: thrown away unseen, so it decides nothing.
    from wagtail_llm_actions.run.calls import single

    original = single.answer

    def cancel_meanwhile(prepared, interaction, **kwargs):
        result = original(prepared, interaction, **kwargs)
        editor.cancel_editor_job(editor_job[0])
        return result

    editor_job = []
    obj = reload(post).get_latest_revision_as_object()
    editor_job.append(editor.create_editor_job(server_action, post, obj, superuser))
    with monkeypatch.context() as patched:
        patched.setattr("wagtail_llm_actions.run.calls.single.answer", cancel_meanwhile)
        editor.enqueue_editor_job(editor_job[0], inline=True)
    assert LLMInteraction.objects.get().outcome == InteractionOutcome.DISCARDED
    assert bulk(server_action, superuser, post) == RAN

    # A person discards that draft in the report: the next job respects it.
    review.discard(LLMInteraction.objects.get(trigger="bulk"), superuser)
    assert bulk(server_action, superuser, post) == SKIPPED
    # ...and Discard in the editor too.
    other = make_second_action(server_action)
    discarded = run_in_editor(other, post, superuser)
    assert editor.set_outcome(discarded, InteractionOutcome.DISCARDED)
    assert bulk(other, superuser, post) == SKIPPED
    assert fake_llm.request_count == 3
    # --force runs a discarded page anyway.
    assert bulk(server_action, superuser, post, force=True) == RAN


def make_second_action(action):
    copy = type(action).objects.get(pk=action.pk)
    copy.pk = None
    copy.slug, copy.name, copy.target_field = "intro-writer", "Intro writer", "intro"
    copy.save()
    copy.page_types.set(action.page_types.all())
    return copy


# -- what the inputs are --------------------------------------------------------------------


def test_renaming_a_page_whose_prompt_uses_its_title_runs_again(
    post, server_action, fake_llm, superuser
):
    assert "{title}" in server_action.prompt.template
    bulk(server_action, superuser, post)
    edit(post, title="Composting on a balcony")
    assert bulk(server_action, superuser, post) == RAN
    assert "Composting on a balcony" in fake_llm.requests[-1]["json"]["messages"][-1]["content"]


def test_renaming_a_long_page_runs_again_when_only_the_combining_prompt_uses_its_title(
    make_long_post, map_reduce_action, fake_llm, superuser
):
    map_reduce_action.prompt = make_prompt("no-title", "Summarize:\n\n{body}")
    map_reduce_action.save()
    post, _markers = make_long_post(paragraphs=300)
    assert bulk(map_reduce_action, superuser, post) == RAN
    edit(post, title="A new title")
    calls = fake_llm.request_count
    assert bulk(map_reduce_action, superuser, post) == RAN
    assert "A new title" in fake_llm.requests[-1]["json"]["messages"][-1]["content"]
    assert bulk(map_reduce_action, superuser, post) == SKIPPED
    assert fake_llm.request_count == 2 * calls


def test_editing_the_prompt_runs_again(post, server_action, fake_llm, superuser):
    bulk(server_action, superuser, post)
    prompt = server_action.prompt
    prompt.template = "Summarise “{title}” in one sentence:\n\n{body}"
    prompt.save()
    prompt.save_revision()
    assert bulk(server_action, superuser, post) == RAN
    assert bulk(server_action, superuser, post) == SKIPPED
    assert fake_llm.request_count == 2


def test_changing_the_model_or_its_parameters_runs_again(post, server_action, fake_llm, superuser):
    bulk(server_action, superuser, post)
    server_action.temperature = 0.9
    server_action.save()
    assert bulk(server_action, superuser, post) == RAN
    server_action.model = "openai/another-fake-model"
    server_action.save()
    assert bulk(server_action, superuser, post) == RAN
    server_action.extra_params = {"top_p": 0.5}
    server_action.save()
    assert bulk(server_action, superuser, post) == RAN
    assert bulk(server_action, superuser, post) == SKIPPED
    assert fake_llm.request_count == 4


# -- one rule on every path -----------------------------------------------------------------


def command(*args) -> str:
    out = io.StringIO()
    call_command("run_llm_action", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_the_command_skips_an_unchanged_page_and_force_runs_it(
    post, server_action, fake_llm, superuser
):
    command(server_action.slug, "--page", str(post.pk))
    assert fake_llm.request_count == 1

    out = command(server_action.slug, "--page", str(post.pk))
    assert "skipped" in out and "unchanged since this action’s answer" in out
    assert fake_llm.request_count == 1
    assert drafts(post) == 1

    out = command(server_action.slug, "--page", str(post.pk), "--force")
    assert "draft revision" in out
    assert fake_llm.request_count == 2 and drafts(post) == 2
    # A bulk job and the command agree.
    assert bulk(server_action, superuser, post) == SKIPPED


def test_the_preview_applies_the_rule_in_a_fixed_number_of_queries(
    make_post, server_action, fake_llm, superuser
):
    def plan_queries(count):
        posts = [make_post() for _ in range(count)]
        for post in posts[::2]:  # a draft, then another field edited: still unchanged
            LLMService().run(server_action, reload(post))
            # (published: reading a page's unpublished draft costs queries of its own)
            edit(post, publish=True, intro="Edited later.")
        for post in posts[1::2]:  # an answer never saved: runs
            LLMService().run(server_action, reload(post), save=False)
        ids = [p.pk for p in posts]
        with CaptureQueriesContext(connection) as ctx:
            plan = jobs.plan_job(server_action, superuser, ids)
        return plan, len(ctx.captured_queries)

    small, small_queries = plan_queries(2)
    large, large_queries = plan_queries(6)
    assert (small.will_run, large.will_run) == (1, 3)
    assert {row["code"]: row["count"] for row in large.skip_rows} == {"unchanged": 3}
    assert large_queries <= small_queries  # not one more per page


def test_an_answer_filling_several_fields_counts_while_every_field_holds_it(
    post, make_action, fake_llm, api_key_env, superuser
):
    fake_llm.configure(
        json_reply={"title": "Compost in a flat", "tags": ["compost", "Worms"], "summary": "Bins."}
    )
    fields = make_action(
        name="SEO fields",
        slug="seo-fields",
        target_field="",
        output_fields={"title": "seo_title", "tags": "tags", "summary": "summary"},
        model="openai/fake-model",
        api_base=fake_llm.url,
        api_key_name=api_key_env,
    )
    assert bulk(fields, superuser, post) == RAN
    draft = reload(post).get_latest_revision_as_object()
    draft.tags.set(["worms", "compost"])  # the same tags, another order and case
    draft.intro = "Another field."
    draft.save_revision()
    assert bulk(fields, superuser, post) == SKIPPED

    edit(post, seo_title="A title someone wrote")
    assert bulk(fields, superuser, post) == RAN
    assert fake_llm.request_count == 2


@pytest.mark.parametrize("variable", ["url", "locale", "context"])
def test_a_change_of_a_prompt_variable_runs_again(
    variable, post, server_action, fake_llm, superuser
):
    """``{url}``, ``{locale}`` and ``{context}`` are inputs: a new value runs the page again
    (with it in the request), and the run after that skips it."""
    from wagtail.models import Locale

    template = f"Summarise “{{title}}” [{{{variable}}}]:\n\n{{body}}"
    server_action.prompt = make_prompt(f"uses-{variable}", template)
    server_action.context_message = "For readers with a garden."
    server_action.save()
    assert bulk(server_action, superuser, post) == RAN
    assert bulk(server_action, superuser, post) == SKIPPED
    if variable == "url":
        edit(post, publish=True, slug="composting-on-a-balcony")
        expected = "composting-on-a-balcony/]"
    elif variable == "locale":
        french = Locale.objects.create(language_code="fr")
        type(post).objects.filter(pk=post.pk).update(locale=french)
        expected = "[fr]"
    else:
        server_action.context_message = "For readers in small flats."
        server_action.save()
        expected = "[For readers in small flats.]"
    assert bulk(server_action, superuser, post) == RAN
    assert expected in fake_llm.requests[-1]["json"]["messages"][-1]["content"]
    assert bulk(server_action, superuser, post) == SKIPPED
    assert fake_llm.request_count == 2
