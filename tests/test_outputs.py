"""Model answers → field values: cleaning, tags, rich text sanitising, length limits."""

from __future__ import annotations

import pytest
from blog.models import BlogIndexPage, BlogPage
from wagtail.models import Page

from wagtail_llm_actions.outputs import (
    OutputError,
    apply_output,
    clean_model_text,
    read_field_value,
    split_tags,
    to_rich_text,
)

SENTENCE = "Peas grow best in cool weather and need support to climb. "  # 58 characters


def make_page(**fields) -> BlogPage:
    fields.setdefault("title", "Growing peas")
    fields.setdefault("slug", "growing-peas")
    return BlogPage(**fields)


def snapshot(page: BlogPage) -> tuple:
    return (
        page.title,
        page.intro,
        page.summary,
        page.highlights,
        read_field_value(page, "tags"),
    )


# -- cleaning --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "cleaned"),
    [
        ("  Peas are easy.  \n", "Peas are easy."),
        ("```\nPeas are easy.\n```", "Peas are easy."),
        ("```text\nSummary: Peas are easy.\n```", "Peas are easy."),
        ('"Peas are easy."', "Peas are easy."),
        ("“Peas are easy.”", "Peas are easy."),
        ("'It's easy'", "It's easy"),
        ('"Peas" and "beans"', '"Peas" and "beans"'),
        ("SUMMARY: Peas", "Peas"),
        ("Tags: peas, beans", "peas, beans"),
        ("Description:Short", "Short"),
        ("Summary of the page: peas", "Summary of the page: peas"),
        ("**Summary:** Peas", "**Summary:** Peas"),
        ("```a``` and ```b```", "```a``` and ```b```"),
    ],
)
def test_clean_model_text(answer, cleaned):
    assert clean_model_text(answer) == cleaned


def test_split_tags_handles_lists_bullets_hashes_and_duplicates():
    answer = '1. Peas\n2) #Vegetables; "Kitchen garden"\n- peas\n* • Spring ,, \n#  climbing plants'

    assert split_tags(answer) == [
        "Peas",
        "Vegetables",
        "Kitchen garden",
        "Spring",
        "climbing plants",
    ]


def test_split_tags_caps_length_and_count():
    tags = split_tags(", ".join([f"tag{i}" for i in range(80)] + ["x" * 150]))

    assert len(tags) == 50
    assert tags[-1] == "tag49"
    assert split_tags("y" * 150) == ["y" * 100]


# -- rich text -------------------------------------------------------------------------------


def test_rich_text_from_plain_text_escapes_and_builds_lists():
    html = to_rich_text("Peas & beans <3\nline two\n\n- sow\n- water\n\n1. pick\n2. eat")

    assert html == (
        "<p>Peas &amp; beans &lt;3<br/>line two</p>"
        "<ul><li>sow</li><li>water</li></ul><ol><li>pick</li><li>eat</li></ol>"
    )


def test_rich_text_sanitises_model_html():
    html = to_rich_text(
        '<h1 class="x">Peas</h1><p onclick="steal()">Sow <strong>early</strong>'
        "<script>alert('x')</script><img src=x onerror=alert(1)></p>"
        '<p><a href="javascript:alert(1)">bad link</a> <a href="https://example.com/?a=1&b=2" '
        'target="_blank">good link</a></p><ul><li>one<li>two</ul><style>p{}</style>'
    )

    assert html == (
        "<h2>Peas</h2><p>Sow <b>early</b></p>"
        '<p>bad link <a href="https://example.com/?a=1&amp;b=2">good link</a></p>'
        "<ul><li>one</li><li>two</li></ul>"
    )


def test_rich_text_wraps_loose_text_and_keeps_inline_tags_in_plain_answers():
    assert to_rich_text("Intro <em>text</em>\n<ul><li>x</li></ul>after") == (
        "<p>Intro <i>text</i></p><ul><li>x</li></ul><p>after</p>"
    )
    assert to_rich_text("Sow <b>early</b> <script>x()</script>\n\nThen wait") == (
        "<p>Sow <b>early</b></p><p>Then wait</p>"
    )


# -- applying --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_text_is_written_to_the_field_and_returned():
    page = make_page()

    written = apply_output(page, "summary", "```\nSummary: Peas are easy to grow.\n```", "text")

    assert written == page.summary == "Peas are easy to grow."


@pytest.mark.django_db
def test_char_field_gets_a_single_line():
    page = make_page()

    apply_output(page, "seo_title", "Growing peas:\n  a guide", "text")

    assert page.seo_title == "Growing peas: a guide"


@pytest.mark.django_db
def test_too_long_answer_is_refused_and_page_is_untouched():
    page = make_page(summary="Old summary.")
    before = snapshot(page)
    answer = SENTENCE * 12 + "Done"  # 700 characters

    with pytest.raises(OutputError) as error:
        apply_output(page, "summary", answer, "text")

    assert error.value.code == "too_long"
    assert str(error.value) == "The answer is 700 characters long; summary holds at most 600."
    assert snapshot(page) == before


@pytest.mark.django_db
def test_truncate_shortens_at_a_sentence_end():
    page = make_page()

    written = apply_output(page, "summary", SENTENCE * 12, "text", truncate=True)

    assert written == page.summary == (SENTENCE * 10).strip()
    assert len(written) <= 600


@pytest.mark.django_db
def test_truncate_mid_sentence_ends_with_an_ellipsis():
    page = make_page()

    written = apply_output(page, "intro", "word " * 100, "text", truncate=True)

    assert written.endswith("word…")
    assert len(written) <= 250
    assert page.intro == written


@pytest.mark.django_db
@pytest.mark.parametrize("answer", ["", "   \n", "```\n\n```", '""', "Summary:"])
def test_empty_answer_is_refused_and_page_is_untouched(answer):
    page = make_page(summary="Old summary.")

    with pytest.raises(OutputError) as error:
        apply_output(page, "summary", answer, "text")

    assert error.value.code == "empty"
    assert page.summary == "Old summary."


@pytest.mark.django_db
def test_invalid_target_is_an_output_error():
    page = make_page()
    before = snapshot(page)

    with pytest.raises(OutputError) as error:
        apply_output(page, "body", "Peas", "text")

    assert error.value.code == "invalid"
    assert "StreamField" in str(error.value)
    assert snapshot(page) == before


@pytest.mark.django_db
def test_tags_are_set_on_an_unsaved_page():
    page = make_page()

    written = apply_output(page, "tags", "Tags: - Peas\n- #legumes\n- peas", "tags")

    assert written == "Peas, legumes"
    assert sorted(tag.name for tag in page.tags.all()) == ["Peas", "legumes"]
    assert read_field_value(page, "tags") == "legumes, Peas"


@pytest.mark.django_db
def test_tag_answer_with_no_tags_leaves_tags_alone():
    page = make_page()
    page.tags.set(["kept"])

    with pytest.raises(OutputError) as error:
        apply_output(page, "tags", " , ; - ", "tags")

    assert error.value.code == "empty"
    assert read_field_value(page, "tags") == "kept"


@pytest.mark.django_db
def test_tags_go_into_a_text_field_comma_separated():
    page = make_page()

    assert apply_output(page, "intro", "peas\nbeans\nPEAS", "tags") == "peas, beans"
    assert page.intro == "peas, beans"


@pytest.mark.django_db
def test_tags_that_do_not_fit_a_text_field_are_dropped_only_when_truncating():
    page = make_page(intro="old")
    answer = ", ".join(f"tag-number-{i:02d}" for i in range(30))  # 418 characters

    with pytest.raises(OutputError):
        apply_output(page, "intro", answer, "tags")
    assert page.intro == "old"

    written = apply_output(page, "intro", answer, "tags", truncate=True)
    assert len(written) <= 250
    assert written.startswith("tag-number-00, tag-number-01")
    assert written.endswith("tag-number-15")  # 16 tags fit in 238 characters, 17 would not


@pytest.mark.django_db
def test_rich_text_mode_writes_sanitised_html():
    page = make_page()

    written = apply_output(
        page, "highlights", "<p>Sow <b>early</b><script>steal()</script></p>", "rich_text"
    )

    assert written == page.highlights == "<p>Sow <b>early</b></p>"


@pytest.mark.django_db
def test_text_mode_into_rich_text_field_escapes_markup():
    page = make_page()

    apply_output(page, "highlights", "Use <b>tags</b>?\n\nNo.", "text")

    assert page.highlights == "<p>Use &lt;b&gt;tags&lt;/b&gt;?</p><p>No.</p>"


@pytest.mark.django_db
def test_read_field_value_gives_the_previous_value():
    page = make_page(summary="Old summary.", highlights="<p>Old</p>")

    assert read_field_value(page, "summary") == "Old summary."
    assert read_field_value(page, "highlights") == "<p>Old</p>"
    assert read_field_value(make_page(), "date") == ""


@pytest.mark.django_db
def test_tags_written_to_a_revision_do_not_touch_the_live_page():
    index = BlogIndexPage(title="Blog", slug="blog")
    Page.get_first_root_node().add_child(instance=index)
    page = make_page()
    page.tags.set(["live"])
    index.add_child(instance=page)
    page.save_revision()
    draft = page.get_latest_revision_as_object()

    apply_output(draft, "tags", "draft, new", "tags")
    draft.save_revision()

    live = BlogPage.objects.get(pk=page.pk)
    assert read_field_value(live, "tags") == "live"
    assert read_field_value(live.get_latest_revision_as_object(), "tags") == "draft, new"
