"""The snippet editor in a real browser (issue 23 §2): a button beside a target field runs the
action on the unsaved form, the answer fills the field for review, and saving the snippet
keeps it in a new revision (the live snippet unchanged). As ``test_editor_browser``: Debian's
chromium through Playwright, jobs queued on django-q2 and run by an in-process worker."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.browser.test_editor_browser import worker  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    # live_server flushes the database after the test; restore the migrated data before it
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

UNSAVED = "Smoked duck and white beans, typed into the snippet editor but not saved."


def _reply(request_json):
    prompt = request_json["messages"][-1]["content"]
    first = next((line for line in prompt.splitlines() if "Smoked duck" in line), "nothing")
    return f"In short. {first.strip()}"


def login(page, live_server) -> None:
    page.goto(live_server.url + reverse("wagtailadmin_login"))
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/admin/$"))


def test_a_field_button_fills_the_unsaved_snippet_then_save_keeps_a_revision(
    live_server,
    browser_page,
    worker,  # noqa: F811
    dish,
    dish_action,
    fake_llm,
    superuser,
):
    from tests.testapp.models import Dish
    from wagtail_llm_actions.models import LLMInteraction

    page = browser_page
    fake_llm.configure(reply=_reply)
    revision_before = dish.latest_revision_id

    login(page, live_server)
    page.goto(live_server.url + reverse("wagtailsnippets_testapp_dish:edit", args=[dish.pk]))

    summary = page.locator("textarea[name=summary]")
    summary.wait_for()
    button = page.locator(
        '[data-llm-action-field-value="summary"] [data-llm-action-target="run"]',
        has_text="Snippet summary",
    )
    button.wait_for()  # placed beside the field by the placement script
    assert button.count() == 1

    page.fill("textarea[name=description]", UNSAVED)
    button.click()
    page.wait_for_function(
        "() => document.querySelector('textarea[name=summary]').value.startsWith('In short.')"
    )
    page.locator('[data-llm-action-field-value="summary"] [data-llm-action-review=undo]').wait_for()
    generated = summary.input_value()
    assert UNSAVED in generated  # read from the unsaved description
    status = page.locator('[data-llm-action-field-value="summary"] [role=status]')
    assert "filled" in status.inner_text()
    assert Dish.objects.get(pk=dish.pk).latest_revision_id == revision_before  # not saved

    page.locator("footer button[type=submit]").first.click()
    page.locator(".messages .success").first.wait_for()

    fresh = Dish.objects.get(pk=dish.pk)
    assert fresh.latest_revision_id != revision_before
    draft = fresh.get_latest_revision_as_object()
    assert draft.summary == generated and draft.description == UNSAVED
    assert fresh.summary == ""  # the live snippet is unchanged until it is published
    interaction = LLMInteraction.objects.get()
    assert interaction.revision_id == fresh.latest_revision_id
    assert interaction.outcome == "accepted"


def test_the_create_view_fills_the_new_snippet_and_the_save_links_the_answer(
    live_server,
    browser_page,
    worker,  # noqa: F811
    dish_action,
    fake_llm,
    superuser,
):
    from tests.testapp.models import Dish
    from wagtail_llm_actions.models import LLMInteraction

    page = browser_page
    fake_llm.configure(reply=_reply)
    login(page, live_server)
    page.goto(live_server.url + reverse("wagtailsnippets_testapp_dish:add"))
    button = page.locator(
        '[data-llm-action-field-value="summary"] [data-llm-action-target="run"]',
        has_text="Snippet summary",
    )
    button.wait_for()

    page.fill("input[name=name]", "Garbure")
    page.fill("textarea[name=description]", UNSAVED)
    button.click()
    page.wait_for_function(
        "() => document.querySelector('textarea[name=summary]').value.startsWith('In short.')"
    )
    page.locator('[data-llm-action-field-value="summary"] [data-llm-action-review=undo]').wait_for()
    generated = page.locator("textarea[name=summary]").input_value()
    assert UNSAVED in generated

    page.locator("footer button[type=submit]").first.click()
    page.locator(".messages .success").first.wait_for()

    dish = Dish.objects.get(name="Garbure")
    assert dish.get_latest_revision_as_object().summary == generated
    interaction = LLMInteraction.objects.get()
    assert interaction.object_id == str(dish.pk)
    assert interaction.revision_id is not None and interaction.outcome == "accepted"
