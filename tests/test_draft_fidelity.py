"""Drafts change only what the action wrote.

The page is tests/testapp's recipe, whose body uses every block Wagtail ships, stored as a site's
older content is: StructBlocks saved before a child was added to them, a TableBlock from before
``table_header_choice``, a TypedTableBlock without ``caption``, ListBlock items in the old
format. Reading such a body (as every run does)
and saving it again makes Wagtail fill in what the stored data lacks, and its revision
comparison then lists the body as changed. Every write path must store the new revision's
content equal to the base revision's, byte for byte after JSON normalisation, outside the
fields the action wrote and Wagtail's own bookkeeping keys.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import OperationalError
from wagtail.admin.compare import StreamFieldComparison
from wagtail.fields import StreamField
from wagtail.models import Page, Revision

from tests.recipes import make_recipe, media, recipe_body
from tests.testapp.models import RecipePage
from wagtail_llm_actions import review
from wagtail_llm_actions.exceptions import WriteFailed
from wagtail_llm_actions.models import LLMAction, LLMInteraction
from wagtail_llm_actions.pipelines import run_pipeline
from wagtail_llm_actions.service import LLMService, working_copy
from wagtail_llm_actions.signals import answer_stored

pytestmark = pytest.mark.django_db

#: Keys Wagtail sets from the page row on every save_revision(), whatever the content: the
#: revision chain, draft title and publishing state (a plain save_revision() changes them too).
BOOKKEEPING = {
    "latest_revision",
    "latest_revision_created_at",
    "draft_title",
    "has_unpublished_changes",
    "live",
    "live_revision",
    "first_published_at",
    "last_published_at",
}

#: What a site's older content lacks, by block type: children added to the block since.
ADDED_LATER = {
    "heading": ["size"],
    "quote": ["theme", "attribute_name"],
    "step": ["show_timer", "minutes"],
    "figure": ["attribution"],
    "facts": ["cuisine"],
    "table": ["table_header_choice"],  # TableBlock before Wagtail 6.0
    "nutrition": ["caption"],  # TypedTableBlock before its caption
}


def as_older_content(body_json: str) -> str:
    """``body_json`` (a stored StreamField) as a site's content saved years ago stores it."""
    body = json.loads(body_json)
    for item in body:
        for name in ADDED_LATER.get(item["type"], []):
            item["value"].pop(name, None)
        if item["type"] == "ingredients":  # ListBlock items before Wagtail 2.16: plain values
            item["value"] = [child["value"] for child in item["value"]]
    return json.dumps(body)


def normalised(revision: Revision, written: set[str]) -> dict[str, str]:
    """The revision's content without ``written`` and bookkeeping keys, each value as
    canonical JSON (StreamFields, stored as JSON strings inside it, parsed first)."""
    content = {k: v for k, v in revision.content.items() if k not in written | BOOKKEEPING}
    for field in RecipePage._meta.concrete_fields:
        if isinstance(field, StreamField) and field.name in content:
            content[field.name] = json.loads(content[field.name])
    return {k: json.dumps(v, sort_keys=True, ensure_ascii=False) for k, v in content.items()}


def differences(base: Revision, draft: Revision, written: set[str]) -> list[str]:
    """Keys (and body blocks) of ``draft``'s content that differ from ``base``'s."""
    old, new = normalised(base, written), normalised(draft, written)
    found = [key for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)]
    if "body" in found:
        pairs = zip(json.loads(old["body"]), json.loads(new["body"]), strict=False)
        found += [f"body: {a['type']} {a['value']} -> {b['value']}" for a, b in pairs if a != b]
    return found


def assert_only_written_changed(base: Revision, draft: Revision, written: set[str]) -> None:
    base.refresh_from_db()
    draft.refresh_from_db()
    assert draft.pk != base.pk
    assert differences(base, draft, written) == []
    # What an editor sees: Wagtail's revision comparison does not list the body.
    field = RecipePage._meta.get_field("body")
    assert not StreamFieldComparison(field, base.as_object(), draft.as_object()).has_changed()


def latest_revision(page) -> Revision:
    return Page.objects.get(pk=page.pk).latest_revision


@pytest.fixture
def recipe(db):
    """A published recipe whose latest revision, a draft, holds older content."""
    m = media()
    root = Page.get_first_root_node()
    chili = make_recipe(root, m, "Chili oil", "chili-oil")
    page = make_recipe(root, m, "Dumplings", "dumplings", body=recipe_body(m, related=chili))
    draft = page.get_latest_revision_as_object()
    draft.intro = "Dumplings, fold by fold."
    revision = draft.save_revision()
    revision.content["body"] = as_older_content(revision.content["body"])
    revision.save(update_fields=["content"])
    return RecipePage.objects.get(pk=page.pk)


@pytest.fixture
def live_recipe(db):
    """A published recipe without a draft: the live row and its revision hold older content."""
    m = media()
    page = make_recipe(Page.get_first_root_node(), m, "Dumplings", "dumplings")
    revision = page.latest_revision
    revision.content["body"] = as_older_content(revision.content["body"])
    revision.save(update_fields=["content"])
    RecipePage.objects.filter(pk=page.pk).update(body=json.loads(revision.content["body"]))
    page = RecipePage.objects.get(pk=page.pk)
    assert not page.has_unpublished_changes
    return page


@pytest.fixture
def make_recipe_action(prompt):
    def make(**fields) -> LLMAction:
        fields.setdefault("name", "Summarise the recipe")
        fields.setdefault("slug", "summarise-recipe")
        fields.setdefault("source_field", "body")
        fields.setdefault("target_field", "summary")
        fields.setdefault("model", "local/extractive")
        fields.setdefault("prompt", prompt)
        fields.setdefault("timeout", 5)
        action = LLMAction.objects.create(**fields)
        action.page_types.set([ContentType.objects.get_for_model(RecipePage)])
        return action

    return make


@pytest.fixture
def summary_action(make_recipe_action):
    return make_recipe_action()


@pytest.fixture
def teaser_action(make_recipe_action):
    return make_recipe_action(name="Teaser", slug="teaser", target_field="teaser")


@pytest.fixture
def site_validation(monkeypatch):
    """A site's own ``clean()`` that reads the body, as validation rules do."""

    def clean(self):
        if not any(child.block_type == "heading" for child in self.body):
            raise ValidationError("A recipe needs a heading.")

    monkeypatch.setattr(RecipePage, "clean", clean, raising=False)


@pytest.fixture
def during_the_call():
    """Run a function right after the answer is stored, before the draft is written."""
    handlers = []

    def register(func):
        def handler(sender, interaction, **kwargs):
            handlers.remove(handler)  # once
            answer_stored.disconnect(handler)
            func(interaction)

        answer_stored.connect(handler, weak=False)
        handlers.append(handler)

    yield register
    for handler in handlers:
        answer_stored.disconnect(handler)


# -- one action ---------------------------------------------------------------------------------


def test_a_run_changes_only_its_field(recipe, summary_action):
    base = latest_revision(recipe)

    interaction = LLMService().run(summary_action, recipe)

    assert interaction.outcome == "drafted" and not interaction.rebased
    assert "dumplings" in interaction.output_value.lower()
    assert_only_written_changed(base, interaction.revision, {"summary"})


def test_a_run_on_a_page_without_a_draft_keeps_the_live_content_as_stored(
    live_recipe, summary_action
):
    base = latest_revision(live_recipe)

    interaction = LLMService().run(summary_action, live_recipe)

    assert_only_written_changed(base, interaction.revision, {"summary"})


def test_a_page_read_before_its_run_still_gets_a_faithful_draft(live_recipe, summary_action):
    """A bulk job reads the page to see whether it changed, then runs it (same object)."""
    base = latest_revision(live_recipe)
    service = LLMService()
    working, _revision = working_copy(live_recipe)
    service.prepare(summary_action, working)

    interaction = service.run(summary_action, live_recipe)

    assert_only_written_changed(base, interaction.revision, {"summary"})
    # …and the caller's page object was not read through: its body is still as loaded.
    assert live_recipe.body.raw_data[0] == json.loads(base.content["body"])[0]


def test_a_structured_action_changes_only_its_fields(
    recipe, make_recipe_action, fake_llm, api_key_env
):
    action = make_recipe_action(
        name="Summary and teaser",
        slug="summary-teaser",
        target_field="",
        output_fields={"summary": "summary", "teaser": "teaser"},
        model="openai/fake-model",
        api_base=fake_llm.url,
        api_key_name=api_key_env,
    )
    fake_llm.configure(json_reply={"summary": "Juicy pork dumplings.", "teaser": "Fold 18."})
    base = latest_revision(recipe)

    interaction = LLMService().run(action, recipe)

    assert interaction.output_values == {"summary": "Juicy pork dumplings.", "teaser": "Fold 18."}
    assert_only_written_changed(base, interaction.revision, {"summary", "teaser"})


def test_a_pipeline_draft_changes_only_the_fields_its_steps_wrote(
    recipe, summary_action, teaser_action, make_pipeline
):
    pipeline = make_pipeline(
        {"name": "summary", "action": summary_action},
        {"name": "teaser", "action": teaser_action},
        name="Summary and teaser",
        slug="summary-teaser",
        page_types=False,
    )
    base = latest_revision(recipe)

    run = run_pipeline(pipeline, recipe)

    assert run.status == "success"
    assert_only_written_changed(base, run.revision, {"summary", "teaser"})


@pytest.mark.parametrize("validating", [False, True], ids=["plain", "site-validation"])
def test_two_actions_landing_on_one_page_change_only_their_two_fields(
    recipe, summary_action, teaser_action, during_the_call, request, validating
):
    """Another action's draft lands while the model answers: the answer is rebased onto it
    (and, with the site's validation, that newest revision is read by its ``clean()``)."""
    if validating:
        request.getfixturevalue("site_validation")
    base = latest_revision(recipe)
    during_the_call(lambda interaction: LLMService().run(teaser_action, recipe))

    interaction = LLMService().run(summary_action, recipe)

    assert interaction.rebased
    final = latest_revision(recipe)
    assert final.pk == interaction.revision_id
    assert final.as_object().teaser  # the other action's answer is kept
    assert_only_written_changed(base, final, {"summary", "teaser"})


# -- a site whose validation reads the body ------------------------------------------------------


def test_a_run_with_site_validation_changes_only_its_field(recipe, summary_action, site_validation):
    base = latest_revision(recipe)

    interaction = LLMService().run(summary_action, recipe)

    assert_only_written_changed(base, interaction.revision, {"summary"})


def test_applying_a_stored_answer_changes_only_its_field(
    recipe, summary_action, site_validation, monkeypatch
):
    from wagtail_llm_actions.run import drafts as run_drafts

    original = run_drafts.save_draft

    def busy(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr("wagtail_llm_actions.db.FIRST_BACKOFF", 0.001)
    monkeypatch.setattr("wagtail_llm_actions.run.drafts.save_draft", busy)
    with pytest.raises(WriteFailed) as caught:
        LLMService().run(summary_action, recipe)
    monkeypatch.setattr("wagtail_llm_actions.run.drafts.save_draft", original)
    base = latest_revision(recipe)

    interaction = LLMService().apply_stored(caught.value.interaction)

    assert interaction.outcome == "drafted"
    assert_only_written_changed(base, interaction.revision, {"summary"})


def test_keeping_an_answer_changes_only_its_field(
    recipe, summary_action, site_validation, superuser
):
    interaction = LLMService().run(summary_action, recipe, superuser, save=False)
    base = latest_revision(recipe)

    kept = review.keep(interaction, superuser)

    assert kept.as_object().summary == interaction.output_value
    assert_only_written_changed(base, kept, {"summary"})


def test_discarding_an_answer_gives_the_content_back_as_it_was(
    recipe, summary_action, site_validation, superuser
):
    base = latest_revision(recipe)
    run = LLMService().run(summary_action, recipe, superuser)

    discarded = review.discard(LLMInteraction.objects.get(pk=run.pk), superuser)

    assert discarded.as_object().summary == ""
    assert_only_written_changed(base, discarded, set())
