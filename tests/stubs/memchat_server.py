"""memchat's HTTP server on a real uvicorn on 127.0.0.1 (a free port, its own thread) for tests.

``with Running(backend) as r: r.client().chat.completions.create(...)``: the clients are the
official openai SDK's (sync and async). ``store_keys=True`` makes the server take API keys from
its (in-memory) store, as ``memchat serve`` does. Sessions are built like ``build_session``
builds them: a stored conversation is resumed from the store, so a session evicted from the
server's LRU comes back whole. ``r.sessions`` records every session made.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import openai
import uvicorn

from memchat.adapters.server import ServerLimits, build_server
from memchat.adapters.server._auth import Auth
from memchat.core import Budget, ChatBackend, ChatSession, MemoryStrategy, Message, TokenBudget
from memchat.storage import open_store

__all__ = ["Running", "proxying"]


class Running:
    def __init__(
        self,
        backend: ChatBackend,
        *,
        keys: frozenset[str] = frozenset(),
        limits: ServerLimits | None = None,
        budget: Budget | None = None,
        session_class: Callable[..., ChatSession] = ChatSession,
        strategy: Callable[[], MemoryStrategy] = TokenBudget,
        store_keys: bool = False,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.backend = backend
        self.budget = budget or Budget(300, 50)
        self.session_class = session_class
        self.strategy = strategy
        self.store = open_store("memory:")
        self.sessions: list[ChatSession] = []
        auth = Auth(static=keys, keys=self.store) if store_keys else None  # type: ignore[arg-type]
        app = build_server(self.make, store=self.store, model="echo", keys=keys, limits=limits,
                           auth=auth, secrets=secrets)  # fmt: skip
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.clients: list[Any] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def make(self, store: Any, cid: str | None, history: list[Message]) -> ChatSession:
        if store is not None and cid is not None:
            history = [*store.load(cid), *history]
        session = self.session_class(
            self.backend,
            store=store,
            conversation_id=cid,
            history=history,
            budget=self.budget,
            strategy=self.strategy(),
        )
        self.sessions.append(session)
        return session

    def client(self, key: str = "none") -> openai.OpenAI:
        client = openai.OpenAI(base_url=self.url, api_key=key, max_retries=0)
        self.clients.append(client)
        return client

    def async_client(self, key: str = "none") -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url, api_key=key, max_retries=0, timeout=30)

    def http(self) -> httpx.Client:
        client = httpx.Client(base_url=self.url, timeout=10)
        self.clients.append(client)
        return client

    def __enter__(self) -> Running:
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started and time.time() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        for client in self.clients:
            client.close()
        self.server.should_exit = True
        self.thread.join(5)
        self.sock.close()


@contextmanager
def proxying(keys: frozenset[str] = frozenset({"ka", "kb"})) -> Iterator[tuple[Running, Any]]:
    """A server on the OpenAI-compatible backend in front of a fresh ``OpenAIStub`` (keys
    ``ka``/``kb``, a 4,000-token budget): ``(running server, stub)``."""
    from memchat.backends.openai_compat import OpenAIBackend

    from .openai_stub import OpenAIStub

    with OpenAIStub() as stub:
        backend = OpenAIBackend("gpt-4o-mini", base_url=stub.url, api_key="k", max_retries=0)
        with Running(backend, budget=Budget(4000, 500), keys=keys) as r:
            yield r, stub
        backend.close()
