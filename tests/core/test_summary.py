"""Summary memory: the pure strategy, and the session's upkeep of it (chunks, failures, forget)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memchat.backends.fake import ScriptedBackend
from memchat.core import (
    ApproxCounter,
    BackendUnavailable,
    Budget,
    CacheAware,
    ChatSession,
    History,
    Message,
    SummaryRecord,
    TokenBudget,
    UsageError,
)
from memchat.core.memory.base import limit_for
from memchat.core.memory.summary import (
    SUMMARY_INSTRUCTIONS,
    SummaryMemory,
    backend_summarizer,
    summary_request,
)
from memchat.storage import InMemoryStore

COUNTER = ApproxCounter()


def chat(rounds: int, system: str | None = "Be brief.") -> History:
    msgs = [Message("system", system)] if system else []
    for i in range(rounds):
        msgs.append(Message("user", f"note {i}: the code for locker {i} is {1000 + i}."))
        msgs.append(Message("assistant", f"Noted, locker {i} has code {1000 + i}."))
    return History(msgs, COUNTER)


def record_until(
    history: History, round_index: int, text: str = "earlier: lockers"
) -> SummaryRecord:
    return SummaryRecord(text, history.rounds[round_index][-1].id, 3, 1_700_000_000.0)


def collecting(cap: bool = True) -> tuple[list[list[Message]], object]:
    calls: list[list[Message]] = []

    def summarize(previous: str, messages: Sequence[Message], max_tokens: int) -> str:
        calls.append(list(messages))
        lines = [previous] if previous else []
        lines += [m.content for m in messages if m.role == "user"]
        text = " ".join(lines)
        return text[-4 * max_tokens :] if cap else text

    return calls, summarize


# -- the pure strategy -------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    rounds=st.integers(0, 60),
    covered=st.integers(0, 59),
    window=st.integers(120, 1500),
    share=st.floats(0.05, 0.6),
    long_summary=st.booleans(),
)
def test_summary_strategy_properties(
    rounds: int, covered: int, window: int, share: float, long_summary: bool
) -> None:
    history = chat(rounds)
    record = None
    if rounds:
        text = "lockers and codes. " * (200 if long_summary else 3)
        record = record_until(history, min(covered, rounds - 1), text)
    strategy = SummaryMemory(CacheAware(), record, share=share)
    budget = Budget(window, 40)
    ctx = strategy.select(history, budget)
    assert ctx.tokens <= budget.available
    assert ctx.tokens == sum(m.tokens or 0 for m in ctx.messages) + COUNTER.per_reply
    assert ctx.messages[: len(history.system)] == history.system
    if ctx.summary is not None:
        assert ctx.messages[len(history.system)] is ctx.summary  # right after the system prompt
    # rounds are never split, and the newest round is always sent
    sent = {m.id for m in ctx.messages}
    for r in history.rounds:
        assert all(m.id in sent for m in r) or not any(m.id in sent for m in r)
    if history.rounds:
        assert history.rounds[-1][0].id in sent


def test_summary_never_wipes_the_recent_turns() -> None:
    history = chat(80)
    budget = Budget(1200, 100)
    plain = CacheAware().select(history, Budget(1200 - int(0.25 * limit_for(history, budget)), 100))
    ctx = SummaryMemory(CacheAware(), record_until(history, 70)).select(history, budget)
    rounds_sent = [m for m in ctx.messages if m.role != "system"]
    assert rounds_sent == [m for m in plain.messages if m.role != "system"]
    assert len(rounds_sent) >= 10
    assert ctx.summary is not None and "earlier: lockers" in ctx.summary.content
    assert ctx.summarized and all(m.id not in {x.id for x in rounds_sent} for m in ctx.summarized)


def test_fold_waits_for_a_chunk_then_takes_the_oldest_whole_rounds() -> None:
    strategy = SummaryMemory(TokenBudget(), trigger=0.2)
    budget = Budget(600, 100)
    history = chat(10)
    while strategy.summary_due(history, budget) is None:
        history.append(Message("user", f"more {len(history.rounds)} about lockers and codes."))
        history.append(Message("assistant", "ok, noted it down."))
        assert len(history.rounds) < 200
    job = strategy.summary_due(history, budget)
    assert job is not None
    assert job.messages[0] is history.rounds[0][0]  # nothing summarised yet: oldest first
    assert job.messages[-1].role == "assistant"  # a whole round
    dropped = sum(m.tokens or 0 for m in strategy.select(history, budget).dropped)
    assert dropped >= 0.2 * (500 - history.system_tokens - COUNTER.per_reply)
    assert job.previous == ""


def test_invalid_shares_are_rejected() -> None:
    with pytest.raises(UsageError):
        SummaryMemory(share=1.5)
    with pytest.raises(UsageError):
        SummaryMemory(trigger=0)


def test_summary_prompt_keeps_names_numbers_dates_commitments() -> None:
    request = summary_request("old", [Message("user", "Meet Ana on May 3", created_at=0)], 100)
    assert request[0].content == SUMMARY_INSTRUCTIONS.format(words=70)
    for word in ("name", "number", "date", "commitment"):
        assert word in request[0].content
    assert "[1970-01-01 00:00] user: Meet Ana on May 3" in request[1].content


def test_backend_summarizer_asks_the_backend() -> None:
    backend = ScriptedBackend(["Ana: meeting on May 3."])
    text = backend_summarizer(backend)("", [Message("user", "Meet Ana on May 3")], 50)
    assert text == "Ana: meeting on May 3."
    assert backend.calls[0][0].content.startswith("You keep the running summary")
    assert backend.params[0].cache_key == "memchat-summary"


# -- the session's upkeep -----------------------------------------------------------------------
def test_summary_keeps_advancing_over_many_turns_and_is_stored_versioned() -> None:
    store = InMemoryStore()
    conv = store.create_conversation("long")
    calls, summarize = collecting()
    session = ChatSession(
        ScriptedBackend(),
        strategy=SummaryMemory(CacheAware()),
        budget=Budget(500, 100),
        store=store,
        conversation_id=conv.id,
        summarize=summarize,  # type: ignore[arg-type]
    )
    versions = []
    for i in range(300):
        session.ask(f"turn {i}: remember item {i}.")
        record = store.get_summary(conv.id)
        versions.append(record.version if record else 0)
    assert versions == sorted(versions)
    assert versions[-1] >= 20  # updated in chunks, not every turn ...
    assert versions[-1] < 150
    last_quarter = versions[225:]
    assert last_quarter[-1] > last_quarter[0]  # ... and still advancing at the end
    ctx = session.context_for("what was item 3?")
    assert ctx.summary is not None and ctx.messages[0] is ctx.summary
    # the summary reaches up to (nearly) the window: at most one trigger's worth is waiting
    record = store.get_summary(conv.id)
    assert record is not None
    ids = [r[-1].id for r in session.history.rounds]
    covered = ids.index(record.covers_until)
    dropped_rounds = len(ctx.dropped) // 2
    assert covered < dropped_rounds <= covered + 1 + 8
    assert f"item {covered}." in record.text
    assert all(m.content != "what was item 3?" for c in calls for m in c)


def test_a_streamed_reply_ends_before_its_summary_fold_which_upkeep_runs() -> None:
    """The stream ends with the reply; the fold (a model call that can take a minute on the
    embedded model) runs in ``upkeep()``, so the user reads the reply while it runs."""
    calls, summarize = collecting()
    store = InMemoryStore()
    conv = store.create_conversation("streamed").id
    session = ChatSession(
        ScriptedBackend(), strategy=SummaryMemory(CacheAware()), budget=Budget(400, 80),
        store=store, conversation_id=conv, summarize=summarize,  # type: ignore[arg-type]
    )  # fmt: skip
    during_streams = in_upkeep = 0
    for i in range(60):
        before = len(calls)
        reply = session.send(f"message {i} with some words to fill the window up")
        assert "".join(reply) == "ok" and reply.done
        during_streams += len(calls) - before
        before = len(calls)
        notes = session.upkeep()
        in_upkeep += len(calls) - before
        assert session.upkeep() == []  # nothing left to do
        if len(calls) > before:
            assert store.get_summary(conv) is not None
        assert all("could not" not in n for n in notes)
    assert during_streams == 0 and in_upkeep >= 3


def test_upkeep_nobody_ran_runs_before_the_next_turn_picks_its_context() -> None:
    calls, summarize = collecting()
    session = ChatSession(
        ScriptedBackend(), strategy=SummaryMemory(CacheAware()), budget=Budget(400, 80),
        summarize=summarize,  # type: ignore[arg-type]
    )  # fmt: skip
    for i in range(60):
        before = len(calls)
        reply = session.send(f"message {i} with some words to fill the window up")
        chunks = iter(reply)
        next(chunks)  # the first text: any pending fold ran before the context was chosen
        if len(calls) > before:
            break
        list(chunks)
    else:
        raise AssertionError("no fold ever became due")
    assert reply.context is not None and reply.context.summary is not None
    assert calls[-1][0].content.startswith("message ")
    list(chunks)


def test_a_failing_summary_never_breaks_the_turn() -> None:
    def reply(messages: Sequence[Message]) -> str:
        if messages[0].content.startswith("You keep the running summary"):
            raise BackendUnavailable("summariser down")
        return "fine"

    backend = ScriptedBackend([reply] * 400)
    notices: list[str] = []
    session = ChatSession(backend, strategy=SummaryMemory(CacheAware()), budget=Budget(400, 80))
    session.on_notice = notices.append
    for i in range(60):
        assert session.ask(f"message {i} with some words to fill the window up") == "fine"
    assert len(session.history.rounds) == 60
    assert any("summary could not be updated" in n for n in notices)
    assert session.strategy.summary is None  # type: ignore[attr-defined]
    # once the summariser works again the backlog is folded
    backend.replies = ["A summary of messages."] * 10 + ["fine"] * 10
    backend.replies[0] = "fine"
    session.ask("and now?")
    assert session.strategy.summary is not None  # type: ignore[attr-defined]


def test_forget_rebuilds_a_summary_that_used_the_message() -> None:
    store = InMemoryStore()
    conv = store.create_conversation("f")
    calls, summarize = collecting(cap=False)
    session = ChatSession(
        ScriptedBackend(),
        strategy=SummaryMemory(CacheAware()),
        budget=Budget(400, 80),
        store=store,
        conversation_id=conv.id,
        summarize=summarize,  # type: ignore[arg-type]
    )
    for i in range(40):
        session.ask(f"fact {i}: my locker code is {5000 + i}.")
    before = store.get_summary(conv.id)
    assert before is not None and "5000" in before.text
    secret = session.history.rounds[0][0]
    calls.clear()
    session.forget([secret.id])
    after = store.get_summary(conv.id)
    assert after is not None and "5000" not in after.text  # rebuilt without it
    assert calls and all(m.id != secret.id for c in calls for m in c)
    # forgetting a recent message the summary never saw leaves it alone
    version = after.version
    session.forget([session.history.rounds[-1][0].id])
    assert store.get_summary(conv.id).version == version  # type: ignore[union-attr]
