"""The snippet editor's action buttons (issue 23 §2): beside each target field of a snippet
with revisions, run on the unsaved form in the background as the page editor's buttons do,
answer for the field, and record the outcome when the editor saves."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from wagtail.test.utils.form_data import querydict_from_html

from tests.browser.qworker import queued_task_count, run_queued_tasks
from tests.snippets import snippet_editor
from wagtail_llm_actions.models import LLMInteraction, LLMJob

pytestmark = pytest.mark.django_db

UNSAVED = "Unsaved words: a bean stew with smoked duck, typed but never saved."


def client_for(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def edit_url(obj) -> str:
    opts = type(obj)._meta
    return reverse(f"wagtailsnippets_{opts.app_label}_{opts.model_name}:edit", args=[obj.pk])


def run_url(obj, action) -> str:
    opts = type(obj)._meta
    return reverse(
        "wagtail_llm_actions_editor:snippet_run",
        args=[opts.app_label, opts.model_name, obj.pk, action.pk],
    )


def form_data(client, obj, **changes):
    """The snippet's edit form as the browser would post it, with ``changes`` typed in."""
    response = client.get(edit_url(obj))
    assert response.status_code == 200
    data = querydict_from_html(response.content.decode(), form_id="w-editor-form")
    for key, value in changes.items():
        data[key] = value
    return data


def run_and_wait(client, obj, action, data) -> dict:
    response = client.post(run_url(obj, action), data)
    assert response.status_code == 202, response.content
    run_queued_tasks()
    status = client.get(reverse("wagtail_llm_actions_editor:status", args=[response.json()["job"]]))
    assert status.status_code == 200
    return status.json()


# -- buttons -------------------------------------------------------------------------------------


def test_buttons_go_beside_the_target_fields_of_applicable_actions_only(
    dish, dish_action, make_snippet_action, superuser
):
    from tests.testapp.models import Dish, Tip

    make_snippet_action(Dish, name="Dish notes", slug="dish-notes", target_field="notes")
    make_snippet_action(Dish, name="Switched off", slug="switched-off", enabled=False)
    make_snippet_action(Tip, name="Tip only", slug="tip-only", writes_directly=True)

    html = client_for(superuser).get(edit_url(dish)).content.decode()

    assert 'data-controller="llm-action-placement"' in html
    assert 'data-field="summary"' in html and 'data-field="notes"' in html
    assert f'data-llm-action-url-param="{run_url(dish, dish_action)}"' in html
    assert 'data-llm-action-name-param="Snippet summary"' in html
    assert "Switched off" not in html and "Tip only" not in html
    assert 'data-field="description"' not in html  # no action writes it
    assert 'data-llm-snippet-action="snippet-summary"' in html  # the menu entry stays
    assert "llm-action-controller.js" in html


def test_no_buttons_for_a_snippet_without_revisions(tip, tip_action, superuser):
    html = client_for(superuser).get(edit_url(tip)).content.decode()

    assert 'data-controller="llm-action-placement"' not in html  # no draft to review it in
    assert "data-llm-action-url-param" not in html
    assert 'data-llm-snippet-action="tip-summary"' in html  # the menu entry still runs it
    response = client_for(superuser).post(run_url(tip, tip_action), {"title": "x"})
    assert response.status_code == 404 and not LLMJob.objects.exists()


def test_only_users_who_may_change_the_snippet_get_buttons_and_runs(
    dish, dish_action, django_user_model
):
    from tests.testapp.models import Dish

    viewer = snippet_editor(django_user_model, name="viewer")  # admin access, no change right
    cook = snippet_editor(django_user_model, Dish, name="cook")
    data = form_data(client_for(cook), dish, description=UNSAVED)

    response = client_for(viewer).post(run_url(dish, dish_action), data)

    assert response.status_code == 403
    assert response.json()["code"] == "permission"
    assert "permission to edit this snippet" in response.json()["message"]
    assert not LLMJob.objects.exists() and queued_task_count() == 0
    html = client_for(cook).get(edit_url(dish)).content.decode()
    assert 'data-field="summary"' in html
    assert client_for(cook).post(run_url(dish, dish_action), data).status_code == 202


def test_a_run_needs_the_csrf_token(dish, dish_action, superuser):
    client = client_for(superuser, enforce_csrf_checks=True)
    data = form_data(client, dish, description=UNSAVED)  # without the token
    html = client.get(edit_url(dish)).content.decode()
    token = querydict_from_html(html, form_id="w-editor-form", exclude_csrf=False)[
        "csrfmiddlewaretoken"
    ]

    assert client.post(run_url(dish, dish_action), data).status_code == 403
    assert not LLMJob.objects.exists()
    response = client.post(run_url(dish, dish_action), data, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 202


# -- the run -------------------------------------------------------------------------------------


def test_a_run_reads_the_unsaved_form_and_answers_for_the_field(
    dish, dish_action, fake_llm, superuser
):
    from tests.testapp.models import Dish

    fake_llm.configure(reply="A smoky bean stew.")
    client = client_for(superuser)
    before = Dish.objects.get(pk=dish.pk).latest_revision_id
    data = form_data(client, dish, description=UNSAVED)

    response = client.post(run_url(dish, dish_action), data)

    assert response.status_code == 202
    assert fake_llm.request_count == 0  # queued: the model is not called in the request
    result = run_and_wait_status(client, response)
    assert result["state"] == "succeeded"
    assert result["result"]["field"] == "summary"
    assert result["result"]["value"] == "A smoky bean stew."
    assert result["result"]["widget"] == "text"
    interaction = LLMInteraction.objects.get()
    assert UNSAVED in interaction.messages[-1]["content"]
    assert "slowly baked" not in interaction.messages[-1]["content"]  # not the saved text
    assert interaction.trigger == "editor" and interaction.outcome == "pending"
    fresh = Dish.objects.get(pk=dish.pk)
    assert fresh.latest_revision_id == before  # nothing written: the editor reviews it
    assert fresh.get_latest_revision_as_object().summary == ""


def run_and_wait_status(client, response) -> dict:
    run_queued_tasks()
    url = reverse("wagtail_llm_actions_editor:status", args=[response.json()["job"]])
    return client.get(url).json()


def test_saving_the_answer_records_a_revision_and_the_outcome(
    dish, dish_action, fake_llm, superuser
):
    from tests.testapp.models import Dish

    fake_llm.configure(reply="A smoky bean stew.")
    client = client_for(superuser)
    result = run_and_wait(client, dish, dish_action, form_data(client, dish, description=UNSAVED))
    interaction_id = result["result"]["interaction"]

    data = form_data(
        client,
        dish,
        description=UNSAVED,
        summary=result["result"]["value"],
        llm_action_interactions=str(interaction_id),
    )
    response = client.post(edit_url(dish), data)

    assert response.status_code == 302, response.content
    fresh = Dish.objects.get(pk=dish.pk)
    assert fresh.latest_revision_id != dish.latest_revision_id
    assert fresh.get_latest_revision_as_object().summary == "A smoky bean stew."
    interaction = LLMInteraction.objects.get(pk=interaction_id)
    assert interaction.outcome == "accepted"
    assert interaction.revision_id == fresh.latest_revision_id
    assert interaction.object_id == str(dish.pk) and interaction.page_id is None


def test_an_invalid_form_names_the_fields_to_fix(dish, dish_action, superuser):
    client = client_for(superuser)
    data = form_data(client, dish, name="x" * 300)  # longer than the field allows

    response = client.post(run_url(dish, dish_action), data)

    assert response.status_code == 400
    assert response.json()["code"] == "form_invalid"
    assert "Name" in response.json()["message"]
    assert not LLMJob.objects.exists()


# -- the create view -----------------------------------------------------------------------------


def add_url(model) -> str:
    opts = model._meta
    return reverse(f"wagtailsnippets_{opts.app_label}_{opts.model_name}:add")


def new_run_url(model, action) -> str:
    opts = model._meta
    return reverse(
        "wagtail_llm_actions_editor:snippet_run_new",
        args=[opts.app_label, opts.model_name, action.pk],
    )


def test_the_create_view_runs_on_the_new_snippet_and_saving_links_the_answer(
    dish_action, fake_llm, superuser, django_user_model
):
    from tests.testapp.models import Dish

    fake_llm.configure(reply="A stew for a new dish.")
    client = client_for(superuser)
    html = client.get(add_url(Dish)).content.decode()
    assert 'data-field="summary"' in html
    assert f'data-llm-action-url-param="{new_run_url(Dish, dish_action)}' in html
    data = querydict_from_html(html, form_id="w-editor-form")
    data["name"] = "Garbure"
    data["description"] = UNSAVED

    response = client.post(new_run_url(Dish, dish_action), data)

    assert response.status_code == 202, response.content
    assert not Dish.objects.filter(name="Garbure").exists()  # the run saves nothing
    result = run_and_wait_status(client, response)
    assert result["state"] == "succeeded" and result["result"]["field"] == "summary"
    interaction = LLMInteraction.objects.get()
    assert UNSAVED in interaction.messages[-1]["content"] and interaction.object_id == ""

    data["summary"] = result["result"]["value"]
    data["llm_action_interactions"] = str(interaction.pk)
    assert client.post(add_url(Dish), data).status_code == 302
    dish = Dish.objects.get(name="Garbure")
    interaction.refresh_from_db()
    assert interaction.object_id == str(dish.pk) and interaction.outcome == "accepted"
    assert interaction.revision_id == dish.latest_revision_id

    cook = snippet_editor(django_user_model, Dish, name="cook")  # change, but not add
    refused = client_for(cook).post(new_run_url(Dish, dish_action), data)
    assert refused.status_code == 403 and refused.json()["code"] == "permission"


def test_an_llm_action_panel_in_a_snippets_panels_draws_and_restricts_its_buttons(
    dish, dish_action, make_snippet_action, superuser, rf
):
    from wagtail.admin.panels import ObjectList

    from tests.testapp.models import Dish
    from wagtail_llm_actions.panels import LLMActionPanel

    make_snippet_action(Dish, name="Other summary", slug="other-summary")
    handler = ObjectList(
        [LLMActionPanel("summary", actions=["other-summary"]), LLMActionPanel("notes")]
    ).bind_to_model(Dish)
    request = rf.get("/")
    request.user = superuser
    form = handler.get_form_class()(instance=dish, for_user=superuser)

    html = handler.get_bound_panel(instance=dish, form=form, request=request).render_html()

    assert 'data-llm-action-field-value="summary"' in html
    assert 'data-llm-action-name-param="Other summary"' in html
    assert "Snippet summary" not in html  # the panel offers only the actions it names
    assert 'data-llm-action-field-value="notes"' not in html  # no action writes notes
