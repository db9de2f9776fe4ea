"""axe-core over the screens the first pass missed (audit of issue 21, §4), light and dark:
the canary's result, a queued run's progress and done pages, the Rerun / Rerun-from-step /
Cancel / Retry confirmations (each confirmation shown, its button in view), the job page
while it runs and while a budget pauses it, and the image action screens (the image's
edit view with its action buttons, the image bulk confirmation, its job page).

Same rules and the same allow-list of Wagtail core issues as ``test_a11y_browser.py``.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.urls import reverse

from tests.browser.screens import log_in
from tests.browser.test_a11y_browser import check_screens, site_data  # noqa: F401 - a fixture
from tests.images import image_bytes, make_image
from tests.test_budget_pauses import paused_job  # noqa: F401 - a fixture

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_canary_queued_runs_and_confirmations_have_no_serious_violations(
    live_server,
    browser_page,
    superuser,
    site_data,  # noqa: F811
):
    from wagtail_llm_actions import canary, jobs, queued_runs
    from wagtail_llm_actions.models import LLMInteraction
    from wagtail_llm_actions.pipelines import PipelineStepFailed, run_pipeline

    action, pipeline, job = site_data["action"], site_data["pipeline"], site_data["job"]
    posts = site_data["posts"]
    sample = canary.start_canary(action, superuser, [posts[0].pk, posts[1].pk])
    jobs.run_job(sample.pk, threads=1)
    try:
        run = run_pipeline(pipeline, posts[2], superuser)
    except PipelineStepFailed as e:  # its "tags" step refuses: a run to rerun all the same
        run = e.run
    step = LLMInteraction.objects.filter(run=run).order_by("pk").first()
    interaction = LLMInteraction.objects.filter(status="success", run__isnull=True).first()
    interaction = interaction or LLMInteraction.objects.filter(status="success").first()
    waiting = queued_runs.create_job(
        "rerun", superuser, page=posts[0], action=action, interaction=interaction
    )
    done = queued_runs.create_job(
        "rerun", superuser, page=posts[1], action=action, interaction=interaction
    )
    jobs.run_job(done.pk, threads=1)
    open_job = jobs.create_job(action, superuser, [posts[0].pk, posts[1].pk])
    report = "wagtail_llm_actions_report"
    screens = [
        ("canary", reverse("wagtail_llm_actions_review:canary", args=[sample.pk]), "main"),
        ("queued-run", reverse(f"{report}:queued_run", args=[waiting.pk]), "[data-llm-queued-run]"),
        ("queued-run-done", reverse(f"{report}:queued_run_done", args=[done.pk]), "main"),
        ("rerun-confirm", reverse(f"{report}:rerun", args=[interaction.pk]), "[data-llm-confirm]"),
        (
            "rerun-from-step-confirm",
            reverse(f"{report}:rerun_from_step", args=[step.pk]) + "?from_step=1",
            "[data-llm-confirm]",
        ),
        (
            "cancel-confirm",
            reverse(f"{report}:confirm_cancel_job", args=[open_job.pk]),
            "[data-llm-confirm-button]",
        ),
        (
            "retry-confirm",
            reverse(f"{report}:confirm_retry_job", args=[job.pk]),
            "[data-llm-confirm]",
        ),
    ]
    page = browser_page
    log_in(page, live_server)
    check_screens(page, superuser, live_server, screens)


def test_the_job_page_while_running_and_while_paused_has_no_serious_violations(
    live_server,
    browser_page,
    superuser,
    action,
    make_post,
    paused_job,  # noqa: F811
):
    from wagtail_llm_actions import jobs
    from wagtail_llm_actions.models import LLMJob, LLMJobItem

    posts = [make_post(title=f"Running {n}") for n in range(4)]
    running = jobs.create_job(action, superuser, [p.pk for p in posts])
    LLMJob.objects.filter(pk=running.pk).update(status="running")
    ids = list(running.items.order_by("pk").values_list("pk", flat=True)[:2])
    LLMJobItem.objects.filter(pk__in=ids).update(status="running")
    paused = paused_job[0]
    detail = "wagtail_llm_actions_jobs:detail"
    screens = [
        ("job-running", reverse(detail, args=[running.pk]), "[data-llm-job-cancel]"),
        ("job-paused", reverse(detail, args=[paused.pk]), "[data-llm-job-paused]"),
    ]
    page = browser_page
    log_in(page, live_server)
    check_screens(page, superuser, live_server, screens)


def test_the_image_action_screens_have_no_serious_violations(
    live_server, browser_page, superuser, make_action
):
    from wagtail_llm_actions import jobs
    from wagtail_llm_actions.models import LLMPrompt

    prompt = LLMPrompt.objects.create(name="Alt", slug="alt", template="Alt text for {filename}.")
    action = make_action(
        name="Alt text",
        slug="alt-text",
        source_kind="image",
        target_field="description",
        model="local/extractive",
        prompt=prompt,
    )
    action.page_types.set([])
    images = [make_image(name=f"sea-{n}.jpg", data=image_bytes(300, 200)) for n in range(2)]
    job = jobs.create_image_job(action, superuser, [i.pk for i in images])
    jobs.run_job(job.pk, threads=1)
    bulk = reverse("wagtail_bulk_action", args=("wagtailimages", "image", "run_llm_image_action"))
    query = "?" + urlencode([("id", i.pk) for i in images] + [("next", "/admin/images/")])
    screens = [
        (
            "image-edit",
            reverse("wagtailimages:edit", args=[images[0].pk]),
            "[data-llm-image-action]",
        ),
        ("image-bulk-confirm", bulk + query + f"&action={action.pk}", "main"),
        ("image-job", reverse("wagtail_llm_actions_jobs:detail", args=[job.pk]), "main"),
    ]
    page = browser_page
    log_in(page, live_server)
    check_screens(page, superuser, live_server, screens)
