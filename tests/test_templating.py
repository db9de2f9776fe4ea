"""Prompt templates: ``{dotted.names}``, literal braces, refusals and missing variables."""

from __future__ import annotations

import pytest

from wagtail_llm_actions.templating import (
    BUILTIN_VARIABLES,
    MissingVariableError,
    TemplateSyntaxError,
    Variable,
    parse_template,
    render_template,
    template_variables,
)


def test_parse_splits_literals_and_dotted_variables():
    assert parse_template("Summarise {title}: {body.section.text}!") == [
        "Summarise ",
        Variable("title"),
        ": ",
        Variable("body.section.text"),
        "!",
    ]


def test_double_braces_are_literal_braces():
    template = 'Answer as JSON: {{"summary": "{title}"}}'

    assert parse_template(template) == ['Answer as JSON: {"summary": "', Variable("title"), '"}']
    assert render_template(template, {"title": "Peas"}) == 'Answer as JSON: {"summary": "Peas"}'
    assert template_variables("{{not_a_variable}}") == []


def test_template_variables_are_ordered_and_unique():
    template = "{body} then {title}, again {body} and {body.paragraph}"

    assert template_variables(template) == ["body", "title", "body.paragraph"]


def test_builtin_variables():
    assert {"title", "url", "locale", "context", "source"} == BUILTIN_VARIABLES


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{body.__class__}", "private"),
        ("{_secret}", "private"),
        ("{x[0]}", "Indexing"),
        ("{x!r}", "Conversions"),
        ("{x:>10}", "Format specifications"),
        ("{}", "Empty placeholder"),
        ("{0}", "Positional placeholders"),
        ("{1x}", "Positional placeholders"),
        ("a { b", "Unclosed “{”"),
        ("{a{b}}", "Unclosed “{”"),
        ("a } b", "Unmatched “}”"),
        ("{title}}", "Unmatched “}”"),
        ("{ title }", "is not a valid placeholder"),
        ("{body.}", "is not a valid placeholder"),
        ('{"json": 1}', "is not a valid placeholder"),
    ],
)
def test_unsafe_or_malformed_placeholders_are_refused(template, problem):
    with pytest.raises(TemplateSyntaxError) as error:
        parse_template(template)

    assert problem in str(error.value)
    with pytest.raises(TemplateSyntaxError):
        render_template(template, {"x": "1", "title": "t", "body": "b", "a": "a"})


def test_syntax_error_names_line_and_column():
    with pytest.raises(TemplateSyntaxError) as error:
        parse_template("Summarise:\n  {body!s}")

    assert "(line 2, column 3)" in str(error.value)
    assert (error.value.line, error.value.column) == (2, 3)


def test_render_substitutes_values_as_text():
    rendered = render_template(
        "{title} ({locale}) has {count} parts: {body.paragraph}",
        {"title": "Peas", "locale": "en", "count": 3, "body.paragraph": "Sow early."},
    )

    assert rendered == "Peas (en) has 3 parts: Sow early."


def test_values_with_braces_are_not_interpreted_again():
    rendered = render_template("Text: {source}", {"source": "{title} {0} {{x}} {a.__class__}"})

    assert rendered == "Text: {title} {0} {{x}} {a.__class__}"


def test_missing_variables_are_all_listed():
    with pytest.raises(MissingVariableError) as error:
        render_template("{title} {intro} {body.section} {intro}", {"title": "Peas"})

    assert error.value.names == ["intro", "body.section"]
    assert "{intro}, {body.section}" in str(error.value)


def test_extra_values_are_ignored():
    assert render_template("Plain text only.", {"title": "unused"}) == "Plain text only."
