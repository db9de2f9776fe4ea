"""Source paths → plain text, and static validation of source paths and target fields."""

from __future__ import annotations

import hashlib

import pytest
from blog.models import Author, BlogIndexPage, BlogPage
from django.db import models
from django.test.utils import isolate_apps
from wagtail import blocks
from wagtail.fields import StreamField
from wagtail.models import Page
from wagtail.rich_text import RichText

from wagtail_llm_actions.extraction import (
    Extracted,
    PathError,
    describe_paths,
    extract_text,
    get_target_field,
    html_to_text,
    source_hash,
    validate_source_path,
    validate_target_field,
)

BODY = [
    ("heading", "Spring planting"),
    ("paragraph", RichText("<p>Sow <b>peas</b> early &amp; often.</p><p>Water them daily.</p>")),
    ("quote", "Patience is a virtue."),
    ("list", ["Peas", "Broad beans"]),
    (
        "section",
        {
            "title": "Tools",
            "text": RichText("<p>A <i>sharp</i> trowel.</p>"),
            "points": ["Gloves", "Spade"],
        },
    ),
    ("paragraph", RichText("<p>Harvest in June.</p>")),
    ("section", {"title": "Soil", "text": RichText("<p>Add compost.</p>"), "points": []}),
]

BODY_TEXT = (
    "Spring planting\n\n"
    "Sow peas early & often.\nWater them daily.\n\n"
    "Patience is a virtue.\n\n"
    "Peas\nBroad beans\n\n"
    "Tools\nA sharp trowel.\nGloves\nSpade\n\n"
    "Harvest in June.\n\n"
    "Soil\nAdd compost."
)


def make_page(**fields) -> BlogPage:
    fields.setdefault("title", "Growing peas")
    fields.setdefault("slug", "growing-peas")
    fields.setdefault("body", BODY)
    return BlogPage(**fields)


@pytest.fixture
def saved_page(db) -> BlogPage:
    """A page saved under a blog index, with tags and an author, and one revision."""
    index = BlogIndexPage(title="Blog", slug="blog")
    Page.get_first_root_node().add_child(instance=index)
    page = make_page(author=Author.objects.create(name="Ada Gardener"))
    page.tags.set(["peas", "Allotment"])
    index.add_child(instance=page)
    page.save_revision()
    return page


# -- extraction --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_whole_stream_is_clean_text_one_block_per_paragraph():
    result = extract_text(make_page(), "body")

    assert result == Extracted(text=BODY_TEXT, truncated=False, original_length=len(BODY_TEXT))
    assert "<" not in result.text and "&amp;" not in result.text


@pytest.mark.django_db
def test_block_type_selects_only_those_blocks():
    assert extract_text(make_page(), "body.paragraph").text == (
        "Sow peas early & often.\nWater them daily.\n\nHarvest in June."
    )
    assert extract_text(make_page(), "body.heading").text == "Spring planting"


@pytest.mark.django_db
def test_struct_child_and_list_items():
    page = make_page()

    assert extract_text(page, "body.section.text").text == "A sharp trowel.\n\nAdd compost."
    assert extract_text(page, "body.section.points").text == "Gloves\nSpade"
    assert extract_text(page, "body.list").text == "Peas\nBroad beans"


@pytest.mark.django_db
def test_plain_fields_foreign_key_and_blank_values():
    page = make_page(intro="  Peas   are easy. ", author=Author(name="Ada", bio="Grows things."))

    assert extract_text(page, "title").text == "Growing peas"
    assert extract_text(page, "intro").text == "Peas are easy."
    assert extract_text(page, "author").text == "Ada"
    assert extract_text(page, "author.bio").text == "Grows things."
    assert extract_text(page, "date") == Extracted("", False, 0)
    assert extract_text(make_page(body=[]), "body").text == ""
    assert extract_text(make_page(author=None), "author.name").text == ""


@pytest.mark.django_db
def test_rich_text_field_puts_blocks_on_their_own_lines():
    page = make_page(
        highlights=(
            "<h2>Key&nbsp;points</h2><p>One &amp; two</p>"
            "<ul><li>first</li><li>second</li></ul><p>line<br/>break</p>"
        )
    )

    assert extract_text(page, "highlights").text == (
        "Key points\nOne & two\nfirst\nsecond\nline\nbreak"
    )


def test_html_to_text_drops_scripts_and_keeps_link_text():
    html = '<p>Read <a href="/x">the guide</a>.</p><script>alert("x")</script><p>Done</p>'

    assert html_to_text(html) == "Read the guide.\nDone"


@pytest.mark.django_db
def test_tags_are_comma_separated_on_unsaved_page():
    page = make_page()
    page.tags.set(["zucchini", "Beans", "apples"])

    assert extract_text(page, "tags").text == "apples, Beans, zucchini"


def test_nested_list_and_stream_blocks_are_followed():
    with isolate_apps("blog"):

        class Recipe(models.Model):
            steps = StreamField(
                [
                    (
                        "stage",
                        blocks.StructBlock(
                            [
                                ("name", blocks.CharBlock()),
                                (
                                    "content",
                                    blocks.StreamBlock(
                                        [
                                            ("note", blocks.TextBlock()),
                                            (
                                                "tips",
                                                blocks.ListBlock(
                                                    blocks.StructBlock(
                                                        [("tip", blocks.CharBlock())]
                                                    )
                                                ),
                                            ),
                                        ]
                                    ),
                                ),
                            ]
                        ),
                    )
                ]
            )

            class Meta:
                app_label = "blog"

            def __str__(self) -> str:
                return "recipe"

        recipe = Recipe(
            steps=[
                (
                    "stage",
                    {
                        "name": "Prepare",
                        "content": [
                            ("note", "Wash the pods."),
                            ("tips", [{"tip": "Dry them"}, {"tip": "Chop finely"}]),
                        ],
                    },
                )
            ]
        )

        assert extract_text(recipe, "steps").text == (
            "Prepare\nWash the pods.\nDry them\nChop finely"
        )
        assert extract_text(recipe, "steps.stage.content.note").text == "Wash the pods."
        assert extract_text(recipe, "steps.stage.content.tips.tip").text == (
            "Dry them\n\nChop finely"
        )
        with pytest.raises(PathError, match="choose one of: tip"):
            validate_source_path(Recipe, "steps.stage.content.tips.tipp")


def test_saved_page_and_revision_give_the_same_text(saved_page):
    fresh = BlogPage.objects.get(pk=saved_page.pk)
    from_revision = saved_page.get_latest_revision_as_object()

    for obj in (fresh, from_revision, saved_page.get_latest_revision().as_object()):
        assert extract_text(obj, "body").text == BODY_TEXT
        assert extract_text(obj, "body.section.points").text == "Gloves\nSpade"
        assert extract_text(obj, "author.name").text == "Ada Gardener"
        assert extract_text(obj, "tags").text == "Allotment, peas"


def test_revision_text_reflects_the_draft_not_the_live_page(saved_page):
    saved_page.body = [("paragraph", RichText("<p>Draft only.</p>"))]
    saved_page.tags.set(["draft"])
    saved_page.save_revision()

    draft = saved_page.get_latest_revision_as_object()

    assert extract_text(draft, "body").text == "Draft only."
    assert extract_text(draft, "tags").text == "draft"
    assert extract_text(BlogPage.objects.get(pk=saved_page.pk), "tags").text == "Allotment, peas"


@pytest.mark.django_db
def test_max_chars_cuts_at_a_word_and_reports_it():
    result = extract_text(make_page(), "body", max_chars=30)

    assert result.truncated is True
    assert result.original_length == len(BODY_TEXT)
    assert result.text == "Spring planting\n\nSow peas"
    assert extract_text(make_page(), "body", max_chars=len(BODY_TEXT)).truncated is False


@pytest.mark.django_db
def test_extraction_is_deterministic():
    assert extract_text(make_page(), "body") == extract_text(make_page(), "body")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("foo", "“foo” is not a field of blog page; choose one of: title, slug,"),
        ("_state", "“_state” is not allowed: names starting with “_” are private."),
        ("body._raw_data", "“body._raw_data” is not allowed"),
        ("body.get_prep_value", "“body.get_prep_value” is not a block of body"),
        ("title.upper", "“title.upper” is not valid: title has no parts"),
        ("owner", "“owner” cannot be used: it refers to user accounts."),
        ("body..paragraph", "is not a valid path"),
    ],
)
def test_unknown_and_private_paths_are_refused(path, message):
    with pytest.raises(PathError) as error:
        extract_text(make_page(), path)

    assert message in str(error.value)


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["title", "intro", "body", "body.paragraph", "body.section.text", "body.section.points"]
    + ["author", "author.name", "tags", "highlights", "date"],
)
def test_valid_source_paths(path):
    validate_source_path(BlogPage, path)
    assert path in describe_paths(BlogPage)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "body.paragrah",
            "“body.paragrah” is not a block of body; choose one of: heading, paragraph, quote, "
            "list, section.",
        ),
        (
            "body.section.txt",
            "“body.section.txt” is not a part of body.section; choose one of: title, text, points.",
        ),
        ("author.nme", "“author.nme” is not a field of author; choose one of: name, bio."),
        ("body.section.points.x", "body.section.points has no parts to choose from"),
        ("tags.name", "“tags.name” is not valid: tags has no parts to choose from."),
        ("tagged_items", "“tagged_items” is not a field of blog page"),
        ("page_ptr.title", "“page_ptr” is not a field of blog page"),
        ("", "is not a valid path"),
    ],
)
def test_invalid_source_paths_explain_the_choices(path, message):
    with pytest.raises(PathError) as error:
        validate_source_path(BlogPage, path)

    assert message in str(error.value)


def test_describe_paths_lists_content_not_bookkeeping():
    paths = describe_paths(BlogPage)

    assert paths[:4] == ["title", "slug", "seo_title", "search_description"]
    assert {"body.section.text", "body.section.points", "author.name", "tags"} <= set(paths)
    assert not {"path", "depth", "owner", "id", "page_ptr", "locale"} & set(paths)


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("summary", "text"),
        ("summary", "tags"),
        ("intro", "tags"),
        ("highlights", "rich_text"),
        ("highlights", "text"),
        ("tags", "tags"),
        ("seo_title", "text"),
    ],
)
def test_valid_target_fields(name, mode):
    validate_target_field(BlogPage, name, mode)


@pytest.mark.parametrize(
    ("name", "mode", "message"),
    [
        ("body", "text", "“body” is a StreamField"),
        ("author", "text", "“author” links to other objects"),
        ("date", "text", "“date” (Date (without time)) cannot hold generated text"),
        ("id", "text", "“id” identifies the object"),
        ("path", "text", "“path” is managed by Wagtail"),
        ("slug", "text", "“slug” is managed by Wagtail"),
        ("summary", "rich_text", "“summary” is a plain text field; the “Rich text” output mode"),
        ("highlights", "tags", "“highlights” is a rich text field"),
        ("tags", "text", "“tags” holds tags; choose the “Tag list” output mode"),
        ("body.paragraph", "text", "“body.paragraph” is a path; choose a single field"),
        (
            "sumary",
            "text",
            "“sumary” is not a field of blog page; choose one of: title, seo_title, "
            "search_description, intro, summary, highlights.",
        ),
        ("_state", "text", "private"),
        ("summary", "html", "“html” is not an output mode"),
    ],
)
def test_invalid_target_fields_say_why(name, mode, message):
    with pytest.raises(PathError) as error:
        validate_target_field(BlogPage, name, mode)

    assert message in str(error.value)


def test_get_target_field_returns_the_model_field():
    assert get_target_field(BlogPage, "summary") is BlogPage._meta.get_field("summary")
    with pytest.raises(PathError):
        get_target_field(BlogPage, "nope")


def test_source_hash_changes_with_the_text():
    assert source_hash("Peas") == hashlib.sha256(b"Peas").hexdigest()
    assert source_hash("Peas") != source_hash("Peas.")
