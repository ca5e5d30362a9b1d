"""An OpenAI-compatible HTTP server with stateful conversations (Starlette).

    POST /v1/chat/completions   JSON or SSE (``stream: true``), the OpenAI wire format
    POST /v1/tokenize           token ids and count of a text or a message list
    POST /v1/tokenize/count     the count only
    GET  /v1/models             the one model this server runs
    /v1/responses…              the Responses API: create (JSON or SSE), get, delete
                                (``_responses``)
    GET  /openapi.json          the OpenAPI 3.1 document of these routes (``_openapi``)
    /v1/conversations…          create, list, get, rename, delete, fork; messages, pin, forget;
                                the last turn's context (``_conversations``); items, as the
                                openai SDK's Conversations API reads them (``_items``)

Stateless by default: the client's messages are the history (untrusted: roles, content and
sizes are checked) and memchat's strategy trims them to the budget. Stateful when the request
names a conversation (header ``X-Memchat-Conversation`` or body field ``conversation``): the
server keeps the history, the client sends only the new user message, and memory (trimming,
summary, recall) applies. ``conversation: "new"`` starts one with an id the server picks; an id
that does not exist yet is created on first use (``_conversations``); the id comes back
in the same header. Each turn is built from the stored conversation as it is now, and turns of
one conversation are serialised across worker processes too (``_sessions``).

Request parameters are honoured or refused as ``_request`` lists (never silently
dropped); the limits of one request are ``ServerLimits`` (``_request``). Turns run
concurrently, each on its own worker thread (``_turn``); one conversation runs one turn
at a time, and a second request for it meanwhile is a 409 (``_sessions``). Only the
embedded model serialises, on its own lock, because it decodes one reply at a time.

Keys (``_auth``): with any key in the store or in ``keys``, requests need
``Authorization: Bearer <key>``, and each key sees only its own conversations. Every error is
OpenAI-shaped JSON (``_errors``) with every known secret scrubbed (``_auth``).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ...core.errors import ConfigError, MemchatError
from ...core.messages import Message
from ...core.session import ChatSession
from ...core.store import Store
from ...core.tokens import TokenCounter, prompt_tokens
from ...tokenizers import token_ids
from ._auth import Auth, Scrubber
from ._conversations import Conversations, ConversationsApi
from ._errors import ApiError, error_response
from ._openapi import openapi
from ._request import ChatRequest, ServerLimits, parse_chat, parse_tokenize, read_json
from ._responses import get_or_delete, open_turn, parse_responses
from ._sessions import Hold, Sessions
from ._turn import Turn

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
        auth: Auth,
        limits: ServerLimits,
        scrub: Scrubber,
    ) -> None:
        self.make_session = make_session
        self.store = store
        self.model = model
        self.auth = auth
        self.limits = limits
        self.scrub = scrub
        self.sessions = Sessions(
            lambda cid: make_session(store, cid, []), limits.max_idle_sessions, store=store
        )
        self.conversations = Conversations(store) if store is not None else None
        self._limiter: anyio.CapacityLimiter | None = None
        self._counter: TokenCounter | None = None
        self._counter_lock = threading.Lock()

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        """Worker threads for turns (made in the event loop, on first use)."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.limits.max_concurrent_turns)
        return self._limiter

    async def owner(self, request: Request) -> str:
        """The caller's owner id ("" on an open server); ApiError 401 for a bad key."""
        header = request.headers.get("authorization", "")
        owner = self.auth.quick(header)
        return owner if owner is not None else await run_in_threadpool(self.auth.lookup, header)

    def open(
        self, owner: str, chat: ChatRequest, header: str | None
    ) -> tuple[ChatSession, Hold, str | None]:
        """The request's session, its hold on it and the conversation's id (blocking: it may
        read the store, or wait for the conversation's last upkeep)."""
        name = header or chat.conversation
        if not name:
            return self.make_session(None, None, chat.messages[:-1]), Hold(), None
        if self.conversations is None:
            raise ConfigError("this server has no store; stateful conversations are off")
        title = " ".join(chat.messages[-1].content.split())[:60]
        if name == "new":
            info = self.conversations.create(owner, None, title)
        else:
            info = self.conversations.ensure(owner, name, title)
        session, hold = self.sessions.hold(info.id, info)
        try:
            system = [m for m in chat.messages[:-1] if m.role == "system"]
            if system:
                session.set_system(system[-1].content)
        except BaseException:
            hold.release()
            raise
        return session, hold, name if name != "new" else _api_id(owner, info.id)

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


def _api_id(owner: str, store_id: str) -> str:
    prefix = f"{owner}/"
    return store_id[len(prefix) :] if owner and store_id.startswith(prefix) else store_id


async def _guarded(
    server: _Server, request: Request, handler: Callable[[Request, str], Awaitable[Response]]
) -> Response:
    """Authenticate, run the handler, and turn errors into OpenAI-shaped errors."""
    try:
        owner = await server.owner(request)
        return await handler(request, owner)
    except (ApiError, MemchatError) as exc:
        return error_response(exc, server.scrub)


async def _chat(server: _Server, request: Request, owner: str) -> Response:
    chat = parse_chat(await read_json(request, server.limits), server.limits)
    header = request.headers.get(HEADER)
    # not on the turn limiter: opening may wait for the last upkeep, which needs a turn slot
    session, hold, cid = await run_in_threadpool(server.open, owner, chat, header)
    headers = {HEADER: cid} if cid else {}
    return Turn(session, chat, model=server.model, limiter=server.limiter, hold=hold,
                headers=headers, store=server.store, scrub=server.scrub)  # fmt: skip


async def _responses(server: _Server, request: Request, owner: str) -> Response:
    req = parse_responses(await read_json(request, server.limits), server.limits)
    return await run_in_threadpool(open_turn, server, owner, req)


async def _response(server: _Server, request: Request, owner: str) -> Response:
    return await get_or_delete(server.store, request, owner)


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


async def _no_store(request: Request, owner: str) -> Response:
    raise ConfigError("this server has no store; conversations are off")


def build_server(
    make_session: SessionFactory,
    *,
    store: Store | None = None,
    model: str = "memchat",
    keys: frozenset[str] = frozenset(),
    auth: Auth | None = None,
    limits: ServerLimits | None = None,
    secrets: Iterable[str | None] = (),
    on_close: Callable[[], None] | None = None,
) -> Starlette:
    """The ASGI app. ``make_session(store, conversation_id, history)`` builds a ChatSession;
    given a store and an id it must resume that stored conversation. ``auth`` decides who may
    ask (default: only ``keys``, if any); ``secrets`` are scrubbed from every error (the
    provider's key; ``keys`` are added); ``on_close`` runs at shutdown. ``limits`` default to
    ``ServerLimits()``."""
    limits = limits or ServerLimits()
    scrub = Scrubber([*secrets, *keys])
    server = _Server(make_session, store, model, auth or Auth(static=keys), limits, scrub)

    def route(path: str, handler: Handler, methods: list[str]) -> Route:
        async def bound(request: Request, owner: str) -> Response:
            return await handler(server, request, owner)

        return guarded(path, bound, methods)

    def guarded(
        path: str, handler: Callable[[Request, str], Awaitable[Response]], methods: list[str]
    ) -> Route:
        async def endpoint(request: Request) -> Response:
            return await _guarded(server, request, handler)

        return Route(path, endpoint, methods=methods)

    routes = [
        route("/v1/chat/completions", _chat, ["POST"]),
        route("/v1/tokenize", _tokenize, ["POST"]),
        route("/v1/tokenize/count", _tokenize, ["POST"]),
        route("/v1/models", _models, ["GET"]),
        route("/v1/responses", _responses, ["POST"]),
        route("/v1/responses/{rid}", _response, ["GET", "DELETE"]),
    ]
    if server.conversations is not None:
        api = ConversationsApi(server.conversations, server.sessions, limits)
        routes += [guarded(path, handler, methods) for path, methods, handler in api.routes()]
    else:
        every = ["GET", "POST", "PATCH", "DELETE"]
        routes.append(guarded("/v1/conversations{rest:path}", _no_store, every))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if on_close is not None:
                on_close()

    document = openapi(model, conversations=server.conversations is not None)

    async def schema(request: Request) -> Response:
        return JSONResponse(document)

    routes.append(Route("/openapi.json", schema, methods=["GET"]))
    return Starlette(routes=routes, lifespan=lifespan)
