"""Detail, rerun, discard, per-action view and "try on a page"; the permission matrix."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.messages import get_messages
from django.urls import reverse
from openpyxl import load_workbook
from wagtail.models import PageLogEntry

from tests.browser.qworker import run_queued_tasks
from tests.interactions_factory import make_interactions, make_one
from tests.queued import finish_queued
from wagtail_llm_actions.exceptions import LLMActionError
from wagtail_llm_actions.models import LLMInteraction
from wagtail_llm_actions.review import DISCARD_LOG_ACTION
from wagtail_llm_actions.service import LOG_ACTION, LLMService

pytestmark = pytest.mark.django_db


def url(name, *args):
    return reverse(f"wagtail_llm_actions_report:{name}", args=args)


def tryout_url(action):
    return reverse("wagtail_llm_actions_tryout:try", args=[action.pk])


def reload(page):
    return type(page).objects.get(pk=page.pk)


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def viewer(django_user_model, db):
    """Admin access and the view_llminteraction permission, but no page permissions."""
    user = django_user_model.objects.create_user("viewer", "viewer@example.com", "password")
    group = Group.objects.create(name="LLM auditors")
    group.permissions.add(
        Permission.objects.get(codename="access_admin"),
        Permission.objects.get(
            content_type__app_label="wagtail_llm_actions", codename="view_llminteraction"
        ),
    )
    user.groups.add(group)
    return user


@pytest.fixture
def run(post, action, superuser):
    """A real run by the superuser: a draft revision holding a generated summary."""
    return LLMService().run(action, post, user=superuser)


# -- detail ----------------------------------------------------------------------------------


def test_detail_shows_what_was_sent_received_and_written(client, superuser, post, run, action):
    client.force_login(superuser)
    response = client.get(url("detail", run.pk))
    assert response.status_code == 200
    html = response.content.decode()
    assert f"Interaction #{run.pk}" in html
    sent = run.messages[-1]["content"]
    assert "Summarize “Composting in a small flat”" in sent
    assert response.context["interaction"].messages == run.messages
    assert "Summarize &ldquo;Composting" in html or "Summarize “Composting" in html
    assert "&quot;timeout&quot;: 5" in html  # parameters, as JSON
    assert run.response_text[:30].replace("'", "&#x27;") in html
    assert "Saved as draft" in html
    assert run.finish_reason in html
    prompt_revision_url = reverse(
        "wagtailsnippets_wagtail_llm_actions_llmprompt:revisions_revert",
        args=[action.prompt_id, run.prompt_revision_id],
    )
    assert prompt_revision_url in html
    compare_url = reverse(
        "wagtailadmin_pages:revisions_compare",
        args=[post.pk, run.base_revision_id, run.revision_id],
    )
    assert compare_url in html
    assert client.get(compare_url).status_code == 200
    assert client.get(prompt_revision_url).status_code == 200
    assert reverse("wagtailadmin_pages:edit", args=[post.pk]) in html
    assert "Open in editor" in html and "Rerun" in html and "Discard" in html


def test_detail_of_a_failed_call_shows_the_error(client, superuser, post, action):
    failed = make_one(
        action=action,
        page=post,
        status="error",
        outcome="",
        error_code="rate_limit",
        error_message="The provider is rate limiting requests.",
        finish_reason="",
    )
    client.force_login(superuser)
    html = client.get(url("detail", failed.pk)).content.decode()
    assert "rate_limit" in html and "The provider is rate limiting requests." in html
    assert "Discard" not in html  # nothing was written


def test_an_answer_cut_off_is_flagged_in_the_detail_the_listing_and_the_export(
    client, superuser, post, action
):
    cut = make_one(
        action=action,
        page=post,
        finish_reason="length",
        answer_truncated=True,
        parameters={"model": "local/extractive", "max_tokens": 30},
    )
    whole = make_one(action=action, page=post, finish_reason="stop")
    client.force_login(superuser)

    detail = client.get(url("detail", cut.pk)).content.decode()
    listing = client.get(url("index")).content.decode()
    exported = b"".join(client.get(url("index") + "?export=csv").streaming_content).decode()

    assert "data-llm-answer-cut" in detail
    assert "cut off at the action&#x27;s max tokens (30)" in detail
    assert "data-llm-answer-cut" not in client.get(url("detail", whole.pk)).content.decode()
    row = listing.split(f'data-interaction="{cut.pk}"')[1].split("</tr>")[0]
    assert "data-llm-answer-cut" in row
    other = listing.split(f'data-interaction="{whole.pk}"')[1].split("</tr>")[0]
    assert "data-llm-answer-cut" not in other
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert {row["ID"]: row["Answer cut off"] for row in rows} == {
        str(cut.pk): "True",
        str(whole.pk): "False",
    }


def test_detail_query_count_is_constant(client, superuser, run, django_assert_max_num_queries):
    client.force_login(superuser)
    client.get(url("detail", run.pk))
    with django_assert_max_num_queries(12):
        client.get(url("detail", run.pk))


def test_missing_interaction_is_404(client, superuser):
    client.force_login(superuser)
    assert client.get(url("detail", 999999)).status_code == 404


def test_secrets_never_appear_in_detail_or_exports(
    client, superuser, post, server_action, fake_llm
):
    secret = "sk-test-secret-123"
    ok = LLMService().run(server_action, post, user=superuser)
    fake_llm.status = 401
    fake_llm.error_message = f"Incorrect API key provided: {secret}."
    with pytest.raises(LLMActionError):
        LLMService().run(server_action, post, user=superuser)
    failed = LLMInteraction.objects.get(status="error")
    client.force_login(superuser)
    pages = [
        client.get(url("detail", ok.pk)).content,
        client.get(url("detail", failed.pk)).content,
        client.get(url("index")).content,
        b"".join(client.get(url("index") + "?export=csv").streaming_content),
    ]
    xlsx = b"".join(client.get(url("index") + "?export=xlsx").streaming_content)
    cells = " ".join(
        str(v) for row in load_workbook(io.BytesIO(xlsx)).active.values for v in row if v
    )
    assert "TEST_LLM_API_KEY" in pages[0].decode()  # the *name* of the key is shown, not its value
    for body in pages:
        assert secret.encode() not in body
        assert b"Bearer " not in body
    assert secret not in cells
    assert "rejected the API key" in pages[1].decode()


# -- rerun -----------------------------------------------------------------------------------


def test_rerun_writes_a_new_draft_with_the_current_config(client, editor, post, run, action):
    action.context_message = "Answer in one sentence."
    action.save()
    client.force_login(editor)
    response = client.post(url("rerun", run.pk))
    assert not LLMInteraction.objects.exclude(pk=run.pk).exists()  # queued, not run here
    response = finish_queued(client, response)
    new = LLMInteraction.objects.exclude(pk=run.pk).get()
    assert response.status_code == 302
    assert response["Location"] == url("detail", new.pk)
    assert new.trigger == "rerun"
    assert new.user == editor
    assert {"role": "system", "content": "Answer in one sentence."} in new.messages
    page = reload(post)
    assert page.latest_revision_id == new.revision_id != run.revision_id
    assert new.base_revision_id == run.revision_id
    assert page.summary == ""  # live page untouched
    assert any("ran again" in m for m in messages_of(response))


def test_rerun_error_becomes_a_message_not_a_500(client, superuser, run, action):
    action.enabled = False
    action.save()
    client.force_login(superuser)
    response = client.post(url("rerun", run.pk), follow=True)
    assert response.status_code == 200
    assert any("disabled" in m for m in messages_of(response))
    assert LLMInteraction.objects.count() == 1


def test_rerun_asks_first_and_discard_refuses_get(client, superuser, run):
    client.force_login(superuser)
    confirm = client.get(url("rerun", run.pk))  # a confirmation, running nothing
    assert confirm.status_code == 200 and "data-llm-confirm" in confirm.content.decode()
    assert LLMInteraction.objects.count() == 1
    assert client.get(url("discard", run.pk)).status_code == 405


def test_rerun_needs_a_csrf_token(superuser, run):
    from django.test import Client

    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(superuser)
    assert csrf_client.post(url("rerun", run.pk)).status_code == 403
    assert LLMInteraction.objects.count() == 1


# -- discard ---------------------------------------------------------------------------------


def test_discard_reverts_the_field_in_a_new_draft(client, editor, post, run):
    draft_before = reload(post).get_latest_revision_as_object()
    assert draft_before.summary == run.output_value != ""
    client.force_login(editor)
    response = client.post(url("discard", run.pk))
    assert response.status_code == 302
    page = reload(post)
    assert page.latest_revision_id != run.revision_id
    draft = page.get_latest_revision_as_object()
    assert draft.summary == ""  # the value before the run
    assert draft.intro == draft_before.intro  # other draft work kept
    assert page.summary == ""
    run.refresh_from_db()
    assert run.outcome == "discarded"
    entry = PageLogEntry.objects.get(page=post, action=DISCARD_LOG_ACTION)
    assert entry.revision_id == page.latest_revision_id
    assert entry.user == editor
    assert "Discarded" in entry.message
    html = client.get(url("detail", run.pk)).content.decode()
    assert "Discarded" in html
    assert 'action="' + url("discard", run.pk) not in html  # no second discard


def test_discard_restores_tags(client, superuser, make_post, make_action):
    page = make_post(title="Tagged post")
    page.tags.add("garden")
    page.save_revision().publish()
    tags = make_action(
        name="Suggest tags",
        slug="suggest-tags",
        target_field="tags",
        model="local/keywords",
        output_mode="tags",
    )
    interaction = LLMService().run(tags, page, user=superuser)
    assert interaction.previous_value == "garden"
    client.force_login(superuser)
    response = client.post(url("discard", interaction.pk), follow=True)
    assert any("discarded" in m for m in messages_of(response))
    draft = reload(page).get_latest_revision_as_object()
    assert [t.name for t in draft.tags.all()] == ["garden"]


def test_discard_restores_rich_text(client, superuser, make_post, make_action):
    page = make_post(title="Rich", highlights="<p>Hand-written highlights.</p>")
    highlights = make_action(
        name="Highlights", slug="highlights", target_field="highlights", output_mode="rich_text"
    )
    interaction = LLMService().run(highlights, page, user=superuser)
    generated = reload(page).get_latest_revision_as_object().highlights
    assert generated != "<p>Hand-written highlights.</p>"
    client.force_login(superuser)
    client.post(url("discard", interaction.pk))
    draft = reload(page).get_latest_revision_as_object()
    assert draft.highlights == "<p>Hand-written highlights.</p>"


def test_discard_refuses_a_published_draft(client, superuser, post, run):
    reload(post).get_latest_revision().publish()
    latest = reload(post).latest_revision_id
    client.force_login(superuser)
    response = client.post(url("discard", run.pk), follow=True)
    assert response.status_code == 200
    assert any("has been published" in m for m in messages_of(response))
    assert reload(post).latest_revision_id == latest
    run.refresh_from_db()
    assert run.outcome == "drafted"


def test_discard_refuses_when_the_field_was_edited_since(client, superuser, post, run):
    draft = reload(post).get_latest_revision_as_object()
    draft.summary = "Rewritten by hand."
    draft.save_revision(user=superuser)
    client.force_login(superuser)
    response = client.post(url("discard", run.pk), follow=True)
    assert any("has changed since" in m for m in messages_of(response))
    assert reload(post).get_latest_revision_as_object().summary == "Rewritten by hand."


# -- per-action view, try on a page, keep ----------------------------------------------------


def test_action_view_shows_runs_success_rate_latency_tokens_and_cost(
    client, superuser, post, action
):
    make_interactions(3, action=action, page=post, latency_ms=100, cost=Decimal("0.5"))
    make_interactions(
        1,
        action=action,
        page=post,
        status="error",
        latency_ms=500,
        cost=None,
        prompt_tokens=None,
        completion_tokens=None,
        total_tokens=None,
    )
    client.force_login(superuser)
    response = client.get(url("action", action.pk))
    html = response.content.decode()
    assert 'data-stat="calls">4<' in html
    assert 'data-stat="success-rate">75.0%<' in html
    assert 'data-stat="latency">200 ms<' in html
    assert 'data-stat="tokens">90<' in html  # 360 tokens over 4 calls
    assert 'data-stat="cost">$1.50<' in html
    assert html.count("data-interaction=") == 4
    assert 'class="llm-chart"' in html
    assert reverse("wagtailsnippets_wagtail_llm_actions_llmaction:edit", args=[action.pk]) in html


def test_action_view_query_count_does_not_grow_with_rows(
    client, superuser, post, action, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_interactions(10, action=action, page=post, user=superuser)
    client.force_login(superuser)
    client.get(url("action", action.pk))
    with CaptureQueriesContext(connection) as small:
        client.get(url("action", action.pk))
    make_interactions(990, action=action, page=post, user=superuser)
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = client.get(url("action", action.pk))
    assert 'data-stat="calls">1,000<' in response.content.decode()


def test_action_snippet_links_to_its_runs(client, superuser, action):
    client.force_login(superuser)
    link = url("action", action.pk)
    listing = client.get(reverse("wagtailsnippets_wagtail_llm_actions_llmaction:list"))
    assert link in listing.content.decode()
    edit = client.get(
        reverse("wagtailsnippets_wagtail_llm_actions_llmaction:edit", args=[action.pk])
    )
    assert link in edit.content.decode()


def test_try_on_a_page_compares_then_keep_saves_a_draft(client, editor, post, run, action):
    revision_before = reload(post).latest_revision_id
    action.model = "local/echo"
    action.save()
    client.force_login(editor)
    response = finish_queued(client, client.post(url("try", action.pk), {"page": post.pk}))
    new = LLMInteraction.objects.exclude(pk=run.pk).get()
    assert response["Location"] == tryout_url(action) + f"?interaction={new.pk}"
    # a try on a page is recorded as a test, not as a rerun (issue 21: the audit trail)
    assert new.outcome == "pending" and new.revision_id is None and new.trigger == "test"
    assert reload(post).latest_revision_id == revision_before  # nothing saved yet

    compare = client.get(url("compare", new.pk))
    assert compare.context["previous"] == run
    html = compare.content.decode()
    assert "Previous answer" in html and "New answer" in html
    assert "Keep as draft" in html

    response = client.post(url("keep", new.pk))
    assert response.status_code == 302
    new.refresh_from_db()
    page = reload(post)
    assert new.outcome == "drafted"
    assert page.latest_revision_id == new.revision_id != revision_before
    assert page.get_latest_revision_as_object().summary == new.output_value
    assert new.output_value != run.output_value  # echo differs from the extractive summary
    assert PageLogEntry.objects.filter(action=LOG_ACTION, revision_id=new.revision_id).exists()
    # kept once only
    response = client.post(url("keep", new.pk), follow=True)
    assert any("awaiting review" in m for m in messages_of(response))


def test_try_on_a_page_of_the_wrong_type_is_refused_politely(client, superuser, action, blog_index):
    client.force_login(superuser)
    response = client.post(url("try", action.pk), {"page": blog_index.pk}, follow=True)
    assert response.status_code == 200
    assert any("Choose a page" in m for m in messages_of(response))
    assert not LLMInteraction.objects.exists()


def test_discarding_a_pending_answer_saves_nothing(client, superuser, post, action):
    pending = LLMService().run(action, post, user=superuser, save=False)
    latest = reload(post).latest_revision_id
    client.force_login(superuser)
    client.post(url("discard", pending.pk))
    pending.refresh_from_db()
    assert pending.outcome == "discarded"
    assert reload(post).latest_revision_id == latest


# -- permission matrix -----------------------------------------------------------------------

USERS = ["superuser", "viewer", "editor", "outsider", "anonymous", "non_admin"]
SEES = {"superuser", "viewer", "editor"}  # may see the superuser's run on the blog post
EDITS = {"superuser", "editor"}  # may also act on it


def login(client, request, who):
    if who != "anonymous":
        client.force_login(request.getfixturevalue(who))


def assert_login_redirect(response):
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("wagtailadmin_login"))


def assert_refused(response, who):
    if who in ("anonymous", "non_admin"):
        assert_login_redirect(response)
    else:
        # Wagtail turns PermissionDenied into a redirect to the dashboard with a message
        assert response.status_code in (302, 403)
        if response.status_code == 302:
            assert response["Location"] == reverse("wagtailadmin_home")


@pytest.mark.parametrize("who", USERS)
@pytest.mark.parametrize("export", ["", "results", "csv", "xlsx"])
def test_matrix_report_and_exports(client, request, who, export, run):
    login(client, request, who)
    if export == "results":
        response = client.get(url("results"))
    else:
        response = client.get(url("index") + (f"?export={export}" if export else ""))
    if who in ("anonymous", "non_admin"):
        assert_login_redirect(response)
        return
    assert response.status_code == 200
    if export == "csv":
        ids = [
            int(r["ID"])
            for r in csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))
        ]
    elif export == "xlsx":
        sheet = load_workbook(io.BytesIO(b"".join(response.streaming_content))).active
        ids = [row[0] for row in list(sheet.values)[1:]]
    else:
        html = response.content.decode()
        ids = [run.pk] if f'data-interaction="{run.pk}"' in html else []
    assert ids == ([run.pk] if who in SEES else [])


@pytest.mark.parametrize("who", USERS)
@pytest.mark.parametrize("view", ["detail", "compare"])
def test_matrix_detail_and_compare(client, request, who, view, run):
    login(client, request, who)
    response = client.get(url(view, run.pk))
    if who in SEES:
        assert response.status_code == 200
        html = response.content.decode()
        assert run.output_value[:20].replace("'", "&#x27;") in html
        assert ('action="' + url("rerun", run.pk) in html) == (who in EDITS and view == "detail")
    else:
        assert_refused(response, who)


@pytest.mark.parametrize("who", USERS)
def test_matrix_action_view(client, request, who, run, action):
    login(client, request, who)
    response = client.get(url("action", action.pk))
    if who in ("anonymous", "non_admin"):
        assert_login_redirect(response)
        return
    assert response.status_code == 200
    assert (f'data-interaction="{run.pk}"' in response.content.decode()) == (who in SEES)


@pytest.mark.parametrize("who", USERS)
@pytest.mark.parametrize("operation", ["rerun", "discard", "keep", "try"])
def test_matrix_operations(client, request, who, operation, run, post, action, superuser):
    target = run
    if operation == "keep":
        target = LLMService().run(action, post, user=superuser, save=False)
    before = set(LLMInteraction.objects.values_list("pk", "outcome", "revision_id"))
    latest = reload(post).latest_revision_id
    login(client, request, who)
    if operation == "try":
        response = client.post(url("try", action.pk), {"page": post.pk})
    else:
        response = client.post(url(operation, target.pk))
    run_queued_tasks()  # a rerun or try is queued: let the worker run it
    after = set(LLMInteraction.objects.values_list("pk", "outcome", "revision_id"))
    if who in EDITS:
        assert response.status_code == 302
        assert after != before
        if operation != "try":
            assert reload(post).latest_revision_id != latest
    else:
        assert_refused(response, who)
        assert after == before
        assert reload(post).latest_revision_id == latest


def test_outsider_sees_own_runs_even_on_pages_they_cannot_edit(client, outsider, post, action):
    own = make_one(action=action, page=post, user=outsider)
    client.force_login(outsider)
    assert client.get(url("detail", own.pk)).status_code == 200
    html = client.get(url("detail", own.pk)).content.decode()
    assert 'action="' + url("rerun", own.pk) not in html  # still may not act on the page
    assert client.post(url("rerun", own.pk)).status_code in (302, 403)
    assert LLMInteraction.objects.count() == 1


def test_editor_with_add_permission_sees_runs_on_pages_they_own(
    client, django_user_model, post, make_post, action, blog_index
):
    from tests.conftest import _admin_group

    author = django_user_model.objects.create_user("author", "a@example.com", "password")
    author.groups.add(_admin_group("Authors", blog_index, codenames=("add_page",)))
    mine = make_post(title="My post", owner=author)
    on_mine = make_one(action=action, page=mine)
    on_other = make_one(action=action, page=post)
    client.force_login(author)
    html = client.get(url("index")).content.decode()
    assert f'data-interaction="{on_mine.pk}"' in html
    assert f'data-interaction="{on_other.pk}"' not in html
