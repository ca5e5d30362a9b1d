"""A real OpenAI-compatible HTTP server on 127.0.0.1 (random port, own thread) for tests.

It speaks the wire format the openai SDK reads (JSON, SSE ``data:`` events in chunked encoding,
a final usage chunk with empty ``choices``, ``data: [DONE]``), so backends are tested through the
SDK's real HTTP, retry and streaming code. ``with OpenAIStub() as stub: stub.enqueue(status(429),
ok("hi"))``; ``stub.requests`` records what arrived; an empty queue answers ``stub.default``.
``stub.max_in_flight`` is the most chat requests it was answering at once (concurrency tests).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["OpenAIStub", "Recorded", "Scripted", "context_length_exceeded", "cut_mid_stream",
           "drop", "events", "ok", "status", "unauthorized"]  # fmt: skip


@dataclass(frozen=True)
class Scripted:
    """One scripted answer; build it with the functions below."""

    kind: str  # ok | status | cut | drop | events
    text: str = ""
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    chunk_size: int = 4
    after: int = 0
    delay: float = 0.0
    usage: tuple[int | None, int | None, int] = (None, None, 0)
    finish_reason: str = "stop"
    latency: float = 0.0


@dataclass
class Recorded:
    """A request the stub received; ``aborted`` is set when the client hung up mid-reply;
    ``peer`` is the client's (host, port): one port for two requests means one connection."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    aborted: bool = False
    peer: tuple[str, int] | None = None


def ok(text: str = "ok", *, chunk_size: int = 4, prompt_tokens: int | None = None,
       completion_tokens: int | None = None, cached_tokens: int = 0, finish_reason: str = "stop",
       delay: float = 0.0, latency: float = 0.0) -> Scripted:  # fmt: skip
    """A normal reply, streamed in ``chunk_size``-character pieces, ``delay`` s apart, after
    ``latency`` s of silence (a model reading the prompt)."""
    return Scripted("ok", text, chunk_size=chunk_size, delay=delay, finish_reason=finish_reason,
                    usage=(prompt_tokens, completion_tokens, cached_tokens),
                    latency=latency)  # fmt: skip


def status(code: int, *, headers: Mapping[str, str] | None = None, body: Any = None,
           message: str = "") -> Scripted:  # fmt: skip
    """An error status with an OpenAI-shaped error body (or ``body`` as given)."""
    body = _error(message or HTTPStatus(code).phrase, "server_error") if body is None else body
    return Scripted("status", status=code, headers=dict(headers or {}), body=body)


def context_length_exceeded(limit: int = 128000, asked: int = 130517) -> Scripted:
    """The 400 OpenAI returns when the prompt does not fit the model's context."""
    message = (
        f"This model's maximum context length is {limit} tokens. However, your messages "
        f"resulted in {asked} tokens. Please reduce the length of the messages."
    )
    return status(400, body=_error(message, param="messages", code="context_length_exceeded"))


def unauthorized() -> Scripted:
    """The 401 OpenAI returns for a wrong API key."""
    message = "Incorrect API key provided: sk-***. You can find your API key in your settings."
    return status(401, body=_error(message, code="invalid_api_key"))


def _error(message: str, kind: str = "invalid_request_error", param: str | None = None,
           code: str | None = None) -> dict[str, Any]:  # fmt: skip
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def cut_mid_stream(after_n_chunks: int, text: str = "a reply that is cut short") -> Scripted:
    """Stream ``after_n_chunks`` content chunks, then shut the socket down mid-body."""
    return Scripted("cut", text, after=after_n_chunks)


def drop(after: float = 0.0) -> Scripted:
    """Send nothing for ``after`` seconds (past a read timeout, say), then hang up."""
    return Scripted("drop", delay=after)


def events(*payloads: Any, done: bool = True) -> Scripted:
    """Raw SSE ``data:`` payloads (dicts or strings), then ``[DONE]`` unless ``done=False``."""
    return Scripted("events", body=payloads, after=int(done))


class OpenAIStub:
    """The server, bound at construction, serving inside ``with``; ``url`` ends in ``/v1``."""

    def __init__(self, models: tuple[str, ...] = ("stub-model",)) -> None:
        self.models = models
        self.default = ok("ok")
        self.queue: deque[Scripted] = deque()
        self.requests: list[Recorded] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.stub = self

    def enqueue(self, *responses: Scripted) -> None:
        self.queue.extend(responses)

    @property
    def chat_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> OpenAIStub:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # concurrency tests open dozens of connections at once
    block_on_close = False  # idle keep-alive connections must not block stop()
    stub: OpenAIStub

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client hanging up is normal
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._record(None)
        if not self.path.rstrip("/").endswith("/models"):
            return self._json(404, status(404).body)
        models = [{"id": m, "object": "model", "created": 0, "owned_by": "stub"}
                  for m in self.server.stub.models]  # fmt: skip
        self._json(200, {"object": "list", "data": models})

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        rec = self._record(json.loads(raw or b"null"))
        if not self.path.endswith("/chat/completions"):
            return self._json(404, status(404).body)
        stub = self.server.stub
        with stub.lock:
            stub.in_flight += 1
            stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
            scripted = stub.queue.popleft() if stub.queue else stub.default
        try:
            time.sleep(scripted.latency)
            self._answer(scripted, rec.body or {})
        except (BrokenPipeError, ConnectionResetError):
            rec.aborted = True
            self.close_connection = True
        finally:
            with stub.lock:
                stub.in_flight -= 1

    def _record(self, body: Any) -> Recorded:
        headers = {k.lower(): v for k, v in self.headers.items()}
        rec = Recorded(self.command, self.path, headers, body, peer=self.client_address[:2])
        self.server.stub.requests.append(rec)
        return rec

    def _answer(self, r: Scripted, body: dict[str, Any]) -> None:
        if r.kind == "status":
            return self._json(r.status, r.body, r.headers)
        if r.kind == "drop":
            time.sleep(r.delay)
            return self._hang_up()
        model = body.get("model", "stub-model")
        if not body.get("stream"):
            message = {"role": "assistant", "content": r.text}
            choice = {"index": 0, "message": message, "finish_reason": r.finish_reason}
            return self._json(200, _completion(model, "chat.completion", [choice], _usage(r, body)))
        self._sse(_events(r, model, body), r)

    def _sse(self, payloads: list[Any], r: Scripted) -> None:
        self._head(200, {"content-type": "text/event-stream", "transfer-encoding": "chunked"})
        for n, payload in enumerate(payloads):
            if r.kind == "cut" and n == r.after + 1:  # +1: the role chunk comes first
                return self._hang_up()
            data = payload if isinstance(payload, str) else json.dumps(payload)
            event = f"data: {data}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            time.sleep(r.delay)
        self.wfile.write(b"0\r\n\r\n")

    def _json(self, code: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self._head(code, {"content-type": "application/json", "content-length": str(len(data)),
                          **(headers or {})})  # fmt: skip
        self.wfile.write(data)

    def _head(self, code: int, headers: Mapping[str, str]) -> None:
        self.send_response(code)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _hang_up(self) -> None:
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)


def _events(r: Scripted, model: str, body: dict[str, Any]) -> list[Any]:
    if r.kind == "events":
        return [*r.body, "[DONE]"][: len(r.body) + r.after]
    step, kind = max(1, r.chunk_size), "chat.completion.chunk"
    pieces = [{"content": r.text[i : i + step]} for i in range(0, len(r.text), step)]
    deltas = [{"role": "assistant", "content": ""}, *pieces]
    out = [_completion(model, kind, [_choice(delta)]) for delta in deltas]
    out.append(_completion(model, kind, [_choice({}, r.finish_reason)]))
    if (body.get("stream_options") or {}).get("include_usage"):
        out.append(_completion(model, kind, [], _usage(r, body)))
    return [*out, "[DONE]"]


def _choice(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}


def _completion(model: str, obj: str, choices: list[Any], usage: Any = None) -> dict[str, Any]:
    return {"id": "chatcmpl-stub", "object": obj, "created": 0, "model": model,
            "choices": choices, "usage": usage}  # fmt: skip


def _usage(r: Scripted, body: dict[str, Any]) -> dict[str, Any]:
    prompt, completion, cached = r.usage
    prompt = len(json.dumps(body.get("messages"))) // 4 if prompt is None else prompt  # rough
    completion = -(-len(r.text) // max(1, r.chunk_size)) if completion is None else completion
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0}}  # fmt: skip
