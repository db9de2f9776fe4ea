from django.apps import AppConfig
from django.utils.functional import lazy


def _actions_label():
    from .conf import ACTIONS_LABEL

    return ACTIONS_LABEL


class WagtailLLMActionsAppConfig(AppConfig):
    name = "wagtail_llm_actions"
    label = "wagtail_llm_actions"
    verbose_name = lazy(lambda: str(_actions_label()), str)()  # "AI actions": FEATURE_NAME
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Only light modules here: the job engine, the service and the providers are
        # imported when first used (see lazy.py), so startup stays cheap.
        from . import checks, signal_handlers  # noqa: F401
