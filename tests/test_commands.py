"""The run_llm_action management command."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django_q.models import OrmQ

from wagtail_llm_actions.models import LLMInteraction, LLMJob

pytestmark = pytest.mark.django_db


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("run_llm_action", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_one_page_offline_provider(post, action):
    out, _err = run(action.slug, "--page", str(post.pk))
    draft = type(post).objects.get(pk=post.pk).get_latest_revision_as_object()
    assert draft.summary
    assert "draft revision" in out
    assert type(post).objects.get(pk=post.pk).summary == ""
    assert LLMInteraction.objects.get().status == "success"


def test_one_page_against_server(post, server_action, fake_llm):
    fake_llm.reply = "Server says: compost is easy."
    run(server_action.slug, "--page", str(post.pk))
    draft = type(post).objects.get(pk=post.pk).get_latest_revision_as_object()
    assert draft.summary == "Server says: compost is easy."
    row = LLMInteraction.objects.get()
    assert row.messages[-1]["role"] == "user"
    assert row.total_tokens and row.latency_ms is not None


def test_server_down_fails_with_message_and_no_change(post, make_action, api_key_env):
    action = make_action(
        slug="down", model="openai/m", api_base="http://127.0.0.1:9/v1", api_key_name=api_key_env
    )
    with pytest.raises(CommandError) as exc:
        run(action.slug, "--page", str(post.pk))
    assert "failed" in str(exc.value)
    assert LLMInteraction.objects.get().status == "error"
    assert not type(post).objects.get(pk=post.pk).has_unpublished_changes


def test_dry_run_prints_messages(post, server_action, fake_llm):
    out, _ = run(server_action.slug, "--page", str(post.pk), "--dry-run")
    assert "[system]" in out and "[user]" in out
    assert "Summarize “Composting in a small flat”" in out
    assert fake_llm.requests == []
    assert not LLMInteraction.objects.exists()


def test_descendants_and_all(make_post, blog_index, action):
    pages = [make_post() for _ in range(3)]
    out, _err = run(action.slug, "--descendants", str(blog_index.pk))
    assert LLMInteraction.objects.filter(status="success").count() == 3
    assert "Succeeded: 3" in out
    # Nothing changed since: every page is skipped as unchanged, no model call.
    out, _err = run(action.slug, "--all")
    assert LLMInteraction.objects.filter(status="success").count() == 3
    assert (
        "Skipped: 3" in out
        and "Unchanged since this action’s answer was written or discarded" in out
    )
    run(action.slug, "--all", "--force")
    assert LLMInteraction.objects.filter(status="success").count() == 6
    assert all(type(p).objects.get(pk=p.pk).has_unpublished_changes for p in pages)
    assert LLMJob.objects.filter(kind="command", status="completed").count() == 3


def test_enqueue_hands_job_to_workers(make_post, action):
    make_post()
    out, _err = run(action.slug, "--all", "--enqueue")
    assert "handed to the workers" in out
    job = LLMJob.objects.get()
    assert job.status == "queued" and job.items.get().status == "queued"
    assert not LLMInteraction.objects.exists()
    assert OrmQ.objects.count() == 1


def test_all_with_failures_exits_non_zero(make_post, make_action, api_key_env):
    make_post()
    action = make_action(
        slug="down", model="openai/m", api_base="http://127.0.0.1:9/v1", api_key_name=api_key_env
    )
    with pytest.raises(CommandError) as exc:
        run(action.slug, "--all")
    assert "1 of 1 page(s) failed" in str(exc.value)
    assert LLMJob.objects.get().items.get().status == "failed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "--page", "1"], "No LLM action"),
        (["generate-summary", "--page", "999999"], "No page"),
        (["generate-summary", "--page", "BLOG"], "does not apply"),
    ],
)
def test_bad_input_exits_non_zero(action, blog_index, args, message):
    args = [str(blog_index.pk) if a == "BLOG" else a for a in args]
    with pytest.raises(CommandError) as exc:
        run(*args)
    assert message in str(exc.value)


def test_a_page_in_moderation_is_skipped_as_in_moderation_not_as_locked(in_moderation, action):
    out, _err = run(action.slug, "--all")

    assert "Skipped: 1" in out
    assert "skipped 1: The page is in moderation" in out
    assert "locked" not in out
    assert LLMJob.objects.get().items.get().skip_reason == "moderation"
    assert not LLMInteraction.objects.exists()


def test_one_page_in_moderation_names_moderation(in_moderation, action):
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError):
        call_command(
            "run_llm_action", action.slug, "--page", str(in_moderation.pk), stdout=out, stderr=err
        )
    assert "The page is in moderation." in err.getvalue()


def test_dry_run_shows_a_locked_or_moderated_page_it_writes_nothing_to(
    in_moderation, make_post, server_action, fake_llm
):
    locked = make_post(title="Locked by an editor")
    type(locked).objects.filter(pk=locked.pk).update(locked=True)

    for page, reason in ((in_moderation, "in moderation"), (locked, "locked")):
        out, err = run(server_action.slug, "--page", str(page.pk), "--dry-run")

        assert f"Summarize “{page.title}”" in out and "[user]" in out
        assert f"The page is {reason}" in err and "a run would skip it" in err
    assert fake_llm.requests == []
    assert not LLMInteraction.objects.exists()


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_the_wal_suggestion_is_shown_once_by_a_run_on_plain_sqlite(make_post, action, settings):
    make_post(), make_post()
    settings.DATABASES = {  # what the suggestion reads; the test's connections are unchanged
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "/srv/site/db.sqlite3"}
    }

    _out, err = run(action.slug, "--all")

    assert err.count("SQLite without WAL") == 1
    assert "PRAGMA journal_mode=WAL" in err
    _out, err = run(action.slug, "--all", "--dry-run")
    assert "WAL" not in err  # a dry run writes nothing
