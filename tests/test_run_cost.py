"""What one run costs in queries, and the cheap checks that keep it there.

A run makes the queries of its floor (read the latest revision, save a revision) plus the few
its guarantees need: one lock check before the call; storing the answer (one existence check,
one INSERT); and in the write transaction the row read under lock, its lock check (with the
existence check), the interaction's UPDATE and the history entry. The tests pin that, and show
that the cheaper lock check still refuses every lock Wagtail knows (locked, scheduled to go
live, in moderation) before the call and at write time.
"""

from __future__ import annotations

import datetime

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.db.models.signals import pre_save
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from wagtail.models import PageLogEntry, Revision, Workflow, WorkflowPage, WorkflowTask
from wagtail.models.workflows import GroupApprovalTask
from wagtail.signal_handlers import disable_reference_index_auto_update

from wagtail_llm_actions import rowstate
from wagtail_llm_actions.exceptions import PageInModeration, PageLocked, WriteFailed
from wagtail_llm_actions.models import LLMAction, LLMInteraction
from wagtail_llm_actions.service import LOG_ACTION, LLMService
from wagtail_llm_actions.signals import answer_stored

pytestmark = pytest.mark.django_db

#: Queries of one run beyond its floor: the lock check before the call (1); the budgets that
#: apply, read before the call (1: a run's whole budget check when none applies); storing the
#: answer: its existence check and INSERT in a transaction (4, with the savepoint pair a test's
#: transaction turns it into); writing the draft: the row read again, its lock check (which
#: also asks whether the revision read and the action still exist), the interaction's UPDATE
#: and the history entry, in a transaction (6); less the savepoint pairs of Wagtail's atomic
#: ``save_revision()`` and ``Page.save()``, which the floor makes in a test's transaction and
#: the run, inside its own write transaction, does not (-4).
RUN_QUERIES_OVER_FLOOR = 8


def over_floor() -> int:
    """PostgreSQL locks a page's base row with a query of its own before reading the page."""
    return RUN_QUERIES_OVER_FLOOR + (1 if connection.features.has_select_for_update else 0)


def reload(page):
    return type(page).objects.get(pk=page.pk)


def drafts(page) -> int:
    return PageLogEntry.objects.filter(page=page, action=LOG_ACTION).count()


def floor_queries(page) -> int:
    """Queries of reading the latest revision and saving a new one (the reference index, which
    a draft leaves unchanged, skipped as the run skips it)."""
    obj = reload(page)
    with CaptureQueriesContext(connection) as ctx:
        draft = obj.get_latest_revision_as_object()
        with disable_reference_index_auto_update():
            draft.save_revision(log_action=False, clean=True)
    return len(ctx.captured_queries)


def test_one_run_makes_only_the_queries_its_guarantees_need(post, action):
    LLMService().run(action, reload(post))  # warm: content types, a draft revision to read
    floor = floor_queries(post)
    obj = reload(post)
    with CaptureQueriesContext(connection) as ctx:
        interaction = LLMService().run(action, obj)
    sql = "\n".join(query["sql"] for query in ctx.captured_queries)
    assert len(ctx.captured_queries) <= floor + over_floor(), sql
    assert interaction.status == "success"
    assert sql.count('INSERT INTO "wagtail_llm_actions_llminteraction"') == 1
    assert sql.count('UPDATE "wagtail_llm_actions_llminteraction"') == 1
    assert sql.count('FROM "wagtail_llm_actions_llmbudget"') == 1  # the budget check: one query
    stored = LLMInteraction.objects.get(pk=interaction.pk)  # what the write's UPDATE stored
    assert (stored.status, stored.outcome, stored.rebased) == ("success", "drafted", False)
    assert stored.revision_id == reload(post).latest_revision_id
    assert stored.base_revision_id == obj.latest_revision_id
    assert stored.action_id == action.pk
    assert stored.previous_value == interaction.previous_value
    assert 'FROM "wagtailcore_workflowstate"' in sql  # asked, in the lock checks
    assert "wagtailcore_workflowstate" not in sql.replace(
        'SELECT 1 FROM "wagtailcore_workflowstate"', ""
    )  # …and never read in full when there is no workflow


def test_the_run_leaves_no_lock_state_cached_on_the_callers_page(post, action):
    obj = reload(post)
    LLMService().run(action, obj)
    assert "scheduled_revision" not in obj.__dict__
    assert "_current_workflow_states" not in obj.__dict__


# -- every Wagtail lock is still refused --------------------------------------------------


def schedule(page):
    """A revision approved to go live next week (Wagtail's "scheduled for publishing" lock)."""
    revision = reload(page).save_revision()
    revision.approved_go_live_at = timezone.now() + datetime.timedelta(days=7)
    revision.save(update_fields=["approved_go_live_at"])


@pytest.fixture
def review_workflow(blog_index):
    moderators = Group.objects.create(name="Reviewers")
    task = GroupApprovalTask.objects.create(name="Review")
    task.groups.set([moderators])
    workflow = Workflow.objects.create(name="Review first", active=True)
    WorkflowTask.objects.create(workflow=workflow, task=task.task_ptr, sort_order=1)
    WorkflowPage.objects.create(workflow=workflow, page=blog_index)
    return workflow


def test_a_page_scheduled_to_go_live_is_refused_before_the_call(post, action):
    schedule(post)
    with pytest.raises(PageLocked):
        LLMService().run(action, reload(post))
    assert LLMInteraction.objects.count() == 0  # nothing paid for
    assert drafts(post) == 0


def test_a_page_in_moderation_is_refused_before_the_call(post, action, review_workflow, editor):
    review_workflow.start(reload(post), editor)
    with pytest.raises(PageLocked):
        LLMService().run(action, reload(post))
    assert LLMInteraction.objects.count() == 0


def test_a_locked_page_is_refused_before_the_call(post, action, superuser):
    type(post).objects.filter(pk=post.pk).update(locked=True, locked_by=superuser)
    with pytest.raises(PageLocked):
        LLMService().run(action, reload(post))
    assert LLMInteraction.objects.count() == 0


@pytest.fixture
def after_the_answer():
    """Run a function right after the answer is stored, before the draft is written."""
    handlers = []

    def register(func):
        def handler(sender, interaction, **kwargs):
            func(interaction)

        answer_stored.connect(handler, weak=False)
        handlers.append(handler)

    yield register
    for handler in handlers:
        answer_stored.disconnect(handler)


def test_a_page_scheduled_during_the_call_gets_no_draft(post, action, after_the_answer):
    after_the_answer(lambda interaction: schedule(post))
    revisions = Revision.objects.count()
    with pytest.raises(PageLocked) as caught:
        LLMService().run(action, reload(post))
    interaction = caught.value.interaction
    assert interaction.status == "answered"  # the paid answer is kept, to apply later
    assert interaction.output_value
    assert drafts(post) == 0
    assert Revision.objects.count() == revisions + 1  # the scheduling revision only


def test_a_page_sent_to_moderation_during_the_call_gets_no_draft(
    post, action, review_workflow, editor, after_the_answer
):
    after_the_answer(lambda interaction: review_workflow.start(reload(post), editor))
    with pytest.raises(PageInModeration) as caught:
        LLMService().run(action, reload(post))
    assert caught.value.interaction.status == "answered"
    assert drafts(post) == 0


def test_with_workflows_disabled_a_workflow_state_does_not_lock(
    post, action, review_workflow, editor, settings
):
    review_workflow.start(reload(post), editor)
    settings.WAGTAIL_WORKFLOW_ENABLED = False
    interaction = LLMService().run(action, reload(post))
    assert interaction.status == "success"


# -- the probes themselves ----------------------------------------------------------------


def test_lock_flags_find_a_schedule_and_a_workflow(post, review_workflow, editor):
    assert rowstate.lock_flags(reload(post)) == rowstate.LockFlags(False, False)
    schedule(post)
    assert rowstate.lock_flags(reload(post)) == rowstate.LockFlags(True, False)
    review_workflow.start(reload(post), editor)
    assert rowstate.lock_flags(reload(post)) == rowstate.LockFlags(True, True)


def test_lock_flags_of_an_unsaved_page_are_not_asked(blog_index):
    from blog.models import BlogPage

    assert rowstate.lock_flags(BlogPage(title="New")) is None


def test_existing_names_the_rows_still_there(post, action):
    rows = {
        "page": (type(post), post.pk),
        "revision": (Revision, post.latest_revision_id),
        "action": (LLMAction, action.pk),
        "gone": (LLMAction, action.pk + 1000),
    }
    with CaptureQueriesContext(connection) as ctx:
        assert rowstate.existing(rows, lock="page") == {"page", "revision", "action"}
    assert len(ctx.captured_queries) == 1
    rows["page"] = (type(post), post.pk + 1000)  # a locked row that is gone
    assert rowstate.existing(rows, lock="page") == {"revision", "action"}
    assert rowstate.existing({}) == set()


def test_a_draft_whose_save_fails_keeps_the_answer_and_writes_nothing(
    post, action, after_the_answer
):
    """Wagtail's ``save_revision()`` runs without its savepoints inside the write
    transaction: an error there still rolls the write back cleanly, and the answer stays
    stored, to apply later."""

    def fail(sender, instance, **kwargs):
        raise RuntimeError("disk full")

    # The revision fails to save once the answer is stored (before the draft is written).
    after_the_answer(
        lambda interaction: pre_save.connect(
            fail, sender=Revision, weak=False, dispatch_uid="test-failing-draft"
        )
    )
    revisions = Revision.objects.count()
    try:
        with pytest.raises(WriteFailed) as caught:
            LLMService().run(action, reload(post))
    finally:
        pre_save.disconnect(sender=Revision, dispatch_uid="test-failing-draft")
    interaction = LLMInteraction.objects.get(pk=caught.value.interaction.pk)
    assert interaction.status == "answered"  # the paid answer is kept
    assert interaction.output_value
    assert interaction.revision_id is None
    assert drafts(post) == 0
    assert Revision.objects.count() == revisions
    assert reload(post).latest_revision_id == post.latest_revision_id


def test_read_row_reads_the_row_as_the_orm_does_in_one_query(post):
    model = type(post)
    rowstate.read_row(model, post.pk)  # compiled once
    type(post).objects.filter(pk=post.pk).update(title="Renamed meanwhile")
    with CaptureQueriesContext(connection) as ctx:
        fresh = rowstate.read_row(model, post.pk)
    assert len(ctx.captured_queries) == 1
    orm = model.objects.get(pk=post.pk)
    assert type(fresh) is model
    assert fresh.title == "Renamed meanwhile"
    for field in model._meta.concrete_fields:
        assert getattr(fresh, field.attname) == getattr(orm, field.attname), field.name
    assert list(fresh.body.raw_data) == list(orm.body.raw_data)
    assert not fresh._state.adding
    assert rowstate.read_row(model, post.pk + 1000) is None
