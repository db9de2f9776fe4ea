"""The connection guard: what a provider call may connect to, whatever chose the destination.

While :func:`guarded_connections` is active (a remote provider's call: ``providers._call``),
in this thread or the asyncio tasks it starts:

* every TCP connection (``socket.connect``, so httpx, urllib, requests, aiohttp alike) must go
  to a public address or to a server listed in ``ALLOWED_API_BASES``; a DNS answer that
  changed since the API base was checked cannot slip through, since the address actually
  connected to is the one checked;
* every httpx request's *target URL* is checked the same way (through a proxy, the socket
  peer is only the proxy), and must be ``https://`` unless listed;
* httpx never follows a redirect: a 3xx answer is refused with :class:`RedirectRefused`
  (a redirect would send the page text, and maybe the key, to a server nobody checked).

Outside a call nothing changes: the patches test a context variable first.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import socket
import threading
from collections.abc import Iterator
from typing import Any

from django.utils.translation import gettext

from .base import display_url
from .policy import (
    REFUSED_REQUEST,
    AddressNotAllowed,
    PolicyError,
    RedirectRefused,
    address_problem,
    check_url,
    listed_address,
)

_active: contextvars.ContextVar[bool] = contextvars.ContextVar("llm_call_guarded", default=False)


class ConnectionRefusedByPolicy(ConnectionRefusedError):
    """Raised by ``socket.connect`` for a refused address, so that every HTTP client reports
    it as a failed connection; the :class:`AddressNotAllowed` is its ``__cause__``."""


def check_peer(address: Any, family: int) -> None:
    """Raise :class:`AddressNotAllowed` unless a call may connect to ``address``."""
    if family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
        return
    host, port = str(address[0]), int(address[1])
    reason = address_problem(host)
    if reason is None or listed_address(host, port):
        return
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    raise AddressNotAllowed(
        gettext(
            "Refused to connect to %(address)s, which is %(reason)s and not listed in "
            "WAGTAIL_LLM_ACTIONS['ALLOWED_API_BASES']. Connections to internal addresses are "
            "refused while a model is called, whatever chose them (the API base, the model's "
            "default, an environment variable, a redirect or a DNS answer)."
        )
        % {"address": shown, "reason": reason}
    )


def check_request(url: str) -> None:
    """Raise :class:`AddressNotAllowed` unless a call may send an HTTP request to ``url``."""
    check_url(url, at_call=True, template=REFUSED_REQUEST, error=AddressNotAllowed)


def refuse_redirect(status: int, location: str) -> RedirectRefused:
    return RedirectRefused(
        gettext(
            "The model server answered with a redirect (HTTP %(status)s to %(location)s). "
            "Provider calls never follow redirects: set the action's API base to the server "
            "that answers."
        )
        % {"status": status, "location": display_url(location) or "?"}
    )


def _guard_socket(sock: socket.socket, address: Any) -> None:
    try:
        check_peer(address, sock.family)
    except AddressNotAllowed as e:
        raise ConnectionRefusedByPolicy(errno.ECONNREFUSED, e.message) from e


_install_lock = threading.Lock()
_installed = False


def install_connection_guard() -> None:
    """Patch ``socket.socket.connect``/``connect_ex`` and httpx's ``Client.send`` and
    ``AsyncClient.send`` once per process; they check only within :func:`guarded_connections`."""
    global _installed
    if _installed:
        return
    with _install_lock:
        if _installed:
            return
        import httpx

        connect = socket.socket.connect
        connect_ex = socket.socket.connect_ex

        def guarded_connect(self, address):
            if _active.get():
                _guard_socket(self, address)
            return connect(self, address)

        def guarded_connect_ex(self, address):
            if _active.get():
                _guard_socket(self, address)
            return connect_ex(self, address)

        send = httpx.Client.send
        send_async = httpx.AsyncClient.send

        def guarded_send(self, request, **kwargs):
            if not _active.get():
                return send(self, request, **kwargs)
            check_request(str(request.url))
            response = send(self, request, **{**kwargs, "follow_redirects": False})
            if response.has_redirect_location:
                response.close()
                raise refuse_redirect(response.status_code, response.headers["Location"])
            return response

        async def guarded_send_async(self, request, **kwargs):
            if not _active.get():
                return await send_async(self, request, **kwargs)
            check_request(str(request.url))
            response = await send_async(self, request, **{**kwargs, "follow_redirects": False})
            if response.has_redirect_location:
                await response.aclose()
                raise refuse_redirect(response.status_code, response.headers["Location"])
            return response

        socket.socket.connect = guarded_connect
        socket.socket.connect_ex = guarded_connect_ex
        httpx.Client.send = guarded_send
        httpx.AsyncClient.send = guarded_send_async
        _installed = True


@contextlib.contextmanager
def guarded_connections(enabled: bool = True) -> Iterator[None]:
    """Within this block, connections and HTTP requests obey the API base policy."""
    token = _active.set(enabled)
    try:
        yield
    finally:
        _active.reset(token)


def refused_connection(exc: BaseException) -> PolicyError | None:
    """The guard's refusal behind ``exc`` (an httpx/OpenAI/LiteLLM/urllib error), if any."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        current = stack.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, AddressNotAllowed | RedirectRefused):
            return current
        stack.extend([current.__cause__, current.__context__])
        for name in ("original_exception", "reason"):  # LiteLLM's wrapper, urllib's URLError
            stack.append(getattr(current, name, None))
    return None
