"""Editor buttons without panel changes, the create view, page history and prompt snapshots."""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import reverse
from wagtail.models import PageLogEntry
from wagtail.test.utils.form_data import (
    nested_form_data,
    querydict_from_html,
    rich_text,
    streamfield,
)

from tests.browser.qworker import run_queued_tasks
from wagtail_llm_actions.models import LLMInteraction
from wagtail_llm_actions.panels import EditorTarget, auto_entries, menu_entries, panel_restrictions

pytestmark = pytest.mark.django_db

UNSAVED = "Unsaved words about earthworms turning peelings into dark soil."


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def add_url(parent, model="blogpage"):
    return reverse("wagtailadmin_pages:add", args=["blog", model, parent.pk])


def run_new_url(parent, page_class, action):
    content_type = ContentType.objects.get_for_model(page_class)
    return reverse(
        "wagtail_llm_actions_editor:run_new", args=[parent.pk, content_type.pk, action.pk]
    )


def create_form_data(client, parent, **changes):
    response = client.get(add_url(parent))
    assert response.status_code == 200
    data = querydict_from_html(response.content.decode(), form_id="page-edit-form")
    data.update(
        nested_form_data(
            {"body": streamfield([("heading", "Worms"), ("paragraph", rich_text(UNSAVED))])}
        )
    )
    data["highlights"] = rich_text("")
    for key, value in changes.items():
        data[key] = value
    return data


def run_and_wait(client, url, data) -> dict:
    response = client.post(url, data)
    assert response.status_code == 202, response.content
    run_queued_tasks()
    status_url = response.json()["status_url"]
    return client.get(status_url).json()


# -- buttons beside plain fields -------------------------------------------------------------


def test_plain_field_gets_its_button_without_panel_changes(client, post, make_action, superuser):
    """BlogPage's ``intro`` is a plain FieldPanel; its action still shows beside it."""
    make_action(name="Write intro", slug="write-intro", target_field="intro")
    client.force_login(superuser)

    html = client.get(reverse("wagtailadmin_pages:edit", args=[post.pk])).content.decode()

    assert 'data-controller="llm-action-placement"' in html
    assert 'data-field="intro"' in html
    assert html.count('data-llm-action-name-param="Write intro"') == 2  # placed and menu
    assert "llm-action-placement-controller.js" in html


def test_simple_page_without_any_llm_panel_gets_buttons(blog_index, make_action, superuser):
    from blog.models import SimplePage

    action = make_action(name="Write text", slug="write-text", target_field="text")
    action.page_types.set([ContentType.objects.get_for_model(SimplePage)])
    page = SimplePage(title="About", slug="about")
    blog_index.add_child(instance=page)
    client = client_for(superuser)

    html = client.get(reverse("wagtailadmin_pages:edit", args=[page.pk])).content.decode()

    assert 'data-field="text"' in html
    assert 'data-llm-action-name-param="Write text"' in html


def test_panel_fields_are_not_placed_twice(rf, post, action, superuser):
    """``summary`` uses LLMActionPanel: its buttons come from the panel only."""
    request = rf.get("/")
    request.user = superuser
    target = EditorTarget.for_page(post)

    assert [e["field_name"] for e in auto_entries(target, request)] == []
    assert [e["field_name"] for e in menu_entries(target, request)] == ["summary"]


def test_panel_restriction_applies_to_panel_and_menu(client, post, make_action, superuser):
    """The sandbox wraps tags in ``LLMActionPanel("tags", actions=["suggest-tags"])``."""
    from blog.models import BlogPage

    make_action(name="Suggest tags", slug="suggest-tags", target_field="tags", output_mode="tags")
    make_action(name="Other tags", slug="other-tags", target_field="tags", output_mode="tags")
    client.force_login(superuser)

    html = client.get(reverse("wagtailadmin_pages:edit", args=[post.pk])).content.decode()

    assert panel_restrictions(BlogPage)["tags"] == {"suggest-tags"}
    assert 'data-llm-action-name-param="Suggest tags"' in html
    assert "Other tags" not in html  # neither beside the field nor in the menu


def test_no_placed_buttons_for_users_who_may_not_edit(rf, post, make_action, outsider):
    make_action(name="Write intro", slug="write-intro", target_field="intro")
    request = rf.get("/")
    request.user = outsider

    assert auto_entries(EditorTarget.for_page(post), request) == []


# -- create view ---------------------------------------------------------------------------


def test_create_view_shows_buttons(blog_index, make_action, superuser):
    make_action()
    make_action(name="Write intro", slug="write-intro", target_field="intro")
    client = client_for(superuser)

    html = client.get(add_url(blog_index)).content.decode()

    from blog.models import BlogPage

    summary = reverse(
        "wagtail_llm_actions_editor:run_new",
        args=[blog_index.pk, ContentType.objects.get_for_model(BlogPage).pk, 0],
    ).rsplit("/0/", 1)[0]
    assert f'data-llm-action-url-param="{summary}/' in html
    assert 'data-llm-action-field-value="summary"' in html  # the panel
    assert 'data-field="intro"' in html  # placed beside a plain field


def test_create_view_run_fills_from_the_unsaved_form_then_links_on_save(
    blog_index, action, superuser
):
    from blog.models import BlogPage

    client = client_for(superuser)
    data = create_form_data(client, blog_index, title="Worm bins", slug="worm-bins")

    status = run_and_wait(client, run_new_url(blog_index, BlogPage, action), data)

    assert status["state"] == "succeeded", status
    value = status["result"]["value"]
    assert "earthworms" in value.lower()
    assert not BlogPage.objects.filter(slug="worm-bins").exists()  # nothing saved by the run
    interaction = LLMInteraction.objects.get(pk=status["result"]["interaction"])
    assert interaction.page_id is None and interaction.outcome == "pending"
    detail = client.get(reverse("wagtail_llm_actions_report:detail", args=[interaction.pk]))
    assert detail.status_code == 200  # the report shows a run on a page not created yet

    # save the new page as a draft with the generated summary
    data["summary"] = value
    data["llm_action_interactions"] = str(interaction.pk)
    response = client.post(add_url(blog_index), data)
    assert response.status_code == 302, response.content[:2000]

    page = BlogPage.objects.get(slug="worm-bins")
    interaction.refresh_from_db()
    assert interaction.page_id == page.pk
    assert interaction.object_id == str(page.pk)
    assert interaction.revision_id == page.latest_revision_id
    assert interaction.outcome == "accepted"
    entry = PageLogEntry.objects.get(page=page, action="wagtail_llm_actions.generate")
    assert "saved as generated" in entry.message


def test_create_view_run_needs_add_permission(blog_index, action, superuser, outsider):
    from blog.models import BlogPage

    data = create_form_data(client_for(superuser), blog_index, title="Worm bins")

    response = client_for(outsider).post(run_new_url(blog_index, BlogPage, action), data)

    assert response.status_code == 403
    assert response.json()["code"] == "permission"
    assert not LLMInteraction.objects.exists()


def test_create_view_run_refuses_an_action_for_other_page_types(blog_index, make_action, superuser):
    from blog.models import BlogPage, SimplePage

    other = make_action(name="Write text", slug="write-text", target_field="text")
    other.page_types.set([ContentType.objects.get_for_model(SimplePage)])
    client = client_for(superuser)
    data = create_form_data(client, blog_index, title="Worm bins")

    response = client.post(run_new_url(blog_index, BlogPage, other), data)

    assert response.status_code == 400
    assert "does not apply" in response.json()["message"]


# -- page history ----------------------------------------------------------------------------


def test_saving_an_editor_answer_logs_the_generation_with_its_outcome(post, action, superuser):
    from tests.test_editor import edit_url, form_data, run_url

    client = client_for(superuser)
    data = form_data(client, post, body_text=UNSAVED)
    status = run_and_wait(client, run_url(post, action), data)
    interaction_id = status["result"]["interaction"]

    data = form_data(client, post, body_text=UNSAVED)
    data["summary"] = status["result"]["value"] + " Plus my own words."
    data["llm_action_interactions"] = str(interaction_id)
    assert client.post(edit_url(post), data).status_code == 302

    entries = PageLogEntry.objects.filter(page=post, action="wagtail_llm_actions.generate")
    assert entries.count() == 1
    entry = entries.get()
    assert entry.data["outcome"] == "edited"
    post.refresh_from_db()
    assert entry.revision_id == post.latest_revision_id
    assert entry.message == (
        "Generated Summary with “Generate summary” in the editor, edited before saving"
    )
    # the history page shows it next to "Draft saved"
    history = client.get(reverse("wagtailadmin_pages:history", args=[post.pk])).content.decode()
    assert "edited before saving" in history


# -- prompt versions -------------------------------------------------------------------------


def test_first_run_snapshots_the_prompt_silently(post, make_action, superuser):
    """A prompt created in code has no revision: the run snapshots it without a history entry."""
    from wagtail.models import ModelLogEntry

    from wagtail_llm_actions.models import LLMPrompt
    from wagtail_llm_actions.service import LLMService

    prompt = LLMPrompt.objects.create(name="Summarise", slug="summarise", template="Sum up {body}")
    action = make_action(slug="sum-up", prompt=prompt)

    first = LLMService().run(action, post, superuser)
    action.prompt.refresh_from_db()
    second = LLMService().run(action, post, superuser)

    prompt.refresh_from_db()
    assert first.prompt_revision_id == prompt.latest_revision_id == second.prompt_revision_id
    assert prompt.latest_revision.user_id is None  # not attributed to whoever ran it
    assert not ModelLogEntry.objects.filter(object_id=str(prompt.pk)).exists()
    assert prompt.revisions.count() == 1


def test_saving_a_prompt_in_the_admin_snapshots_it(post, action, superuser):
    from wagtail_llm_actions.service import LLMService

    prompt = action.prompt
    before = prompt.latest_revision_id
    url = reverse("wagtailsnippets_wagtail_llm_actions_llmprompt:edit", args=[prompt.pk])
    response = client_for(superuser).post(
        url, {"name": prompt.name, "slug": prompt.slug, "template": "Shorter: {body}"}
    )
    assert response.status_code == 302

    prompt.refresh_from_db()
    interaction = LLMService().run(action, post, superuser)
    assert prompt.latest_revision_id != before
    assert interaction.prompt_revision_id == prompt.latest_revision_id
    assert interaction.prompt_revision.content["template"] == "Shorter: {body}"


def test_create_view_run_answers_a_too_large_form_in_json_and_checks_csrf(
    blog_index, action, editor
):
    from blog.models import BlogPage

    url = run_new_url(blog_index, BlogPage, action)
    client = Client(enforce_csrf_checks=True)
    client.force_login(editor)
    client.get(add_url(blog_index))
    token = client.cookies["csrftoken"].value

    too_large = client.post(url, {"title": "x" * (3 * 1024 * 1024)}, headers={"X-CSRFToken": token})
    no_token = client.post(url, {"title": "x"})

    assert too_large.status_code == 413
    assert too_large.json()["code"] == "too_large"
    assert no_token.status_code == 403
    assert not LLMInteraction.objects.exists()
