"""The page editor in a real browser: generate from unsaved content, review, save the draft.

Drives Debian's ``chromium`` through Playwright (never a downloaded browser) against
``live_server``. Jobs go through the real background path: the run endpoint queues them on
django-q2's ORM broker and an in-process worker thread (``tests/browser/qworker.py``)
dequeues and runs them, calling the fake OpenAI-compatible server through LiteLLM.

Artifacts: ``test-artifacts/editor-filled.png`` (the filled editor) and
``test-artifacts/timings.txt`` (click-to-filled at zero latency, run POST at 10 s latency).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from django.db import connections
from django.urls import reverse

from tests.browser.qworker import WorkerThread

pytestmark = [
    pytest.mark.browser,
    # live_server flushes the database after the test; restore the migrated data before it
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
UNSAVED_BODY = "Earthworms turn kitchen peelings into dark crumbly soil within weeks."
TYPED_INTRO = "Typed while the model was thinking"
OLD_SUMMARY = "The summary saved before."


@pytest.fixture
def worker(live_server):
    """A django-q2 worker in this process, on the live server's database."""
    conn = connections["default"]
    shared = conn if conn.vendor == "sqlite" and conn.is_in_memory_db() else None
    if shared is not None:
        shared.inc_thread_sharing()
    thread = WorkerThread(connection=shared)
    thread.start()
    thread.started_up.wait(30)
    yield thread
    thread.stop()
    if shared is not None:
        shared.dec_thread_sharing()
    assert not thread.errors, thread.errors


def login_and_edit(page, live_server, post):
    page.goto(live_server.url + reverse("wagtailadmin_login"))
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/admin/$"))
    page.goto(live_server.url + reverse("wagtailadmin_pages:edit", args=[post.pk]))


def type_body(page, text):
    """Replace the first paragraph of the body, without saving."""
    paragraph = page.locator("[data-contentpath=body] .public-DraftEditor-content").first
    paragraph.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(text)


def save_draft(page):
    page.locator("button[name=action-save-draft], button.action-save").first.click()
    page.wait_for_load_state("networkidle")
    page.locator(".messages .success").first.wait_for()


def _reply(counter):
    def reply(request_json):
        counter["n"] += 1
        prompt = request_json["messages"][-1]["content"]
        first = next(
            (line for line in prompt.splitlines() if "Earthworms" in line or "compost" in line),
            "nothing",
        )
        return f"Summary {counter['n']}: {first.strip()}"

    return reply


def test_generate_summary_from_unsaved_body_then_save_draft(
    live_server, browser_page, worker, post, server_action, fake_llm, superuser
):
    from blog.models import BlogPage

    from wagtail_llm_actions.models import LLMInteraction

    page = browser_page
    post.summary = OLD_SUMMARY
    post.save_revision().publish()
    post.refresh_from_db()
    live_revision_id = post.live_revision_id
    counter = {"n": 0}
    fake_llm.configure(reply=_reply(counter), latency=1.0)
    timings: list[str] = []

    # log in and open the post
    login_and_edit(page, live_server, post)
    summary = page.locator("textarea[name=summary]")
    summary.wait_for()
    button = page.locator(
        '[data-llm-action-field-value="summary"] [data-llm-action-target="run"]',
        has_text="Server summary",
    )
    assert button.count() == 1

    # change the body without saving: the paragraph's rich text editor
    type_body(page, UNSAVED_BODY)

    # generate; type in another field while the model is answering
    button.click()
    page.locator(".llm-action__status--busy").wait_for()
    page.fill("#id_intro", TYPED_INTRO)
    page.wait_for_function(
        "() => document.querySelector('textarea[name=summary]').value.startsWith('Summary 1')"
    )
    page.locator('[data-llm-action-field-value="summary"] [data-llm-action-review=undo]').wait_for()
    assert UNSAVED_BODY in summary.input_value()  # from the unsaved body
    assert page.input_value("#id_intro") == TYPED_INTRO  # untouched by the fill
    status = page.locator('[data-llm-action-field-value="summary"] [role=status]')
    assert "filled" in status.inner_text()

    # Undo restores what was there; Regenerate asks again
    page.get_by_role("button", name="Undo").click()
    assert summary.input_value() == OLD_SUMMARY
    fake_llm.configure(latency=0.0)
    page.get_by_role("button", name="Regenerate").click()
    page.wait_for_function(
        "() => document.querySelector('textarea[name=summary]').value.startsWith('Summary 2')"
    )
    page.locator('[data-llm-action-field-value="summary"] [data-llm-action-review=undo]').wait_for()

    # Discard, then time a fresh click at zero latency
    page.get_by_role("button", name="Discard").click()
    assert summary.input_value() == OLD_SUMMARY
    started = time.perf_counter()
    button.click()
    page.wait_for_function(
        "() => document.querySelector('textarea[name=summary]').value.startsWith('Summary 3')"
    )
    page.locator('[data-llm-action-field-value="summary"] [data-llm-action-review=undo]').wait_for()
    click_to_filled = time.perf_counter() - started
    generated = summary.input_value()
    assert UNSAVED_BODY in generated
    timings.append(f"click to filled field, fake provider latency 0 s: {click_to_filled:.3f} s")
    ARTIFACTS.mkdir(exist_ok=True)
    summary.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "editor-filled.png"))

    # save the draft
    save_draft(page)

    fresh = BlogPage.objects.get(pk=post.pk)
    draft = fresh.get_latest_revision_as_object()
    assert draft.summary == generated
    assert draft.intro == TYPED_INTRO
    assert UNSAVED_BODY in str(draft.body)
    assert fresh.live_revision_id == live_revision_id  # the live page is unchanged
    assert fresh.summary == OLD_SUMMARY
    interactions = {i.output_value.split(":")[0]: i for i in LLMInteraction.objects.all()}
    kept = interactions["Summary 3"]
    assert kept.revision_id == fresh.latest_revision_id
    assert kept.outcome == "accepted"
    assert interactions["Summary 1"].outcome == "discarded"
    assert interactions["Summary 2"].outcome == "discarded"

    # with 10 s of provider latency the click answers at once and the page stays usable
    server_action.timeout = 30
    server_action.save()
    fake_llm.configure(latency=10.0)
    page.locator("textarea[name=summary]").wait_for()
    button.click()
    page.locator(".llm-action__status--busy").wait_for()
    post_ms = page.wait_for_function(
        "() => (performance.getEntriesByType('resource')"
        ".filter(e => e.name.includes('/llm-actions/editor/run/')).pop() || {}).duration"
    ).json_value()
    page.fill("#id_intro", "Still typing while it runs")
    assert page.input_value("#id_intro") == "Still typing while it runs"
    page.get_by_role("button", name="Cancel").click()
    assert "Cancelled" in status.inner_text()
    timings.append(f"run POST, fake provider latency 10 s: {post_ms:.0f} ms")
    (ARTIFACTS / "timings.txt").write_text("\n".join(timings) + "\n")
    print("\n".join(timings))

    # the cancelled run is stopped when its answer starts to stream: nothing to review
    def cancelled_answer_recorded() -> bool:
        latest = LLMInteraction.objects.order_by("-pk").first()
        return LLMInteraction.objects.count() >= 4 and latest.outcome != "pending"

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not cancelled_answer_recorded():
        time.sleep(0.2)
    assert LLMInteraction.objects.count() == 4
    cancelled = LLMInteraction.objects.latest("pk")
    assert (cancelled.status, cancelled.error_code) == ("error", "cancelled")
    assert cancelled.output_value == ""


def test_tags_and_rich_text_widgets_are_filled_and_saved(
    live_server, browser_page, worker, post, make_action, superuser
):
    """The tag widget gets tags and Draftail gets formatted text, from the unsaved body."""
    from blog.models import BlogPage

    from wagtail_llm_actions.models import LLMInteraction

    page = browser_page
    make_action(
        name="Suggest tags",
        slug="suggest-tags",
        model="local/keywords",
        target_field="tags",
        output_mode="tags",
    )
    make_action(
        name="Write highlights",
        slug="write-highlights",
        target_field="highlights",
        output_mode="rich_text",
    )
    login_and_edit(page, live_server, post)
    type_body(page, UNSAVED_BODY)

    page.get_by_role("button", name="Suggest tags").click()
    tags = page.locator("[data-llm-action-field-value=tags] .tagit-label")
    tags.first.wait_for()
    tag_names = [name.lower() for name in tags.all_inner_texts()]
    assert "earthworms" in tag_names

    page.get_by_role("button", name="Write highlights").click()
    highlights = page.locator(
        "[data-llm-action-field-value=highlights] .public-DraftEditor-content"
    )
    page.wait_for_function(
        "() => document.querySelector("
        "'[data-llm-action-field-value=highlights] .public-DraftEditor-content'"
        ").innerText.includes('Earthworms')"
    )
    assert "Earthworms" in highlights.inner_text()

    save_draft(page)

    draft = BlogPage.objects.get(pk=post.pk).get_latest_revision_as_object()
    assert "earthworms" in {tag.name.lower() for tag in draft.tags.all()}
    assert "Earthworms" in draft.highlights
    assert BlogPage.objects.get(pk=post.pk).highlights == ""  # live page unchanged
    outcomes = set(LLMInteraction.objects.values_list("outcome", flat=True))
    assert outcomes == {"accepted"}


def test_a_kept_cut_off_answer_shows_its_warning_until_undone(
    live_server, browser_page, worker, post, server_action, fake_llm, superuser
):
    page = browser_page
    server_action.cut_answers = "keep"
    server_action.save()
    fake_llm.configure(reply="Compost turns peelings into", finish_reason="length")
    login_and_edit(page, live_server, post)
    field = page.locator('[data-llm-action-field-value="summary"]')
    field.locator('[data-llm-action-target="run"]', has_text="Server summary").click()

    warning = field.locator("[data-llm-action-warning]")
    warning.wait_for()

    assert page.input_value("textarea[name=summary]") == "Compost turns peelings into"
    assert "cut off at the action's max tokens (120)" in warning.inner_text()
    page.get_by_role("button", name="Undo").click()
    assert warning.count() == 0  # the warning goes with the answer
