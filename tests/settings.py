"""Test settings: the sandbox site with fast hashing and a throwaway database."""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from demo.settings import *  # noqa: E402,F403

SECRET_KEY = "tests"  # noqa: S105
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # noqa: S303
if not os.environ.get("DATABASE_URL"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("TEST_SQLITE_NAME", ":memory:"),
            "TEST": {"NAME": os.environ.get("TEST_SQLITE_NAME")},
        }
    }
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WAGTAIL_LLM_ACTIONS = {"RUN_INLINE": False}
LOGGING = {"version": 1, "disable_existing_loggers": False}
