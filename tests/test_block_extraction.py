"""Every block Wagtail ships reads as clean, labelled text (tests/testapp's recipe page)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import models
from django.test.utils import isolate_apps
from django.utils import translation
from wagtail import blocks, hooks
from wagtail.blocks.field_block import BaseChoiceBlock
from wagtail.fields import StreamField
from wagtail.models import Page

from tests.recipes import make_recipe, media, recipe_body
from tests.testapp.models import CoordinatesBlock, RecipePage
from wagtail_llm_actions.exceptions import ExtractionError, LLMActionError
from wagtail_llm_actions.extraction import (
    READER_HOOK,
    describe_paths,
    extract_text,
    source_hash,
)

pytestmark = pytest.mark.django_db

GOLDEN = Path(__file__).parent / "golden" / "all_blocks.txt"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def recipes():
    """A recipe linking to another one: every block of RecipePage.body is filled."""
    m = media()
    root = Page.get_first_root_node()
    chili = make_recipe(root, m, "Chili oil", "chili-oil")
    dumplings = make_recipe(
        root, m, "Pork dumplings", "dumplings", body=recipe_body(m, related=chili)
    )
    return {"media": m, "chili": chili, "dumplings": dumplings}


def choice_codes(block: blocks.Block) -> set[str]:
    """Every choice code used by a choice block below ``block``."""
    if isinstance(block, BaseChoiceBlock):
        return {str(key) for key, _label in block.field.choices if key}
    children = getattr(block, "child_blocks", None) or {}
    if isinstance(block, blocks.ListBlock):
        children = {"item": block.child_block}
    return {code for child in children.values() for code in choice_codes(child)}


def test_every_block_reads_as_the_golden_text(recipes):
    text = extract_text(recipes["dumplings"], "body").text

    assert text + "\n" == GOLDEN.read_text(encoding="utf-8")


def test_saved_draft_and_revision_read_the_same(recipes):
    page = recipes["dumplings"]
    fresh = RecipePage.objects.get(pk=page.pk)

    assert extract_text(fresh, "body").text == extract_text(page, "body").text
    assert extract_text(fresh.get_latest_revision_as_object(), "body").text == (
        GOLDEN.read_text(encoding="utf-8").rstrip("\n")
    )


def test_no_path_leaks_reprs_html_json_or_choice_codes(recipes):
    page = RecipePage.objects.get(pk=recipes["dumplings"].pk)
    codes = choice_codes(RecipePage._meta.get_field("body").stream_block)
    assert {"h2", "h3", "default", "highlight", "S", "M", "jp", "gluten_free"} <= codes

    paths = [p for p in describe_paths(RecipePage) if p == "body" or p.startswith("body.")]
    assert len(paths) > 40
    for path in paths:
        text = extract_text(page, path).text
        for leak in ("object at 0x", "<iframe", '{"', "<p>", "<script", "track()"):
            assert leak not in text, (path, leak)
        bare = [line for line in text.splitlines() if line.strip() in codes]
        assert not bare, (path, bare)


def test_paths_select_one_part_without_labels(recipes):
    page = recipes["dumplings"]

    assert extract_text(page, "body.step.difficulty").text == "Simple\n\nMedium"
    assert extract_text(page, "body.facts.servings").text == "4"
    assert extract_text(page, "body.figure.caption").text == "Ready to steam"
    assert extract_text(page, "body.image").text == (
        "Image: Steamed dumplings in a bamboo basket\n\nImage: Dough resting under a cloth"
    )
    assert extract_text(page, "body.image.alt_text").text == "Dough resting under a cloth"
    assert extract_text(page, "body.video").text == (
        "Embed: How to fold dumplings (https://www.youtube.com/watch?v=dumpl1ngs)\n\n"
        "Embed: https://vimeo.com/76979871"
    )
    assert extract_text(page, "body.heading.size").text == ""  # presentation only


def test_text_does_not_depend_on_the_request_language(recipes):
    page = recipes["dumplings"]
    english = extract_text(page, "body").text

    with translation.override("fr"):
        assert extract_text(page, "body").text == english


def test_unknown_block_falls_back_to_search_text_never_repr(recipes):
    page = recipes["dumplings"]

    assert extract_text(page, "body.location").text == "Shanghai"
    assert "Location: Les Halles, Lyon" in extract_text(page, "body.facts").text


def test_a_site_registers_a_reader_for_a_block_it_does_not_own(recipes):
    def register(readers):
        readers[CoordinatesBlock] = lambda block, value: (
            f"Map: {value.place} ({value.lat:.2f}, {value.lng:.2f})"
        )

    with hooks.register_temporarily(READER_HOOK, register):
        text = extract_text(recipes["dumplings"], "body.location").text

    assert text == "Map: Shanghai (31.23, 121.47)"


def test_a_reader_that_returns_no_text_is_an_error_naming_the_block(recipes):
    def register(readers):
        readers[CoordinatesBlock] = lambda block, value: value  # an object, not text

    with hooks.register_temporarily(READER_HOOK, register), pytest.raises(ExtractionError) as e:
        extract_text(recipes["dumplings"], "body")

    assert str(e.value) == (
        "Could not read block “facts.location” (CoordinatesBlock) in body: "
        "the reader returned Coordinates instead of text"
    )


def test_a_reader_that_raises_names_the_block_and_is_an_app_error(recipes):
    m = recipes["media"]
    page = make_recipe(
        Page.get_first_root_node(), m, "Broken", "broken", body=recipe_body(m, timer=-5)
    )

    with pytest.raises(ExtractionError) as e:
        extract_text(page, "body")

    assert isinstance(e.value, LLMActionError) and e.value.code == "extraction"
    assert str(e.value) == (
        "Could not read block “timer” (TimerBlock) in body: a timer cannot run for -5 minutes"
    )
    # Other paths of the same page still read.
    assert extract_text(page, "body.heading").text.startswith("Pork and chive dumplings")


def test_a_nested_block_failure_names_its_path(recipes):
    def register(readers):
        def broken(block, value):
            raise KeyError("place")

        readers[CoordinatesBlock] = broken

    with hooks.register_temporarily(READER_HOOK, register), pytest.raises(ExtractionError) as e:
        extract_text(recipes["dumplings"], "body.facts")

    assert "“facts.location” (CoordinatesBlock) in body: 'place'" in str(e.value)


HASH_SCRIPT = """
import json, os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
os.environ.pop("DATABASE_URL", None)
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from wagtail.models import Page
from tests.recipes import make_recipe, media, recipe_body
from wagtail_llm_actions.extraction import extract_text, source_hash
m = media()
root = Page.get_first_root_node()
chili = make_recipe(root, m, "Chili oil", "chili-oil")
page = make_recipe(root, m, "Pork dumplings", "dumplings", body=recipe_body(m, related=chili))
text = extract_text(page.get_latest_revision_as_object(), "body").text
print(json.dumps({"hash": source_hash(text), "text": text}))
"""


def test_text_and_hash_are_the_same_in_another_process(recipes):
    here = extract_text(recipes["dumplings"], "body").text
    env = {
        **os.environ,
        "PYTHONHASHSEED": "12345",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "sandbox")]),
    }
    env.pop("DATABASE_URL", None)
    env.pop("TEST_SQLITE_NAME", None)  # an in-memory database of its own
    done = subprocess.run(
        [sys.executable, "-c", HASH_SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    there = json.loads(done.stdout.strip().splitlines()[-1])

    assert there["text"] == here
    assert there["hash"] == source_hash(here)
    assert not re.search(r"0x[0-9a-f]{6,}", here)


def test_booleans_and_choices_are_read_only_when_marked_as_content():
    """A yes/no or choice block is a presentation switch unless its block says it is content
    (``llm_content``) or a reader reads it; whatever its name."""

    class ToggleBlock(blocks.BooleanBlock):
        def get_llm_text(self, value):
            return "Gift wrap available" if value else None

    with isolate_apps("tests.testapp"):

        class Course(models.Model):
            body = StreamField(
                [
                    (
                        "heading",
                        blocks.StructBlock(
                            [
                                ("text", blocks.CharBlock()),
                                (
                                    "level",
                                    blocks.ChoiceBlock(choices=[("h2", "H2"), ("h3", "H3")]),
                                ),
                            ]
                        ),
                    ),
                    (
                        "course",
                        blocks.StructBlock(
                            [
                                ("name", blocks.CharBlock()),
                                (
                                    "skill_level",
                                    blocks.ChoiceBlock(
                                        choices=[("1", "Beginner")], llm_content=True
                                    ),
                                ),
                                ("columns", blocks.ChoiceBlock(choices=[("3", "Three")])),
                                ("text_align", blocks.ChoiceBlock(choices=[("l", "Left")])),
                                (
                                    "sr_only_label",
                                    blocks.BooleanBlock(
                                        required=False, label="Screen reader only label"
                                    ),
                                ),
                                ("hide_on_mobile", blocks.BooleanBlock(required=False)),
                                ("free", blocks.BooleanBlock(required=False, llm_content=True)),
                                ("gift", ToggleBlock(required=False)),
                                ("link_block", blocks.URLBlock()),
                            ]
                        ),
                    ),
                ]
            )

            class Meta:
                app_label = "testapp"

            def __str__(self) -> str:
                return "course"

        course = Course(
            body=[
                ("heading", {"text": "Knife skills", "level": "h2"}),
                (
                    "course",
                    {
                        "name": "Basics",
                        "skill_level": "1",
                        "columns": "3",
                        "text_align": "l",
                        "sr_only_label": True,
                        "hide_on_mobile": True,
                        "free": True,
                        "gift": True,
                        "link_block": "https://example.com/knives",
                    },
                ),
            ]
        )

        assert extract_text(course, "body").text == (
            "Knife skills\n\nBasics\nSkill level: Beginner\nFree: yes\nGift wrap available\n"
            "Link: https://example.com/knives"
        )


def test_switches_of_a_block_nobody_here_wrote_never_reach_the_model(recipes):
    """The statistics block (a design-system package's) has a screen-reader switch and a
    layout choice beside its figures: neither is sent, though neither is named like one."""
    text = extract_text(recipes["dumplings"], "body").text

    assert "Screen reader only label" not in text
    assert "Columns: Two" not in text
    assert extract_text(recipes["dumplings"], "body.statistics.sr_only_label").text == ""


def test_a_chosen_snippet_reads_as_its_text_fields_not_its_str(recipes):
    """A statistic snippet has no title: it reads as its figure and what the figure measures
    (the fields of its edit panels), never as ``str()``; a field editors do not see and a
    choice field are not sent."""
    text = extract_text(recipes["dumplings"], "body.statistics").text

    assert text == (
        "Dumplings in numbers\n"
        "Statistic: 95%\n"
        "Description: of tasters preferred dumplings whose dough rested for 30 minutes\n"
        "Source: Kitchen panel, 2024\n"
        "Statistic: 3 in 4\n"
        "Description: home cooks fold fewer pleats"
    )
    assert "Statistics: 95%" not in text
    assert "ask Sam" not in text and "Accent" not in text


def test_a_chosen_snippet_sends_at_most_a_small_amount_of_text(recipes):
    from tests.testapp.models import Statistic
    from wagtail_llm_actions.extraction import SNIPPET_MAX_CHARS

    m = recipes["media"]
    long = Statistic.objects.create(value="12", description="word " * 2000, source="A survey")
    page = make_recipe(
        Page.get_first_root_node(),
        m,
        "Long",
        "long",
        body=[("statistics", {"heading": "", "statistics": [long], "columns": "2"})],
    )

    text = extract_text(page, "body").text

    assert text.startswith("Statistic: 12\nDescription: word word")
    assert len(text) <= SNIPPET_MAX_CHARS
    assert text.endswith("…")


def test_a_site_marks_blocks_and_children_as_content_or_presentation_in_one_setting(
    recipes, settings
):
    page = recipes["dumplings"]
    before = extract_text(page, "body").text
    assert "Vegetarian: no" in before and "A good dumpling has eighteen folds." in before
    settings.WAGTAIL_LLM_ACTIONS = {
        **settings.WAGTAIL_LLM_ACTIONS,
        "BLOCKS": {
            # a child of a block class: a choice the site knows is content …
            "tests.testapp.models.StatisticsBlock.columns": "content",
            # … and a yes/no whose block says "content" that the site does not want sent
            "tests.testapp.models.FactsBlock.vegetarian": "presentation",
            # a whole block class
            "tests.testapp.models.QuoteBlock": "presentation",
        },
    }

    text = extract_text(page, "body").text

    assert "Columns: Two" in text.splitlines()
    assert "Vegetarian" not in text
    assert "eighteen folds" not in text and "Mei Lin" in text  # the chef still reads
    assert "Screen reader only label" not in text
    assert extract_text(page, "body.quote").text == ""
    assert extract_text(page, "body.statistics.columns").text == "Two"


def test_stored_data_a_block_cannot_load_names_that_block(recipes):
    page = recipes["dumplings"]
    page.body = [
        {"type": "lead", "value": "Folded by hand."},
        {"type": "location", "value": "north;south;Nowhere"},  # not numbers: to_python fails
    ]
    page.save_revision()
    draft = page.get_latest_revision_as_object()

    with pytest.raises(ExtractionError) as e:
        extract_text(draft, "body")

    assert str(e.value) == (
        "Could not read block “location” (CoordinatesBlock) in body: "
        "could not convert string to float: 'north'"
    )
    assert extract_text(draft, "intro").text == "Dumplings, step by step."


def test_embeds_are_never_fetched(recipes, monkeypatch):
    from wagtail.embeds import embeds

    def no_fetch(*args, **kwargs):
        raise AssertionError("extraction fetched an embed")

    monkeypatch.setattr(embeds, "get_embed", no_fetch)
    monkeypatch.setattr(embeds, "get_finder_for_embed", no_fetch)
    draft = RecipePage.objects.get(pk=recipes["dumplings"].pk).get_latest_revision_as_object()

    assert "Video: https://vimeo.com/76979871" in extract_text(draft, "body").text
