"""The job page agrees with itself while a job runs (issue 21 §1), in a real browser.

At every poll the rows, the status chips, the counter cards, the bar and the status tag are
read together from the page and must tell the same story; sorting and filtering keep
working while the job runs (the listing stays live after a click on a column or a chip).
Several jobs run in a row. Screenshots: ``test-artifacts/job-live[-dark|-contrast].png``.
"""

from __future__ import annotations

import time

import pytest
from django.urls import reverse

from tests.browser.screens import THEMES, log_in, save_screenshot, set_theme
from tests.browser.test_jobs_browser import Worker
from wagtail_llm_actions import jobs


def playwright_error():
    # (imported here: the non-browser legs collect this module without Playwright installed)
    from playwright.sync_api import Error

    return Error


pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

#: The fake model's latency: six pages, one call at a time, take about 6 × this.
MODEL_SECONDS = 4.0

STATUSES = ["succeeded", "failed", "skipped", "queued", "running", "cancelled"]

#: Read the page in one go (the controller updates it in one task): cards, chips, rows, bar.
READ_PAGE = """() => {
    const q = (s) => document.querySelector(s);
    const card = (s) => Number(q(`[data-llm-job-progress-target=${s}]`).dataset.count);
    const chip = (s) => {
        const el = q(`[data-llm-chip=${s}]`);
        return el ? Number(el.dataset.count) : 0;
    };
    const statuses = STATUSES;
    const rows = [...document.querySelectorAll('tr[data-llm-item-status]')];
    const bar = Object.fromEntries([...document.querySelectorAll('[data-segment]')].map(
        (el) => [el.dataset.segment, el.title]));
    return {
        cards: Object.fromEntries(statuses.map((s) => [s, card(s)])),
        chips: Object.fromEntries(statuses.map((s) => [s, chip(s)])),
        all: chip('all'),
        rows: rows.map((r) => r.dataset.llmItemStatus),
        titles: rows.map((r) => r.querySelector('td.title').textContent.trim()),
        bar,
        tag: q('[data-llm-job-progress-target=statusTag]').textContent.trim(),
        done: q('[data-llm-job-progress-target=done]').textContent.trim(),
        url: window.location.search,
    };
}""".replace("STATUSES", str(STATUSES))


@pytest.fixture(autouse=True)
def one_call_at_a_time(settings):
    settings.WAGTAIL_LLM_ACTIONS = {
        **settings.WAGTAIL_LLM_ACTIONS,
        "RUN_INLINE": False,
        "RUNNERS_PER_JOB": 1,
        "CONCURRENCY": {"*": 1},
    }


@pytest.fixture
def worker(live_server):
    worker = Worker()
    yield worker
    worker.stop()


def assert_agrees(state: dict, *, status_filter: str = "") -> None:
    """Cards, chips, bar and rows say the same thing (six pages: one listing page)."""
    cards, chips = state["cards"], state["chips"]
    assert chips == cards, state
    assert state["all"] == sum(cards.values()) == 6, state
    for status in ("succeeded", "failed", "skipped", "running", "cancelled"):
        assert state["bar"][status].endswith(f": {cards[status]}"), state
    assert int(state["done"]) == cards["succeeded"] + cards["failed"] + cards["skipped"], state
    if status_filter:
        assert state["rows"] == [status_filter] * cards[status_filter], state
    else:
        assert {s: state["rows"].count(s) for s in STATUSES} == cards, state


def watch(page, *, status_filter: str = "", until_done: bool = True) -> list[dict]:
    """Read the page after each poll until the job finishes (the page then reloads)."""
    seen = []
    page.evaluate("window.__sameDocument = true")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            state = page.evaluate(READ_PAGE)
            if not page.evaluate("window.__sameDocument === true"):
                break  # reloaded: finished
            live = page.get_attribute(
                "[data-controller=llm-job-progress]", "data-llm-job-progress-running-value"
            )
        except playwright_error():  # the page is reloading: finished
            break
        if live != "true":  # loaded after the job finished: nothing will change
            assert_agrees(state, status_filter=status_filter)
            seen.append(state)
            break
        assert_agrees(state, status_filter=status_filter)
        seen.append(state)
        if not until_done and state["cards"]["succeeded"] >= 2:
            break
        page.wait_for_timeout(350)
    return seen


@pytest.mark.parametrize("run", [1, 2, 3])
def test_the_job_page_agrees_with_itself_while_the_job_runs(
    run, live_server, browser_page, worker, make_post, server_action, fake_llm, superuser
):
    page = browser_page
    posts = [make_post(title=f"Note {chr(ord('A') + n)}") for n in range(6)]
    # slow enough (six calls one at a time, MODEL_SECONDS each) that the sort and filter
    # checks below always happen while the job runs: they are asserted, never skipped
    fake_llm.configure(latency=MODEL_SECONDS)
    job = jobs.create_job(server_action, superuser, [p.pk for p in posts], force=True)
    jobs.enqueue_job(job)
    url = f"{live_server.url}{reverse('wagtail_llm_actions_jobs:detail', args=[job.pk])}"
    log_in(page, live_server)
    page.goto(url)
    page.locator("[data-controller=llm-job-progress]").wait_for()
    worker.start()

    # unfiltered, in the job's order: a few polls with rows moving between statuses
    seen = watch(page, until_done=False)
    assert seen[-1]["cards"]["succeeded"] >= 2
    assert any(state["rows"] != seen[0]["rows"] for state in seen)  # the rows changed live
    if run == 1:
        page.wait_for_timeout(400)
        for suffix, theme, contrast in THEMES[:2]:  # light and dark, mid-run
            set_theme(superuser, theme, contrast)
            page.reload()
            page.locator("[data-llm-job-items]").wait_for()
            save_screenshot(page, f"job-live{suffix}", full_page=False)
            # no card's text runs out of its card ("about 15 s", a cost with unknown prices)
            overflowing = page.eval_on_selector_all(
                ".llm-job__stats > div",
                "cards => cards.filter((c) => c.scrollWidth > c.clientWidth + 1)"
                ".map((c) => c.textContent.trim())",
            )
            assert overflowing == [], overflowing
        set_theme(superuser, "system", "system")

    # sort by page title, descending, while it runs: still live, still sorted
    page.locator("th a", has_text="Page").click()  # ascending
    page.wait_for_url("**ordering=title**")
    page.locator("th a", has_text="Page").click()  # descending
    page.wait_for_url("**ordering=-title**")
    page.wait_for_timeout(2500)  # at least one poll after the click
    state = page.evaluate(READ_PAGE)
    assert state["tag"] == "Running", state  # still running: the sort is checked live
    assert state["titles"] == sorted(state["titles"], reverse=True), state
    assert "ordering=-title" in state["url"]

    # filter by a chip while it runs: the rows are that status's rows, poll after poll
    # (the running chip: the workers claim queued pages ahead, so "Queued" may already be gone)
    running = page.locator("[data-llm-chip=running]")
    assert running.count() == 1, page.evaluate(READ_PAGE)  # pages still run: filter live
    running.click()
    page.wait_for_url("**status=running**")
    filtered = watch(page, status_filter="running")
    assert filtered and filtered[0]["tag"] == "Running", filtered

    # finished: the page reloaded once, and says so
    page.locator("[data-llm-job-notice=completed]").wait_for(timeout=60_000)
    final = page.evaluate(READ_PAGE)
    assert final["cards"]["succeeded"] == 6 and final["tag"] == "Completed"
    assert "ordering=-title" in final["url"]  # sorting survived the whole run
