"""The test settings with wagtail-localize installed, for ``tests/test_localize_button.py``
only (run in a subprocess by ``tests/test_localize_translator.py``): its models, admin views
and hooks stay out of every other test."""

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "wagtail_localize"]  # noqa: F405
WAGTAILLOCALIZE_MACHINE_TRANSLATOR = {
    "CLASS": "wagtail_llm_actions.localize.LLMActionsTranslator",
    "OPTIONS": {"ACTION": "translate"},
}
