"""An OpenAI-compatible HTTP server with stateful conversations (Starlette).

    POST /v1/chat/completions   JSON or SSE (``stream: true``), the OpenAI wire format
    POST /v1/tokenize           token ids and count of a text or a message list
    POST /v1/tokenize/count     the count only
    GET  /v1/models             the one model this server runs
    GET  /v1/conversations      this caller's stored conversations
    GET  /v1/conversations/{id} one conversation's messages
    DELETE /v1/conversations/{id}

Stateless by default: the client's messages are the history (untrusted: roles, content and
sizes are checked) and memchat's strategy trims them to the budget. Stateful when the request
names a conversation (header ``X-Memchat-Conversation`` or body field ``conversation``): the
server keeps the history, the client sends only the new user message, and memory (trimming,
summary, recall) applies. ``conversation: "new"`` starts one; its id comes back in the same
header.

Request parameters are honoured or refused as ``_server_params`` lists (never silently
dropped); the limits of one request are ``ServerLimits`` (``_server_body``). Turns run
concurrently, each on its own worker thread (``_server_turn``); one conversation runs one turn
at a time, and a second request for it meanwhile is a 409 (``_server_sessions``). Only the
embedded model serialises, on its own lock, because it decodes one reply at a time.

With ``keys`` set, requests need ``Authorization: Bearer <key>``, and each key sees only its own
conversations. Every error is OpenAI-shaped JSON (``_server_errors``).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..core.errors import ConfigError, MemchatError, NotFound
from ..core.messages import Message
from ..core.session import ChatSession
from ..core.store import Store
from ..core.tokens import TokenCounter, prompt_tokens
from ..tokenizers import token_ids
from ._server_body import ServerLimits, read_json
from ._server_errors import ApiError, error_response
from ._server_params import ChatRequest, parse_chat, parse_tokenize
from ._server_sessions import Hold, Sessions
from ._server_turn import Turn

__all__ = ["HEADER", "ServerLimits", "build_server"]

HEADER = "X-Memchat-Conversation"
SessionFactory = Callable[[Store | None, str | None, list[Message]], ChatSession]


class _Server:
    """The app's state: the session factory, the store, the sessions and the turn limiter."""

    def __init__(
        self,
        make_session: SessionFactory,
        store: Store | None,
        model: str,
        keys: frozenset[str],
        limits: ServerLimits,
    ) -> None:
        self.make_session = make_session
        self.store = store
        self.model = model
        self.keys = keys
        self.limits = limits
        self.sessions = Sessions(lambda cid: make_session(store, cid, []), limits.max_idle_sessions)
        self._limiter: anyio.CapacityLimiter | None = None
        self._counter: TokenCounter | None = None
        self._counter_lock = threading.Lock()

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        """Worker threads for turns (made in the event loop, on first use)."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.limits.max_concurrent_turns)
        return self._limiter

    def owner(self, request: Request) -> str:
        if not self.keys:
            return ""
        auth = request.headers.get("authorization", "")
        key = auth.removeprefix("Bearer ").strip()
        if key not in self.keys:
            raise ApiError(401, "missing or invalid API key", "invalid_api_key")
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def open(self, owner: str, chat: ChatRequest, header: str | None) -> tuple[ChatSession, Hold]:
        """The request's session and its hold on it (blocking: it may read the store, or wait
        for the conversation's last upkeep)."""
        name = header or chat.conversation
        if not name:
            return self.make_session(None, None, chat.messages[:-1]), Hold()
        if self.store is None:
            raise ConfigError("this server has no store; stateful conversations are off")
        if name == "new":
            info = self.store.create_conversation(chat.messages[-1].content[:60], owner=owner)
        else:
            info = self.store.find_conversation(name, owner=owner)
        session, hold = self.sessions.hold(info.id)
        try:
            system = [m for m in chat.messages[:-1] if m.role == "system"]
            if system:
                session.set_system(system[-1].content)
        except BaseException:
            hold.release()
            raise
        return session, hold

    def counter(self) -> TokenCounter:
        """The counter sessions count with (a session's own, so counts always agree)."""
        with self._counter_lock:
            if self._counter is None:
                self._counter = self.make_session(None, None, []).counter
            return self._counter

    def tokenize(
        self, text: str | None, messages: list[Message] | None, count_only: bool
    ) -> dict[str, Any]:
        counter = self.counter()
        texts = [text] if text is not None else [m.content for m in messages or []]
        count = counter.count(texts[0]) if messages is None else prompt_tokens(messages, counter)
        if count_only:
            return {"model": self.model, "count": count}
        ids: list[int] | None = []
        for piece in texts:
            more = token_ids(counter, piece)
            ids = None if more is None or ids is None else [*ids, *more]
        return {
            "model": self.model,
            "count": count,
            "tokens": ids,
            "per_message": counter.per_message,
            "per_reply": counter.per_reply,
            "exact": counter.exact,
        }


Handler = Callable[[_Server, Request, str], Awaitable[Response]]


async def _guarded(server: _Server, request: Request, handler: Handler) -> Response:
    """Authenticate, run the handler, and turn errors into OpenAI-shaped errors."""
    try:
        owner = server.owner(request)
        return await handler(server, request, owner)
    except (ApiError, MemchatError) as exc:
        return error_response(exc)


async def _chat(server: _Server, request: Request, owner: str) -> Response:
    chat = parse_chat(await read_json(request, server.limits), server.limits)
    header = request.headers.get(HEADER)
    # not on the turn limiter: opening may wait for the last upkeep, which needs a turn slot
    session, hold = await run_in_threadpool(server.open, owner, chat, header)
    headers = {HEADER: session.conversation_id} if session.conversation_id else {}
    return Turn(session, chat, model=server.model, limiter=server.limiter, hold=hold,
                headers=headers)  # fmt: skip


async def _tokenize(server: _Server, request: Request, owner: str) -> Response:
    """``{"text": …}`` or ``{"messages": […]}`` → ``{"model", "count", "tokens", "per_message",
    "per_reply", "exact"}``.

    For messages, ``count`` is what a session counts for them as a prompt: each content, plus
    ``per_message`` per message, plus ``per_reply`` once; ``tokens`` are the contents' ids in
    order (the chat format's own tokens are not in it). ``tokens`` is null when the counter has
    no ids (an estimate, ``exact: false``).
    """
    body = await read_json(request, server.limits)
    text, messages = parse_tokenize(body, server.limits, server.model)
    count_only = request.url.path.endswith("/count")
    return JSONResponse(await run_in_threadpool(server.tokenize, text, messages, count_only))


async def _models(server: _Server, request: Request, owner: str) -> Response:
    item = {"id": server.model, "object": "model", "created": 0, "owned_by": "memchat"}
    return JSONResponse({"object": "list", "data": [item]})


def _store(server: _Server) -> Store:
    if server.store is None:
        raise ConfigError("this server has no store")
    return server.store


async def _conversations(server: _Server, request: Request, owner: str) -> Response:
    def items() -> list[dict[str, Any]]:
        return [
            {
                "id": c.id,
                "title": c.title,
                "updated_at": c.updated_at,
                "messages": c.message_count,
                "tokens": c.total_tokens,
            }
            for c in _store(server).list_conversations(owner=owner)
        ]

    return JSONResponse({"object": "list", "data": await run_in_threadpool(items)})


async def _conversation(server: _Server, request: Request, owner: str) -> Response:
    def answer() -> dict[str, Any]:
        store = _store(server)
        info = store.find_conversation(request.path_params["cid"], owner=owner)
        if info.owner != owner:
            raise NotFound(f"no conversation named {request.path_params['cid']!r}")
        if request.method == "DELETE":
            server.sessions.forget(info.id)
            store.delete_conversation(info.id)
            return {"id": info.id, "deleted": True}
        msgs = [m.to_dict() for m in store.load(info.id)]
        return {"id": info.id, "title": info.title, "messages": msgs}

    return JSONResponse(await run_in_threadpool(answer))


def build_server(
    make_session: SessionFactory,
    *,
    store: Store | None = None,
    model: str = "memchat",
    keys: frozenset[str] = frozenset(),
    limits: ServerLimits | None = None,
) -> Starlette:
    """The ASGI app. ``make_session(store, conversation_id, history)`` builds a ChatSession;
    given a store and an id it must resume that stored conversation. ``limits`` default to
    ``ServerLimits()``."""
    server = _Server(make_session, store, model, keys, limits or ServerLimits())

    def route(path: str, handler: Handler, methods: list[str]) -> Route:
        async def endpoint(request: Request) -> Response:
            return await _guarded(server, request, handler)

        return Route(path, endpoint, methods=methods)

    return Starlette(
        routes=[
            route("/v1/chat/completions", _chat, ["POST"]),
            route("/v1/tokenize", _tokenize, ["POST"]),
            route("/v1/tokenize/count", _tokenize, ["POST"]),
            route("/v1/models", _models, ["GET"]),
            route("/v1/conversations", _conversations, ["GET"]),
            route("/v1/conversations/{cid}", _conversation, ["GET", "DELETE"]),
        ]
    )
