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
