"""The interaction report in a real browser: totals and the per-day chart render and show.

Drives Debian's ``chromium`` through Playwright (never a downloaded browser) against
``live_server``, logs in through the admin login form and saves a screenshot of the report to
``test-artifacts/report.png``.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tests.browser.screens import save_screenshot
from tests.interactions_factory import clear_of_midnight, make_interactions

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def two_weeks_of_calls(make_post, make_action, superuser, editor):
    pages = [make_post(title=title) for title in ("Compost basics", "Worm farms", "Leaf mould")]
    summary = make_action()
    tags = make_action(name="Suggest tags", slug="suggest-tags", target_field="tags")
    now = clear_of_midnight()
    total = 0
    for day in range(14):
        start = now - datetime.timedelta(days=day)
        calls = 2 + (day * 7) % 9
        make_interactions(
            calls,
            action=summary if day % 3 else tags,
            page=pages[day % 3],
            user=superuser if day % 2 else editor,
            start=start,
            cost=Decimal("0.0004") * (1 + day % 4),
            model="openai/gpt-4o-mini" if day % 2 else "local/extractive",
        )
        total += calls
    make_interactions(
        3,
        action=summary,
        page=pages[0],
        user=editor,
        start=now - datetime.timedelta(hours=2),
        status="error",
        outcome="",
        error_code="timeout",
        error_message="The model did not answer in time.",
        cost=None,
    )
    return total + 3


def test_report_shows_totals_and_chart(live_server, browser_page, two_weeks_of_calls):
    page = browser_page
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "password")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")

    page.goto(f"{live_server.url}/admin/llm-actions/report/")
    totals = page.locator("[data-llm-totals]")
    totals.wait_for(state="visible")
    assert totals.locator('[data-total="calls"]').inner_text() == str(two_weeks_of_calls)
    assert "%" in totals.locator('[data-total="error-rate"]').inner_text()
    assert totals.locator('[data-total="cost"]').inner_text().startswith("$")

    chart = page.locator("svg.llm-chart")
    chart.wait_for(state="visible")
    box = chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 60
    assert chart.locator("rect.llm-chart__bar").count() == 14
    assert chart.locator("polyline.llm-chart__line").count() == 1
    assert page.locator("table.llm-interactions tbody tr").count() == 50

    # the text is legible: dark on a light page in the default theme
    color = page.eval_on_selector('[data-total="calls"]', "el => getComputedStyle(el).color")
    channels = [int(c) for c in color[color.index("(") + 1 : color.index(")")].split(",")[:3]]
    assert sum(channels) < 3 * 128, color

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=False)
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000

    # the filter drop-down narrows the table and the totals without a full reload
    page.goto(f"{live_server.url}/admin/llm-actions/report/?status=error")
    assert page.locator('[data-total="calls"]').inner_text() == "3"
    assert page.locator("table.llm-interactions tbody tr").count() == 3

    # from a row to its detail page, and on to the action's runs
    page.locator("table.llm-interactions tbody tr a").first.click()
    page.locator("[data-llm-error]").wait_for(state="visible")
    assert "did not answer in time" in page.locator("[data-llm-error]").inner_text()
    save_screenshot(page, "report-detail", full_page=False)
    page.locator("dl.llm-dl a", has_text="Generate summary").first.click()
    page.locator("[data-llm-action-stats]").wait_for(state="visible")
    assert page.locator('[data-stat="calls"]').inner_text() != "0"
    save_screenshot(page, "report-action", full_page=False)
