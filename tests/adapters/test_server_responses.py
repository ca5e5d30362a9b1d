"""The Responses API through the official openai SDK (sync, async, streaming, the stream helper)
against uvicorn on loopback, with a real OpenAI-compatible upstream stub behind memchat:
previous_response_id chains, conversations shared with chat completions, instructions as the
system prompt, forks, stored responses, errors with their param and code, and key scoping."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from starlette.testclient import TestClient
from tests.stubs.memchat_server import Running, proxying
from tests.stubs.openai_stub import OpenAIStub, cut_mid_stream, ok

from memchat.adapters.server import build_server
from memchat.backends.fake import EchoBackend
from memchat.core import ChatSession


@pytest.fixture
def proxied() -> Iterator[tuple[Running, OpenAIStub]]:
    with proxying() as served:
        yield served


def sent(stub: OpenAIStub, n: int = -1) -> list[tuple[str, str]]:
    """The (role, content) messages upstream received in chat request ``n``."""
    return [(m["role"], m["content"]) for m in stub.chat_requests[n].body["messages"]]


def test_json_response_object(proxied: tuple[Running, OpenAIStub]) -> None:
    r, stub = proxied
    stub.enqueue(ok("hello there", prompt_tokens=7, completion_tokens=2))
    got = r.client("ka").responses.create(model="m", input="hi", max_output_tokens=40)
    assert got.id.startswith("resp_") and got.object == "response"
    assert got.status == "completed" and got.output_text == "hello there"
    item = got.output[0]
    assert item.type == "message" and item.role == "assistant" and item.id.startswith("msg_")
    assert got.usage is not None and (got.usage.input_tokens, got.usage.output_tokens) == (7, 2)
    assert got.usage.total_tokens == 9 and got.usage.input_tokens_details.cached_tokens == 0
    assert got.conversation is not None and got.conversation.id.startswith("conv_")
    assert got.max_output_tokens == 40
    assert stub.chat_requests[-1].body["max_tokens"] == 40
    assert r.client("ka").responses.retrieve(got.id).model_dump() == got.model_dump()


def test_previous_response_id_chains_three_turns(proxied: tuple[Running, OpenAIStub]) -> None:
    r, stub = proxied
    client = r.client("ka")
    stub.enqueue(ok("one"), ok("two"), ok("three"))
    first = client.responses.create(model="m", input="turn 1")
    second = client.responses.create(model="m", input="turn 2", previous_response_id=first.id)
    third = client.responses.create(model="m", input="turn 3", previous_response_id=second.id)
    assert third.output_text == "three" and third.previous_response_id == second.id
    assert sent(stub) == [("user", "turn 1"), ("assistant", "one"), ("user", "turn 2"),
                          ("assistant", "two"), ("user", "turn 3")]  # fmt: skip
    assert first.conversation == second.conversation == third.conversation


def test_an_older_response_forks_its_conversation(proxied: tuple[Running, OpenAIStub]) -> None:
    r, stub = proxied
    client = r.client("ka")
    stub.enqueue(ok("one"), ok("two"), ok("other"))
    first = client.responses.create(model="m", input="a")
    second = client.responses.create(model="m", input="b", previous_response_id=first.id)
    branch = client.responses.create(model="m", input="c", previous_response_id=first.id)
    assert sent(stub) == [("user", "a"), ("assistant", "one"), ("user", "c")]
    assert branch.conversation is not None and second.conversation is not None
    assert branch.conversation.id != second.conversation.id
    stub.enqueue(ok("again"))
    client.responses.create(model="m", input="d", previous_response_id=second.id)
    assert [c for _, c in sent(stub)] == ["a", "one", "b", "two", "d"]  # the original is intact


def test_conversation_shared_with_chat_completions(proxied: tuple[Running, OpenAIStub]) -> None:
    r, stub = proxied
    client = r.client("ka")
    stub.enqueue(ok("from chat"), ok("from responses"), ok("chat again"))
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q1"}],
                                   extra_body={"conversation": "shared"})  # fmt: skip
    got = client.responses.create(model="m", input="q2", conversation="shared")
    assert got.conversation is not None and got.conversation.id == "shared"
    assert sent(stub) == [("user", "q1"), ("assistant", "from chat"), ("user", "q2")]
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q3"}],
                                   extra_body={"conversation": "shared"})  # fmt: skip
    assert [c for _, c in sent(stub)] == ["q1", "from chat", "q2", "from responses", "q3"]
    stub.enqueue(ok("x"))
    client.responses.create(model="m", input="q4", conversation={"id": "shared"})
    assert len(sent(stub)) == 7


def test_instructions_are_the_system_prompt(proxied: tuple[Running, OpenAIStub]) -> None:
    r, stub = proxied
    stub.enqueue(ok("arr"), ok("plain"))
    got = r.client("ka").responses.create(model="m", input="hi", instructions="Talk like a pirate")
    assert sent(stub) == [("system", "Talk like a pirate"), ("user", "hi")]
    assert got.instructions == "Talk like a pirate"
    r.client("ka").responses.create(
        model="m", store=False,
        input=[{"role": "developer", "content": "Be brief"},
               {"role": "user", "content": [{"type": "input_text", "text": "hel"},
                                            {"type": "input_text", "text": "lo"}]}],
    )  # fmt: skip
    assert sent(stub) == [("system", "Be brief"), ("user", "hello")]


def test_store_false_is_stateless(proxied: tuple[Running, OpenAIStub]) -> None:
    r, stub = proxied
    stub.enqueue(ok("a"))
    got = r.client("ka").responses.create(
        model="m", store=False,
        input=[{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"},
               {"role": "user", "content": "z"}],
    )  # fmt: skip
    assert got.conversation is None and got.output_text == "a"
    assert sent(stub) == [("user", "x"), ("assistant", "y"), ("user", "z")]
    with pytest.raises(openai.NotFoundError):
        r.client("ka").responses.retrieve(got.id)


def test_streaming_events_and_the_stream_helper(proxied: tuple[Running, OpenAIStub]) -> None:
    r, stub = proxied
    client = r.client("ka")
    stub.enqueue(ok("streamed reply", chunk_size=3, prompt_tokens=5, completion_tokens=3))
    events = list(client.responses.create(model="m", input="go", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]  # fmt: skip
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]  # fmt: skip
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1 and "".join(deltas) == "streamed reply"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == "streamed reply" and final.usage.output_tokens == 3
    assert client.responses.retrieve(final.id).output_text == "streamed reply"
    stub.enqueue(ok("helper text", chunk_size=2))
    with client.responses.stream(model="m", input="more", previous_response_id=final.id) as s:
        texts = [e.delta for e in s if e.type == "response.output_text.delta"]
        done = s.get_final_response()
    assert "".join(texts) == "helper text" and done.output_text == "helper text"
    assert [c for _, c in sent(stub)] == ["go", "streamed reply", "more"]


def test_async_client(proxied: tuple[Running, OpenAIStub]) -> None:
    r, stub = proxied
    stub.enqueue(ok("first"), ok("second"))

    async def run() -> tuple[str, list[str]]:
        async with r.async_client("ka") as client:
            one = await client.responses.create(model="m", input="a1")
            stream = await client.responses.create(
                model="m", input="a2", previous_response_id=one.id, stream=True
            )
            kinds = [event.type async for event in stream]
            return one.output_text, kinds

    text, kinds = asyncio.run(run())
    assert text == "first" and kinds[-1] == "response.completed"
    assert [c for _, c in sent(stub)] == ["a1", "first", "a2"]


def test_a_failure_mid_stream_is_response_failed(proxied: tuple[Running, OpenAIStub]) -> None:
    r, stub = proxied
    stub.enqueue(cut_mid_stream(2))
    events = list(r.client("ka").responses.create(model="m", input="x", stream=True))
    last = events[-1]
    assert last.type == "response.failed"
    assert last.response.status == "failed" and last.response.error is not None
    stub.enqueue(cut_mid_stream(2))
    json_error = r.http().post("/responses", json={"input": "x"},
                               headers={"Authorization": "Bearer ka"})  # fmt: skip
    assert json_error.status_code == 502
    assert last.response.error.code == json_error.json()["error"]["code"]


def test_another_keys_response_is_not_found(proxied: tuple[Running, OpenAIStub]) -> None:
    r, stub = proxied
    stub.enqueue(ok("mine"))
    mine = r.client("ka").responses.create(model="m", input="secret")
    other = r.client("kb")
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="m", input="x", previous_response_id=mine.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(mine.id)
    r.client("ka").responses.delete(mine.id)
    with pytest.raises(openai.NotFoundError):
        r.client("ka").responses.retrieve(mine.id)
    assert mine.conversation is not None
    kept = r.http().get(f"/conversations/{mine.conversation.id}/messages",
                        headers={"Authorization": "Bearer ka"})  # fmt: skip
    assert [m["content"] for m in kept.json()["data"]] == ["secret", "mine"]


@pytest.mark.parametrize(
    "body, param",
    [
        pytest.param({"input": "x", "tools": [{"type": "web_search"}]}, "tools", id="tools"),
        pytest.param({"input": "x", "tool_choice": "required"}, "tool_choice", id="tool_choice"),
        pytest.param({"input": "x", "reasoning": {"effort": "high"}}, "reasoning", id="reason"),
        pytest.param(
            {"input": "x", "text": {"format": {"type": "json_object"}}},
            "text.format",
            id="text-format",
        ),  # fmt: skip
        pytest.param({"input": "x", "background": True}, "background", id="background"),
        pytest.param(
            {"input": "x", "include": ["reasoning.encrypted_content"]}, "include", id="include"
        ),  # fmt: skip
        pytest.param({"input": "x", "truncation": "sometimes"}, "truncation", id="truncation"),
        pytest.param(
            {
                "input": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_image", "image_url": "https://example.com/a.png"}
                        ],
                    }
                ]
            },
            "input[0].content[0]",
            id="image-part",
        ),  # fmt: skip
        pytest.param(
            {"input": [{"type": "function_call_output", "call_id": "c", "output": "o"}]},
            "input[0].type",
            id="tool-output",
        ),  # fmt: skip
        pytest.param(
            {"input": [{"role": "assistant", "content": "x"}]}, "input[0]", id="last-not-user"
        ),  # fmt: skip
        pytest.param({"input": []}, "input", id="empty"),
        pytest.param({"input": "x", "temperature": 3}, "temperature", id="temperature"),
        pytest.param({"input": "x", "bogus": 1}, "bogus", id="unknown"),
        pytest.param(
            {"input": "x", "conversation": "c1", "previous_response_id": "resp_1"},
            "conversation",
            id="both",
        ),  # fmt: skip
        pytest.param(
            {"input": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
            "input",
            id="two-messages-stored",
        ),  # fmt: skip
    ],
)
def test_bad_requests_name_the_param(
    proxied: tuple[Running, OpenAIStub], body: dict[str, Any], param: str
) -> None:
    r, stub = proxied
    got = r.http().post("/responses", json=body, headers={"Authorization": "Bearer ka"})
    assert got.status_code == 400, got.text
    assert got.json()["error"]["param"] == param
    assert stub.chat_requests == []


def test_unknown_previous_response_is_not_found(proxied: tuple[Running, OpenAIStub]) -> None:
    r, _ = proxied
    with pytest.raises(openai.NotFoundError):
        r.client("ka").responses.create(model="m", input="x", previous_response_id="resp_nope")


def test_a_server_without_a_store_answers_statelessly() -> None:
    backend = EchoBackend()
    app = build_server(lambda store, cid, history: ChatSession(backend, history=history))
    with TestClient(app) as http:
        got = http.post("/v1/responses", json={"input": "hi", "instructions": "Be kind"})
        assert got.status_code == 200, got.text
        body = got.json()
        assert body["output"][0]["content"][0]["text"] == "echo: hi"
        assert body["conversation"] is None and body["store"] is False
        assert [m.role for m in backend.calls[-1]] == ["system", "user"]
        named = http.post("/v1/responses", json={"input": "hi", "conversation": "c1"})
        assert named.status_code == 500 and named.json()["error"]["code"] == "server_config_error"
        assert http.get(f"/v1/responses/{body['id']}").status_code == 404
