"""System checks catch configuration mistakes an admin would otherwise find at run time."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks

from wagtail_llm_actions.checks import check_settings

#: ``DATABASES["default"]`` of a site made with ``startproject``: a file, no WAL.
PLAIN_SQLITE = {"ENGINE": "django.db.backends.sqlite3", "NAME": "/srv/site/db.sqlite3"}


def ids():
    return [m.id for m in check_settings(None)]


def test_clean_settings_pass(settings):
    settings.WAGTAIL_LLM_ACTIONS = {"RUNNERS_PER_JOB": 2}
    settings.Q_CLUSTER = {"orm": "default", "workers": 3}
    assert ids() == []


def test_typo_in_a_key_is_reported(settings):
    settings.WAGTAIL_LLM_ACTIONS = {"DEFUALT_TIMEOUT": 5}
    messages = check_settings(None)
    assert [m.id for m in messages] == ["wagtail_llm_actions.W001"]
    assert "DEFUALT_TIMEOUT" in messages[0].msg


def test_unimportable_provider_is_an_error(settings):
    settings.WAGTAIL_LLM_ACTIONS = {"PROVIDERS": {"mine": "nowhere.Provider"}}
    assert "wagtail_llm_actions.E002" in ids()


def test_missing_q_cluster_is_reported_unless_inline(settings):
    settings.Q_CLUSTER = None
    settings.WAGTAIL_LLM_ACTIONS = {}
    assert "wagtail_llm_actions.W002" in ids()
    settings.WAGTAIL_LLM_ACTIONS = {"RUN_INLINE": True}
    assert "wagtail_llm_actions.W002" not in ids()


def test_too_few_workers_for_bulk_runners(settings):
    settings.WAGTAIL_LLM_ACTIONS = {"JOB_WORKERS_PER_HOST": 2}
    settings.Q_CLUSTER = {"orm": "default", "workers": 2}
    assert "wagtail_llm_actions.W003" in ids()
    # By default bulk jobs leave one worker of each host free; a single worker is warned of.
    settings.WAGTAIL_LLM_ACTIONS = {}
    assert "wagtail_llm_actions.W003" not in ids()
    settings.Q_CLUSTER = {"orm": "default", "workers": 1}
    assert "wagtail_llm_actions.W003" in ids()


def test_a_blocks_entry_that_marks_nothing_is_reported(settings):
    settings.WAGTAIL_LLM_ACTIONS = {
        "BLOCKS": {
            "tests.testapp.models.StatisticsBlock.sr_only_label": "presentation",
            "tests.testapp.models.FactsBlock": "content",
            "tests.testapp.models.StatisticsBlock.sr_only": "presentation",  # no such child
            "nowhere.blocks.StatBlock": "content",  # cannot be imported
            "tests.testapp.models.Statistic": "content",  # a model, not a block
            "tests.testapp.models.QuoteBlock": "hidden",  # neither content nor presentation
        }
    }

    messages = check_settings(None)

    assert [m.id for m in messages] == ["wagtail_llm_actions.W004"] * 4
    texts = " ".join(m.msg for m in messages)
    assert "StatisticsBlock has no child block “sr_only”" in texts
    assert "“nowhere.blocks.StatBlock” is not a block class" in texts
    assert "“tests.testapp.models.Statistic” is not a block class" in texts
    assert "“hidden” is neither “content” nor “presentation”" in texts


def test_plain_sqlite_gets_a_wal_suggestion_not_an_error():
    from django.core.checks import INFO

    from wagtail_llm_actions.checks import sqlite_messages

    plain = {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}
    messages = sqlite_messages(plain)
    assert [(m.id, m.level) for m in messages] == [("wagtail_llm_actions.I001", INFO)]
    assert "WAL" in messages[0].hint
    wal = {**plain, "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;"}}
    assert sqlite_messages(wal) == []
    assert sqlite_messages({"ENGINE": "django.db.backends.postgresql", "NAME": "x"}) == []


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_the_wal_suggestion_is_not_printed_by_every_command(settings):
    """``migrate``, ``collectstatic``, ``qcluster``… run the system checks: on a default SQLite
    site the suggestion is not among them (``check --deploy`` still lists it; the bulk screen
    and ``run_llm_action`` show it, see their tests)."""
    settings.DATABASES = {"default": PLAIN_SQLITE}  # read by the check only

    assert "wagtail_llm_actions.I001" not in [m.id for m in run_checks()]
    deploy = run_checks(include_deployment_checks=True)
    assert "wagtail_llm_actions.I001" in [m.id for m in deploy]


def test_an_in_memory_sqlite_database_gets_no_wal_suggestion():
    from wagtail_llm_actions.checks import sqlite_messages

    for name in (":memory:", "file:memorydb_default?mode=memory&cache=shared"):
        assert sqlite_messages({**PLAIN_SQLITE, "NAME": name}) == []


def test_unusable_key_name_and_api_base_settings_are_reported(settings):
    settings.WAGTAIL_LLM_ACTIONS = {
        "EXTRA_API_KEY_NAMES": "MY_GATEWAY_KEY",  # a string, not a list
        "ALLOWED_API_BASES": ["http://127.0.0.1:8080/v1/../admin", "http://localhost:11434"],
    }
    messages = {m.id: m.msg for m in check_settings(None)}
    assert "EXTRA_API_KEY_NAMES" in messages["wagtail_llm_actions.E010"]
    assert "/v1/../admin" in messages["wagtail_llm_actions.W010"]
    assert "11434" not in messages["wagtail_llm_actions.W010"]


def test_saved_actions_the_policy_refuses_are_reported(db, make_action, monkeypatch):
    """An action saved before the rules narrowed (or around validation) is named by
    ``check --database``, before its next call fails."""
    from wagtail_llm_actions.checks import check_saved_provider_settings

    monkeypatch.setenv("STRIPE_API_KEY", "sk_live_x")
    make_action(slug="fine", model="openai/gpt-4o-mini")
    make_action(slug="stripe", model="openai/gpt-4o-mini", api_key_name="STRIPE_API_KEY")
    make_action(slug="ollama", model="ollama/mistral", extra_params={"custom_llm_provider": "x"})
    assert check_saved_provider_settings(None) == []  # only with --database
    messages = check_saved_provider_settings(None, databases=["default"])
    text = {m.msg.split(" would")[0]: m.msg for m in messages}
    assert set(text) == {"The action 'stripe'", "The action 'ollama'"}
    assert "STRIPE_API_KEY" in text["The action 'stripe'"]
    assert "localhost:11434" in " ".join(m.msg for m in messages)
    assert "custom_llm_provider" in " ".join(m.msg for m in messages)
    assert {m.id for m in messages} == {"wagtail_llm_actions.W011"}


@pytest.mark.django_db
def test_every_model_change_ships_with_its_migration():
    # A site that installs the wheel runs these migrations; one missing would leave its
    # database behind the models (makemigrations --check exits non-zero).
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command("makemigrations", "wagtail_llm_actions", check=True, dry_run=True, stdout=out)
    assert "No changes detected" in out.getvalue()
