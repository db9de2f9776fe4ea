"""``run_llm_action --model app_label.ModelName`` (``--id``, ``--all``, ``--dry-run``) and
bulk jobs over snippets (issue 23 §2)."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from wagtail_llm_actions import jobs
from wagtail_llm_actions.models import InteractionOutcome, LLMInteraction

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command("run_llm_action", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_one_snippet_by_id_then_skipped_as_unchanged(dish, dish_action, fake_llm):
    from tests.testapp.models import Dish

    fake_llm.configure(reply="A stew.")
    out = run(dish_action.slug, "--model", "testapp.Dish", "--id", str(dish.pk))
    assert "draft revision" in out
    assert Dish.objects.get(pk=dish.pk).get_latest_revision_as_object().summary == "A stew."
    assert "skipped" in run(dish_action.slug, "--model", "testapp.Dish", "--id", str(dish.pk))
    assert fake_llm.request_count == 1


def test_dry_run_prints_the_messages_and_writes_nothing(dish, dish_action, fake_llm):
    out = run(dish_action.slug, "--model", "testapp.dish", "--all", "--dry-run")
    assert "Cassoulet" in out and "[user]" in out
    assert fake_llm.request_count == 0
    assert not LLMInteraction.objects.exists()


def test_all_snippets_run_as_a_job(dish, dish_action, fake_llm, superuser):
    from tests.testapp.models import Dish

    other = Dish.objects.create(name="Ratatouille", description="Summer vegetables.", live=True)
    fake_llm.configure(reply="Short.")
    out = run(dish_action.slug, "--model", "testapp.Dish", "--all", "--user", superuser.username)
    assert "2 snippet(s) to run" in out
    for obj in (dish, other):
        assert Dish.objects.get(pk=obj.pk).get_latest_revision_as_object().summary == "Short."
        assert Dish.objects.get(pk=obj.pk).summary == ""
    assert LLMInteraction.objects.filter(outcome=InteractionOutcome.DRAFTED).count() == 2


def test_bad_input_is_refused(dish, tip, dish_action, make_snippet_action, fake_llm):
    from tests.testapp.models import Tip

    with pytest.raises(CommandError, match="not a registered snippet"):
        run(dish_action.slug, "--model", "auth.User", "--all")
    with pytest.raises(CommandError, match="no model"):
        run(dish_action.slug, "--model", "testapp.Nothing", "--all")
    with pytest.raises(CommandError, match="does not apply"):
        run(dish_action.slug, "--model", "testapp.Tip", "--all")
    action = make_snippet_action(Tip, slug="tips", source_field="text")
    with pytest.raises(CommandError, match="keep no revisions"):
        run(action.slug, "--model", "testapp.Tip", "--id", str(tip.pk))
    assert Tip.objects.get(pk=tip.pk).summary == "old"
    assert fake_llm.request_count == 0


def test_a_job_writes_snippets_without_revisions_directly(
    tip, tip_action, fake_llm, superuser, django_user_model
):
    from tests.snippets import snippet_editor
    from tests.testapp.models import Tip

    second = Tip.objects.create(title="Salt", text="Salt pasta water well.")
    fake_llm.configure(reply="Done.")
    plan = jobs.plan_snippet_job(tip_action, superuser, Tip, [tip.pk, second.pk, 999])
    assert (plan.total, plan.eligible, plan.skipped) == (3, 2, {"deleted": 1})
    assert plan.estimate.total_tokens > 0
    job = jobs.create_snippet_job(tip_action, superuser, Tip, [tip.pk, second.pk])
    jobs.run_job(job.pk, threads=1)
    assert set(job.items.values_list("status", flat=True)) == {"succeeded"}
    assert set(Tip.objects.values_list("summary", flat=True)) == {"Done."}
    # Nobody else's snippets: a user who may not change tips gets every item skipped.
    stranger = snippet_editor(django_user_model, name="stranger")
    job = jobs.create_snippet_job(tip_action, stranger, Tip, [tip.pk], force=True)
    assert list(job.items.values_list("skip_reason", flat=True)) == ["no_permission"]
