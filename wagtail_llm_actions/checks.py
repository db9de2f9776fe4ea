"""Django system checks for the ``WAGTAIL_LLM_ACTIONS`` setting and django-q2."""

from __future__ import annotations

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
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
    runners = user.get("RUNNERS_PER_JOB", DEFAULTS["RUNNERS_PER_JOB"])
    workers = q_cluster.get("workers")
    if q_cluster and workers is not None and int(workers) <= int(runners):
        errors.append(
            Warning(
                f"Q_CLUSTER['workers'] is {workers} and each bulk job takes up to "
                f"{runners} workers, so editor runs may wait behind a bulk job.",
                hint="Run at least RUNNERS_PER_JOB + 1 workers, or lower "
                "WAGTAIL_LLM_ACTIONS['RUNNERS_PER_JOB'].",
                id="wagtail_llm_actions.W003",
            )
        )
    return errors
