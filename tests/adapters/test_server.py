"""The OpenAI-compatible server, driven by the real openai SDK over real HTTP on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import uvicorn

from memchat.adapters.server import HEADER, build_server
from memchat.backends.fake import EchoBackend, ScriptedBackend
from memchat.core import Budget, ChatSession, Message, RateLimited, TokenBudget
from memchat.storage import open_store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Running:
    def __init__(self, backend: ScriptedBackend, keys: frozenset[str] = frozenset()) -> None:
        self.backend = backend
        self.store = open_store("memory:")
        self.sessions: list[ChatSession] = []
        app = build_server(self.make, store=self.store, model="echo", keys=keys)
        self.port = _free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.clients: list[openai.OpenAI] = []

    def make(self, store: Any, cid: str | None, history: list[Message]) -> ChatSession:
        session = ChatSession(
            self.backend,
            store=store,
            conversation_id=cid,
            history=history,
            budget=Budget(300, 50),
            strategy=TokenBudget(),
        )
        self.sessions.append(session)
        return session

    def client(self, key: str = "none") -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"http://127.0.0.1:{self.port}/v1", api_key=key, max_retries=0
        )

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


@pytest.fixture
def running() -> Iterator[Running]:
    with Running(EchoBackend()) as r:
        yield r


def test_stateless_completion(running: Running) -> None:
    out = running.client().chat.completions.create(
        model="echo",
        messages=[{"role": "system", "content": "be nice"}, {"role": "user", "content": "hello"}],
    )
    assert out.choices[0].message.content == "echo: hello"
    assert out.usage is not None and out.usage.prompt_tokens > 0
    assert running.backend.calls[-1][0].content == "be nice"


def test_streaming_with_usage(running: Running) -> None:
    stream = running.client().chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "stream me please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream me please"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_stateful_conversation_keeps_history_server_side(running: Running) -> None:
    client = running.client()
    raw = client.chat.completions.with_raw_response.create(
        model="echo",
        messages=[{"role": "user", "content": "my name is Ada"}],
        extra_body={"conversation": "new"},
    )
    cid = raw.headers[HEADER]
    client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "what is my name?"}],
        extra_headers={HEADER: cid},
    )
    sent = running.backend.calls[-1]
    assert [m.content for m in sent if m.role == "user"] == ["my name is Ada", "what is my name?"]
    stored = running.store.load(cid)
    assert [m.role for m in stored] == ["user", "assistant", "user", "assistant"]


def test_bad_requests_get_openai_shaped_errors(running: Running) -> None:
    client = running.client()
    with pytest.raises(openai.BadRequestError, match="last message must be from the user"):
        client.chat.completions.create(
            model="echo", messages=[{"role": "assistant", "content": "hi"}]
        )
    with pytest.raises(openai.BadRequestError, match="unknown role"):
        client.chat.completions.create(model="echo", messages=[{"role": "wizard", "content": "hi"}])
    with pytest.raises(openai.NotFoundError, match="no conversation"):
        client.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={HEADER: "nope"},
        )


def test_backend_error_maps_to_429_and_history_is_kept() -> None:
    backend = ScriptedBackend(replies=["first", RateLimited("slow down", retry_after=1)])
    with Running(backend) as r:
        client = r.client()
        raw = client.chat.completions.with_raw_response.create(
            model="echo",
            messages=[{"role": "user", "content": "one"}],
            extra_body={"conversation": "new"},
        )
        cid = raw.headers[HEADER]
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(
                model="echo",
                messages=[{"role": "user", "content": "two"}],
                extra_headers={HEADER: cid},
            )
        assert [m.content for m in r.store.load(cid)] == ["one", "first"]


def test_keys_isolate_callers() -> None:
    with Running(EchoBackend(), keys=frozenset({"alice", "bob"})) as r:
        with pytest.raises(openai.AuthenticationError):
            r.client("mallory").models.list()
        alice, bob = r.client("alice"), r.client("bob")
        raw = alice.chat.completions.with_raw_response.create(
            model="echo",
            messages=[{"role": "user", "content": "secret"}],
            extra_body={"conversation": "new"},
        )
        cid = raw.headers[HEADER]
        with pytest.raises(openai.NotFoundError):
            bob.chat.completions.create(
                model="echo",
                messages=[{"role": "user", "content": "peek"}],
                extra_headers={HEADER: cid},
            )
        assert [m.id for m in alice.models.list().data] == ["echo"]
