"""Settings for bench/startup.py: the sandbox site with or without wagtail_llm_actions.

``LLM_ACTIONS_BENCH_APP=0`` leaves the app out. The sandbox's ``blog`` app imports the app's
panels, so it is left out in both variants; everything else (django_q included, which the app
requires) is the same.
"""

import os

from demo.settings import *  # noqa: F403
from demo.settings import INSTALLED_APPS

INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "blog"]
if os.environ.get("LLM_ACTIONS_BENCH_APP", "1") == "0":
    INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "wagtail_llm_actions"]
DEBUG = False
