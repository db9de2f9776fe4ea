"""Settings for the sandbox site. ``DATABASE_URL`` selects the database (SQLite otherwise)."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "sandbox-only-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "blog",
    "wagtail_llm_actions",
    "wagtail.contrib.forms",
    "wagtail.contrib.redirects",
    "wagtail.contrib.settings",
    "wagtail.embeds",
    "wagtail.sites",
    "wagtail.users",
    "wagtail.snippets",
    "wagtail.documents",
    "wagtail.images",
    "wagtail.search",
    "wagtail.admin",
    "wagtail",
    "modelcluster",
    "taggit",
    "django_q",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "wagtail.contrib.redirects.middleware.RedirectMiddleware",
]

ROOT_URLCONF = "demo.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.debug",
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "demo.wsgi.application"

if os.environ.get("DATABASE_URL"):
    import dj_database_url

    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"])}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("SANDBOX_DB", str(BASE_DIR / "db.sqlite3")),
            # WAL + IMMEDIATE transactions: the web process and the django-q2 workers write
            # to the same file without "database is locked" errors.
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "static_collected"
MEDIA_URL = "/media/"
MEDIA_ROOT = BASE_DIR / "media"

WAGTAIL_SITE_NAME = "LLM actions sandbox"
# Two extra locales, so the demo shows translation (the "translate" action, local/translate).
WAGTAIL_I18N_ENABLED = True
WAGTAIL_CONTENT_LANGUAGES = [("en", "English"), ("de", "German"), ("fr", "French")]
WAGTAILADMIN_BASE_URL = os.environ.get("WAGTAILADMIN_BASE_URL", "http://localhost:8000")
WAGTAILSEARCH_BACKENDS = {"default": {"BACKEND": "wagtail.search.backends.database"}}

# django-q2: the ORM broker needs no extra service. Set Q_BROKER=redis to use Redis.
Q_CLUSTER = {
    "name": "llm_actions",
    # Bulk jobs use all workers but one (JOB_WORKERS_PER_HOST), which keeps editor runs responsive.
    "workers": int(os.environ.get("Q_WORKERS", "3")),
    "timeout": 900,
    "retry": 960,
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "poll": 0.2,
    "orm": "default",
}
if os.environ.get("Q_BROKER") == "redis":
    Q_CLUSTER.pop("orm")
    Q_CLUSTER["redis"] = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

WAGTAIL_LLM_ACTIONS = {
    "RUN_INLINE": os.environ.get("LLM_ACTIONS_RUN_INLINE") == "1",
    # The offline provider streams its answer a few words every 50 ms, so the editor shows
    # the text arriving as a real model's would.
    "LOCAL_STREAM_DELAY": 0.05,
    # Non-public model servers the demo may use, e.g. a local Ollama:
    # LLM_ACTIONS_ALLOWED_API_BASES=http://localhost:11434,http://127.0.0.1:8080/v1
    # (LLM_ACTIONS_API_BASE, the base of the demo actions, is allowed too).
    "ALLOWED_API_BASES": [
        base.strip()
        for base in [
            *os.environ.get("LLM_ACTIONS_ALLOWED_API_BASES", "").split(","),
            os.environ.get("LLM_ACTIONS_API_BASE", ""),
        ]
        if base.strip()
    ],
    # Key variables besides the LLM providers' own (OPENAI_API_KEY…), e.g. a gateway's:
    # LLM_ACTIONS_EXTRA_API_KEY_NAMES=MY_GATEWAY_KEY (LLM_ACTIONS_API_KEY_NAME, the key of
    # the demo actions, is allowed too).
    "EXTRA_API_KEY_NAMES": [
        name.strip()
        for name in [
            *os.environ.get("LLM_ACTIONS_EXTRA_API_KEY_NAMES", "").split(","),
            os.environ.get("LLM_ACTIONS_API_KEY_NAME", ""),
        ]
        if name.strip()
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"wagtail_llm_actions": {"handlers": ["console"], "level": "INFO"}},
}
