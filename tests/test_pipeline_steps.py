"""Pipeline steps with their own prompt, structured steps, and what a pipeline refuses at save."""

from __future__ import annotations

import json

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.urls import reverse
from wagtail.models import Revision

from tests.fakeserver import last_user_message
from tests.queued import finish_queued
from wagtail_llm_actions.exceptions import ConfigurationProblem
from wagtail_llm_actions.models import (
    InteractionStatus,
    LLMInteraction,
    LLMPipeline,
    LLMPipelineStep,
    LLMPrompt,
    RunStatus,
)
from wagtail_llm_actions.pipelines import (
    PipelineStepFailed,
    estimate_pipeline,
    pipelines_for_page,
    rerun_pipeline,
    run_pipeline,
)

pytestmark = pytest.mark.django_db

PIPELINE_ADD = "wagtailsnippets_wagtail_llm_actions_llmpipeline:add"

SEO = {"title": "seo_title", "description": "search_description"}


def page_revisions(page) -> int:
    return Revision.objects.filter(object_id=str(page.pk), base_content_type__model="page").count()


def latest(page):
    return type(page).objects.get(pk=page.pk).get_latest_revision_as_object()


def blog_type():
    from blog.models import BlogPage

    return ContentType.objects.get_for_model(BlogPage)


@pytest.fixture
def outline_action(make_server_action):
    prompt = LLMPrompt.objects.create(name="o", slug="o", template="OUTLINE the page:\n\n{body}")
    return make_server_action(name="Outline", slug="outline", prompt=prompt)


@pytest.fixture
def seo_action(make_server_action):
    prompt = LLMPrompt.objects.create(name="s", slug="s", template="SEO for {title}: {body}")
    return make_server_action(
        name="SEO fields", slug="seo", target_field="", output_fields=dict(SEO), prompt=prompt
    )


def inline(name, template, server_fields, **fields):
    return {"name": name, "prompt_template": template, **server_fields, **fields}


def reply(payload):
    text = last_user_message(payload)
    if text.startswith("SEO"):
        return json.dumps({"title": "Compost title", "description": "Worms indoors."})
    return {"OUTLINE": "outline-answer", "SUMMARY": "summary-answer", "INTRO": "intro-answer"}.get(
        text.split()[0], "other-answer"
    )


# -- steps with their own prompt ------------------------------------------------------------


def test_a_step_with_its_own_prompt_model_and_parameters_runs_and_writes(
    outline_action, server_fields, post, fake_llm, make_pipeline
):
    fake_llm.configure(reply=reply)
    pipeline = make_pipeline(
        {"name": "outline", "action": outline_action, "writes": False},
        inline(
            "summary",
            "SUMMARY of {title} from {steps.outline}",
            server_fields,
            target_field="summary",
            temperature=0.3,
            max_tokens=321,
        ),
    )
    revisions = page_revisions(post)

    run = run_pipeline(pipeline, post)

    assert run.status == RunStatus.SUCCESS
    assert page_revisions(post) == revisions + 1
    assert latest(post).summary == "summary-answer"
    sent = fake_llm.requests[1]["json"]
    assert last_user_message(sent) == f"SUMMARY of {post.title} from outline-answer"
    assert sent["temperature"] == 0.3
    assert sent["max_tokens"] == 321
    step = run.timeline()[1]
    # No action row: the name, run and step say what ran.
    assert step.action_id is None
    assert step.action_name == "Pipe › summary"
    assert step.step_name == "summary"
    assert step.target_field == "summary"
    assert step.revision_id == run.revision_id
    assert step.prompt_revision_id is None


def test_detail_page_shows_a_step_of_its_own_and_reruns_from_it(
    outline_action, server_fields, post, fake_llm, admin_client, make_pipeline
):
    fake_llm.configure(reply=reply)
    pipeline = make_pipeline(
        {"name": "outline", "action": outline_action, "writes": False},
        inline("summary", "SUMMARY from {steps.outline}", server_fields, target_field="summary"),
    )
    run = run_pipeline(pipeline, post)
    step = run.timeline()[1]

    html = admin_client.get(
        reverse("wagtail_llm_actions_report:detail", args=[step.pk])
    ).content.decode()

    assert "Pipe › summary" in html
    assert html.count("data-llm-timeline-entry") == 2
    fake_llm.reset()
    fake_llm.configure(reply=lambda payload: "again")
    response = admin_client.post(
        reverse("wagtail_llm_actions_report:rerun_from_step", args=[step.pk]), {"from_step": "1"}
    )
    assert fake_llm.request_count == 0  # queued: no model call inside the request
    finish_queued(admin_client, response)
    assert fake_llm.request_count == 1
    assert latest(post).summary == "again"


def test_a_step_needs_exactly_one_of_an_action_or_its_own_prompt(
    outline_action, server_fields, make_pipeline
):
    pipeline = make_pipeline(name="P", slug="p", page_types=False)
    both = LLMPipelineStep(
        pipeline=pipeline, name="x", action=outline_action, prompt_template="Hi {title}"
    )
    with pytest.raises(ValidationError, match="not both"):
        both.clean()
    neither = LLMPipelineStep(pipeline=pipeline, name="x")
    with pytest.raises(ValidationError, match="or write its own prompt"):
        neither.clean()


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"model": ""}, "model", "Enter the model"),
        ({"model": "not a model"}, "model", ""),
        ({"api_base": "http://10.0.0.5/v1"}, "api_base", ""),
        ({"temperature": 3.0}, "temperature", ""),
        ({"target_field": ""}, "target_field", "turn “writes” off"),
        ({"prompt_template": "Hi {title"}, "prompt_template", "line 1"),
    ],
)
def test_a_step_with_its_own_prompt_is_validated_like_an_action(
    server_fields, fields, field, fragment, make_pipeline
):
    pipeline = make_pipeline(name="P", slug="p", page_types=False)
    values = inline("x", "Hi {title}", server_fields, target_field="summary")
    values.update(fields)
    step = LLMPipelineStep(pipeline=pipeline, **values)
    with pytest.raises(ValidationError) as caught:
        step.full_clean(exclude=["pipeline", "sort_order"])
    assert field in caught.value.message_dict
    assert fragment in " ".join(caught.value.message_dict[field])


def test_a_step_that_only_feeds_later_steps_needs_no_target(server_fields, make_pipeline):
    pipeline = make_pipeline(name="P", slug="p", page_types=False)
    step = LLMPipelineStep(
        pipeline=pipeline, writes=False, **inline("x", "Hi {title}", server_fields)
    )
    step.full_clean(exclude=["pipeline", "sort_order"])


def test_a_bad_variable_or_field_of_a_step_is_refused_before_any_call(
    server_fields, post, fake_llm, make_pipeline
):
    pipeline = make_pipeline(inline("s", "About {nope}", server_fields, target_field="summary"))
    with pytest.raises(ConfigurationProblem, match="nope"):
        run_pipeline(pipeline, post)
    pipeline = make_pipeline(inline("s", "About {title}", server_fields, target_field="missing"))
    with pytest.raises(ConfigurationProblem, match="missing"):
        run_pipeline(pipeline, post)
    assert fake_llm.request_count == 0
    assert not LLMInteraction.objects.exists()


def test_a_pipeline_with_own_prompts_is_offered_only_on_its_page_types(
    server_fields, post, make_pipeline
):
    with_types = make_pipeline(inline("s", "About {title}", server_fields, target_field="summary"))
    assert pipelines_for_page(post) == [with_types]
    with_types.page_types.clear()
    assert pipelines_for_page(post) == []  # own prompts need page types


def test_the_estimate_sums_every_step_including_own_prompts(
    outline_action, server_fields, post, make_pipeline
):
    pipeline = make_pipeline(
        {"name": "outline", "action": outline_action, "writes": False},
        inline("summary", "SUMMARY from {steps.outline}", server_fields, target_field="summary"),
        inline(
            "intro",
            "INTRO from {steps.summary}",
            server_fields,
            target_field="intro",
            max_tokens=50,
        ),
    )
    from wagtail_llm_actions.estimates import DEFAULT_COMPLETION_TOKENS

    estimate = estimate_pipeline(pipeline, post)

    assert estimate.calls == 3
    outline_limit = outline_action.max_tokens or DEFAULT_COMPLETION_TOKENS
    assert estimate.completion_tokens == outline_limit + DEFAULT_COMPLETION_TOKENS + 50
    # Each later step reads the earlier answer (assumed as long as its limit).
    assert estimate.prompt_tokens > outline_limit + DEFAULT_COMPLETION_TOKENS


# -- structured steps -----------------------------------------------------------------------


def test_a_structured_step_writes_every_field_into_the_one_draft_and_feeds_json(
    seo_action, server_fields, post, fake_llm, make_pipeline
):
    fake_llm.configure(reply=reply)
    pipeline = make_pipeline(
        {"name": "seo", "action": seo_action},
        inline("intro", "INTRO from {steps.seo}", server_fields, target_field="intro"),
    )
    revisions = page_revisions(post)

    run = run_pipeline(pipeline, post)

    assert page_revisions(post) == revisions + 1
    draft = latest(post)
    assert (draft.seo_title, draft.search_description) == ("Compost title", "Worms indoors.")
    assert draft.intro == "intro-answer"
    fed = last_user_message(fake_llm.requests[1]["json"])
    assert fed == 'INTRO from {"title": "Compost title", "description": "Worms indoors."}'
    seo = run.timeline()[0]
    assert list(seo.output_values) == ["seo_title", "search_description"]
    assert seo.status == InteractionStatus.SUCCESS
    assert seo.revision_id == run.revision_id


def test_a_structured_step_that_only_feeds_writes_nothing(
    seo_action, server_fields, post, fake_llm, make_pipeline
):
    fake_llm.configure(reply=reply)
    before = latest(post)
    pipeline = make_pipeline(
        {"name": "seo", "action": seo_action, "writes": False},
        inline("intro", "INTRO from {steps.seo}", server_fields, target_field="intro"),
    )

    run_pipeline(pipeline, post)

    draft = latest(post)
    assert (draft.seo_title, draft.search_description) == (
        before.seo_title,
        before.search_description,
    )
    assert draft.intro == "intro-answer"


def test_rerun_after_a_structured_step_reuses_its_fields(
    seo_action, server_fields, post, fake_llm, make_pipeline
):
    fake_llm.configure(reply=reply)
    pipeline = make_pipeline(
        {"name": "seo", "action": seo_action},
        inline("intro", "INTRO from {steps.seo}", server_fields, target_field="intro"),
    )
    first = run_pipeline(pipeline, post)
    fake_llm.reset()
    fake_llm.configure(reply=lambda payload: "new-intro")

    rerun_pipeline(first, from_step=1)

    assert fake_llm.request_count == 1
    assert "Compost title" in last_user_message(fake_llm.requests[0]["json"])
    draft = latest(post)
    assert (draft.seo_title, draft.intro) == ("Compost title", "new-intro")


def test_a_failing_structured_step_writes_nothing(
    seo_action, server_fields, post, fake_llm, make_pipeline
):
    fake_llm.configure(reply=lambda payload: "not json at all")
    pipeline = make_pipeline(
        {"name": "seo", "action": seo_action},
        inline("intro", "INTRO", server_fields, target_field="intro"),
    )
    latest_id = post.latest_revision_id
    with pytest.raises(PipelineStepFailed) as caught:
        run_pipeline(pipeline, post)
    assert caught.value.step == "seo"
    assert type(post).objects.get(pk=post.pk).latest_revision_id == latest_id
    assert fake_llm.request_count == 2  # the call and its one repair; intro never ran


# -- map-reduce steps -----------------------------------------------------------------------


def test_a_map_reduce_step_runs_its_parts_inside_the_pipeline_run(
    make_action, make_post, server_fields, fake_llm, make_pipeline
):
    from tests.conftest import make_body

    long_post = make_post(body=make_body(paragraph="compost " * 3000))
    prompt = LLMPrompt.objects.create(name="m", slug="m", template="SUMMARY {body}")
    summarise = make_action(
        name="Long summary",
        slug="long",
        prompt=prompt,
        long_content="map_reduce",
        context_window=2000,
        max_tokens=100,
        **server_fields,
    )
    fake_llm.configure(reply=lambda payload: "part-or-combined")
    pipeline = make_pipeline(
        {"name": "summary", "action": summarise},
        inline("intro", "INTRO from {steps.summary}", server_fields, target_field="intro"),
    )

    run = run_pipeline(pipeline, long_post)

    timeline = run.timeline()
    parts = [i for i in timeline if i.chunk_index is not None]
    assert len(parts) >= 2
    assert {i.run_id for i in timeline} == {run.pk}
    assert latest(long_post).summary == "part-or-combined"
    assert fake_llm.request_count == len(parts) + 2  # parts, combining call, intro


# -- the admin form -------------------------------------------------------------------------


def pipeline_data(steps, page_types=()):
    data = {
        "name": "Inline pipeline",
        "slug": "inline-pipeline",
        "description": "",
        "enabled": "on",
        "page_types": [str(ct.pk) for ct in page_types],
        "steps-TOTAL_FORMS": str(len(steps)),
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "1",
        "steps-MAX_NUM_FORMS": "1000",
    }
    for n, fields in enumerate(steps):
        data.update(
            {
                f"steps-{n}-ORDER": str(n + 1),
                f"steps-{n}-id": "",
                f"steps-{n}-DELETE": "",
                f"steps-{n}-source_field": "body",
                f"steps-{n}-output_mode": "text",
            }
        )
        for key, value in fields.items():
            if key == "writes":
                if value:
                    data[f"steps-{n}-writes"] = "on"
                continue
            data[f"steps-{n}-{key}"] = str(getattr(value, "pk", value))
    return data


def own_step(name, template, target="summary", **extra):
    return {
        "name": name,
        "prompt_template": template,
        "target_field": target,
        "model": "openai/gpt-4o-mini",
        "temperature": "0.5",
        "writes": True,
        **extra,
    }


def form_errors(response) -> str:
    context = response.context
    form = context["form"]
    messages = [str(form.errors)]
    for child in form.formsets["steps"].forms:
        messages.append(str(child.errors))
    return " ".join(messages)


def test_admin_saves_a_pipeline_with_a_step_of_its_own(admin_client, outline_action):
    data = pipeline_data(
        [
            {"name": "outline", "action": outline_action, "writes": False},
            own_step("summary", "SUMMARY from {steps.outline} about {title}"),
        ],
        page_types=[blog_type()],
    )
    response = admin_client.post(reverse(PIPELINE_ADD), data)
    assert response.status_code == 302, form_errors(response)
    pipeline = LLMPipeline.objects.get(slug="inline-pipeline")
    steps = pipeline.ordered_steps()
    assert steps[0].action_id == outline_action.pk
    assert (steps[1].action_id, steps[1].model, steps[1].temperature) == (
        None,
        "openai/gpt-4o-mini",
        0.5,
    )
    assert list(pipeline.page_types.all()) == [blog_type()]


@pytest.mark.parametrize(
    ("steps", "fragment"),
    [
        (
            [own_step("a", "A from {steps.b}"), own_step("b", "B", target="intro")],
            "later step",
        ),
        ([own_step("a", "A from {steps.nope}")], "no step is called"),
        ([own_step("a", "About {unknown_field}")], "unknown_field"),
        ([own_step("a", "About {title}", target="no_such_field")], "no_such_field"),
        (
            [own_step("a", "A {title}"), own_step("b", "B {title}")],
            "already writes “summary”",
        ),
    ],
)
def test_admin_refuses_bad_steps_with_a_clear_message(admin_client, steps, fragment):
    response = admin_client.post(
        reverse(PIPELINE_ADD), pipeline_data(steps, page_types=[blog_type()])
    )
    assert response.status_code == 200
    assert fragment in form_errors(response)
    assert not LLMPipeline.objects.exists()


def test_admin_wants_page_types_for_steps_of_their_own(admin_client):
    response = admin_client.post(reverse(PIPELINE_ADD), pipeline_data([own_step("a", "A")]))
    assert response.status_code == 200
    assert "page types" in str(response.context["form"].errors["page_types"])


def test_step_model_needs_the_provider_permission(client, outline_action, django_user_model):
    from django.contrib.auth.models import Group, Permission

    user = django_user_model.objects.create_user("configurer", "c@example.com", "pw")
    group = Group.objects.create(name="Pipeline configurers")
    group.permissions.add(
        Permission.objects.get(codename="access_admin"),
        *Permission.objects.filter(
            content_type__app_label="wagtail_llm_actions",
            codename__in=["add_llmpipeline", "change_llmpipeline", "view_llmpipeline"],
        ),
    )
    user.groups.add(group)
    client.force_login(user)
    html = client.get(reverse(PIPELINE_ADD)).content.decode()
    assert 'name="steps-__prefix__-model"' in html
    data = pipeline_data(
        [
            own_step(
                "summary",
                "SUMMARY of {title}",
                model="openai/gpt-4o",
                api_base="http://127.0.0.1:9/v1",
            )
        ],
        page_types=[blog_type()],
    )

    response = client.post(reverse(PIPELINE_ADD), data)

    assert response.status_code == 302, form_errors(response)
    step = LLMPipeline.objects.get(slug="inline-pipeline").ordered_steps()[0]
    from wagtail_llm_actions.conf import get_setting

    assert step.model == get_setting("DEFAULT_MODEL")  # the posted model was ignored
    assert step.api_base == ""
    assert step.temperature == 0.5  # parameters stay with the step's other settings


# -- jobs ---------------------------------------------------------------------------------------


def test_a_job_runs_a_pipeline_with_steps_of_their_own(
    outline_action, server_fields, make_post, fake_llm, superuser, make_pipeline
):
    from wagtail_llm_actions import jobs
    from wagtail_llm_actions.models import ItemStatus

    fake_llm.configure(reply=reply)
    posts = [make_post() for _ in range(2)]
    pipeline = make_pipeline(
        inline("summary", "SUMMARY of {title}", server_fields, target_field="summary"),
        {"name": "outline", "action": outline_action, "writes": False},
    )

    job = jobs.create_pipeline_job(pipeline, superuser, [p.pk for p in posts])
    jobs.run_job(job.pk, threads=1)

    assert [i.status for i in job.items.order_by("pk")] == [ItemStatus.SUCCEEDED] * 2
    assert [latest(p).summary for p in posts] == ["summary-answer"] * 2
