from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WagtailLLMActionsAppConfig(AppConfig):
    name = "wagtail_llm_actions"
    label = "wagtail_llm_actions"
    verbose_name = _("LLM actions")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Only light modules here: the job engine, the service and the providers are
        # imported when first used (see lazy.py), so startup stays cheap.
        from . import checks, signal_handlers  # noqa: F401
