"""Where an action may send the site's keys, and which keys it may name.

An action is configuration stored in the database, editable in the admin. These settings
limit what it can make the server do:

``API_KEY_NAMES`` / ``EXTRA_API_KEY_NAMES``
    Environment variables an action may use as its key: by default the variables LLM
    providers use (:data:`keynames.LLM_KEY_NAMES`); ``API_KEY_NAMES`` replaces that list,
    ``EXTRA_API_KEY_NAMES`` adds names (or ``fnmatch`` patterns, case-sensitive) to it.
    Entries of ``API_KEYS`` are always allowed. Server secrets (``DATABASE_URL``,
    ``SECRET_KEY``…) never are.
``ALLOWED_API_BASES``
    URL prefixes an action may use as its API base although they are not public ``https://``
    addresses, e.g. ``http://localhost:11434``. A port of ``*`` matches any port.
``extra_params``
    Only sampling and format options (:mod:`.params`).

Each rule is checked when the action is saved (``LLMAction.clean``) and again before every
call; the API base is the one the action sets or, when blank, the one its model string
resolves to (:mod:`.destinations`: a local server's default, an ``*_API_BASE`` variable),
for the main model and each fallback. While a call runs, :mod:`.guard` checks every
connection and every HTTP request, and refuses redirects.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from django.utils.translation import gettext

from ..conf import get_setting
from .base import REDACTED, ConfigurationError, ProviderConnectionError
from .destinations import Destination
from .keynames import LLM_KEY_NAMES
from .params import param_problems

#: Server secrets no action may read, whatever ``API_KEY_NAMES`` says.
NEVER_KEY_NAMES = (
    "DATABASE_URL",
    "*_DATABASE_URL",
    "SECRET_KEY",
    "*_SECRET_KEY",
    "DJANGO_*",
)

_VARIABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PATTERN_CHARS = frozenset("*?[")


class PolicyError(ConfigurationError):
    """The action's provider settings are not allowed here. Never retried, no fallback."""


class AddressNotAllowed(PolicyError):
    """A connection or request to an address the API base policy refuses."""


class RedirectRefused(PolicyError):
    """A provider answered with a redirect: provider calls never follow one."""


# -- key names ------------------------------------------------------------------------------


def configured_key_names() -> list[str]:
    """The names and patterns the settings add to (or put in place of) the default list."""
    names = get_setting("API_KEY_NAMES")
    extra = [str(name) for name in get_setting("EXTRA_API_KEY_NAMES") or ()]
    return [*(str(name) for name in names or ()), *extra]


_SORTED_KEY_NAMES = tuple(sorted(LLM_KEY_NAMES))


def allowed_key_patterns() -> list[str]:
    """Every name or pattern an action may name (API_KEYS entries aside)."""
    names = get_setting("API_KEY_NAMES")
    base = _SORTED_KEY_NAMES if names is None else [str(name) for name in names]
    return [*base, *(str(name) for name in get_setting("EXTRA_API_KEY_NAMES") or ())]


@functools.lru_cache(maxsize=16)
def _matcher(patterns: tuple[str, ...]) -> tuple[frozenset[str], tuple[str, ...]]:
    """Plain names (a set) and ``fnmatch`` patterns of ``patterns``."""
    wild = tuple(p for p in patterns if _PATTERN_CHARS.intersection(p))
    return frozenset(patterns).difference(wild), wild


def _matches(name: str, patterns: list[str] | tuple[str, ...]) -> bool:
    exact, wild = _matcher(tuple(patterns))
    return name in exact or any(fnmatch.fnmatchcase(name, pattern) for pattern in wild)


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
    if _matches(name, allowed_key_patterns()):
        return
    if get_setting("API_KEY_NAMES") is None:
        message = gettext(
            "%(name)s is not a variable a model provider reads its key from, so an action may "
            "not send it. Use a provider's variable (such as OPENAI_API_KEY), an entry of "
            "WAGTAIL_LLM_ACTIONS['API_KEYS'], or add the name to "
            "WAGTAIL_LLM_ACTIONS['EXTRA_API_KEY_NAMES']."
        )
    else:
        message = gettext(
            "%(name)s is not an allowed API key name. Use an entry of "
            "WAGTAIL_LLM_ACTIONS['API_KEYS'] or a name in WAGTAIL_LLM_ACTIONS['API_KEY_NAMES'] "
            "or ['EXTRA_API_KEY_NAMES']: %(patterns)s."
        )
    raise PolicyError(
        message % {"name": name, "patterns": ", ".join(allowed_key_patterns()) or "-"}
    )


# -- extra parameters -----------------------------------------------------------------------


def check_extra_params(params: Any, model: str | None = None) -> None:
    """Raise :class:`PolicyError` unless ``params`` are sampling and format options that
    ``model``'s provider takes (see :mod:`.params`)."""
    problems = param_problems(params if params is not None else {}, model)
    if problems:
        raise PolicyError(" ".join(problems))


# -- API bases ------------------------------------------------------------------------------

DEFAULT_PORTS = {"http": 80, "https": 443}
ANY_PORT = -1

#: Characters that may act as a path separator once a server or proxy decodes them.
_SEPARATOR_RE = re.compile(r"\\|%5c|%2f", re.IGNORECASE)


def path_problem(path: str) -> str | None:
    """Why ``path`` could leave the prefix it seems to be under, or None.

    ``.`` and ``..`` segments (also percent-encoded, as servers decode them before
    resolving), backslashes and encoded slashes: a client or server normalising the URL
    would send the request elsewhere than the path that was checked.
    """
    if _SEPARATOR_RE.search(path):
        return gettext("a backslash or an encoded slash")
    for segment in path.split("/"):
        decoded = segment
        for _ in range(3):
            decoded, previous = unquote(decoded), decoded
            if decoded == previous:
                break
        if decoded in (".", ".."):
            return gettext("a “.” or “..” segment")
    return None


@dataclass(frozen=True)
class Endpoint:
    """A URL reduced to what decides where a request goes."""

    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str, *, allow_any_port: bool = False) -> Endpoint | None:
        """``url`` as an endpoint, or None when it is not a usable http(s) URL (dot segments
        in its path included: see :func:`path_problem`)."""
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
        if not scheme or not host or path_problem(parts.path):
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


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def listed_address(address: str, port: int) -> bool:
    """Whether ``address:port`` (an IP) is a server of an ``ALLOWED_API_BASES`` entry (its
    host resolved when it is a name, e.g. ``localhost``)."""
    address = normalise_host(address.split("%", 1)[0])
    for entry in allowed_api_bases():
        if entry.port not in (ANY_PORT, port):
            continue
        if entry.host == address:
            return True
        if not is_ip(entry.host):
            try:
                resolved = {normalise_host(a.split("%", 1)[0]) for a in resolve(entry.host, port)}
            except (OSError, UnicodeError):
                continue
            if address in resolved:
                return True
    return False


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


REFUSED_BASE = (
    "The API base %(url)s is not allowed: %(host)s is %(reason)s. Only public https:// "
    "servers, or servers listed in WAGTAIL_LLM_ACTIONS['ALLOWED_API_BASES'], may receive the "
    "site's keys."
)
REFUSED_REQUEST = (
    "Refused a request of this call to %(url)s: %(host)s is %(reason)s. Only public https:// "
    "servers, or servers listed in WAGTAIL_LLM_ACTIONS['ALLOWED_API_BASES'], may receive the "
    "site's keys (connections to internal addresses are refused)."
)


def check_url(
    url: str,
    *,
    at_call: bool = False,
    template: str = REFUSED_BASE,
    error: type[PolicyError] = PolicyError,
) -> None:
    """Raise ``error`` unless requests may go to ``url``: listed in ``ALLOWED_API_BASES``, or
    ``https://`` to a host whose every address is public. ``template`` words the refusal.

    When the host cannot be resolved, ``url`` is accepted on save (``at_call=False``) and
    refused with a connection error at call time.
    """
    text = str(url or "").strip()
    try:
        path = urlsplit(text).path
    except ValueError:
        path = ""
    problem = path_problem(path)
    if problem:
        raise error(
            gettext(
                "The URL %(url)s is not allowed: its path has %(problem)s, which could move "
                "the request out of the path that was checked. Write the path without “.” "
                "or “..” segments."
            )
            % {"url": text, "problem": problem}
        )
    endpoint = Endpoint.parse(text)
    if endpoint is None or endpoint.scheme not in DEFAULT_PORTS:
        raise error(gettext("Enter a valid http:// or https:// URL for the API base."))
    if is_listed(text):
        return

    def refused(host: str, reason: str) -> PolicyError:
        return error(gettext(template) % {"url": text, "host": host, "reason": reason})

    host = endpoint.host
    addresses: list[str] | None = [host] if is_ip(host) else None
    if addresses is None and (
        host == "localhost" or host.endswith((".localhost", ".local", ".internal"))
    ):
        raise refused(host, gettext("a local name"))
    if addresses:
        reason = address_problem(host)
        if reason:
            raise refused(host, reason)
    if endpoint.scheme != "https":
        raise error(
            gettext(
                "%(url)s is not allowed: it must start with https://. Plain http:// is only "
                "allowed for servers listed in WAGTAIL_LLM_ACTIONS['ALLOWED_API_BASES']."
            )
            % {"url": text}
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
            raise refused(host if address == host else f"{host} ({address})", reason)


def check_api_base(url: str | None, *, at_call: bool = False) -> None:
    """Raise :class:`PolicyError` unless an action may use ``url`` as its API base.

    A blank base is checked as the destination its model resolves to
    (:func:`check_destination`); anything under an ``ALLOWED_API_BASES`` prefix is allowed;
    otherwise the base must be ``https://`` to a host whose every address is public.
    """
    if (url or "").strip():
        check_url(url, at_call=at_call)


def check_destination(destination: Destination, *, at_call: bool = False) -> None:
    """Raise :class:`PolicyError` unless the server a model resolves to (its API base left
    blank) may receive requests; None (the provider's own endpoint) is allowed."""
    if destination.url is None or destination.source == "api_base":
        return
    try:
        check_url(destination.url, at_call=at_call)
    except PolicyError as e:
        raise PolicyError(
            gettext(
                "%(model)s has no API base, so its requests would go to %(url)s (%(origin)s). "
                "%(reason)s"
            )
            % {
                "model": destination.model,
                "url": destination.url,
                "origin": destination.describe(),
                "reason": e.message,
            },
            model=destination.model,
        ) from e


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
    patterns = (*configured_key_names(), *SECRET_VARIABLE_NAMES)
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
