"""The provider layer, against the fake OpenAI-compatible server through real LiteLLM."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

from tests.fakeserver import FakeLLMServer, last_user_message, unused_port
from wagtail_llm_actions import providers
from wagtail_llm_actions.models import LLMAction
from wagtail_llm_actions.providers import (
    KNOWN_PROVIDERS,
    AuthenticationError,
    BadRequestError,
    BadResponseError,
    CompletionRequest,
    CompletionResult,
    ConfigurationError,
    ContextWindowError,
    LiteLLMProvider,
    LocalProvider,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    ServerError,
    build_request,
    complete,
    get_provider,
    resolve_api_key,
    validate_model_string,
)
from wagtail_llm_actions.providers.base import BaseProvider, scrub_text
from wagtail_llm_actions.providers.local import extractive_summary, keywords

ROOT = Path(__file__).resolve().parent.parent
KEY_NAME = "WLA_TEST_LLM_API_KEY"
KEY = "sk-test-DoNotLeak-0123456789abcdef"
MESSAGES = [
    {"role": "system", "content": "You write short summaries."},
    {"role": "user", "content": "Summarise: Wagtail is a Django CMS."},
]

ARTICLE = (
    "Wagtail is an open source content management system built on Django. "
    "Editors like Wagtail because the Wagtail page editor is fast and clear. "
    "The weather was pleasant on the day of the release. "
    "Developers extend Wagtail with Django apps and StreamField blocks. "
    "A small team started the project in 2014. "
    "Many large organisations run Wagtail sites with Django in production. "
    "Lunch was served at noon. "
    "The Wagtail community maintains translations, packages and documentation for Django "
    "developers."
)


@pytest.fixture(scope="module")
def _fake_server():
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def server(_fake_server):
    _fake_server.reset()
    yield _fake_server
    _fake_server.reset()


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_NAME, KEY)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return KEY


def make_action(server, **kwargs) -> LLMAction:
    values = {
        "name": "Summary",
        "slug": "summary",
        "model": "openai/test-model",
        "api_base": server.url,
        "api_key_name": KEY_NAME,
        "timeout": 5,
    }
    values.update(kwargs)
    return LLMAction(**values)


def make_request(server, **kwargs) -> CompletionRequest:
    values = {
        "model": "openai/test-model",
        "messages": MESSAGES,
        "timeout": 5.0,
        "api_base": server.url,
        "api_key": KEY,
        "api_key_name": KEY_NAME,
    }
    values.update(kwargs)
    return CompletionRequest(**values)


def assert_no_key(*texts: object) -> None:
    for text in texts:
        assert KEY not in str(text)
        assert KEY[8:20] not in str(text)


# -- the LiteLLM path ------------------------------------------------------------------------


def test_request_and_parameters_reach_the_server(server, api_key):
    action = make_action(
        server, temperature=0.25, max_tokens=77, extra_params={"top_p": 0.5, "seed": 7}
    )
    server.configure(reply="A short summary.")

    result = complete(build_request(action, MESSAGES))

    assert len(server.requests) == 1
    sent = server.last_request
    assert sent["method"] == "POST"
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["Authorization"] == f"Bearer {KEY}"
    body = sent["json"]
    assert body["model"] == "test-model"
    assert body["messages"] == MESSAGES
    assert body["temperature"] == 0.25
    assert body["max_tokens"] == 77
    assert body["top_p"] == 0.5
    assert body["seed"] == 7
    assert "stream" not in body
    assert sent["headers"]["x-stainless-read-timeout"] == "5.0"

    assert result.text == "A short summary."
    assert result.model == "openai/test-model"
    assert result.response_model == "test-model"
    assert result.finish_reason == "stop"
    assert result.prompt_tokens and result.completion_tokens
    assert result.total_tokens == result.prompt_tokens + result.completion_tokens
    assert result.cost is None  # the fake model has no price
    assert result.latency_ms >= 0
    assert result.failed_attempts == []


def test_unset_parameters_are_not_sent(server):
    complete(make_request(server))
    body = server.last_request["json"]
    assert "temperature" not in body
    assert "max_tokens" not in body


def test_extra_params_outside_the_allow_list_are_refused_before_the_call(server):
    """``stream`` and ``fallbacks`` (set by the app itself) were once dropped silently; the
    allow-list refuses them, and a request built in code is checked before any call."""
    request = make_request(
        server, extra_params={"stream": True, "fallbacks": ["openai/x"], "presence_penalty": 1}
    )
    with pytest.raises(ConfigurationError, match="fallbacks, stream"):
        complete(request)
    assert server.request_count == 0
    complete(make_request(server, extra_params={"presence_penalty": 1}))
    assert server.last_request["json"]["presence_penalty"] == 1


def test_usage_and_finish_reason_are_read_back(server):
    server.configure(
        usage={"prompt_tokens": 11, "completion_tokens": 22, "total_tokens": 33},
        finish_reason="length",
        model_name="test-model-2025-01-01",
    )
    result = complete(make_request(server))
    assert (result.prompt_tokens, result.completion_tokens, result.total_tokens) == (11, 22, 33)
    assert result.finish_reason == "length"
    assert result.truncated
    assert result.response_model == "test-model-2025-01-01"


def test_missing_usage_is_none(server):
    server.configure(usage=False)
    result = complete(make_request(server))
    assert result.prompt_tokens is None
    assert result.completion_tokens is None
    assert result.total_tokens is None
    assert result.cost is None


def test_cost_of_a_priced_model(server):
    server.configure(usage={"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500})
    result = complete(make_request(server, model="openai/gpt-4o-mini"))
    assert isinstance(result.cost, Decimal)
    assert result.cost > 0
    estimate = providers.estimate_cost("openai/gpt-4o-mini", 1000, 500)
    assert estimate == result.cost
    assert providers.estimate_cost("openai/test-model", 1000, 500) is None


def test_cost_is_litellms_own_response_cost(server, monkeypatch):
    """LiteLLM prices each answer during the call; that figure is recorded, not priced again."""
    import litellm

    server.configure(usage={"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500})
    responses = []
    completion = litellm.completion

    def spy(*args, **kwargs):
        responses.append(completion(*args, **kwargs))
        return responses[-1]

    def no_second_pricing(*args, **kwargs):
        raise AssertionError("completion_cost() called again")

    monkeypatch.setattr(litellm, "completion", spy)
    monkeypatch.setattr(litellm, "completion_cost", no_second_pricing)
    result = complete(make_request(server, model="openai/gpt-4o-mini"))
    own = responses[0]._hidden_params["response_cost"]
    assert own > 0
    assert result.cost == Decimal(str(own))


def test_cost_from_the_response_when_given_else_from_the_price_list(monkeypatch):
    import litellm

    from wagtail_llm_actions.providers.litellm import get_litellm

    get_litellm()
    provider = LiteLLMProvider()

    class Response:
        _hidden_params = {"response_cost": 0.0125}

    assert provider.response_cost(Response()) == Decimal("0.0125")
    Response._hidden_params = {"response_cost": None}  # LiteLLM could not price it
    assert provider.response_cost(Response()) is None
    # A response that carries no figure (another client's) is priced from the price list.
    monkeypatch.setattr(litellm, "completion_cost", lambda completion_response: 0.5)
    assert provider.response_cost(object()) == Decimal("0.5")


def test_count_tokens():
    count = providers.count_tokens("openai/gpt-4o-mini", MESSAGES)
    assert isinstance(count, int) and count > 5
    assert providers.count_tokens("local/extractive", MESSAGES) == 10


def test_reply_can_echo_the_request(server):
    server.configure(reply=last_user_message)
    result = complete(make_request(server))
    assert result.text == MESSAGES[-1]["content"]


ERROR_CASES = [
    pytest.param({"status": 401}, AuthenticationError, "auth", False, id="401"),
    pytest.param({"status": 403}, AuthenticationError, "auth", False, id="403"),
    pytest.param({"status": 404}, ConfigurationError, "configuration", False, id="404"),
    pytest.param({"status": 429}, RateLimitError, "rate_limit", True, id="429"),
    pytest.param({"status": 500}, ServerError, "server_error", True, id="500"),
    pytest.param({"status": 502}, ServerError, "server_error", True, id="502"),
    pytest.param({"status": 503}, ServerError, "server_error", True, id="503"),
    pytest.param({"status": 400}, BadRequestError, "bad_request", False, id="400"),
    pytest.param({"status": 422}, BadRequestError, "bad_request", False, id="422"),
    pytest.param(
        {
            "status": 400,
            "error_message": "This model's maximum context length is 8192 tokens. However, "
            "your messages resulted in 9000 tokens.",
            "error_code": "context_length_exceeded",
        },
        ContextWindowError,
        "context_window",
        False,
        id="context-message",
    ),
    pytest.param(
        {"status": 400, "error_message": "Too long.", "error_code": "context_length_exceeded"},
        ContextWindowError,
        "context_window",
        False,
        id="context-code",
    ),
    pytest.param({"malformed": True}, BadResponseError, "bad_response", False, id="malformed"),
    pytest.param({"empty_choices": True}, BadResponseError, "bad_response", False, id="no-choice"),
    pytest.param({"reply": "  "}, BadResponseError, "bad_response", False, id="empty-text"),
    pytest.param(
        {"close_connection": True}, ProviderConnectionError, "connection", True, id="dropped"
    ),
]


@pytest.mark.parametrize(("config", "error_class", "code", "retryable"), ERROR_CASES)
def test_errors_are_mapped(server, config, error_class, code, retryable):
    server.configure(**config)
    with pytest.raises(error_class) as info:
        complete(make_request(server))
    error = info.value
    assert type(error) is error_class
    assert error.code == code
    assert error.retryable is retryable
    assert error.model == "openai/test-model"
    assert str(error)
    assert_no_key(str(error), error.detail, error.as_dict(), error.attempts)


def test_authentication_error_names_the_setting_not_the_key(server):
    server.configure(status=401, error_message=f"Incorrect API key provided: {KEY}.")
    with pytest.raises(AuthenticationError) as info:
        complete(make_request(server))
    assert KEY_NAME in str(info.value)
    assert "Incorrect API key provided" in info.value.detail
    assert_no_key(str(info.value), info.value.detail, repr(info.value))


def test_upstream_detail_is_included_for_bad_requests(server):
    server.configure(status=400, error_message="Unsupported parameter: 'top_k'.")
    with pytest.raises(BadRequestError) as info:
        complete(make_request(server))
    assert "Unsupported parameter: 'top_k'." in str(info.value)
    assert "litellm" not in str(info.value).lower()


def test_timeout(server):
    server.configure(latency=2)
    started = time.perf_counter()
    with pytest.raises(ProviderTimeout) as info:
        complete(make_request(server, timeout=1.0))
    assert time.perf_counter() - started < 1.9
    assert info.value.retryable
    assert "1 second" in str(info.value)
    assert "timeout" in str(info.value)


def test_connection_refused(server):
    url = f"http://127.0.0.1:{unused_port()}/v1"
    with pytest.raises(ProviderConnectionError) as info:
        complete(make_request(server, api_base=url))
    assert info.value.retryable
    assert "Could not reach the model server at http://127.0.0.1:" in str(info.value)


def test_stopped_server_refuses_connections():
    fake = FakeLLMServer().start()
    request = make_request(fake)
    assert complete(request).text
    fake.stop()
    with pytest.raises(ProviderConnectionError):
        complete(request)


def test_api_base_credentials_are_not_shown():
    request = CompletionRequest(
        model="openai/test-model",
        messages=MESSAGES,
        api_base=f"http://user:pw-secret@127.0.0.1:{unused_port()}/v1?key=abc",
        api_key=KEY,
        timeout=2,
    )
    with pytest.raises(ProviderConnectionError) as info:
        complete(request)
    assert "pw-secret" not in str(info.value)
    assert "key=abc" not in str(info.value)
    assert "pw-secret" not in json.dumps(request.public_parameters())


def test_retries_use_num_retries(server):
    server.enqueue(status=500)
    result = complete(make_request(server, num_retries=1))
    assert result.text
    assert server.request_count == 2


def test_litellm_logs_do_not_contain_the_key(server, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        caplog.set_level(logging.DEBUG, logger=name)
    complete(make_request(server))
    server.configure(status=401)
    with pytest.raises(AuthenticationError):
        complete(make_request(server))
    assert caplog.records
    assert_no_key(caplog.text)


# -- keys and requests -----------------------------------------------------------------------


def test_build_request_from_action(server, api_key):
    action = make_action(
        server,
        api_base="",
        temperature=0.7,
        max_tokens=300,
        timeout=42,
        extra_params={"top_p": 0.9},
        fallback_models="openai/fallback-a\n\n  local/extractive  \n",
    )
    with override_settings(
        WAGTAIL_LLM_ACTIONS={**settings.WAGTAIL_LLM_ACTIONS, **{"NUM_RETRIES": 2}}
    ):
        request = build_request(action, MESSAGES)
    assert request.model == "openai/test-model"
    assert request.messages == MESSAGES
    assert request.api_base is None
    assert request.api_key == KEY
    assert request.api_key_name == KEY_NAME
    assert request.temperature == 0.7
    assert request.max_tokens == 300
    assert request.timeout == 42.0
    assert request.extra_params == {"top_p": 0.9}
    assert request.fallbacks == ["openai/fallback-a", "local/extractive"]
    assert request.num_retries == 2
    assert KEY not in repr(request)


def test_build_request_default_timeout(server, api_key):
    action = make_action(server, timeout=0)
    with override_settings(
        WAGTAIL_LLM_ACTIONS={**settings.WAGTAIL_LLM_ACTIONS, **{"DEFAULT_TIMEOUT": 17}}
    ):
        assert build_request(action, MESSAGES).timeout == 17.0


def test_public_parameters_never_hold_secrets(server):
    request = make_request(
        server,
        temperature=0.1,
        max_tokens=10,
        fallbacks=["openai/x"],
        extra_params={
            "top_p": 0.9,
            "api_token": "tok-123456789",
            "Authorization": "Bearer abcdefgh",
            "client_secret": "s3cr3t-value",
            "password": "hunter2hunter2",
            "extra_headers": {"X-Api-Key": "nested-secret-1", "X-Trace": "ok"},
            "vertex_credentials_key": "v",
        },
    )
    params = request.public_parameters()
    dumped = json.dumps(params)
    assert_no_key(dumped)
    for secret in ("tok-123456789", "abcdefgh", "s3cr3t-value", "hunter2", "nested-secret-1"):
        assert secret not in dumped
    assert "api_key" not in params
    assert params["extra_params"]["top_p"] == 0.9
    assert params["extra_params"]["extra_headers"]["X-Trace"] == "ok"
    assert params["model"] == "openai/test-model"
    assert params["temperature"] == 0.1
    assert params["max_tokens"] == 10
    assert params["timeout"] == 5.0
    assert params["api_base"] == server.url
    assert params["fallbacks"] == ["openai/x"]
    assert params["num_retries"] == 0
    assert params["api_key_name"] == KEY_NAME


def test_scrub_text():
    text = f"key {KEY} and Bearer abcdefghijkl and sk-otherkey12345678 and token=zzz"
    scrubbed = scrub_text(text, [KEY])
    for secret in (KEY, "abcdefghijkl", "sk-otherkey12345678", "zzz"):
        assert secret not in scrubbed


def test_resolve_api_key(monkeypatch):
    monkeypatch.setenv(KEY_NAME, KEY)
    assert resolve_api_key("") is None
    assert resolve_api_key("  ") is None
    assert resolve_api_key(KEY_NAME) == KEY
    with override_settings(WAGTAIL_LLM_ACTIONS={"API_KEYS": {KEY_NAME: "from-settings"}}):
        assert resolve_api_key(KEY_NAME) == "from-settings"
    monkeypatch.delenv(KEY_NAME)
    with pytest.raises(ConfigurationError) as info:
        resolve_api_key(KEY_NAME)
    assert KEY_NAME in str(info.value)
    assert info.value.code == "configuration"


def test_missing_key_fails_before_calling(server, monkeypatch):
    monkeypatch.delenv(KEY_NAME, raising=False)
    with pytest.raises(ConfigurationError) as info:
        build_request(make_action(server), MESSAGES)
    assert KEY_NAME in str(info.value)
    assert server.request_count == 0


def test_blank_key_name_without_provider_variable(server, monkeypatch):
    """No API base and no key: LiteLLM's own provider endpoint needs its variable."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigurationError) as info:
        complete(make_request(server, api_base=None, api_key=None, api_key_name=""))
    assert "OPENAI_API_KEY" in str(info.value)
    assert server.request_count == 0


def test_blank_key_name_sends_no_provider_variable_to_the_actions_api_base(server, monkeypatch):
    """A server the action names gets only a key the action names (a local server that
    needs none works with no variable set)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-openai-variable-123")
    complete(make_request(server, api_key=None, api_key_name=""))
    assert server.last_request["headers"]["authorization"] == "Bearer no-key"


# -- fallbacks -------------------------------------------------------------------------------


def test_fallback_answers_when_the_model_fails(server):
    server.enqueue(status=500)
    result = complete(make_request(server, fallbacks=["openai/fallback-model"]))
    assert result.model == "openai/fallback-model"
    assert result.response_model == "fallback-model"
    assert [r["json"]["model"] for r in server.requests] == ["test-model", "fallback-model"]
    # Same provider: same server and key.
    assert server.last_request["headers"]["authorization"] == f"Bearer {KEY}"
    assert [(a["model"], a["code"]) for a in result.failed_attempts] == [
        ("openai/test-model", "server_error")
    ]


def test_fallback_to_another_provider(server):
    server.configure(status=503)
    result = complete(make_request(server, fallbacks=["local/echo"]))
    assert result.model == "local/echo"
    assert result.text == MESSAGES[-1]["content"]
    assert result.failed_attempts[0]["model"] == "openai/test-model"


def test_fallbacks_of_another_provider_get_no_key_or_base():
    calls: list[CompletionRequest] = []

    class Recorder(BaseProvider):
        def complete(self, request):
            calls.append(request)
            raise ServerError(status_code=500)

    request = CompletionRequest(
        model="other/main",
        messages=MESSAGES,
        api_base="http://127.0.0.1:1/v1",
        api_key=KEY,
        api_key_name=KEY_NAME,
        fallbacks=["other/second", "third/model"],
    )
    recorder = Recorder()
    with override_settings(
        WAGTAIL_LLM_ACTIONS={
            **settings.WAGTAIL_LLM_ACTIONS,
            "PROVIDERS": {"other": "tests.test_providers.StubProvider", "third": "x.Y"},
        }
    ):
        providers._providers["custom:tests.test_providers.StubProvider"] = recorder
        providers._providers["custom:x.Y"] = recorder
        try:
            with pytest.raises(ServerError) as info:
                complete(request)
        finally:
            providers._providers.pop("custom:tests.test_providers.StubProvider")
            providers._providers.pop("custom:x.Y")
    assert [c.model for c in calls] == ["other/main", "other/second", "third/model"]
    assert [c.api_key for c in calls] == [KEY, KEY, None]
    assert [c.api_base for c in calls][2] is None
    assert all(c.fallbacks == [] for c in calls)
    assert [a["model"] for a in info.value.attempts] == [c.model for c in calls]
    assert info.value.model == "other/main"


def test_no_fallback_after_authentication_error(server):
    server.configure(status=401)
    with pytest.raises(AuthenticationError):
        complete(make_request(server, fallbacks=["openai/fallback-model", "local/echo"]))
    assert server.request_count == 1


def test_all_fallbacks_fail(server):
    server.configure(status=503)
    server.enqueue(status=429)
    with pytest.raises(RateLimitError) as info:
        complete(make_request(server, fallbacks=["openai/fallback-model"]))
    assert [a["code"] for a in info.value.attempts] == ["rate_limit", "server_error"]
    assert server.request_count == 2


# -- registry --------------------------------------------------------------------------------


class StubProvider(BaseProvider):
    def complete(self, request):
        return CompletionResult(text="stub", model=request.model)


def test_get_provider():
    assert isinstance(get_provider("local/extractive"), LocalProvider)
    assert isinstance(get_provider("openai/gpt-4o-mini"), LiteLLMProvider)
    assert get_provider("openai/gpt-4o-mini") is get_provider("anthropic/claude-3-5-haiku")
    with override_settings(
        WAGTAIL_LLM_ACTIONS={"PROVIDERS": {"stub": "tests.test_providers.StubProvider"}}
    ):
        provider = get_provider("stub/anything")
        assert isinstance(provider, StubProvider)
        assert get_provider("stub/other") is provider
        validate_model_string("stub/anything")
        assert complete(CompletionRequest(model="stub/x", messages=[])).text == "stub"
    with override_settings(WAGTAIL_LLM_ACTIONS={"PROVIDERS": {"bad": "tests.nope.Missing"}}):
        with pytest.raises(ConfigurationError) as info:
            get_provider("bad/x")
        assert "tests.nope.Missing" in str(info.value)


def test_known_providers_cover_installed_litellm():
    from wagtail_llm_actions.providers.litellm import get_litellm

    litellm = get_litellm()
    from litellm.types.utils import LlmProviders

    installed = {getattr(p, "value", p) for p in litellm.provider_list}
    installed |= {p.value for p in LlmProviders}
    missing = installed - KNOWN_PROVIDERS
    assert not missing, f"Add these LiteLLM providers to KNOWN_PROVIDERS: {sorted(missing)}"
    extra = KNOWN_PROVIDERS - installed - {"local"}
    assert not extra, f"LiteLLM no longer knows these KNOWN_PROVIDERS: {sorted(extra)}"
    assert "local" in KNOWN_PROVIDERS


def test_importing_providers_does_not_import_litellm():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "sandbox")]),
    }
    code = (
        "import sys, django; django.setup();"
        "import wagtail_llm_actions.providers as p;"
        "p.validate_model_string('openai/gpt-4o-mini');"
        "p.get_provider('openai/gpt-4o-mini');"
        "r = p.complete(p.CompletionRequest(model='local/echo',"
        " messages=[{'role': 'user', 'content': 'hi'}]));"
        "assert r.text == 'hi';"
        "assert 'litellm' not in sys.modules, 'litellm was imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)


@pytest.mark.parametrize(
    ("model", "fragment"),
    [
        ("", "Enter a model string"),
        ("   ", "Enter a model string"),
        ("openai/gpt 4o", "spaces"),
        (" openai/gpt-4o", "spaces"),
        ("gpt-4o-mini", "Use the form provider/model, e.g. openai/gpt-4o-mini."),
        ("/gpt-4o-mini", "Use the form provider/model"),
        ("opnai/gpt-4o", "Unknown provider"),
        ("opnai/gpt-4o", "Did you mean openai/gpt-4o?"),
        ("nosuchprovider/x", "openai, anthropic"),
        ("openai/", "Enter the model name after openai/"),
        ("local/nope", "local/extractive"),
    ],
)
def test_validate_model_string_rejects(model, fragment):
    with pytest.raises(ValueError) as info:
        validate_model_string(model)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "model",
    [
        "openai/gpt-4o-mini",
        "anthropic/claude-3-5-haiku-latest",
        "ollama/llama3:8b",
        "openrouter/anthropic/claude-3.5-sonnet",
        "hosted_vllm/meta-llama/Llama-3-8B",
        "local/extractive",
        "local/keywords",
        "local/echo",
    ],
)
def test_validate_model_string_accepts(model):
    validate_model_string(model)


def test_action_clean_uses_validation(server):
    action = make_action(server, model="gpt-4o", fallback_models="opnai/x")
    with pytest.raises(Exception) as info:
        action.clean()
    assert "model" in info.value.message_dict
    assert "fallback_models" in info.value.message_dict


# -- local provider --------------------------------------------------------------------------


def local(model: str, text: str, **kwargs) -> CompletionResult:
    messages = [
        {"role": "system", "content": "Ignore me entirely please."},
        {"role": "user", "content": "An earlier message."},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": text},
    ]
    return complete(CompletionRequest(model=model, messages=messages, **kwargs))


def test_local_extractive_is_deterministic_and_in_order():
    first = local("local/extractive", ARTICLE)
    assert first.text == local("local/extractive", ARTICLE).text
    assert first.model == "local/extractive"
    assert first.cost == Decimal("0")
    assert first.finish_reason == "stop"
    sentences = ARTICLE.split(". ")
    picked = [s for s in sentences if s.rstrip(".") in first.text]
    assert 2 <= len(picked) <= 3
    positions = [first.text.index(s.rstrip(".")) for s in picked]
    assert positions == sorted(positions)
    assert "Lunch" not in first.text
    assert "weather" not in first.text
    assert first.prompt_tokens and first.completion_tokens
    assert first.total_tokens == first.prompt_tokens + first.completion_tokens


def test_local_extractive_short_text():
    assert extractive_summary("One sentence only.") == "One sentence only."
    assert local("local/extractive", "First point. Second point.").text == (
        "First point. Second point."
    )


def test_local_keywords():
    result = local("local/keywords", ARTICLE)
    terms = [t.strip() for t in result.text.split(",")]
    assert 5 <= len(terms) <= 8
    assert terms[:2] == ["Wagtail", "Django"]
    assert len(set(terms)) == len(terms)
    assert "the" not in terms
    assert result.text == local("local/keywords", ARTICLE).text
    assert keywords("apple banana cherry") == ["apple", "banana", "cherry"]


def test_local_echo_and_max_tokens():
    assert local("local/echo", "Exactly  this\ntext.").text == "Exactly  this\ntext."
    result = local("local/echo", "word " * 100, max_tokens=10)
    assert result.finish_reason == "length"
    assert len(result.text) <= 40
    assert result.truncated


def test_local_errors():
    with pytest.raises(ConfigurationError):
        local("local/unknown", ARTICLE)
    with pytest.raises(BadResponseError):
        complete(CompletionRequest(model="local/extractive", messages=[]))
    assert get_provider("local/echo").estimate_cost("local/echo", 10, 10) == Decimal("0")


def test_provider_error_defaults():
    error = ServerError(status_code=503)
    assert error.retryable and "503" in str(error)
    assert not ServerError(status_code=501, retryable=False).retryable
    assert ProviderError().code == "error"
    assert ProviderTimeout.after(30).message.startswith("The model did not answer within 30")


# -- the fake server itself ------------------------------------------------------------------


def test_fake_server_basics(server):
    assert server.url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(server.url + "/models", timeout=5) as response:  # noqa: S310
        assert json.load(response)["data"][0]["id"] == "test-model"
    server.enqueue(reply="first").enqueue(status=500)
    payload = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]})

    def post():
        request = urllib.request.Request(  # noqa: S310
            server.url + "/chat/completions",
            data=payload.encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                return response.status, json.load(response)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    assert post()[1]["choices"][0]["message"]["content"] == "first"
    status, body = post()
    assert status == 500 and body["error"]["type"] == "server_error"
    assert post()[0] == 200
    assert server.request_count == 4
    assert server.requests[1]["json"]["model"] == "m"
    with pytest.raises(TypeError):
        server.configure(nonsense=True)
    server.reply = "via attribute"
    assert server.reply == "via attribute"
    server.reset()
    assert server.requests == [] and server.reply != "via attribute"
