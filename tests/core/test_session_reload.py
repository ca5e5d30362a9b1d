"""ChatSession.reload: two sessions on one stored conversation, as two server workers hold it."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from memchat.backends.fake import ScriptedBackend
from memchat.core import Budget, ChatSession, Message, SummaryMemory, TokenBudget
from memchat.core.history import Round
from memchat.core.memory.recall import RecallMemory
from memchat.core.store import Store
from memchat.storage import InMemoryStore


def worker(store: Store, cid: str, backend: ScriptedBackend, **kw: object) -> ChatSession:
    return ChatSession(
        backend, store=store, conversation_id=cid, history=store.load(cid),
        budget=kw.pop("budget", Budget(4000, 100)), strategy=kw.pop("strategy", TokenBudget()),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def users(messages: Sequence[Message]) -> list[str]:
    return [m.content for m in messages if m.role == "user"]


def test_a_reloaded_session_sends_the_other_workers_turns() -> None:
    store, backend = InMemoryStore(), ScriptedBackend(default="ok")
    cid = store.create_conversation("c").id
    a, b = worker(store, cid, backend), worker(store, cid, backend)
    a.ask("one")
    b.reload(store.load(cid))
    b.ask("two")
    a.reload(store.load(cid))
    a.ask("three")
    assert users(backend.calls[-1]) == ["one", "two", "three"]
    assert users(store.load(cid)) == ["one", "two", "three"]


def test_reload_keeps_the_system_prompt_and_known_counts() -> None:
    store, backend = InMemoryStore(), ScriptedBackend(default="ok")
    cid = store.create_conversation("c").id
    a = worker(store, cid, backend, system_prompt="Be brief.")
    a.ask("one")
    counts = {m.id: m.tokens for m in a.history.messages()}
    a.reload(store.load(cid))
    assert a.history.system[0].content == "Be brief."
    assert {m.id: m.tokens for m in a.history.messages()} == counts


def test_reload_sees_a_forget_and_a_pin_made_elsewhere() -> None:
    store, backend = InMemoryStore(), ScriptedBackend(default="ok")
    cid = store.create_conversation("c").id
    a, b = worker(store, cid, backend), worker(store, cid, backend)
    a.ask("keep me")
    a.ask("forget me")
    b.reload(store.load(cid))
    gone = [m.id for m in b.history.rounds[1]]
    b.forget(gone)
    b.pin(b.history.rounds[0][0].id)
    a.reload(store.load(cid))
    a.ask("next")
    assert users(backend.calls[-1]) == ["keep me", "next"]
    assert a.history.rounds[0][0].pinned


class _Index:
    """A recall index that records what it was told (the collaborator, not the thing tested)."""

    def __init__(self) -> None:
        self.indexed: set[str] = set()

    def search(self, query: str, k: int) -> list[object]:
        return []

    def attach(self, store: Store | None, conversation_id: str | None) -> None:
        pass

    def sync(self, rounds: Sequence[Round]) -> None:
        self.indexed |= {m.id for r in rounds for m in r}

    def remove(self, message_ids: Collection[str]) -> None:
        self.indexed -= set(message_ids)


def test_reload_keeps_the_recall_index_in_step() -> None:
    store, backend = InMemoryStore(), ScriptedBackend(default="ok")
    cid = store.create_conversation("c").id
    index = _Index()
    # a small budget: rounds are indexed once the conversation overflows it
    a = worker(store, cid, backend, strategy=RecallMemory(index), budget=Budget(300, 50))  # type: ignore[arg-type]
    b = worker(store, cid, backend)
    a.ask("one " * 150)
    a.ask("more " * 150)
    assert index.indexed == {m.id for m in store.load(cid)}
    b.reload(store.load(cid))
    b.ask("two")
    b.forget([b.history.rounds[0][0].id])
    a.reload(store.load(cid))
    a.ask("three " * 150)
    stored = {m.id for m in store.load(cid)}
    assert index.indexed == stored  # "one" left the index; the rest are in it


def test_reload_reads_the_summary_another_worker_saved() -> None:
    store, backend = InMemoryStore(), ScriptedBackend(default="ok")
    cid = store.create_conversation("c").id
    a = worker(store, cid, backend, strategy=SummaryMemory())
    a.ask("hello")
    last = store.load(cid)[-1].id
    store.save_summary(cid, "the user said hello", last)  # another worker's fold
    a.reload(store.load(cid))
    a.ask("again")
    sent = backend.calls[-1]
    assert a.strategy.summary is not None  # type: ignore[attr-defined]
    assert a.strategy.summary.text == "the user said hello"  # type: ignore[attr-defined]
    assert users(sent)[-1] == "again"
