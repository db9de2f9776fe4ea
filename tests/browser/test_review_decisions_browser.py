"""Review decisions and the canary rule in a real browser (audit of issue 21, §5): Accept and
Reject of one field of a structured answer, Accept and publish (the page goes live with the
job's draft), and the bulk confirmation refusing a changed action until a canary was
reviewed when the site's "Bulk runs" setting asks for one. Each flow runs three times in a
row ("under load": a new job each time, on the same live server). Screenshots:
``test-artifacts/review-publish[-dark|-contrast].png`` (``docs/screenshots/`` with
``UPDATE_SCREENSHOTS=1``, i.e. ``scripts/screenshots.sh``).
"""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.browser.screens import log_in
from tests.browser.test_review_queue_browser import shoot_themes
from tests.test_job_page import bulk_url
from tests.test_structured import GOOD
from wagtail_llm_actions import jobs
from wagtail_llm_actions.models import LLMInteraction

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

RUNS = 3


def queue(page, live_server, job) -> None:
    page.goto(live_server.url + reverse("wagtail_llm_actions_review:queue", args=[job.pk]))
    page.locator("[data-llm-review-page]").first.wait_for()


def test_accept_and_reject_a_field_then_accept_and_publish(
    live_server, browser_page, make_post, make_action, fake_llm, api_key_env, superuser
):
    from tests.test_structured import MAPPING

    fake_llm.configure(json_reply=GOOD)
    seo = make_action(
        name="SEO fields",
        slug="seo-fields",
        target_field="",
        output_fields=dict(MAPPING),
        model="openai/fake-model",
        api_base=fake_llm.url,
        api_key_name=api_key_env,
    )
    page = browser_page
    log_in(page, live_server)
    for run in range(RUNS):
        posts = [make_post(title=f"Field note {run}-{n}") for n in range(2)]
        job = jobs.create_job(seo, superuser, [p.pk for p in posts])
        assert jobs.run_job(job.pk) == "completed"
        queue(page, live_server, job)

        # per field: reject the summary, accept the SEO title, on the first page
        first = page.locator(f'[data-llm-review-page="{posts[0].pk}"]')
        first.locator(
            '[data-llm-review-field="summary"] [data-llm-review-decision="reject"]'
        ).click()
        page.locator(".messages").get_by_text("Rejected").wait_for()
        first = page.locator(f'[data-llm-review-page="{posts[0].pk}"]')
        assert first.get_attribute("data-llm-review-state") == "partly"
        first.locator(
            '[data-llm-review-field="seo_title"] [data-llm-review-decision="accept"]'
        ).click()
        page.locator(".messages").get_by_text("1 draft accepted.").wait_for()
        interaction = LLMInteraction.objects.get(pk=job.items.get(page=posts[0]).interaction_id)
        assert interaction.field_outcomes == {"summary": "discarded", "seo_title": "accepted"}
        draft = type(posts[0]).objects.get(pk=posts[0].pk).get_latest_revision_as_object()
        assert draft.summary == "" and draft.seo_title == GOOD["title"]

        # Accept and publish the second page: live with the job's draft
        second = page.locator(f'[data-llm-review-page="{posts[1].pk}"]')
        second.locator('[data-llm-review-decision="accept-publish"]').click()
        page.locator(".messages").get_by_text("1 draft accepted and published.").wait_for()
        live = type(posts[1]).objects.get(pk=posts[1].pk)
        assert live.seo_title == GOOD["title"] and not live.has_unpublished_changes
        second = page.locator(f'[data-llm-review-page="{posts[1].pk}"]')
        assert second.get_attribute("data-llm-review-state") == "accepted"
        assert "published" in second.inner_text().lower()  # Wagtail's status tag, upper case
        if run == 0:
            shoot_themes(page, superuser, "review-publish")


def test_a_changed_action_is_refused_until_its_canary_is_reviewed(
    live_server, browser_page, make_post, action, superuser, settings
):
    from wagtail.models import Site

    from wagtail_llm_actions.models import BulkRunSettings, LLMJob

    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "CANARY_SIZE": 2}
    rule = BulkRunSettings.for_site(Site.objects.get(is_default_site=True))
    rule.require_canary = "required"  # the site's setting; the Django setting is off
    rule.save()
    page = browser_page
    log_in(page, live_server)
    for run in range(RUNS):
        action.max_tokens = 100 + run  # changed since its last bulk run
        action.save()
        posts = [make_post(title=f"Canary rule {run}-{n}") for n in range(4)]
        page.goto(live_server.url + bulk_url(posts))
        page.select_option("select[name=action]", label=action.name)
        refusal = page.locator("[data-llm-canary-required]")
        refusal.wait_for()
        assert "has changed since its last bulk run" in refusal.inner_text()
        assert page.locator("[data-llm-start]").is_disabled()
        jobs_before = LLMJob.objects.count()

        # the sample, reviewed: then the bulk run may start
        refusal.get_by_role("link", name="Try on a sample").click()
        page.check(f'input[name="page"][value="{posts[0].pk}"]')
        page.check(f'input[name="page"][value="{posts[1].pk}"]')
        page.click("[data-llm-canary-start]")
        page.wait_for_url(re.compile(r"/review/canary/\d+/$"))
        sample = int(page.url.rstrip("/").rsplit("/", 1)[1])
        jobs.run_job(sample)  # what a worker does
        page.goto(live_server.url + reverse("wagtail_llm_actions_review:queue", args=[sample]))
        page.locator("[data-llm-review-page]").first.wait_for()
        page.keyboard.press("a")
        page.locator('[data-llm-review-state="accepted"]').wait_for()
        page.keyboard.press("a")
        page.locator('[data-llm-review-state="to_review"]').first.wait_for(state="detached")
        page.goto(live_server.url + bulk_url(posts))
        page.select_option("select[name=action]", label=action.name)
        page.locator("[data-llm-will-run]").wait_for()
        assert page.locator("[data-llm-canary-required]").count() == 0
        page.locator("[data-llm-start]").click()
        page.wait_for_url(f"{live_server.url}/admin/pages/")
        assert LLMJob.objects.count() == jobs_before + 2  # the canary and the bulk run


def test_accept_and_submit_for_moderation_and_the_outcomes_in_the_report(
    live_server, browser_page, make_post, action, superuser
):
    """Accept one draft and submit it to moderation, reject another, accept a third: the
    first page is in its workflow with the job's draft, and the report's rows say accepted,
    discarded and accepted. Three jobs in a row."""
    from wagtail.models import WorkflowState

    page = browser_page
    log_in(page, live_server)
    for run in range(RUNS):
        posts = [make_post(title=f"Moderated note {run}-{n}") for n in range(3)]
        job = jobs.create_job(action, superuser, [p.pk for p in posts])
        assert jobs.run_job(job.pk) == "completed"
        interactions = [
            LLMInteraction.objects.get(pk=job.items.get(page=p).interaction_id) for p in posts
        ]
        queue(page, live_server, job)

        row = page.locator(f'[data-llm-review-page="{posts[0].pk}"]')
        row.locator('[data-llm-review-decision="accept-submit"]').click()
        page.locator(".messages").get_by_text(
            "1 draft accepted and submitted for moderation."
        ).wait_for()
        row = page.locator(f'[data-llm-review-page="{posts[0].pk}"]')
        assert row.get_attribute("data-llm-review-state") == "accepted"
        state = WorkflowState.objects.get(object_id=str(posts[0].pk))
        assert state.status == "in_progress"
        assert state.current_task_state.revision_id == interactions[0].revision_id
        live = type(posts[0]).objects.get(pk=posts[0].pk)
        assert not live.summary  # in moderation, not published
        # Wagtail's own editor says so (its status side panel's "In Moderation" section)
        page.goto(live_server.url + reverse("wagtailadmin_pages:edit", args=[posts[0].pk]))
        page.locator("#status-sidebar-in-moderation").wait_for(state="attached")

        queue(page, live_server, job)
        page.locator(
            f'[data-llm-review-page="{posts[1].pk}"] [data-llm-review-decision="reject"]'
        ).first.click()
        page.locator(".messages").get_by_text("Rejected").wait_for()
        page.locator(
            f'[data-llm-review-page="{posts[2].pk}"] [data-llm-review-decision="accept"]'
        ).first.click()
        page.locator(".messages").get_by_text("1 draft accepted.").wait_for()

        # the report: each of the job's calls with the outcome of its review
        page.goto(live_server.url + reverse("wagtail_llm_actions_report:index"))
        page.locator("table.llm-interactions").wait_for()
        outcomes = []
        for interaction in interactions:
            cells = page.locator(f'tr[data-interaction="{interaction.pk}"] td').all_inner_texts()
            outcomes.append(cells[6].strip())  # the Outcome column
        assert outcomes == ["Accepted as generated", "Discarded", "Accepted as generated"]
        # and filtering by outcome finds them
        page.goto(
            live_server.url + reverse("wagtail_llm_actions_report:index") + "?outcome=discarded"
        )
        page.locator("table.llm-interactions").wait_for()
        shown = page.locator("table.llm-interactions tbody tr[data-interaction]")
        assert shown.count() == run + 1
        assert page.locator(f'tr[data-interaction="{interactions[1].pk}"]').count() == 1
