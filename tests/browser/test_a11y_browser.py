"""Accessibility of every screen the app adds, checked with axe-core in the light and dark
themes, and one screen laid out right to left (Arabic).

axe-core is vendored (``tests/browser/vendor/axe.min.js``, see the README there): it is
injected into each page after it loads, never downloaded while the tests run. A screen passes
when axe finds no *serious* or *critical* violation, except the few Wagtail core issues listed
in ``WAGTAIL_CORE_ISSUES`` (each with the reason it is not ours). Drives Debian's chromium
through Playwright against ``live_server``, like the other browser tests.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.urls import reverse

from tests.browser.screens import THEMES, log_in, save_screenshot, set_theme
from tests.browser.test_editor_browser import worker  # noqa: F401
from tests.interactions_factory import make_interactions

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

VENDOR = Path(__file__).resolve().parent / "vendor"
AXE_VERSION = "4.14.1"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"

#: Light and dark: Wagtail's own theme preference (the more-contrast variant follows light).
LIGHT_AND_DARK = [t for t in THEMES if t[2] == "system"]

#: What axe reports that is fixed by how we mark up a screen: every rule of WCAG 2.0/2.1/2.2
#: A and AA plus axe's best practices, and "label in name" (WCAG 2.5.3, experimental in axe,
#: so switched on by hand).
AXE_OPTIONS = {
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"],
    },
    "rules": {"label-content-name-mismatch": {"enabled": True}},
    "resultTypes": ["violations"],
}

#: Violations of Wagtail's own markup, not the app's: (rule id, a CSS selector matching the
#: element axe names). Keep this list short and say why each entry is not ours.
WAGTAIL_CORE_ISSUES: list[tuple[str, str, str]] = [
    (
        "label",
        '[data-contentpath=body] :is(input, textarea)[id^="body-"][id$="-value"]',
        "Wagtail's StreamField renders a block with a single text input (the sandbox's heading, "
        "quote and list items) without a <label>: core markup of the page being edited.",
    ),
    (
        "aria-input-field-name",
        ".public-DraftEditor-content",
        "Draftail (Wagtail's rich text editor) names its contenteditable textbox only by "
        "aria-describedby on its placeholder: core markup.",
    ),
    (
        "label",
        ".tagit .ui-autocomplete-input",
        "Wagtail's tag field (tag-it) adds an unlabelled text input next to the labelled one.",
    ),
    (
        "target-size",
        "[data-streamfield-action]",
        "Wagtail's sticky editor header (its status and preview toggles) covers a StreamField "
        "block's own Duplicate/Delete controls when the page is scrolled so that the block "
        "sits under it: both are core elements, and axe measures at the current scroll.",
    ),
]


def axe_source() -> str:
    path = VENDOR / "axe.min.js"
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == AXE_SHA256, "vendored axe.min.js changed"
    assert data.startswith(f"/*! axe v{AXE_VERSION}".encode())
    return data.decode()


def serious_violations(page, label: str) -> list[str]:
    """axe's serious and critical violations on ``page`` (after the known core issues)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(content=axe_source())
    # Colours as they settle, not half way through a fade (Wagtail's messages fade in):
    # every running animation and transition is brought to its end first.
    page.evaluate(
        """() => document.getAnimations().forEach(a => { try { a.finish(); } catch (e) {} })"""
    )
    results = page.evaluate("(options) => window.axe.run(document, options)", AXE_OPTIONS)
    found = []
    for violation in results["violations"]:
        if violation["impact"] not in ("serious", "critical"):
            continue
        for node in violation["nodes"]:
            target = node["target"][-1] if node["target"] else ""
            if is_core_issue(page, violation["id"], target):
                continue
            found.append(
                f"{label}: {violation['id']} ({violation['impact']}) at {target}: "
                f"{node.get('failureSummary', '').strip()} | {node['html'][:200]}"
            )
    return found


def serious_violations_light_and_dark(page, label: str) -> list[str]:
    """:func:`serious_violations` of the screen as it is now (mid-flow: a form filled in, a
    menu open, which a reload would lose), in Wagtail's light theme and then its dark one
    (the theme class Wagtail puts on ``<html>`` from the user's preference, swapped in
    place), the page left in the theme it had."""
    before = page.get_attribute("html", "class") or ""
    # no colour transitions while the theme changes: axe would read colours half way
    page.add_style_tag(content="*, *::before, *::after { transition: none !important; }")
    found = []
    for suffix, theme in (("", "light"), ("-dark", "dark")):
        page.evaluate(
            """theme => { const html = document.documentElement;
                [...html.classList].filter(c => c.startsWith('w-theme-'))
                    .forEach(c => html.classList.remove(c));
                html.classList.add('w-theme-' + theme); }""",
            theme,
        )
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
        found += serious_violations(page, f"{label}{suffix}")
    page.evaluate("cls => document.documentElement.setAttribute('class', cls)", before)
    return found


def is_core_issue(page, rule: str, target: str) -> bool:
    for core_rule, selector, _why in WAGTAIL_CORE_ISSUES:
        if core_rule != rule or not target:
            continue
        if page.evaluate(
            "([target, selector]) => { const el = document.querySelector(target);"
            " return !!el && !!el.closest(selector); }",
            [target, selector],
        ):
            return True
    return False


def check_screens(page, user, live_server, screens: list[tuple[str, str, str]]) -> None:
    """Open each (name, url, ready selector) in light and dark; fail with every finding."""
    found: list[str] = []
    for suffix, theme, contrast in LIGHT_AND_DARK:
        set_theme(user, theme, contrast)
        for name, url, ready in screens:
            page.goto(live_server.url + url)
            page.locator(ready).first.wait_for(state="attached")
            assert f"w-theme-{theme}" in page.get_attribute("html", "class")
            found += serious_violations(page, f"{name}{suffix}")
    set_theme(user, "system", "system")
    assert not found, "\n".join(found)


@pytest.fixture
def site_data(make_post, make_action, action, superuser):
    """One of each thing the screens list: actions, a prompt, a pipeline, a finished job with
    succeeded and skipped pages, successful and failed interactions."""
    from wagtail_llm_actions import jobs
    from wagtail_llm_actions.jobs import planning
    from wagtail_llm_actions.models import LLMPipeline, LLMPipelineStep

    posts = [make_post(title=t) for t in ("Compost basics", "Worm farms", "Leaf mould")]
    tags = make_action(name="Suggest tags", slug="suggest-tags", target_field="tags")
    pipeline = LLMPipeline.objects.create(name="Summary and tags", slug="summary-tags")
    LLMPipelineStep.objects.create(pipeline=pipeline, sort_order=0, name="summary", action=action)
    LLMPipelineStep.objects.create(pipeline=pipeline, sort_order=1, name="tags", action=tags)
    empty = make_post(title="Empty note", body=[])  # skipped: a second segment in the bar
    job = planning.create_job(action, superuser, [p.pk for p in [*posts, empty]], force=True)
    jobs.run_job(job.pk, threads=1)
    make_interactions(
        2,
        action=action,
        page=posts[0],
        user=superuser,
        status="error",
        outcome="",
        error_code="timeout",
        error_message="The model did not answer in time.",
        cost=None,
    )
    return {"posts": posts, "action": action, "pipeline": pipeline, "job": job}


@pytest.mark.usefixtures("worker")  # "Run and compare" is queued (no model call in a request)
def test_admin_screens_have_no_serious_violations(live_server, browser_page, superuser, site_data):
    from wagtail_llm_actions.models import LLMInteraction

    action, pipeline, job = site_data["action"], site_data["pipeline"], site_data["job"]
    interaction = LLMInteraction.objects.filter(status="success").order_by("pk").first()
    failed = LLMInteraction.objects.filter(status="error").first()
    prompt_id = action.prompt_id
    query = "?" + urlencode([("id", p.pk) for p in site_data["posts"]] + [("next", "/admin/")])
    from wagtail_llm_actions.models import LLMBudget

    # (a listing with a row: the empty state's "add one" link is Wagtail's own markup)
    LLMBudget.objects.create(name="Whole site", max_tokens=100_000)
    bulk = reverse("wagtail_bulk_action", args=("wagtailcore", "page", "run_llm_action"))
    bulk_pipeline = reverse("wagtail_bulk_action", args=("wagtailcore", "page", "run_llm_pipeline"))
    snippets = "wagtailsnippets_wagtail_llm_actions_"
    screens = [
        ("actions", reverse(f"{snippets}llmaction:list"), "main"),
        ("action-add", reverse(f"{snippets}llmaction:add"), "form"),
        ("action-edit", reverse(f"{snippets}llmaction:edit", args=[action.pk]), "form"),
        ("prompts", reverse(f"{snippets}llmprompt:list"), "main"),
        ("prompt-add", reverse(f"{snippets}llmprompt:add"), "form"),
        ("prompt-edit", reverse(f"{snippets}llmprompt:edit", args=[prompt_id]), "form"),
        ("pipelines", reverse(f"{snippets}llmpipeline:list"), "main"),
        ("pipeline-add", reverse(f"{snippets}llmpipeline:add"), "form"),
        ("pipeline-edit", reverse(f"{snippets}llmpipeline:edit", args=[pipeline.pk]), "form"),
        ("bulk-choose", bulk + query, "main"),  # nothing preselected
        ("bulk-confirm", bulk + query + f"&action={action.pk}", "#llm-bulk-plan-heading"),
        (
            "bulk-pipeline-confirm",
            bulk_pipeline + query + f"&pipeline={pipeline.pk}",
            "#llm-bulk-plan-heading",
        ),
        ("jobs", reverse("wagtail_llm_actions_jobs:index"), "main"),
        ("review-queue", reverse("wagtail_llm_actions_review:queue", args=[job.pk]), "main"),
        (
            "canary-start",
            reverse("wagtail_llm_actions_review:canary_start", args=[action.pk]),
            "main",
        ),
        ("budgets", reverse(f"{snippets}llmbudget:list"), "main"),
        ("budget-add", reverse(f"{snippets}llmbudget:add"), "form"),
        ("job", reverse("wagtail_llm_actions_jobs:detail", args=[job.pk]), "[data-llm-job-notice]"),
        ("report", reverse("wagtail_llm_actions_report:index"), "svg.llm-chart"),
        ("detail", reverse("wagtail_llm_actions_report:detail", args=[interaction.pk]), "main"),
        ("detail-error", reverse("wagtail_llm_actions_report:detail", args=[failed.pk]), "main"),
        ("stats", reverse("wagtail_llm_actions_report:action", args=[action.pk]), "main"),
        ("test-on-page", reverse("wagtail_llm_actions_report:test", args=[action.pk]), "form"),
        ("compare", reverse("wagtail_llm_actions_report:compare", args=[interaction.pk]), "main"),
    ]
    page = browser_page
    log_in(page, live_server)
    check_screens(page, superuser, live_server, screens)

    # "Test on a page" with its answer (a POST: the page chooser's value set, then submitted)
    found = []
    for suffix, theme, contrast in LIGHT_AND_DARK:
        set_theme(superuser, theme, contrast)
        page.goto(live_server.url + reverse("wagtail_llm_actions_report:test", args=[action.pk]))
        page.eval_on_selector(
            "input[name=page]", "(el, pk) => { el.value = pk; }", site_data["posts"][1].pk
        )
        page.locator("[data-llm-ask]").click()
        page.locator("[data-llm-compare]").wait_for(timeout=30_000)
        page.wait_for_load_state("networkidle")
        found += serious_violations(page, f"test-on-page-answer{suffix}")
    set_theme(superuser, "system", "system")
    assert not found, "\n".join(found)


@pytest.mark.usefixtures("worker")
def test_editor_with_an_answer_and_candidates_has_no_serious_violations(
    live_server, browser_page, post, server_action, make_action, fake_llm, superuser
):
    from tests.browser.test_editor_browser import login_and_edit

    page = browser_page
    make_action(
        name="Three summaries",
        slug="three-summaries",
        model=server_action.model,
        api_base=server_action.api_base,
        api_key_name=server_action.api_key_name,
        candidates=3,
    )
    login_and_edit(page, live_server, post)
    found = []
    for suffix, theme, contrast in LIGHT_AND_DARK:
        set_theme(superuser, theme, contrast)
        page.reload()
        summary = '[data-llm-action-field-value="summary"]'
        page.locator(f"{summary} [data-llm-action-target=run]").first.wait_for()
        found += serious_violations(page, f"editor{suffix}")
        # the action menu in the footer, open on our items
        page.locator('footer [data-w-dropdown-target="toggle"]').first.click()
        page.locator(".llm-action-menu-item").first.wait_for(state="visible")
        found += serious_violations(page, f"editor-menu{suffix}")
        page.keyboard.press("Escape")

        fake_llm.configure(reply="A summary to review.", candidate_replies=None)
        page.locator(f"{summary} [data-llm-action-target=run]").first.click()
        page.locator(f"{summary} [data-llm-action-review=undo]").wait_for()
        found += serious_violations(page, f"editor-answer{suffix}")
        save_screenshot(page, f"a11y-editor-answer{suffix}", full_page=False)
        page.locator(f"{summary} [data-llm-action-review=undo]").click()

        fake_llm.configure(candidate_replies=["First idea.", "Second idea.", "Third idea."])
        page.locator(f"{summary} [data-llm-action-target=run]").nth(1).click()
        page.locator(f"{summary} [data-llm-action-candidate]").nth(2).wait_for()
        found += serious_violations(page, f"editor-candidates{suffix}")
    set_theme(superuser, "system", "system")
    assert not found, "\n".join(found)


def test_right_to_left_layout_of_the_editor_buttons_and_the_job_page(
    live_server, browser_page, superuser, site_data
):
    """Arabic (Wagtail's admin offers it): the page is ``dir=rtl``, our buttons and cards sit
    inside the viewport from the right, and nothing of ours overlaps."""
    from wagtail.users.models import UserProfile

    profile = UserProfile.get_for_user(superuser)
    profile.preferred_language = "ar"
    profile.save(update_fields=["preferred_language"])
    page = browser_page
    log_in(page, live_server)

    post = site_data["posts"][0]
    page.goto(live_server.url + reverse("wagtailadmin_pages:edit", args=[post.pk]))
    buttons = page.locator('[data-llm-action-field-value="summary"] .llm-action__buttons')
    buttons.wait_for()
    buttons.scroll_into_view_if_needed()
    assert page.get_attribute("html", "dir") == "rtl"
    assert page.get_attribute("html", "lang") == "ar"
    field = page.locator(".w-field__wrapper:has(textarea[name=summary])").first
    field_box = field.bounding_box()
    within(buttons.bounding_box(), page.viewport_size)
    # right to left: the first button ("Generate …") starts at the field's right edge
    first = buttons.locator("button").first.bounding_box()
    field_right = field_box["x"] + field_box["width"]
    assert field_right - (first["x"] + first["width"]) < first["x"] - field_box["x"], (
        first,
        field_box,
    )
    # the buttons neither overlap each other nor the field, and stay clear of the sidebar
    assert_no_overlap(
        page,
        'textarea[name=summary], [data-llm-action-field-value="summary"] .llm-action__buttons > *',
    )
    main = page.locator("main").bounding_box()
    for box in boxes(page, '[data-llm-action-field-value="summary"] .llm-action__buttons *'):
        inside(box, main)
    save_screenshot(page, "rtl-editor", full_page=False)

    job = site_data["job"]
    page.goto(live_server.url + reverse("wagtail_llm_actions_jobs:detail", args=[job.pk]))
    page.locator("[data-llm-job-notice]").wait_for()
    assert page.get_attribute("html", "dir") == "rtl"
    for selector in (".llm-job__stats > *", ".llm-job__filters a, .llm-job__filters button"):
        assert_no_overlap(page, selector)
    main = page.locator("main").bounding_box()
    for box in boxes(page, "main .llm-job *"):
        inside(box, main)
    # the progress bar fills from the right in a right-to-left page: succeeded (3 of 4) first
    track = page.locator(".llm-job__track").bounding_box()
    succeeded = page.locator("[data-segment=succeeded]").bounding_box()
    assert 0 < succeeded["width"] < track["width"] - 10
    right = succeeded["x"] + succeeded["width"]
    assert right == pytest.approx(track["x"] + track["width"], abs=3)
    save_screenshot(page, "rtl-job", full_page=False)


def boxes(page, selector: str) -> list[dict]:
    return page.eval_on_selector_all(
        selector,
        """els => els.filter(el => el.getClientRects().length).map(el => {
            const r = el.getBoundingClientRect();
            return {x: r.x, y: r.y, width: r.width, height: r.height,
                    name: el.tagName + '.' + el.className};
        })""",
    )


def within(box: dict, viewport: dict) -> None:
    assert box["x"] >= -1 and box["x"] + box["width"] <= viewport["width"] + 1, box


def inside(box: dict, area: dict) -> None:
    """``box`` lies horizontally inside ``area`` (the main column, not under the sidebar)."""
    assert box["x"] >= area["x"] - 1, (box, area)
    assert box["x"] + box["width"] <= area["x"] + area["width"] + 1, (box, area)


def assert_no_overlap(page, selector: str) -> None:
    found = [b for b in boxes(page, selector) if b["width"] and b["height"]]
    assert found, selector
    for i, a in enumerate(found):
        for b in found[i + 1 :]:
            overlap_x = min(a["x"] + a["width"], b["x"] + b["width"]) - max(a["x"], b["x"])
            overlap_y = min(a["y"] + a["height"], b["y"] + b["height"]) - max(a["y"], b["y"])
            assert overlap_x <= 1 or overlap_y <= 1, (selector, a, b)
