"""A pipeline run from the page editor (chromium + worker): on the unsaved form, every written
field reviewed on its own, nothing saved until the editor saves.

Same set-up as ``test_editor_browser``: Debian's chromium through Playwright against
``live_server``, jobs queued on django-q2's ORM broker and run by an in-process worker that
calls the fake OpenAI-compatible server through LiteLLM.
"""

from __future__ import annotations

import pytest

from tests.browser.test_editor_browser import (  # noqa: F401
    UNSAVED_BODY,
    login_and_edit,
    save_draft,
    type_body,
    worker,
)
from tests.fakeserver import last_user_message

pytestmark = [
    pytest.mark.browser,
    pytest.mark.usefixtures("worker", "superuser"),
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

OLD_SUMMARY = "The summary saved before."
OLD_INTRO = "The intro saved before."
PIPELINE_BUTTON = ".llm-action__run[data-llm-action-kind=pipeline] >> visible=true"


def field(name: str) -> str:
    return f'[data-llm-action-field-value="{name}"]'


def reply(payload) -> str:
    """Outline: the body's line about earthworms (or compost); summary: "of" the outline."""
    text = last_user_message(payload)
    if text.startswith("OUTLINE"):
        line = next(
            (s for s in text.splitlines() if "Earthworms" in s or "compost" in s), "nothing"
        )
        return f"Outline: {line.strip()}"
    return "Summary of " + text.split("OUTLINE-ANSWER:", 1)[1].strip()


@pytest.fixture
def pipeline(make_action, fake_llm, api_key_env):
    """outline (writes intro) -> summary (writes summary, reads {steps.outline})."""
    from wagtail_llm_actions.models import LLMPipeline, LLMPipelineStep, LLMPrompt

    def prompt(slug, template):
        p = LLMPrompt.objects.create(name=slug, slug=slug, template=template)
        p.save_revision()
        return p

    common = {"model": "openai/fake-model", "api_base": fake_llm.url, "api_key_name": api_key_env}
    outline = make_action(
        name="Outline",
        slug="outline",
        target_field="intro",
        prompt=prompt("outline", "OUTLINE the page:\n\n{body}"),
        **common,
    )
    summary = make_action(
        name="Summary from outline",
        slug="summary-from-outline",
        prompt=prompt("from-outline", "SUMMARY OUTLINE-ANSWER: {steps.outline}"),
        **common,
    )
    fake_llm.configure(reply=reply)
    pipeline = LLMPipeline.objects.create(name="Outline and summary", slug="outline-summary")
    LLMPipelineStep.objects.create(pipeline=pipeline, sort_order=0, name="outline", action=outline)
    LLMPipelineStep.objects.create(pipeline=pipeline, sort_order=1, name="summary", action=summary)
    return pipeline


@pytest.fixture
def saved_post(post):
    post.summary = OLD_SUMMARY
    post.intro = OLD_INTRO
    post.save_revision().publish()
    post.refresh_from_db()
    return post


def test_a_pipeline_fills_each_field_from_the_unsaved_form_for_review(
    live_server, browser_page, saved_post, pipeline, fake_llm
):
    from blog.models import BlogPage

    from wagtail_llm_actions.models import LLMInteraction, LLMRun

    page = browser_page
    post = saved_post
    live_revision_id = post.live_revision_id
    login_and_edit(page, live_server, post)
    summary = page.locator("textarea[name=summary]")
    summary.wait_for()

    type_body(page, UNSAVED_BODY)  # not saved
    page.locator(PIPELINE_BUTTON).click()
    page.wait_for_function(
        "() => document.querySelector('textarea[name=summary]').value.startsWith('Summary of')"
    )
    page.wait_for_function("() => document.querySelectorAll('.llm-action--filled').length === 2")
    # both steps read the unsaved body: the summary is of the outline of the typed text
    assert summary.input_value() == f"Summary of Outline: {UNSAVED_BODY}"
    assert page.input_value("#id_intro") == f"Outline: {UNSAVED_BODY}"
    assert page.locator(".llm-action--filled:has([name=summary])").count() == 1  # highlighted
    # the run wrote no revision (the editor's own saves and autosaves are the only ones)
    assert LLMRun.objects.get().revision_id is None
    # each filled field has its own review controls
    assert page.locator("[data-llm-action-review=keep] >> visible=true").count() == 2

    # Keep the summary, Discard the intro (its saved value comes back)
    page.locator(f"{field('summary')} [data-llm-action-review=keep]").click()
    page.locator(f"{field('intro')} [data-llm-action-review=discard] >> visible=true").click()
    assert page.input_value("#id_intro") == OLD_INTRO
    assert summary.input_value() == f"Summary of Outline: {UNSAVED_BODY}"
    assert page.locator(".llm-action--filled").count() == 0

    save_draft(page)

    fresh = BlogPage.objects.get(pk=post.pk)
    draft = fresh.get_latest_revision_as_object()
    assert UNSAVED_BODY in str(draft.body)  # the unsaved edit
    assert draft.summary == f"Summary of Outline: {UNSAVED_BODY}"  # kept
    assert draft.intro == OLD_INTRO  # discarded
    assert LLMRun.objects.get().revision_id is None
    assert fresh.live_revision_id == live_revision_id
    assert fresh.summary == OLD_SUMMARY  # the live page is unchanged
    outcomes = dict(
        LLMInteraction.objects.filter(run__isnull=False).values_list("step_name", "outcome")
    )
    assert outcomes == {"outline": "discarded", "summary": "accepted"}
    kept = LLMInteraction.objects.get(step_name="summary")
    assert kept.revision_id == fresh.latest_revision_id
    assert LLMRun.objects.get().status == "success"
    assert fake_llm.request_count == 2


def test_a_failing_step_is_shown_and_the_form_is_untouched(
    live_server, browser_page, saved_post, pipeline, fake_llm
):
    from wagtail_llm_actions.models import LLMRun

    page = browser_page
    fake_llm.enqueue()  # the outline answers
    fake_llm.enqueue(status=400, error_message="The model refused this prompt")
    login_and_edit(page, live_server, saved_post)
    summary = page.locator("textarea[name=summary]")
    summary.wait_for()
    type_body(page, UNSAVED_BODY)

    page.locator(PIPELINE_BUTTON).click()
    error = page.locator(f"{field('intro')} [data-llm-action-target=error] >> visible=true")
    error.wait_for()
    text = error.inner_text()
    assert "“summary” failed" in text  # which step
    assert "refused this prompt" in text  # and why
    assert "Nothing in the form was changed" in text
    assert summary.input_value() == OLD_SUMMARY
    assert page.input_value("#id_intro") == OLD_INTRO
    assert page.locator(".llm-action--filled").count() == 0
    assert page.locator("[data-llm-action-review=keep] >> visible=true").count() == 0
    run = LLMRun.objects.get()
    assert run.failed_step == "summary"
