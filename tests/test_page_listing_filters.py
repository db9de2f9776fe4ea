"""Page listing filters (issue 22 §2): "Has unreviewed generated text" and "Out of date for
an action" (stale: the one "unchanged" rule of issue 18, a page is stale exactly when a bulk
job of the action would run it again), in Wagtail's explorer; a fixed number of queries for
any number of pages."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.conftest import make_body
from wagtail_llm_actions.provenance import unreviewed_page_ids
from wagtail_llm_actions.service import LLMService
from wagtail_llm_actions.unchanged import stale_page_ids

pytestmark = pytest.mark.django_db


def newest(page):
    return type(page).objects.get(pk=page.pk).get_latest_revision_as_object()


def generate(action, page, user=None):
    interaction = LLMService().run(action, page, user)
    assert interaction.status == "success", interaction.error_message
    return interaction


def save_as(page, user, **changes):
    obj = newest(page)
    for name, value in changes.items():
        setattr(obj, name, value)
    return obj.save_revision(user=user)


def listed(user, parent, **params) -> set[int]:
    """Ids of the pages the explorer lists below ``parent`` with ``params`` as filters."""
    client = Client()
    client.force_login(user)
    response = client.get(reverse("wagtailadmin_explore", args=[parent.pk]), params)
    assert response.status_code == 200
    html = response.content.decode()
    pages = type(parent).objects.get(pk=parent.pk).get_children()
    return {p.pk for p in pages if reverse("wagtailadmin_pages:edit", args=[p.pk]) in html}


def test_the_explorer_offers_both_filters(superuser, blog_index, action):
    client = Client()
    client.force_login(superuser)
    html = client.get(reverse("wagtailadmin_explore", args=[blog_index.pk])).content.decode()
    assert "Has unreviewed generated text" in html
    assert "Out of date for an action" in html
    assert f'<option value="{action.pk}">Generate summary</option>' in html


def test_unreviewed_lists_pages_with_a_draft_nobody_reviewed(
    action, make_post, blog_index, superuser, editor
):
    drafted, reviewed, untouched = make_post(), make_post(), make_post()
    generate(action, drafted, superuser)
    generate(action, reviewed, superuser)
    save_as(reviewed, editor, title="Looked at")
    assert listed(superuser, blog_index, llm_unreviewed="true") == {drafted.pk}
    assert {drafted.pk, reviewed.pk, untouched.pk} <= listed(superuser, blog_index)


def test_a_second_app_draft_is_no_review_of_the_first(action, make_action, make_post, superuser):
    page = make_post()
    other = make_action(name="Highlights", slug="highlights", target_field="highlights")
    generate(action, page, superuser)
    generate(other, page, superuser)
    assert set(unreviewed_page_ids().values_list("page_id", flat=True)) == {page.pk}


def test_stale_lists_pages_whose_source_changed_since_the_answer(
    action, make_post, blog_index, superuser
):
    changed, same, never = make_post(), make_post(), make_post()
    generate(action, changed, superuser)
    generate(action, same, superuser)
    save_as(changed, superuser, body=make_body(paragraph="Worms like cardboard."))
    save_as(same, superuser, seo_title="Only the SEO title")
    assert listed(superuser, blog_index, llm_stale_for=action.pk) == {changed.pk}
    assert never.pk not in stale_page_ids(action)


def test_stale_agrees_with_the_trigger_rule(action, make_post, superuser):
    from wagtail_llm_actions.triggers import source_changed

    pages = [make_post() for _ in range(3)]
    for page in pages:
        generate(action, page, superuser)
    save_as(pages[0], superuser, body=make_body(paragraph="Worms like cardboard."))
    save_as(pages[1], superuser, title="A renamed post")  # the prompt uses {title}
    fresh = [type(p).objects.get(pk=p.pk) for p in pages]
    expected = {p.pk for p in fresh if source_changed(action, p)}
    assert set(stale_page_ids(action)) == expected == {pages[0].pk, pages[1].pk}


@pytest.mark.parametrize("count", [3, 12])
def test_filters_cost_a_fixed_number_of_queries(
    action, make_post, superuser, count, django_assert_max_num_queries
):
    pages = [make_post() for _ in range(count)]
    for page in pages:
        generate(action, page, superuser)
        save_as(page, superuser, body=make_body(paragraph=f"Changed {page.pk}."))
    with django_assert_max_num_queries(QUERIES_FOR_STALE):
        assert len(stale_page_ids(action)) == count
    with django_assert_max_num_queries(1):
        assert len(list(unreviewed_page_ids())) == 0  # the people's saves reviewed them


def test_the_action_screen_runs_the_bulk_action_on_exactly_the_stale_pages(
    action, make_post, superuser
):
    from wagtail_llm_actions.models import LLMJob

    changed, same, never = make_post(), make_post(), make_post()
    for page in (changed, same):
        generate(action, page, superuser)
    save_as(changed, superuser, body=make_body(paragraph="Worms like cardboard."))
    client = Client()
    client.force_login(superuser)
    screen = client.get(reverse("wagtail_llm_actions_report:action", args=[action.pk]))
    html = screen.content.decode()
    assert "1 page is out of date for this action: a job would run it again." in html
    link = html.split("data-llm-stale", 1)[1].split('button-small" href="', 1)[1].split('"', 1)[0]
    link = link.replace("&amp;", "&")
    confirm = client.get(link).content.decode()
    assert f'value="{action.pk}" selected' in confirm  # the action comes chosen
    response = client.post(link, {"action": action.pk})
    assert response.status_code == 302
    job = LLMJob.objects.get()
    assert list(job.items.values_list("page_id", flat=True)) == [changed.pk]
    assert never.pk not in job.items.values_list("page_id", flat=True)


# -- "stale" is the one unchanged rule (issue 18): stale exactly when a job would run the page --


def run_in_editor(action, page, user, **form):
    """The editor's run on the form (as saved, or with ``form``'s unsaved edits): the answer
    fills the form, nothing is saved."""
    from wagtail_llm_actions import editor

    obj = newest(page)
    for name, value in form.items():
        setattr(obj, name, value)
    job = editor.create_editor_job(action, page, obj, user)
    editor.enqueue_editor_job(job, inline=True)
    return job.items.get().interaction


def job_would_run(action, user, pages) -> set[int]:
    """The pages of ``pages`` a bulk job of ``action`` would not skip as unchanged."""
    from wagtail_llm_actions import jobs

    checks = jobs.check_content(action, [p.pk for p in pages])
    return {pk for pk, check in checks.items() if check.skip != jobs.SKIP_UNCHANGED}


def test_an_editor_answer_never_saved_makes_the_page_stale(action, make_post, superuser):
    page = make_post()
    interaction = run_in_editor(action, page, superuser)
    assert interaction.outcome == "pending"
    assert set(stale_page_ids(action)) == {page.pk} == job_would_run(action, superuser, [page])


def test_a_kept_draft_with_unchanged_source_is_not_stale(action, make_post, superuser):
    page = make_post()
    generate(action, page, superuser)
    # An editor tried the action on edits they never saved: the page still holds the draft.
    run_in_editor(action, page, superuser, body=make_body(paragraph="Typed, never saved."))
    assert stale_page_ids(action) == []
    assert job_would_run(action, superuser, [page]) == set()


def test_a_source_edit_after_a_kept_draft_is_stale(action, make_post, superuser):
    page = make_post()
    generate(action, page, superuser)
    save_as(page, superuser, body=make_body(paragraph="Worms like cardboard."))
    assert stale_page_ids(action) == [page.pk]
    # The editor answered the new source, but nobody saved it: a job still runs the page.
    run_in_editor(action, page, superuser)
    assert stale_page_ids(action) == [page.pk]
    assert job_would_run(action, superuser, [page]) == {page.pk}


def test_a_generated_value_replaced_by_a_person_is_stale(action, make_post, superuser):
    page = make_post()
    generate(action, page, superuser)
    save_as(page, superuser, summary="A summary a person wrote instead.")
    assert stale_page_ids(action) == [page.pk] == sorted(job_would_run(action, superuser, [page]))


def test_a_persons_discard_with_unchanged_source_is_not_stale(action, make_post, superuser):
    from wagtail_llm_actions import editor, review
    from wagtail_llm_actions.models import LLMInteraction

    in_report, in_editor = make_post(), make_post()
    drafted = generate(action, in_report, superuser)
    review.discard(LLMInteraction.objects.get(pk=drafted.pk), superuser)  # Discard in the report
    answer = run_in_editor(action, in_editor, superuser)
    assert editor.set_outcome(answer, "discarded")
    for page in (in_report, in_editor):
        run_in_editor(action, page, superuser, body=make_body(paragraph="Never saved."))
    assert stale_page_ids(action) == []
    assert job_would_run(action, superuser, [in_report, in_editor]) == set()


@pytest.mark.parametrize("count", [5, 50])
def test_stale_agrees_with_a_job_in_the_same_number_of_queries_for_5_or_50_pages(
    action, make_post, superuser, count
):
    """Pages in every state: a kept draft, a kept draft then a source edit, a draft
    published, an editor answer never saved, a discarded answer. The filter lists exactly
    the pages a job would run, in as many queries for 50 pages as for 5."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from wagtail_llm_actions import review
    from wagtail_llm_actions.models import LLMInteraction

    pages = [make_post() for _ in range(count)]
    for i, page in enumerate(pages):
        state = i % 5
        if state == 3:
            run_in_editor(action, page, superuser)
            continue
        interaction = generate(action, page, superuser)
        if state == 1:
            save_as(page, superuser, body=make_body(paragraph=f"Changed {page.pk}."))
        elif state == 2:
            newest(page).save_revision(user=superuser).publish()
        elif state == 4:
            review.discard(LLMInteraction.objects.get(pk=interaction.pk), superuser)
    with CaptureQueriesContext(connection) as ctx:
        stale = stale_page_ids(action)
    expected = {p.pk for i, p in enumerate(pages) if i % 5 in (1, 3)}
    assert set(stale) == expected == job_would_run(action, superuser, pages)
    assert len(ctx.captured_queries) == QUERIES_FOR_STALE, [q["sql"] for q in ctx.captured_queries]


#: The filter's queries, whatever the number of pages: the answered pages (a subquery of the
#: first), their specific rows (one page type), the drafts' revisions, their locales; the
#: answers kept.
QUERIES_FOR_STALE = 5


def test_stale_reads_a_draft_as_a_run_does_title_url_and_locale_included(
    make_action, make_post, superuser
):
    """The filter loads drafts without a query a page; what it renders is what a run would
    send: a draft that renamed the page and changed its slug, with a prompt using {title},
    {url} and {locale}, hashes as the run's own working copy does."""
    from tests.conftest import make_prompt
    from wagtail_llm_actions.service import working_copy
    from wagtail_llm_actions.unchanged import working_copies

    action = make_action(
        prompt=make_prompt("where", "Summarise “{title}” ({url}, {locale}):\n\n{body}")
    )
    page = make_post()
    generate(action, page, superuser)
    assert stale_page_ids(action) == []
    save_as(page, superuser, title="Moved and renamed", slug="moved-and-renamed")
    fresh = type(page).objects.get(pk=page.pk)
    service = LLMService()
    run_reads, _revision = working_copy(fresh)
    filter_reads = working_copies([page.pk])[page.pk]
    assert filter_reads.url_path == run_reads.url_path
    assert filter_reads.url_path.endswith("/moved-and-renamed/")
    assert (
        service.prepare(action, filter_reads).inputs_hash
        == service.prepare(action, run_reads).inputs_hash
    )
    assert stale_page_ids(action) == [page.pk]
