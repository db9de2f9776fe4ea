"""Selection tools in a real browser (issue 24 §2): select text in a Draftail field holding a
link and a bold span, run "Rewrite" (queued, polled, the answer streamed into the preview),
see the preview, Accept: the field holds the rewritten text with the link and the bold kept;
Draftail's Undo restores it."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.browser import test_editor_browser
from tests.browser.test_a11y_browser import serious_violations_light_and_dark
from tests.browser.test_queued_runs_browser import log_in
from tests.fakeserver import reverse_words

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

worker = test_editor_browser.worker  # the in-process django-q2 worker fixture

ORIGINAL = "Read the compost guide for very good soil today."


def test_rewrite_a_selection_keeps_the_link_and_bold_and_undo_restores_it(
    live_server,
    browser_page,
    worker,
    make_post,
    blog_index,
    make_server_action,
    fake_llm,
    superuser,
):
    page = browser_page
    post = make_post(
        highlights=(
            f'<p>Read <a linktype="page" id="{blog_index.pk}">the compost guide</a> for '
            "<b>very good</b> soil today.</p><p>A second paragraph.</p>"
        )
    )
    make_server_action(name="House style", slug="house-style", selection_tool=True)
    fake_llm.configure(translate="reverse", latency=0.5, stream_delay=0.6)
    log_in(page, live_server)
    page.goto(live_server.url + reverse("wagtailadmin_pages:edit", args=[post.pk]))

    field = page.locator("[data-contentpath=highlights]")
    editor = field.locator(".public-DraftEditor-content")
    editor.click()

    # Across two paragraphs: refused with a message, nothing sent
    page.keyboard.press("Control+a")
    field.locator("[data-llm-selection]").first.click()
    assert "more than one block" in page.locator(".llm-selection").inner_text()
    page.locator(".llm-selection").get_by_role("button", name="Close").click()
    assert fake_llm.request_count == 0

    editor.click()
    page.keyboard.press("Control+Home")
    page.keyboard.press("Shift+End")
    field.locator("[data-llm-selection]").first.click()
    page.locator(".llm-selection").get_by_role("button", name="Rewrite").wait_for()
    found = serious_violations_light_and_dark(page, "selection-menu")
    page.locator(".llm-selection").get_by_role("button", name="Rewrite").click()

    # Streamed: the text so far shows (plain, no placeholders) before the answer is complete
    rewritten = reverse_words(ORIGINAL)
    partial = page.locator(".llm-selection__partial")
    partial.wait_for(timeout=30_000)
    so_far = partial.inner_text()
    assert so_far and rewritten.startswith(so_far) and "⟦" not in so_far
    assert page.locator(".llm-selection").get_by_role("button", name="Accept").count() == 0

    # Queued and polled: then the preview, the field unchanged until Accept
    accept = page.locator(".llm-selection").get_by_role("button", name="Accept")
    accept.wait_for(timeout=30_000)
    assert page.locator(".llm-selection__preview").inner_text() == rewritten
    assert page.locator(".llm-selection__preview strong").inner_text() == reverse_words("very good")
    assert editor.inner_text().startswith(ORIGINAL)
    found += serious_violations_light_and_dark(page, "selection-preview")
    assert not found, "\n".join(found)
    accept.click()

    assert editor.inner_text().startswith(rewritten + "\n")
    assert "A second paragraph." in editor.inner_text()
    assert editor.locator("a").inner_text() == reverse_words("the compost guide")
    assert page.locator(".llm-selection").count() == 0

    # Draftail's Undo restores the selection as it was, Redo brings the rewrite back
    editor.click()
    page.keyboard.press("Control+z")
    page.wait_for_function(
        "([el, text]) => el.innerText.startsWith(text)", arg=[editor.element_handle(), ORIGINAL]
    )
    assert editor.locator("a").inner_text() == "the compost guide"
    page.keyboard.press("Control+Shift+z")
    page.wait_for_function(
        "([el, text]) => el.innerText.startsWith(text)", arg=[editor.element_handle(), rewritten]
    )

    # Saved: the link keeps its page id, the bold span its words (once Draftail has synced
    # its hidden input, which it does a moment after each change)
    page.wait_for_function(
        "text => document.querySelector('input[name=highlights]').value.includes(text)",
        arg=reverse_words("the compost guide"),
    )
    page.locator("button[name=action-save-draft], button.action-save").first.click()
    page.locator(".messages .success").first.wait_for()
    saved = type(post).objects.get(pk=post.pk).get_latest_revision_as_object().highlights
    assert (
        f'<a linktype="page" id="{blog_index.pk}">{reverse_words("the compost guide")}</a>' in saved
    )
    assert f"<b>{reverse_words('very good')}</b>" in saved


def test_a_refused_answer_and_a_discard_leave_the_selection_untouched(
    live_server, browser_page, worker, make_post, make_server_action, fake_llm, superuser
):
    from wagtail_llm_actions.models import LLMInteraction

    page = browser_page
    post = make_post(highlights="<p>Keep <b>this</b> sentence as it is.</p>")
    make_server_action(name="House style", slug="house-style", selection_tool=True)
    fake_llm.configure(translate="drop_tag")  # every answer loses the bold
    log_in(page, live_server)
    page.goto(live_server.url + reverse("wagtailadmin_pages:edit", args=[post.pk]))
    field = page.locator("[data-contentpath=highlights]")
    editor = field.locator(".public-DraftEditor-content")
    panel = page.locator(".llm-selection")

    def run(tool: str) -> None:
        editor.click()
        page.keyboard.press("Control+Home")
        page.keyboard.press("Shift+End")
        field.locator("[data-llm-selection]").first.click()
        panel.get_by_role("button", name=tool).click()

    run("Shorten")
    panel.get_by_text("Nothing was changed").wait_for(timeout=30_000)
    assert editor.inner_text().strip() == "Keep this sentence as it is."
    assert fake_llm.request_count == 2  # asked again once
    panel.get_by_role("button", name="Close").click()

    fake_llm.configure(translate="reverse")
    run("Expand")
    panel.get_by_role("button", name="Discard").click()
    assert panel.count() == 0
    assert editor.inner_text().strip() == "Keep this sentence as it is."
    for _ in range(50):  # the outcome is posted in the background
        if LLMInteraction.objects.filter(outcome="discarded").exists():
            break
        page.wait_for_timeout(100)
    assert LLMInteraction.objects.filter(outcome="discarded").count() == 1
