"""ChatSession: atomic turns, failures leave history untouched, cancel commits nothing."""

from __future__ import annotations

import pytest

from memchat import (
    BackendUnavailable,
    Budget,
    ChatSession,
    ContextTooLong,
    MemchatError,
    Price,
    RateLimited,
    ScriptedBackend,
    TokenBudget,
    Usage,
    UsageError,
)


def snapshot(session: ChatSession) -> list[tuple[str, str, str]]:
    return [(m.id, m.role, m.content) for m in session.history.messages()]


def test_turn_streams_and_commits_both_messages(backend: ScriptedBackend) -> None:
    backend.enqueue("Hello there, friend!")
    session = ChatSession(backend, system_prompt="Be brief.")
    reply = session.send("hi")
    chunks = list(reply)
    assert len(chunks) > 1 and "".join(chunks) == "Hello there, friend!"
    assert [(m.role, m.content) for m in session.history.messages()] == [
        ("system", "Be brief."),
        ("user", "hi"),
        ("assistant", "Hello there, friend!"),
    ]
    assert reply.done and reply.usage is not None and reply.usage.completion_tokens > 0
    assert backend.calls[0][-1].content == "hi"


@pytest.mark.parametrize(
    "error",
    [RateLimited("slow down", retry_after=3), BackendUnavailable("down"), ContextTooLong("x")],
)
def test_failed_call_leaves_history_as_before_and_keeps_text(
    backend: ScriptedBackend, error: MemchatError
) -> None:
    session = ChatSession(backend)
    session.ask("first")
    before = snapshot(session)
    backend.enqueue(error)
    if isinstance(error, ContextTooLong):
        backend.enqueue(error)  # ContextTooLong is retried once: fail both times
    with pytest.raises(type(error)) as info:
        session.ask("please keep me")
    assert info.value.user_text == "please keep me"  # type: ignore[attr-defined]
    assert snapshot(session) == before
    backend.enqueue("works now")  # resend succeeds
    assert session.ask(info.value.user_text) == "works now"  # type: ignore[attr-defined]


def test_stream_cut_mid_way_leaves_no_half_turn(backend: ScriptedBackend) -> None:
    session = ChatSession(backend)
    session.ask("first")
    before = snapshot(session)
    backend.enqueue("a long reply that will break")
    backend.fail_after = (2, BackendUnavailable("connection reset"))
    reply = session.send("second")
    got = []
    with pytest.raises(BackendUnavailable):
        for chunk in reply:
            got.append(chunk)
    assert got  # some text had streamed
    assert snapshot(session) == before


def test_cancel_mid_stream_commits_nothing(backend: ScriptedBackend) -> None:
    session = ChatSession(backend)
    backend.enqueue("one two three four five six")
    reply = session.send("go")
    next(iter(reply))
    reply.close()
    assert session.history.messages() == []
    assert not reply.done


def test_unstarted_reply_commits_nothing(backend: ScriptedBackend) -> None:
    session = ChatSession(backend)
    session.send("never read")
    assert session.history.messages() == []


def test_context_too_long_trims_harder_and_retries_once(backend: ScriptedBackend) -> None:
    session = ChatSession(backend, budget=Budget(400, 50), strategy=TokenBudget())
    for i in range(20):
        session.ask(f"message {i} " + "word " * 10)
    backend.enqueue(ContextTooLong("too long"), "fine")
    reply = session.send("again")
    assert reply.consume() == "fine"
    first, second = backend.calls[-2], backend.calls[-1]
    assert len(second) < len(first)
    assert any("trimmed harder" in n for n in reply.notices)


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_message_is_rejected_before_sending(backend: ScriptedBackend, text: str) -> None:
    session = ChatSession(backend)
    with pytest.raises(UsageError, match="empty"):
        session.send(text)
    assert backend.calls == []


def test_long_input_is_cut_at_a_sentence_and_user_told(backend: ScriptedBackend) -> None:
    session = ChatSession(backend, budget=Budget(300, 100), system_prompt="sys")
    text = " ".join(f"Sentence number {i} is here." for i in range(200))
    reply = session.send(text)
    reply.consume()
    sent = backend.calls[0][-1].content
    assert sent.endswith(".") and text.startswith(sent) and len(sent) < len(text)
    assert any("too long" in n and "cut" in n for n in reply.notices)
    assert session.last_context is not None and session.last_context.tokens <= 200


def test_meter_reports_window_fill_and_cost(backend: ScriptedBackend) -> None:
    session = ChatSession(
        backend, budget=Budget(100, 1), strategy=TokenBudget(), price=Price(1.0, 2.0, 0.5)
    )
    for _ in range(10):
        session.ask("fill it up")
    reading = session.meter()
    assert reading.window == 100 and 80 <= reading.context_tokens <= 99
    assert reading.level in {"warn", "critical"}
    assert reading.cost is not None and reading.cost > 0
    assert reading.trimmed
    assert "~" in reading.describe()  # approximate counter is flagged


def test_price_counts_cached_tokens_at_the_cached_rate() -> None:
    price = Price(input=2.0, output=8.0, cached_input=0.5)
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=0, cached_tokens=600_000)
    assert price.cost(usage) == pytest.approx(0.4 * 2.0 + 0.6 * 0.5)


def test_forget_pin_and_undo(backend: ScriptedBackend) -> None:
    session = ChatSession(backend, budget=Budget(200, 20), strategy=TokenBudget())
    session.ask("remember the code 4417")
    pinned_id = session.history.rounds[0][0].id
    session.pin(pinned_id)
    for i in range(30):
        session.ask(f"filler {i} " + "blah " * 8)
    ctx = session.context_for("what was the code?")
    assert any("4417" in m.content for m in ctx.messages)  # pinned survives trimming
    session.forget([pinned_id])
    assert all("4417" not in m.content for m in session.history.messages())
    last_user = session.undo_last()
    assert last_user.startswith("filler 29")
    with pytest.raises(UsageError):
        session.forget(["no-such-id"])


def test_store_failure_keeps_history_unchanged(backend: ScriptedBackend) -> None:
    class FailingStore:
        def append(self, conversation_id: str, messages: object) -> None:
            raise MemchatError("disk full")

    session = ChatSession(backend, store=FailingStore(), conversation_id="c1")  # type: ignore[arg-type]
    with pytest.raises(MemchatError):
        session.ask("hello")
    assert session.history.messages() == []


def test_conversation_id_becomes_the_cache_key(backend: ScriptedBackend) -> None:
    class NullStore:
        def append(self, conversation_id: str, messages: object) -> None:
            pass

    session = ChatSession(backend, store=NullStore(), conversation_id="conv-7")  # type: ignore[arg-type]
    session.ask("hi")
    assert backend.params[0].cache_key == "conv-7"


def test_turn_params_override_the_sessions_for_that_turn_only(backend: ScriptedBackend) -> None:
    from memchat.core import GenerationParams

    class NullStore:
        def append(self, conversation_id: str, messages: object) -> None:
            pass

    base = GenerationParams(max_tokens=256, temperature=0.7, stop=("END",))
    session = ChatSession(backend, params=base, store=NullStore(), conversation_id="c")  # type: ignore[arg-type]
    session.send("one", GenerationParams(max_tokens=8, seed=3)).consume()
    session.ask("two")
    first, second = backend.params
    assert (first.max_tokens, first.temperature, first.seed, first.stop) == (8, 0.7, 3, ("END",))
    assert first.cache_key == "c"
    assert second == GenerationParams(max_tokens=256, temperature=0.7, stop=("END",), cache_key="c")


def test_finish_reason_is_the_backends_last_chunk() -> None:
    from collections.abc import Iterator, Sequence

    from memchat.core import ApproxCounter, Chunk, GenerationParams, Message

    class Cut:
        model, context_window = "cut", 4096

        def token_counter(self) -> ApproxCounter:
            return ApproxCounter()

        def stream(self, messages: Sequence[Message], params: GenerationParams) -> Iterator[Chunk]:
            yield Chunk("partial")
            yield Chunk("", "length", Usage(5, 2))

    reply = ChatSession(Cut()).send("hi")
    assert reply.finish_reason is None
    assert reply.consume() == "partial"
    assert reply.finish_reason == "length"


def test_nul_is_removed_and_broken_unicode_rejected(backend: ScriptedBackend) -> None:
    session = ChatSession(backend)
    session.ask("a\x00b")
    assert session.history.rounds[0][0].content == "ab"
    with pytest.raises(UsageError, match="Unicode"):
        session.send("bad \ud800 surrogate")
    with pytest.raises(UsageError, match="empty"):
        session.send("\x00")
    assert len(session.history.rounds) == 1


def test_reset_clears_the_stored_conversation_too(backend: ScriptedBackend) -> None:
    """A reset conversation must not come back when it is resumed from its store."""
    from memchat.storage import InMemoryStore

    store = InMemoryStore()
    conv = store.create_conversation("to reset").id
    session = ChatSession(backend, system_prompt="Be brief.", store=store, conversation_id=conv)
    session.ask("first")
    session.ask("second")
    store.save_summary(conv, "they said first and second", "x")
    assert len(store.load(conv)) == 4
    session.reset()
    assert store.load(conv) == [] and store.get_summary(conv) is None
    assert [m.role for m in session.history.messages()] == ["system"]
    assert session.last_context is None
    session.ask("fresh")
    resumed = ChatSession(backend, history=store.load(conv))
    assert [m.content for m in resumed.history.messages()] == ["fresh", "ok"]


def test_a_budget_given_as_a_token_count_gets_the_default_reserve() -> None:
    # a 4,096-token model: 2,096 tokens past the budget hold the reply; 4,000 leave 96 of 1,000
    assert ChatSession(ScriptedBackend(), budget=2000).budget == Budget(2000, 0)
    assert ChatSession(ScriptedBackend(), budget=4000).budget == Budget(4000, 904)
    for bad in ("2000", 2000.0, True):
        with pytest.raises(UsageError, match="budget must be a Budget or a token count"):
            ChatSession(ScriptedBackend(), budget=bad)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="must be positive"):
        ChatSession(ScriptedBackend(), budget=0)
