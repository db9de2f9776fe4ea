"""Alt text for the image blocks inside a page's StreamField (issue 24 §1, "alt text in
context"): one vision call per image block without alt text, with the text around it; the
answers go into a new draft, changing those blocks' ``alt_text`` and nothing else."""

from __future__ import annotations

import json

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from wagtail.models import Page

from tests.recipes import make_recipe, media
from tests.testapp.models import RecipePage
from wagtail_llm_actions.exceptions import SourceEmpty
from wagtail_llm_actions.models import LLMAction, LLMPrompt
from wagtail_llm_actions.service import LLMService

ALT_PROMPT = (
    "Write alt text for the image {filename} on the page “{page_title}”.\n"
    "Text around it:\n{surrounding_text}"
)


@pytest.fixture(autouse=True)
def fresh_renditions():
    from django.core.cache import caches

    caches["default"].clear()


@pytest.fixture
def recipe(db):
    m = media()
    page = make_recipe(Page.get_first_root_node(), m, "Dumplings", "dumplings")
    return RecipePage.objects.get(pk=page.pk), m


@pytest.fixture
def make_alt_action(db, server_fields):
    prompt = LLMPrompt.objects.create(name="Alt in context", slug="alt-ctx", template=ALT_PROMPT)

    def make(**fields) -> LLMAction:
        fields = {
            "name": "Alt text of images",
            "slug": "alt-blocks",
            "source_kind": "image_blocks",
            "source_field": "body",
            "target_field": "body",
            "prompt": prompt,
            "timeout": 5,
            **server_fields,
            **fields,
        }
        fields["model"] = fields.get("model") or "openai/gpt-4o-mini"
        action = LLMAction.objects.create(**fields)
        action.page_types.set([ContentType.objects.get_for_model(RecipePage)])
        return action

    return make


def body_items(revision) -> list[dict]:
    return json.loads(revision.content["body"])


def image_values(items: list[dict]) -> list[dict]:
    return [item["value"] for item in items if item["type"] == "image"]


def test_the_image_without_alt_text_gets_one_from_its_picture_and_the_text_around_it(
    recipe, make_alt_action, fake_llm
):
    page, m = recipe
    base = page.latest_revision
    fake_llm.configure(reply="Steamed dumplings in a bamboo basket.")
    action = make_alt_action()

    interaction = LLMService().run(action, page)

    posts = [r for r in fake_llm.requests if r["method"] == "POST"]
    assert len(posts) == 1  # the one image block without alt text; decorative is skipped
    assert posts[0]["images"] and posts[0]["images"][0]["media_type"] == "image/jpeg"
    prompt_text = json.dumps(posts[0]["json"]["messages"], ensure_ascii=False)
    assert "Rest the dough" in prompt_text  # the paragraph before the image
    assert "Dumplings" in prompt_text  # the page's title
    draft = interaction.revision
    assert draft.pk != base.pk
    images = image_values(body_items(draft))
    assert images[0]["alt_text"] == "Steamed dumplings in a bamboo basket."
    assert images[1]["alt_text"] == "Dough resting under a cloth"  # its own alt text kept
    assert images[2] == {"image": m["pleating"].pk, "decorative": True, "alt_text": ""}
    # The live page is not changed, and nothing else in the body is.
    live = RecipePage.objects.get(pk=page.pk)
    assert image_values(json.loads(json.dumps(live.body.get_prep_value())))[0]["alt_text"] == ""
    before, after = body_items(base), body_items(draft)
    before[3]["value"]["alt_text"] = "Steamed dumplings in a bamboo basket."
    assert after == before


def test_a_second_run_has_nothing_to_do_and_calls_nothing(recipe, make_alt_action, fake_llm):
    page, _m = recipe
    fake_llm.configure(reply="Dumplings in a basket.")
    action = make_alt_action()
    LLMService().run(action, page)
    calls = len(fake_llm.requests)
    with pytest.raises(SourceEmpty, match="No image in “body” needs alt text"):
        LLMService().run(action, Page.objects.get(pk=page.pk))
    assert len(fake_llm.requests) == calls


def test_a_save_landing_while_the_model_answers_is_kept(recipe, make_alt_action, fake_llm):
    """The answer is written into the newest revision: the editor's save is kept, and only
    the image block's alt text is added to it."""
    page, _m = recipe
    fake_llm.configure(reply="A basket of dumplings.")
    action = make_alt_action()

    def editor_saves(_interaction) -> None:
        edited = RecipePage.objects.get(pk=page.pk).get_latest_revision_as_object()
        edited.intro = "Edited while the model answered."
        edited.save_revision()

    interaction = LLMService().run(action, page, on_answer=editor_saves)

    draft = interaction.revision
    assert interaction.rebased
    assert draft.content["intro"] == "Edited while the model answered."
    assert image_values(body_items(draft))[0]["alt_text"] == "A basket of dumplings."
    assert json.loads(interaction.previous_value) == {"image_alt_text": {draft_key(draft): ""}}


def draft_key(revision) -> str:
    return next(item["id"] for item in body_items(revision) if item["type"] == "image")


def test_an_image_block_nested_in_a_list_gets_its_alt_text(db, make_alt_action, fake_llm):
    from wagtail.blocks import ListBlock, StreamBlock
    from wagtail.images.blocks import ImageBlock

    from wagtail_llm_actions.extraction.image_blocks import find_spots, patch

    block = StreamBlock([("gallery", ListBlock(ImageBlock()))])
    data = [
        {
            "type": "gallery",
            "id": "g1",
            "value": [
                {
                    "type": "item",
                    "id": "i1",
                    "value": {"image": 5, "alt_text": "", "decorative": False},
                },
                {
                    "type": "item",
                    "id": "i2",
                    "value": {"image": 6, "alt_text": "", "decorative": True},
                },
            ],
        }
    ]
    spots = find_spots(block, data)
    assert [(s.key, s.needs_alt_text) for s in spots] == [("g1/i1", True), ("g1/i2", False)]
    assert patch(block, data, {"g1/i1": "A heron", "g1/i2": "Not written"}) == {"g1/i1": ""}
    assert data[0]["value"][0]["value"]["alt_text"] == "A heron"
    assert data[0]["value"][1]["value"]["alt_text"] == ""  # decorative stays decorative


def test_the_offline_vision_model_writes_alt_text_with_no_key(recipe, make_alt_action):
    page, _m = recipe
    action = make_alt_action(model="local/vision", api_base="", api_key_name="")
    interaction = LLMService().run(action, page)
    alt = image_values(body_items(interaction.revision))[0]["alt_text"]
    assert alt.startswith("A ") and "image" in alt


def test_the_target_must_be_a_streamfield_with_image_blocks(make_alt_action):
    action = make_alt_action()
    action.target_field = "summary"
    with pytest.raises(ValidationError) as error:
        action.full_clean()
    assert "not a StreamField with image blocks" in str(error.value.message_dict["target_field"])


def test_the_prompt_may_use_the_images_variables_not_page_paths(make_alt_action):
    action = make_alt_action()
    action.full_clean()  # {filename}, {page_title}, {surrounding_text} are known
    action.prompt.template = "Alt text from {intro}"
    with pytest.raises(ValidationError) as error:
        action.full_clean()
    assert "{intro}" in str(error.value.message_dict["prompt"])


def test_the_editor_does_not_offer_it_as_a_field_button(recipe, make_alt_action):
    from wagtail_llm_actions.editor.pages import actions_for_page

    page, _m = recipe
    make_alt_action()
    assert actions_for_page(page) == []


def test_a_failed_call_writes_nothing(recipe, make_alt_action, fake_llm):
    from wagtail_llm_actions.exceptions import LLMActionError

    page, _m = recipe
    base = page.latest_revision_id
    fake_llm.configure(status=500)
    with pytest.raises(LLMActionError):
        LLMService().run(make_alt_action(), page)
    assert Page.objects.get(pk=page.pk).latest_revision_id == base


def test_a_bulk_job_writes_each_pages_image_alt_text_once_and_estimates_a_call_an_image(
    db, make_alt_action, fake_llm, superuser
):
    from wagtail_llm_actions import jobs

    m = media()
    root = Page.get_first_root_node()
    pages = [make_recipe(root, m, f"Dumplings {i}", f"dumplings-{i}") for i in range(3)]
    done = make_recipe(root, m, "Already described", "described")
    without_images = done.get_latest_revision_as_object()
    without_images.body = [
        (b.block_type, b.value) for b in without_images.body if b.block_type != "image"
    ]
    without_images.save_revision()
    fake_llm.configure(reply="Dumplings steaming in a basket.")
    action = make_alt_action()
    ids = [p.pk for p in [*pages, done]]

    plan = jobs.plan_job(action, superuser, ids)
    assert plan.estimate.calls == 3  # a call for each page's one image block to describe
    job = jobs.create_job(action, superuser, ids)
    assert jobs.run_job(job.pk) == "completed"

    statuses = dict(job.items.values_list("page_id", "status"))
    assert [statuses[p.pk] for p in pages] == ["succeeded"] * 3
    assert statuses[done.pk] == "skipped"  # no image block to describe: a true reason
    assert len([r for r in fake_llm.requests if r["method"] == "POST"]) == 3
    for page in pages:
        draft = Page.objects.get(pk=page.pk).specific.get_latest_revision_as_object()
        alts = [b.value.contextual_alt_text for b in draft.body if b.block_type == "image"]
        assert alts[0] == "Dumplings steaming in a basket."
