"""No key is sent where nobody listed it: destinations chosen by the model string, fallbacks,
redirects (also through a listed proxy), dot segments in an API base, the default key names
and the extra parameters' allow-list.

Every call here that could reach a server is made against fake servers on 127.0.0.1 that are
*not* listed in ``ALLOWED_API_BASES`` (the tests' settings list ``http://127.0.0.1:*``; each
test here says exactly what is listed), and asserts that the unlisted server received nothing.
"""

from __future__ import annotations

import json
import re
import socket
import urllib.request

import pytest
from django.urls import reverse

from tests.fakeserver import FakeLLMServer, unused_port
from tests.test_admin_snippets import ACTION_ADD, action_data, form_errors
from tests.test_security import (  # noqa: F401 - fixtures
    CANARIES,
    canaries,
    errors_of,
    llm_settings,
    unsaved_action,
)
from wagtail_llm_actions.exceptions import LLMActionError
from wagtail_llm_actions.models import LLMInteraction
from wagtail_llm_actions.providers import (
    BaseProvider,
    CompletionRequest,
    CompletionResult,
    ProviderError,
    complete,
)
from wagtail_llm_actions.providers.policy import PolicyError, check_api_base, check_key_name
from wagtail_llm_actions.service import LLMService

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": "Summarise the page text."}]

#: Model prefixes whose LiteLLM default destination (blank API base) is this machine.
LOCAL_DEFAULTS = [
    ("ollama/mistral", "localhost:11434"),
    ("ollama_chat/mistral", "localhost:11434"),
    ("llamafile/model", "127.0.0.1:8080"),
    ("lemonade/model", "localhost:8000"),
    ("docker_model_runner/ai/smollm2", "localhost:22088"),
    ("langflow/flow-id", "localhost:7860"),
]

BASE_VARIABLES = (
    "OLLAMA_API_BASE",
    "LLAMAFILE_API_BASE",
    "LEMONADE_API_BASE",
    "DOCKER_MODEL_RUNNER_API_BASE",
    "LANGFLOW_API_BASE",
    "OPENAI_API_BASE",
    "OPENAI_BASE_URL",
)


@pytest.fixture(autouse=True)
def no_base_variables(monkeypatch):
    """LiteLLM's defaults, not an operator's ``*_API_BASE`` variables (unless a test sets one)."""
    for name in BASE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fresh_http_clients():
    """LiteLLM keeps its HTTP clients (and the proxies they read from the environment)."""
    from wagtail_llm_actions.providers.litellm import get_litellm

    cache = get_litellm().in_memory_llm_clients_cache
    cache.flush_cache()
    yield
    cache.flush_cache()


def request_for(model: str, api_base: str | None = None, **fields) -> CompletionRequest:
    return CompletionRequest(
        model=model,
        messages=MESSAGES,
        api_base=api_base,
        api_key=fields.pop("api_key", "sk-test-secret-123"),
        timeout=5,
        **fields,
    )


def root_url(server: FakeLLMServer) -> str:
    return f"http://127.0.0.1:{server.port}"


# -- a blank API base: the model string chooses the destination --------------------------------


@pytest.mark.parametrize(("model", "host"), LOCAL_DEFAULTS)
def test_blank_api_base_of_a_local_provider_is_refused_at_save(model, host):
    with llm_settings(ALLOWED_API_BASES=[]):
        errors = errors_of(unsaved_action(model=model))
    assert list(errors) == ["model"]
    message = " ".join(errors["model"])
    assert host in message
    assert "ALLOWED_API_BASES" in message


def test_blank_api_base_of_a_local_provider_is_accepted_when_its_default_is_listed():
    with llm_settings(ALLOWED_API_BASES=["http://localhost:11434"]):
        unsaved_action(model="ollama/mistral").clean()
        unsaved_action(model="ollama_chat/mistral").clean()
        errors = errors_of(unsaved_action(model="llamafile/model"))
    assert "127.0.0.1:8080" in " ".join(errors["model"])


def test_the_operators_api_base_variable_is_the_destination_checked_at_save(monkeypatch):
    monkeypatch.setenv("OLLAMA_API_BASE", "http://10.1.2.3:11434")
    with llm_settings(ALLOWED_API_BASES=["http://localhost:11434"]):
        errors = errors_of(unsaved_action(model="ollama/mistral"))
    assert "10.1.2.3" in " ".join(errors["model"])
    assert "OLLAMA_API_BASE" in " ".join(errors["model"])


def test_fallback_to_a_local_provider_is_refused_at_save():
    with llm_settings(ALLOWED_API_BASES=[]):
        errors = errors_of(unsaved_action(fallback_models="openai/gpt-4o\nllamafile/model"))
    assert list(errors) == ["fallback_models"]
    assert "llamafile/model" in errors["fallback_models"][0]
    assert "127.0.0.1:8080" in errors["fallback_models"][0]


def test_pipeline_step_with_a_local_default_destination_is_refused(make_pipeline):
    from django.core.exceptions import ValidationError

    from wagtail_llm_actions.models import LLMPipelineStep

    pipeline = make_pipeline(name="P", slug="p", page_types=False)
    step = LLMPipelineStep(
        pipeline=pipeline,
        name="outline",
        prompt_template="Outline {body}",
        target_field="summary",
        model="ollama_chat/llama3",
    )
    with llm_settings(ALLOWED_API_BASES=[]), pytest.raises(ValidationError) as info:
        step.clean()
    assert "localhost:11434" in " ".join(info.value.message_dict["model"])


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"model": "ollama/mistral"}, "model"),
        ({"model": "langflow/flow"}, "model"),
        ({"fallback_models": "ollama_chat/llama3"}, "fallback_models"),
    ],
)
def test_admin_form_refuses_a_local_default_destination(
    client, superuser, prompt, overrides, field
):
    client.force_login(superuser)
    with llm_settings(ALLOWED_API_BASES=[]):
        response = client.post(reverse(ACTION_ADD), action_data(prompt, **overrides))
    assert response.status_code == 200
    assert "localhost" in form_errors(response)[field]


@pytest.mark.parametrize(
    ("model", "variable", "root"),
    [
        ("ollama/mistral", "OLLAMA_API_BASE", True),
        ("ollama_chat/mistral", "OLLAMA_API_BASE", True),
        ("llamafile/model", "LLAMAFILE_API_BASE", False),
        ("lemonade/model", "LEMONADE_API_BASE", False),
    ],
)
def test_blank_api_base_at_call_time_reaches_no_unlisted_server(
    model, variable, root, make_action, post, fake_llm, monkeypatch
):
    """Saved around validation; the provider's default destination (here its environment
    variable, as an operator may set it) is a server nobody listed."""
    monkeypatch.setenv(variable, root_url(fake_llm) if root else fake_llm.url)
    action = make_action(slug="local-default", model=model, api_base="")
    with llm_settings(ALLOWED_API_BASES=[]), pytest.raises(LLMActionError) as info:
        LLMService().run(action, post)
    assert info.value.code == "configuration"
    assert f"127.0.0.1:{fake_llm.port}" in info.value.message
    assert fake_llm.request_count == 0
    assert LLMInteraction.objects.get().error_code == "configuration"


def test_fallback_with_a_local_default_reaches_no_unlisted_server(fake_llm, monkeypatch):
    with FakeLLMServer() as local:
        monkeypatch.setenv("OLLAMA_API_BASE", root_url(local))
        fake_llm.configure(status=503)
        request = request_for("openai/fake-model", fake_llm.url, fallbacks=["ollama/mistral"])
        with llm_settings(ALLOWED_API_BASES=[fake_llm.url]), pytest.raises(ProviderError) as info:
            complete(request)
        assert local.request_count == 0
    assert fake_llm.request_count == 1
    assert [a["code"] for a in info.value.attempts] == ["server_error", "configuration"]
    assert "ollama/mistral" in info.value.attempts[1]["message"]


class RawHTTPProvider(BaseProvider):
    """A custom provider that connects by itself (urllib, not httpx) to ``TARGET``."""

    target = ""

    def complete(self, request: CompletionRequest) -> CompletionResult:
        body = json.dumps({"model": "x", "messages": request.messages}).encode()
        outgoing = urllib.request.Request(self.target, data=body)  # noqa: S310 - a test URL
        with urllib.request.urlopen(outgoing, timeout=5) as response:  # noqa: S310
            response.read()
        return CompletionResult(text="sent", model=request.model)


def test_every_connection_of_a_call_is_guarded_whatever_chose_it(fake_llm):
    RawHTTPProvider.target = f"{fake_llm.url}/chat/completions"
    providers = {"raw": "tests.test_key_destinations.RawHTTPProvider"}
    with llm_settings(PROVIDERS=providers, ALLOWED_API_BASES=[]):
        with pytest.raises(PolicyError) as info:
            complete(request_for("raw/model"))
    assert "127.0.0.1" in str(info.value)
    assert fake_llm.request_count == 0
    with llm_settings(ALLOWED_API_BASES=[]):  # outside a call, nothing is guarded
        with socket.create_connection(("127.0.0.1", fake_llm.port), timeout=5):
            pass
    # ... and a listed server is reached
    with llm_settings(PROVIDERS=providers, ALLOWED_API_BASES=[root_url(fake_llm)]):
        assert complete(request_for("raw/model")).text == "sent"
    assert fake_llm.request_count == 1


# -- redirects -----------------------------------------------------------------------------------


def outcome(request: CompletionRequest) -> str | ProviderError:
    """The answer's text, or the error."""
    try:
        return complete(request).text
    except ProviderError as e:
        return e


def test_redirect_from_a_listed_server_to_another_listed_one_is_not_followed(fake_llm):
    with FakeLLMServer(reply="From the other server.") as other:
        fake_llm.configure(redirect_to=other.url)
        with llm_settings(ALLOWED_API_BASES=[fake_llm.url, other.url]):
            result = outcome(request_for("openai/fake-model", fake_llm.url))
        assert other.request_count == 0
    assert fake_llm.request_count == 1
    assert isinstance(result, PolicyError)
    assert "redirect" in str(result)
    assert "307" in str(result)


def test_redirect_through_a_listed_proxy_is_not_followed(fake_llm, monkeypatch, fresh_http_clients):
    """The proxy is the only socket peer; the guard must look at the request's target."""
    with FakeLLMServer(proxy=True) as proxy, FakeLLMServer(reply="Internal") as internal:
        fake_llm.configure(redirect_to=internal.url)
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, root_url(proxy))
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        listed = [root_url(proxy), fake_llm.url]
        with llm_settings(ALLOWED_API_BASES=listed):
            result = outcome(request_for("openai/fake-model", fake_llm.url))
        assert internal.request_count == 0
        assert proxy.request_count == 1  # the call did go through the proxy
    assert isinstance(result, PolicyError)
    assert "redirect" in str(result)


def test_a_listed_proxy_does_not_open_unlisted_targets(fake_llm, monkeypatch):
    """A provider's request to an unlisted server is refused although the proxy is listed."""
    with FakeLLMServer(proxy=True) as proxy:
        monkeypatch.setenv("HTTP_PROXY", root_url(proxy))
        monkeypatch.delenv("NO_PROXY", raising=False)

        class ViaProxy(BaseProvider):
            def complete(self, request):
                import httpx

                with httpx.Client(proxy=root_url(proxy), timeout=5) as client:
                    client.post(f"{fake_llm.url}/chat/completions", json={"messages": []})
                return CompletionResult(text="sent", model=request.model)

        providers = {"via": ViaProxy}
        with llm_settings(PROVIDERS=providers, ALLOWED_API_BASES=[root_url(proxy)]):
            result = outcome(request_for("via/model"))
        assert fake_llm.request_count == 0
        assert proxy.request_count == 0
    assert isinstance(result, PolicyError)


# -- dot segments --------------------------------------------------------------------------------

DOT_SEGMENTS = [
    "/v1/../steal",
    "/v1/./../steal",
    "/v1/%2e%2e/steal",
    "/v1/%2E%2E/steal",
    "/v1/.%2e/steal",
    "/v1/%2e./steal",
    "/v1/./chat",
    "/v1/%2e/chat",
    "/v1/..",
    "/v1/%5c../steal",
    "/v1/%2f../steal",
]


@pytest.mark.parametrize("path", DOT_SEGMENTS)
def test_dot_segments_cannot_leave_a_listed_path(path, fake_llm):
    listed = fake_llm.url  # http://127.0.0.1:PORT/v1
    url = f"{root_url(fake_llm)}{path}"
    with llm_settings(ALLOWED_API_BASES=[listed]):
        with pytest.raises(PolicyError, match=r"\.|segment"):
            check_api_base(url)
        errors = errors_of(unsaved_action(model="openai/m", api_base=url))
    assert "api_base" in errors


def test_dot_segments_are_refused_by_the_admin_form(client, superuser, prompt, fake_llm):
    client.force_login(superuser)
    url = f"{fake_llm.url}/../steal"
    with llm_settings(ALLOWED_API_BASES=[fake_llm.url]):
        response = client.post(reverse(ACTION_ADD), action_data(prompt, api_base=url))
    assert response.status_code == 200
    assert "api_base" in form_errors(response)


def test_dot_segments_saved_around_validation_send_nothing(
    make_action, post, fake_llm, api_key_env
):
    action = make_action(
        slug="dots",
        model="openai/fake-model",
        api_base=f"{fake_llm.url}/../steal",
        api_key_name=api_key_env,
    )
    with llm_settings(ALLOWED_API_BASES=[fake_llm.url]):
        with pytest.raises(LLMActionError) as info:
            LLMService().run(action, post)
        assert info.value.code == "configuration"
        assert fake_llm.request_count == 0
        # the listed base itself still works; a dot inside a segment is no dot segment
        check_api_base(f"{fake_llm.url}/v1.5-beta")
        action.api_base = f"{fake_llm.url}/"
        action.save()
        LLMService().run(action, post)
    assert fake_llm.last_request["path"] == "/v1/chat/completions"


# -- key names -----------------------------------------------------------------------------------

NOT_LLM_KEYS = [
    "STRIPE_API_KEY",
    "GITHUB_API_TOKEN",
    "SENDGRID_API_KEY",
    "SLACK_API_TOKEN",
    "MAILCHIMP_API_KEY",
    "SENTRY_API_TOKEN",
    "TWILIO_API_KEY",
]
LLM_KEYS = [
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "AZURE_API_KEY",
    "GEMINI_API_KEY",
    "MISTRAL_API_KEY",
    "GROQ_API_KEY",
    "DEEPSEEK_API_KEY",
    "OPENROUTER_API_KEY",
    "TOGETHERAI_API_KEY",
    "XAI_API_KEY",
]


@pytest.mark.parametrize("name", NOT_LLM_KEYS)
def test_other_services_keys_are_not_nameable_by_default(name):
    with llm_settings(API_KEY_NAMES=None, EXTRA_API_KEY_NAMES=[]):
        errors = errors_of(unsaved_action(api_key_name=name))
    assert list(errors) == ["api_key_name"]
    assert "EXTRA_API_KEY_NAMES" in errors["api_key_name"][0]


def test_sites_widen_the_key_names_explicitly():
    with llm_settings(API_KEY_NAMES=None, EXTRA_API_KEY_NAMES=[]):
        for name in LLM_KEYS:
            check_key_name(name)
        with pytest.raises(PolicyError):
            check_key_name("MY_GATEWAY_KEY")
    with llm_settings(
        API_KEY_NAMES=None,
        EXTRA_API_KEY_NAMES=["MY_GATEWAY_KEY", "TEAM_*_LLM_KEY"],
        API_KEYS={"FROM_SETTINGS": "k-123456789"},
    ):
        for name in ("MY_GATEWAY_KEY", "TEAM_A_LLM_KEY", "FROM_SETTINGS", "OPENAI_API_KEY"):
            check_key_name(name)
        with pytest.raises(PolicyError):
            check_key_name("STRIPE_API_KEY")
    with llm_settings(EXTRA_API_KEY_NAMES=["*"]):
        with pytest.raises(PolicyError):
            check_key_name("DJANGO_SECRET_KEY")  # never, whatever the settings say


def test_a_non_llm_key_saved_around_validation_is_never_read_or_sent(
    make_action, post, fake_llm, monkeypatch
):
    monkeypatch.setenv("STRIPE_API_KEY", "sk_live_stripe-canary-0004")
    action = make_action(
        slug="stripe",
        model="openai/fake-model",
        api_base=fake_llm.url,
        api_key_name="STRIPE_API_KEY",
    )
    with llm_settings(API_KEY_NAMES=None, EXTRA_API_KEY_NAMES=[]):
        with pytest.raises(LLMActionError) as info:
            LLMService().run(action, post)
    assert info.value.code == "configuration"
    assert fake_llm.request_count == 0
    row = LLMInteraction.objects.get()
    assert "sk_live_stripe" not in json.dumps([row.error_message, row.parameters])


def test_default_key_names_are_litellms_provider_variables():
    """The shipped list is what the installed LiteLLM reads as a provider key, minus the
    reviewed exclusions (each with its reason); a new LiteLLM adds names here."""
    from tests.litellm_catalog import litellm_key_variables
    from wagtail_llm_actions.providers.keynames import LLM_KEY_NAMES, NOT_NAMEABLE

    derived = litellm_key_variables()
    assert set(NOT_NAMEABLE) <= derived, sorted(set(NOT_NAMEABLE) - derived)
    missing = derived - LLM_KEY_NAMES - set(NOT_NAMEABLE)
    assert not missing, f"Review these LiteLLM key variables: {sorted(missing)}"
    stale = LLM_KEY_NAMES - derived
    assert not stale, f"LiteLLM no longer reads: {sorted(stale)}"
    assert all(reason for reason in NOT_NAMEABLE.values())


def test_local_defaults_follow_litellm():
    """Every provider LiteLLM sends to a local address by default is in the table."""
    from tests.litellm_catalog import litellm_local_defaults
    from wagtail_llm_actions.providers.destinations import LOCAL_DEFAULTS as TABLE

    derived = litellm_local_defaults()
    assert derived, "the LiteLLM source changed shape: update tests/litellm_catalog.py"
    for prefix, (variable, url) in derived.items():
        assert TABLE.get(prefix) == (variable, url), prefix


# -- extra parameters ------------------------------------------------------------------------------

REFUSED_EXTRA = [
    {"custom_llm_provider": "ollama"},
    {"ssl_verify": False},
    {"aws_region_name": "us-east-1"},
    {"vertex_location": "europe-west4"},
    {"vertex_project": "p"},
    {"fallbacks": ["ollama/mistral"]},
    {"model_list": []},
    {"extra_body": {"x": 1}},
    {"mock_response": "Hi"},
    {"tools": []},
    {"metadata": {"a": 1}},
    {"api_version": "2024-02-01"},  # Azure's, not OpenAI's
    {"num_ctx": 8192},  # Ollama's
    {"temperature": "hot"},
    {"seed": 1.5},
    {"seed": True},
    {"stop": {"a": 1}},
    {"logit_bias": {"50256": "x"}},
    {"response_format": {"type": "xml"}},
    {"reasoning_effort": "maximum"},
]


@pytest.mark.parametrize("params", REFUSED_EXTRA)
def test_extra_params_outside_the_allow_list_are_refused(params):
    errors = errors_of(unsaved_action(model="openai/gpt-4o-mini", extra_params=params))
    assert "extra_params" in errors, params


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("azure/my-deployment", {"api_version": "2024-10-01-preview"}),
        ("ollama/mistral", {"num_ctx": 8192, "repeat_penalty": 1.1}),
        ("gemini/gemini-2.0-flash", {"safety_settings": [{"category": "x", "threshold": "y"}]}),
    ],
)
def test_provider_specific_parameters_only_for_their_provider(model, params):
    with llm_settings(ALLOWED_API_BASES=["http://localhost:11434"]):
        unsaved_action(model=model, extra_params=params).clean()
        errors = errors_of(unsaved_action(model="anthropic/claude-3-5-haiku", extra_params=params))
    assert list(errors) == ["extra_params"]


def test_refused_extra_params_are_named_with_the_allowed_ones():
    errors = errors_of(unsaved_action(extra_params={"custom_llm_provider": "ollama"}))
    message = errors["extra_params"][0]
    assert "custom_llm_provider" in message
    assert re.search(r"temperature.*top_p", message)


def test_extra_params_outside_the_allow_list_saved_around_validation_send_nothing(
    make_action, post, fake_llm, api_key_env
):
    action = make_action(
        slug="reroute",
        model="openai/fake-model",
        api_base=fake_llm.url,
        api_key_name=api_key_env,
        extra_params={"custom_llm_provider": "ollama", "ssl_verify": False},
    )
    with pytest.raises(LLMActionError) as info:
        LLMService().run(action, post)
    assert info.value.code == "configuration"
    assert "custom_llm_provider" in info.value.message
    assert fake_llm.request_count == 0


def test_a_fallback_of_another_provider_gets_only_its_own_parameters(fake_llm, monkeypatch):
    """Ollama's ``num_ctx`` stays with Ollama: an OpenAI fallback gets the shared ones."""
    down = f"http://127.0.0.1:{unused_port()}"
    monkeypatch.setenv("OPENAI_API_BASE", fake_llm.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-fallback-key")
    request = request_for(
        "ollama/mistral",
        down,
        api_key=None,
        fallbacks=["openai/fake-model"],
        extra_params={"num_ctx": 4096, "top_p": 0.5},
    )
    with llm_settings(ALLOWED_API_BASES=[down, fake_llm.url]):
        result = complete(request)
    assert result.model == "openai/fake-model"
    body = fake_llm.last_request["json"]
    assert body["top_p"] == 0.5
    assert "num_ctx" not in json.dumps(body)


@pytest.mark.parametrize(
    ("model", "variable"),
    [("openai/fake-model", "OPENAI_API_KEY"), ("deepseek/fake-model", "DEEPSEEK_API_KEY")],
)
def test_a_providers_own_variable_never_goes_to_an_api_base_the_action_sets(
    make_action, post, fake_llm, monkeypatch, model, variable
):
    """With no key name, LiteLLM would read the provider's own variable and send it to
    whatever API base the action names: only a key the action names goes to its base."""
    secret = f"sk-{variable.lower()}-canary-0005"
    monkeypatch.setenv(variable, secret)
    action = make_action(slug="own-variable", model=model, api_base=fake_llm.url, api_key_name="")
    LLMService().run(action, post)
    assert fake_llm.request_count == 1
    sent = json.dumps(fake_llm.last_request["headers"])
    assert secret not in sent
    assert "authorization" in sent.lower()  # a placeholder, so LiteLLM reads no variable
