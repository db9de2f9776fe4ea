"""Prompts and actions in the admin: listings, and field-specific validation errors."""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse

from wagtail_llm_actions.models import LLMAction, LLMPrompt

pytestmark = pytest.mark.django_db

ACTION_ADD = "wagtailsnippets_wagtail_llm_actions_llmaction:add"
PROMPT_ADD = "wagtailsnippets_wagtail_llm_actions_llmprompt:add"


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def action_data(prompt, **overrides):
    from blog.models import BlogPage

    data = {
        "name": "Generate summary",
        "slug": "generate-summary",
        "description": "",
        "page_types": [ContentType.objects.get_for_model(BlogPage).pk],
        "source_field": "body",
        "target_field": "summary",
        "output_mode": "text",
        "enabled": "on",
        "prompt": prompt.pk,
        "system_message": "",
        "context_message": "",
        "model": "openai/gpt-4o-mini",
        "api_base": "",
        "api_key_name": "",
        "temperature": "0.3",
        "max_tokens": "200",
        "timeout": "30",
        "fallback_models": "",
        "extra_params": "{}",
    }
    data.update(overrides)
    return data


def form_errors(response):
    form = response.context["form"]
    return {k: " ".join(v) for k, v in form.errors.items()}


def test_valid_action_is_saved(admin_client, prompt):
    response = admin_client.post(reverse(ACTION_ADD), action_data(prompt))
    assert response.status_code == 302, form_errors(response)
    action = LLMAction.objects.get(slug="generate-summary")
    assert action.page_types.count() == 1


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"source_field": "bodyy"}, "source_field", "bodyy"),
        ({"source_field": "body.paragrah"}, "source_field", "paragraph"),
        ({"target_field": "date"}, "target_field", "date"),
        ({"target_field": "body"}, "target_field", "body"),
        ({"target_field": "tags"}, "target_field", "tags"),
        ({"model": ""}, "model", ""),
        ({"model": "gpt 4"}, "model", ""),
        ({"model": "nosuchprovider/foo"}, "model", "nosuchprovider"),
        ({"temperature": "5"}, "temperature", "2"),
        ({"max_tokens": "0"}, "max_tokens", "1"),
        ({"timeout": "0"}, "timeout", "1"),
        ({"api_key_name": "sk-abc def"}, "api_key_name", ""),
        ({"extra_params": '{"api_key": "x"}'}, "extra_params", "api_key"),
    ],
)
def test_bad_action_inputs_get_field_errors(admin_client, prompt, overrides, field, fragment):
    response = admin_client.post(reverse(ACTION_ADD), action_data(prompt, **overrides))
    assert response.status_code == 200
    errors = form_errors(response)
    assert field in errors, errors
    assert fragment in errors[field]
    assert not LLMAction.objects.exists()


def test_prompt_variable_that_does_not_exist(admin_client):
    bad = LLMPrompt.objects.create(name="Bad", slug="bad", template="Use {nonexistent} here")
    response = admin_client.post(reverse(ACTION_ADD), action_data(bad))
    errors = form_errors(response)
    assert "nonexistent" in errors["prompt"]


@pytest.mark.parametrize(
    "template",
    ["{body.__class__}", "{x[0]}", "{x!r}", "{x:>10}", "{}", "{0}", "unbalanced {", "}"],
)
def test_unsafe_prompt_templates_are_refused(admin_client, template):
    response = admin_client.post(
        reverse(PROMPT_ADD),
        {"name": "P", "slug": "p", "template": template, "description": ""},
    )
    assert response.status_code == 200
    assert "template" in form_errors(response)
    assert not LLMPrompt.objects.exists()


def test_literal_braces_are_allowed_and_history_kept(admin_client):
    response = admin_client.post(
        reverse(PROMPT_ADD),
        {
            "name": "P",
            "slug": "p",
            "template": 'JSON like {{"a": 1}} for {title}',
            "description": "",
        },
    )
    assert response.status_code == 302
    prompt = LLMPrompt.objects.get()
    assert prompt.latest_revision is not None


def test_listings_and_menu(admin_client, action):
    listing = admin_client.get(reverse("wagtailsnippets_wagtail_llm_actions_llmaction:list"))
    assert listing.status_code == 200
    assert b"Generate summary" in listing.content
    home = admin_client.get(reverse("wagtailadmin_home"))
    assert b"AI actions" in home.content  # the menu group: FEATURE_NAME, "AI" by default


def test_editor_without_model_permissions_cannot_manage(client, editor, action):
    client.force_login(editor)
    response = client.get(reverse("wagtailsnippets_wagtail_llm_actions_llmaction:list"))
    assert response.status_code in (302, 403)


# -- LLMAction.clean() outside the admin form --------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("source_field", "bodyy", "“bodyy” is not a field of blog page"),
        ("source_field", "body.paragrah", "“body.paragrah” is not a block of body"),
        ("target_field", "sumary", "“sumary” is not a field of blog page"),
        ("target_field", "body", "“body” is a StreamField"),
    ],
)
def test_saved_action_with_page_types_refuses_unknown_paths(action, field, value, message):
    from django.core.exceptions import ValidationError

    setattr(action, field, value)

    with pytest.raises(ValidationError) as error:
        action.full_clean()

    assert list(error.value.message_dict) == [field]
    assert len(error.value.message_dict[field]) == 1
    assert message in error.value.message_dict[field][0]


def test_saved_action_refuses_a_prompt_variable_its_page_types_lack(action):
    from django.core.exceptions import ValidationError

    action.prompt = LLMPrompt.objects.create(name="Bad", slug="bad", template="{author.nme}")

    with pytest.raises(ValidationError) as error:
        action.full_clean()

    assert "The prompt uses {author.nme}" in error.value.message_dict["prompt"][0]


def test_clean_checks_paths_against_every_page_type(action):
    from blog.models import SimplePage
    from django.core.exceptions import ValidationError

    action.full_clean()  # body → summary fits blog pages
    action.page_types.add(ContentType.objects.get_for_model(SimplePage))

    with pytest.raises(ValidationError) as error:
        LLMAction.objects.get(pk=action.pk).full_clean()

    assert "“body” is not a field of simple page" in error.value.message_dict["source_field"][0]


def test_admin_edit_checks_the_chosen_page_types_once(admin_client, action, prompt):
    from blog.models import SimplePage

    url = reverse("wagtailsnippets_wagtail_llm_actions_llmaction:edit", args=[action.pk])
    simple = ContentType.objects.get_for_model(SimplePage).pk
    data = action_data(prompt, slug=action.slug, page_types=[simple], source_field="text")

    response = admin_client.post(url, data)

    errors = response.context["form"].errors
    # Checked against the chosen type (simple page has "text", lacks "summary"), not the
    # saved one (blog page has no "text"), and each message once.
    assert "source_field" not in errors
    assert len(errors["target_field"]) == 1
    assert "“summary” is not a field of simple page" in errors["target_field"][0]


PIPELINE_ADD = "wagtailsnippets_wagtail_llm_actions_llmpipeline:add"


def pipeline_data(steps):
    data = {
        "name": "Outline then summary",
        "slug": "outline-summary",
        "description": "",
        "enabled": "on",
        "steps-TOTAL_FORMS": str(len(steps)),
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "1",
        "steps-MAX_NUM_FORMS": "1000",
    }
    for n, (name, action, writes) in enumerate(steps):
        data[f"steps-{n}-name"] = name
        data[f"steps-{n}-action"] = str(action.pk)
        data[f"steps-{n}-ORDER"] = str(n + 1)
        data[f"steps-{n}-id"] = ""
        data[f"steps-{n}-DELETE"] = ""
        if writes:
            data[f"steps-{n}-writes"] = "on"
    return data


@pytest.fixture
def outline_and_summary(make_action):
    outline_prompt = LLMPrompt.objects.create(name="Outline", slug="outline", template="{body}")
    summary_prompt = LLMPrompt.objects.create(
        name="From outline", slug="from-outline", template="Summarise {steps.outline}"
    )
    outline = make_action(name="Outline", slug="outline", prompt=outline_prompt)
    summary = make_action(name="Summary", slug="summary", prompt=summary_prompt)
    return outline, summary


def test_pipeline_with_ordered_steps_is_saved(admin_client, outline_and_summary):
    from wagtail_llm_actions.models import LLMPipeline

    outline, summary = outline_and_summary
    data = pipeline_data([("outline", outline, False), ("summary", summary, True)])
    response = admin_client.post(reverse(PIPELINE_ADD), data)
    assert response.status_code == 302, form_errors(response)
    steps = LLMPipeline.objects.get(slug="outline-summary").ordered_steps()
    assert [(s.name, s.writes) for s in steps] == [("outline", False), ("summary", True)]


@pytest.mark.parametrize(
    ("order", "fragment"),
    [
        ("later", "later step"),
        ("missing", "no step is called"),
    ],
)
def test_pipeline_step_using_a_later_or_missing_step_is_refused(
    admin_client, outline_and_summary, order, fragment
):
    from wagtail_llm_actions.models import LLMPipeline

    outline, summary = outline_and_summary
    if order == "later":
        steps = [("summary", summary, True), ("outline", outline, False)]
    else:
        steps = [("summary", summary, True)]
    response = admin_client.post(reverse(PIPELINE_ADD), pipeline_data(steps))
    assert response.status_code == 200
    assert fragment in " ".join(response.context["form"].non_field_errors())
    assert not LLMPipeline.objects.exists()


def test_action_form_without_long_content_keeps_truncating(admin_client, prompt):
    response = admin_client.post(reverse(ACTION_ADD), action_data(prompt))
    assert response.status_code == 302, form_errors(response)
    assert LLMAction.objects.get(slug="generate-summary").long_content == "truncate"


def test_views_built_on_first_request_show_their_forms(admin_client, action, prompt):
    """Copy and revert (built on their first request, not when URLs load) show the object's
    values in the app's form."""
    response = admin_client.get(
        reverse("wagtailsnippets_wagtail_llm_actions_llmaction:copy", args=[action.pk])
    )
    assert response.status_code == 200
    form = response.context["form"]
    assert type(form).__mro__[1].__name__ == "LLMActionForm"
    assert form.initial["model"] == action.model

    revision = prompt.latest_revision
    prompt.template = "Changed since"
    prompt.save_revision()
    response = admin_client.get(
        reverse(
            "wagtailsnippets_wagtail_llm_actions_llmprompt:revisions_revert",
            args=[prompt.pk, revision.pk],
        )
    )
    assert response.status_code == 200
    assert response.context["form"].initial["template"] == "Summarize “{title}”:\n\n{body}"
