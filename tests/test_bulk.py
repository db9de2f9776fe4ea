"""The "Run LLM action" bulk action, the job progress page and the jobs listing."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from wagtail.models import PageLogEntry

from tests.workers import drain
from wagtail_llm_actions import jobs
from wagtail_llm_actions.models import LLMInteraction, LLMJob
from wagtail_llm_actions.service import LOG_ACTION

pytestmark = pytest.mark.django_db


def bulk_url(pages, **extra) -> str:
    base = reverse("wagtail_bulk_action", args=("wagtailcore", "page", "run_llm_action"))
    params = [("id", p.pk) for p in pages] + list(extra.items()) + [("next", "/admin/pages/")]
    return f"{base}?{urlencode(params)}"


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def drafts(page) -> int:
    return PageLogEntry.objects.filter(page=page, action=LOG_ACTION).count()


@pytest.fixture
def mixed(make_post, blog_index, superuser):
    """Two runnable posts, a locked one, an empty one, and the blog index (wrong type)."""
    ok = [make_post(title="Worm bins"), make_post(title="Leaf mould")]
    locked = make_post(title="Locked post")
    locked.locked, locked.locked_by = True, superuser
    locked.save()
    empty = make_post(title="Empty post", body=[])
    return {"ok": ok, "locked": locked, "empty": empty, "index": blog_index}


def test_the_bulk_action_is_offered_in_the_page_listing(admin_client, blog_index, post):
    response = admin_client.get(reverse("wagtailadmin_explore", args=[blog_index.pk]))
    assert "Run AI action" in response.content.decode()


def test_select_confirm_start_and_the_job_completes(client, mixed, action, editor):
    pages = [*mixed["ok"], mixed["locked"], mixed["empty"], mixed["index"]]
    client.force_login(editor)
    url = bulk_url(pages)

    confirm = client.get(url)
    html = confirm.content.decode()
    assert confirm.status_code == 200
    assert "Generate summary" in html  # the applicable action is offered
    # ... but not chosen: nothing runs over many pages by one click (issue 21, §2)
    assert "Choose an action…" in html and "data-llm-will-run" not in html
    assert f'value="{action.pk}" selected' not in html

    # choosing it shows the preview (the form refreshes it on change)
    confirm = client.post(url, {"action": action.pk, "preview": "1"})
    html = confirm.content.decode()
    assert "5 pages selected" in html and "2 pages will run" in html
    for label in ("does not apply to this page type", "locked", "source field is empty"):
        assert label in html
    assert "Locked post" in html and "Empty post" in html
    assert "data-llm-estimate-tokens" in html

    preview = client.post(url, {"action": action.pk, "preview": "1"})
    assert preview.status_code == 200 and not LLMJob.objects.exists()

    response = client.post(url, {"action": action.pk})
    assert response.status_code == 302 and response.url == "/admin/pages/"
    job = LLMJob.objects.get()
    assert job.user == editor and job.kind == "bulk"
    message = str(list(response.wsgi_request._messages)[0])
    # the preview's number and words (issue 21): the empty page is skipped when it runs
    assert "“Generate summary” started: 2 pages will run." in message
    progress_url = reverse("wagtail_llm_actions_jobs:detail", args=[job.pk])
    listing = client.get(response.url, follow=True)
    assert progress_url in listing.content.decode()  # "View progress" in the message

    # on_commit never fires inside the test transaction: queue and run it like a worker.
    jobs.enqueue_job(job, on_commit=False)
    assert drain() == ["completed"]

    job.refresh_from_db()
    assert job.status == "completed"
    assert all(drafts(p) == 1 for p in mixed["ok"])
    assert drafts(mixed["locked"]) == drafts(mixed["empty"]) == 0
    reasons = dict(job.items.values_list("page_id", "skip_reason"))
    assert reasons[mixed["locked"].pk] == "locked"
    assert reasons[mixed["empty"].pk] == "source_empty"
    assert reasons[mixed["index"].pk] == "wrong_type"

    page = client.get(progress_url).content.decode()
    assert "Worm bins" in page and "The page is locked" in page
    assert "Review draft" in page


def test_start_queues_the_job_on_commit(
    client, post, action, superuser, django_capture_on_commit_callbacks
):
    client.force_login(superuser)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        client.post(bulk_url([post]), {"action": action.pk})
    assert len(callbacks) == 1
    assert drain() == ["completed"]
    assert drafts(post) == 1


def test_rerunning_through_the_admin_skips_unchanged_pages(
    client, make_post, server_action, fake_llm, superuser
):
    posts = [make_post() for _ in range(3)]
    client.force_login(superuser)
    url = bulk_url(posts)
    client.post(url, {"action": server_action.pk})
    jobs.enqueue_job(LLMJob.objects.first(), on_commit=False)
    drain()
    assert fake_llm.request_count == 3
    html = client.post(url, {"action": server_action.pk, "preview": "1"}).content.decode()
    assert (
        "Unchanged since this action’s answer was written or discarded" in html
        and "0 pages will run" in html
    )

    # nothing would run: Start is refused (and disabled on the screen)
    refused = client.post(url, {"action": server_action.pk})
    assert "nothing was started" in refused.content.decode()
    assert LLMJob.objects.count() == 1

    client.post(url, {"action": server_action.pk, "force": "on"})
    jobs.enqueue_job(LLMJob.objects.first(), on_commit=False)
    drain()
    assert fake_llm.request_count == 6


def test_descendants_option(client, make_post, blog_index, action, superuser):
    posts = [make_post() for _ in range(2)]
    client.force_login(superuser)
    url = bulk_url([blog_index])
    html = client.post(url, {"action": action.pk, "include_descendants": "on", "preview": "1"})
    assert "2 pages will run" in html.content.decode()
    client.post(url, {"action": action.pk, "include_descendants": "on"})
    job = LLMJob.objects.get()
    assert job.include_descendants
    assert set(job.items.filter(status="queued").values_list("page_id", flat=True)) == {
        p.pk for p in posts
    }


def test_pages_without_edit_permission_are_skipped(client, make_post, action, author):
    post = make_post(title="Someone else's post")
    client.force_login(author)
    html = client.post(bulk_url([post]), {"action": action.pk, "preview": "1"}).content.decode()
    assert "No permission to edit the page" in html and "0 pages will run" in html
    assert "Someone else&#x27;s post" in html  # the author sees it in the explorer anyway
    # nothing this user may run: Start is refused (the engine's own skip is in test_jobs)
    client.post(bulk_url([post]), {"action": action.pk})
    assert not LLMJob.objects.exists()


def test_only_actions_for_the_selected_types_are_offered(
    client, blog_index, make_action, superuser
):
    from blog.models import SimplePage
    from django.contrib.contenttypes.models import ContentType

    simple = SimplePage(title="About", slug="about", text="Hello")
    blog_index.add_child(instance=simple)
    make_action()  # blog pages only
    html = client_for(superuser).get(bulk_url([simple])).content.decode()
    assert "No enabled AI action applies" in html
    other = make_action(
        slug="simple", name="Simple action", source_field="text", target_field="text"
    )
    other.page_types.set([ContentType.objects.get_for_model(SimplePage)])
    html = client_for(superuser).get(bulk_url([simple])).content.decode()
    assert "Simple action" in html and "Generate summary" not in html


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_the_confirmation_shows_the_wal_suggestion_to_site_admins_on_plain_sqlite(
    post, action, superuser, editor, settings
):
    url = bulk_url([post])
    assert "data-llm-sqlite-notice" not in client_for(superuser).get(url).content.decode()
    settings.DATABASES = {  # what the suggestion reads; the test's connections are unchanged
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "/srv/site/db.sqlite3"}
    }

    html = client_for(superuser).get(url).content.decode()

    assert "data-llm-sqlite-notice" in html and "SQLite without WAL" in html
    assert "PRAGMA journal_mode=WAL;" in html
    # Editors can do nothing about the database: they are not told.
    assert "data-llm-sqlite-notice" not in client_for(editor).get(url).content.decode()


def test_confirmation_requires_csrf(post, action, superuser):
    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    response = client.post(bulk_url([post]), {"action": action.pk})
    assert response.status_code == 403
    assert not LLMJob.objects.exists()


# -- progress page, JSON status, cancel and retry ------------------------------------------------


@pytest.fixture
def job(make_post, action, editor):
    posts = [make_post() for _ in range(2)]
    return jobs.create_job(action, editor, [p.pk for p in posts])


def test_progress_page_and_json_status(client, job, editor):
    client.force_login(editor)
    url = reverse("wagtail_llm_actions_jobs:detail", args=[job.pk])
    html = client.get(url).content.decode()
    assert "Job #" in html and "Cancel job" in html
    assert 'data-controller="llm-job-progress"' in html
    assert "job-progress-controller.js" in html
    status = client.get(reverse("wagtail_llm_actions_jobs:status", args=[job.pk])).json()
    assert status["status"] == "queued" and status["progress"]["total"] == 2
    assert not status["finished"]

    jobs.run_job(job.pk)
    status = client.get(reverse("wagtail_llm_actions_jobs:status", args=[job.pk])).json()
    assert status["finished"] and status["progress"]["percent"] == 100
    assert status["progress"]["counts"]["succeeded"] == 2
    html = client.get(url).content.decode()
    assert "Cancel job" not in html


def test_progress_page_permissions(client, job, editor, outsider, superuser, django_user_model):
    url = reverse("wagtail_llm_actions_jobs:detail", args=[job.pk])
    status_url = reverse("wagtail_llm_actions_jobs:status", args=[job.pk])
    cancel_url = reverse("wagtail_llm_actions_jobs:cancel", args=[job.pk])
    # Wagtail's own refusal: back to the dashboard with its "no permission" message
    for response in (client_for(outsider).get(url), client_for(outsider).post(cancel_url)):
        assert response.status_code == 302 and response["Location"] == reverse("wagtailadmin_home")
    status = client_for(outsider).get(status_url)
    assert status.status_code == 403 and status.json()["code"] == "forbidden"
    job.refresh_from_db()
    assert job.status == "queued"
    assert client_for(editor).get(url).status_code == 200
    assert client_for(superuser).get(url).status_code == 200
    outsider.user_permissions.add(Permission.objects.get(codename="view_llmjob"))
    assert client_for(django_user_model.objects.get(pk=outsider.pk)).get(url).status_code == 200
    assert Client().get(url).status_code == 302  # to the login page


def test_cancel_and_retry(client, job, editor, django_capture_on_commit_callbacks):
    client.force_login(editor)
    cancel_url = reverse("wagtail_llm_actions_jobs:cancel", args=[job.pk])
    assert client.get(cancel_url).status_code == 405
    response = client.post(cancel_url)
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert set(job.items.values_list("status", flat=True)) == {"cancelled"}

    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("wagtail_llm_actions_jobs:retry", args=[job.pk]))
    job.refresh_from_db()
    assert job.status == "queued"
    assert drain() == ["completed"]
    assert set(job.items.values_list("status", flat=True)) == {"succeeded"}


def test_cancel_and_retry_require_csrf(job, editor):
    client = Client(enforce_csrf_checks=True)
    client.force_login(editor)
    assert client.post(reverse("wagtail_llm_actions_jobs:cancel", args=[job.pk])).status_code == 403
    job.refresh_from_db()
    assert job.status == "queued"


def test_progress_page_lists_failures_with_links(client, post, server_action, fake_llm, editor):
    fake_llm.status = 401
    job = jobs.create_job(server_action, editor, [post.pk])
    jobs.run_job(job.pk)
    html = client_for(editor).get(reverse("wagtail_llm_actions_jobs:detail", args=[job.pk]))
    html = html.content.decode()
    assert "Retry failed pages" in html
    assert reverse("wagtailadmin_pages:edit", args=[post.pk]) in html
    interaction = LLMInteraction.objects.get()
    assert "Interaction" in html and str(interaction.pk) in html


def test_jobs_listing_shows_own_jobs_only(client, job, editor, outsider, superuser):
    listing = reverse("wagtail_llm_actions_jobs:index")
    assert str(job) in client_for(editor).get(listing).content.decode()
    assert str(job) not in client_for(outsider).get(listing).content.decode()
    assert str(job) in client_for(superuser).get(listing).content.decode()


def test_jobs_menu_item(admin_client):
    html = admin_client.get(reverse("wagtailadmin_home")).content.decode()
    assert reverse("wagtail_llm_actions_jobs:index") in html


# -- query counts do not grow with the number of pages ------------------------------------------


@pytest.mark.parametrize("size", [3, 30])
def test_confirmation_queries_do_not_grow(
    size, make_post, action, editor, django_assert_max_num_queries
):
    posts = [make_post() for _ in range(size)]
    client = client_for(editor)
    url = bulk_url(posts)
    chosen = {"action": action.pk, "preview": "1"}
    client.post(url, chosen)  # warm caches (content types, site root paths)
    # 28, + the "Bulk runs" site setting (the site, its row), read when the selection is
    # large enough for the canary rule to apply (30 pages, not 3): constant, not per page
    with django_assert_max_num_queries(30):
        response = client.post(url, chosen)
    assert f"{size} pages will run" in response.content.decode()


@pytest.mark.parametrize("size", [3, 30])
def test_progress_page_queries_do_not_grow(
    size, make_post, action, editor, django_assert_max_num_queries
):
    posts = [make_post() for _ in range(size)]
    job = jobs.create_job(action, editor, [p.pk for p in posts])
    jobs.run_job(job.pk)
    client = client_for(editor)
    url = reverse("wagtail_llm_actions_jobs:detail", args=[job.pk])
    client.get(url)
    with django_assert_max_num_queries(17):  # 16 + the stored answers to apply
        assert client.get(url).status_code == 200
    with django_assert_max_num_queries(8):
        client.get(reverse("wagtail_llm_actions_jobs:status", args=[job.pk]))


@pytest.mark.parametrize("size", [2, 20])
def test_jobs_listing_queries_do_not_grow(
    size, post, action, editor, django_assert_max_num_queries
):
    for _ in range(size):
        jobs.create_job(action, editor, [post.pk])
    client = client_for(editor)
    url = reverse("wagtail_llm_actions_jobs:index")
    client.get(url)
    # 12, + Wagtail's check whether to show the "Bulk runs" settings menu item
    with django_assert_max_num_queries(13):
        assert client.get(url).status_code == 200


def test_nothing_is_preselected_unless_the_link_names_the_action(
    client, make_post, make_action, action, superuser
):
    """One click must not run the first action by name over many pages (issue 21, §2)."""
    other = make_action(name="A first action by name", slug="first")
    posts = [make_post() for _ in range(2)]
    client.force_login(superuser)

    html = client.get(bulk_url(posts)).content.decode()
    assert "Choose an action…" in html and "data-llm-choose-first" in html
    assert f'value="{other.pk}" selected' not in html and "data-llm-will-run" not in html
    started = client.post(bulk_url(posts), {})  # Start with nothing chosen
    assert started.status_code == 200 and not LLMJob.objects.exists()

    named = client.get(bulk_url(posts, action=action.pk)).content.decode()
    assert f'value="{action.pk}" selected' in named and "2 pages will run" in named


def test_the_preview_counts_a_page_in_moderation_as_the_job_skips_it(
    client, in_moderation, make_post, action, editor
):
    """The preview applies the run's lock checks (Wagtail's lock, workflow included): a page
    in a moderation workflow was counted as "will run" and the job then skipped it."""
    other = make_post(title="Not in review")
    url = bulk_url([in_moderation, other])
    client.force_login(editor)
    html = client.post(url, {"action": action.pk, "preview": "1"}).content.decode()
    assert "2 pages selected" in html
    assert "1 page will run" in html, re.findall(r"\d+ pages? will run", html)
    assert "The page is in moderation" in html and "Awaiting review" in html
    plan = jobs.plan_job(action, editor, [in_moderation.pk, other.pk])
    assert (plan.will_run, plan.skipped) == (1, {"moderation": 1})

    client.post(url, {"action": action.pk})
    job = LLMJob.objects.get()
    jobs.run_job(job.pk)
    reasons = dict(job.items.values_list("page_id", "skip_reason"))
    assert reasons == {in_moderation.pk: "moderation", other.pk: ""}
    # without a user (a trigger, a schedule) the engine skips it too, and so does the plan
    assert jobs.plan_job(action, None, [in_moderation.pk, other.pk]).skipped == {"moderation": 1}
