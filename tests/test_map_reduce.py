"""Long content: map-reduce over parts that fit the context window, instead of truncation."""

from __future__ import annotations

import pytest

from tests.conftest import WINDOW
from tests.fakeserver import last_user_message
from wagtail_llm_actions.chunking import split_text
from wagtail_llm_actions.exceptions import LLMActionError
from wagtail_llm_actions.models import InteractionStatus, LLMInteraction, LLMRun, RunStatus
from wagtail_llm_actions.service import LLMService

pytestmark = pytest.mark.django_db


def test_split_text_keeps_every_word_and_respects_the_budget():
    text = "\n\n".join(f"Block {n}. " + "word " * (n * 7) for n in range(60))
    parts = split_text(text, 100, count=lambda s: len(s.split()))
    assert all(len(p.split()) <= 100 for p in parts)
    assert " ".join(" ".join(parts).split()) == " ".join(text.split())


@pytest.mark.parametrize("max_tokens", [None, 120, 1000, 1700])
def test_combining_fits_every_call_and_converges_for_any_number_of_parts(max_tokens):
    from wagtail_llm_actions.chunking import (
        ReducePlan,
        combine_in_rounds,
        joined_size,
        part_tokens_for,
    )

    window, margin, overhead = WINDOW, 204, 60
    answer = max_tokens or 300
    part = part_tokens_for(window, margin, overhead, answer, max_tokens)
    plan = ReducePlan(window, margin, answer, part, 20, overhead)
    for parts in range(2, 300, 7):
        calls = []

        def combine(group, _round, calls=calls):
            assert overhead + joined_size(group) + part + margin <= window  # fits the window
            calls.append(len(group))
            return part  # as long as it may be

        final = combine_in_rounds([part] * parts, plan, size=int, split=None, combine=combine)

        assert overhead + joined_size(final) + answer + margin <= window
        assert all(size >= 2 for size in calls)  # every call combines, none is wasted
        assert len(calls) < parts  # fewer combining calls than parts


def test_a_long_body_reaches_the_model_in_parts_that_fit_the_window(
    make_map_reduce_action, make_long_post, fake_llm
):
    post, markers = make_long_post()
    action = make_map_reduce_action(max_tokens=120)
    fake_llm.configure(context_window=WINDOW, reply="A partial summary about compost.")

    interaction = LLMService().run(action, post)

    assert interaction.status == InteractionStatus.SUCCESS
    requests = [last_user_message(r["json"]) for r in fake_llm.requests]
    assert len(requests) > 10  # 50,000 words cannot fit one 4k call
    sent = "\n".join(requests)
    assert [m for m in markers if m not in sent] == []  # every part of the body was read
    assert max(fake_llm.prompt_token_counts) + 120 <= WINDOW  # no call exceeded the window
    run = interaction.run
    assert run.status == RunStatus.SUCCESS
    parts = LLMInteraction.objects.filter(run=run, chunk_index__isnull=False)
    assert parts.count() == len(requests) - 1  # one interaction a part, plus the reduce
    assert "partial answers" in requests[-1]
    draft = type(post).objects.get(pk=post.pk).get_latest_revision_as_object()
    assert draft.summary == "A partial summary about compost."
    assert not interaction.source_truncated


def test_truncate_stays_the_default(make_server_action, make_long_post, fake_llm):
    post, markers = make_long_post(paragraphs=600)
    action = make_server_action()

    interaction = LLMService().run(action, post)

    assert fake_llm.request_count == 1
    assert interaction.source_truncated
    assert interaction.run is None


def test_a_part_failing_halfway_stops_with_nothing_written(
    make_map_reduce_action, make_long_post, fake_llm
):
    post, _markers = make_long_post(paragraphs=300)
    action = make_map_reduce_action(max_tokens=120)
    fake_llm.enqueue().enqueue().enqueue(status=400, error_message="Bad part.")
    latest = post.latest_revision_id

    with pytest.raises(LLMActionError, match="Part 3 of") as caught:
        LLMService().run(action, post)

    assert fake_llm.request_count == 3  # stopped at the failing part
    assert type(post).objects.get(pk=post.pk).latest_revision_id == latest
    run = LLMRun.objects.get()
    assert run.status == RunStatus.ERROR
    assert caught.value.interaction.status == InteractionStatus.ERROR
    statuses = list(
        run.interactions.filter(chunk_index__isnull=False)
        .order_by("chunk_index")
        .values_list("status", flat=True)
    )
    assert statuses == ["success", "success", "error"]


def test_offline_models_run_long_content_in_parts(make_action, make_long_post):
    post, markers = make_long_post(paragraphs=400)
    action = make_action(model="local/keywords", long_content="map_reduce", target_field="intro")

    interaction = LLMService().run(action, post)

    assert interaction.status == InteractionStatus.SUCCESS
    assert LLMInteraction.objects.filter(run=interaction.run, chunk_index__isnull=False).count() > 1
    draft = type(post).objects.get(pk=post.pk).get_latest_revision_as_object()
    assert draft.intro


def test_map_reduce_without_a_known_window_is_a_clear_error(
    make_action, make_long_post, fake_llm, api_key_env
):
    post, _markers = make_long_post(paragraphs=50)
    action = make_action(
        model="openai/no-such-model-known",
        api_base=fake_llm.url,
        api_key_name=api_key_env,
        long_content="map_reduce",
    )
    latest = post.latest_revision_id

    with pytest.raises(LLMActionError, match="context window"):
        LLMService().run(action, post)
    assert fake_llm.request_count == 0
    assert type(post).objects.get(pk=post.pk).latest_revision_id == latest


def test_bulk_estimate_counts_every_part_and_the_combining_call(
    make_action, make_long_post, superuser
):
    from wagtail_llm_actions import jobs

    post, _markers = make_long_post(paragraphs=400)
    truncating = make_action(slug="truncating", model="local/extractive")
    chunked = make_action(slug="chunked", model="local/extractive", long_content="map_reduce")

    one = jobs.plan_job(truncating, superuser, [post.pk]).estimate
    many = jobs.plan_job(chunked, superuser, [post.pk]).estimate

    assert one.calls == 1
    parts = LLMService().split_source(LLMService().prepare(chunked, post))
    assert many.calls == len(parts) + 1 > 2
    assert many.prompt_tokens > one.prompt_tokens  # the whole body, not its first part


def test_an_action_filling_several_fields_refuses_content_it_would_have_to_split(
    make_map_reduce_action, make_long_post, fake_llm
):
    post, _markers = make_long_post(paragraphs=200)
    before = type(post).objects.get(pk=post.pk).revisions.count()
    action = make_map_reduce_action(
        target_field="", output_fields={"summary": "summary", "description": "search_description"}
    )

    with pytest.raises(LLMActionError) as caught:
        LLMService().run(action, post)

    assert caught.value.code == "configuration"
    assert "cannot split" in caught.value.message
    assert fake_llm.request_count == 0  # nothing was sent whole, nothing paid for
    assert caught.value.interaction.status == InteractionStatus.ERROR
    assert type(post).objects.get(pk=post.pk).revisions.count() == before


def test_candidates_over_content_that_must_be_split_offer_the_map_reduce_answer(
    make_map_reduce_action, make_long_post, fake_llm
):
    post, _markers = make_long_post(paragraphs=200)
    action = make_map_reduce_action(max_tokens=120, candidates=3)
    fake_llm.configure(context_window=WINDOW, reply="A partial summary about compost.")

    interaction = LLMService().run(action, post, save=False)

    assert interaction.status == InteractionStatus.SUCCESS
    assert interaction.output_value == "A partial summary about compost."
    assert interaction.candidates == []  # one answer: the parts are not read three times
    assert max(fake_llm.prompt_token_counts) + 120 <= WINDOW
    assert "partial answers" in last_user_message(fake_llm.requests[-1]["json"])


# -- combining long partial answers (issue 18) ----------------------------------------------


def request_sizes(fake_llm) -> list[int]:
    """Each request's prompt tokens plus the answer tokens it asked room for."""
    return [
        prompt + int(request["json"].get("max_tokens") or 0)
        for prompt, request in zip(fake_llm.prompt_token_counts, fake_llm.requests, strict=True)
    ]


def combining_requests(fake_llm) -> list[dict]:
    return [r for r in fake_llm.requests if "partial answers" in last_user_message(r["json"])]


def keeps_cut_answers(action):
    """The action writes answers cut off by max tokens, with a warning."""
    action.cut_answers = "keep"
    action.save()
    return action


def test_long_partial_answers_are_combined_in_rounds_that_each_fit_the_window(
    make_map_reduce_action, make_long_post, fake_llm
):
    # A model writing 2,000-token answers into a 4k window: partial answers too long to
    # combine two at a time were all sent in one call (11.7k prompt tokens, refused).
    post, _markers = make_long_post(paragraphs=400)
    action = keeps_cut_answers(
        make_map_reduce_action(target_field="highlights", output_mode="rich_text")
    )
    fake_llm.configure(
        context_window=WINDOW,
        reply="A partial summary about compost.",
        answer_tokens=2000,
        honour_max_tokens=True,
    )

    interaction = LLMService().run(action, post)

    assert interaction.status == InteractionStatus.SUCCESS
    assert max(request_sizes(fake_llm)) <= WINDOW  # every call fitted the window
    assert len(combining_requests(fake_llm)) >= 3  # combined in rounds, then once more
    draft = type(post).objects.get(pk=post.pk).get_latest_revision_as_object()
    assert "A partial summary about compost." in draft.highlights
    # The partial answers were cut at the limit that lets them be combined: flagged.
    assert interaction.answer_truncated
    assert "partial answers" in interaction.cut_warning
    parts = interaction.run.interactions.filter(chunk_index__isnull=False)
    assert parts.filter(answer_truncated=True).exists()


def test_partial_answers_a_little_longer_by_our_count_still_combine_in_a_small_window(
    make_server_action, make_long_post, fake_llm
):
    # A 2k-window model whose tokenizer counts 15% fewer tokens than ours: its answers at
    # max_tokens are longer than max_tokens as we count them.
    window = 2048
    post, _markers = make_long_post(paragraphs=120)
    action = keeps_cut_answers(
        make_server_action(
            long_content="map_reduce",
            context_window=window,
            target_field="highlights",
            output_mode="rich_text",
        )
    )
    fake_llm.configure(
        context_window=window,
        answer_tokens=5000,
        honour_max_tokens=True,
        max_tokens_ratio=1.15,
    )

    interaction = LLMService().run(action, post)

    assert interaction.status == InteractionStatus.SUCCESS
    assert len(combining_requests(fake_llm)) > 1
    assert max(request_sizes(fake_llm)) <= window


def test_a_model_ignoring_max_tokens_gets_a_clear_error_and_no_oversized_request(
    make_map_reduce_action, make_long_post, fake_llm
):
    post, _markers = make_long_post(paragraphs=150)
    latest = post.latest_revision_id
    action = make_map_reduce_action()
    # 2,000 tokens whatever max_tokens asks for: combining cannot make them shorter.
    fake_llm.configure(context_window=WINDOW, answer_tokens=2000)

    with pytest.raises(LLMActionError) as caught:
        LLMService().run(action, post)

    assert max(request_sizes(fake_llm)) <= WINDOW
    assert "combined" in caught.value.message
    assert "shorter source field" not in caught.value.message
    assert caught.value.interaction.status == InteractionStatus.ERROR
    assert type(post).objects.get(pk=post.pk).latest_revision_id == latest


def test_a_part_cut_off_stops_the_run_when_the_action_refuses_cut_answers(
    make_map_reduce_action, make_long_post, fake_llm
):
    post, _markers = make_long_post(paragraphs=300)
    latest = post.latest_revision_id
    action = make_map_reduce_action(max_tokens=120)
    fake_llm.configure(context_window=WINDOW, honour_max_tokens=True)
    fake_llm.enqueue().enqueue(answer_tokens=500)  # the second part's answer is too long

    with pytest.raises(LLMActionError) as caught:
        LLMService().run(action, post)

    assert fake_llm.request_count == 2  # no more calls paid for a run that is refused
    assert caught.value.code == "answer_cut"
    assert "Part 2 of" in caught.value.message
    assert "max tokens (120)" in caught.value.message
    assert type(post).objects.get(pk=post.pk).latest_revision_id == latest
    cut = LLMInteraction.objects.get(chunk_index=1)
    assert cut.answer_truncated and cut.finish_reason == "length"


def test_a_part_cut_off_is_combined_with_a_warning_when_the_action_keeps_cut_answers(
    make_map_reduce_action, make_long_post, fake_llm
):
    post, _markers = make_long_post(paragraphs=300)
    action = keeps_cut_answers(make_map_reduce_action(max_tokens=120))
    fake_llm.configure(context_window=WINDOW, honour_max_tokens=True, reply="Compost notes.")
    fake_llm.enqueue().enqueue(answer_tokens=500)

    interaction = LLMService().run(action, post)

    assert interaction.status == InteractionStatus.SUCCESS
    assert interaction.finish_reason == "stop"  # the final answer itself is whole
    assert interaction.answer_truncated
    assert "may miss part of the page" in interaction.cut_warning
    draft = type(post).objects.get(pk=post.pk).get_latest_revision_as_object()
    assert draft.summary == "Compost notes."


def test_the_estimate_counts_every_round_of_combining(
    make_map_reduce_action, make_long_post, fake_llm, superuser
):
    from wagtail_llm_actions import jobs

    post, _markers = make_long_post(paragraphs=150)
    action = keeps_cut_answers(
        make_map_reduce_action(max_tokens=1000, target_field="highlights", output_mode="rich_text")
    )
    # Every answer as long as it may be: what the estimate assumes.
    fake_llm.configure(context_window=WINDOW, answer_tokens=5000, honour_max_tokens=True)

    estimate = jobs.plan_job(action, superuser, [post.pk]).estimate
    LLMService().run(action, post)

    assert len(combining_requests(fake_llm)) > 1  # more than the one final combining call
    assert estimate.calls == fake_llm.request_count
    assert max(request_sizes(fake_llm)) <= WINDOW


def test_a_map_reduce_window_error_never_asks_for_a_shorter_source(
    make_map_reduce_action, make_long_post, fake_llm
):
    post, _markers = make_long_post(paragraphs=300)
    action = make_map_reduce_action(max_tokens=120)
    # The model counts tokens differently from us: its window is smaller than it claims.
    fake_llm.configure(context_window=WINDOW // 2)

    with pytest.raises(LLMActionError) as caught:
        LLMService().run(action, post)

    assert caught.value.code == "context_window"
    assert "shorter source field" not in caught.value.message
    assert "smaller context window" in caught.value.message
