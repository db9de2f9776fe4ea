"""Snippets in the admin (issue 23 §2): the snippet listing's bulk action (estimate, then a
job), the snippet editor's entries (confirm, queued run, back to the snippet), the report
naming the snippet and undoing a direct write, and the action form's snippet types."""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import reverse

from tests.queued import finish_queued
from wagtail_llm_actions.models import InteractionOutcome, LLMInteraction

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def bulk_url(model, objs) -> str:
    opts = model._meta
    url = reverse(
        "wagtail_bulk_action", args=(opts.app_label, opts.model_name, "run_llm_snippet_action")
    )
    return url + "?next=/admin/&" + "&".join(f"id={obj.pk}" for obj in objs)


def test_the_snippet_listing_bulk_action_estimates_then_runs_a_job(
    dish, dish_action, fake_llm, superuser
):
    from tests.testapp.models import Dish
    from wagtail_llm_actions import jobs
    from wagtail_llm_actions.models import LLMJob

    other = Dish.objects.create(name="Ratatouille", description="Summer vegetables.", live=True)
    fake_llm.configure(reply="Short.")
    client = client_for(superuser)
    url = bulk_url(Dish, [dish, other])
    html = client.get(url).content.decode()
    assert f'<option value="{dish_action.pk}">Snippet summary</option>' in html
    preview = client.post(url, {"action": dish_action.pk, "preview": "1"}).content.decode()
    assert "2 snippets will run" in preview and "data-llm-estimate-tokens" in preview
    assert "new revision" in preview
    assert not LLMJob.objects.exists()

    response = client.post(url, {"action": dish_action.pk}, follow=True)
    assert "started on 2 snippet(s)" in response.content.decode()
    job = LLMJob.objects.get()
    jobs.run_job(job.pk)
    for obj in (dish, other):
        fresh = Dish.objects.get(pk=obj.pk)
        assert fresh.get_latest_revision_as_object().summary == "Short."
        assert fresh.summary == ""
    html = client.get(reverse("wagtail_llm_actions_report:index")).content.decode()
    assert "data-llm-snippet" in html and "Ratatouille" in html  # the report names them


def test_the_bulk_action_offers_only_actions_for_the_model(tip, dish_action, superuser):
    from tests.testapp.models import Tip

    html = client_for(superuser).get(bulk_url(Tip, [tip])).content.decode()
    assert "Snippet summary" not in html
    assert "No enabled" in html


def test_the_editor_entry_confirms_queues_and_returns_to_the_snippet(
    dish, dish_action, fake_llm, superuser
):
    from tests.testapp.models import Dish

    fake_llm.configure(reply="A stew.")
    client = client_for(superuser)
    edit = reverse("wagtailsnippets_testapp_dish:edit", args=[dish.pk])
    html = client.get(edit).content.decode()
    run_url = reverse(
        "wagtail_llm_actions_snippets:run", args=["testapp", "dish", dish.pk, dish_action.pk]
    )
    assert f'href="{run_url}"' in html and 'data-llm-snippet-action="snippet-summary"' in html
    confirm = client.get(run_url).content.decode()
    assert "new revision" in confirm and "data-llm-confirm-button" in confirm
    assert fake_llm.request_count == 0

    response = client.post(run_url)
    assert Dish.objects.get(pk=dish.pk).latest_revision_id == dish.latest_revision_id
    done = finish_queued(client, response)
    assert done["Location"] == edit
    assert Dish.objects.get(pk=dish.pk).get_latest_revision_as_object().summary == "A stew."
    interaction = LLMInteraction.objects.get()
    assert interaction.trigger == "snippet_editor"


def test_no_entry_for_users_who_may_not_change_the_snippet(dish, dish_action, django_user_model):
    from tests.snippets import snippet_editor
    from tests.testapp.models import Dish

    viewer = snippet_editor(django_user_model, name="viewer")
    client = client_for(viewer)
    run_url = reverse(
        "wagtail_llm_actions_snippets:run", args=["testapp", "dish", dish.pk, dish_action.pk]
    )
    from wagtail_llm_actions.models import LLMJob

    response = client.post(run_url)  # Wagtail's admin turns the refusal into a redirect
    assert response.status_code in (302, 403) and response.get("Location") != run_url
    assert not LLMJob.objects.exists()
    editor = snippet_editor(django_user_model, Dish, name="cook")
    html = (
        client_for(editor)
        .get(reverse("wagtailsnippets_testapp_dish:edit", args=[dish.pk]))
        .content.decode()
    )
    assert "data-llm-snippet-action" in html


def test_the_report_undoes_a_direct_write(tip, tip_action, fake_llm, superuser):
    from tests.testapp.models import Tip
    from wagtail_llm_actions.service import LLMService

    fake_llm.configure(reply="Rest it.")
    interaction = LLMService().run(tip_action, tip, superuser)
    client = client_for(superuser)
    detail = reverse("wagtail_llm_actions_report:detail", args=[interaction.pk])
    html = client.get(detail).content.decode()
    assert "data-llm-snippet-write" in html and "data-llm-undo" in html
    assert "Resting meat" in html
    client.post(reverse("wagtail_llm_actions_snippets:undo", args=[interaction.pk]))
    assert Tip.objects.get(pk=tip.pk).summary == "old"
    interaction.refresh_from_db()
    assert interaction.outcome == InteractionOutcome.UNDONE


def test_the_action_form_takes_snippet_types_and_refuses_no_revisions_without_opt_in(
    snippet_prompt, superuser
):
    from tests.test_action_form import ADD_URL, action_data
    from tests.testapp.models import Dish, Tip
    from wagtail_llm_actions.models import LLMAction

    dish_type = ContentType.objects.get_for_model(Dish)
    tip_type = ContentType.objects.get_for_model(Tip)
    client = client_for(superuser)
    html = client.get(reverse(ADD_URL)).content.decode()
    assert 'name="snippet_types"' in html and 'name="writes_directly"' in html
    data = action_data(
        snippet_prompt,
        page_types=[],
        slug="dishes",
        source_field="description",
        snippet_types=[str(dish_type.pk)],
    )
    response = client.post(reverse(ADD_URL), data)
    assert response.status_code == 302, response.context["form"].errors
    assert list(LLMAction.objects.get(slug="dishes").snippet_types.all()) == [dish_type]

    tips = {**data, "slug": "tips", "source_field": "text", "snippet_types": [str(tip_type.pk)]}
    response = client.post(reverse(ADD_URL), tips)
    assert response.status_code == 200
    assert "keep no revisions" in str(response.context["form"].errors["snippet_types"])
    response = client.post(reverse(ADD_URL), {**tips, "writes_directly": "on"})
    assert response.status_code == 302, response.context["form"].errors
    assert LLMAction.objects.get(slug="tips").writes_directly


def snippet_world(world) -> None:
    """For the permission matrix (test_permissions): a revisioned snippet and an action on
    it, a snippet without revisions and a direct write to it by the superuser."""
    from tests.testapp.models import Dish, Tip
    from wagtail_llm_actions.models import LLMAction, LLMPrompt
    from wagtail_llm_actions.service import LLMService

    superuser = world.users["superuser"]
    prompt = LLMPrompt.objects.create(name="Sum", slug="sum-snippet", template="Sum {source}")
    prompt.save_revision()

    def make(slug, model, source, **fields):
        action = LLMAction.objects.create(
            name=slug,
            slug=slug,
            source_field=source,
            target_field="summary",
            model="local/extractive",
            prompt=prompt,
            **fields,
        )
        action.snippet_types.set([ContentType.objects.get_for_model(model)])
        return action

    dish = Dish.objects.create(name="Stew", description="Beans. Slowly baked.", live=True)
    tip = Tip.objects.create(title="Rest", text="Rest meat for ten minutes. It helps.")
    tip_action = make("tip-sum", Tip, "text", writes_directly=True)
    world.extras.update(
        dish=dish,
        dish_action=make("dish-sum", Dish, "description"),
        snippet_interaction=LLMService().run(tip_action, tip, superuser),
    )
