"""The review queue of a bulk job in a real browser, driven by the keyboard.

A job writes a draft summary on four pages; from the job page the user opens "Review
drafts" and, with the keyboard only (j/k to move, a to accept, r to reject, x to select),
accepts one page, rejects one, selects the other two and accepts them in bulk. Run three times in
a row (a second job on the same site: the queue lists only its own drafts). Screenshots:
``test-artifacts/review-queue[-dark|-contrast].png`` (and ``docs/screenshots/`` with
``UPDATE_SCREENSHOTS=1``).
"""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.browser.screens import THEMES, log_in, save_screenshot, set_theme
from wagtail_llm_actions import jobs
from wagtail_llm_actions.models import LLMInteraction

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def outcomes(job, posts) -> list[str]:
    ids = {i.page_id: i.interaction_id for i in job.items.all()}
    values = dict(LLMInteraction.objects.filter(pk__in=ids.values()).values_list("pk", "outcome"))
    return [values[ids[p.pk]] for p in posts]


def shoot_themes(page, user, name: str) -> None:
    """Reload ``page`` in each admin theme and save ``name[-dark|-contrast].png``."""
    for suffix, theme, contrast in THEMES:
        set_theme(user, theme, contrast)
        page.reload()
        page.locator("[data-llm-review-page], [data-llm-canary-page]").first.wait_for()
        assert f"w-theme-{theme}" in page.get_attribute("html", "class")
        save_screenshot(page, f"{name}{suffix}", full_page=False)
    set_theme(user, "system", "system")
    page.reload()


def current(page) -> str:
    return page.get_attribute(".llm-review__row--current", "data-llm-review-page")


def test_review_a_jobs_drafts_with_the_keyboard(
    live_server, browser_page, make_post, action, superuser
):
    page = browser_page
    log_in(page, live_server)
    for run in range(3):  # three times in a row: each job's queue has its own drafts
        posts = [make_post(title=f"Compost note {run}-{n}") for n in range(1, 5)]
        job = jobs.create_job(action, superuser, [p.pk for p in posts])
        jobs.run_job(job.pk)
        ids = [str(p.pk) for p in posts]

        page.goto(live_server.url + reverse("wagtail_llm_actions_jobs:detail", args=[job.pk]))
        page.click("[data-llm-job-review]")
        page.wait_for_url(re.compile(r"/review/jobs/\d+/$"))
        rows = page.locator("[data-llm-review-page]")
        assert rows.count() == 4
        assert page.locator(".llm-review__changes .addition").count() == 4  # Wagtail's diff
        assert current(page) == ids[0]
        if run == 0:
            shoot_themes(page, superuser, "review-queue")
            assert current(page) == ids[0]

        page.keyboard.press("j")
        assert current(page) == ids[1]
        page.keyboard.press("a")  # accept the second page
        page.wait_for_url(re.compile(rf"#llm-review-{ids[1]}$"))
        page.locator(
            f'[data-llm-review-page="{ids[1]}"][data-llm-review-state="accepted"]'
        ).wait_for()
        assert "1 draft accepted." in page.inner_text(".messages")
        assert current(page) == ids[2]  # on to the next draft still to review

        page.keyboard.press("r")  # reject the third
        page.locator(
            f'[data-llm-review-page="{ids[2]}"][data-llm-review-state="rejected"]'
        ).wait_for()
        assert "Rejected" in page.inner_text(".messages")
        assert current(page) == ids[3]

        page.keyboard.press("x")  # select the fourth
        for _ in range(3):
            page.keyboard.press("k")
        assert current(page) == ids[0]
        page.keyboard.press("x")  # and the first
        assert page.inner_text('[data-llm-review-queue-target="count"]') == "2"
        page.click("[data-llm-review-bulk-accept]")
        page.locator('[data-llm-review-state="to_review"]').first.wait_for(state="detached")
        assert "2 drafts accepted." in page.inner_text(".messages")

        assert outcomes(job, posts) == ["accepted", "accepted", "discarded", "accepted"]
        rejected = type(posts[2]).objects.get(pk=posts[2].pk).get_latest_revision_as_object()
        assert rejected.summary == ""


def test_a_canary_shows_old_and_new_answers_side_by_side(
    live_server, browser_page, make_post, action, superuser, prompt
):
    """Three canaries in a row, the prompt changed before each: old and new answers side by
    side, the sample reviewed in the queue, the canary then marked reviewed."""
    from tests.conftest import make_body

    page = browser_page
    log_in(page, live_server)
    for run in range(3):
        posts = [
            make_post(
                title=f"Canary note {run}-{n}",
                body=make_body(paragraph=f"Canary {run}-{n} talks about compost bins."),
            )
            for n in range(3)
        ]
        first = jobs.create_job(action, superuser, [posts[0].pk])
        jobs.run_job(first.pk)  # the action's previous answer on the first page
        prompt.template = f"In one line ({run}):\n\n{{body}}"
        prompt.save()

        url = reverse("wagtail_llm_actions_review:canary_start", args=[action.pk])
        page.goto(f"{live_server.url}{url}?" + "&".join(f"id={p.pk}" for p in posts))
        assert "has changed since its last bulk run" in page.inner_text("main")
        page.check(f'input[name="page"][value="{posts[0].pk}"]')
        page.check(f'input[name="page"][value="{posts[1].pk}"]')
        page.click("[data-llm-canary-start]")
        page.wait_for_url(re.compile(r"/review/canary/\d+/$"))
        assert "Canary started on 2 pages." in page.inner_text(".messages")
        job_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
        assert jobs.run_job(job_id) == "completed"  # what a worker does
        page.reload()
        row = f'[data-llm-canary-page="{posts[0].pk}"]'
        page.locator(f"{row} [data-llm-canary-new]").wait_for()
        old = page.inner_text(f"{row} [data-llm-canary-old]")
        new = page.inner_text(f"{row} [data-llm-canary-new]")
        said = f"Canary {run}-0 talks about compost"
        assert said in old and said in new, (run, old, new)
        assert "has not run on this page before" in page.inner_text(
            f'[data-llm-canary-page="{posts[1].pk}"] [data-llm-canary-old]'
        )
        assert "2 drafts are waiting for review." in page.inner_text("main")
        assert page.locator("[data-llm-canary-reviewed]").count() == 0
        if run == 0:
            shoot_themes(page, superuser, "canary")

        page.click("[data-llm-canary-review]")
        page.wait_for_url(re.compile(r"/review/jobs/\d+/$"))
        page.keyboard.press("a")
        page.locator('[data-llm-review-state="accepted"]').wait_for()
        page.keyboard.press("a")
        page.locator('[data-llm-review-state="to_review"]').first.wait_for(state="detached")
        page.goto(live_server.url + reverse("wagtail_llm_actions_review:canary", args=[job_id]))
        page.locator("[data-llm-canary-reviewed]").wait_for()
