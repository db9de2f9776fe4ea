"""Django startup and importing the app must not import litellm (about 4 s and 190 MB)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_setup_and_admin_urls_do_not_import_litellm():
    code = (
        "import sys, django; django.setup();"
        "import wagtail_llm_actions, wagtail_llm_actions.wagtail_hooks, "
        "wagtail_llm_actions.service, wagtail_llm_actions.providers;"
        "from django.urls import reverse; reverse('wagtailadmin_home');"
        "from wagtail import hooks; hooks.get_hooks('register_admin_urls');"
        "print('litellm' in sys.modules)"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo.settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "sandbox")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_startup_and_url_loading_leave_the_engine_and_views_unimported():
    """``manage.py check`` (setup, hooks, every admin URL) imports only the app's wiring."""
    code = (
        "import sys, django; django.setup();"
        "from django.urls import get_resolver; get_resolver().url_patterns;"
        "import io; from django.core.management import call_command;"
        "call_command('check', stdout=io.StringIO());"
        "heavy = ['litellm', 'tiktoken', 'wagtail_llm_actions.jobs', "
        "'wagtail_llm_actions.planning', "
        "'wagtail_llm_actions.service', 'wagtail_llm_actions.providers', "
        "'wagtail_llm_actions.editor', 'wagtail_llm_actions.reports', "
        "'wagtail_llm_actions.views.interactions', 'wagtail_llm_actions.views.action_stats', "
        "'wagtail_llm_actions.views.editor', 'wagtail_llm_actions.views.pipelines', "
        "'wagtail_llm_actions.views.jobs', 'wagtail_llm_actions.views.action_tryout'];"
        "print(','.join(m for m in heavy if m in sys.modules and "
        "type(sys.modules[m]).__name__ == 'module'))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo.settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "sandbox")]),
    }
    env.pop("DATABASE_URL", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


def test_the_provider_layer_imports_no_models():
    """Models use providers (to validate a model string), never the other way round: the
    provider layer takes plain values."""
    import ast

    for path in sorted((ROOT / "wagtail_llm_actions" / "providers").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                # ``from .. import models`` names the module only among what it imports.
                module = node.module or ""
                names = [module, *(f"{module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                assert "models" not in name.split(".") or name.startswith("django"), (
                    f"{path.name} imports {name}"
                )


def test_lazy_admin_urls_resolve_to_their_views():
    """The editor, pipeline-run and job URLs (imported on first request) reach their views."""
    code = (
        "import sys, django; django.setup();"
        "from django.urls import resolve, reverse;"
        "names = [('wagtail_llm_actions_editor:run', [1, 2]), "
        "('wagtail_llm_actions_editor:outcome', [3]), "
        "('wagtail_llm_actions_pipelines:run', [1, 2]), "
        "('wagtail_llm_actions_jobs:index', []), ('wagtail_llm_actions_jobs:retry', [4])];"
        "matches = [resolve(reverse(n, args=a)).func for n, a in names];"
        "print(','.join(f'{f.lazy_view_path}:{getattr(f, \"csrf_exempt\", False)}' "
        "for f in matches))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo.settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "sandbox")]),
    }
    env.pop("DATABASE_URL", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().split(",") == [
        # the run endpoint checks the CSRF token itself once the body is readable
        "wagtail_llm_actions.views.editor.run:True",
        "wagtail_llm_actions.views.editor.outcome:False",
        "wagtail_llm_actions.views.pipelines.run:False",
        "wagtail_llm_actions.views.jobs.JobIndexView:False",
        "wagtail_llm_actions.views.jobs.retry:False",
    ]


def test_startup_builds_no_form_class_for_the_app_snippets():
    """Create, edit, copy and revert views (and their ModelForm classes) of prompts, actions
    and pipelines are built on their first request, not when ``manage.py check`` loads the
    admin URLs; their URLs still resolve to Wagtail's views."""
    code = (
        "import gc, io, django; django.setup();"
        "from django.urls import get_resolver, resolve, reverse; get_resolver().url_patterns;"
        "from django.core.management import call_command;"
        "call_command('check', stdout=io.StringIO());"
        "from wagtail.admin.forms import WagtailAdminModelForm;"
        "walk = lambda c: [d for s in c.__subclasses__() for d in (s, *walk(s))];"
        "gc.collect();"
        "built = [c.__name__ for c in walk(WagtailAdminModelForm) if getattr(getattr(c, "
        "'_meta', None), 'model', None) is not None "
        "and c._meta.model._meta.app_label == 'wagtail_llm_actions'];"
        "ns = 'wagtailsnippets_wagtail_llm_actions_';"
        "urls = [('llmaction:add', []), ('llmaction:edit', [1]), ('llmpipeline:copy', [1]), "
        "('llmprompt:revisions_revert', [1, 2])];"
        "views = [resolve(reverse(ns + n, args=a)).func.view_class.__name__ for n, a in urls];"
        "print(len(built), ','.join(views))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo.settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "sandbox")]),
    }
    env.pop("DATABASE_URL", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == (
        "0 LLMActionCreateView,LLMActionEditView,SafeCopyView,_RevisionsRevertView"
    )
