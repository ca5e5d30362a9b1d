"""KV splicing on the embedded model: recalled lines read ahead, then put into the cache."""

from __future__ import annotations

import time

import numpy as np
import pytest
from tests.contract.test_kv_shift import argmaxes, kv_positions

from memchat import ChatSession, GenerationParams, Message
from memchat.backends.fake import ReadAheadBackend
from memchat.backends.llama_cpp import _NO_KEY, LlamaCppBackend
from memchat.core.memory import Budget
from memchat.core.memory.base import RECALL_BLOCK_ID
from memchat.core.memory.recall import RECALL_LEAD, block_pieces, block_text
from memchat.retrieval.index import ConversationIndex
from memchat.strategies import recall_strategy

DAY = 86_400.0
FACTS = [
    "my sister Ana moved to Porto last spring and teaches chemistry there",
    "the dentist appointment moved to the 14th, a Thursday, at nine",
    "I named the new puppy Biscuit, a beagle with one brown ear",
    "our team offsite is in Tallinn this year, the week after Easter",
    "I am allergic to hazelnuts, so I always check chocolate labels twice",
    "the blue bike in the garage belongs to my neighbour Tomasz",
]


def old_messages() -> list[Message]:
    start = time.time() - 30 * DAY
    return [
        Message("user", f"By the way, {fact}.", created_at=start + (i // 3) * DAY)
        for i, fact in enumerate(FACTS)
    ]


def prompt_with(recalled: list[Message], question: str) -> list[Message]:
    return [
        Message("system", "You are a concise assistant."),
        Message("user", "Hello there!"),
        Message("assistant", "Hi! How can I help?"),
        Message("system", block_text(recalled)),
        Message("user", question),
    ]


@pytest.mark.model
def test_a_spliced_cache_is_the_prompt_it_stands_for(fresh: LlamaCppBackend) -> None:
    old = old_messages()
    assert fresh.splicing
    before = fresh.cache_stats()
    read = fresh.precompute(block_pieces(old), after=RECALL_LEAD)
    assert read > sum(len(m.content) // 8 for m in old)  # every line was read once
    assert fresh.precompute(block_pieces(old), after=RECALL_LEAD) == 0  # held already
    msgs = prompt_with(old, "Which city did my sister move to?")
    prompt = fresh.prompt_tokens(msgs)
    reused = fresh._prepare(fresh._model(), prompt, _NO_KEY)
    stats = fresh.cache_stats()
    # the block's lead (system opening + header), both day lines and every message line were
    # spliced; only the rest (the question) is left to read
    assert stats.spliced - before.spliced == 1 + 2 + len(old)
    held = fresh.cached_tokens()
    assert held == prompt[: len(held)].tolist()  # token for token the prompt's prefix
    assert kv_positions(fresh) == (0, len(held) - 1)
    spliced = stats.spliced_tokens - before.spliced_tokens
    assert reused == spliced  # nothing was cached before: only spliced tokens
    chunks = list(fresh.stream(msgs, GenerationParams(max_tokens=4)))
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens == len(prompt)
    assert usage.cached_tokens >= spliced


def predictions(
    backend: LlamaCppBackend, prompt: np.ndarray, *, splice: bool, forced: list[int] | None = None
) -> list[int]:
    """Greedy next tokens after ``prompt``, read fresh or with the old lines spliced in."""
    llama = backend._model().llama
    backend.clear_cache()
    reused = 0
    if splice:
        backend.precompute(block_pieces(old_messages()), after=RECALL_LEAD)
        reused = backend._prepare(backend._model(), prompt, _NO_KEY)
        assert reused > 0
    llama.eval(prompt[reused:].tolist())
    return argmaxes(llama, forced)


@pytest.mark.model
def test_a_spliced_cache_predicts_like_a_fresh_read(fresh: LlamaCppBackend) -> None:
    # a spliced line attended only to the block's header, not to the text before it, so the
    # predictions cannot match exactly; docs/benchmarks.md (embedded) measures the agreement
    scores = []
    for question in ("Which city did my sister move to?", "What is my puppy called?"):
        prompt = fresh.prompt_tokens(prompt_with(old_messages(), question))
        reference = predictions(fresh, prompt, splice=False)
        spliced = predictions(fresh, prompt, splice=True, forced=reference)
        scores.append(float(np.mean(np.array(spliced) == np.array(reference))))
    print("teacher-forced agreement of a spliced cache with a fresh read:", scores)
    assert sum(scores) / len(scores) >= 0.6, scores


@pytest.mark.model
def test_splicing_off_reads_the_whole_prompt(fresh: LlamaCppBackend) -> None:
    off = LlamaCppBackend(splice_bytes=0)
    assert not off.splicing
    off.token_counter()  # loads the model: the one ``fresh`` has, with its pieces
    assert off.precompute(block_pieces(old_messages()), after=RECALL_LEAD) == 0
    fresh.precompute(block_pieces(old_messages()), after=RECALL_LEAD)  # held, but not used
    before = off.cache_stats().spliced
    msgs = prompt_with(old_messages(), "What is my puppy called?")
    usage = list(off.stream(msgs, GenerationParams(max_tokens=1)))[-1].usage
    assert usage is not None and usage.cached_tokens == 0
    assert off.cache_stats().spliced == before


@pytest.mark.model
def test_a_context_that_cannot_splice_falls_back_to_reading(fresh: LlamaCppBackend) -> None:
    model = fresh._model()
    model.can_splice = False  # what a recurrent model or an older llama.cpp gives
    before = fresh.cache_stats().spliced
    try:
        assert fresh.precompute(block_pieces(old_messages()), after=RECALL_LEAD) == 0
        msgs = prompt_with(old_messages(), "Whose is the blue bike?")
        usage = list(fresh.stream(msgs, GenerationParams(max_tokens=1)))[-1].usage
        assert usage is not None and usage.cached_tokens == 0
        assert fresh.cache_stats().spliced == before
    finally:
        model.can_splice = True


@pytest.mark.model
def test_text_that_differs_is_read_not_spliced(fresh: LlamaCppBackend) -> None:
    old = old_messages()
    fresh.precompute(block_pieces(old), after=RECALL_LEAD)
    before = fresh.cache_stats().spliced
    edited = [Message(m.role, m.content.replace("the", "a"), created_at=m.created_at) for m in old]
    prompt = fresh.prompt_tokens(prompt_with(edited, "Where is the offsite?"))
    fresh._prepare(fresh._model(), prompt, _NO_KEY)
    assert (
        fresh.cache_stats().spliced - before == 3
    )  # only the lead and the two day lines are unchanged
    held = fresh.cached_tokens()
    assert held == prompt[: len(held)].tolist()


def test_the_session_reads_each_new_round_ahead() -> None:
    backend = ReadAheadBackend()
    strategy = recall_strategy(ConversationIndex("bm25"))
    session = ChatSession(backend, strategy=strategy)
    backend.enqueue("Porto, where she teaches.")
    session.ask("My sister Ana moved to Porto.")
    assert len(backend.read_ahead) == 1
    texts, after = backend.read_ahead[0]
    assert after == RECALL_LEAD
    assert "user: My sister Ana moved to Porto.\n" in texts
    assert "assistant: Porto, where she teaches.\n" in texts
    assert any(t.startswith("\n[") and t.endswith("]\n") for t in texts)  # its day line


def test_the_session_reads_the_reply_ahead_without_recall_too() -> None:
    backend = ReadAheadBackend()
    session = ChatSession(backend, system_prompt="Be brief.")
    backend.enqueue("Hi!")
    session.ask("Hello")
    assert backend.read_ahead == []  # no recall: no lines to keep
    sent, reply = backend.calls[0], Message("assistant", "Hi!")
    assert [(m.role, m.content) for m in backend.prefilled[0]] == [
        *((m.role, m.content) for m in sent),
        (reply.role, reply.content),
    ]


def test_the_reply_is_read_ahead_without_the_recall_block() -> None:
    # the block sits just before the newest user message: the next prompt goes on from the
    # reply without it, so the cache is trimmed of it while the user reads
    backend = ReadAheadBackend()
    strategy = recall_strategy(ConversationIndex("bm25"))
    session = ChatSession(backend, strategy=strategy, budget=Budget(300, reserve_for_reply=20))
    for i in range(12):
        backend.enqueue(f"Noted, fact {i}.")
        session.ask(f"Fact {i}: the parcel number {i} went to locker {100 + i} at the station.")
    backend.enqueue("Locker 103.")
    session.ask("Which locker did parcel 3 go to?")
    sent = backend.calls[-1]
    assert any(m.id == RECALL_BLOCK_ID for m in sent)  # recall sent a block
    assert [(m.role, m.content) for m in backend.prefilled[-1]] == [
        *((m.role, m.content) for m in sent if m.id != RECALL_BLOCK_ID),
        ("assistant", "Locker 103."),
    ]
