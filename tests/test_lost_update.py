"""No lost update: a run's draft is written against the page's newest revision at save time.

While the model answers (the fake server holds its reply until the other writer is done),
someone else changes the page in another thread, with its own database connection: an
editor saves a draft, another job writes another field, someone publishes. The run's draft
must keep their change and add the answer; only the target field changes.

These run on the shared test database: on SQLite a plain file with Django's defaults.
"""

from __future__ import annotations

import threading

import pytest

from tests.threads import in_thread, join_checked
from wagtail_llm_actions import jobs
from wagtail_llm_actions.models import LLMInteraction
from wagtail_llm_actions.service import LLMService

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture(autouse=True)
def patient(shared_db, server_action):
    """The fake model waits for the other writer; on a busy machine that can take a while."""
    server_action.timeout = 60
    server_action.save()


def latest(page):
    return type(page).objects.get(pk=page.pk).get_latest_revision_as_object()


def reply_after(event: threading.Event, text: str):
    """A fake-server reply that waits (up to 120 s) until ``event`` is set: the model is
    "thinking" while the other writer changes the page."""

    def reply(request_json):
        event.wait(120)
        return text

    return reply


def editor_saves_while_the_model_answers(fake_llm, post, editor, saved: threading.Event):
    """A thread in which, once the model is answering, an editor saves a draft with a new
    intro; then ``saved`` is set (and the fake model answers)."""
    from blog.models import BlogPage

    def editor_saves():
        assert fake_llm.wait_for_requests(1, timeout=120)  # the model is answering now
        page = BlogPage.objects.get(pk=post.pk).get_latest_revision_as_object()
        page.intro = "Edited by a person while the model thought"
        page.save_revision(user=editor)
        saved.set()

    return in_thread(editor_saves)


def test_an_editor_save_during_a_run_is_kept(shared_db, post, server_action, fake_llm, editor):
    from blog.models import BlogPage

    saved = threading.Event()
    fake_llm.configure(reply=reply_after(saved, "Compost needs air and water."), latency=1.0)

    thread = editor_saves_while_the_model_answers(fake_llm, post, editor, saved)
    interaction = LLMService().run(server_action, post)
    join_checked(thread)

    draft = latest(post)
    assert draft.intro == "Edited by a person while the model thought"  # the editor's work
    assert draft.summary == "Compost needs air and water."  # and the answer
    interaction.refresh_from_db()
    assert interaction.rebased
    assert interaction.revision_id == BlogPage.objects.get(pk=post.pk).latest_revision_id
    assert interaction.base_revision_id != interaction.revision.pk


def test_a_run_without_concurrent_changes_is_not_rebased(shared_db, post, server_action):
    interaction = LLMService().run(server_action, post)
    assert not interaction.rebased
    assert latest(post).summary == interaction.output_value


def test_two_jobs_on_the_same_pages_both_land(
    shared_db, make_post, server_action, intro_action, fake_llm, superuser
):
    def reply(request_json):
        system = " ".join(m["content"] for m in request_json["messages"] if m["role"] == "system")
        return "SUMMARY answer" if "summarizer" in system else "INTRO answer"

    fake_llm.configure(reply=reply, latency=0.2)
    posts = [make_post() for _ in range(12)]
    ids = [p.pk for p in posts]
    summary_job = jobs.create_job(server_action, superuser, ids, force=True)
    intro_job = jobs.create_job(intro_action, superuser, ids, force=True)

    first = in_thread(lambda: jobs.run_job(summary_job.pk, threads=4))
    second = in_thread(lambda: jobs.run_job(intro_job.pk, threads=4))
    join_checked(first)
    join_checked(second)

    for job in (summary_job, intro_job):
        assert set(job.items.values_list("status", flat=True)) == {"succeeded"}
    for post in posts:
        draft = latest(post)
        assert (draft.summary, draft.intro) == ("SUMMARY answer", "INTRO answer")
    assert fake_llm.request_count == 24


def test_a_publish_during_a_run_is_built_upon_and_the_live_page_is_untouched(
    shared_db, post, server_action, fake_llm, superuser
):
    from blog.models import BlogPage

    published = threading.Event()
    fake_llm.configure(reply=reply_after(published, "A new summary."))
    old_summary = BlogPage.objects.get(pk=post.pk).summary

    def someone_publishes():
        assert fake_llm.wait_for_requests(1, timeout=120)
        page = BlogPage.objects.get(pk=post.pk).get_latest_revision_as_object()
        page.intro = "Published while the model thought"
        page.save_revision(user=superuser).publish(user=superuser)
        published.set()

    thread = in_thread(someone_publishes)
    LLMService().run(server_action, post)
    join_checked(thread)

    page = BlogPage.objects.get(pk=post.pk)
    assert page.intro == "Published while the model thought"  # live: the publish...
    assert page.summary == old_summary  # ...and not the action's answer
    assert page.has_unpublished_changes
    draft = page.get_latest_revision_as_object()
    assert draft.intro == "Published while the model thought"
    assert draft.summary == "A new summary."
    assert LLMInteraction.objects.get().rebased


def test_a_rebased_draft_is_validated_against_the_newer_revision(
    shared_db, post, server_action, fake_llm, editor, monkeypatch
):
    """The run's own copy is validated before the write; when an editor saved meanwhile, the
    draft built on their revision is validated again (here only that combination is
    invalid), and nothing is written."""
    from blog.models import BlogPage
    from django.core.exceptions import ValidationError

    from wagtail_llm_actions.exceptions import OutputRejected

    answer = "Compost needs air and water."

    def clean(self):
        if self.intro.startswith("Edited") and self.summary == answer:
            raise ValidationError("That intro and that summary clash.")

    monkeypatch.setattr(BlogPage, "clean", clean, raising=False)
    saved = threading.Event()
    fake_llm.configure(reply=reply_after(saved, answer), latency=1.0)

    thread = editor_saves_while_the_model_answers(fake_llm, post, editor, saved)
    with pytest.raises(OutputRejected, match="clash"):
        LLMService().run(server_action, post)
    join_checked(thread)

    draft = latest(post)
    assert draft.intro == "Edited by a person while the model thought"
    assert draft.summary != answer
    assert LLMInteraction.objects.get(action=server_action).output_value == answer
