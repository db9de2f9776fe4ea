"""The offline provider: answers fit the target field, sentences are split like a reader would."""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from wagtail.rich_text import RichText

from wagtail_llm_actions.providers.base import CompletionRequest
from wagtail_llm_actions.providers.local import LocalProvider, keywords, split_sentences

ARTICLE = (
    "Our chef M. Dupont trained with Dr. Chen in Lyon for three long years. "
    "He was born in 1970 [which?] and folded 1.5 kg of dumplings every single day. "
    "Dumplings need a soft dough, e.g. flour and hot water, rested for an hour. "
    "Pleat each dumpling wrapper tightly around the pork and chive filling. "
    "Steam the dumplings for twelve minutes over a rolling boil… then serve. "
    "Dumplings freeze well, so fold a double batch of dumplings and keep some. "
    "Black vinegar and chili oil make the best dipping sauce for dumplings. "
    "The restaurant opened in 1990.[2] It closed in 2020. "
    "Leftover filling makes good fried rice (approx. 2 bowls)."
)


def ask(model: str, text: str, max_chars: int | None = None) -> str:
    messages = [{"role": "user", "content": f"Summarize this article.\n\n{text}"}]
    request = CompletionRequest(model=model, messages=messages, max_chars=max_chars)
    return LocalProvider().complete(request).text


def test_sentences_survive_abbreviations_initials_markers_decimals_and_ellipses():
    assert split_sentences(ARTICLE) == [
        "Our chef M. Dupont trained with Dr. Chen in Lyon for three long years.",
        "He was born in 1970 [which?] and folded 1.5 kg of dumplings every single day.",
        "Dumplings need a soft dough, e.g. flour and hot water, rested for an hour.",
        "Pleat each dumpling wrapper tightly around the pork and chive filling.",
        "Steam the dumplings for twelve minutes over a rolling boil… then serve.",
        "Dumplings freeze well, so fold a double batch of dumplings and keep some.",
        "Black vinegar and chili oil make the best dipping sauce for dumplings.",
        "The restaurant opened in 1990.[2]",
        "It closed in 2020.",
        "Leftover filling makes good fried rice (approx. 2 bowls).",
    ]


def test_lines_and_headings_are_their_own_sentences():
    assert split_sentences("Method\nMix it. Rest it!\nServe (hot.) Eat?") == [
        "Method",
        "Mix it.",
        "Rest it!",
        "Serve (hot.)",
        "Eat?",
    ]


@pytest.mark.parametrize("limit", [200, 160, 120, 60])
def test_extractive_answer_fits_max_chars_with_whole_sentences(limit):
    unbounded = ask("local/extractive", ARTICLE)
    assert len(unbounded) > 200  # three sentences: the hint is what keeps it short

    answer = ask("local/extractive", ARTICLE, max_chars=limit)

    assert 0 < len(answer) <= limit
    assert all(sentence in split_sentences(ARTICLE) for sentence in split_sentences(answer))


def test_a_sentence_too_long_for_the_field_is_cut_at_a_word():
    answer = ask("local/extractive", ARTICLE.split(" The restaurant")[0], max_chars=40)

    assert len(answer) <= 40 and answer.endswith("…")
    assert ARTICLE.startswith(answer[:-1]) or answer[:-1] in ARTICLE


@pytest.mark.parametrize("limit", [40, 20])
def test_keywords_fit_max_chars(limit):
    assert len(", ".join(keywords(ARTICLE))) > 40

    answer = ask("local/keywords", ARTICLE, max_chars=limit)

    assert 0 < len(answer) <= limit
    assert answer.split(", ")[0] == keywords(ARTICLE)[0]


@pytest.mark.django_db
def test_service_passes_the_target_fields_max_length(make_post, make_action):
    from blog.models import BlogPage

    long_paragraph = " ".join(ARTICLE.split(". ")[:6]) + "."
    unbounded = ask("local/extractive", f"{ARTICLE}\n{long_paragraph}")
    assert len(unbounded) > 250
    post = make_post(body=[("paragraph", RichText(f"<p>{ARTICLE}</p><p>{long_paragraph}</p>"))])
    action = make_action(slug="to-intro", target_field="intro")  # CharField(max_length=250)
    action.page_types.set([ContentType.objects.get_for_model(BlogPage)])

    from wagtail_llm_actions.service import LLMService

    interaction = LLMService().run(action, post)

    assert interaction.status == "success"
    assert 0 < len(interaction.output_value) <= 250
    assert interaction.finish_reason == "stop"


@pytest.mark.parametrize(("model", "tokens"), [("local/extractive", 20), ("local/keywords", 5)])
def test_summarising_models_answer_within_max_tokens_instead_of_being_cut(model, tokens):
    messages = [{"role": "user", "content": f"Summarize this article.\n\n{ARTICLE}"}]
    unbounded = ask(model, ARTICLE)

    result = LocalProvider().complete(CompletionRequest(model, messages, max_tokens=tokens))

    assert len(unbounded) > tokens * 4
    assert 0 < len(result.text) <= tokens * 4  # 4 characters a token
    assert result.finish_reason == "stop"  # planned to fit, not cut mid-sentence
