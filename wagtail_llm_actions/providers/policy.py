"""Where an action may send the site's keys, and which keys it may name.

An action is configuration stored in the database, editable in the admin. Three settings
limit what it can make the server do:

``API_KEY_NAMES``
    Names (or ``fnmatch`` patterns, case-sensitive) of environment variables an action may
    use as its key; by default ``*_API_KEY`` and ``*_API_TOKEN``. Entries of ``API_KEYS`` are
    always allowed. Server secrets (``DATABASE_URL``, ``SECRET_KEY``…) never are.
``ALLOWED_API_BASES``
    URL prefixes an action may use as its API base although they are not public ``https://``
    addresses, e.g. ``http://localhost:11434``. A port of ``*`` matches any port.
``extra_params``
    May not carry headers, URLs or anything named like a credential.

Each rule is checked when the action is saved (``LLMAction.clean``) and again before every
call (:func:`enforce`), on the addresses the API base resolves to *then*; while a call runs,
:func:`guarded_connections` refuses connections (redirects included) to internal addresses
that are not listed, and connects to the address it checked, so DNS rebinding cannot slip
between the check and the connection.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import ipaddress
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.utils.translation import gettext

from ..conf import get_setting
from .base import REDACTED, ConfigurationError, ProviderConnectionError

#: Environment variables an action may read by default.
DEFAULT_API_KEY_NAMES = ("*_API_KEY", "*_API_TOKEN")

#: Server secrets no action may read, whatever ``API_KEY_NAMES`` says.
NEVER_KEY_NAMES = (
    "DATABASE_URL",
    "*_DATABASE_URL",
    "SECRET_KEY",
    "*_SECRET_KEY",
    "DJANGO_*",
)

_VARIABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: ``extra_params`` names that would change where a call goes or what it carries.
FORBIDDEN_PARAMS = frozenset(
    {
        "headers",
        "extra_headers",
        "default_headers",
        "api_key",
        "api_base",
        "base_url",
        "azure_endpoint",
        "proxy",
        "proxies",
        "client",
        "http_client",
    }
)

#: Words in an ``extra_params`` name that suggest a credential or a destination.
_CREDENTIAL_WORDS = frozenset(
    {
        "key",
        "apikey",
        "token",
        "secret",
        "password",
        "passwd",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "cookie",
        "bearer",
        "url",
        "uri",
        "endpoint",
        "host",
    }
)
_WORD_SPLIT_RE = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")


class PolicyError(ConfigurationError):
    """The action's provider settings are not allowed here. Never retried, no fallback."""


class AddressNotAllowed(PolicyError):
    """A connection to an address the API base policy refuses."""


# -- key names ------------------------------------------------------------------------------


def allowed_key_patterns() -> list[str]:
    names = get_setting("API_KEY_NAMES")
    if names is None:
        return list(DEFAULT_API_KEY_NAMES)
    return [str(name) for name in names]


def _matches(name: str, patterns: list[str] | tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def check_key_name(name: str) -> None:
    """Raise :class:`PolicyError` unless an action may use the key named ``name``."""
    name = (name or "").strip()
    if not name:
        return
    if not _VARIABLE_RE.match(name):
        raise PolicyError(
            gettext(
                "Enter the name of an environment variable (letters, digits and underscores), "
                "not a key."
            )
        )
    if _matches(name, NEVER_KEY_NAMES):
        raise PolicyError(
            gettext(
                "%(name)s holds a secret of this server, not a model provider key. An action "
                "may not use it."
            )
            % {"name": name}
        )
    if name in (get_setting("API_KEYS") or {}):
        return
    patterns = allowed_key_patterns()
    if not _matches(name, patterns):
        raise PolicyError(
            gettext(
                "%(name)s is not an allowed API key name. Use an entry of "
                "WAGTAIL_LLM_ACTIONS['API_KEYS'] or an environment variable matching "
                "%(patterns)s (WAGTAIL_LLM_ACTIONS['API_KEY_NAMES'])."
            )
            % {"name": name, "patterns": ", ".join(patterns) or gettext("(none)")}
        )


# -- extra parameters -----------------------------------------------------------------------


def _name_words(name: str) -> set[str]:
    return {word.lower() for word in _WORD_SPLIT_RE.split(str(name)) if word}


def forbidden_param(name: str) -> bool:
    """Whether ``extra_params`` may not contain a key called ``name``."""
    lowered = str(name).lower()
    if lowered in FORBIDDEN_PARAMS or lowered.replace("-", "_") in FORBIDDEN_PARAMS:
        return True
    words = _name_words(name)
    if words & _CREDENTIAL_WORDS:
        return True
    compact = re.sub(r"[^a-z]", "", lowered)
    return any(part in compact for part in ("apikey", "secret", "password", "credential"))


def forbidden_params(params: Any, prefix: str = "") -> list[str]:
    """Dotted names of forbidden keys in ``params``, at any depth."""
    found: list[str] = []
    if isinstance(params, dict):
        for key, value in params.items():
            dotted = f"{prefix}{key}"
            if forbidden_param(key):
                found.append(dotted)
            else:
                found.extend(forbidden_params(value, f"{dotted}."))
    elif isinstance(params, list | tuple):
        for value in params:
            found.extend(forbidden_params(value, prefix))
    return found


def check_extra_params(params: Any) -> None:
    names = forbidden_params(params)
    if names:
        raise PolicyError(
            gettext(
                "Extra parameters may not set headers, URLs or credentials: %(names)s. Use the "
                "action's API base and API key setting name instead."
            )
            % {"names": ", ".join(sorted(dict.fromkeys(names)))}
        )


# -- API bases ------------------------------------------------------------------------------

DEFAULT_PORTS = {"http": 80, "https": 443}
ANY_PORT = -1


@dataclass(frozen=True)
class Endpoint:
    """A URL reduced to what decides where a request goes."""

    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str, *, allow_any_port: bool = False) -> Endpoint | None:
        """``url`` as an endpoint, or None when it is not a usable http(s) URL."""
        text = str(url or "").strip()
        if allow_any_port:
            text = re.sub(r"^([a-z]+://[^/?#]*):\*(?=$|[/?#])", r"\1", text, flags=re.I)
            any_port = text != str(url or "").strip()
        else:
            any_port = False
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError:
            return None
        scheme = parts.scheme.lower()
        host = normalise_host(parts.hostname or "")
        if not scheme or not host:
            return None
        if any_port:
            port = ANY_PORT
        elif port is None:
            port = DEFAULT_PORTS.get(scheme, 0)
        return cls(scheme, host, port, parts.path or "/")

    def covers(self, other: Endpoint) -> bool:
        """Whether ``other`` is this prefix or below it (whole path segments)."""
        if (self.scheme, self.host) != (other.scheme, other.host):
            return False
        if self.port not in (ANY_PORT, other.port):
            return False
        prefix = self.path.rstrip("/")
        return not prefix or other.path == prefix or other.path.startswith(prefix + "/")


def normalise_host(host: str) -> str:
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return host


def allowed_api_bases() -> list[Endpoint]:
    entries = get_setting("ALLOWED_API_BASES") or []
    if isinstance(entries, str):
        entries = [entries]
    parsed = (Endpoint.parse(entry, allow_any_port=True) for entry in entries)
    return [entry for entry in parsed if entry is not None]


def is_listed(url: str) -> bool:
    endpoint = Endpoint.parse(url)
    return endpoint is not None and any(entry.covers(endpoint) for entry in allowed_api_bases())


def _listed_host_port(host: str, port: int) -> bool:
    host = normalise_host(host)
    return any(
        entry.host == host and entry.port in (ANY_PORT, port) for entry in allowed_api_bases()
    )


def address_problem(address: str) -> str | None:
    """Why ``address`` (an IP) is not a public one, or None when it is."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return gettext("not an IP address")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return gettext("an IPv4-mapped IPv6 address")
    checks = (
        (ip.is_unspecified, gettext("an unspecified address")),
        (ip.is_loopback, gettext("a loopback address")),
        (ip.is_link_local, gettext("a link-local address")),
        (ip.is_multicast, gettext("a multicast address")),
        (ip.is_private, gettext("a private address")),
        (ip.is_reserved, gettext("a reserved address")),
        (not ip.is_global, gettext("not a public address")),
    )
    for failed, reason in checks:
        if failed:
            return reason
    return None


def resolve(host: str, port: int) -> list[str]:
    """The IP addresses ``host`` resolves to (``socket.getaddrinfo``), in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _refused(url: str, host: str, reason: str) -> PolicyError:
    return PolicyError(
        gettext(
            "The API base %(url)s is not allowed: %(host)s is %(reason)s. Only public https:// "
            "servers, or servers listed in WAGTAIL_LLM_ACTIONS['ALLOWED_API_BASES'], may "
            "receive the site's keys."
        )
        % {"url": url, "host": host, "reason": reason}
    )


def check_api_base(url: str | None, *, at_call: bool = False) -> None:
    """Raise :class:`PolicyError` unless an action may use ``url`` as its API base.

    A blank base (the provider's default) is allowed; so is anything under an
    ``ALLOWED_API_BASES`` prefix. Otherwise the base must be ``https://`` to a host whose
    every address is public. When the host cannot be resolved the base is accepted on save
    (``at_call=False``) and refused with a connection error at call time.
    """
    url = (url or "").strip()
    if not url:
        return
    endpoint = Endpoint.parse(url)
    if endpoint is None:
        raise PolicyError(gettext("Enter a valid http:// or https:// URL for the API base."))
    if is_listed(url):
        return
    host = endpoint.host
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        addresses: list[str] | None = [host]
    except ValueError:
        addresses = None
        if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
            raise _refused(url, host, gettext("a local name")) from None
    if addresses:
        reason = address_problem(host)
        if reason:
            raise _refused(url, host, reason)
    if endpoint.scheme != "https":
        raise PolicyError(
            gettext(
                "The API base must start with https://. Plain http:// and other schemes are "
                "only allowed for servers listed in WAGTAIL_LLM_ACTIONS['ALLOWED_API_BASES']."
            )
        )
    if addresses is None:
        try:
            addresses = resolve(host, endpoint.port)
        except (OSError, UnicodeError) as e:
            if not at_call:
                return
            raise ProviderConnectionError(
                gettext(
                    "The API base host %(host)s could not be resolved. Check the action's API "
                    "base URL."
                )
                % {"host": host}
            ) from e
    for address in addresses:
        reason = address_problem(address)
        if reason:
            shown = host if address == host else f"{host} ({address})"
            raise _refused(url, shown, reason)


# -- while a call runs ----------------------------------------------------------------------

_active = threading.local()


def _allowed_connect_addresses(host: str, port: int) -> list[str] | None:
    """Addresses to connect to for ``host:port`` under the active policy.

    None means "connect as asked" (the endpoint is listed); raises
    :class:`AddressNotAllowed` when no address may be used.
    """
    if _listed_host_port(host, port):
        return None
    addresses = resolve(host, port)  # OSError: the connection fails, as it would anyway
    for address in addresses:
        reason = address_problem(address)
        if reason:
            raise AddressNotAllowed(
                gettext(
                    "Refused to connect to %(host)s, which is %(reason)s (a redirect or a "
                    "changed DNS answer of the API base led there). Connections to internal "
                    "addresses are refused."
                )
                % {"host": f"{host}:{port}", "reason": reason}
            )
    return addresses


_install_lock = threading.Lock()
_installed = False


def install_connection_guard() -> None:
    """Make httpx/httpcore sync connections check the active policy (once per process).

    LiteLLM and the OpenAI SDK follow redirects; with the guard, a redirect (or a DNS answer
    that changed since :func:`check_api_base`) to an internal address fails to connect.
    Outside :func:`guarded_connections` connections are not affected.
    """
    global _installed
    if _installed:
        return
    with _install_lock:
        if _installed:
            return
        from httpcore import ConnectError
        from httpcore._backends.sync import SyncBackend

        class GuardRefused(ConnectError):
            """httpcore's connect error, so that clients report it as a failed connection."""

        original = SyncBackend.connect_tcp

        def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
            if not getattr(_active, "on", False):
                return original(self, host, port, timeout, local_address, socket_options)
            try:
                addresses = _allowed_connect_addresses(str(host), int(port))
            except AddressNotAllowed as e:
                raise GuardRefused(str(e)) from e
            except OSError as e:  # never let the client resolve the name again by itself
                raise ConnectError(str(e)) from e
            if addresses is None:
                return original(self, host, port, timeout, local_address, socket_options)
            error: Exception | None = None
            for address in addresses:
                try:
                    return original(self, address, port, timeout, local_address, socket_options)
                except ConnectError as e:
                    error = e
            assert error is not None  # noqa: S101 - resolve() never returns an empty list
            raise error

        SyncBackend.connect_tcp = connect_tcp
        _installed = True


@contextlib.contextmanager
def guarded_connections(enabled: bool = True) -> Iterator[None]:
    """Within this block, connections from this thread obey the API base policy."""
    previous = getattr(_active, "on", False)
    _active.on = enabled
    try:
        yield
    finally:
        _active.on = previous


def refused_connection(exc: BaseException) -> AddressNotAllowed | None:
    """The policy refusal behind ``exc`` (an httpx/OpenAI/LiteLLM error), if any."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, AddressNotAllowed):
            return current
        stack.extend([current.__cause__, current.__context__])
        original = getattr(current, "original_exception", None)
        if isinstance(original, BaseException):
            stack.append(original)
    return None


# -- secrets in results ---------------------------------------------------------------------


#: Environment variables whose values are scrubbed from answers and errors (with the ones
#: an action may name).
SECRET_VARIABLE_NAMES = (
    "DATABASE_URL",
    "*_DATABASE_URL",
    "SECRET_KEY",
    "*_SECRET_KEY",
    "*SECRET*",
    "*PASSWORD*",
    "*_TOKEN",
    "*_KEY",
)

#: Shorter values of other variables are not scrubbed (they would match ordinary words).
MIN_SCRUBBED_LENGTH = 8


def site_secrets() -> list[str]:
    """Values of every key the site holds, for scrubbing answers and errors.

    ``API_KEYS`` entries, environment variables an action may name, server secrets, and
    Django's ``SECRET_KEY``: an answer must not show any of them, even one the call did
    not use (LiteLLM reads the provider's usual variable itself when the name is blank).
    """
    from django.conf import settings

    values = [str(v) for v in (get_setting("API_KEYS") or {}).values() if v]
    patterns = (*allowed_key_patterns(), *DEFAULT_API_KEY_NAMES, *SECRET_VARIABLE_NAMES)
    values += _environment_values(patterns)
    values.append(str(getattr(settings, "SECRET_KEY", "") or ""))
    unique = {v for v in values if len(v) >= MIN_SCRUBBED_LENGTH}
    return sorted(unique, key=len, reverse=True)


@functools.lru_cache(maxsize=8)
def _names_regex(patterns: tuple[str, ...], binary: bool) -> Callable[[Any], Any]:
    """One compiled match for ``fnmatchcase`` against any of ``patterns`` (run on every call
    over the whole environment), for ``str`` names or (``binary``) ``bytes`` names."""
    pattern = "|".join(fnmatch.translate(p) for p in patterns)
    return re.compile(os.fsencode(pattern) if binary else pattern).match


def _environment_values(patterns: tuple[str, ...]) -> list[str]:
    """Values of the environment variables whose name matches one of ``patterns``. Where the
    environment is bytes underneath (POSIX), only the matching values are decoded."""
    if os.supports_bytes_environ:
        match = _names_regex(patterns, True)
        return [os.fsdecode(v) for name, v in os.environb.items() if v and match(name)]
    match = _names_regex(patterns, False)
    return [value for name, value in os.environ.items() if value and match(name)]


def scrub_value(text: str, secret: str | None, others: list[str] | tuple[str, ...] = ()) -> str:
    """``text`` with ``secret`` (the call's key) and ``others`` replaced by ``[redacted]``."""
    if not text:
        return text
    text = str(text)
    if secret and len(secret) >= 4:
        text = text.replace(secret, REDACTED)
    for value in others:
        if value in text:
            text = text.replace(value, REDACTED)
    return text
