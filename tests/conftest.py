"""Shared fixtures: the fake OpenAI-compatible server, blog pages, users, actions, long
content for map-reduce, pipelines."""

from __future__ import annotations

import random

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from wagtail.models import GroupPagePermission, Page, Site
from wagtail.rich_text import RichText

from tests.fakeserver import FakeLLMServer

pytest_plugins = ["tests.snippets"]  # the snippet fixtures (issue 23 §2)


@pytest.fixture(scope="session")
def fake_llm_server():
    server = FakeLLMServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_llm(fake_llm_server):
    """The fake server, reset for this test (replies, latency, errors, recorded requests)."""
    fake_llm_server.reset()
    yield fake_llm_server
    fake_llm_server.reset()


@pytest.fixture
def api_key_env(monkeypatch):
    monkeypatch.setenv("TEST_LLM_API_KEY", "sk-test-secret-123")
    return "TEST_LLM_API_KEY"


def make_body(paragraph="The first paragraph explains compost.", heading="Background"):
    return [
        ("heading", heading),
        ("paragraph", RichText(f"<p>{paragraph}</p>")),
        (
            "section",
            {
                "title": "In practice",
                "text": RichText("<p>Keep the bin <b>moist</b>.</p>"),
                "points": ["Worms", "Bran"],
            },
        ),
        ("quote", "Soil is alive."),
        ("list", ["Peelings", "Coffee grounds"]),
    ]


@pytest.fixture
def blog_index(db):
    from blog.models import BlogIndexPage

    root = Page.get_first_root_node()
    index = BlogIndexPage(title="Blog", slug="blog")
    root.add_child(instance=index)
    Site.objects.update_or_create(
        is_default_site=True,
        defaults={"hostname": "localhost", "port": 80, "root_page": index},
    )
    return index


@pytest.fixture
def make_post(blog_index):
    from blog.models import BlogPage

    counter = {"n": 0}

    def _make(title=None, parent=None, publish=True, **fields):
        counter["n"] += 1
        n = counter["n"]
        fields.setdefault("body", make_body(paragraph=f"Post {n} talks about compost bins."))
        fields.setdefault("intro", f"Intro {n}")
        page = BlogPage(title=title or f"Post {n}", slug=f"post-{n}", **fields)
        (parent or blog_index).add_child(instance=page)
        revision = page.save_revision()
        if publish:
            revision.publish()
        page.refresh_from_db()
        return page

    return _make


@pytest.fixture
def post(make_post):
    return make_post(title="Composting in a small flat")


@pytest.fixture
def prompt(db):
    from wagtail_llm_actions.models import LLMPrompt

    p = LLMPrompt.objects.create(
        name="Summarize", slug="summarize", template="Summarize “{title}”:\n\n{body}"
    )
    p.save_revision()
    return p


@pytest.fixture
def make_action(prompt):
    from blog.models import BlogPage

    from wagtail_llm_actions.models import LLMAction

    def _make(**fields):
        fields.setdefault("name", "Generate summary")
        fields.setdefault("slug", "generate-summary")
        fields.setdefault("source_field", "body")
        fields.setdefault("target_field", "summary")
        fields.setdefault("model", "local/extractive")
        fields.setdefault("prompt", prompt)
        fields.setdefault("timeout", 5)
        action = LLMAction.objects.create(**fields)
        action.page_types.set([ContentType.objects.get_for_model(BlogPage)])
        return action

    return _make


@pytest.fixture
def action(make_action):
    return make_action()


@pytest.fixture
def server_action(make_action, fake_llm, api_key_env):
    """An action that calls the fake OpenAI-compatible server through LiteLLM."""
    return make_action(
        slug="server-summary",
        name="Server summary",
        model="openai/fake-model",
        api_base=fake_llm.url,
        api_key_name=api_key_env,
        system_message="You are a helpful summarizer.",
        temperature=0.2,
        max_tokens=120,
    )


@pytest.fixture
def server_fields(fake_llm, api_key_env):
    """The model, API base and key name of an action or step that calls the fake server."""
    return {"model": "openai/fake-model", "api_base": fake_llm.url, "api_key_name": api_key_env}


@pytest.fixture
def make_server_action(make_action, server_fields):
    """``make_action`` for actions that call the fake server (any field can be given)."""

    def _make(**fields):
        return make_action(**{**server_fields, **fields})

    return _make


@pytest.fixture
def intro_action(make_server_action):
    """A second action on the fake server: it writes the intro, ``server_action`` the
    summary."""
    return make_server_action(name="Write intro", slug="write-intro", target_field="intro")


# -- long content (map-reduce) ---------------------------------------------------------------

#: The context window of the fake model in the map-reduce tests.
WINDOW = 4096


def long_body(paragraphs=1000, words=50):
    """``paragraphs`` × ``words`` words, each paragraph holding one unique marker word."""
    rng = random.Random(13)
    vocabulary = "soil worm compost bin leaf water carbon nitrogen heat turn mix layer".split()
    blocks, markers = [], []
    for n in range(paragraphs):
        marker = f"marker{n:04d}x"
        markers.append(marker)
        text = [rng.choice(vocabulary) for _ in range(words - 1)]
        text.insert(rng.randrange(words), marker)
        blocks.append(("paragraph", RichText(f"<p>{' '.join(text)}.</p>")))
    return blocks, markers


@pytest.fixture
def make_long_post(make_post):
    """A post whose body is :func:`long_body`, and the body's marker words."""

    def _make(paragraphs=1000):
        body, markers = long_body(paragraphs=paragraphs)
        return make_post(body=body), markers

    return _make


@pytest.fixture
def make_map_reduce_action(make_server_action):
    """An action on the fake server running long content as map-reduce in ``WINDOW``."""

    def _make(**fields):
        return make_server_action(
            **{"long_content": "map_reduce", "context_window": WINDOW, **fields}
        )

    return _make


# -- pipelines -------------------------------------------------------------------------------


def make_prompt(slug, template):
    """A saved prompt with a revision, named by its slug."""
    from wagtail_llm_actions.models import LLMPrompt

    prompt = LLMPrompt.objects.create(name=slug, slug=slug, template=template)
    prompt.save_revision()
    return prompt


@pytest.fixture
def make_pipeline(db):
    """``make_pipeline(*steps, name=, slug=, page_types=True)``: a pipeline whose steps are
    the given field dicts, in order; ``page_types`` adds the blog page type. Read back from
    the database."""
    from blog.models import BlogPage

    from wagtail_llm_actions.models import LLMPipeline, LLMPipelineStep

    def _make(*steps, name="Pipe", slug=None, page_types=True):
        if slug is None:
            slug = f"pipe-{LLMPipeline.objects.count()}"
        pipeline = LLMPipeline.objects.create(name=name, slug=slug)
        if page_types:
            pipeline.page_types.add(ContentType.objects.get_for_model(BlogPage))
        for order, fields in enumerate(steps):
            LLMPipelineStep.objects.create(pipeline=pipeline, sort_order=order, **fields)
        return LLMPipeline.objects.get(pk=pipeline.pk)

    return _make


# -- images ----------------------------------------------------------------------------------


@pytest.fixture
def fresh_renditions():
    """Renditions are cached by image id, and ids come back after a test's rollback: image
    tests start with an empty cache (``pytest.mark.usefixtures("fresh_renditions")``)."""
    from django.core.cache import caches

    caches["default"].clear()


@pytest.fixture
def make_image_action(make_action):
    """``make_action`` for an action that runs on images: ``local/vision`` writes the image's
    description, no page types. Without a ``prompt``, the prompt "Alt text" (made on first
    use): "Write alt text for {filename} ({title})."."""
    from wagtail_llm_actions.models import LLMPrompt

    made = []

    def _make(**fields):
        if "prompt" not in fields:
            if not made:
                made.append(
                    LLMPrompt.objects.create(
                        name="Alt text",
                        slug="alt-text",
                        template="Write alt text for {filename} ({title}).",
                    )
                )
            fields["prompt"] = made[0]
        fields.setdefault("name", "Alt text")
        fields.setdefault("slug", "alt-text")
        fields.setdefault("source_kind", "image")
        fields.setdefault("target_field", "description")
        fields.setdefault("model", "local/vision")
        action = make_action(**fields)
        action.page_types.set([])
        return action

    return _make


@pytest.fixture
def alt_prompt(db):
    """The prompt of :func:`image_action`: "Alt text for {filename}."."""
    from wagtail_llm_actions.models import LLMPrompt

    return LLMPrompt.objects.create(name="Alt", slug="alt", template="Alt text for {filename}.")


@pytest.fixture
def image_action(make_image_action, alt_prompt):
    """An image action on ``local/vision`` writing alt text into the description."""
    return make_image_action(prompt=alt_prompt)


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("admin", "admin@example.com", "password")


def _admin_group(name: str, page: Page | None, codenames=("add_page", "change_page")) -> Group:
    group = Group.objects.create(name=name)
    group.permissions.add(Permission.objects.get(codename="access_admin"))
    if page is not None:
        for codename in codenames:
            GroupPagePermission.objects.create(
                group=group,
                page=page,
                permission=Permission.objects.get(
                    content_type__app_label="wagtailcore", codename=codename
                ),
            )
    return group


@pytest.fixture
def editor(django_user_model, blog_index):
    """May edit every page under the blog."""
    user = django_user_model.objects.create_user("editor", "editor@example.com", "password")
    user.groups.add(_admin_group("Blog editors", blog_index))
    return user


@pytest.fixture
def in_moderation(make_post, blog_index, editor):
    """A post submitted to a review workflow (Wagtail locks it for everyone but reviewers)."""
    from wagtail.models import GroupApprovalTask, Workflow, WorkflowPage, WorkflowTask

    task = GroupApprovalTask.objects.create(name="Review")
    task.groups.set([Group.objects.create(name="Reviewers")])
    workflow = Workflow.objects.create(name="Review first", active=True)
    WorkflowTask.objects.create(workflow=workflow, task=task.task_ptr, sort_order=1)
    WorkflowPage.objects.create(workflow=workflow, page=blog_index)
    page = make_post(title="Awaiting review")
    workflow.start(page, editor)
    return page


@pytest.fixture
def author(django_user_model, blog_index):
    """May add pages under the blog, so sees them all, but edits only their own."""
    user = django_user_model.objects.create_user("author", "author@example.com", "password")
    user.groups.add(_admin_group("Blog authors", blog_index, codenames=("add_page",)))
    return user


@pytest.fixture
def outsider(django_user_model, db):
    """Has admin access but may edit no page of the blog."""
    user = django_user_model.objects.create_user("outsider", "outsider@example.com", "password")
    user.groups.add(_admin_group("Outsiders", None))
    return user


@pytest.fixture
def non_admin(django_user_model, db):
    return django_user_model.objects.create_user("reader", "reader@example.com", "password")


@pytest.fixture
def shared_db(transactional_db, tmp_path):
    """The test database, shared with other threads and processes: on SQLite a plain file
    (no WAL, Django's defaults; see ``tests.workers.shared_database``). Mark the test
    ``django_db(transaction=True, serialized_rollback=True)`` and request this fixture
    before any fixture that creates rows."""
    from tests.workers import shared_database

    with shared_database(tmp_path) as env:
        yield env


def pytest_report_header(config):
    from django.conf import settings

    db = settings.DATABASES["default"]
    return f"database: {db['ENGINE'].rsplit('.', 1)[-1]} {db.get('HOST') or ''}".rstrip()


# -- translation (issue 23) ------------------------------------------------------------------


@pytest.fixture
def translation_site(db):
    """The multilingual recipe site of tests/translation_site.py, with i18n on meanwhile."""
    from tests.translation_site import build_site, i18n

    with i18n():
        yield build_site()


@pytest.fixture
def translate_action(make_action, server_fields):
    """A translation action on the fake server, with a glossary and do-not-translate terms."""
    from tests.translation_site import make_translate_action

    return make_translate_action(make_action, server_fields)
