"""Page listing filters (issue 22 §2): "Has unreviewed generated text" and "Source changed
since an action's answer", in Wagtail's explorer; a fixed number of queries for any number
of pages."""

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
    assert "Source changed since an action’s answer" in html
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
    with django_assert_max_num_queries(3):
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
    assert "The source of 1 page changed since this action’s answer." in html
    link = html.split("data-llm-stale", 1)[1].split('button-small" href="', 1)[1].split('"', 1)[0]
    link = link.replace("&amp;", "&")
    confirm = client.get(link).content.decode()
    assert f'value="{action.pk}" selected' in confirm  # the action comes chosen
    response = client.post(link, {"action": action.pk})
    assert response.status_code == 302
    job = LLMJob.objects.get()
    assert list(job.items.values_list("page_id", flat=True)) == [changed.pk]
    assert never.pk not in job.items.values_list("page_id", flat=True)
