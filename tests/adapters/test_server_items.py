"""Conversation items through the official openai SDK (``client.conversations.items`` and
``conversations.create(items=…)``) against uvicorn on loopback, with a real OpenAI-compatible
upstream stub behind memchat: list (order, pages), retrieve, add whole rounds without a reply,
delete (= forget: not sent upstream again), key scoping, bad parameters, and the docs example."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.conversations import Conversation, ConversationItemList, Message
from openai.types.responses import ResponseInputText, ResponseOutputText
from tests.stubs.memchat_server import Running, proxying
from tests.stubs.openai_stub import OpenAIStub, ok

from memchat.adapters.server import HEADER
from memchat.backends.fake import EchoBackend
from memchat.core import Budget
from memchat.core import Message as Stored
from memchat.core.keys import key_owner

DOCS = Path(__file__).resolve().parents[2] / "docs" / "server.md"


@pytest.fixture
def proxied() -> Iterator[tuple[Running, OpenAIStub]]:
    with proxying() as served:
        yield served


def say(r: Running, cid: str, text: str, key: str = "ka") -> None:
    r.client(key).chat.completions.create(
        model="m", messages=[{"role": "user", "content": text}], extra_headers={HEADER: cid}
    )


def sent(stub: OpenAIStub, n: int = -1) -> list[tuple[str, str]]:
    """The (role, content) messages upstream received in chat request ``n``."""
    return [(m["role"], m["content"]) for m in stub.chat_requests[n].body["messages"]]


def text(item: Any) -> str:
    assert isinstance(item, Message), type(item)
    return str(item.content[0].text)


def two_turns(r: Running, stub: OpenAIStub, cid: str = "c") -> None:
    stub.enqueue(ok("one back"), ok("two back"))
    say(r, cid, "one")
    say(r, cid, "two")


def stored(r: Running, cid: str, key: str = "ka") -> list[Stored]:
    """The key's conversation ``cid`` as the store holds it."""
    return r.store.load(f"{key_owner(key)}/{cid}")


def messages(r: Running, cid: str) -> list[dict[str, Any]]:
    got = r.http().get(f"/conversations/{cid}/messages", params={"limit": 100},
                       headers={"Authorization": "Bearer ka"})  # fmt: skip
    assert got.status_code == 200, got.text
    data: list[dict[str, Any]] = got.json()["data"]
    return data


# -- list, retrieve ----------------------------------------------------------------------------
def test_list_is_newest_first_and_pages(proxied: tuple[Running, OpenAIStub]) -> None:
    r, stub = proxied
    two_turns(r, stub)
    items = r.client("ka").conversations.items
    page = items.list("c")
    assert [text(i) for i in page.data] == ["two back", "two", "one back", "one"]
    assert [(i.role, i.status, i.type) for i in page.data[:2]] == [
        ("assistant", "completed", "message"), ("user", "completed", "message"),
    ]  # fmt: skip
    reply, question = page.data[0].content[0], page.data[1].content[0]
    assert isinstance(reply, ResponseOutputText) and reply.annotations == []
    assert isinstance(question, ResponseInputText)
    assert [i.id for i in page.data] == [m["id"] for m in reversed(messages(r, "c"))]
    first = items.list("c", limit=3)
    assert [text(i) for i in first.data] == ["two back", "two", "one back"]
    assert first.has_more and first.last_id == first.data[-1].id
    rest = items.list("c", limit=3, after=first.last_id)
    assert [text(i) for i in rest.data] == ["one"] and rest.has_more is False
    oldest = items.list("c", order="asc", limit=2)
    assert [text(i) for i in oldest.data] == ["one", "one back"] and oldest.has_more
    every = list(items.list("c", order="asc", limit=1))  # the SDK pages on with after=
    assert [text(i) for i in every] == ["one", "one back", "two", "two back"]


def test_retrieve_one_item(proxied: tuple[Running, OpenAIStub]) -> None:
    r, stub = proxied
    two_turns(r, stub)
    two_turns(r, stub, "other")
    items = r.client("ka").conversations.items
    listed = items.list("c").data[1]
    got = items.retrieve(listed.id, conversation_id="c")
    assert isinstance(got, Message) and got.model_dump() == listed.model_dump()
    assert text(got) == "two"
    of_other = items.list("other").data[0].id
    for conversation, item in [("c", "nope"), ("c", of_other), ("nope", listed.id)]:
        with pytest.raises(openai.NotFoundError):
            items.retrieve(item, conversation_id=conversation)


# -- delete ----------------------------------------------------------------------------------
def test_delete_forgets_the_message(proxied: tuple[Running, OpenAIStub]) -> None:
    r, stub = proxied
    two_turns(r, stub)
    items = r.client("ka").conversations.items
    one = items.list("c", order="asc").data[0]
    assert text(one) == "one"
    after = items.delete(one.id, conversation_id="c")
    assert isinstance(after, Conversation)
    extra = after.model_extra or {}
    assert (after.id, after.object, extra["message_count"]) == ("c", "conversation", 3)
    assert one.id not in [i.id for i in items.list("c")]
    assert one.id not in [m["id"] for m in messages(r, "c")]
    assert one.id not in [m.id for m in stored(r, "c")]
    stub.enqueue(ok("three back"))
    say(r, "c", "three")
    assert sent(stub) == [("assistant", "one back"), ("user", "two"), ("assistant", "two back"),
                          ("user", "three")]  # fmt: skip
    with pytest.raises(openai.NotFoundError):
        items.delete(one.id, conversation_id="c")


# -- create: whole rounds, no reply ------------------------------------------------------------
def test_create_adds_whole_rounds_without_a_reply(proxied: tuple[Running, OpenAIStub]) -> None:
    r, stub = proxied
    two_turns(r, stub)
    asked = len(stub.chat_requests)
    added = r.client("ka").conversations.items.create("c", items=[
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x?"}]},
        {"type": "message", "role": "assistant", "content": "x!"},
        {"role": "user", "content": "y?"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "y!"}]},
    ])  # fmt: skip
    assert isinstance(added, ConversationItemList) and added.has_more is False
    assert [text(i) for i in added.data] == ["x?", "x!", "y?", "y!"]
    assert (added.first_id, added.last_id) == (added.data[0].id, added.data[-1].id)
    assert len(stub.chat_requests) == asked  # nothing was asked upstream
    assert [m.content for m in stored(r, "c")][-4:] == ["x?", "x!", "y?", "y!"]
    assert r.store.get_conversation(f"{key_owner('ka')}/c").total_tokens > 0  # counted
    say(r, "c", "three")
    assert [c for _, c in sent(stub)] == ["one", "one back", "two", "two back", "x?", "x!",
                                          "y?", "y!", "three"]  # fmt: skip


def test_conversations_create_seeds_items(proxied: tuple[Running, OpenAIStub]) -> None:
    r, stub = proxied
    client = r.client("ka")
    made = client.conversations.create(metadata={"topic": "trip"}, items=[
        {"type": "message", "role": "user", "content": "I fly to Lisbon on May 3."},
        {"type": "message", "role": "assistant", "content": "Noted."},
    ])  # fmt: skip
    assert isinstance(made, Conversation) and made.metadata == {"topic": "trip"}
    assert (made.model_extra or {})["message_count"] == 2
    listed = client.conversations.items.list(made.id, order="asc").data
    assert [(i.role, text(i)) for i in listed] == [
        ("user", "I fly to Lisbon on May 3."), ("assistant", "Noted."),
    ]  # fmt: skip
    assert stub.chat_requests == []
    client.responses.create(model="m", input="When do I fly?", conversation=made.id)
    assert sent(stub) == [("user", "I fly to Lisbon on May 3."), ("assistant", "Noted."),
                          ("user", "When do I fly?")]  # fmt: skip


U, A = {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}


@pytest.mark.parametrize(
    "items, param, code",
    [
        pytest.param([U], "items[0]", "incomplete_round", id="lone-user"),
        pytest.param([U, A, U], "items[2]", "incomplete_round", id="last-unanswered"),
        pytest.param([U, U, A], "items[0]", "incomplete_round", id="two-users"),
        pytest.param([A, U], "items[0]", "incomplete_round", id="assistant-first"),
        pytest.param([U, A, A, U], "items[2]", "incomplete_round", id="two-assistants"),
        pytest.param(
            [{"role": "system", "content": "be brief"}, U, A],
            "items[0].role",
            "unsupported_parameter",
            id="system",
        ),
        pytest.param(
            [{"role": "developer", "content": "be brief"}, U, A],
            "items[0].role",
            "unsupported_parameter",
            id="developer",
        ),
        pytest.param(
            [{"type": "function_call_output", "call_id": "x", "output": "1"}],
            "items[0].type",
            "unsupported_parameter",
            id="not-a-message",
        ),
        pytest.param([U, A] * 11, "items", "array_above_max_length", id="more-than-20"),
        pytest.param(
            [{"role": "user", "content": "  "}, A],
            "items[0].content",
            "invalid_value",
            id="blank-user",
        ),
        pytest.param(
            [{"role": "user", "content": "a\x00b"}, A],
            "items[0].content",
            "invalid_value",
            id="nul",
        ),
        pytest.param(
            [{"role": "user", "content": [{"type": "input_image"}]}, A],
            "items[0].content[0]",
            "unsupported_parameter",
            id="image",
        ),
        pytest.param(
            [{"role": "user", "content": "q", "colour": "red"}, A],
            "items[0].colour",
            "unknown_parameter",
            id="unknown-field",
        ),
        pytest.param([], "items", "invalid_value", id="empty"),
    ],
)
def test_create_refuses_what_is_not_whole_rounds(
    proxied: tuple[Running, OpenAIStub], items: list[Any], param: str, code: str
) -> None:
    r, stub = proxied
    two_turns(r, stub)
    before = [m.id for m in stored(r, "c")]
    with pytest.raises(openai.BadRequestError) as refused:
        r.client("ka").conversations.items.create("c", items=items)
    assert (refused.value.param, refused.value.code) == (param, code)
    if param.startswith("items[") and code == "incomplete_round":
        assert "whole rounds" in refused.value.message
    assert [m.id for m in stored(r, "c")] == before
    if items:
        with pytest.raises(openai.BadRequestError) as again:
            r.client("ka").conversations.create(items=items)
        assert again.value.param == param
    assert [c.id for c in r.store.list_conversations(owner=key_owner("ka"))] == [
        f"{key_owner('ka')}/c"
    ]  # nothing was created


# -- keys, parameters --------------------------------------------------------------------------
def test_another_keys_conversation_is_not_found(proxied: tuple[Running, OpenAIStub]) -> None:
    r, stub = proxied
    two_turns(r, stub)
    mine = r.client("ka").conversations.items.list("c").data[0].id
    theirs = r.client("kb").conversations.items
    for call in (
        lambda: theirs.list("c"),
        lambda: theirs.retrieve(mine, conversation_id="c"),
        lambda: theirs.create("c", items=[U, A]),
        lambda: theirs.delete(mine, conversation_id="c"),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert len(r.client("ka").conversations.items.list("c").data) == 4


@pytest.mark.parametrize(
    "params, param, code",
    [
        pytest.param({"limit": 0}, "limit", "invalid_value", id="limit-0"),
        pytest.param({"limit": 101}, "limit", "invalid_value", id="limit-101"),
        pytest.param({"limit": "x"}, "limit", "invalid_value", id="limit-x"),
        pytest.param({"order": "up"}, "order", "invalid_value", id="order"),
        pytest.param(
            {"include": ["message.output_text.logprobs"]},
            "include",
            "unsupported_parameter",
            id="logprobs",
        ),
        pytest.param({"include": ["nope"]}, "include", "invalid_value", id="include-unknown"),
    ],
)
def test_bad_list_parameters_are_400(
    proxied: tuple[Running, OpenAIStub], params: dict[str, Any], param: str, code: str
) -> None:
    r, stub = proxied
    two_turns(r, stub)
    with pytest.raises(openai.BadRequestError) as refused:
        r.client("ka").conversations.items.list("c", **params)
    assert (refused.value.param, refused.value.code) == (param, code)


def test_include_of_what_memchat_never_stores_is_accepted(
    proxied: tuple[Running, OpenAIStub],
) -> None:
    r, stub = proxied
    two_turns(r, stub)
    items = r.client("ka").conversations.items
    page = items.list("c", include=["reasoning.encrypted_content", "file_search_call.results"])
    assert len(page.data) == 4
    plain = httpx.get(f"{r.url}/conversations/c/items", headers={"Authorization": "Bearer ka"},
                      params={"include": "message.output_text.logprobs"})  # fmt: skip
    assert plain.status_code == 400 and plain.json()["error"]["param"] == "include"
    with pytest.raises(openai.NotFoundError):  # an unknown 'after', as for …/messages
        items.list("c", after="nope")


def test_post_items_needs_items(proxied: tuple[Running, OpenAIStub]) -> None:
    r, stub = proxied
    two_turns(r, stub)
    auth = {"Authorization": "Bearer ka"}
    for body, param, code in [({}, "items", "missing_required_parameter"),
                              ({"items": "q"}, "items", "invalid_type"),
                              ({"items": [U, A], "x": 1}, "x", "unknown_parameter")]:  # fmt: skip
        got = httpx.post(f"{r.url}/conversations/c/items", json=body, headers=auth)
        assert got.status_code == 400, got.text
        assert (got.json()["error"]["param"], got.json()["error"]["code"]) == (param, code)
    assert len(stored(r, "c")) == 4


# -- the docs example ------------------------------------------------------------------------
def test_the_docs_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    section = DOCS.read_text().split("### Items: the openai SDK's Conversations API")[1]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    with Running(EchoBackend(), budget=Budget(2000, 100)) as r:
        code = code.replace("http://127.0.0.1:8000/v1", r.url)
        exec(compile(code, str(DOCS), "exec"), {"__name__": "docs"})
        (conversation,) = r.store.list_conversations()
        stored = [m.content for m in r.store.load(conversation.id)]
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "echo: When do I fly?"
    assert out[1:5] == ["user I fly to Lisbon on May 3.", "assistant Noted: Lisbon, May 3.",
                        "user When do I fly?", "assistant echo: When do I fly?"]  # fmt: skip
    assert out[5] == f"{conversation.id} now holds 5 messages"
    assert stored == ["Noted: Lisbon, May 3.", "When do I fly?", "echo: When do I fly?",
                      "And back?", "On May 10."]  # fmt: skip
