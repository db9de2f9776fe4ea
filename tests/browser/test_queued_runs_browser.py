"""Issue 21, §2 in a real browser: no model call inside a request, nothing costly by accident.

* Rerun (interaction page) asks first with its estimate, then queues the run and shows its
  progress (spinner, elapsed time, Cancel) while the model answers; the new draft's
  interaction opens when it is done. Cancel on the progress page saves nothing.
* "Try on a page" runs the same way and comes back with the answer beside the current value;
  kept as a draft, the report and the page's history record a test, not a rerun (§1).
* In the page editor, the field a run will fill is read-only, saying "Generating…", while
  the run waits; it is editable again (and filled) when the answer arrives; Cancel gives it
  back at once and the late answer is not written.

Each flow runs three times in a row ("under load") against the fake model with latency. The
model's answer is held by a gate (:func:`held_reply`) until the test has looked at the page,
so "while the model answers" is a fact, not a race: no timing asserts.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
from django.urls import reverse

from tests.browser import test_editor_browser
from tests.browser.screens import log_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

MODEL_SECONDS = 3.0
#: The editor's slowest status poll (llm-action-controller.js POLL_SLOW_MS).
POLL_SLOW_MS = 1000
RUNS = 3  # key flows run several times in a row (issue 21: "under load")

worker = test_editor_browser.worker  # the in-process django-q2 worker fixture


@pytest.fixture
def first_run(post, server_action, superuser, fake_llm):
    from wagtail_llm_actions.service import LLMService

    fake_llm.configure(reply=lambda request_json: "The first answer.")
    run = LLMService().run(server_action, post, user=superuser)
    fake_llm.reset()
    return run


def held_reply(gate: threading.Event, text: str):
    """A model that answers ``text`` only once ``gate`` is set (after the fake's latency):
    what the page shows meanwhile is shown while the model is still answering, for sure."""

    def reply(request_json):
        gate.wait(60)
        return text

    return reply


def wait_until(predicate, timeout: float = 30.0) -> None:
    """Wait for a state of the database (the worker's writes), checking it every 0.1 s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the worker"
        time.sleep(0.1)


def started_from(page) -> str:
    """The interaction page's "Started from" (the trigger, as the report records it)."""
    return page.locator("dl.llm-dl dt:has-text('Started from') + dd").first.inner_text().strip()


@pytest.fixture
def patient_action(server_action):
    """The fake model is held open while the test looks at the progress page: no timeout."""
    server_action.timeout = 60
    server_action.save()
    return server_action


def test_rerun_asks_first_then_shows_progress_while_the_model_answers_and_opens_the_new_draft(
    live_server,
    browser_page,
    worker,
    post,
    patient_action,
    first_run,
    fake_llm,
):
    """Three reruns in a row, each of the draft the last one wrote."""
    from wagtail_llm_actions.models import LLMInteraction

    page = browser_page
    log_in(page, live_server)
    current, seen = first_run, {first_run.pk}
    for run in range(RUNS):
        gate = threading.Event()
        answer = f"Answer number {run + 2}."
        fake_llm.configure(reply=held_reply(gate, answer), latency=MODEL_SECONDS / 3)
        try:
            page.goto(
                live_server.url + reverse("wagtail_llm_actions_report:detail", args=[current.pk])
            )
            # Rerun asks first, with what it will cost
            page.locator("[data-llm-rerun]").click()
            confirm = page.locator("[data-llm-confirm]")
            confirm.wait_for()
            assert "new draft" in confirm.inner_text()
            assert page.locator("[data-llm-estimate-tokens]").is_visible()
            assert page.locator("[data-llm-estimate-cost]").is_visible()
            assert LLMInteraction.objects.count() == len(seen)  # asking ran nothing

            # confirmed: the progress page, while the model has the request and no answer
            page.locator("[data-llm-confirm-button]").click()
            page.locator("[data-llm-queued-run] .llm-action__status--busy").wait_for()
            assert page.locator("[data-llm-queued-run-cancel]").is_visible()
            page.wait_for_function(
                "() => document.querySelector('[data-llm-queued-run-target=message]')"
                ".textContent.includes('Generating')"
            )
            page.wait_for_function(
                "() => /\\d+ s/.test(document.querySelector("
                "'[data-llm-queued-run-target=elapsed]').textContent)"
            )
            assert fake_llm.wait_for_requests(run + 1, timeout=30)
            assert fake_llm.completions == run  # this run's answer has not come back
            assert "/runs/" in page.url  # the request returned before the model answered
        finally:
            gate.set()

        # done: the new interaction, with the message and its draft
        page.wait_for_url(re.compile(r"/report/\d+/$"), timeout=30_000)
        new = LLMInteraction.objects.exclude(pk__in=seen).get()
        assert page.url.endswith(reverse("wagtail_llm_actions_report:detail", args=[new.pk])), (
            page.url
        )
        assert "ran again" in page.locator(".messages").inner_text()
        assert new.revision_id is not None and new.trigger == "rerun", (run, new.trigger)
        assert started_from(page) == "Rerun"
        draft = type(post).objects.get(pk=post.pk).get_latest_revision_as_object()
        assert draft.summary == answer, (run, draft.summary)
        seen.add(new.pk)
        current = new


def test_cancel_on_the_progress_page_saves_nothing(
    live_server,
    browser_page,
    worker,
    post,
    patient_action,
    first_run,
    fake_llm,
):
    """Three cancelled reruns in a row; each answer arrives after its cancel."""
    from wagtail_llm_actions.models import LLMInteraction, LLMJob

    page = browser_page
    revisions = post.revisions.count()
    log_in(page, live_server)
    for run in range(RUNS):
        gate = threading.Event()
        fake_llm.configure(reply=held_reply(gate, "Never saved."), latency=MODEL_SECONDS / 3)
        try:
            page.goto(
                live_server.url + reverse("wagtail_llm_actions_report:rerun", args=[first_run.pk])
            )
            page.locator("[data-llm-confirm-button]").click()
            page.locator("[data-llm-queued-run]").wait_for()
            page.wait_for_function(
                "() => document.querySelector('[data-llm-queued-run-target=message]')"
                "?.textContent.includes('Generating')",
                timeout=30_000,
            )
            assert fake_llm.wait_for_requests(run + 1, timeout=30)

            page.locator("[data-llm-queued-run-cancel]").click()
            # cancelled at once; the call already made ends first, its answer not saved
            page.wait_for_function(
                "() => document.querySelector('[data-llm-queued-run-target=message]')"
                ".textContent.includes('Cancelling')"
            )
            assert page.locator("[data-llm-queued-run-cancel]").is_disabled()
            wait_until(
                lambda run=run: (
                    LLMJob.objects.filter(kind="editor", status="cancelled").count() == run + 1
                )
            )
            assert fake_llm.completions == run  # the model has not answered yet
        finally:
            gate.set()  # the answer arrives after the cancel: paid for, recorded, not written

        page.wait_for_url(
            re.compile(
                reverse("wagtail_llm_actions_report:detail", args=[first_run.pk]).replace(
                    "/", r"\/"
                )
                + "$"
            ),
            timeout=30_000,
        )
        assert "Cancelled" in page.locator(".messages").inner_text()
        wait_until(
            lambda run=run: LLMInteraction.objects.filter(status="answered").count() == run + 1
        )
        assert post.revisions.count() == revisions
        assert not LLMInteraction.objects.exclude(pk=first_run.pk).filter(revision__isnull=False)


def test_try_on_a_page_runs_queued_and_keeping_the_answer_is_recorded_as_a_test(
    live_server,
    browser_page,
    worker,
    post,
    server_action,
    fake_llm,
    superuser,
):
    """ "Try on a page" three times in a row, each answer kept as a draft: the report and the
    page's history record a test on a page, not a rerun (issue 21 §1, the audit trail)."""
    from wagtail_llm_actions.models import LLMInteraction

    page = browser_page
    log_in(page, live_server)
    for run in range(RUNS):
        answer = f"An answer to compare, take {run + 1}."
        fake_llm.configure(reply=lambda request_json, answer=answer: answer, latency=1.0)
        page.goto(
            live_server.url + reverse("wagtail_llm_actions_report:action", args=[server_action.pk])
        )
        page.locator("[data-llm-try-link]").click()
        page.wait_for_url(re.compile(r"/llm-actions/actions/\d+/try/$"))
        if run == 0:
            # the menu shows where this is: the actions' group (its "Actions" item), not Reports
            active = page.locator(".sidebar-menu-item--active").all_inner_texts()
            assert any("AI actions" in text for text in active), active
            assert not any("Reports" in text for text in active), active

        page.evaluate(
            f"document.querySelector('input[name=page]').value = '{post.pk}'"
        )  # the page chooser's hidden input, as choosing a page sets it
        page.locator("[data-llm-ask]").click()
        page.locator("[data-llm-queued-run]").wait_for()
        page.locator("[data-llm-compare]").wait_for(timeout=30_000)
        assert answer in page.locator("[data-llm-new]").inner_text()
        revisions = post.revisions.count()  # nothing saved yet

        page.get_by_role("button", name="Keep as draft").click()
        page.wait_for_url(re.compile(r"/report/\d+/$"))
        assert "saved as a new draft" in page.locator(".messages").inner_text()
        interaction = LLMInteraction.objects.order_by("-pk").first()
        assert page.url.endswith(
            reverse("wagtail_llm_actions_report:detail", args=[interaction.pk])
        )
        assert interaction.trigger == "test" and interaction.outcome == "drafted"
        assert started_from(page) == "Test on a page"
        assert post.revisions.count() == revisions + 1
        draft = type(post).objects.get(pk=post.pk).get_latest_revision_as_object()
        assert draft.summary == answer

        # Wagtail's history of the page: one entry per kept answer, a draft each time
        page.goto(live_server.url + reverse("wagtailadmin_pages:history", args=[post.pk]))
        entries = page.locator("main", has_text="Generated").get_by_text(
            "with “Server summary” (draft)"
        )
        entries.first.wait_for()
        assert entries.count() == run + 1
    assert LLMInteraction.objects.filter(trigger="test").count() == RUNS
    assert not LLMInteraction.objects.filter(trigger="rerun").exists()


def edit(page, live_server, post) -> None:
    page.goto(live_server.url + reverse("wagtailadmin_pages:edit", args=[post.pk]))
    page.locator("textarea[name=summary]").wait_for()


def run_summary(page) -> None:
    page.locator(
        '[data-llm-action-field-value="summary"] [data-llm-action-target="run"]',
        has_text="Server summary",
    ).click()


def test_the_field_is_read_only_and_says_generating_while_its_run_waits(
    live_server,
    browser_page,
    worker,
    make_post,
    patient_action,
    fake_llm,
    superuser,
):
    """Three runs in a row, each on a page of its own, the model held until the test has
    looked at the waiting field."""
    page = browser_page
    page.on("dialog", lambda dialog: dialog.accept())  # leaving an edited page
    log_in(page, live_server)
    for run in range(RUNS):
        post = make_post(title=f"Generating {run}")
        gate = threading.Event()
        answer = f"The generated summary {run}."
        fake_llm.configure(reply=held_reply(gate, answer), latency=MODEL_SECONDS / 3)
        try:
            edit(page, live_server, post)
            summary = page.locator("textarea[name=summary]")
            before = summary.input_value()
            run_summary(page)
            page.locator(".llm-action__status--busy").wait_for()

            box = page.locator(".llm-action__field--generating")
            box.wait_for()
            assert box.locator("textarea[name=summary]").count() == 1
            assert not summary.is_editable()
            badge = page.evaluate(
                "getComputedStyle(document.querySelector('.llm-action__field--generating'), "
                "'::after').content"
            )
            assert "Generating" in badge
            # typing cannot reach it: it takes no focus, and keys go nowhere near it
            page.evaluate("document.querySelector('textarea[name=summary]').focus()")
            assert page.evaluate("document.activeElement.name") != "summary"
            page.keyboard.type("Typed while waiting")
            assert summary.input_value() == before
            # other fields stay editable
            page.fill("#id_intro", f"Typed elsewhere {run}")
            assert fake_llm.completions == run  # all this while the model had not answered
        finally:
            gate.set()

        page.wait_for_function(
            "(answer) => document.querySelector('textarea[name=summary]').value.includes(answer)",
            arg=answer,
            timeout=30_000,
        )
        assert page.locator(".llm-action__field--generating").count() == 0
        assert summary.is_editable()
        summary.fill("Edited after the answer")
        assert summary.input_value() == "Edited after the answer"
        assert page.input_value("#id_intro") == f"Typed elsewhere {run}"


def test_cancel_gives_the_field_back(
    live_server,
    browser_page,
    worker,
    make_post,
    patient_action,
    fake_llm,
    superuser,
):
    """Three cancelled runs in a row; each answer arrives after its cancel and is not
    written into the field."""
    from wagtail_llm_actions.models import LLMJobItem

    page = browser_page
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page, live_server)
    for run in range(RUNS):
        post = make_post(title=f"Cancelled {run}")
        gate = threading.Event()
        fake_llm.configure(reply=held_reply(gate, "Too late."), latency=MODEL_SECONDS / 3)
        try:
            edit(page, live_server, post)
            summary = page.locator("textarea[name=summary]")
            run_summary(page)
            page.locator(".llm-action__field--generating").wait_for()
            assert fake_llm.wait_for_requests(run + 1, timeout=30)

            page.locator(".llm-action__cancel").click()

            assert page.locator(".llm-action__field--generating").count() == 0
            summary.fill("Mine")
        finally:
            gate.set()  # the answer arrives after the cancel
        # the run ends (its answer discarded), then the page has a poll's time to misbehave
        wait_until(
            lambda run=run: (
                LLMJobItem.objects.filter(job__kind="editor", status="cancelled").count() == run + 1
            )
        )
        page.wait_for_timeout(POLL_SLOW_MS)
        assert summary.input_value() == "Mine"
        assert not page.locator("[data-llm-action-review=undo]").is_visible()
