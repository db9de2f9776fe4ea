"""wagtail-localize's "Machine translate" through a translation action (issue 23 §1): the
translator wagtail-localize loads from WAGTAILLOCALIZE_MACHINE_TRANSLATOR keeps every tag,
logs each call, honours budgets, and leaves a string whose tags come back broken untranslated."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import override_settings
from wagtail.models import Locale

from tests.fakeserver import reverse_words, sent_segments

pytest.importorskip("wagtail_localize", reason="wagtail-localize is not installed")

from wagtail_localize.machine_translators import get_machine_translator  # noqa: E402
from wagtail_localize.strings import StringValue  # noqa: E402

pytestmark = pytest.mark.django_db

CONFIG = {
    "CLASS": "wagtail_llm_actions.localize.LLMActionsTranslator",
    "OPTIONS": {"ACTION": "translate"},
}
LINKED = 'See <a id="a1">the <b>chili</b> oil</a> &amp; dumplings by Mei Lin.'
PLAIN = "Fold the dough."


@pytest.fixture
def locales(db):
    en = Locale.objects.get_or_create(language_code="en")[0]
    de = Locale.objects.get_or_create(language_code="de")[0]
    return en, de


@pytest.fixture
def translator(translate_action):
    with override_settings(WAGTAILLOCALIZE_MACHINE_TRANSLATOR=CONFIG):
        yield get_machine_translator()


def translate(translator, locales, *texts):
    en, de = locales
    strings = [StringValue(t) for t in texts]
    return strings, translator.translate(en, de, dict.fromkeys(strings).keys())


def test_wagtail_localize_loads_it_and_it_offers_only_other_languages(translator, locales):
    from wagtail_llm_actions.localize import LLMActionsTranslator

    en, de = locales
    assert isinstance(translator, LLMActionsTranslator)
    assert translator.display_name == "Translate"
    assert translator.can_translate(en, de)
    assert not translator.can_translate(de, Locale(language_code="de-at"))


def test_strings_come_back_translated_with_every_tag(translator, locales, fake_llm):
    from wagtail_llm_actions.models import LLMInteraction

    fake_llm.configure(translate="reverse")
    strings, result = translate(translator, locales, LINKED, PLAIN, '<a id="a2"></a>')
    assert result[strings[0]].data == (
        'eeS <a id="a1">eht <b>ilihc</b> lio</a> &amp; sgnilpmud yb ieM niL.'
    )
    assert result[strings[1]].data == reverse_words(PLAIN)
    assert result[strings[2]].data == '<a id="a2"></a>'  # nothing to translate: as it was
    (request,) = fake_llm.requests
    assert sent_segments(request) == {
        "1": "See ⟦1⟧the ⟦2⟧chili⟦3⟧ oil⟦4⟧ & dumplings by Mei Lin.",
        "2": PLAIN,
    }
    system = request["json"]["messages"][0]["content"]
    assert "dumplings → Maultaschen" in system and "- Mei Lin" in system  # glossary, terms
    (interaction,) = LLMInteraction.objects.all()
    assert interaction.trigger == "wagtail_localize" and interaction.status == "success"
    assert interaction.action.slug == "translate" and interaction.total_tokens


def test_each_call_is_one_interaction_and_a_repeat_comes_from_the_cache(
    translator, locales, fake_llm, translate_action, settings
):
    from wagtail_llm_actions.models import LLMInteraction

    settings.WAGTAIL_LLM_ACTIONS = {**settings.WAGTAIL_LLM_ACTIONS, "CACHE_TTL": 3600}
    translate_action.use_cache = True
    translate_action.save()
    fake_llm.configure(translate="reverse")
    translate(translator, locales, PLAIN)
    translate(translator, locales, PLAIN)
    assert LLMInteraction.objects.count() == 2
    assert fake_llm.request_count == 1
    assert list(LLMInteraction.objects.order_by("pk").values_list("cached", flat=True)) == [
        False,
        True,
    ]


def test_a_budget_that_refuses_is_a_clear_error_and_nothing_is_sent(translator, locales, fake_llm):
    from wagtail_llm_actions.exceptions import BudgetExceeded
    from wagtail_llm_actions.models import LLMBudget, LLMInteraction

    LLMBudget.objects.create(name="Translations", period="month", max_tokens=1)
    with pytest.raises(BudgetExceeded, match="“Translations”"):
        translate(translator, locales, LINKED)
    assert fake_llm.request_count == 0
    (interaction,) = LLMInteraction.objects.all()
    assert interaction.error_code == "budget" and interaction.trigger == "wagtail_localize"


def test_a_dropped_tag_is_asked_again_once_then_left_untranslated(translator, locales, fake_llm):
    from wagtail_llm_actions.models import LLMInteraction

    fake_llm.configure(translate="drop_tag")
    strings, result = translate(translator, locales, LINKED, PLAIN)
    assert strings[0] not in result  # wagtail-localize leaves it for a person
    assert result[strings[1]].data == reverse_words(PLAIN)
    first, retry = fake_llm.requests
    assert set(sent_segments(first)) == {"1", "2"} and set(sent_segments(retry)) == {"1"}
    (interaction,) = LLMInteraction.objects.all()
    assert "String 1 left untranslated" in interaction.error_message
    assert "lost" in interaction.error_message


def test_a_provider_error_is_recorded_and_raised(translator, locales, fake_llm):
    from wagtail_llm_actions.exceptions import LLMActionError
    from wagtail_llm_actions.models import LLMInteraction

    fake_llm.configure(status=401, error_message="Incorrect API key provided.")
    with pytest.raises(LLMActionError) as raised:
        translate(translator, locales, PLAIN)
    interaction = LLMInteraction.objects.get()
    assert interaction.status == "error" and interaction.error_message == raised.value.message


def test_an_invented_tag_is_asked_again_and_a_good_retry_is_kept(translator, locales, fake_llm):
    fake_llm.configure(translate="reverse").enqueue(translate="invent_tag")
    strings, result = translate(translator, locales, LINKED)
    assert result[strings[0]].data.startswith('eeS <a id="a1">eht <b>ilihc</b>')
    assert fake_llm.request_count == 2


def test_loading_the_translator_does_not_import_litellm():
    root = Path(__file__).resolve().parent.parent
    code = (
        "import sys, django; django.setup();"
        "from django.conf import settings;"
        f"settings.WAGTAILLOCALIZE_MACHINE_TRANSLATOR = {CONFIG!r};"
        "from wagtail_localize.machine_translators import get_machine_translator;"
        "get_machine_translator();"
        "print('litellm' in sys.modules)"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": os.pathsep.join([str(root), str(root / "sandbox")]),
    }
    env.pop("DATABASE_URL", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_the_button_records_its_user_and_shows_a_refusal_as_a_message(
    translator, locales, fake_llm, admin_user, rf
):
    """Called from wagtail-localize's view (found on the stack by its module's name): the
    interaction carries the user, and a refusal is a message rather than a server error."""
    from django.contrib.messages import get_messages
    from django.contrib.messages.storage.fallback import FallbackStorage

    from wagtail_llm_actions.localize import LOCALIZE_VIEWS
    from wagtail_llm_actions.models import LLMBudget, LLMInteraction

    code = (
        "def apply_machine_translation(translation_id, user, machine_translator):\n"
        "    instance = None\n"
        "    return call()\n"
        "def machine_translate(request, translation_id):\n"
        "    return apply_machine_translation(translation_id, request.user, None)\n"
    )
    request = rf.post("/")
    request.user = admin_user
    request.session = {}
    request._messages = FallbackStorage(request)
    namespace = {"__name__": f"{LOCALIZE_VIEWS}.edit_translation"}
    namespace["call"] = lambda: translate(translator, locales, PLAIN)[1]
    exec(compile(code, "<wagtail-localize>", "exec"), namespace)  # noqa: S102

    fake_llm.configure(translate="reverse")
    assert list(namespace["machine_translate"](request, 1).values())[0].data
    assert LLMInteraction.objects.get().user == admin_user

    LLMBudget.objects.create(name="Translations", period="month", max_tokens=1)
    assert namespace["machine_translate"](request, 1) == {}
    (message,) = [str(m) for m in get_messages(request)]
    assert message.startswith("Nothing was machine translated:") and "Translations" in message


def test_wagtail_localizes_own_button_in_a_site_with_it_installed():
    """tests/test_localize_button.py with wagtail-localize in INSTALLED_APPS (its models, views
    and hooks kept out of this process): the button saves our translations as machine
    translations with every tag, logs the user and the page, and shows a refusal."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("DATABASE_URL", None)  # its own SQLite database, not this run's test database
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--ds=tests.localize_settings",
            "tests/test_localize_button.py",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "3 passed" in result.stdout
