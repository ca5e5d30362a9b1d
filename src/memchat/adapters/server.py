"""An OpenAI-compatible HTTP server with stateful conversations (Starlette).

    POST /v1/chat/completions   JSON or SSE (``stream: true``), the OpenAI wire format
    GET  /v1/models             the one model this server runs
    GET  /v1/conversations      this caller's stored conversations
    GET  /v1/conversations/{id} one conversation's messages
    DELETE /v1/conversations/{id}

Stateless by default: the client's messages are the history (untrusted: roles and content are
checked) and memchat's strategy trims them to the budget. Stateful when the request names a
conversation (header ``X-Memchat-Conversation`` or body field ``conversation``): the server keeps
the history, the client sends only the new user message, and memory (trimming, summary, recall)
applies. ``conversation: "new"`` starts one; its id comes back in the same header.

With ``keys`` set, requests need ``Authorization: Bearer <key>``, and each key sees only its own
conversations. memchat errors map to OpenAI-shaped error JSON with the matching HTTP status.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..core.errors import (
    AuthError,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    ContextTooLong,
    InputError,
    MemchatError,
    NotFound,
    RateLimited,
    UsageError,
)
from ..core.messages import Message
from ..core.session import ChatSession, Reply
from ..core.store import Store

__all__ = ["HEADER", "build_server"]

HEADER = "X-Memchat-Conversation"
SessionFactory = Callable[[Store | None, str | None, list[Message]], ChatSession]


def _status(exc: MemchatError) -> tuple[int, str]:
    table: list[tuple[type[MemchatError], int, str]] = [
        (RateLimited, 429, "rate_limit_exceeded"),
        (ContextTooLong, 400, "context_length_exceeded"),
        (AuthError, 502, "upstream_auth_error"),
        (BackendTimeout, 504, "timeout"),
        (BackendUnavailable, 502, "upstream_unavailable"),
        (NotFound, 404, "not_found"),
        (UsageError, 400, "invalid_request_error"),
        (ConfigError, 500, "server_config_error"),
    ]
    for cls, status, code in table:
        if isinstance(exc, cls):
            return status, code
    return 502, "backend_error"


def error_response(exc: MemchatError) -> JSONResponse:
    status, code = _status(exc)
    body = {"error": {"message": str(exc), "type": code, "code": code, "param": None}}
    return JSONResponse(body, status_code=status)


def _parse_messages(raw: Any) -> list[Message]:
    if not isinstance(raw, list) or not raw:
        raise InputError("'messages' must be a non-empty array")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InputError(f"messages[{i}] must be an object")
        role = "system" if item.get("role") == "developer" else item.get("role")
        content = item.get("content")
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        try:
            out.append(Message.from_dict({"role": role, "content": content}))
        except InputError as exc:
            raise InputError(f"messages[{i}]: {exc}") from None
    if out[-1].role != "user":
        raise InputError("the last message must be from the user")
    return out


class _Server:
    """The conversation registry: one session per (owner, conversation), one turn at a time."""

    def __init__(
        self, make_session: SessionFactory, store: Store | None, model: str, keys: frozenset[str]
    ) -> None:
        self.make_session = make_session
        self.store = store
        self.model = model
        self.keys = keys
        self.sessions: dict[str, ChatSession] = {}
        self.lock = threading.Lock()  # one model, one turn at a time

    def owner(self, request: Request) -> str:
        if not self.keys:
            return ""
        auth = request.headers.get("authorization", "")
        key = auth.removeprefix("Bearer ").strip()
        if key not in self.keys:
            raise _Unauthorized()
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def session_for(
        self, owner: str, body: dict[str, Any], request: Request, messages: list[Message]
    ) -> ChatSession:
        name = request.headers.get(HEADER) or body.get("conversation")
        if not name:
            return self.make_session(None, None, messages[:-1])
        if self.store is None:
            raise ConfigError("this server has no store; stateful conversations are off")
        if name == "new":
            info = self.store.create_conversation(messages[-1].content[:60], owner=owner)
        else:
            info = self.store.find_conversation(str(name), owner=owner)
        if info.id not in self.sessions:
            self.sessions[info.id] = self.make_session(self.store, info.id, [])
        session = self.sessions[info.id]
        system = [m for m in messages[:-1] if m.role == "system"]
        if system:
            session.set_system(system[-1].content)
        return session


class _Unauthorized(Exception):
    pass


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def _usage_json(reply: Reply) -> dict[str, Any] | None:
    u = reply.usage
    if u is None:
        return None
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    }


def _sse(obj: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


def _stream_body(server: _Server, reply: Reply, cid: str, include_usage: bool) -> Iterator[bytes]:
    created = int(time.time())
    base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": server.model}
    with server.lock:
        try:
            yield _sse(
                {
                    **base,
                    "choices": [
                        {"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}
                    ],
                }
            )
            for chunk in reply:
                yield _sse(
                    {
                        **base,
                        "choices": [
                            {"index": 0, "delta": {"content": chunk}, "finish_reason": None}
                        ],
                    }
                )
        except MemchatError as exc:
            status, code = _status(exc)
            yield _sse({"error": {"message": str(exc), "type": code, "code": status}})
            return
        finally:
            reply.close()
    yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if include_usage:
        yield _sse({**base, "choices": [], "usage": _usage_json(reply)})
    yield b"data: [DONE]\n\n"


def _complete(server: _Server, session: ChatSession, text: str) -> dict[str, Any]:
    with server.lock:
        reply = session.send(text)
        content = "".join(reply)  # its memory upkeep runs after the response (_upkeep)
    return {
        "id": _completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": server.model,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": content},
            }
        ],
        "usage": _usage_json(reply),
    }


Handler = Callable[[_Server, Request, str], Awaitable[Response]]


async def _guarded(server: _Server, request: Request, handler: Handler) -> Response:
    """Authenticate, run the handler, and turn memchat errors into OpenAI-shaped errors."""
    try:
        owner = server.owner(request)
        return await handler(server, request, owner)
    except _Unauthorized:
        body = {
            "error": {
                "message": "missing or invalid API key",
                "type": "invalid_api_key",
                "code": "invalid_api_key",
                "param": None,
            }
        }
        return JSONResponse(body, status_code=401)
    except MemchatError as exc:
        return error_response(exc)


async def _chat(server: _Server, request: Request, owner: str) -> Response:
    try:
        body = await request.json()
    except ValueError:
        raise InputError("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InputError("the request body must be a JSON object")
    messages = _parse_messages(body.get("messages"))
    session = server.session_for(owner, body, request, messages)
    headers = {HEADER: session.conversation_id} if session.conversation_id else {}
    text = messages[-1].content
    if body.get("stream"):
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        reply = session.send(text)  # validates now, so bad input is a 400, not a broken stream
        gen = _stream_body(server, reply, _completion_id(), include)
        return StreamingResponse(gen, media_type="text/event-stream", headers=headers,
                                 background=_upkeep(server, session))  # fmt: skip
    from starlette.concurrency import run_in_threadpool

    result = await run_in_threadpool(_complete, server, session, text)
    return JSONResponse(result, headers=headers, background=_upkeep(server, session))


def _upkeep(server: _Server, session: ChatSession) -> Any:
    """The turn's memory upkeep (a summary fold can take seconds), once the client has its
    answer; under the server's lock, like the turns."""
    from starlette.background import BackgroundTask

    def run() -> None:
        with server.lock:
            session.upkeep()  # its notices are logged

    return BackgroundTask(run)


async def _models(server: _Server, request: Request, owner: str) -> Response:
    item = {"id": server.model, "object": "model", "created": 0, "owned_by": "memchat"}
    return JSONResponse({"object": "list", "data": [item]})


async def _conversations(server: _Server, request: Request, owner: str) -> Response:
    if server.store is None:
        raise ConfigError("this server has no store")
    items = [
        {
            "id": c.id,
            "title": c.title,
            "updated_at": c.updated_at,
            "messages": c.message_count,
            "tokens": c.total_tokens,
        }
        for c in server.store.list_conversations(owner=owner)
    ]
    return JSONResponse({"object": "list", "data": items})


async def _conversation(server: _Server, request: Request, owner: str) -> Response:
    if server.store is None:
        raise ConfigError("this server has no store")
    info = server.store.find_conversation(request.path_params["cid"], owner=owner)
    if info.owner != owner:
        raise NotFound(f"no conversation named {request.path_params['cid']!r}")
    if request.method == "DELETE":
        server.store.delete_conversation(info.id)
        server.sessions.pop(info.id, None)
        return JSONResponse({"id": info.id, "deleted": True})
    msgs = [m.to_dict() for m in server.store.load(info.id)]
    return JSONResponse({"id": info.id, "title": info.title, "messages": msgs})


def build_server(
    make_session: SessionFactory,
    *,
    store: Store | None = None,
    model: str = "memchat",
    keys: frozenset[str] = frozenset(),
) -> Starlette:
    """The ASGI app. ``make_session(store, conversation_id, history)`` builds a ChatSession."""
    server = _Server(make_session, store, model, keys)

    def route(path: str, handler: Handler, methods: list[str]) -> Route:
        async def endpoint(request: Request) -> Response:
            return await _guarded(server, request, handler)

        return Route(path, endpoint, methods=methods)

    return Starlette(
        routes=[
            route("/v1/chat/completions", _chat, ["POST"]),
            route("/v1/models", _models, ["GET"]),
            route("/v1/conversations", _conversations, ["GET"]),
            route("/v1/conversations/{cid}", _conversation, ["GET", "DELETE"]),
        ]
    )
