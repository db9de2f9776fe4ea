"""Settings for a ``qcluster`` subprocess started by tests (see ``tests/workers.py``).

The database is the one the test uses: a plain SQLite file (``LLM_TEST_SQLITE``) or, with
``DATABASE_URL``, the PostgreSQL test database (``LLM_TEST_DB_NAME``). The broker is the ORM
or Redis (``Q_BROKER=redis``) on the list ``Q_NAME``. Leases are short so that a killed
worker's items are recovered within seconds. ``LLM_HOST_ID`` names the host the cluster
plays (several clusters with the same ``Q_NAME`` are several hosts of one site).
"""

import os

from tests.settings import *  # noqa: F403

# Workers run as in production: no query log kept in memory.
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"

if os.environ.get("LLM_TEST_SQLITE"):
    # Plain SQLite, exactly as Django configures it for a new site: no WAL, no
    # transaction_mode, no init_command, the default timeout.
    DATABASES = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["LLM_TEST_SQLITE"]}
    }
elif os.environ.get("LLM_TEST_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["LLM_TEST_DB_NAME"]  # noqa: F405

if os.environ.get("LLM_TEST_MEDIA_ROOT"):
    # Image tests: the images' files, where the test process wrote them.
    STORAGES = {  # noqa: F405
        **STORAGES,  # noqa: F405
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": os.environ["LLM_TEST_MEDIA_ROOT"]},
        },
    }

Q_CLUSTER = {
    "name": os.environ.get("Q_NAME", "llm_actions"),
    "workers": int(os.environ.get("Q_WORKERS", "2")),
    "timeout": int(os.environ.get("Q_TIMEOUT", "120")),
    "retry": int(os.environ.get("Q_RETRY", "150")),
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "poll": 0.1,
    "guard_cycle": 0.2,
}
if os.environ.get("Q_BROKER") == "redis":
    Q_CLUSTER["redis"] = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
else:
    Q_CLUSTER["orm"] = "default"

if os.environ.get("LLM_TEST_KILL_AFTER_ANSWER"):
    # The crash test: a worker SIGKILLs itself once, right after an answer is stored.
    INSTALLED_APPS = [*INSTALLED_APPS, "tests.crashhook"]  # noqa: F405

WAGTAIL_LLM_ACTIONS = {
    "RUN_INLINE": False,
    # A cluster of the multi-host tests is a host of its own (tests/workers.py, QCluster).
    "HOST_ID": os.environ.get("LLM_HOST_ID") or None,
    "JOB_WORKERS_PER_HOST": int(os.environ.get("LLM_JOB_WORKERS_PER_HOST", "0")) or None,
    "LEASE_SECONDS": float(os.environ.get("LLM_LEASE_SECONDS", "2")),
    "CONCURRENCY": {"*": int(os.environ.get("LLM_CONCURRENCY", "4"))},
    "RETRY_BACKOFF": 0.1,
    "MAX_ATTEMPTS": 3,
    "ALLOWED_API_BASES": ["http://127.0.0.1:*"],  # the fake provider
    # The fake provider's key names, as the tests' own settings name them.
    "EXTRA_API_KEY_NAMES": WAGTAIL_LLM_ACTIONS["EXTRA_API_KEY_NAMES"],  # noqa: F405
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "wagtail_llm_actions": {"handlers": ["console"], "level": "INFO"},
        "django-q": {"handlers": ["console"], "level": "INFO"},
    },
}
