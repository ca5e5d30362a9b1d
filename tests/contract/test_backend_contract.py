"""One contract for every ChatBackend, run against each backend in ``BACKENDS``.

To add a backend, write a factory ``(request) -> Subject`` and add one ``pytest.param`` line to
``BACKENDS`` (with ``marks=pytest.mark.model`` for the embedded model). ``Subject.reply`` is the
exact text a scripted backend will answer, or None for a real model whose words are unknown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from tests.stubs.openai_stub import OpenAIStub, ok

from memchat.backends.fake import ScriptedBackend
from memchat.backends.openai_compat import OpenAIBackend
from memchat.core.backend import ChatBackend, Chunk, GenerationParams
from memchat.core.messages import Message
from memchat.core.session import ChatSession
from memchat.core.tokens import TokenCounter

REPLY = "Hello! A short, scripted answer."
PROMPT = [Message("system", "You are terse."), Message("user", "Say hello in a few words.")]
PARAMS = GenerationParams(max_tokens=24, temperature=0.0, seed=0)


@dataclass
class Subject:
    backend: ChatBackend
    reply: str | None  # the exact reply when it is scripted


def scripted(request: pytest.FixtureRequest) -> Subject:
    return Subject(ScriptedBackend(default=REPLY), REPLY)


def openai_on_stub(request: pytest.FixtureRequest) -> Subject:
    stub: OpenAIStub = request.getfixturevalue("openai_stub")
    stub.default = ok(REPLY, chunk_size=6)
    backend = OpenAIBackend("gpt-4o-mini", base_url=stub.url, max_retries=0)
    request.addfinalizer(backend.close)
    return Subject(backend, REPLY)


BACKENDS = [
    pytest.param(scripted, id="scripted"),
    pytest.param(openai_on_stub, id="openai-stub"),
]


@pytest.fixture
def openai_stub() -> Iterator[OpenAIStub]:
    with OpenAIStub() as stub:
        yield stub


@pytest.fixture(params=BACKENDS)
def subject(request: pytest.FixtureRequest) -> Subject:
    factory: Callable[[pytest.FixtureRequest], Subject] = request.param
    return factory(request)


def check_stream(chunks: list[Chunk], reply: str | None) -> str:
    """The shape every stream must have; returns the text."""
    assert chunks and all(isinstance(c, Chunk) for c in chunks)
    *body, last = chunks
    assert all(c.finish_reason is None and c.usage is None for c in body)
    assert isinstance(last.finish_reason, str) and last.finish_reason
    text = "".join(c.text for c in chunks)
    assert text.strip(), "a reply has text"
    assert reply is None or text == reply
    if last.usage is not None:
        assert last.usage.prompt_tokens > 0 and last.usage.completion_tokens >= 0
        assert 0 <= last.usage.cached_tokens <= last.usage.prompt_tokens
    return text


def test_satisfies_the_protocol(subject: Subject) -> None:
    backend = subject.backend
    assert isinstance(backend, ChatBackend)
    assert isinstance(backend.model, str) and backend.model
    window = backend.context_window
    assert window is None or (isinstance(window, int) and window > 0)


def test_token_counter_counts(subject: Subject) -> None:
    counter = subject.backend.token_counter()
    assert isinstance(counter, TokenCounter) and isinstance(counter.exact, bool)
    assert counter.count("") == 0 < counter.count("hello world")
    assert counter.count("hello world " * 50) > counter.count("hello world")
    assert counter.per_message >= 0 and counter.per_reply >= 0


def test_stream_yields_text_then_one_final_chunk(subject: Subject) -> None:
    check_stream(list(subject.backend.stream(PROMPT, PARAMS)), subject.reply)


def test_closing_a_stream_early_leaves_the_backend_usable(subject: Subject) -> None:
    stream = subject.backend.stream(PROMPT, PARAMS)
    first = next(stream)
    assert isinstance(first, Chunk)
    stream.close()  # streams are generators; closing one must release its resources
    check_stream(list(subject.backend.stream(PROMPT, PARAMS)), subject.reply)


def test_drives_a_chat_session(subject: Subject) -> None:
    session = ChatSession(subject.backend, system_prompt="You are terse.", params=PARAMS)
    first = session.ask("Say hello in a few words.")
    second = session.ask("And again.")
    assert first.strip() and second.strip()
    assert subject.reply is None or first == second == subject.reply
    roles = [m.role for m in session.history.messages()]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    assert session.meter().context_tokens > 0
