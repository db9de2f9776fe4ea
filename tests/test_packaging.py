"""The built wheel carries templates, static files, migrations and the message catalogues,
and works in a fresh site.

Builds the wheel without isolation (no downloads), installs it with ``--no-deps`` into a new
virtual environment that borrows the dependencies already installed here, and runs a tiny
Wagtail site that has never seen this repository: its own page type, migrations, one action
run on the offline provider, templates and static files found.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "wagtail_llm_actions"

pytestmark = pytest.mark.packaging


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> tuple[Path, str]:
    """The wheel, and what the build printed."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = out.glob("wagtail_llm_actions-*.whl")
    return wheel, result.stdout + result.stderr


@pytest.fixture(scope="module")
def wheel(build) -> Path:
    return build[0]


def test_the_build_prints_no_packaging_warnings(build):
    """No "absent from the packages configuration" for data folders, no "no files found"
    for MANIFEST.in lines that match nothing (the ~200 lines every pip install printed)."""
    _wheel, output = build
    warnings = [
        line
        for line in output.splitlines()
        if "warning" in line.lower()
        # PYTHONDONTWRITEBYTECODE=1 in the environment, not the package's configuration
        and "byte-compiling is disabled" not in line
    ]
    assert not warnings, "\n".join(warnings)
    assert "absent from" not in output and "no files found" not in output


def data_files() -> set[str]:
    files = set()
    for folder in ("templates", "static", "migrations", "locale"):
        for path in (PACKAGE / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                files.add(path.relative_to(ROOT).as_posix())
    return files


def test_wheel_contains_templates_static_migrations_and_catalogues(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = data_files() - names
    for language in ("en", "de", "fr"):
        for suffix in ("po", "mo"):
            assert f"wagtail_llm_actions/locale/{language}/LC_MESSAGES/django.{suffix}" in names
    assert not missing, f"not in the wheel: {sorted(missing)}"
    assert not [n for n in names if n.startswith(("tests/", "sandbox/", "bench/"))]


SETTINGS = """
SECRET_KEY = "x"
INSTALLED_APPS = [
    "freshsite", "wagtail_llm_actions", "django_q",
    "wagtail.snippets", "wagtail.users", "wagtail.images", "wagtail.documents",
    "wagtail.search", "wagtail.admin", "wagtail.sites", "wagtail",
    "modelcluster", "taggit",
    "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
    "django.contrib.sessions", "django.contrib.messages", "django.contrib.staticfiles",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "site.sqlite3"}}
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
              "OPTIONS": {"context_processors": [
                  "django.template.context_processors.request",
                  "django.contrib.auth.context_processors.auth",
                  "django.contrib.messages.context_processors.messages"]}}]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
STATIC_URL = "/static/"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
Q_CLUSTER = {"name": "fresh", "orm": "default"}
ROOT_URLCONF = "freshsite.urls"
WAGTAILADMIN_BASE_URL = "http://localhost"
"""

MODELS = """
from django.db import models
from wagtail import blocks
from wagtail.fields import StreamField
from wagtail.models import Page

class ArticlePage(Page):
    body = StreamField([("paragraph", blocks.RichTextBlock())], blank=True)
    summary = models.TextField(blank=True)
"""

URLS = """
from django.urls import include, path
from wagtail.admin import urls as admin_urls
urlpatterns = [path("admin/", include(admin_urls))]
"""

SCRIPT = """
import django, sys
django.setup()
from django.core.management import call_command
call_command("makemigrations", "freshsite", verbosity=0)
call_command("migrate", verbosity=0)
call_command("check", fail_level="ERROR")
import wagtail_llm_actions
assert "site-packages" in wagtail_llm_actions.__file__, wagtail_llm_actions.__file__
from django.contrib.contenttypes.models import ContentType
from django.contrib.staticfiles import finders
from django.template.loader import get_template
from wagtail.models import Page
from wagtail.rich_text import RichText
from freshsite.models import ArticlePage
from wagtail_llm_actions.models import LLMAction, LLMPrompt
from wagtail_llm_actions.service import LLMService

page = ArticlePage(title="Fresh", slug="fresh", body=[
    ("paragraph", RichText("<p>Compost needs air, water and patience to work well.</p>")),
    ("paragraph", RichText("<p>Worms turn kitchen scraps into rich soil within months.</p>")),
])
Page.get_first_root_node().add_child(instance=page)
page.save_revision().publish()
prompt = LLMPrompt.objects.create(name="S", slug="s", template="Summarize:\\n\\n{body}")
action = LLMAction.objects.create(name="S", slug="s", prompt=prompt, target_field="summary",
                                  model="local/extractive")
action.page_types.set([ContentType.objects.get_for_model(ArticlePage)])
interaction = LLMService().run(action, page)
draft = ArticlePage.objects.get(pk=page.pk).get_latest_revision_as_object()
assert draft.summary and ArticlePage.objects.get(pk=page.pk).summary == ""
for name in sys.argv[1:]:
    if name.startswith("templates/"):
        get_template(name[len("templates/"):])
    elif name.startswith("static/"):
        assert finders.find(name[len("static/"):]), name
from django.utils import translation
with translation.override("de"):
    assert translation.gettext("Run %(feature)s action") == "%(feature)s-Aktion ausführen"
with translation.override("fr"):
    assert str(LLMAction._meta.verbose_name_plural) == "actions"
with translation.override("de"):
    assert str(LLMAction._meta.verbose_name_plural) == "Aktionen"
print("fresh site ok", "litellm" in sys.modules)
"""


def test_wheel_works_in_a_fresh_site(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    fresh_site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    with zipfile.ZipFile(wheel) as z:  # a wheel is a zip: unpacking it is installing it
        z.extractall(fresh_site)
    # Dependencies come from this environment's site-packages, added as a plain path: its
    # .pth files (and so the editable install of this repository) are not processed.
    (fresh_site / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    project = tmp_path / "project"
    (project / "freshsite").mkdir(parents=True)
    (project / "freshsite" / "__init__.py").write_text("")
    (project / "freshsite" / "settings.py").write_text(SETTINGS)
    (project / "freshsite" / "models.py").write_text(MODELS)
    (project / "freshsite" / "urls.py").write_text(URLS)
    templates = sorted(
        p.relative_to(PACKAGE).as_posix() for p in (PACKAGE / "templates").rglob("*.html")
    )
    static = sorted(
        p.relative_to(PACKAGE).as_posix() for p in (PACKAGE / "static").rglob("*") if p.is_file()
    )
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "DATABASE_URL"}} | {
        "DJANGO_SETTINGS_MODULE": "freshsite.settings",
        "PYTHONPATH": str(project),
    }
    result = subprocess.run(
        [python, "-c", textwrap.dedent(SCRIPT), *templates, *static],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fresh site ok False" in result.stdout
