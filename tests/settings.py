"""Test settings: the sandbox site with fast hashing and a throwaway database."""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from demo.settings import *  # noqa: E402,F403

INSTALLED_APPS = [
    "tests.testapp",
    *INSTALLED_APPS,  # noqa: F405
    "wagtail.contrib.table_block",
    "wagtail.contrib.typed_table_block",
]
# The sandbox's locales are off in tests but where a test turns them on
# (tests/translation_site.py), so every other test sees the site as it was.
WAGTAIL_I18N_ENABLED = False
del WAGTAIL_CONTENT_LANGUAGES  # noqa: F821 - Django's LANGUAGES, as before the sandbox's
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
# One runner per job in unit tests (the in-process worker drains one task at a time);
# the qcluster subprocess tests use the default of two (tests/qcluster_settings.py).
# The fake provider (tests/fakeserver.py) listens on 127.0.0.1 on a free port.
WAGTAIL_LLM_ACTIONS = {
    "RUN_INLINE": False,
    "RUNNERS_PER_JOB": 1,
    "ALLOWED_API_BASES": ["http://127.0.0.1:*"],
    # The fake server's keys (conftest.api_key_env, test_providers.KEY_NAME) are no LLM
    # provider's variables: named explicitly, as a site names variables of its own.
    "EXTRA_API_KEY_NAMES": ["TEST_LLM_API_KEY", "WLA_TEST_LLM_API_KEY"],
}
LOGGING = {"version": 1, "disable_existing_loggers": False}
