"""The conversations API over real HTTP (httpx against uvicorn on loopback), chat turns through
the official openai SDK: create, first use, list, get, rename, delete, fork, messages, pin,
forget, and the last turn's context; bad input included."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from tests.stubs.memchat_server import Running

from memchat.adapters.server import HEADER
from memchat.backends.fake import EchoBackend
from memchat.core import Budget, ChatSession, Message
from memchat.strategies import make_strategy


@pytest.fixture
def running() -> Iterator[Running]:
    with Running(EchoBackend(), budget=Budget(2000, 100)) as r:
        yield r


def say(r: Running, cid: str, text: str) -> str:
    raw = r.client().chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": text}], extra_headers={HEADER: cid}
    )
    return raw.headers[HEADER]


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert set(body) == {"message", "type", "code", "param"}
    return body


def messages(r: Running, cid: str, **params: Any) -> list[dict[str, Any]]:
    got = r.http().get(f"/conversations/{cid}/messages", params=params)
    assert got.status_code == 200, got.text
    data: list[dict[str, Any]] = got.json()["data"]
    return data


# -- create, get, first use ------------------------------------------------------------------
def test_create_with_an_id_title_and_metadata(running: Running) -> None:
    http = running.http()
    made = http.post("/conversations", json={"id": "trip-2025", "title": "Trip",
                                             "metadata": {"team": "blue"}})  # fmt: skip
    assert made.status_code == 200, made.text
    body = made.json()
    assert {k: body[k] for k in ("id", "object", "title", "metadata", "message_count")} == {
        "id": "trip-2025", "object": "conversation", "title": "Trip",
        "metadata": {"team": "blue"}, "message_count": 0,
    }  # fmt: skip
    assert isinstance(body["created_at"], int)
    assert http.get("/conversations/trip-2025").json() == body
    taken = error(http.post("/conversations", json={"id": "trip-2025"}), 409)
    assert taken["code"] == "conversation_exists" and taken["param"] == "id"


def test_create_without_a_body_picks_an_id(running: Running) -> None:
    made = running.http().post("/conversations")
    assert made.status_code == 200 and made.json()["id"].startswith("conv_")
    say(running, made.json()["id"], "hello")
    assert [m["content"] for m in messages(running, made.json()["id"])] == [
        "hello", "echo: hello",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "body, status, param",
    [
        pytest.param(b"{not json", 400, None, id="bad-json"),
        pytest.param(b"[1, 2]", 400, None, id="not-an-object"),
        pytest.param(b'{"id": "has space"}', 400, "id", id="bad-id"),
        pytest.param(b'{"id": "new"}', 400, "id", id="reserved-id"),
        pytest.param(b'{"id": 7}', 400, "id", id="id-not-a-string"),
        pytest.param(b'{"title": "a", "name": "b"}', 400, "name", id="title-and-name"),
        pytest.param(b'{"title": "two\\nlines"}', 400, "title", id="two-line-title"),
        pytest.param(b'{"metadata": {"n": 1}}', 400, "metadata.n", id="metadata-value"),
        pytest.param(b'{"metadata": []}', 400, "metadata", id="metadata-type"),
        pytest.param(b'{"colour": "red"}', 400, "colour", id="unknown-field"),
        pytest.param(
            b'{"items": [{"role": "user", "content": "hi"}]}', 400, "items[0]", id="lone-user-item"
        ),
        pytest.param(b'{"items": {}}', 400, "items", id="items-not-an-array"),
    ],
)
def test_create_refuses_bad_input(running: Running, body: bytes, status: int, param: str) -> None:
    got = running.http().post("/conversations", content=body,
                              headers={"content-type": "application/json"})  # fmt: skip
    assert error(got, status)["param"] == param
    assert running.store.list_conversations() == []


def test_a_chat_naming_a_new_id_creates_it(running: Running) -> None:
    assert say(running, "support-42", "My printer is on fire") == "support-42"
    got = running.http().get("/conversations/support-42").json()
    assert (got["title"], got["message_count"]) == ("My printer is on fire", 2)
    say(running, "support-42", "still burning")
    assert [m.content for m in running.backend.calls[-1] if m.role == "user"] == [
        "My printer is on fire", "still burning",
    ]  # fmt: skip


def test_unknown_conversations_are_404(running: Running) -> None:
    http = running.http()
    for method, path in [
        ("GET", "/conversations/nope"),
        ("DELETE", "/conversations/nope"),
        ("PATCH", "/conversations/nope"),
        ("GET", "/conversations/nope/messages"),
        ("GET", "/conversations/nope/context"),
        ("POST", "/conversations/nope/fork"),
        ("POST", "/conversations/nope/messages/m1/pin"),
        ("DELETE", "/conversations/nope/messages/m1"),
    ]:
        body = {"title": "x"} if method == "PATCH" else {"message_id": "m1"}
        got = http.request(method, path, json=body if method in ("POST", "PATCH") else None)
        assert error(got, 404)["code"] == "not_found", (method, path)


# -- list, rename, delete --------------------------------------------------------------------
def test_list_pages_newest_first(running: Running) -> None:
    http = running.http()
    for n in range(5):
        http.post("/conversations", json={"id": f"c{n}"})
    say(running, "c0", "bump")  # c0 is now the most recently updated
    first = http.get("/conversations", params={"limit": 2}).json()
    assert [c["id"] for c in first["data"]] == ["c0", "c4"]
    assert (first["first_id"], first["last_id"], first["has_more"]) == ("c0", "c4", True)
    rest = http.get("/conversations", params={"limit": 10, "after": "c4"}).json()
    assert [c["id"] for c in rest["data"]] == ["c3", "c2", "c1"] and not rest["has_more"]
    assert error(http.get("/conversations", params={"after": "zz"}), 400)["param"] == "after"
    for bad in ("0", "101", "x"):
        assert error(http.get("/conversations", params={"limit": bad}), 400)["param"] == "limit"


def test_rename_and_metadata_by_post_or_patch(running: Running) -> None:
    http = running.http()
    http.post("/conversations", json={"id": "c", "title": "old"})
    assert http.post("/conversations/c", json={"title": "new"}).json()["title"] == "new"
    patched = http.patch("/conversations/c", json={"name": "newer", "metadata": {"k": "v"}})
    assert (patched.json()["title"], patched.json()["metadata"]) == ("newer", {"k": "v"})
    assert running.store.get_conversation("c").title == "newer"
    missing = error(http.patch("/conversations/c", json={}), 400)
    assert missing["code"] == "missing_required_parameter"
    assert error(http.patch("/conversations/c", content=b"{", headers={
        "content-type": "application/json"}), 400)["code"] == "invalid_json"  # fmt: skip


def test_delete(running: Running) -> None:
    http = running.http()
    say(running, "c", "hello")
    gone = http.delete("/conversations/c")
    assert gone.json() == {"id": "c", "object": "conversation.deleted", "deleted": True}
    error(http.get("/conversations/c"), 404)
    error(http.delete("/conversations/c"), 404)
    assert running.store.list_conversations() == []


# -- messages, pin, forget -------------------------------------------------------------------
def test_messages_in_order_with_pages(running: Running) -> None:
    for text in ("one", "two", "three"):
        say(running, "c", text)
    every = messages(running, "c", limit=100)
    assert [m["content"] for m in every] == ["one", "echo: one", "two", "echo: two", "three",
                                             "echo: three"]  # fmt: skip
    assert set(every[0]) == {"id", "object", "role", "content", "created_at", "pinned", "tokens"}
    assert [m["content"] for m in messages(running, "c", limit=2, order="desc")] == [
        "echo: three", "three",
    ]  # fmt: skip
    after = messages(running, "c", limit=2, after=every[1]["id"])
    assert [m["content"] for m in after] == ["two", "echo: two"]
    http = running.http()
    assert error(http.get("/conversations/c/messages", params={"after": "nope"}), 404)
    assert error(http.get("/conversations/c/messages", params={"order": "up"}), 400)["param"] == (
        "order"
    )


def test_pin_and_unpin(running: Running) -> None:
    say(running, "c", "remember 4711")
    first = messages(running, "c")[0]["id"]
    http = running.http()
    pinned = http.post(f"/conversations/c/messages/{first}/pin")
    assert pinned.status_code == 200 and pinned.json()["pinned"] is True
    assert running.store.load("c")[0].pinned
    assert http.delete(f"/conversations/c/messages/{first}/pin").json()["pinned"] is False
    assert not running.store.load("c")[0].pinned
    assert error(http.post("/conversations/c/messages/nope/pin"), 404)["code"] == "not_found"


def test_a_pinned_message_is_sent_when_the_budget_drops_it() -> None:
    with Running(EchoBackend(), budget=Budget(120, 20)) as r:
        say(r, "c", "the locker code is 4711")
        first = messages(r, "c")[0]["id"]
        r.http().post(f"/conversations/c/messages/{first}/pin")
        for n in range(6):
            say(r, "c", f"filler message number {n} to push the oldest round out")
        assert "the locker code is 4711" in [m.content for m in r.backend.calls[-1]]
        context = r.http().get("/conversations/c/context").json()
        statuses = {m["id"]: m["status"] for m in context["messages"]}
        assert statuses[first] == "pinned"
        assert any(m["status"] == "dropped" for m in context["left_out"])


def test_forget_removes_the_message_from_store_window_and_recall() -> None:
    """With recall on (BM25), an old message comes back when asked for, until it is forgotten."""
    strategy = lambda: make_strategy("recall-bm25")  # noqa: E731
    with Running(EchoBackend(), budget=Budget(200, 20), strategy=strategy) as r:
        say(r, "c", "the locker code is 4711")
        for n in range(8):
            say(r, "c", f"small talk about the weather, part {n}, nothing else")
        say(r, "c", "what is the locker code?")
        assert any("4711" in m.content for m in r.backend.calls[-1])  # recalled
        codes = [m["id"] for m in messages(r, "c", limit=100)[:2]]  # the question and its echo
        for code in codes:
            gone = r.http().delete(f"/conversations/c/messages/{code}")
            assert gone.json() == {"id": code, "object": "conversation.message.deleted",
                                   "deleted": True}  # fmt: skip
        assert not set(codes) & {m.id for m in r.store.load("c")}
        say(r, "c", "what is the locker code?")
        sent = [m.content for m in r.backend.calls[-1]]
        assert not any("4711" in text for text in sent), sent
        index = r.sessions[-1].strategy.retriever  # type: ignore[attr-defined]
        assert not set(codes) & {mid for mid, _ in index.search("locker code 4711", 50)}
        assert error(r.http().delete(f"/conversations/c/messages/{codes[0]}"), 404)


# -- fork ------------------------------------------------------------------------------------
def test_fork_at_a_message(running: Running) -> None:
    for text in ("one", "two", "three"):
        say(running, "src", text)
    at = messages(running, "src")[3]["id"]  # "echo: two"
    http = running.http()
    fork = http.post("/conversations/src/fork", json={"message_id": at, "id": "alt",
                                                      "title": "what if"})  # fmt: skip
    assert fork.status_code == 200, fork.text
    assert (fork.json()["id"], fork.json()["title"], fork.json()["message_count"]) == (
        "alt", "what if", 4,
    )  # fmt: skip
    assert [m["id"] for m in messages(running, "alt")] == [
        m["id"] for m in messages(running, "src")[:4]
    ]
    say(running, "alt", "four")
    assert [m.content for m in running.backend.calls[-1] if m.role == "user"] == [
        "one", "two", "four",
    ]  # fmt: skip
    assert len(messages(running, "src", limit=100)) == 6  # the source is unchanged
    auto = http.post("/conversations/src/fork", json={"message_id": at}).json()
    assert auto["id"].startswith("conv_") and auto["title"] == "one"


def test_fork_refuses_a_message_of_another_conversation(running: Running) -> None:
    say(running, "a", "in a")
    say(running, "b", "in b")
    of_b = messages(running, "b")[0]["id"]
    http = running.http()
    assert error(http.post("/conversations/a/fork", json={"message_id": of_b}), 404)[
        "code"] == "not_found"  # fmt: skip
    assert error(http.post("/conversations/a/fork", json={}), 400)["param"] == "message_id"
    assert error(http.post("/conversations/a/fork", content=b"nope", headers={
        "content-type": "application/json"}), 400)["code"] == "invalid_json"  # fmt: skip
    taken = http.post("/conversations/a/fork", json={"message_id": messages(running, "a")[0][
        "id"], "id": "b"})  # fmt: skip
    assert error(taken, 409)["code"] == "conversation_exists"
    assert [c.id for c in running.store.list_conversations()] == ["b", "a"]


# -- context ---------------------------------------------------------------------------------
def test_context_says_what_the_last_turn_sent_and_why() -> None:
    with Running(EchoBackend(), budget=Budget(150, 20)) as r:
        http = r.http()
        http.post("/conversations", json={"id": "c"})
        empty = http.get("/conversations/c/context").json()
        assert (empty["object"], empty["messages"], empty["left_out"]) == (
            "conversation.context", [], [],
        )  # fmt: skip
        for n in range(6):
            say(r, "c", f"message number {n} with a few words to fill the budget")
        got = http.get("/conversations/c/context").json()
        sent = r.backend.calls[-1]
        assert [m["content"] for m in got["messages"]] == [m.content for m in sent]
        assert [m["status"] for m in got["messages"]][-1] == "kept"
        assert got["tokens"] <= got["budget"]["available"] == 130
        assert got["budget"] == {"window": 150, "reserve_for_reply": 20, "available": 130}
        assert got["strategy"] and got["counter"]["name"]
        assert all(m["status"] == "dropped" for m in got["left_out"]) and got["left_out"]
        stored = [m.id for m in r.store.load("c")]
        assert [m["id"] for m in got["left_out"]] == stored[: len(got["left_out"])]
        assert got["reply"]["id"] == stored[-1]
        assert got["left_out"][0]["tokens"] > 0


def test_the_openai_sdks_conversations_resource_reads_our_answers(running: Running) -> None:
    client = running.client()
    chosen = {"id": "sdk-1", "title": "From the SDK"}
    made = client.conversations.create(metadata={"team": "blue"}, extra_body=chosen)
    assert (made.id, made.object, made.metadata) == ("sdk-1", "conversation", {"team": "blue"})
    assert client.conversations.retrieve("sdk-1").created_at == made.created_at
    updated = client.conversations.update("sdk-1", metadata={"team": "red"})
    assert updated.metadata == {"team": "red"}
    gone = client.conversations.delete("sdk-1")
    assert (gone.id, gone.object, gone.deleted) == ("sdk-1", "conversation.deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve("sdk-1")


class _GatedUpkeep(ChatSession):
    """Its turn's upkeep waits for ``gate``: the window in which the CLI may write."""

    gate = threading.Event()

    def upkeep(self) -> list[str]:
        if self._upkeep_due:
            self.gate.wait(5)
        return super().upkeep()


def test_a_change_made_outside_the_server_is_in_the_next_turn() -> None:
    """The server's cached session is checked against the store before each turn: a turn stored
    by a writer that takes no hold (straight into the store, as the CLI would), even while the
    server's last turn was still finishing, is sent with the next turn."""
    _GatedUpkeep.gate.clear()
    with Running(EchoBackend(), budget=Budget(2000, 100), session_class=_GatedUpkeep) as r:
        say(r, "c", "one")  # answered; its upkeep waits
        made = len(r.sessions)
        r.store.append("c", [Message("user", "from elsewhere"), Message("assistant", "ok")])
        _GatedUpkeep.gate.set()
        say(r, "c", "two")
        assert [m.content for m in r.backend.calls[-1] if m.role == "user"] == [
            "one", "from elsewhere", "two",
        ]  # fmt: skip
        assert len(r.sessions) == made  # the same session, reloaded; not a new one
        r.store.append("c", [Message("user", "and later"), Message("assistant", "ok")])
        say(r, "c", "three")
        assert [m.content for m in r.backend.calls[-1] if m.role == "user"][-2:] == [
            "and later", "three",
        ]  # fmt: skip
