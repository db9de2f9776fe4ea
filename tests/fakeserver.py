"""A fake OpenAI-compatible chat completions server for tests and benchmarks.

It listens on 127.0.0.1 only, answers ``POST /v1/chat/completions`` (and
``/chat/completions``) and ``GET /v1/models``, and records every request::

    with FakeLLMServer(reply="Hello") as server:
        litellm.completion(model="openai/test-model", api_base=server.url, ...)
        server.requests[-1]["json"]["messages"]

Behaviour is set with attributes or :meth:`FakeLLMServer.configure` and applies to
every request; :meth:`FakeLLMServer.enqueue` adds one-shot overrides consumed in
order (e.g. a 500 first, then a normal answer). Settings:

``reply``
    Answer text, or a callable receiving the request JSON and returning the text.
``latency``
    Seconds to wait before answering (interrupted when the server stops).
``status``
    HTTP status. Anything but 200 returns an OpenAI-style error body built from
    ``error_message``, ``error_type`` and ``error_code``.
``malformed``
    Answer 200 with a body that is not JSON.
``html``
    Answer 200 with this text as a ``text/html`` page (as a proxy or login page does).
``empty_choices``
    Answer with ``"choices": []``.
``finish_reason``
    The choice's finish reason (default ``"stop"``).
``usage``
    Dict of ``prompt_tokens``/``completion_tokens``/``total_tokens``; ``None``
    computes them from lengths (4 characters a token), ``False`` leaves usage out.
``model_name``
    Model reported in the answer; ``None`` echoes the requested model.
``close_connection``
    Drop the connection without answering.
``headers``
    Extra response headers, e.g. ``{"retry-after": "1"}``.
``json_reply``
    A dict (or a callable receiving the request JSON and returning one) answered as JSON
    text. When unset and the request has a JSON schema ``response_format`` (JSON mode), the
    answer is a sample object built from the schema (strings cut to ``maxLength``).
``ignore_schema``
    Answer valid JSON with keys nobody asked for: ``{"answer": ...}``.
``truncate_json``
    Cut the answer in half and report ``finish_reason="length"``, as max_tokens does.
``candidate_replies``
    Texts of the choices when the request asks for ``n`` > 1 (choice *i* gets item *i*);
    unset, choice *i* > 0 is the reply followed by `` (i+1)``.
``ignore_n``
    Answer one choice whatever ``n`` asks for (a server without ``n``).
``redirect_to``
    A base URL (e.g. another fake server's ``url``): answer every completion with
    ``307 Temporary Redirect`` to ``<redirect_to>/chat/completions``.
``proxy``
    Act as a plain HTTP forward proxy too: a request for an absolute URL
    (``POST http://127.0.0.1:PORT/v1/chat/completions``) is recorded and forwarded there,
    and the target's answer relayed (redirects included, as a proxy does).
``answer_tokens``
    A model that writes long answers: the reply is followed by filler words up to about this
    many tokens (counted as ``message_tokens`` counts), e.g. long partial answers of a
    map-reduce run. ``None``: the reply as it is.
``honour_max_tokens``
    Stop the answer at the request's ``max_tokens`` (whole words) and report
    ``finish_reason="length"`` when it had to be cut, as real servers do. Off by default: the
    reply is sent whole, whatever ``max_tokens`` says (a server that ignores it).
``max_tokens_ratio``
    With ``honour_max_tokens``: the answer stops at ``max_tokens`` × this many tokens as we
    count them (a model whose tokenizer counts fewer tokens than cl100k, e.g. 1.15).
``bad_text``
    ``"surrogate"`` or ``"nul"``: put a lone UTF-16 surrogate (U+D800) or a NUL character
    (U+0000) into the middle of every answer text, sent JSON-escaped as a real server does
    (``\\ud800``, ``\\u0000``): text no database column stores as it is.
``stream_delay``
    A request with ``"stream": true`` is answered as OpenAI streams (server-sent events,
    ``data: {chunk}`` lines, then ``data: [DONE]``), in chunks of one, two and three words
    in turn; this many seconds pass before each chunk (the slow mode of
    ``bench/streaming.py``). With ``stream_options.include_usage`` the last chunk carries
    the usage, as OpenAI sends it.
    Each request records ``chunks_sent`` and ``client_closed`` (the client hung up before
    the end: a cancelled stream).
``stream_hold_after``
    A stream stops after this many text chunks until :meth:`FakeLLMServer.release_streams`
    is called (at most 30 s): a test sees the answer half written, whatever the machine's
    speed.
``stream_cut_after``
    Cut the stream after this many content chunks: the connection drops without the end
    of the chunked body, ``[DONE]`` or a finish reason (a broken stream). None: never.

``translate``
    A translating model (issue 23): the request's user message is a JSON object whose
    ``"segments"`` maps keys to texts; the answer maps each key to the text with every word
    spelled backwards and the ``⟦n⟧`` markup placeholders kept in place. ``"reverse"`` does
    just that; ``"drop_tag"`` also drops each segment's first placeholder (an answer that loses
    a link or a tag); ``"invent_tag"`` adds a ``⟦99⟧`` (``enqueue`` one of them, then
    ``"reverse"``: a retry that answers well). :func:`sent_segments` reads a request's segments.

Run it in the foreground for benchmarks::

    python -m tests.fakeserver --port 8765 --latency 0.2
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import re
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

HOST = "127.0.0.1"
MAX_LATENCY = 120.0
MAX_BODY_BYTES = 50 * 1024 * 1024

DEFAULTS: dict[str, Any] = {
    "reply": "This is a reply from the fake model.",
    "latency": 0.0,
    "status": 200,
    "error_message": None,
    "error_type": None,
    "error_code": None,
    "malformed": False,
    "html": None,
    "empty_choices": False,
    "finish_reason": "stop",
    "usage": None,
    "model_name": None,
    "close_connection": False,
    "headers": None,
    # A context window in tokens: a request whose messages plus max_tokens exceed it is
    # rejected as OpenAI does (400, code "context_length_exceeded"). None: no limit.
    "context_window": None,
    "json_reply": None,
    "ignore_schema": False,
    "truncate_json": False,
    "candidate_replies": None,
    "ignore_n": False,
    "redirect_to": None,
    "proxy": False,
    "answer_tokens": None,
    "honour_max_tokens": False,
    "max_tokens_ratio": 1.0,
    "bad_text": None,
    "translate": None,
    "stream_delay": 0.0,
    "stream_cut_after": None,
    "stream_hold_after": None,
}

#: Headers that describe one connection, not the message: a proxy does not pass them on.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"}
)

#: What ``bad_text`` puts into an answer.
#: Seconds a held stream waits for release_streams() at most.
HOLD_LIMIT = 30.0

BAD_TEXT = {"surrogate": "\ud800", "nul": "\x00"}

ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("invalid_request_error", "Incorrect API key provided."),
    403: ("permission_denied", "You are not allowed to use this model."),
    404: ("invalid_request_error", "The model does not exist."),
    408: ("timeout", "Request timed out."),
    422: ("invalid_request_error", "Unprocessable entity."),
    429: ("rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", "The server had an error while processing your request."),
    502: ("server_error", "Bad gateway."),
    503: ("server_error", "The engine is currently overloaded, please try again later."),
    504: ("server_error", "Gateway timeout."),
}


class Headers(dict):
    """Request headers with lower-case names; lookups ignore case."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__((str(k).lower(), v) for k, v in dict(items).items())

    def __getitem__(self, key: str) -> Any:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


def approx_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4) if text else 0


def _message_text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


def message_tokens(payload: dict) -> int:
    """Prompt tokens of a chat request as OpenAI counts them (cl100k_base, a few a message)."""
    from wagtail_llm_actions.estimates import count_message_tokens

    messages = [m for m in payload.get("messages") or [] if isinstance(m, dict)]
    return count_message_tokens([{"content": _message_text(m)} for m in messages])


_FILLER = "compost heap layers warm slowly while worms turn leaves into dark soil".split()


def long_text(text: str, tokens: int) -> str:
    """``text`` followed by filler words, about ``tokens`` tokens in all."""
    from wagtail_llm_actions.estimates import count_text_tokens

    words = text.split()
    missing = tokens - count_text_tokens(text)
    if missing > 0:
        words += [_FILLER[i % len(_FILLER)] for i in range(missing)]  # about a token a word
    return cut_to_tokens(" ".join(words), tokens)[0]


def cut_to_tokens(text: str, tokens: int) -> tuple[str, bool]:
    """The longest run of ``text``'s first words within ``tokens`` tokens, and whether it
    had to be cut."""
    from wagtail_llm_actions.estimates import count_text_tokens

    if count_text_tokens(text) <= tokens:
        return text, False
    words = text.split(" ")
    low, high = 0, len(words)  # the longest prefix of words that fits: binary search
    while low < high:
        middle = (low + high + 1) // 2
        if count_text_tokens(" ".join(words[:middle])) <= tokens:
            low = middle
        else:
            high = middle - 1
    return " ".join(words[:low]), True


def image_parts(payload: Any) -> list[dict | None]:
    """The image parts of a chat request's messages (LiteLLM's/OpenAI's vision format:
    ``{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,..."}}``), each as
    its media type and decoded byte size."""
    import base64
    import binascii

    found: list[dict | None] = []
    messages = payload.get("messages") if isinstance(payload, dict) else None
    for message in messages or []:
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else []:
            if not isinstance(part, dict) or part.get("type") != "image_url":
                continue
            value = part.get("image_url")
            url = value.get("url", "") if isinstance(value, dict) else str(value or "")
            head, sep, data = url.partition(",")
            if not (sep and head.startswith("data:") and head.endswith(";base64")):
                found.append(None)
                continue
            try:
                size = len(base64.b64decode(data, validate=True))
            except (binascii.Error, ValueError):
                found.append(None)
                continue
            found.append({"media_type": head[5:-7], "bytes": size})
    return found


def last_user_message(payload: dict) -> str:
    """The text of the last user message of a chat request (handy for ``reply``)."""
    for message in reversed(payload.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _message_text(message)
    return ""


_PLACEHOLDER = "⟦"


def sent_segments(entry_or_payload: dict) -> dict[str, str]:
    """The segments a translation request sent (a recorded request, or its JSON)."""
    payload = entry_or_payload.get("json", entry_or_payload)
    try:
        return dict(json.loads(last_user_message(payload)).get("segments") or {})
    except (ValueError, AttributeError):
        return {}


def reverse_words(text: str) -> str:
    """Each run of letters spelled backwards; placeholders, digits and punctuation kept."""
    import re

    parts = re.split(r"(⟦\d+⟧)", text)
    return "".join(
        part if part.startswith(_PLACEHOLDER) else re.sub(r"[^\W\d_]+", lambda m: m[0][::-1], part)
        for part in parts
    )


def translated_segments(payload: dict, mode: str) -> dict[str, str]:
    import re

    answer = {}
    for key, text in sent_segments(payload).items():
        out = reverse_words(text)
        if mode == "drop_tag":
            out = re.sub(r"⟦\d+⟧", "", out, count=1)
        elif mode == "invent_tag":
            out += "⟦99⟧"
        answer[key] = out
    return answer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm the body would wait for
    # the client's delayed ACK (about 40 ms on Linux), which real servers do not add.
    disable_nagle_algorithm = True
    server_version = "FakeLLM/1.0"
    timeout = 30  # idle keep-alive connections end eventually
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.fake.track(self.connection, add=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.fake.track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.fake.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        if self._proxied():
            return
        path = self.path.split("?", 1)[0].rstrip("/")
        self.server.fake.record(self, None)
        if path in ("/v1/models", "/models"):
            model = self.server.fake.model_name or "test-model"
            self.send_json(200, {"object": "list", "data": [{"id": model, "object": "model"}]})
        elif path == "/_fake/stats":
            fake = self.server.fake
            self.send_json(
                200, {"max_in_flight": fake.max_in_flight, "completions": fake.completions}
            )
        else:
            self.send_json(404, error_body(404, "Not found.", None, None))

    def do_POST(self) -> None:
        if self._proxied():
            return
        fake = self.server.fake
        fake.track_call(+1)
        try:
            self._post()
        finally:
            fake.track_call(-1, getattr(self, "_entry", None))

    def _post(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(min(length, MAX_BODY_BYTES)) if length > 0 else b""
        try:
            payload = json.loads(raw or b"null")
        except ValueError:
            payload = None
        fake = self.server.fake
        config = fake.record(self, payload)
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self.send_json(404, error_body(404, f"Unknown path {path}.", None, None))
            return
        latency = min(max(float(config["latency"] or 0), 0.0), MAX_LATENCY)
        if latency and fake.stopping.wait(latency):
            self.close_connection = True
            return
        if config["close_connection"] or fake.stopping.is_set():
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        extra = config["headers"] or {}
        if not isinstance(payload, dict):
            self.send_json(400, error_body(400, "The body must be a JSON object.", None, None))
            return
        window = config["context_window"]
        if window:
            prompt = message_tokens(payload)
            completion = int(payload.get("max_tokens") or payload.get("max_completion_tokens") or 0)
            fake.record_prompt_tokens(prompt)
            if prompt + completion > int(window):
                message = (
                    f"This model's maximum context length is {window} tokens. However, you "
                    f"requested {prompt + completion} tokens ({prompt} in the messages, "
                    f"{completion} in the completion). Please reduce the length of the "
                    "messages or completion."
                )
                body = error_body(400, message, "invalid_request_error", "context_length_exceeded")
                self.send_json(400, body, extra)
                return
        if config["redirect_to"]:
            location = f"{str(config['redirect_to']).rstrip('/')}/chat/completions"
            self.send_raw(307, b"{}", {**extra, "Location": location})
            return
        status = int(config["status"])
        if status != 200:
            kind, message = ERRORS.get(status, ("server_error", f"Error {status}."))
            body = error_body(
                status,
                config["error_message"] or message,
                config["error_type"] or kind,
                config["error_code"],
            )
            self.send_json(status, body, extra)
            return
        if config["html"] is not None:
            self.send_raw(200, str(config["html"]).encode(), extra, "text/html; charset=utf-8")
            return
        if config["malformed"]:
            self.send_raw(200, b'{"id": "chatcmpl-broken", "choices": [', extra)
            return
        if payload.get("stream"):
            self.send_stream(fake.completion(payload, config), payload, config, extra)
            return
        self.send_json(200, fake.completion(payload, config), extra)

    def send_stream(self, body: dict, payload: dict, config: dict, headers: dict) -> None:
        """``body`` as OpenAI streams it: server-sent events in a chunked body."""
        entry = self._entry
        entry["chunks_sent"] = 0
        entry["client_closed"] = False
        events = stream_events(body, payload)
        cut = config["stream_cut_after"]
        delay = min(max(float(config["stream_delay"] or 0), 0.0), MAX_LATENCY)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            for name, value in (headers or {}).items():
                self.send_header(name, str(value))
            self.end_headers()
            for event, content in events:
                if content and cut is not None and entry["chunks_sent"] >= int(cut):
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)  # no end of the body
                    return
                if content and delay and self.server.fake.stopping.wait(delay):
                    self.close_connection = True
                    return
                hold = config["stream_hold_after"]
                if content and hold is not None and entry["chunks_sent"] == int(hold):
                    self.server.fake.streams_released.wait(HOLD_LIMIT)
                data = f"data: {event}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
                if content:
                    entry["chunks_sent"] += 1
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            entry["client_closed"] = True
            self.close_connection = True

    def _proxied(self) -> bool:
        """Forward a request for an absolute URL when the server acts as a proxy."""
        fake = self.server.fake
        if not self.path.lower().startswith("http://") or not fake.proxy:
            return False
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(min(length, MAX_BODY_BYTES)) if length > 0 else None
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        fake.record(self, payload)
        target = urlsplit(self.path)
        headers = {
            name: value
            for name, value in self.headers.items()
            if name.lower() not in HOP_BY_HOP and not name.lower().startswith("proxy-")
        }
        connection = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=30)
        try:
            path = target.path + (f"?{target.query}" if target.query else "")
            connection.request(self.command, path or "/", body=raw, headers=headers)
            answer = connection.getresponse()
            body = answer.read()
            relayed = {
                name: value
                for name, value in answer.getheaders()
                if name.lower() not in HOP_BY_HOP | {"content-type", "content-length"}
            }
            content_type = answer.getheader("Content-Type") or "application/json"
            self.send_raw(answer.status, body, relayed, content_type)
        except OSError:
            self.send_json(502, error_body(502, "Bad gateway.", "server_error", None))
        finally:
            connection.close()
        return True

    def send_json(self, status: int, body: Any, headers: dict | None = None) -> None:
        self.send_raw(status, json.dumps(body).encode(), headers)

    def send_raw(
        self,
        status: int,
        data: bytes,
        headers: dict | None = None,
        content_type: str = "application/json",
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, str(value))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True


def error_body(status: int, message: str, kind: str | None, code: str | None) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    fake: FakeLLMServer


class FakeLLMServer:
    """An OpenAI-compatible server on 127.0.0.1 running in a daemon thread."""

    def __init__(self, port: int = 0, *, verbose: bool = False, **config: Any) -> None:
        self.port = port
        self.verbose = verbose
        self.stopping = threading.Event()
        self.streams_released = threading.Event()
        self._lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._ids = itertools.count(1)
        self._requests: list[dict] = []
        self._queue: deque[dict] = deque()
        self._prompt_tokens: list[int] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._completions = 0
        self._config: dict[str, Any] = dict(DEFAULTS)
        self.configure(**config)

    # -- configuration ---------------------------------------------------------------------

    def configure(self, **config: Any) -> FakeLLMServer:
        """Change how every following request is answered."""
        self._check(config)
        with self._lock:
            self._config.update(config)
        return self

    def enqueue(self, **overrides: Any) -> FakeLLMServer:
        """Answer the next unanswered request with these settings, once."""
        self._check(overrides)
        with self._lock:
            self._queue.append(overrides)
        return self

    def release_streams(self) -> FakeLLMServer:
        """Let streams held by ``stream_hold_after`` go on (and later ones pass)."""
        self.streams_released.set()
        return self

    def reset(self) -> FakeLLMServer:
        """Restore the defaults and forget recorded requests and queued overrides."""
        with self._lock:
            self.streams_released.clear()
            self._config = dict(DEFAULTS)
            self._queue.clear()
            self._requests.clear()
            self._prompt_tokens.clear()
            self._max_in_flight = self._in_flight
            self._completions = 0
        return self

    def _check(self, config: dict) -> None:
        unknown = set(config) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"Unknown fake server settings: {', '.join(sorted(unknown))}")

    def __getattr__(self, name: str) -> Any:
        if name in DEFAULTS:
            with self.__dict__["_lock"]:
                return self.__dict__["_config"][name]
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in DEFAULTS:
            self.configure(**{name: value})
        else:
            super().__setattr__(name, value)

    # -- recording -------------------------------------------------------------------------

    @property
    def requests(self) -> list[dict]:
        """Recorded requests (a copy): dicts with method, path, headers, json, and when it
        arrived and was answered (``started``, ``finished``: ``time.monotonic()``)."""
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> dict | None:
        with self._lock:
            return self._requests[-1] if self._requests else None

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until at least ``count`` requests arrived; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.request_count >= count:
                return True
            time.sleep(0.01)
        return self.request_count >= count

    def record(self, handler: _Handler, payload: Any) -> dict[str, Any]:
        """Store one request; return the settings that answer it."""
        entry = {
            "method": handler.command,
            "path": handler.path,
            "headers": Headers(handler.headers.items()),
            "json": payload,
            # Vision: each image part that arrived, as {"media_type", "bytes"} (None for a
            # part that is not a base64 data: URL, e.g. a link).
            "images": image_parts(payload),
            # time.monotonic() when the request arrived and when its answer was written (or
            # dropped); None while it is being answered.
            "started": time.monotonic(),
            "finished": None,
        }
        handler._entry = entry
        with self._lock:
            self._requests.append(entry)
            config = dict(self._config)
            if handler.command == "POST" and self._queue:
                config.update(self._queue.popleft())
        return config

    def record_prompt_tokens(self, tokens: int) -> None:
        with self._lock:
            self._prompt_tokens.append(tokens)

    @property
    def prompt_token_counts(self) -> list[int]:
        """Prompt tokens of each request checked against ``context_window``."""
        with self._lock:
            return list(self._prompt_tokens)

    def track_call(self, delta: int, entry: dict | None = None) -> None:
        """Count POST requests being answered (the latency included)."""
        with self._lock:
            if entry is not None:
                entry["finished"] = time.monotonic()
            self._in_flight += delta
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            if delta < 0:
                self._completions += 1

    @property
    def max_in_flight(self) -> int:
        """The most POST requests ever answered at once (since start or reset): what a
        provider's concurrency limit counts. Also served as JSON at ``GET /_fake/stats``."""
        with self._lock:
            return self._max_in_flight

    @property
    def completions(self) -> int:
        """POST requests answered (or dropped) so far."""
        with self._lock:
            return self._completions

    def track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # -- answers ---------------------------------------------------------------------------

    def completion(self, payload: dict, config: dict[str, Any]) -> dict:
        reply: str | Callable[[dict], str] = config["reply"]
        text = reply(payload) if callable(reply) else str(reply)
        json_reply = config["json_reply"]
        schema = json_schema_of(payload)
        if json_reply is not None:
            text = json.dumps(json_reply(payload) if callable(json_reply) else json_reply)
        elif schema is not None:
            text = json.dumps(sample_for_schema(schema))
        if config["translate"]:
            text = json.dumps(translated_segments(payload, config["translate"]), ensure_ascii=False)
        if config["ignore_schema"]:
            text = json.dumps({"answer": text})
        finish_reason = config["finish_reason"]
        if config["answer_tokens"]:
            text = long_text(text, int(config["answer_tokens"]))
        limit = payload.get("max_tokens") or payload.get("max_completion_tokens")
        if config["honour_max_tokens"] and limit:
            text, cut = cut_to_tokens(text, int(int(limit) * float(config["max_tokens_ratio"])))
            if cut:
                finish_reason = "length"
        if config["bad_text"]:
            middle = len(text) // 2
            text = text[:middle] + BAD_TEXT[config["bad_text"]] + text[middle:]
        if config["truncate_json"]:
            text, finish_reason = text[: max(1, len(text) // 2)], "length"
        count = 1 if config["ignore_n"] else min(max(int(payload.get("n") or 1), 1), 10)
        texts = [text]
        for index in range(1, count):
            replies = config["candidate_replies"]
            texts.append(replies[index % len(replies)] if replies else f"{text} ({index + 1})")
        if config["candidate_replies"] and count > 1:
            texts[0] = config["candidate_replies"][0]
        text = "".join(texts)
        choices = []
        if not config["empty_choices"]:
            choices = [
                {
                    "index": index,
                    "message": {"role": "assistant", "content": choice_text},
                    "finish_reason": finish_reason,
                    "logprobs": None,
                }
                for index, choice_text in enumerate(texts)
            ]
        body: dict[str, Any] = {
            "id": f"chatcmpl-fake-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": config["model_name"] or payload.get("model") or "test-model",
            "choices": choices,
            "system_fingerprint": None,
        }
        usage = config["usage"]
        if usage is None:
            prompt = sum(
                approx_tokens(_message_text(m))
                for m in payload.get("messages") or []
                if isinstance(m, dict)
            )
            completion = approx_tokens(text)
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
        if usage is not False:
            body["usage"] = usage
        return body

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL to pass as ``api_base``, e.g. ``http://127.0.0.1:PORT/v1`` (kept after stop)."""
        if not self.port:
            raise RuntimeError("The fake server has not been started.")
        return f"http://{HOST}:{self.port}/v1"

    def start(self) -> FakeLLMServer:
        if self._httpd is not None:
            return self
        self.stopping.clear()
        httpd = _HTTPServer((HOST, self.port), _Handler)
        httpd.fake = self
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FakeLLMServer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop open connections; safe to call twice."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self.stopping.set()
        self.streams_released.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def stream_events(body: dict, payload: dict) -> list[tuple[str, bool]]:
    """The server-sent events streaming ``body`` (a completion) as OpenAI does, each with
    whether it carries answer text: a role chunk, a chunk a word, the finish reason, the
    usage when ``stream_options.include_usage`` asks for it, then ``[DONE]``."""
    base = {k: body[k] for k in ("id", "created", "model", "system_fingerprint")}
    base["object"] = "chat.completion.chunk"

    def chunk(delta: dict, finish: str | None = None, index: int = 0) -> str:
        choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
        return json.dumps({**base, "choices": [choice]})

    events: list[tuple[str, bool]] = []
    for choice in body["choices"]:
        index = choice["index"]
        events.append((chunk({"role": "assistant", "content": ""}, index=index), False))
        text = choice["message"]["content"] or ""
        words = re.findall(r"\S+\s*|\s+", text)
        start = 0
        for size in itertools.cycle((1, 2, 3)):  # not the same chunk 100 times over:
            if start >= len(words):  # LiteLLM takes that for a model stuck in a loop
                break
            piece = "".join(words[start : start + size])
            events.append((chunk({"content": piece}, index=index), True))
            start += size
        events.append((chunk({}, choice["finish_reason"], index=index), False))
    options = payload.get("stream_options") or {}
    if isinstance(options, dict) and options.get("include_usage") and "usage" in body:
        events.append((json.dumps({**base, "choices": [], "usage": body["usage"]}), False))
    events.append(("[DONE]", False))
    return events


def json_schema_of(payload: dict) -> dict | None:
    """The JSON schema a request's ``response_format`` asks for, if any."""
    fmt = payload.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        return spec.get("schema") if isinstance(spec, dict) else None
    return None


def sample_for_schema(schema: dict, name: str = "value") -> Any:
    """A value that satisfies a simple JSON schema (objects, arrays, strings)."""
    kind = schema.get("type")
    if kind == "object":
        return {
            key: sample_for_schema(sub, key)
            for key, sub in (schema.get("properties") or {}).items()
        }
    if kind == "array":
        return [sample_for_schema(schema.get("items") or {}, f"{name} {i}") for i in (1, 2)]
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    text = f"Sample {name} from the fake model."
    limit = schema.get("maxLength")
    return text[:limit] if limit else text


def unused_port() -> int:
    """A local port nothing listens on (for "connection refused" tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the fake OpenAI-compatible server.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    parser.add_argument("--reply", default=DEFAULTS["reply"])
    parser.add_argument("--echo", action="store_true", help="reply with the last user message")
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--stream-delay", type=float, default=0.0, help="seconds per chunk")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    server = FakeLLMServer(
        args.port,
        verbose=args.verbose,
        reply=last_user_message if args.echo else args.reply,
        latency=args.latency,
        status=args.status,
        stream_delay=args.stream_delay,
    )
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    server.start()
    print(f"Fake LLM server listening on {server.url}", flush=True)
    try:
        while not done.wait(1.0):
            pass
    finally:
        server.stop()
        print("Fake LLM server stopped", flush=True)


if __name__ == "__main__":
    main()
