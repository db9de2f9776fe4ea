"""Use, configure and configure providers: every admin URL of the app, per role.

Roles, from least to most trusted:

* ``anonymous`` and ``non_admin`` (no ``wagtailadmin.access_admin``): sent to the login page;
* ``no_pages``: admin access, no page permission (sees only their own runs);
* ``editor``: may edit the blog's pages, so may *use* actions; no snippet permission;
* ``action_manager``: editor + add/change/delete on prompts and actions (*configure*);
* ``provider_manager``: action manager + ``configure_llm_provider``;
* ``superuser``.

A refusal is Wagtail's own: ``PermissionDenied`` becomes a redirect to the dashboard with
"Sorry, you do not have permission to access this area." (as for Wagtail's snippet and page
views); JSON endpoints answer a JSON 403 (or 404 for another user's editor job) with a message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from wagtail.models import Revision

from tests.conftest import _admin_group
from tests.interactions_factory import make_one
from wagtail_llm_actions import editor as editor_module
from wagtail_llm_actions import jobs, queued_runs
from wagtail_llm_actions.models import (
    InteractionTrigger,
    LLMAction,
    LLMBudget,
    LLMInteraction,
    LLMJob,
    LLMPipeline,
    LLMPrompt,
)
from wagtail_llm_actions.service import LLMService

pytestmark = pytest.mark.django_db

ROLES = [
    "anonymous",
    "non_admin",
    "no_pages",
    "editor",
    "action_manager",
    "provider_manager",
    "superuser",
]
ADMINS = frozenset(ROLES[2:])
EDITORS = frozenset(ROLES[3:])
MANAGERS = frozenset(ROLES[4:])
PROVIDERS = frozenset(ROLES[5:])

ACTION_NS = "wagtailsnippets_wagtail_llm_actions_llmaction"
PROMPT_NS = "wagtailsnippets_wagtail_llm_actions_llmprompt"
ACTION_CHOOSER_NS = "wagtailsnippetchoosers_wagtail_llm_actions_llmaction"
PROMPT_CHOOSER_NS = "wagtailsnippetchoosers_wagtail_llm_actions_llmprompt"
PIPELINE_NS = "wagtailsnippets_wagtail_llm_actions_llmpipeline"
PIPELINE_CHOOSER_NS = "wagtailsnippetchoosers_wagtail_llm_actions_llmpipeline"
BUDGET_NS = "wagtailsnippets_wagtail_llm_actions_llmbudget"
BUDGET_CHOOSER_NS = "wagtailsnippetchoosers_wagtail_llm_actions_llmbudget"
#: Budgets are set by people with the budget model's permissions (here: the superuser only).
BUDGET_MANAGERS = frozenset({"superuser"})
BULK = "wagtail_bulk_action:run_llm_action"
NO_PERMISSION_MESSAGE = "Sorry, you do not have permission to access this area."
PROVIDER_NOTE = "Only users who may configure model providers can change this."


# -- the roles and the objects they act on ---------------------------------------------------


def _snippet_group(*, providers: bool) -> Group:
    name = "Provider managers" if providers else "Action managers"
    group = Group.objects.create(name=name)
    codenames = [
        f"{verb}_{model}"
        for verb in ("add", "change", "delete")
        for model in ("llmaction", "llmprompt", "llmpipeline")
    ]
    if providers:
        codenames.append("configure_llm_provider")
    group.permissions.add(
        *Permission.objects.filter(
            content_type__app_label="wagtail_llm_actions", codename__in=codenames
        )
    )
    return group


@dataclass
class World:
    users: dict
    post: object
    action: LLMAction
    prompt: LLMPrompt
    prompt_revision: Revision
    pending: LLMInteraction  # "try on a page" answer by no_pages, on a page they cannot edit
    editor_run: LLMInteraction  # the editor's own run from the page editor
    editor_job: LLMJob  # the editor's editor job
    queued_job: LLMJob  # the editor's rerun, queued from the interaction page
    bulk_job: LLMJob  # started by the editor
    pipeline: LLMPipeline  # one step: the action
    extras: dict = field(default_factory=dict)

    def client(self, role: str, **kwargs) -> Client:
        client = Client(**kwargs)
        if role != "anonymous":
            client.force_login(self.users[role])
        return client


@pytest.fixture
def world(django_user_model, blog_index, make_post, action, prompt, make_pipeline):
    users = {
        "non_admin": django_user_model.objects.create_user("reader", password="x"),
        "superuser": django_user_model.objects.create_superuser("admin", password="x"),
    }
    users["no_pages"] = django_user_model.objects.create_user("nopages", password="x")
    users["no_pages"].groups.add(_admin_group("No pages", None))
    editors = _admin_group("Blog editors", blog_index)
    action_managers = _snippet_group(providers=False)
    provider_managers = _snippet_group(providers=True)
    for role, groups in (
        ("editor", [editors]),
        ("action_manager", [editors, action_managers]),
        ("provider_manager", [editors, provider_managers]),
    ):
        users[role] = django_user_model.objects.create_user(role, password="x")
        users[role].groups.add(*groups)

    post = make_post(title="Composting in a small flat")
    pending = LLMService().run(
        action, post, users["superuser"], save=False, trigger=InteractionTrigger.RERUN
    )
    pending.user = users["no_pages"]
    pending.save(update_fields=["user"])
    editor_run = make_one(
        action=action,
        page=post,
        user=users["editor"],
        trigger="editor",
        outcome="pending",
        candidates=["Two candidates", "the second one"],
    )
    editor_job = editor_module.create_editor_job(action, post, post.specific, users["editor"])
    bulk_job = jobs.create_job(action, users["editor"], [post.pk])
    queued_job = queued_runs.create_job(
        queued_runs.KIND_RERUN, users["editor"], page=post, action=action, interaction=editor_run
    )
    pipeline = make_pipeline(
        {"name": "summary", "action": action}, name="One step", slug="one-step", page_types=False
    )
    return World(
        users=users,
        post=post,
        action=action,
        prompt=prompt,
        prompt_revision=prompt.latest_revision,
        pending=pending,
        editor_run=editor_run,
        editor_job=editor_job,
        queued_job=queued_job,
        bulk_job=bulk_job,
        pipeline=pipeline,
    )


# -- one row per admin URL of the app -------------------------------------------------------


@dataclass
class Row:
    """How one URL answers: who may use it, how others are refused, what each one sees."""

    args: Callable[[World], list]
    allowed: frozenset[str]
    method: str = "get"
    ok: int = 200
    refused: str = "denied"  # denied (Wagtail's redirect), json403, json404
    query: Callable[[World], str] = lambda w: ""
    data: Callable[[World], dict] = lambda w: {}
    #: text (or world -> text) -> roles whose page contains it (others' pages must not)
    shown: dict = field(default_factory=dict)


def edit_post_link(w: World) -> str:
    return 'href="{}"'.format(reverse("wagtailadmin_pages:edit", args=[w.post.pk]))


def _none(w):
    return []


def _action(w):
    return [w.action.pk]


def _prompt(w):
    return [w.prompt.pk]


def _pipeline(w):
    return [w.pipeline.pk]


def _budget(w):
    budget, _created = LLMBudget.objects.get_or_create(
        name="Whole site", defaults={"max_tokens": 100_000}
    )
    return [budget.pk]


ROWS: dict[str, Row] = {
    # the interaction report, detail, per-action view
    "wagtail_llm_actions_report:index": Row(
        _none,
        ADMINS,
        # no_pages sees their own run on a page they cannot edit: its title, no edit link
        shown={"Composting in a small flat": ADMINS, edit_post_link: EDITORS},
    ),
    "wagtail_llm_actions_report:results": Row(_none, ADMINS),
    "wagtail_llm_actions_report:detail": Row(
        lambda w: [w.pending.pk],
        ADMINS,  # no_pages sees their own run; editors see runs on pages they may edit
        shown={
            'keep/"': EDITORS,
            'discard/"': EDITORS,
            'rerun/"': EDITORS,
            "Open in editor": EDITORS,
            "Compare with the current prompt": MANAGERS,
        },
    ),
    "wagtail_llm_actions_report:compare": Row(
        lambda w: [w.pending.pk],
        ADMINS,
        shown={'keep/"': EDITORS, 'discard/"': EDITORS, "Open in editor": EDITORS},
    ),
    "wagtail_llm_actions_report:rerun": Row(lambda w: [w.pending.pk], EDITORS, "post", 302),
    "wagtail_llm_actions_report:discard": Row(lambda w: [w.pending.pk], EDITORS, "post", 302),
    "wagtail_llm_actions_report:keep": Row(lambda w: [w.pending.pk], EDITORS, "post", 302),
    "wagtail_llm_actions_report:action": Row(
        _action,
        ADMINS,
        shown={
            "Edit action": MANAGERS,
            "Edit prompt": MANAGERS,
            "Try on a page": EDITORS,  # one place to try an action (was "Run and compare")
            "Composting in a small flat": ADMINS,
            edit_post_link: EDITORS,
        },
    ),
    "wagtail_llm_actions_report:try": Row(
        _action, EDITORS, "post", 302, data=lambda w: {"page": w.post.pk}
    ),
    # "Test on a page" moved under the actions as "Try on a page": the old URL redirects
    "wagtail_llm_actions_report:test": Row(_action, ADMINS, ok=302),
    "wagtail_llm_actions_tryout:try": Row(
        _action,
        EDITORS,
        shown={"Try on a page": EDITORS, "Edit action": MANAGERS},
    ),
    # a queued rerun's progress and end: only the user who started it
    "wagtail_llm_actions_report:queued_run": Row(
        lambda w: [w.queued_job.pk], frozenset({"editor"}), shown={"Cancel": {"editor"}}
    ),
    "wagtail_llm_actions_report:queued_run_done": Row(
        lambda w: [w.queued_job.pk], frozenset({"editor"}), ok=302
    ),
    # "Translate into…" from the editor's action menu: those who may edit the page
    "wagtail_llm_actions_report:translate": Row(lambda w: [w.post.pk], EDITORS),
    # Cancel and Retry of a bulk job ask first
    "wagtail_llm_actions_report:confirm_cancel_job": Row(
        lambda w: [w.bulk_job.pk],
        frozenset({"editor", "superuser"}),
        shown={"page will not run": frozenset({"editor", "superuser"})},
    ),
    "wagtail_llm_actions_report:confirm_retry_job": Row(
        lambda w: [w.bulk_job.pk], frozenset({"editor", "superuser"})
    ),
    # the page editor's JSON endpoints
    "wagtail_llm_actions_editor:run_new": Row(
        lambda w: [
            w.post.get_parent().pk,
            ContentType.objects.get_for_model(type(w.post.specific)).pk,
            w.action.pk,
        ],
        EDITORS,  # may add a blog post under the blog
        "post",
        202,
        refused="json403",
        data=lambda w: w.extras["create_form"],
    ),
    "wagtail_llm_actions_editor:run": Row(
        lambda w: [w.post.pk, w.action.pk],
        EDITORS,
        "post",
        202,
        refused="json403",
        data=lambda w: w.extras["editor_form"],
    ),
    "wagtail_llm_actions_editor:run_pipeline": Row(
        lambda w: [w.post.pk, w.pipeline.pk],
        EDITORS,
        "post",
        202,
        refused="json403",
        data=lambda w: w.extras["editor_form"],
    ),
    # the snippet editor's buttons: those who may change the snippet (on the create view: add
    # and change such snippets); here the superuser only
    "wagtail_llm_actions_editor:snippet_run": Row(
        lambda w: ["testapp", "dish", w.extras["dish"].pk, w.extras["dish_action"].pk],
        frozenset({"superuser"}),
        "post",
        202,
        refused="json403",
        data=lambda w: w.extras["snippet_form"],
    ),
    "wagtail_llm_actions_editor:snippet_run_new": Row(
        lambda w: ["testapp", "dish", w.extras["dish_action"].pk],
        frozenset({"superuser"}),
        "post",
        202,
        refused="json403",
        data=lambda w: w.extras["snippet_form"],
    ),
    # the rich-text editor's selection tools (the action is marked a selection tool)
    "wagtail_llm_actions_editor:selection_tools": Row(
        lambda w: [w.post.pk], EDITORS, refused="json403"
    ),
    "wagtail_llm_actions_editor:selection_run": Row(
        lambda w: [w.post.pk],
        EDITORS,
        "post",
        202,
        refused="json403",
        data=lambda w: {"tool": "rewrite", "html": "Some <b>bold</b> words."},
    ),
    "wagtail_llm_actions_editor:status": Row(
        lambda w: [w.editor_job.pk], frozenset({"editor"}), refused="json404"
    ),
    "wagtail_llm_actions_editor:cancel": Row(
        lambda w: [w.editor_job.pk], frozenset({"editor"}), "post", refused="json404"
    ),
    "wagtail_llm_actions_editor:outcome": Row(
        lambda w: [w.editor_run.pk],
        frozenset({"editor"}),
        "post",
        refused="json404",
        data=lambda w: {"outcome": "discarded"},
    ),
    "wagtail_llm_actions_editor:choose": Row(
        lambda w: [w.editor_run.pk],
        frozenset({"editor"}),
        "post",
        refused="json404",
        data=lambda w: {"index": "1"},
    ),
    # bulk jobs (the editor started the job)
    "wagtail_llm_actions_jobs:index": Row(_none, ADMINS),
    "wagtail_llm_actions_jobs:index_results": Row(_none, ADMINS),
    "wagtail_llm_actions_jobs:detail": Row(
        lambda w: [w.bulk_job.pk],
        frozenset({"editor", "superuser"}),
        shown={"Cancel job": frozenset({"editor", "superuser"})},
    ),
    "wagtail_llm_actions_jobs:status": Row(
        lambda w: [w.bulk_job.pk], frozenset({"editor", "superuser"}), refused="json403"
    ),
    "wagtail_llm_actions_jobs:cancel": Row(
        lambda w: [w.bulk_job.pk], frozenset({"editor", "superuser"}), "post", 302
    ),
    "wagtail_llm_actions_jobs:retry": Row(
        lambda w: [w.bulk_job.pk], frozenset({"editor", "superuser"}), "post", 302
    ),
    "wagtail_llm_actions_jobs:apply_stored": Row(
        lambda w: [w.bulk_job.pk], frozenset({"editor", "superuser"}), "post", 302
    ),
    "wagtail_llm_actions_jobs:resume": Row(
        lambda w: [w.bulk_job.pk], frozenset({"editor", "superuser"}), "post", 302
    ),
    # the bulk action's confirmation screen (Wagtail lets any admin user open it; pages the
    # user cannot see are counted, never named)
    BULK: Row(
        lambda w: ["wagtailcore", "page", "run_llm_action"],
        ADMINS,
        query=lambda w: f"?id={w.post.pk}",
        # a page hidden from the user offers no action (its type says nothing either)
        shown={"No enabled AI action applies": frozenset({"no_pages"})},
    ),
    # actions: configure (snippet permissions); provider fields need the provider permission
    f"{ACTION_NS}:list": Row(_none, MANAGERS, shown={"Runs and cost": MANAGERS}),
    f"{ACTION_NS}:list_results": Row(_none, MANAGERS),
    f"{ACTION_NS}:add": Row(_none, MANAGERS, shown={PROVIDER_NOTE: MANAGERS - PROVIDERS}),
    f"{ACTION_NS}:edit": Row(
        _action,
        MANAGERS,
        shown={PROVIDER_NOTE: MANAGERS - PROVIDERS, "Runs and cost": MANAGERS},
    ),
    f"{ACTION_NS}:copy": Row(_action, MANAGERS, shown={PROVIDER_NOTE: MANAGERS - PROVIDERS}),
    f"{ACTION_NS}:delete": Row(_action, MANAGERS),
    f"{ACTION_NS}:usage": Row(_action, MANAGERS),
    f"{ACTION_NS}:history": Row(_action, MANAGERS),
    f"{ACTION_NS}:history_results": Row(_action, MANAGERS),
    # prompts: configure
    f"{PROMPT_NS}:list": Row(_none, MANAGERS),
    f"{PROMPT_NS}:list_results": Row(_none, MANAGERS),
    f"{PROMPT_NS}:add": Row(_none, MANAGERS),
    f"{PROMPT_NS}:edit": Row(_prompt, MANAGERS),
    f"{PROMPT_NS}:copy": Row(_prompt, MANAGERS),
    f"{PROMPT_NS}:delete": Row(_prompt, MANAGERS),
    f"{PROMPT_NS}:usage": Row(_prompt, MANAGERS),
    f"{PROMPT_NS}:history": Row(_prompt, MANAGERS),
    f"{PROMPT_NS}:history_results": Row(_prompt, MANAGERS),
    f"{PROMPT_NS}:revisions_revert": Row(lambda w: [w.prompt.pk, w.prompt_revision.pk], MANAGERS),
    f"{PROMPT_NS}:revisions_compare": Row(
        lambda w: [w.prompt.pk, w.prompt_revision.pk, "latest"], MANAGERS
    ),
    # the snippet choosers (the action form's prompt chooser): only for those who configure
    f"{ACTION_CHOOSER_NS}:choose": Row(_none, MANAGERS),
    f"{ACTION_CHOOSER_NS}:choose_results": Row(_none, MANAGERS),
    f"{ACTION_CHOOSER_NS}:chosen": Row(_action, MANAGERS),
    f"{ACTION_CHOOSER_NS}:chosen_multiple": Row(
        _none, MANAGERS, query=lambda w: f"?id={w.action.pk}"
    ),
    f"{ACTION_CHOOSER_NS}:create": Row(_none, MANAGERS, ok=404),  # no create form
    f"{PROMPT_CHOOSER_NS}:choose": Row(_none, MANAGERS),
    f"{PROMPT_CHOOSER_NS}:choose_results": Row(_none, MANAGERS),
    f"{PROMPT_CHOOSER_NS}:chosen": Row(_prompt, MANAGERS),
    f"{PROMPT_CHOOSER_NS}:chosen_multiple": Row(
        _none, MANAGERS, query=lambda w: f"?id={w.prompt.pk}"
    ),
    f"{PROMPT_CHOOSER_NS}:create": Row(_none, MANAGERS, ok=404),  # no create form
    # budgets: a snippet for those with its permissions; its chooser likewise
    f"{BUDGET_NS}:list": Row(_none, BUDGET_MANAGERS),
    f"{BUDGET_NS}:list_results": Row(_none, BUDGET_MANAGERS),
    f"{BUDGET_NS}:add": Row(_none, BUDGET_MANAGERS),
    f"{BUDGET_NS}:edit": Row(_budget, BUDGET_MANAGERS),
    f"{BUDGET_NS}:copy": Row(_budget, BUDGET_MANAGERS),
    f"{BUDGET_NS}:delete": Row(_budget, BUDGET_MANAGERS),
    f"{BUDGET_NS}:usage": Row(_budget, BUDGET_MANAGERS),
    f"{BUDGET_NS}:history": Row(_budget, BUDGET_MANAGERS),
    f"{BUDGET_NS}:history_results": Row(_budget, BUDGET_MANAGERS),
    f"{BUDGET_CHOOSER_NS}:choose": Row(_none, BUDGET_MANAGERS),
    f"{BUDGET_CHOOSER_NS}:choose_results": Row(_none, BUDGET_MANAGERS),
    f"{BUDGET_CHOOSER_NS}:chosen": Row(_budget, BUDGET_MANAGERS),
    f"{BUDGET_CHOOSER_NS}:chosen_multiple": Row(
        _none, BUDGET_MANAGERS, query=lambda w: f"?id={_budget(w)[0]}"
    ),
    f"{BUDGET_CHOOSER_NS}:create": Row(_none, BUDGET_MANAGERS, ok=404),  # no create form
    # the review queue of a job: whoever may see the job; a canary page: only canaries
    "wagtail_llm_actions_review:queue": Row(
        lambda w: [w.bulk_job.pk], frozenset({"editor", "superuser"})
    ),
    "wagtail_llm_actions_review:act": Row(
        lambda w: [w.bulk_job.pk], frozenset({"editor", "superuser"}), "post", 302
    ),
    "wagtail_llm_actions_review:canary": Row(lambda w: [w.bulk_job.pk], frozenset()),
    "wagtail_llm_actions_review:canary_start": Row(_action, EDITORS),
    # pipelines: configured like actions; run by editors of the page (a one-page job)
    f"{PIPELINE_NS}:list": Row(_none, MANAGERS),
    f"{PIPELINE_NS}:list_results": Row(_none, MANAGERS),
    f"{PIPELINE_NS}:add": Row(_none, MANAGERS),
    f"{PIPELINE_NS}:edit": Row(_pipeline, MANAGERS),
    f"{PIPELINE_NS}:copy": Row(_pipeline, MANAGERS),
    f"{PIPELINE_NS}:delete": Row(_pipeline, MANAGERS),
    f"{PIPELINE_NS}:usage": Row(_pipeline, MANAGERS),
    f"{PIPELINE_NS}:history": Row(_pipeline, MANAGERS),
    f"{PIPELINE_NS}:history_results": Row(_pipeline, MANAGERS),
    f"{PIPELINE_CHOOSER_NS}:choose": Row(_none, MANAGERS),
    f"{PIPELINE_CHOOSER_NS}:choose_results": Row(_none, MANAGERS),
    f"{PIPELINE_CHOOSER_NS}:chosen": Row(_pipeline, MANAGERS),
    f"{PIPELINE_CHOOSER_NS}:chosen_multiple": Row(
        _none, MANAGERS, query=lambda w: f"?id={w.pipeline.pk}"
    ),
    f"{PIPELINE_CHOOSER_NS}:create": Row(_none, MANAGERS, ok=404),  # no create form
    "wagtail_llm_actions_pipelines:run": Row(
        lambda w: [w.post.pk, w.pipeline.pk], EDITORS, "post", 302
    ),
    # image actions: only who may edit the image (here the superuser; the groups have no
    # image permissions), and an image job's undo only who may manage the job
    "wagtail_llm_actions_images:run": Row(
        lambda w: [w.extras["image"].pk, w.extras["image_action"].pk],
        frozenset({"superuser"}),
        "post",
        302,
    ),
    "wagtail_llm_actions_images:undo": Row(
        lambda w: [w.extras["image_interaction"].pk], frozenset({"superuser"}), "post", 302
    ),
    "wagtail_llm_actions_images:undo_job": Row(
        lambda w: [w.extras["image_job"].pk], frozenset({"superuser"}), "post", 302
    ),
    # snippet actions: only who may change the snippet (here the superuser; the groups have
    # no snippet permissions); undo of a direct write likewise
    "wagtail_llm_actions_snippets:run": Row(
        lambda w: ["testapp", "dish", w.extras["dish"].pk, w.extras["dish_action"].pk],
        frozenset({"superuser"}),
        "post",
        302,
    ),
    # "Translate into…" from the snippet editor: who may change the snippet (here i18n is off,
    # so the superuser is sent back to the snippet with the reason)
    "wagtail_llm_actions_snippets:translate": Row(
        lambda w: ["testapp", "dish", w.extras["dish"].pk], frozenset({"superuser"}), ok=302
    ),
    "wagtail_llm_actions_snippets:undo": Row(
        lambda w: [w.extras["snippet_interaction"].pk], frozenset({"superuser"}), "post", 302
    ),
    "wagtail_llm_actions_report:rerun_from_step": Row(
        lambda w: [w.pending.pk], EDITORS, "post", 302, data=lambda w: {"from_step": "0"}
    ),
}


def _walk(patterns, namespace=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            ns = namespace
            if pattern.namespace:
                ns = f"{namespace}:{pattern.namespace}" if namespace else pattern.namespace
            yield from _walk(pattern.url_patterns, ns)
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield f"{namespace}:{pattern.name}" if namespace else pattern.name


def app_url_names() -> set[str]:
    """Every named URL the app adds to the admin: its own views and its snippet viewsets."""
    names = {
        name
        for name in _walk(get_resolver().url_patterns)
        if name.startswith("wagtail_llm_actions_") or "_wagtail_llm_actions_" in name
    }
    from wagtail.admin.views.bulk_action.registry import bulk_action_registry

    if bulk_action_registry.get_bulk_action_class("wagtailcore", "page", "run_llm_action"):
        names.add(BULK)
    return names


def test_every_app_url_has_a_row():
    """A new URL of the app must say here who may use it."""
    names = app_url_names()
    assert len(names) > 40
    assert names - set(ROWS) == set(), "URLs without a permission row"
    assert set(ROWS) - names == set(), "rows for URLs that no longer exist"


def row_url(name: str, row: Row, world: World) -> str:
    url_name = "wagtail_bulk_action" if name == BULK else name
    return reverse(url_name, args=row.args(world)) + row.query(world)


def _prepare(name: str, world: World) -> None:
    if name.startswith("wagtail_llm_actions_images:"):
        from tests.test_image_views import image_world

        image_world(world)
    if name in ("wagtail_llm_actions_editor:run", "wagtail_llm_actions_editor:run_pipeline"):
        from tests.test_editor import form_data

        world.extras["editor_form"] = form_data(world.client("superuser"), world.post)
    if name.startswith("wagtail_llm_actions_snippets:"):
        from tests.test_snippet_admin import snippet_world

        snippet_world(world)
    if name.startswith("wagtail_llm_actions_editor:snippet_run"):
        from tests.test_snippet_admin import snippet_world
        from tests.test_snippet_editor import form_data as snippet_form_data

        snippet_world(world)
        world.extras["snippet_form"] = snippet_form_data(
            world.client("superuser"), world.extras["dish"]
        )
    if name.startswith("wagtail_llm_actions_editor:selection_"):
        LLMAction.objects.filter(pk=world.action.pk).update(selection_tool=True)
    if name == "wagtail_llm_actions_editor:run_new":
        from tests.test_editor_placement import create_form_data

        world.extras["create_form"] = create_form_data(
            world.client("superuser"), world.post.get_parent(), title="A new post"
        )


def assert_refused(response, row: Row, role: str) -> None:
    if role in ("anonymous", "non_admin"):
        assert response.status_code == 302, response.status_code
        assert response["Location"].startswith(reverse("wagtailadmin_login"))
        return
    if row.refused == "denied":
        # Wagtail's styled refusal: the dashboard with its error message, never a bare 403
        assert response.status_code == 302, response.status_code
        assert response["Location"] == reverse("wagtailadmin_home")
        messages = [str(m) for m in get_messages(response.wsgi_request)]
        assert NO_PERMISSION_MESSAGE in [m.strip() for m in messages]
    else:
        status = {"json403": 403, "json404": 404}[row.refused]
        assert response.status_code == status, response.status_code
        assert response["Content-Type"] == "application/json"
        assert response.json()["message"]


def state(world: World) -> tuple:
    """What a refused request must not change."""
    return (
        LLMInteraction.objects.count(),
        sorted(LLMInteraction.objects.values_list("pk", "outcome")),
        sorted(LLMJob.objects.values_list("pk", "status")),
        Revision.objects.count(),
        LLMAction.objects.count(),
        LLMPrompt.objects.count(),
    )


def check_role(name: str, row: Row, role: str, world: World) -> None:
    url = row_url(name, row, world)
    before = state(world)
    client = world.client(role)
    if row.method == "post":
        response = client.post(url, row.data(world))
    else:
        response = client.get(url, row.data(world))

    if role in row.allowed:
        assert response.status_code == row.ok, (response.status_code, response.get("Location"))
        if row.ok == 302:
            assert response["Location"] != reverse("wagtailadmin_home")
            assert not response["Location"].startswith(reverse("wagtailadmin_login"))
    else:
        assert_refused(response, row, role)
        assert state(world) == before
    if response.status_code == 200 and response["Content-Type"].startswith("text/html"):
        html = response.content.decode()
        for marker, roles in row.shown.items():
            text = marker(world) if callable(marker) else marker
            assert (text in html) == (role in roles), f"{text!r} shown: {text in html}"


@pytest.mark.parametrize("name", sorted(ROWS))
def test_permission_matrix(name, world):
    """Each role in turn, least trusted first (so a refused request sees the same state)."""
    row = ROWS[name]
    _prepare(name, world)
    for role in ROLES:
        try:
            check_role(name, row, role, world)
        except AssertionError as e:
            raise AssertionError(f"{name} as {role}: {e}") from e


# -- the permission in Settings → Groups ------------------------------------------------------


def test_provider_permission_is_grantable_in_groups(client, superuser):
    client.force_login(superuser)
    html = client.get(reverse("wagtailusers_groups:add")).content.decode()
    permission = Permission.objects.get(codename="configure_llm_provider")
    # Wagtail lists it under "Custom permissions" in the "LLM action" row
    assert re.search(rf'<input[^>]*value="{permission.pk}"', html)
    assert "Can configure model providers" in html
    for codename in ("view_llminteraction", "view_llmjob", "change_llmjob"):
        pk = Permission.objects.get(codename=codename).pk
        assert re.search(rf'<input[^>]*value="{pk}"', html), codename


def test_granting_the_permission_in_groups_unlocks_provider_fields(world):
    permission = Permission.objects.get(codename="configure_llm_provider")
    group = Group.objects.get(name="Action managers")
    client = world.client("superuser")
    data = {
        "name": group.name,
        "permissions": list(group.permissions.values_list("pk", flat=True)) + [permission.pk],
    }
    edit_url = reverse("wagtailusers_groups:edit", args=[group.pk])
    form_html = client.get(edit_url).content.decode()
    for prefix in re.findall(r'name="([\w-]+)-TOTAL_FORMS"', form_html):
        data[f"{prefix}-TOTAL_FORMS"] = "0"
        data[f"{prefix}-INITIAL_FORMS"] = "0"
        data[f"{prefix}-MIN_NUM_FORMS"] = "0"
        data[f"{prefix}-MAX_NUM_FORMS"] = "1000"
    response = client.post(edit_url, data)
    assert response.status_code == 302
    manager = type(world.users["action_manager"]).objects.get(username="action_manager")
    assert manager.has_perm("wagtail_llm_actions.configure_llm_provider")
    html = world.client("action_manager").get(reverse(f"{ACTION_NS}:edit", args=[world.action.pk]))
    assert PROVIDER_NOTE not in html.content.decode()


# -- the action form: prompt fields for action managers, provider fields only for providers ----


def action_post_data(action: LLMAction, **changes) -> dict:
    data = {
        "name": action.name,
        "slug": action.slug,
        "description": action.description,
        "page_types": list(action.page_types.values_list("pk", flat=True)),
        "source_field": action.source_field,
        "target_field": action.target_field,
        "output_mode": action.output_mode,
        "enabled": "on" if action.enabled else "",
        "prompt": action.prompt_id,
        "system_message": action.system_message,
        "context_message": action.context_message,
        "model": action.model,
        "api_base": action.api_base,
        "api_key_name": action.api_key_name,
        "temperature": "" if action.temperature is None else action.temperature,
        "max_tokens": "" if action.max_tokens is None else action.max_tokens,
        "timeout": action.timeout,
        "fallback_models": action.fallback_models,
        "extra_params": json.dumps(action.extra_params),
    }
    data.update(changes)
    return data


CRAFTED_PROVIDER_CHANGES = {
    "model": "openai/gpt-4o",
    "fallback_models": "openai/gpt-4o-mini",
    "api_base": "https://attacker.example.com/v1",
    "api_key_name": "GROQ_API_KEY",
    "extra_params": '{"top_p": 0.5}',
    "timeout": "900",
}


def test_action_manager_sees_provider_fields_disabled_with_their_values(world):
    world.action.api_base = "https://llm.example.com/v1"
    world.action.save()
    html = (
        world.client("action_manager")
        .get(reverse(f"{ACTION_NS}:edit", args=[world.action.pk]))
        .content.decode()
    )
    for name in ("model", "api_base", "api_key_name", "timeout", "fallback_models", "extra_params"):
        tag = re.search(rf'<(input|textarea)[^>]*name="{name}"[^>]*>', html)
        assert tag, name
        assert "disabled" in tag.group(0), name
    assert 'value="https://llm.example.com/v1"' in html
    assert 'value="local/extractive"' in html
    for name in ("name", "system_message", "temperature", "max_tokens"):
        tag = re.search(rf'<(input|textarea)[^>]*name="{name}"[^>]*>', html)
        assert tag and "disabled" not in tag.group(0), name


def test_crafted_post_cannot_change_provider_fields(world):
    action = world.action
    before = {
        f: getattr(action, f)
        for f in ("model", "fallback_models", "api_base", "api_key_name", "extra_params", "timeout")
    }
    data = action_post_data(
        action,
        name="Summarise for teenagers",
        system_message="Write for teenagers.",
        temperature="0.9",
        **CRAFTED_PROVIDER_CHANGES,
    )
    response = world.client("action_manager").post(
        reverse(f"{ACTION_NS}:edit", args=[action.pk]), data
    )
    assert response.status_code == 302, response.context["form"].errors
    action.refresh_from_db()
    # prompt fields changed ...
    assert action.name == "Summarise for teenagers"
    assert action.system_message == "Write for teenagers."
    assert action.temperature == 0.9
    # ... provider fields did not
    assert {f: getattr(action, f) for f in before} == before


def test_provider_manager_changes_provider_fields(world):
    action = world.action
    data = action_post_data(action, **CRAFTED_PROVIDER_CHANGES)
    response = world.client("provider_manager").post(
        reverse(f"{ACTION_NS}:edit", args=[action.pk]), data
    )
    assert response.status_code == 302, response.context["form"].errors
    action.refresh_from_db()
    assert action.model == "openai/gpt-4o"
    assert action.api_base == "https://attacker.example.com/v1"
    assert action.api_key_name == "GROQ_API_KEY"
    assert action.extra_params == {"top_p": 0.5}
    assert action.timeout == 900


def test_action_manager_creates_an_action_with_the_default_provider(world, settings):
    settings.WAGTAIL_LLM_ACTIONS = {
        **settings.WAGTAIL_LLM_ACTIONS,
        "DEFAULT_MODEL": "local/keywords",
    }
    data = action_post_data(
        world.action, name="Suggest tags", slug="suggest-tags", **CRAFTED_PROVIDER_CHANGES
    )
    client = world.client("action_manager")
    html = client.get(reverse(f"{ACTION_NS}:add")).content.decode()
    assert 'value="local/keywords"' in html  # the default the new action will get
    response = client.post(reverse(f"{ACTION_NS}:add"), data)
    assert response.status_code == 302, response.context["form"].errors
    created = LLMAction.objects.get(slug="suggest-tags")
    assert created.model == "local/keywords"
    assert (created.api_base, created.api_key_name, created.fallback_models) == ("", "", "")
    assert created.extra_params == {}
    assert created.timeout == LLMAction._meta.get_field("timeout").default


def test_action_manager_copy_keeps_the_provider_fields_of_the_original(world):
    world.action.api_key_name = "MISTRAL_API_KEY"
    world.action.save()
    data = action_post_data(
        world.action, name="Copy", slug="copy-of-summary", **CRAFTED_PROVIDER_CHANGES
    )
    response = world.client("action_manager").post(
        reverse(f"{ACTION_NS}:copy", args=[world.action.pk]), data
    )
    assert response.status_code == 302, response.context["form"].errors
    copy = LLMAction.objects.get(slug="copy-of-summary")
    assert copy.pk != world.action.pk
    assert (copy.model, copy.api_key_name, copy.api_base) == (
        "local/extractive",
        "MISTRAL_API_KEY",
        "",
    )
    world.action.refresh_from_db()
    assert (world.action.slug, world.action.name) == ("generate-summary", "Generate summary")


# -- copying never changes the original --------------------------------------------------------


def _copier(world, django_user_model):
    """May add and view actions, prompts, pipelines and budgets, not change them."""
    group = Group.objects.create(name="Copiers")
    group.permissions.add(
        Permission.objects.get(codename="access_admin"),
        *Permission.objects.filter(
            content_type__app_label="wagtail_llm_actions",
            codename__in=[
                f"{verb}_{model}"
                for verb in ("add", "view")
                for model in ("llmaction", "llmprompt", "llmpipeline", "llmbudget")
            ],
        ),
    )
    user = django_user_model.objects.create_user("copier", password="x")
    user.groups.add(group)
    client = Client()
    client.force_login(user)
    return client


def _copy_case(kind: str, world: World):
    """(namespace, original, POSTed copy form, field changed in the copy, new slug)."""
    if kind == "action":
        data = action_post_data(
            world.action, name="Copy", slug="copy-of-summary", system_message="Changed"
        )
        return ACTION_NS, world.action, data, "system_message", "copy-of-summary"
    if kind == "prompt":
        data = {"name": "Copy", "slug": "copy-prompt", "template": "Changed {title}"}
        return PROMPT_NS, world.prompt, {**data, "description": ""}, "template", "copy-prompt"
    if kind == "budget":
        # the copier may not change budgets: a POST onto the original would lift its cap
        budget = LLMBudget.objects.get(pk=_budget(world)[0])
        data = {"name": "Copy", "period": "day", "max_tokens": "999999999", "enabled": "on"}
        data |= {"action": "", "user": "", "group": "", "max_cost": ""}
        return BUDGET_NS, budget, data, "max_tokens", "Copy"
    step = world.pipeline.steps.get()
    data = {
        "name": "Copy",
        "slug": "copy-pipeline",
        "description": "",
        "enabled": "on",
        "steps-TOTAL_FORMS": "1",
        "steps-INITIAL_FORMS": "1",  # the copy form shows the original's steps, ids included
        "steps-MIN_NUM_FORMS": "1",
        "steps-MAX_NUM_FORMS": "1000",
        "steps-0-id": str(step.pk),
        "steps-0-name": "renamed",
        "steps-0-action": str(world.action.pk),
        "steps-0-writes": "on",
        "steps-0-ORDER": "1",
        "steps-0-DELETE": "",
    }
    return PIPELINE_NS, world.pipeline, data, "name", "copy-pipeline"


def _snapshot(obj) -> dict:
    obj = type(obj).objects.get(pk=obj.pk)
    values = {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}
    values.pop("updated_at", None)
    if isinstance(obj, LLMPipeline):
        values["steps"] = sorted(obj.steps.values_list("pk", "name", "action_id"))
    return values


@pytest.mark.parametrize("kind", ["action", "prompt", "pipeline", "budget"])
def test_posting_the_copy_form_makes_a_copy_and_leaves_the_original(kind, world, django_user_model):
    """Wagtail's CopyView binds the POSTed form to the original object, so a POST to the copy
    URL updated the original (as a user without the change permission, too)."""
    namespace, original, data, changed, slug = _copy_case(kind, world)
    before = _snapshot(original)
    client = _copier(world, django_user_model)
    url = reverse(f"{namespace}:copy", args=[original.pk])
    response = client.post(url, data)
    assert response.status_code == 302, response.context and response.context["form"].errors
    assert _snapshot(original) == before
    assert f'action="{url}"' in client.get(url).content.decode()  # the copy form posts here
    model = type(original)
    copy = model.objects.get(name=slug) if kind == "budget" else model.objects.get(slug=slug)
    assert copy.pk != original.pk
    if kind == "budget":
        assert copy.max_tokens == 999999999
    elif kind == "pipeline":
        assert [s.name for s in copy.steps.all()] == ["renamed"]
        assert copy.steps.get().pk != world.pipeline.steps.get().pk
    else:
        assert getattr(copy, changed) == data[changed]


@pytest.mark.parametrize(
    "namespace", [ACTION_CHOOSER_NS, PROMPT_CHOOSER_NS, PIPELINE_CHOOSER_NS, BUDGET_CHOOSER_NS]
)
def test_chooser_create_url_is_a_404_not_a_crash(namespace, world):
    """The choosers have no create form: their create URL answers 404 (it raised
    ``'NoneType' object has no attribute 'is_valid'`` on POST)."""
    before = state(world)
    client = world.client("superuser")
    url = reverse(f"{namespace}:create")
    assert client.post(url, {"name": "New", "slug": "new"}).status_code == 404
    assert client.get(url).status_code == 404
    assert state(world) == before


def test_editor_cannot_post_to_the_action_form(world):
    data = action_post_data(world.action, name="Hijacked", **CRAFTED_PROVIDER_CHANGES)
    response = world.client("editor").post(
        reverse(f"{ACTION_NS}:edit", args=[world.action.pk]), data
    )
    assert response.status_code == 302 and response["Location"] == reverse("wagtailadmin_home")
    world.action.refresh_from_db()
    assert world.action.name == "Generate summary"


# -- a user who may see every job but not manage it ------------------------------------------


def test_job_viewer_without_manage_permission_sees_no_buttons(world):
    viewer = world.users["no_pages"]
    viewer.user_permissions.add(Permission.objects.get(codename="view_llmjob"))
    client = world.client("no_pages")
    detail = reverse("wagtail_llm_actions_jobs:detail", args=[world.bulk_job.pk])
    html = client.get(detail).content.decode()
    assert "Job #" in html and "Cancel job" not in html
    assert "Composting in a small flat" not in html  # a page they cannot see
    response = client.post(reverse("wagtail_llm_actions_jobs:cancel", args=[world.bulk_job.pk]))
    assert response["Location"] == reverse("wagtailadmin_home")
    world.bulk_job.refresh_from_db()
    assert world.bulk_job.status == "queued"

    viewer.user_permissions.add(Permission.objects.get(codename="change_llmjob"))
    client = world.client("no_pages")
    assert "Cancel job" in client.get(detail).content.decode()
    client.post(reverse("wagtail_llm_actions_jobs:cancel", args=[world.bulk_job.pk]))
    world.bulk_job.refresh_from_db()
    assert world.bulk_job.status == "cancelled"


# -- CSRF on every POST ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ROWS))
def test_post_without_csrf_token_is_refused_and_changes_nothing(name, world):
    """Every URL of the app, POSTed by a superuser without a token: 403, nothing written."""
    row = ROWS[name]
    _prepare(name, world)
    url = row_url(name, row, world)
    data = row.data(world)
    if name.endswith((":edit", ":add", ":copy")) and name.startswith(ACTION_NS):
        data = action_post_data(world.action, slug="csrf-copy", name="Changed")
    elif name.startswith(PROMPT_NS) and name.endswith((":edit", ":add", ":copy")):
        data = {"name": "Changed", "slug": "changed", "template": "{title}"}
    before = state(world)
    response = world.client("superuser", enforce_csrf_checks=True).post(url, data)
    assert response.status_code == 403
    assert state(world) == before
    assert LLMAction.objects.get(pk=world.action.pk).name == "Generate summary"


# -- bulk confirmation: never a title the user cannot see -------------------------------------


def bulk_confirm_url(ids) -> str:
    return reverse("wagtail_bulk_action", args=["wagtailcore", "page", "run_llm_action"]) + (
        "?" + "&".join(f"id={pk}" for pk in ids)
    )


def test_bulk_confirmation_never_names_pages_the_user_cannot_see(
    world, make_post, blog_index, django_user_model
):
    from blog.models import BlogIndexPage, SimplePage

    # a section the no_pages user may edit, and a hidden unpublished draft elsewhere
    section = BlogIndexPage(title="Their section", slug="their-section")
    blog_index.add_child(instance=section)
    mine = make_post(title="A post of their own", parent=section)
    secret = make_post(title="Secret merger announcement", publish=False)
    # a hidden page of a type the action does not apply to ("Blog", the parent of their
    # section, is visible to them in the explorer, as Wagtail's own rule has it)
    wrong_type_secret = SimplePage(title="Hidden about page", slug="about", text="Hi")
    blog_index.add_child(instance=wrong_type_secret)
    world.users["no_pages"].groups.add(_admin_group("Section editors", section))
    # an action for the hidden page's type is not offered: hidden pages choose nothing
    simple_action = LLMAction.objects.create(
        name="About page action",
        slug="about",
        prompt=world.prompt,
        model="local/extractive",
        source_field="text",
        target_field="text",
    )
    simple_action.page_types.set([ContentType.objects.get_for_model(SimplePage)])

    client = world.client("no_pages")
    ids = [mine.pk, secret.pk, wrong_type_secret.pk, world.post.pk]
    offered = client.get(bulk_confirm_url(ids)).content.decode()
    assert "About page action" not in offered  # nothing preselected, nothing hidden offered
    for response in (
        client.post(bulk_confirm_url(ids), {"action": world.action.pk, "preview": "1"}),
        client.post(
            bulk_confirm_url(ids),
            {"action": world.action.pk, "include_descendants": "on", "preview": "1"},
        ),
    ):
        html = response.content.decode()
        assert "1 page will run." in html  # their own post
        for title in (
            "Secret merger announcement",
            "Composting in a small flat",
            "Hidden about page",
        ):
            assert f">{title}<" not in html and f"“{title}”" not in html
        assert "Not available to you" in html
        assert 'data-llm-skip="not_available"' in html
        assert "About page action" not in html
        # counted without names: no link to any hidden page
        for pk in (secret.pk, wrong_type_secret.pk, world.post.pk):
            assert reverse("wagtailadmin_pages:edit", args=[pk]) not in html

    # starting it: hidden pages are skipped as "not available" and unnamed on the job page
    client.post(bulk_confirm_url(ids), {"action": world.action.pk})
    job = LLMJob.objects.filter(user=world.users["no_pages"]).get()
    assert dict(job.items.values_list("page_id", "skip_reason")) == {
        mine.pk: "",
        secret.pk: "not_available",
        wrong_type_secret.pk: "not_available",
        world.post.pk: "not_available",
    }
    html = client.get(reverse("wagtail_llm_actions_jobs:detail", args=[job.pk])).content.decode()
    assert "A post of their own" in html
    assert "Secret merger announcement" not in html
    assert "Composting in a small flat" not in html


def test_bulk_confirmation_names_visible_pages_the_user_cannot_edit(world, author, make_post):
    other = make_post(title="Someone else's draft", publish=False)
    client = Client()
    client.force_login(author)
    html = client.post(
        bulk_confirm_url([other.pk]), {"action": world.action.pk, "preview": "1"}
    ).content.decode()
    assert 'data-llm-skip="no_permission"' in html
    assert "Someone else&#x27;s draft" in html
