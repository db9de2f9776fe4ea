"""Issue 21, §2 in a real browser: no model call inside a request, nothing costly by accident.

* Rerun (interaction page) asks first with its estimate, then queues the run and shows its
  progress (spinner, elapsed time, Cancel) at once, however slow the model; the new draft's
  interaction opens when it is done. Cancel on the progress page saves nothing.
* "Try on a page" runs the same way and comes back with the answer beside the current value.
* In the page editor, the field a run will fill is read-only, saying "Generating…", while
  the run waits; it is editable again (and filled) when the answer arrives.

Run several times in a row (``for i in 1 2 3; do pytest tests/browser/test_queued_runs_browser.py;
done``): each test waits for states, never for fixed times.
"""

from __future__ import annotations

import re
import time

import pytest
from django.urls import reverse

from tests.browser import test_editor_browser
from tests.browser.test_editor_browser import login_and_edit

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

MODEL_SECONDS = 3.0

worker = test_editor_browser.worker  # the in-process django-q2 worker fixture


def log_in(page, live_server) -> None:
    page.goto(live_server.url + reverse("wagtailadmin_login"))
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/admin/$"))


@pytest.fixture
def first_run(post, server_action, superuser, fake_llm):
    from wagtail_llm_actions.service import LLMService

    fake_llm.configure(reply=lambda request_json: "The first answer.")
    run = LLMService().run(server_action, post, user=superuser)
    fake_llm.reset()
    return run


def test_rerun_asks_first_then_shows_progress_at_once_and_opens_the_new_draft(
    live_server,
    browser_page,
    worker,
    post,
    first_run,
    fake_llm,
):
    from wagtail_llm_actions.models import LLMInteraction

    page = browser_page
    fake_llm.configure(reply=lambda request_json: "A slower second answer.", latency=MODEL_SECONDS)
    log_in(page, live_server)
    page.goto(live_server.url + reverse("wagtail_llm_actions_report:detail", args=[first_run.pk]))

    # Rerun asks first, with what it will cost
    page.locator("[data-llm-rerun]").click()
    confirm = page.locator("[data-llm-confirm]")
    confirm.wait_for()
    assert "new draft" in confirm.inner_text()
    assert page.locator("[data-llm-estimate-tokens]").is_visible()
    assert page.locator("[data-llm-estimate-cost]").is_visible()
    assert LLMInteraction.objects.count() == 1  # asking ran nothing

    # confirmed: the progress page comes at once, the model still answering
    started = time.perf_counter()
    page.locator("[data-llm-confirm-button]").click()
    page.locator("[data-llm-queued-run] .llm-action__status--busy").wait_for()
    shown_after = time.perf_counter() - started
    assert shown_after < MODEL_SECONDS - 0.5, shown_after
    assert page.locator("[data-llm-queued-run-cancel]").is_visible()
    page.wait_for_function(
        "() => document.querySelector('[data-llm-queued-run-target=message]')"
        ".textContent.includes('Generating')"
    )
    page.wait_for_function(
        "() => /\\d+ s/.test(document.querySelector('[data-llm-queued-run-target=elapsed]')"
        ".textContent)"
    )

    # done: the new interaction, with the message and its draft
    page.wait_for_url(re.compile(r"/report/\d+/$"), timeout=30_000)
    new = LLMInteraction.objects.exclude(pk=first_run.pk).get()
    assert page.url.endswith(reverse("wagtail_llm_actions_report:detail", args=[new.pk])), page.url
    assert "ran again" in page.locator(".messages").inner_text()
    assert new.revision_id is not None and new.trigger == "rerun"


def test_cancel_on_the_progress_page_saves_nothing(
    live_server,
    browser_page,
    worker,
    post,
    first_run,
    fake_llm,
):
    from wagtail_llm_actions.models import LLMInteraction

    page = browser_page
    revisions = post.revisions.count()
    fake_llm.configure(reply=lambda request_json: "Never saved.", latency=MODEL_SECONDS)
    log_in(page, live_server)
    page.goto(live_server.url + reverse("wagtail_llm_actions_report:rerun", args=[first_run.pk]))
    page.locator("[data-llm-confirm-button]").click()
    page.locator("[data-llm-queued-run]").wait_for()
    page.wait_for_function(
        "() => document.querySelector('[data-llm-queued-run-target=message]')"
        "?.textContent.includes('Generating')",
        timeout=30_000,
    )

    page.locator("[data-llm-queued-run-cancel]").click()

    page.wait_for_url(
        re.compile(
            reverse("wagtail_llm_actions_report:detail", args=[first_run.pk]).replace("/", r"\/")
            + "$"
        ),
        timeout=30_000,
    )
    assert "Cancelled" in page.locator(".messages").inner_text()
    time.sleep(MODEL_SECONDS)  # the answer arrives after the cancel: still nothing written
    assert post.revisions.count() == revisions
    assert not LLMInteraction.objects.exclude(pk=first_run.pk).filter(revision__isnull=False)


def test_try_on_a_page_runs_queued_and_shows_the_answer_beside_the_current_value(
    live_server,
    browser_page,
    worker,
    post,
    server_action,
    fake_llm,
    superuser,
):
    page = browser_page
    fake_llm.configure(reply=lambda request_json: "An answer to compare.", latency=1.0)
    log_in(page, live_server)
    page.goto(
        live_server.url + reverse("wagtail_llm_actions_report:action", args=[server_action.pk])
    )
    page.locator("[data-llm-try-link]").click()
    page.wait_for_url(re.compile(r"/llm-actions/actions/\d+/try/$"))
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
    assert "An answer to compare." in page.locator("[data-llm-new]").inner_text()
    assert page.get_by_role("button", name="Keep as draft").is_visible()


def test_the_field_is_read_only_and_says_generating_while_its_run_waits(
    live_server,
    browser_page,
    worker,
    post,
    server_action,
    fake_llm,
    superuser,
):
    page = browser_page
    fake_llm.configure(reply=lambda request_json: "The generated summary.", latency=MODEL_SECONDS)
    login_and_edit(page, live_server, post)
    summary = page.locator("textarea[name=summary]")
    summary.wait_for()
    before = summary.input_value()
    page.locator(
        '[data-llm-action-field-value="summary"] [data-llm-action-target="run"]',
        has_text="Server summary",
    ).click()
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
    page.fill("#id_intro", "Typed elsewhere")

    page.wait_for_function(
        "() => document.querySelector('textarea[name=summary]').value"
        ".includes('The generated summary.')",
        timeout=30_000,
    )
    assert page.locator(".llm-action__field--generating").count() == 0
    assert summary.is_editable()
    summary.fill("Edited after the answer")
    assert summary.input_value() == "Edited after the answer"
    assert page.input_value("#id_intro") == "Typed elsewhere"


def test_cancel_gives_the_field_back(
    live_server,
    browser_page,
    worker,
    post,
    server_action,
    fake_llm,
    superuser,
):
    page = browser_page
    fake_llm.configure(reply=lambda request_json: "Too late.", latency=MODEL_SECONDS)
    login_and_edit(page, live_server, post)
    summary = page.locator("textarea[name=summary]")
    summary.wait_for()
    page.locator(
        '[data-llm-action-field-value="summary"] [data-llm-action-target="run"]',
        has_text="Server summary",
    ).click()
    page.locator(".llm-action__field--generating").wait_for()

    page.locator(".llm-action__cancel").click()

    assert page.locator(".llm-action__field--generating").count() == 0
    summary.fill("Mine")
    time.sleep(MODEL_SECONDS + 0.5)
    assert summary.input_value() == "Mine"
