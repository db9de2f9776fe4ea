"""The action form in a real browser: choices follow the page types, the slug follows the name,
and the note on where the action appears stays in step.

Screenshot: test-artifacts/action-edit.png (docs/screenshots/ with UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse

from tests.browser.screens import save_screenshot
from tests.browser.test_editor_placement_browser import login

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def options(page, name):
    return page.eval_on_selector(
        f"select[name={name}]", "el => [...el.options].map(o => o.value).filter(Boolean)"
    )


def suggestions(page, name):
    return page.eval_on_selector(
        f"input[name={name}]", "el => [...el.list.options].map(o => o.value)"
    )


def test_choices_follow_page_types_and_slug_follows_name(live_server, browser_page, superuser):
    from blog.models import BlogPage, SimplePage

    blog = ContentType.objects.get_for_model(BlogPage).pk
    simple = ContentType.objects.get_for_model(SimplePage).pk
    page = browser_page
    login(page, live_server)
    page.goto(live_server.url + reverse("wagtailsnippets_wagtail_llm_actions_llmaction:add"))

    # the slug is filled from the name, as for pages
    page.fill("input[name=name]", "Write a short intro")
    page.locator("input[name=name]").blur()
    page.wait_for_function(
        "() => document.querySelector('input[name=slug]').value === 'write-a-short-intro'"
    )

    # blog posts: their fields
    page.check(f"input[name=page_types][value='{blog}']")
    assert {"summary", "tags", "intro"} <= set(options(page, "target_field"))
    assert "body.paragraph" in suggestions(page, "source_field")
    note = page.locator("[data-llm-action-placement]")
    assert "Blog page" in note.inner_text()
    assert "run_llm_action write-a-short-intro" in note.inner_text()
    # the blog's tags panel offers only "suggest-tags": the note says so for other actions
    restricted = note.locator("[data-llm-action-form-target=restricted]")
    page.select_option("select[name=target_field]", "tags")
    restricted.wait_for()
    assert "Not beside the field on Blog page pages" in restricted.inner_text()
    page.select_option("select[name=target_field]", "summary")
    restricted.wait_for(state="hidden")

    # and simple pages too: only what both have
    page.check(f"input[name=page_types][value='{simple}']")
    both = set(options(page, "target_field"))
    assert not {"tags", "highlights", "text"} & both
    # the chosen "summary" stays selected, marked as not a field of both types
    assert "not a field of the chosen page types" in page.eval_on_selector(
        "select[name=target_field]", "el => el.selectedOptions[0].text"
    )
    assert {"title", "search_description"} <= both
    assert "body.paragraph" not in suggestions(page, "source_field")
    assert "Simple page" in note.inner_text()

    # only simple pages
    page.uncheck(f"input[name=page_types][value='{blog}']")
    assert "text" in options(page, "target_field")
    page.select_option("select[name=target_field]", "text")
    assert "beside the field text" in " ".join(note.inner_text().split())

    # the model accepts a string it does not suggest, and suggests known ones
    assert "openai/gpt-4o-mini" in suggestions(page, "model")
    page.fill("input[name=model]", "local/extractive")
    page.fill("input[name=source_field]", "text")
    note.scroll_into_view_if_needed()
    page.evaluate("window.scrollTo(0, 0)")
    save_screenshot(page, "action-edit", full_page=True)
