"""Several fields from one answer, and candidates, in the real editor (chromium + worker).

Same set-up as ``test_editor_browser``: Debian's chromium through Playwright against
``live_server``, jobs queued on django-q2's ORM broker and run by an in-process worker that
calls the fake OpenAI-compatible server through LiteLLM.
"""

from __future__ import annotations

import pytest

from tests.browser.test_editor_browser import login_and_edit, save_draft, worker  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.usefixtures("worker", "superuser"),
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

GOOD = {
    "summary": "A small bin, worms and peelings make compost.",
    "tags": ["compost", "worms"],
    "title": "Compost in a flat",
}
OLD_SUMMARY = "The summary saved before."


def field(name: str) -> str:
    return f'[data-llm-action-field-value="{name}"]'


def detached(name: str) -> str:
    """The review box placed after a field the page's panels give no buttons for (the blog's
    tags panel offers only "suggest-tags"; seo_title is a plain field)."""
    return f'.w-field__wrapper:has([name="{name}"]) ~ .llm-action__panel--detached'


def test_each_field_of_a_structured_answer_is_reviewed_on_its_own(
    live_server,
    browser_page,
    post,
    make_action,
    fake_llm,
    api_key_env,
):
    from blog.models import BlogPage

    from wagtail_llm_actions.models import LLMInteraction

    page = browser_page
    post.summary = OLD_SUMMARY
    post.seo_title = "Old SEO title"
    post.save_revision().publish()
    make_action(
        name="Fill SEO fields",
        slug="fill-seo",
        target_field="",
        output_fields={"summary": "summary", "tags": "tags", "title": "seo_title"},
        model="openai/fake-model",
        api_base=fake_llm.url,
        api_key_name=api_key_env,
    )
    fake_llm.configure(json_reply=GOOD)

    login_and_edit(page, live_server, post)
    summary = page.locator("textarea[name=summary]")
    summary.wait_for()
    page.locator(f"{field('summary')} [data-llm-action-target=run]").click()
    page.wait_for_function(
        f"() => document.querySelector('textarea[name=summary]').value === {GOOD['summary']!r}"
    )
    # the other fields are filled one after another
    page.wait_for_function("() => document.querySelectorAll('.llm-action--filled').length === 3")
    tags = page.locator(".w-field__wrapper:has([name=tags]) .tagit-label")
    assert sorted(t.lower() for t in tags.all_inner_texts()) == ["compost", "worms"]
    assert page.input_value("#id_seo_title") == GOOD["title"]
    # every filled field has its own highlight and review controls
    assert page.locator(".llm-action--filled").count() == 3
    assert page.locator("[data-llm-action-review=undo]").count() == 3

    # Undo the summary only: the other fields keep their values
    page.locator(f"{field('summary')} [data-llm-action-review=undo]").click()
    assert summary.input_value() == OLD_SUMMARY
    assert page.input_value("#id_seo_title") == GOOD["title"]
    # Discard the tags; keep the SEO title (a plain field, on the Promote tab)
    page.locator(f"{detached('tags')} [data-llm-action-review=discard]").click()
    assert tags.count() == 0
    page.get_by_role("tab", name="Promote").click()
    keep = "[data-llm-action-review=keep]"
    # seo_title's buttons are placed by the editor's script (no LLMActionPanel for it)
    page.locator(f"{field('seo_title')} {keep}, {detached('seo_title')} {keep}").locator(
        "visible=true"
    ).click()
    assert page.input_value("#id_seo_title") == GOOD["title"]

    save_draft(page)

    draft = BlogPage.objects.get(pk=post.pk).get_latest_revision_as_object()
    assert draft.summary == OLD_SUMMARY
    assert draft.seo_title == GOOD["title"]
    assert list(draft.tags.all()) == []
    interaction = LLMInteraction.objects.get()
    assert interaction.field_outcomes == {
        "summary": "discarded",
        "tags": "discarded",
        "seo_title": "accepted",
    }
    assert interaction.outcome == "accepted"
    assert fake_llm.request_count == 1  # one call filled the three fields


def test_candidates_are_offered_and_the_picked_one_is_recorded(
    live_server,
    browser_page,
    post,
    server_action,
    fake_llm,
):
    from blog.models import BlogPage

    from wagtail_llm_actions.models import LLMInteraction

    page = browser_page
    post.summary = OLD_SUMMARY
    post.save_revision().publish()
    server_action.candidates = 3
    server_action.save()
    fake_llm.configure(candidate_replies=["First idea.", "Second idea.", "Third idea."])

    login_and_edit(page, live_server, post)
    summary = page.locator("textarea[name=summary]")
    summary.wait_for()
    page.locator(f"{field('summary')} [data-llm-action-target=run]").click()
    choices = page.locator(f"{field('summary')} [data-llm-action-candidate]")
    choices.nth(2).wait_for()
    assert choices.all_inner_texts() == ["First idea.", "Second idea.", "Third idea."]
    # a screen reader announces each suggestion's own text (WCAG 2.5.3, label in name), in a
    # group named after the field
    group = page.get_by_role("group", name="Suggestions for Summary")
    for text in ("First idea.", "Second idea.", "Third idea."):
        assert group.get_by_role("button", name=text, exact=True).count() == 1
    assert summary.input_value() == OLD_SUMMARY  # nothing filled before a pick

    choices.nth(1).click()
    page.wait_for_function(
        "() => document.querySelector('textarea[name=summary]').value === 'Second idea.'"
    )
    assert page.locator(f"{field('summary')} [data-llm-action-review=undo]").count() == 1
    assert choices.count() == 0  # the choices make way for the usual review controls
    page.locator(f"{field('summary')} [data-llm-action-review=keep]").click()

    save_draft(page)

    draft = BlogPage.objects.get(pk=post.pk).get_latest_revision_as_object()
    assert draft.summary == "Second idea."
    interaction = LLMInteraction.objects.get()
    assert interaction.chosen_candidate == 1
    assert interaction.outcome == "accepted"
    assert fake_llm.request_count == 1
    assert fake_llm.last_request["json"]["n"] == 3
