"""The OpenAI-compatible server, driven by the real openai SDK over real HTTP on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest
from tests.stubs.memchat_server import Running
from tests.stubs.openai_stub import OpenAIStub, ok

from memchat.adapters.server import HEADER
from memchat.backends.fake import EchoBackend, ScriptedBackend
from memchat.backends.openai_compat import OpenAIBackend
from memchat.core import BackendTimeout, BackendUnavailable, Budget, ContextTooLong, RateLimited
from memchat.tokenizers import encoding_for_model


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
    with pytest.raises(openai.BadRequestError, match="a conversation id is") as caught:
        client.chat.completions.create(  # an unknown id is created on first use; not this one
            model="echo",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={HEADER: "no such/id"},
        )
    assert caught.value.body["param"] == "conversation"  # type: ignore[index]


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
            bob.get(f"/conversations/{cid}", cast_to=object)
        peek = bob.chat.completions.create(  # the same id is a new conversation of bob's own
            model="echo",
            messages=[{"role": "user", "content": "peek"}],
            extra_headers={HEADER: cid},
        )
        assert peek.choices[0].message.content == "echo: peek"
        assert [m.content for m in r.backend.calls[-1]] == ["peek"]  # nothing of alice's
        assert [m.id for m in alice.models.list().data] == ["echo"]


# -- request parameters ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def _proxy() -> Iterator[tuple[Running, OpenAIStub]]:
    with OpenAIStub() as stub:
        backend = OpenAIBackend("gpt-4o-mini", base_url=stub.url, api_key="k", max_retries=0)
        with Running(backend, budget=Budget(4000, 500)) as r:
            yield r, stub
        backend.close()


@pytest.fixture
def upstream(_proxy: tuple[Running, OpenAIStub]) -> OpenAIStub:
    stub = _proxy[1]
    stub.requests.clear()
    stub.queue.clear()
    return stub


@pytest.fixture
def proxied(_proxy: tuple[Running, OpenAIStub], upstream: OpenAIStub) -> Running:
    """memchat in front of the OpenAI backend, pointed at the stub (what the stub gets is what
    memchat sent upstream); one server for the module, the stub cleared for each test."""
    return _proxy[0]


def test_each_parameter_reaches_the_upstream(proxied: Running, upstream: OpenAIStub) -> None:
    out = proxied.client().chat.completions.create(
        model="anything",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=99,
        max_completion_tokens=7,  # wins over max_tokens
        temperature=0.3,
        top_p=0.5,
        stop=["x", "y"],
        seed=42,
        # accepted, and change nothing
        user="u1",
        metadata={"k": "v"},
        store=False,
        n=1,
        frequency_penalty=0,
        presence_penalty=0.0,
        parallel_tool_calls=True,
        service_tier="auto",
        response_format={"type": "text"},
        modalities=["text"],
        logprobs=False,
    )
    assert out.choices[0].message.content == "ok"
    sent = upstream.chat_requests[-1].body
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"]) == (7, 0.3, 0.5)
    assert (sent["stop"], sent["seed"]) == (["x", "y"], 42)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_parameters_reach_the_upstream_when_streaming(
    proxied: Running, upstream: OpenAIStub
) -> None:
    async with proxied.async_client() as client:
        stream = await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            max_tokens=12,
            temperature=0,
            stop="END",
            seed=-3,
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "ok"
    sent = upstream.chat_requests[-1].body
    assert (sent["max_tokens"], sent["temperature"], sent["stop"], sent["seed"]) == (
        12, 0, ["END"], -3
    )  # fmt: skip


def test_unset_parameters_are_not_sent(proxied: Running, upstream: OpenAIStub) -> None:
    proxied.client().chat.completions.create(model="m", messages=[{"role": "user", "content": "a"}])
    sent = upstream.chat_requests[-1].body
    assert not {"max_tokens", "temperature", "top_p", "seed", "stop"} & set(sent)


def test_finish_reason_is_the_upstreams(proxied: Running, upstream: OpenAIStub) -> None:
    client = proxied.client()
    upstream.enqueue(ok("cut sh", finish_reason="length"), ok("cut sh", finish_reason="length"))
    out = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "long please"}], max_tokens=2
    )
    assert out.choices[0].finish_reason == "length"
    chunks = list(
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "long"}], max_tokens=2, stream=True
        )
    )
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length" and set(finishes[:-1]) == {None}
    normal = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert normal.choices[0].finish_reason == "stop"


REFUSED = [
    ({"n": 2}, "n"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"function_call": "auto"}, "function_call"),
    ({"logprobs": True}, "logprobs"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
    ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"top_k": 5}, "top_k"),  # not in the OpenAI API at all
    ({"temperature": 2.5}, "temperature"),
    ({"temperature": "hot"}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": 1.5}, "max_tokens"),
    ({"max_completion_tokens": True}, "max_completion_tokens"),
    ({"seed": "s"}, "seed"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"stop": 3}, "stop"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),  # without stream
    ({"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
    (
        {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
        "messages[0].content[0]",
    ),
    ({"messages": [{"role": "user", "content": "x", "tool_calls": []}]}, "messages[0].tool_calls"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
]


@pytest.mark.parametrize(("fields", "param"), REFUSED, ids=[p for _, p in REFUSED])
def test_unsupported_or_invalid_fields_are_a_400_naming_the_param(
    proxied: Running, upstream: OpenAIStub, fields: dict[str, object], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:  # extra_body: sent as they are
        proxied.client().chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], extra_body=fields
        )
    assert caught.value.param == param
    assert caught.value.type == "invalid_request_error"
    assert isinstance(caught.value.code, str)
    assert upstream.chat_requests == []  # nothing was sent with the field dropped


# -- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ContextTooLong("too long"), 400, "context_length_exceeded"),
        (BackendTimeout("slow"), 504, "timeout"),
        (BackendUnavailable("down"), 502, "upstream_unavailable"),
        (RateLimited("later", retry_after=2.2), 429, "rate_limit_exceeded"),
    ],
)
def test_upstream_errors_keep_their_status_and_code_streaming_or_not(
    error: Exception, status: int, code: str
) -> None:
    with Running(ScriptedBackend(replies=[error] * 4)) as r:
        for stream in (False, True):
            response = r.http().post(
                "/chat/completions",
                json={"messages": [{"role": "user", "content": "hi"}], "stream": stream},
            )
            assert response.status_code == status
            assert response.json()["error"]["code"] == code
            if status == 429:
                assert response.headers["retry-after"] == "3"


def test_a_stream_error_event_carries_the_same_string_code() -> None:
    failing = ScriptedBackend(
        replies=["a long reply that breaks"], fail_after=(2, BackendUnavailable("upstream died"))
    )
    with Running(failing) as r:
        body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
        with r.http().stream("POST", "/chat/completions", json=body) as response:
            assert response.status_code == 200  # the stream had begun
            events = [json.loads(line[6:]) for line in response.iter_lines() if line[6:]]
        error = events[-1]["error"]
        assert error["code"] == "upstream_unavailable" and error["type"] == "upstream_unavailable"
        assert "upstream died" in error["message"] and "param" in error
        with pytest.raises(openai.APIError, match="upstream died"):
            failing.fail_after = (2, BackendUnavailable("upstream died"))
            failing.enqueue("a long reply that breaks")
            list(r.client().chat.completions.create(model="m", stream=True, **MESSAGES))


# -- tokenize --------------------------------------------------------------------------------
MESSAGES = {"messages": [{"role": "user", "content": "hi"}]}
CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is 2 + 2? <|endoftext|>"},
    {"role": "assistant", "content": "4."},
    {"role": "user", "content": "And 3 + 3, in wörds?"},
]


def test_tokenize_counts_what_the_session_counts(proxied: Running) -> None:
    http = proxied.http()
    counted = http.post("/tokenize", json={"messages": CHAT, "model": "echo"}).json()
    proxied.client().chat.completions.create(model="m", messages=CHAT)  # type: ignore[arg-type]
    session = proxied.sessions[-1]
    assert session.last_context is not None and not session.last_context.dropped
    assert counted["count"] == session.last_context.tokens  # what the turn counted as sent
    counter = session.counter
    assert (counted["per_message"], counted["per_reply"]) == (
        counter.per_message,
        counter.per_reply,
    )
    contents = sum(counter.count(m["content"]) for m in CHAT)
    assert len(counted["tokens"]) == contents
    assert counted["count"] == contents + 4 * counter.per_message + counter.per_reply
    assert counted["exact"] is True
    assert http.post("/tokenize/count", json={"messages": CHAT}).json() == {
        "model": "echo",
        "count": counted["count"],
    }


def test_tokenize_text_gives_the_ids(proxied: Running) -> None:
    text = "Hello, wörld <|endoftext|>"
    out = proxied.http().post("/tokenize", json={"text": text}).json()
    assert out["count"] == len(out["tokens"]) == proxied.sessions[-1].counter.count(text)
    assert encoding_for_model("gpt-4o-mini").decode(out["tokens"]) == text


def test_tokenize_with_an_estimating_counter_has_no_ids(running: Running) -> None:
    out = running.http().post("/tokenize", json={"text": "abcdefgh"}).json()
    assert out == {"model": "echo", "count": 2, "tokens": None, "per_message": 4,
                   "per_reply": 3, "exact": False}  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"text": "x", "model": "gpt-other"}, 404, "model_not_found"),
        ({"text": "x", "messages": CHAT}, 400, "missing_required_parameter"),
        ({}, 400, "missing_required_parameter"),
        ({"text": 5}, 400, "invalid_type"),
        ({"messages": []}, 400, "invalid_value"),
        ({"text": "x", "stream": True}, 400, "unknown_parameter"),
    ],
)
def test_tokenize_refuses_bad_requests(
    running: Running, body: dict[str, object], status: int, code: str
) -> None:
    response = running.http().post("/tokenize", json=body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
