"""Bulk jobs in a real browser: the confirmation screen, the progress page's live updates,
the no-worker notice, Cancel, Retry and "Apply stored answer"; screenshots of each screen
in the light, dark and more-contrast admin themes.

Drives Debian's ``chromium`` through Playwright against ``live_server``. Jobs run on
django-q2's ORM broker through an in-process worker thread (``tests/browser/qworker.py``)
that calls the fake OpenAI-compatible server through LiteLLM. Screenshots:
``test-artifacts/{bulk-confirm,job-progress,job-cancelled,report}[-dark|-contrast].png``,
``test-artifacts/job-stored-answer{,-applied}.png`` (and ``docs/screenshots/`` with
``UPDATE_SCREENSHOTS=1``).
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from django.db import OperationalError, connections
from django.urls import reverse

from tests.browser.qworker import WorkerThread
from tests.browser.screens import THEMES, contrast_ratio, log_in, save_screenshot, set_theme
from tests.interactions_factory import clear_of_midnight, make_interactions
from wagtail_llm_actions import jobs

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


@pytest.fixture(autouse=True)
def one_call_at_a_time(settings):
    # The in-memory SQLite connection is shared with the worker thread: one runner thread.
    settings.WAGTAIL_LLM_ACTIONS = {
        **settings.WAGTAIL_LLM_ACTIONS,  # the test settings (ALLOWED_API_BASES for the fake)
        "RUN_INLINE": False,
        "RUNNERS_PER_JOB": 1,
        "CONCURRENCY": {"*": 1},
        "WORKER_PICKUP_TIMEOUT": 1,
    }


class Worker:
    """Start and stop an in-process django-q2 worker on the live server's database."""

    def __init__(self) -> None:
        self.thread: WorkerThread | None = None
        conn = connections["default"]
        self.shared = conn if conn.vendor == "sqlite" and conn.is_in_memory_db() else None

    def start(self) -> None:
        if self.shared is not None:
            self.shared.inc_thread_sharing()
        self.thread = WorkerThread(connection=self.shared)
        self.thread.start()
        self.thread.started_up.wait(60)  # imports litellm first

    def stop(self) -> None:
        if self.thread is None:
            return
        self.thread.stop()
        if self.shared is not None:
            self.shared.dec_thread_sharing()
        errors, self.thread = self.thread.errors, None
        assert not errors, errors


@pytest.fixture
def worker(live_server):
    worker = Worker()
    yield worker
    worker.stop()


def bulk_url(live_server, pages) -> str:
    base = reverse("wagtail_bulk_action", args=("wagtailcore", "page", "run_llm_action"))
    params = [("id", p.pk) for p in pages] + [("next", "/admin/pages/")]
    return f"{live_server.url}{base}?{urlencode(params)}"


def stat(page, name: str) -> int:
    return int(page.locator(f'[data-llm-job-progress-target="{name}"]').inner_text())


def segment_width(page, status: str) -> float:
    return page.eval_on_selector(
        f'[data-segment="{status}"]', "el => el.getBoundingClientRect().width"
    )


def shoot_themes(page, user, name: str, ready: str, check: str | None = None) -> None:
    """Reload ``page`` in each admin theme and save ``name[-dark|-contrast].png``."""
    for suffix, theme, contrast in THEMES:
        set_theme(user, theme, contrast)
        page.reload()
        page.locator(ready).first.wait_for(state="visible")
        html_class = page.get_attribute("html", "class")
        assert f"w-theme-{theme}" in html_class
        assert ("w-contrast-more" in html_class) == (contrast == "more_contrast")
        if check is not None:
            ratio = contrast_ratio(page, check)
            assert ratio >= 4.5, (suffix, check, ratio)  # WCAG AA for normal text
        save_screenshot(page, f"{name}{suffix}", full_page=False)
    set_theme(user, "system", "system")


@pytest.fixture
def posts(make_post):
    return [make_post(title=f"Compost note {n}") for n in range(1, 6)]


def test_confirmation_refreshes_its_preview_and_the_progress_page_updates_live(
    live_server,
    browser_page,
    worker,
    posts,
    make_post,
    make_action,
    server_action,
    fake_llm,
    superuser,
):
    page = browser_page
    failed_requests = []
    page.on("response", lambda r: r.status >= 400 and failed_requests.append(r.url))
    make_action(name="Suggest tags", slug="suggest-tags", target_field="tags")
    empty = make_post(title="Empty note", body=[])
    log_in(page, live_server)

    # the confirmation: options first, the preview follows the Action drop-down
    page.goto(bulk_url(live_server, [*posts, empty]))
    # no action preselected (issue 21, §2): the preview waits for a choice, Start is off
    assert page.locator("select[name=action]").input_value() == ""
    assert page.locator("[data-llm-choose-first]").is_visible()
    assert page.locator("[data-llm-start]").is_disabled()
    assert page.locator("[data-llm-bulk-preview-target=check]").is_hidden()
    page.select_option("select[name=action]", label="Suggest tags")
    page.wait_for_function(
        "() => document.querySelector('#llm-bulk-plan-heading')?.textContent"
        ".includes('Suggest tags')"
    )
    heading = page.locator("#llm-bulk-plan-heading")
    options = page.locator(".llm-bulk-form__options").bounding_box()
    assert options["y"] < heading.bounding_box()["y"]
    page.select_option("select[name=action]", label="Server summary")
    page.wait_for_function(
        "() => document.querySelector('#llm-bulk-plan-heading').textContent"
        ".includes('Server summary')"
    )
    assert "5 pages will run" in page.locator("[data-llm-will-run]").inner_text()
    assert page.locator("[data-llm-skip=source_empty]").is_visible()
    assert page.locator("[data-llm-start]").is_enabled()
    # the screenshots: a link naming the action opens with it chosen (a reload keeps it)
    page.goto(bulk_url(live_server, [*posts, empty]) + f"&action={server_action.pk}")
    shoot_themes(page, superuser, "bulk-confirm", "#llm-bulk-plan-heading", "[data-llm-will-run]")
    page.select_option("select[name=action]", label="Server summary")
    page.wait_for_function(
        "() => document.querySelector('#llm-bulk-plan-heading').textContent"
        ".includes('Server summary')"
    )

    # start; the worker starts once the progress page is open, and answers a page each 1.5 s
    fake_llm.configure(latency=1.5)
    page.locator("[data-llm-start]").click()
    page.wait_for_url(f"{live_server.url}/admin/pages/")
    page.get_by_role("link", name="View progress").click()
    page.locator("[data-controller=llm-job-progress]").wait_for()
    assert not failed_requests, failed_requests
    assert stat(page, "done") == 0

    # the counts, the bar and the status move without a reload...
    page.evaluate("window.__sameDocument = true")
    worker.start()
    page.wait_for_function(
        """() => {
            const text = (name) => document.querySelector(
                `[data-llm-job-progress-target=${name}]`).textContent.trim();
            return window.__sameDocument && Number(text('succeeded')) > 0
                && text('statusTag') === 'Running'
                && document.querySelector('[data-segment=succeeded]').style.width !== '0%';
        }""",
        timeout=30_000,
    )
    page.wait_for_timeout(400)  # let the bar's width transition end before the screenshot
    save_screenshot(page, "job-progress-running", full_page=False)
    # ...then the page reloads once, finished
    page.locator("[data-llm-job-notice=completed]").wait_for(timeout=60_000)
    assert page.evaluate("window.__sameDocument") is None
    assert stat(page, "succeeded") == 5 and stat(page, "skipped") == 1
    track = page.eval_on_selector(".llm-job__track", "el => el.getBoundingClientRect().width")
    done = segment_width(page, "succeeded") + segment_width(page, "skipped")
    assert done == pytest.approx(track - 2, abs=2)  # full: every page reached an outcome
    assert page.locator("[data-llm-job-cancel]").count() == 0
    shoot_themes(
        page,
        superuser,
        "job-progress",
        "[data-llm-job-notice]",
        "[data-llm-job-progress-target=succeeded]",
    )


def test_no_worker_notice_cancel_and_retry(
    live_server, browser_page, worker, posts, server_action, fake_llm, superuser
):
    page = browser_page
    log_in(page, live_server)
    page.goto(bulk_url(live_server, posts))
    page.select_option("select[name=action]", label="Server summary")
    page.wait_for_function(
        "() => document.querySelector('#llm-bulk-plan-heading')?.textContent"
        ".includes('Server summary')"
    )
    page.locator("[data-llm-start]").click()  # no worker is running
    page.wait_for_url(f"{live_server.url}/admin/pages/")
    page.get_by_role("link", name="View progress").click()

    # after WORKER_PICKUP_TIMEOUT the page says so by itself
    notice = page.locator("[data-llm-no-worker]")
    notice.wait_for(state="visible", timeout=15_000)
    assert "This job has not started after" in notice.inner_text()
    assert "worker" not in notice.inner_text().lower()  # editors' words (issue 21, §3)

    # Cancel: a standard Wagtail button, its icon the size of the text
    cancel = page.locator("[data-llm-job-cancel]")
    icon = cancel.locator("svg.icon").bounding_box()
    assert icon["width"] <= 24 and icon["height"] <= 24
    assert "Cancel job" in cancel.inner_text() and cancel.bounding_box()["height"] < 60
    cancel.click()
    # Cancel asks first, saying what will not run (issue 21, §2)
    assert "5 pages will not run." in page.locator("[data-llm-confirm]").inner_text()
    page.locator("[data-llm-confirm-button]").click()
    page.locator("[data-llm-job-notice=cancelled]").wait_for()
    assert "5 pages did not run" in page.locator("[data-llm-job-notice]").inner_text()
    assert segment_width(page, "succeeded") == 0  # not a full green bar
    assert segment_width(page, "cancelled") > 0
    assert page.locator("[data-llm-job-progress-target=done]").inner_text() == "0"
    assert page.locator("[data-llm-no-worker]").is_hidden()
    retry = page.locator("[data-llm-job-retry]")
    icon = retry.locator("svg.icon").bounding_box()
    assert icon["width"] <= 24 and icon["height"] <= 24
    shoot_themes(
        page, superuser, "job-cancelled", "[data-llm-job-notice]", "[data-llm-job-notice] p"
    )

    # Retry with a worker running: the pages are queued again and the job finishes
    worker.start()
    page.locator("[data-llm-job-retry]").click()
    # Retry asks first, with what it will run and cost
    assert "5 pages will run again." in page.locator("[data-llm-confirm]").inner_text()
    assert page.locator("[data-llm-estimate-cost]").is_visible()
    page.locator("[data-llm-confirm-button]").click()
    page.locator("[data-llm-job-notice=completed]").wait_for(timeout=60_000)
    assert stat(page, "succeeded") == 5 and stat(page, "cancelled") == 0
    assert fake_llm.request_count == 5


def test_apply_stored_answer_writes_the_paid_answer_without_a_new_call(
    live_server,
    browser_page,
    worker,
    make_post,
    server_action,
    fake_llm,
    monkeypatch,
    settings,
    superuser,
):
    """A page whose answer came back but whose draft write kept failing shows as failed with
    "Apply stored answer"; one click writes that answer as a draft, with no model call."""
    settings.WAGTAIL_LLM_ACTIONS = {
        **settings.WAGTAIL_LLM_ACTIONS,
        "RETRY_BACKOFF": 0,
        "MAX_ATTEMPTS": 2,
    }
    monkeypatch.setattr("wagtail_llm_actions.db.FIRST_BACKOFF", 0.001)
    fine = make_post(title="Worm farms")
    locked = make_post(title="Leaf mould")

    # the draft save of "Leaf mould" finds the database busy, every time, while the job runs
    from wagtail_llm_actions.run import drafts as run_drafts

    original = run_drafts.save_draft
    busy = {"on": True}

    def flaky(working_obj, user, action, **kwargs):
        if busy["on"] and working_obj.pk == locked.pk:
            raise OperationalError("database is locked")
        return original(working_obj, user, action, **kwargs)

    monkeypatch.setattr("wagtail_llm_actions.run.drafts.save_draft", flaky)
    fake_llm.configure(reply="Stored, not lost.")
    job = jobs.create_job(server_action, superuser, [fine.pk, locked.pk], force=True)
    jobs.run_job(job.pk, threads=1)
    assert fake_llm.request_count == 2  # both pages were answered (and paid for)
    published = locked.get_latest_revision()
    assert published.as_object().summary != "Stored, not lost."  # one answer was never written
    busy["on"] = False  # the database is free again

    page = browser_page
    log_in(page, live_server)
    page.goto(f"{live_server.url}{reverse('wagtail_llm_actions_jobs:detail', args=[job.pk])}")
    row = page.locator("tr", has_text="Leaf mould")
    assert row.get_attribute("data-llm-item-status") == "failed"
    assert "Apply stored answer" in row.locator(".error-message").inner_text()
    assert stat(page, "succeeded") == 1 and stat(page, "failed") == 1
    apply = page.get_by_role("button", name="Apply stored answer")
    # a standard Wagtail button: its icon the size of the text, its label readable
    icon = apply.locator("svg.icon").bounding_box()
    assert icon["width"] <= 24 and icon["height"] <= 24
    assert "Apply stored answer" in apply.inner_text() and apply.bounding_box()["height"] < 60
    save_screenshot(page, "job-stored-answer", full_page=False)

    worker.start()
    apply.click()
    page.locator("[data-llm-job-notice=completed]").wait_for(timeout=60_000)
    assert page.get_by_role("button", name="Apply stored answer").count() == 0
    row = page.locator("tr", has_text="Leaf mould")
    assert row.get_attribute("data-llm-item-status") == "succeeded"
    assert row.get_by_role("link", name="Review draft").is_visible()
    assert stat(page, "succeeded") == 2 and stat(page, "failed") == 0
    save_screenshot(page, "job-stored-answer-applied", full_page=False)

    assert fake_llm.request_count == 2  # zero new calls
    latest = type(locked).objects.get(pk=locked.pk).get_latest_revision()
    assert latest.pk != published.pk  # a new draft revision...
    assert latest.as_object().summary == "Stored, not lost."  # ...holding the stored answer


def test_report_and_chart_in_each_theme(live_server, browser_page, make_post, action, superuser):
    page = browser_page
    pages = [make_post(title=t) for t in ("Compost basics", "Worm farms")]
    now = clear_of_midnight()
    for day in (0, 1, 2, 5, 6):  # a gap of two days
        make_interactions(
            2 + day,
            action=action,
            page=pages[day % 2],
            user=superuser,
            start=now - datetime.timedelta(days=day),
            cost=Decimal("0.00042") * (1 + day % 3),
        )
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/llm-actions/report/")
    chart = page.locator("svg.llm-chart")
    chart.wait_for(state="visible")
    assert chart.locator("rect.llm-chart__bar").count() == 7
    assert chart.locator("[data-axis=cost-max]").text_content().startswith("$0.00")
    shoot_themes(page, superuser, "report", "svg.llm-chart", "[data-total=calls]")
    for suffix, theme, contrast in THEMES:
        set_theme(superuser, theme, contrast)
        page.reload()
        label = page.locator("svg.llm-chart [data-axis=date]").first
        fill = page.eval_on_selector(
            "svg.llm-chart [data-axis=date]", "el => getComputedStyle(el).fill"
        )
        background = page.eval_on_selector("body", "el => getComputedStyle(el).backgroundColor")
        assert fill != background, (suffix, fill)
        assert label.is_visible()
        save_screenshot(page.locator("figure.llm-chart-figure"), f"chart{suffix}")
    set_theme(superuser, "system", "system")
