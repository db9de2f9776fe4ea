"""The page editor's buttons in a real browser: no panel changes, create view, menu, review.

Drives Debian's ``chromium`` through Playwright against ``live_server``, with jobs run by an
in-process django-q2 worker (``tests/browser/qworker.py``) calling the fake OpenAI-compatible
server through LiteLLM.

Screenshots of the filled editor in the light, dark and high-contrast admin themes are written
to ``test-artifacts/`` (``editor-filled*.png``), and to ``docs/screenshots/`` only by
``scripts/screenshots.sh``.
"""

from __future__ import annotations

import re
import time

import pytest
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse

from tests.browser.qworker import WorkerThread
from tests.browser.screens import save_screenshot
from tests.browser.test_editor_browser import login_and_edit, save_draft, type_body, worker

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

__all__ = ["worker"]  # the fixture, imported for this module's tests

UNSAVED_BODY = "Earthworms turn kitchen peelings into dark crumbly soil within weeks."
NEW_TITLE = "Earthworms in a bin on the balcony"


def login(page, live_server):
    page.goto(live_server.url + reverse("wagtailadmin_login"))
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/admin/$"))


def _reply(request_json):
    prompt = request_json["messages"][-1]["content"]
    line = next((x for x in prompt.splitlines() if "Earthworms" in x), "nothing")
    return f"Generated: {line.strip()}"


def _placed(page, field):
    return page.locator(f'[data-llm-action-placed="{field}"]')


def test_create_view_places_buttons_waits_for_a_worker_and_logs_the_save(
    live_server, browser_page, blog_index, make_action, fake_llm, api_key_env, superuser
):
    """A new page: a plain field (intro) gets its button; nothing is said to generate until a
    worker claims the job; the answer fills the field; saving logs the generation."""
    from blog.models import BlogPage
    from wagtail.models import PageLogEntry

    from wagtail_llm_actions.models import LLMJobItem

    make_action(
        name="Write intro",
        slug="write-intro",
        source_field="title",
        target_field="intro",
        model="openai/fake-model",
        api_base=fake_llm.url,
        api_key_name=api_key_env,
    )
    fake_llm.configure(reply=_reply, latency=1.5)
    page = browser_page
    login(page, live_server)
    page.goto(
        live_server.url
        + reverse("wagtailadmin_pages:add", args=["blog", "blogpage", blog_index.pk])
    )
    page.fill("#id_title", NEW_TITLE)  # unsaved: the page does not exist yet

    placed = _placed(page, "intro")
    placed.wait_for()
    # beside the intro field, right after its wrapper
    assert page.evaluate(
        """() => document.querySelector('[data-llm-action-placed=intro]')
            .previousElementSibling.querySelector('[name=intro]') !== null"""
    )
    # A worker that started (and imported LiteLLM) before, then stopped: none is running now.
    warm = WorkerThread(connection=_shared_connection())
    warm.start()
    warm.started_up.wait(60)
    warm.stop()
    _release_connection()

    placed.get_by_role("button", name="Write intro").click()

    status = placed.locator("[role=status]")
    status.get_by_text("Waiting to start…").wait_for()
    time.sleep(0.5)
    assert "Generating" not in status.inner_text()  # no worker yet: nothing is generating

    thread = WorkerThread(connection=_shared_connection())
    thread.start()
    try:
        status.get_by_text("Generating with “Write intro”…").wait_for()
        # The answer streams in (partial text first); the review line means it is complete.
        review = placed.locator(".llm-action__review")
        review.get_by_role("button", name="Keep").wait_for()
        assert page.input_value("[name=intro]").startswith("Generated:")
        assert NEW_TITLE in page.input_value("[name=intro]")

        # one line: the review line with all four choices; the status only speaks to readers
        assert "Generated with “Write intro”." in review.inner_text()
        for name in ("Undo", "Regenerate", "Discard", "Keep"):
            assert review.get_by_role("button", name=name).is_visible()
        assert "Keep" in status.locator(".w-sr-only").inner_text()  # for screen readers
        assert status.evaluate(
            "el => [...el.childNodes].every(n => n.classList && n.classList.contains('w-sr-only'))"
        )

        # Wagtail's autosave creates the page from the create view; a later run is then on
        # that page, not on another new one (whose slug would now clash)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not BlogPage.objects.filter(title=NEW_TITLE):
            time.sleep(0.2)
        created = BlogPage.objects.get(title=NEW_TITLE)
        page.wait_for_function(
            "() => document.querySelector('form[data-edit-form]').dataset.llmActionPageId"
        )
        review.get_by_role("button", name="Regenerate").click()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and LLMJobItem.objects.count() < 2:
            time.sleep(0.2)
        second = LLMJobItem.objects.order_by("-pk").first()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and second.status in ("queued", "running"):
            time.sleep(0.2)
            second.refresh_from_db()
        assert second.page_id == created.pk
        assert second.status == "succeeded", second.result
        assert placed.locator(".llm-action__error").is_hidden()

        save_draft(page)
    finally:
        thread.stop()
        _release_connection()

    new = BlogPage.objects.get(title=NEW_TITLE)
    draft = new.get_latest_revision_as_object()
    assert NEW_TITLE in draft.intro
    entries = PageLogEntry.objects.filter(page=new, action="wagtail_llm_actions.generate")
    assert entries.exists()
    assert {entry.data["outcome"] for entry in entries} <= {"accepted", "discarded"}
    page.goto(live_server.url + reverse("wagtailadmin_pages:history", args=[new.pk]))
    assert "Generated Intro with “Write intro” in the editor" in page.content()  # the label


def test_menu_closes_respects_restrictions_and_discard_leaves_nothing_to_autosave(
    live_server, browser_page, worker, post, make_action, superuser
):
    from wagtail.models import Revision

    make_action()  # Generate summary, local/extractive
    make_action(name="Suggest tags", slug="suggest-tags", target_field="tags", output_mode="tags")
    make_action(name="Other tags", slug="other-tags", target_field="tags", output_mode="tags")
    make_action(
        name="Write highlights",
        slug="write-highlights",
        target_field="highlights",
        output_mode="rich_text",
    )
    page = browser_page
    login_and_edit(page, live_server, post)
    page.locator("textarea[name=summary]").wait_for()
    original = page.input_value("textarea[name=summary]")

    # the arrow menu offers the summary action but not the action the tags panel leaves out
    page.locator("footer .w-dropdown__toggle").click()
    menu_item = page.locator(".llm-action-menu-item", has_text="Generate summary")
    menu_item.wait_for(state="visible")
    assert page.locator(".llm-action-menu-item", has_text="Other tags").count() == 0
    assert page.locator(".llm-action-menu-item", has_text="Suggest tags").count() == 1

    # choosing it closes the menu; the review buttons are not covered
    revisions_before = Revision.page_revisions.filter(object_id=str(post.pk)).count()
    page.wait_for_timeout(2500)  # Wagtail's unsaved-changes check takes its first snapshot
    menu_item.click()
    menu_item.wait_for(state="hidden")
    discard = page.locator(
        '[data-llm-action-field-value="summary"] [data-llm-action-review=discard]'
    )
    discard.wait_for()
    assert page.input_value("textarea[name=summary]") != original
    discard.click()  # a real click: fails if anything covers the button

    # Discard puts the value back exactly: autosave has nothing to save
    assert page.input_value("textarea[name=summary]") == original
    assert page.locator("input[name=llm_action_interactions]").count() == 0
    page.wait_for_timeout(3000)
    assert Revision.page_revisions.filter(object_id=str(post.pk)).count() == revisions_before

    # the same for rich text, whose editor rewrites its hidden input on its own
    highlights = page.locator("input[name=highlights]")
    before = highlights.input_value()
    page.get_by_role("button", name="Write highlights").click()
    discard = page.locator(
        '[data-llm-action-field-value="highlights"] [data-llm-action-review=discard]'
    )
    discard.wait_for()
    assert highlights.input_value() != before
    discard.click()
    page.wait_for_timeout(3000)
    assert highlights.input_value() == before
    assert Revision.page_revisions.filter(object_id=str(post.pk)).count() == revisions_before


@pytest.mark.parametrize(
    ("theme", "contrast", "name"),
    [
        ("light", "system", "editor-filled.png"),
        ("dark", "system", "editor-filled-dark.png"),
        ("light", "more_contrast", "editor-filled-contrast.png"),
    ],
)
def test_editor_review_bar_screenshots(
    live_server, browser_page, worker, post, make_action, superuser, theme, contrast, name
):
    """The review bar in the light, dark and high-contrast admin themes (docs/screenshots)."""
    from blog.models import BlogPage
    from wagtail.users.models import UserProfile

    profile = UserProfile.get_for_user(superuser)
    profile.theme, profile.contrast = theme, contrast
    profile.save()
    make_action()
    action = make_action(name="Write intro", slug="write-intro", target_field="intro")
    action.page_types.add(ContentType.objects.get_for_model(BlogPage))
    page = browser_page
    login_and_edit(page, live_server, post)
    assert page.locator(f".w-theme-{theme}").count() == 1
    if contrast == "more_contrast":
        assert page.locator(".w-contrast-more").count() == 1

    type_body(page, UNSAVED_BODY)
    button = page.locator(
        '[data-llm-action-field-value="summary"] [data-llm-action-target="run"]',
        has_text="Generate summary",
    )
    button.click()
    page.locator('[data-llm-action-field-value="summary"] .llm-action__review').wait_for()
    page.locator("textarea[name=summary]").scroll_into_view_if_needed()
    page.evaluate("window.scrollBy(0, -250)")
    save_screenshot(page, name.removesuffix(".png"))


def _shared_connection():
    from django.db import connections

    conn = connections["default"]
    if conn.vendor == "sqlite" and conn.is_in_memory_db():
        conn.inc_thread_sharing()
        return conn
    return None


def _release_connection():
    from django.db import connections

    conn = connections["default"]
    if conn.vendor == "sqlite" and conn.is_in_memory_db():
        conn.dec_thread_sharing()
