"""Never pay twice for an identical call (issue 22 §4): the response cache."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from tests.conftest import make_body
from wagtail_llm_actions import jobs, response_cache
from wagtail_llm_actions.models import LLMCachedResponse, LLMInteraction, LLMPrompt
from wagtail_llm_actions.service import LLMService

pytestmark = pytest.mark.django_db


@pytest.fixture
def cached_action(server_action):
    server_action.use_cache = True
    server_action.save()
    return server_action


def summary(page):
    return type(page).objects.get(pk=page.pk).get_latest_revision_as_object().summary


def test_an_identical_call_is_answered_once_and_the_second_costs_nothing(
    cached_action, post, fake_llm, superuser
):
    fake_llm.configure(
        reply="Worms like it damp.",
        usage={"prompt_tokens": 90, "completion_tokens": 10, "total_tokens": 100},
    )
    first = LLMService().run(cached_action, post, superuser)
    second = LLMService().run(cached_action, post, superuser)
    assert fake_llm.request_count == 1
    assert not first.cached and first.total_tokens == 100
    assert second.cached and second.status == "success"
    assert (second.prompt_tokens, second.completion_tokens, second.total_tokens) == (0, 0, 0)
    assert second.cost == Decimal(0)
    assert second.output_value == first.output_value == "Worms like it damp."
    assert LLMInteraction.objects.get(pk=second.pk).cached
    assert summary(post) == "Worms like it damp."


def test_actions_that_do_not_opt_in_always_call(server_action, post, fake_llm, superuser):
    LLMService().run(server_action, post, superuser)
    LLMService().run(server_action, post, superuser)
    assert fake_llm.request_count == 2
    assert not LLMCachedResponse.objects.exists()


def test_a_site_without_a_ttl_keeps_no_answers(cached_action, post, fake_llm, superuser, settings):
    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "CACHE_TTL": None}
    LLMService().run(cached_action, post, superuser)
    LLMService().run(cached_action, post, superuser)
    assert fake_llm.request_count == 2


def test_anything_that_shapes_the_answer_makes_another_call(
    cached_action, post, make_post, fake_llm, superuser
):
    LLMService().run(cached_action, post, superuser)
    cached_action.temperature = 0.9
    cached_action.save()
    LLMService().run(cached_action, post, superuser)  # other parameters
    LLMService().run(cached_action, make_post(title="Another post"), superuser)  # other text
    assert fake_llm.request_count == 3


def test_regenerate_asks_the_model_again_and_keeps_the_new_answer(
    cached_action, post, fake_llm, superuser
):
    fake_llm.configure(reply="First answer.")
    LLMService().run(cached_action, post, superuser)
    fake_llm.configure(reply="Second answer.")
    with response_cache.bypassed():
        again = LLMService().run(cached_action, post, superuser)
    assert fake_llm.request_count == 2 and not again.cached
    assert again.output_value == "Second answer."
    third = LLMService().run(cached_action, post, superuser)
    assert third.cached and third.output_value == "Second answer."


def test_an_expired_answer_is_asked_again_and_purged(cached_action, post, fake_llm, superuser):
    LLMService().run(cached_action, post, superuser)
    LLMCachedResponse.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    again = LLMService().run(cached_action, post, superuser)
    assert fake_llm.request_count == 2 and not again.cached
    LLMCachedResponse.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    out = StringIO()
    call_command("purge_llm_interactions", "--days", "365", stdout=out)
    assert "Deleted 1 expired cached answer(s)." in out.getvalue()
    assert not LLMCachedResponse.objects.exists()


def test_no_key_is_part_of_what_is_kept(cached_action, post, fake_llm, superuser, monkeypatch):
    LLMService().run(cached_action, post, superuser)
    [row] = LLMCachedResponse.objects.all()
    assert "sk-test-secret" not in str(row.result) and "sk-test-secret" not in row.key
    # the same request with another key value is still the same call
    monkeypatch.setenv(cached_action.api_key_name, "another-secret")
    assert LLMService().run(cached_action, post, superuser).cached


def test_a_bulk_job_pays_once_for_pages_that_send_the_same_text_and_force_asks_again(
    cached_action, make_post, fake_llm, superuser
):
    prompt = LLMPrompt.objects.create(name="Body only", slug="body-only", template="{body}")
    cached_action.prompt = prompt
    cached_action.save()
    body = make_body(paragraph="Every post says the same about compost bins.")
    posts = [make_post(title=f"Post {n}", body=body) for n in range(3)]
    job = jobs.create_job(cached_action, superuser, [p.pk for p in posts])
    jobs.run_job(job.pk, threads=1)
    assert fake_llm.request_count == 1
    assert sorted(LLMInteraction.objects.values_list("cached", flat=True)) == [
        False,
        True,
        True,
    ]
    assert all(summary(p) for p in posts)
    forced = jobs.create_job(cached_action, superuser, [posts[0].pk], force=True)
    jobs.run_job(forced.pk, threads=1)
    assert fake_llm.request_count == 2


def test_regenerate_in_the_editor_asks_the_model_and_a_first_run_may_reuse(
    cached_action, post, fake_llm, superuser
):
    from tests.test_editor import client_for, form_data, run_and_wait

    client = client_for(superuser)
    data = form_data(client, post)
    fake_llm.configure(reply="Kept answer.")
    assert run_and_wait(client, post, cached_action, data)["state"] == "succeeded"
    fake_llm.configure(reply="A new answer.")
    again = run_and_wait(client, post, cached_action, data)  # the same request: from the cache
    assert fake_llm.request_count == 1 and "Kept answer." in str(again)
    regenerated = run_and_wait(client, post, cached_action, {**data, "llm_regenerate": "1"})
    assert fake_llm.request_count == 2 and "A new answer." in str(regenerated)


def test_the_interaction_page_says_an_answer_came_from_the_cache(
    cached_action, post, fake_llm, superuser, client
):
    from django.urls import reverse

    first = LLMService().run(cached_action, post, superuser)
    second = LLMService().run(cached_action, post, superuser)
    client.force_login(superuser)

    def page(interaction):
        url = reverse("wagtail_llm_actions_report:detail", args=[interaction.pk])
        return client.get(url).content.decode()

    assert "From the response cache" in page(second)
    assert "From the response cache" not in page(first)


def test_the_command_on_one_page_with_force_asks_the_model_again_as_a_job_does(
    cached_action, post, fake_llm, superuser
):
    """``--force`` means the same on every path: ``run_llm_action --page N --force`` asked
    the response cache (0 calls) while a forced job asks the model."""

    def command(*args):
        out = StringIO()
        call_command(
            "run_llm_action", cached_action.slug, "--page", str(post.pk), *args, stdout=out
        )
        return out.getvalue()

    command()
    assert fake_llm.request_count == 1
    assert "skipped" in command()  # unchanged: no call, from the cache or not
    command("--force")
    assert fake_llm.request_count == 2
    newest = LLMInteraction.objects.order_by("-pk").first()
    assert not newest.cached
