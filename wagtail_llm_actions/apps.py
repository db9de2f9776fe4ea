from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WagtailLLMActionsAppConfig(AppConfig):
    name = "wagtail_llm_actions"
    label = "wagtail_llm_actions"
    verbose_name = _("LLM actions")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, signal_handlers  # noqa: F401
        from .tasks import connect_signals

        connect_signals()  # django-q2 workers resume unfinished bulk jobs when they start
