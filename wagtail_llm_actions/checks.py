"""Django system checks for the ``WAGTAIL_LLM_ACTIONS`` setting and django-q2."""

from __future__ import annotations

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Info, Tags, Warning, register
from django.utils.module_loading import import_string

from .conf import DEFAULTS


@register(Tags.compatibility)
def check_settings(app_configs, **kwargs):
    errors = []
    user = getattr(settings, "WAGTAIL_LLM_ACTIONS", {}) or {}
    if not isinstance(user, dict):
        return [
            Error(
                "WAGTAIL_LLM_ACTIONS must be a dict.",
                id="wagtail_llm_actions.E001",
            )
        ]
    for key in sorted(set(user) - set(DEFAULTS)):
        errors.append(
            Warning(
                f"Unknown WAGTAIL_LLM_ACTIONS key {key!r}.",
                hint="Known keys: " + ", ".join(sorted(DEFAULTS)),
                id="wagtail_llm_actions.W001",
            )
        )
    for prefix, path in (user.get("PROVIDERS") or {}).items():
        try:
            import_string(path)
        except ImportError as e:
            errors.append(
                Error(
                    f"Provider {prefix!r} cannot be imported from {path!r}: {e}",
                    id="wagtail_llm_actions.E002",
                )
            )
    errors.extend(check_provider_policy(user))
    errors.extend(check_block_marks(user))
    if not apps.is_installed("django_q"):
        errors.append(
            Error(
                "wagtail_llm_actions runs jobs on django-q2: add 'django_q' to INSTALLED_APPS.",
                id="wagtail_llm_actions.E003",
            )
        )
    elif not getattr(settings, "Q_CLUSTER", None) and not user.get("RUN_INLINE"):
        errors.append(
            Warning(
                "Q_CLUSTER is not configured, so LLM jobs will wait for a worker that cannot "
                "start.",
                hint="Set Q_CLUSTER (e.g. {'orm': 'default'}) and run 'manage.py qcluster', "
                "or set WAGTAIL_LLM_ACTIONS['RUN_INLINE'] = True.",
                id="wagtail_llm_actions.W002",
            )
        )
    q_cluster = getattr(settings, "Q_CLUSTER", None) or {}
    per_host = user.get("JOB_WORKERS_PER_HOST", DEFAULTS["JOB_WORKERS_PER_HOST"])
    workers = q_cluster.get("workers")
    if q_cluster and workers is not None and int(workers) <= int(per_host or 1):
        errors.append(
            Warning(
                f"Q_CLUSTER['workers'] is {workers} and bulk jobs may take up to "
                f"{per_host or 1} worker(s) of each host, so editor runs may wait behind a "
                "bulk job.",
                hint="Run at least JOB_WORKERS_PER_HOST + 1 workers (default: bulk jobs "
                "leave one worker free), or lower WAGTAIL_LLM_ACTIONS['JOB_WORKERS_PER_HOST'].",
                id="wagtail_llm_actions.W003",
            )
        )
    return errors


def check_provider_policy(user: dict) -> list:
    """``ALLOWED_API_BASES`` entries that match nothing, and a malformed ``API_KEY_NAMES``."""
    errors = []
    bases = user.get("ALLOWED_API_BASES") or []
    if isinstance(bases, str):
        bases = [bases]
    if bases:  # the providers package is imported only when there is something to check
        from .providers.policy import Endpoint
    for entry in bases:
        if Endpoint.parse(entry, allow_any_port=True) is None:
            errors.append(
                Warning(
                    f"WAGTAIL_LLM_ACTIONS['ALLOWED_API_BASES'] entry {entry!r} is not an "
                    "http(s) URL (without '.' or '..' path segments), so it allows nothing.",
                    hint="Write a URL prefix such as 'http://localhost:11434' or "
                    "'http://127.0.0.1:*'.",
                    id="wagtail_llm_actions.W010",
                )
            )
    for setting in ("API_KEY_NAMES", "EXTRA_API_KEY_NAMES"):
        names = user.get(setting)
        if names is not None and (isinstance(names, str) or not isinstance(names, list | tuple)):
            errors.append(
                Error(
                    f"WAGTAIL_LLM_ACTIONS[{setting!r}] must be a list of names or patterns.",
                    hint="For example ['MY_GATEWAY_KEY', 'TEAM_*_LLM_KEY'].",
                    id="wagtail_llm_actions.E010",
                )
            )
    return errors


def check_block_marks(user: dict) -> list:
    """``BLOCKS`` entries that mark nothing: not a block class or a child of one, or a value
    other than "content" or "presentation" (such an entry is ignored)."""
    entries = user.get("BLOCKS")
    if not entries:
        return []
    from .extraction import resolve_block_marks

    return [
        Warning(
            f"WAGTAIL_LLM_ACTIONS['BLOCKS'] {problem}, so it marks nothing.",
            hint="Write a block class's dotted path, optionally followed by the name of one "
            "of its child blocks, with 'content' or 'presentation', e.g. "
            "{'myapp.blocks.StatsBlock.sr_only_label': 'presentation'}.",
            id="wagtail_llm_actions.W004",
        )
        for problem in resolve_block_marks(entries).problems
    ]


@register(Tags.database)
def check_saved_provider_settings(app_configs, databases=None, **kwargs):
    """Saved actions and pipeline steps the provider policy refuses (``manage.py check
    --database default``, and ``migrate``): e.g. after an upgrade narrowed the rules, or a
    row written around validation. They would fail at their next call."""
    if not databases or "default" not in databases:
        return []
    from django.db import DatabaseError

    from .models import LLMAction, LLMPipelineStep

    messages = []
    try:
        actions = list(LLMAction.objects.filter(enabled=True).order_by("pk"))
        steps = list(
            LLMPipelineStep.objects.filter(action__isnull=True)
            .exclude(model="")
            .select_related("pipeline")
            .order_by("pk")
        )
    except DatabaseError:  # not migrated yet
        return []
    labelled = [(f"action {a.slug!r}", a) for a in actions] + [
        (f"pipeline {s.pipeline.slug!r} step {s.name!r}", s.as_action()) for s in steps
    ]
    for label, action in labelled:
        for field, problems in action.provider_problems().items():
            messages.append(
                Warning(
                    f"The {label} would be refused at its next call ({field}): "
                    + " ".join(problems),
                    hint="Change it in the admin, or allow what it needs in "
                    "WAGTAIL_LLM_ACTIONS (ALLOWED_API_BASES, EXTRA_API_KEY_NAMES).",
                    id="wagtail_llm_actions.W011",
                )
            )
    return messages


@register(Tags.compatibility, deploy=True)
def check_sqlite(app_configs, **kwargs):
    """A suggestion, never a requirement: plain SQLite works (writes are serialised and
    retried); WAL lets web requests read while a worker writes. A deployment check (listed by
    ``check --deploy``), not one of the checks every management command runs: the bulk
    screen and ``run_llm_action`` show it where it matters (:func:`sqlite_notice`)."""
    return sqlite_messages(default_database())


def default_database() -> dict:
    return (getattr(settings, "DATABASES", {}) or {}).get("default") or {}


def sqlite_messages(database: dict) -> list:
    """The WAL suggestion for one ``DATABASES`` entry, if it is an SQLite file without WAL
    (an in-memory database is never shared with another process)."""
    if not str(database.get("ENGINE", "")).endswith("sqlite3"):
        return []
    name = str(database.get("NAME", ""))
    if name == ":memory:" or "mode=memory" in name or name.startswith("file::memory:"):
        return []
    init_command = str((database.get("OPTIONS") or {}).get("init_command", "")).lower()
    if "journal_mode" in init_command and "wal" in init_command:
        return []
    return [
        Info(
            "The default database is SQLite without WAL. LLM actions work on it (their writes "
            "are serialised and retried while the database is busy), but web requests wait "
            "while a worker writes.",
            hint="Optional: add 'init_command': 'PRAGMA journal_mode=WAL;' to "
            "DATABASES['default']['OPTIONS'] (or run that PRAGMA once on the file) so that "
            "readers and a writer do not block each other.",
            id="wagtail_llm_actions.I001",
        )
    ]


def sqlite_notice() -> tuple[str, str] | None:
    """The WAL suggestion for the site's default database as ``(message, hint)``, or None."""
    messages = sqlite_messages(default_database())
    return (messages[0].msg, messages[0].hint) if messages else None


@register(Tags.templates)
def check_image_edit_button(app_configs, **kwargs):
    """The image edit view's buttons come from a template override: it is used only when
    this app comes before ``wagtail.images`` in ``INSTALLED_APPS``."""
    names = [config.name for config in apps.get_app_configs()]
    mine, images = "wagtail_llm_actions", "wagtail.images"
    if mine not in names or images not in names or names.index(mine) < names.index(images):
        return []
    return [
        Info(
            "Image actions have no button in the image edit view: wagtail_llm_actions comes "
            "after wagtail.images in INSTALLED_APPS, so Wagtail's own template is used.",
            hint="List 'wagtail_llm_actions' before 'wagtail.images' to get the buttons (the "
            "image bulk action and run_llm_action --images work either way).",
            id="wagtail_llm_actions.I002",
        )
    ]
