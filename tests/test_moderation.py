"""Automatic drafts and moderation (issue 22 §3): a trigger's draft can go to the page's
workflow; the editor and the page listing say when one waits for review."""

from __future__ import annotations

import logging

import pytest
from django.test import Client
from django.urls import reverse
from wagtail.models import Workflow, WorkflowPage, WorkflowState

from tests.test_triggers import edit, set_trigger
from tests.workers import drain
from wagtail_llm_actions.models import ActionTrigger, LLMInteraction

pytestmark = pytest.mark.django_db


def trigger_a_draft(post, user, capture):
    """Save ``post`` with a changed source; the trigger's job writes a draft."""
    with capture(execute=True):
        edit(post, user, paragraph="Worms eat the peel and the cardboard.")
    with capture(execute=True):
        assert drain() == ["completed"]
    interaction = LLMInteraction.objects.get(trigger="on_source_change")
    assert interaction.revision_id is not None
    return interaction


def states(page):
    return WorkflowState.objects.filter(
        base_content_type_id=page.get_base_content_type().pk, object_id=str(page.pk)
    )


@pytest.fixture
def workflow(blog_index):
    """A workflow on the blog (Wagtail's default one, if the migrations made it)."""
    flow = Workflow.objects.filter(active=True).first() or Workflow.objects.create(
        name="Moderators approval"
    )
    if not flow.workflow_tasks.exists():
        from wagtail.models import GroupApprovalTask

        task = GroupApprovalTask.objects.create(name="Approve")
        flow.workflow_tasks.create(task=task, sort_order=0)
    WorkflowPage.objects.update_or_create(page=blog_index, defaults={"workflow": flow})
    return flow


def test_a_triggered_draft_is_submitted_to_the_pages_workflow(
    post, action, superuser, workflow, django_capture_on_commit_callbacks
):
    set_trigger(action, ActionTrigger.ON_SOURCE_CHANGE, submit_for_moderation=True)
    interaction = trigger_a_draft(post, superuser, django_capture_on_commit_callbacks)
    state = states(post).get()
    assert state.status == WorkflowState.STATUS_IN_PROGRESS
    assert state.workflow == workflow and state.requested_by == superuser
    assert state.current_task_state.revision_id == interaction.revision_id
    live = type(post).objects.get(pk=post.pk)
    assert live.workflow_in_progress and live.live_revision_id != interaction.revision_id


def test_submission_is_off_by_default(
    post, action, superuser, workflow, django_capture_on_commit_callbacks
):
    set_trigger(action, ActionTrigger.ON_SOURCE_CHANGE)
    trigger_a_draft(post, superuser, django_capture_on_commit_callbacks)
    assert not states(post).exists()


def test_a_page_without_a_workflow_is_skipped_with_the_reason_logged(
    post, action, superuser, caplog, django_capture_on_commit_callbacks
):
    WorkflowPage.objects.all().delete()
    set_trigger(action, ActionTrigger.ON_SOURCE_CHANGE, submit_for_moderation=True)
    with caplog.at_level(logging.INFO, logger="wagtail_llm_actions.moderation"):
        trigger_a_draft(post, superuser, django_capture_on_commit_callbacks)
    assert not states(post).exists()
    assert "the page has no workflow" in caplog.text


def test_a_page_in_moderation_already_is_not_submitted_twice(
    post, action, superuser, workflow, caplog, django_capture_on_commit_callbacks
):
    workflow.start(type(post).objects.get(pk=post.pk), superuser)
    set_trigger(action, ActionTrigger.ON_SOURCE_CHANGE, submit_for_moderation=True)
    with caplog.at_level(logging.INFO, logger="wagtail_llm_actions.moderation"):
        trigger_a_draft(post, superuser, django_capture_on_commit_callbacks)
    assert states(post).count() == 1
    assert "in moderation already" in caplog.text


def editor_html(user, page) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(reverse("wagtailadmin_pages:edit", args=[page.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_the_editor_says_an_automatic_draft_waits_until_a_person_saves(
    post, action, superuser, editor, django_capture_on_commit_callbacks
):
    notice = "An automatic draft from “Generate summary” is waiting for review."
    assert notice not in editor_html(superuser, post)
    set_trigger(action, ActionTrigger.ON_SOURCE_CHANGE)
    trigger_a_draft(post, superuser, django_capture_on_commit_callbacks)
    assert notice in editor_html(superuser, post)
    action.trigger = ActionTrigger.MANUAL
    action.save()
    edit(post, editor, title="Read and kept")
    assert notice not in editor_html(superuser, post)


def test_the_listing_filters_pages_with_an_automatic_draft_waiting(
    make_post, blog_index, action, superuser, django_capture_on_commit_callbacks
):
    waiting, other = make_post(), make_post()
    set_trigger(action, ActionTrigger.ON_SOURCE_CHANGE)
    trigger_a_draft(waiting, superuser, django_capture_on_commit_callbacks)
    client = Client()
    client.force_login(superuser)
    response = client.get(
        reverse("wagtailadmin_explore", args=[blog_index.pk]), {"llm_automatic_draft": "true"}
    )
    html = response.content.decode()
    assert "Automatic draft waiting for review" in html
    assert reverse("wagtailadmin_pages:edit", args=[waiting.pk]) in html
    assert reverse("wagtailadmin_pages:edit", args=[other.pk]) not in html


def test_a_scheduled_draft_is_submitted_with_nobody_as_requester(post, action, workflow):
    from wagtail_llm_actions.moderation import submit_for_moderation
    from wagtail_llm_actions.service import LLMService

    interaction = LLMService().run(action, post, None, trigger="schedule")
    state = submit_for_moderation(interaction, None)
    assert state is not None and state.requested_by is None
    assert states(post).get().status == WorkflowState.STATUS_IN_PROGRESS


def test_a_newer_revision_is_never_submitted_in_the_drafts_place(
    post, action, superuser, workflow, caplog
):
    from wagtail_llm_actions.moderation import submit_for_moderation
    from wagtail_llm_actions.service import LLMService

    interaction = LLMService().run(action, post, superuser, trigger="on_publish")
    edit(post, superuser, title="Saved after the draft")
    with caplog.at_level(logging.INFO, logger="wagtail_llm_actions.moderation"):
        assert submit_for_moderation(interaction, superuser) is None
    assert "a newer revision replaced the draft" in caplog.text and not states(post).exists()


def test_the_action_form_offers_submission_under_triggers(client, superuser, action):
    from tests.test_action_form import action_data

    client.force_login(superuser)
    url = reverse("wagtailsnippets_wagtail_llm_actions_llmaction:edit", args=[action.pk])
    html = client.get(url).content.decode()
    assert 'name="submit_for_moderation"' in html
    assert "Submit each draft a trigger writes to the page" in html
    data = action_data(
        action.prompt,
        slug=action.slug,
        trigger="on_source_change",
        trigger_delay="30",
        trigger_schedule="",
        submit_for_moderation="on",
    )
    response = client.post(url, data)
    assert response.status_code == 302
    action.refresh_from_db()
    assert action.submit_for_moderation and action.trigger == "on_source_change"
