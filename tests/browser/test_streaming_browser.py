"""A streaming answer in a real browser: the text appears in the field while the model writes
it, the finished answer is filled and reviewed as ever, and Cancel stops the model and puts
the field back as it was.

The fake server streams a word or three every 60 ms (the answer takes about 2 s); jobs run
on the in-process django-q2 worker (``tests/browser/qworker.py``) through LiteLLM.
"""

from __future__ import annotations

import time

import pytest

from tests.browser.test_editor_browser import OLD_SUMMARY, login_and_edit, worker  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

ANSWER = " ".join(f"Composting step {n} keeps the heap warm." for n in range(1, 13))
SUMMARY = "textarea[name=summary]"


def summary_button(page):
    return page.locator(
        '[data-llm-action-field-value="summary"] [data-llm-action-target="run"]',
        has_text="Server summary",
    )


def test_the_answer_appears_in_the_field_as_it_is_written(
    live_server,
    browser_page,
    worker,  # noqa: F811
    post,
    server_action,
    fake_llm,
    superuser,
):
    from wagtail_llm_actions.models import LLMInteraction

    page = browser_page
    post.summary = OLD_SUMMARY
    post.save_revision().publish()
    fake_llm.configure(reply=ANSWER, stream_delay=0.06)
    login_and_edit(page, live_server, post)
    summary = page.locator(SUMMARY)
    summary.wait_for()

    started = time.perf_counter()
    summary_button(page).click()
    # part of the answer is in the field while the model is still writing
    page.wait_for_function(
        "(args) => { const v = document.querySelector(args[0]).value;"
        " return v.startsWith('Composting step 1') && v.length < args[1]; }",
        arg=[SUMMARY, len(ANSWER)],
    )
    first_text = time.perf_counter() - started
    assert summary.evaluate("e => e.readOnly")  # read-only while it is written
    assert page.locator(".llm-action__field--streaming").count() == 1
    partial = summary.input_value()
    assert ANSWER.startswith(partial) and len(partial) < len(ANSWER)

    # the finished answer is filled and reviewed as a plain one
    page.wait_for_function(
        "(args) => document.querySelector(args[0]).value === args[1]", arg=[SUMMARY, ANSWER]
    )
    whole = time.perf_counter() - started
    assert first_text < whole
    page.get_by_role("button", name="Undo").click()
    assert summary.input_value() == OLD_SUMMARY
    interaction = LLMInteraction.objects.get()
    assert interaction.output_value == ANSWER and interaction.status == "success"
    print(f"browser: first text {first_text:.2f} s, whole answer {whole:.2f} s")


def test_cancel_while_the_answer_is_written_stops_the_model_and_restores_the_field(
    live_server,
    browser_page,
    worker,  # noqa: F811
    post,
    server_action,
    fake_llm,
    superuser,
):
    from wagtail_llm_actions.models import LLMInteraction

    page = browser_page
    post.summary = OLD_SUMMARY
    post.save_revision().publish()
    revisions = post.revisions.count()
    fake_llm.configure(reply=ANSWER, stream_delay=0.1)
    login_and_edit(page, live_server, post)
    summary = page.locator(SUMMARY)
    summary.wait_for()

    summary_button(page).click()
    page.wait_for_function(
        "(sel) => document.querySelector(sel).value.startsWith('Composting step 1')",
        arg=SUMMARY,
    )
    page.get_by_role("button", name="Cancel").click()

    assert summary.input_value() == OLD_SUMMARY  # the field as it was, at once
    assert not summary.evaluate("e => e.readOnly")
    status = page.locator('[data-llm-action-field-value="summary"] [role=status]')
    assert "Cancelled" in status.inner_text()

    # the worker stops the stream: the connection closes before the answer's end
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not LLMInteraction.objects.exists():
        time.sleep(0.1)
    interaction = LLMInteraction.objects.get()
    assert interaction.status == "error" and interaction.error_code == "cancelled"
    sent = [r for r in fake_llm.requests if r["method"] == "POST"][-1]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sent["finished"] is None:
        time.sleep(0.1)
    assert sent["client_closed"]
    words = len(ANSWER.split())
    assert sent["chunks_sent"] < words / 4  # about 42 chunks in all (1-3 words each)
    time.sleep(1)  # nothing comes later
    assert summary.input_value() == OLD_SUMMARY
    assert post.revisions.count() == revisions
