"""Recall memory: the pure strategy (given a retriever) and the session's index upkeep."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from memchat.backends.fake import ScriptedBackend
from memchat.core import ApproxCounter, Budget, CacheAware, ChatSession, History, Message
from memchat.core.history import Round
from memchat.core.memory.base import limit_for
from memchat.core.memory.recall import RECALL_HEADER, RecallMemory, RoundIndex
from memchat.core.memory.summary import SummaryMemory
from memchat.core.store import Store, SummaryRecord

COUNTER = ApproxCounter()


class WordOverlap:
    """A small real retriever: messages ranked by shared words with the query (a RoundIndex)."""

    def __init__(self) -> None:
        self.docs: dict[str, set[str]] = {}
        self.attached: tuple[object, object] | None = None

    def attach(self, store: Store | None, conversation_id: str | None) -> None:
        self.attached = (store, conversation_id)

    def sync(self, rounds: Sequence[Round]) -> None:
        for m in (m for r in rounds for m in r):
            self.docs.setdefault(m.id, set(re.findall(r"\w+", m.content)))

    def remove(self, message_ids: Collection[str]) -> None:
        for key in list(self.docs):
            if key in message_ids:
                del self.docs[key]

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        words = set(re.findall(r"\w+", query))
        scored = [(key, float(len(words & doc))) for key, doc in self.docs.items()]
        return sorted((s for s in scored if s[1] > 0), key=lambda s: -s[1])[:k]


class Everything:
    """Returns every message, newest first: the recall must still dedupe and fit."""

    def __init__(self, history: History) -> None:
        self.history = history

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        keys = [m.id for r in reversed(self.history.rounds) for m in reversed(r)]
        return [(key, 1.0 / (i + 1)) for i, key in enumerate(keys[:k])]


def chat(rounds: int, pins: set[int] = frozenset()) -> History:  # type: ignore[assignment]
    msgs = [Message("system", "Be brief.")]
    for i in range(rounds):
        msgs.append(
            Message(
                "user",
                f"topic{i} fact: value{i} and more words",
                created_at=86400.0 * i,
                pinned=i in pins,
            )
        )
        msgs.append(Message("assistant", f"ok {i}", created_at=86400.0 * i + 5))
    return History(msgs, COUNTER)


@settings(max_examples=60, deadline=None)
@given(
    rounds=st.integers(1, 50),
    window=st.integers(100, 1200),
    share=st.floats(0.05, 0.7),
    pins=st.sets(st.integers(0, 49), max_size=2),
    summary=st.booleans(),
)
def test_recall_properties(
    rounds: int, window: int, share: float, pins: set[int], summary: bool
) -> None:
    history = chat(rounds, pins)
    inner = CacheAware()
    if summary:
        record = SummaryRecord("old stuff " * 30, history.rounds[0][-1].id, 1, 0.0)
        inner = SummaryMemory(CacheAware(), record)  # type: ignore[assignment]
    strategy = RecallMemory(Everything(history), inner, share=share, k=5)
    budget = Budget(window, 30)
    ctx = strategy.select(history, budget)
    assert ctx.tokens <= budget.available
    assert ctx.tokens == sum(m.tokens or 0 for m in ctx.messages) + COUNTER.per_reply
    assert ctx.messages[0] is history.system[0]
    sent = [m.id for m in ctx.messages]
    assert len(sent) == len(set(sent))
    for r in history.rounds:  # rounds are never split
        assert all(m.id in sent for m in r) or not any(m.id in sent for m in r)
    blocks = [m for m in ctx.messages if m.id == "recalled"]
    assert len(blocks) == (1 if ctx.recalled else 0)
    for rec in ctx.recalled:  # deduplicated against the window and pinned rounds
        assert not any(m.id in sent for m in rec.round)
        assert rec.round[0] not in history.rounds[-1]
    if blocks:  # stable position: right before the newest user message
        at = ctx.messages.index(blocks[0])
        assert ctx.messages[at + 1] is history.rounds[-1][0]
        assert len(ctx.recalled) <= 5
    if ctx.dropped and len(ctx.recalled) < 5:  # room is left only when no message fits it
        left = budget.available - ctx.tokens
        unsent = [m for m in ctx.dropped if m.id not in {r.round[0].id for r in ctx.recalled}]
        overhead = 16 if blocks else 45  # a day line, a role, rounding; the block header
        assert all((m.tokens or 0) + overhead > left for m in unsent)


def test_recall_brings_back_the_relevant_round_with_its_date() -> None:
    history = chat(60)
    index = WordOverlap()
    index.sync(history.rounds)
    history.append(Message("user", "what was topic7 about?"))
    ctx = RecallMemory(index, CacheAware()).select(history, Budget(400, 50))
    assert [r.round[0].content for r in ctx.recalled] == ["topic7 fact: value7 and more words"]
    block = ctx.messages[-2]
    assert block.role == "system" and block.content.startswith(RECALL_HEADER)
    assert "\n[1970-01-08]\nuser: topic7 fact" in block.content
    assert ctx.recalled[0].score > 0
    assert "recalled 1 older messages" in " ".join(ctx.notes)


def test_the_gate_recalls_only_what_the_recent_window_does_not_already_match() -> None:
    history = chat(60)
    index = WordOverlap()
    index.sync(history.rounds)
    gated = RecallMemory(index, CacheAware(), share=0.8, gate=1.0)  # a tail holding round 59
    budget = Budget(400, 50)
    newest = history.rounds[-1][0].content  # "topic59 fact: value59 and more words"
    # a query the window's newest message matches best: nothing recalled, nothing extra sent
    history.append(Message("user", f"more on {newest}?"))
    ctx = gated.select(history, budget)
    assert ctx.recalled == [] and all(m.id != "recalled" for m in ctx.messages)
    assert "nothing recalled" in " ".join(ctx.notes)
    ungated = RecallMemory(index, CacheAware(), share=0.8)
    assert ungated.select(history, budget).recalled
    history.pop_last_round()
    # a query only an old message matches: recalled as without the gate
    history.append(Message("user", "what was topic7 value7 about?"))
    ctx = gated.select(history, budget)
    assert [r.round[0].content for r in ctx.recalled] == ["topic7 fact: value7 and more words"]
    history.pop_last_round()
    # no hit at all: nothing recalled
    history.append(Message("user", "zzz?"))
    assert gated.select(history, budget).recalled == []


def test_prefix_before_the_recall_block_is_what_the_window_alone_sends() -> None:
    history = chat(80)
    index = WordOverlap()
    index.sync(history.rounds)
    budget = Budget(600, 50)
    for question in ("about topic3?", "and topic11 value11?", "no match here"):
        history.append(Message("user", question))
        ctx = RecallMemory(index, CacheAware(), share=0.3).select(history, budget)
        reserve = int(0.3 * limit_for(history, budget))  # the share set aside for recall
        window_only = CacheAware().select(history, Budget(600 - reserve, 50))
        body = [m for m in ctx.messages if m.id != "recalled"]
        assert body == window_only.messages
        history.pop_last_round()


def test_a_failing_retriever_only_costs_the_recall() -> None:
    class Broken:
        def search(self, query: str, k: int) -> list[tuple[str, float]]:
            raise RuntimeError("index on fire")

    history = chat(40)
    history.append(Message("user", "topic1?"))
    ctx = RecallMemory(Broken(), CacheAware()).select(history, Budget(300, 20))
    assert not ctx.recalled and ctx.messages[-1].content == "topic1?"
    assert any("recall failed" in n for n in ctx.notes)


def test_session_keeps_the_index_in_sync_and_forget_removes_from_it() -> None:
    index = WordOverlap()
    assert isinstance(index, RoundIndex)
    session = ChatSession(ScriptedBackend(), strategy=RecallMemory(index), budget=Budget(300, 50))
    session.ask("my locker code is 4711 remember it")
    for i in range(40):
        session.ask(f"filler message {i} about nothing much")
    assert len(index.docs) == 82  # every committed message is indexed, after its turn
    ctx = session.context_for("what is my locker code?")
    assert [r.round[0].content for r in ctx.recalled][:1] == ["my locker code is 4711 remember it"]
    assert len(index.docs) == 82  # the probe itself is not indexed
    locker = session.history.rounds[0][0]
    session.forget([locker.id])
    assert locker.id not in index.docs
    ctx = session.context_for("what is my locker code?")
    assert all("4711" not in m.content for m in ctx.messages)


def test_hybrid_delegates_the_summary_to_its_window() -> None:
    history = chat(50)
    strategy = RecallMemory(WordOverlap(), SummaryMemory(CacheAware(), trigger=0.1), share=0.6)
    budget = Budget(400, 50)
    job = strategy.summary_due(history, budget)
    assert job is not None and job.messages[0] is history.rounds[0][0]
    record = SummaryRecord("summary text", job.covers_until, 1, 0.0)
    updated = strategy.with_summary(record)
    assert updated.summary == record and strategy.summary is None
    ctx = updated.select(history, budget)
    assert ctx.summary is not None and ctx.messages[1] is ctx.summary


def test_reset_empties_the_index_and_the_summary() -> None:
    index = WordOverlap()
    record = SummaryRecord("old", "nothing", 1, 0.0)
    strategy = RecallMemory(index, SummaryMemory(CacheAware(), record))
    session = ChatSession(ScriptedBackend(), strategy=strategy, budget=Budget(300, 50))
    for i in range(5):
        session.ask(f"message {i} " + "filler words " * 30)
    assert len(index.docs) == 10
    session.reset()
    assert index.docs == {} and session.strategy.summary is None  # type: ignore[attr-defined]
    session.ask("fresh start")
    assert index.docs == {}  # a conversation that fits the budget is not indexed yet


def test_rounds_are_indexed_once_the_conversation_overflows() -> None:
    """Nothing is embedded while the whole conversation fits (nothing is searched); the turn
    after which it no longer fits indexes the whole backlog, in upkeep."""
    index = WordOverlap()
    session = ChatSession(
        ScriptedBackend(), strategy=RecallMemory(index, CacheAware()), budget=Budget(400, 50)
    )
    session.ask("hello")
    assert index.docs == {}
    turns = 1
    while index.docs == {}:
        session.ask("tell me more " * 20)
        turns += 1
        assert turns < 20
    assert len(index.docs) == 2 * turns  # every round so far, the first one included


def test_a_long_hit_is_ranked_by_its_score_per_token() -> None:
    """Two old messages score the same; the budget leaves room for one: by score alone the long
    one (ranked first) is sent, cut; by default the short one is sent whole."""
    long_text = "the blue kettle " + "and more words about kettles " * 80
    history = History(
        [
            Message("system", "Be brief."),
            Message("user", long_text),
            Message("assistant", "ok"),
            Message("user", "blue kettle"),
            Message("assistant", "ok"),
            *[
                m
                for i in range(30)
                for m in (Message("user", f"filler {i} " * 8), Message("assistant", "fine " * 8))
            ],
            Message("user", "what about the blue kettle?"),
        ],
        COUNTER,
    )
    ids = [m.id for r in history.rounds[:2] for m in r if m.role == "user"]

    class Tie:
        def search(self, query: str, k: int) -> list[tuple[str, float]]:
            return [(ids[0], 1.0), (ids[1], 1.0)]

    budget = Budget(window=300, reserve_for_reply=0)
    plain = RecallMemory(Tie(), CacheAware(), share=0.9, long=None).select(history, budget)
    dense = RecallMemory(Tie(), CacheAware(), share=0.9).select(history, budget)
    assert [r.round[0].id for r in dense.recalled][:1] == [ids[1]]
    assert plain.recalled[0].round[0].id == ids[0]
    assert dense.tokens <= budget.available and plain.tokens <= budget.available


class _CountingEmbedder:
    """A tiny bag-of-words embedder that counts the texts it was asked to embed."""

    name, dim = "counting-words", 8

    def __init__(self) -> None:
        self.texts = 0

    def embed(self, texts: list[str]) -> np.ndarray:
        self.texts += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                out[i, hash(word) % self.dim] += 1.0
            out[i] /= max(float(np.linalg.norm(out[i])), 1.0)
        return out


def _recall_session(embedder: _CountingEmbedder, rounds: int, window: int) -> ChatSession:
    from memchat.retrieval import ConversationIndex

    history: list[Message] = []
    for i in range(rounds):
        history += [Message("user", f"question {i} about topic {i}"), Message("assistant", f"a{i}")]
    index = ConversationIndex("hybrid", embedder=embedder)  # type: ignore[arg-type]
    return ChatSession(
        ScriptedBackend(),
        strategy=RecallMemory(index),
        budget=Budget(window, 100),
        history=history,
        counter=ApproxCounter(),
    )


def test_a_stateless_history_that_fits_embeds_nothing() -> None:
    """RecallMemory sends a conversation that fits as it is: indexing it before the first
    token (the server's stateless requests, ~2 s for 100 rounds) would be wasted."""
    embedder = _CountingEmbedder()
    session = _recall_session(embedder, rounds=30, window=100_000)
    reply = session.send("what was topic 3?")
    assert "".join(reply) and not reply.context.dropped  # as the server streams it: no upkeep
    assert embedder.texts == 0


def test_the_backlog_is_indexed_at_the_first_turn_that_overflows() -> None:
    embedder = _CountingEmbedder()
    session = _recall_session(embedder, rounds=80, window=600)
    reply = session.send("what was topic 3?")
    reply.consume()
    assert reply.context.dropped and embedder.texts > 0
    assert any("topic 3" in m.content for m in reply.context.messages[:-1])  # recalled
