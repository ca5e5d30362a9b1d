"""KV-cache shifting and the per-conversation cache of the embedded backend."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from memchat import GenerationParams, Message
from memchat.backends._llama_cache import (
    ConversationCache,
    SavedState,
    plan_shift,
    save_state,
)
from memchat.backends.llama_cpp import _NO_KEY, LlamaCppBackend

TOPICS = ["cats", "the ocean", "bread", "mountains", "trains", "chess", "gardens", "the moon"]
ONE = GenerationParams(max_tokens=1)


def chat(first: int, last: int, question: str) -> list[Message]:
    """System prompt, rounds first..last-1 (fixed texts), then a question."""
    msgs = [Message("system", "You are a concise assistant. Answer in one short sentence.")]
    for i in range(first, last):
        topic = TOPICS[i % len(TOPICS)]
        msgs.append(Message("user", f"Tell me one fact about {topic}."))
        msgs.append(Message("assistant", f"A fact about {topic}: people enjoy learning about it."))
    msgs.append(Message("user", question))
    return msgs


def arr(*parts: range | list[int]) -> np.ndarray:
    return np.array([t for p in parts for t in p], dtype=np.intc)


# -- planning (pure) --------------------------------------------------------------------------


def test_a_pure_extension_needs_no_shift() -> None:
    cached = arr(range(100))
    assert plan_shift(cached, arr(range(100), range(500, 520))) is None


def test_removed_spans_are_planned_exactly() -> None:
    head, a, b, c, gone1, gone2 = (
        range(0, 20),
        range(100, 140),
        range(200, 230),
        range(300, 340),
        range(900, 960),
        range(960, 990),
    )
    cached = arr(head, gone1, a, gone2, b, c)
    prompt = arr(head, a, b, c, range(700, 710))
    plan = plan_shift(cached, prompt)
    assert plan is not None
    kept = np.concatenate([cached[r.src : r.src_end] for r in plan.runs])
    assert (kept == prompt[: plan.kept]).all()
    assert plan.kept == 20 + 40 + 30 + 40 and plan.removed == 60 + 30


def test_changed_text_stops_the_plan_there() -> None:
    head, summary, rounds = range(0, 20), range(100, 160), range(200, 300)
    cached = arr(head, summary, rounds)
    changed = arr(head, range(5000, 5060), rounds)  # a new summary: rounds after it can't stay
    assert plan_shift(cached, changed) is None
    dropped = arr(head, range(240, 300), range(600, 610))  # front of the rounds trimmed
    plan = plan_shift(arr(head, range(240 - 40, 300)), dropped)
    assert plan is not None and plan.kept == 80 and plan.removed == 40


def test_short_coincidental_matches_are_not_kept() -> None:
    cached = arr(range(0, 20), range(100, 110), range(200, 300))
    prompt = arr(range(0, 20), range(200, 210), range(7000, 7040))  # only 10 matching tokens
    assert plan_shift(cached, prompt) is None


# -- the LRU (pure) -------------------------------------------------------------------------


class FakeLlama:
    n_tokens = 0


def state(nbytes: int) -> SavedState:
    return SavedState(b"", nbytes, np.zeros(0, dtype=np.intc))


def test_the_lru_keeps_under_its_byte_ceiling() -> None:
    cache = ConversationCache(max_bytes=250)
    for key in "abc":
        cache.put(key, state(100))
    stats = cache.stats()
    assert stats.bytes_held == 200 and stats.entries == 2 and stats.evictions == 1
    assert "a" not in cache and "b" in cache and "c" in cache
    cache.put("huge", state(300))  # larger than the ceiling: not kept, nothing else lost
    assert "huge" not in cache and cache.stats().bytes_held == 200
    cache.max_bytes = 100
    assert cache.stats().bytes_held == 100 and "c" in cache


def test_an_unknown_conversation_is_a_miss() -> None:
    cache = ConversationCache(max_bytes=1000)
    assert cache.activate(FakeLlama(), "a") is False
    assert cache.stats().misses == 1 and cache.stats().hits == 0


# -- the real model -------------------------------------------------------------------------


def last_usage(backend: LlamaCppBackend, msgs: list[Message], params: GenerationParams = ONE):
    chunks = list(backend.stream(msgs, params))
    assert chunks[-1].usage is not None
    return chunks[-1].usage


def kv_positions(backend: LlamaCppBackend) -> tuple[int, int]:
    import llama_cpp

    mem = backend._model().llama._ctx.memory
    return llama_cpp.llama_memory_seq_pos_min(mem, 0), llama_cpp.llama_memory_seq_pos_max(mem, 0)


@pytest.mark.model
def test_after_a_shift_the_cache_is_the_trimmed_prompt(fresh: LlamaCppBackend) -> None:
    last_usage(fresh, chat(0, 8, "Tell me about clouds."))
    before = fresh.cache_stats()
    trimmed = chat(3, 8, "Which topic came last?")
    model = fresh._model()
    expected = fresh.prompt_tokens(trimmed)
    cached = fresh._prepare(model, expected, _NO_KEY)  # the shift alone, no generation
    stats = fresh.cache_stats()
    three_rounds = len(fresh.prompt_tokens(chat(0, 8, "?"))) - len(
        fresh.prompt_tokens(chat(3, 8, "?"))
    )
    assert stats.shifts == before.shifts + 1
    assert stats.shifted_tokens == before.shifted_tokens + three_rounds
    assert fresh.cached_tokens() == expected[: len(fresh.cached_tokens())].tolist()
    assert len(expected) - len(fresh.cached_tokens()) < 20  # only the new question is left
    assert kv_positions(fresh) == (0, len(fresh.cached_tokens()) - 1)
    assert cached == len(fresh.cached_tokens())
    usage = last_usage(fresh, trimmed)
    assert usage.cached_tokens == cached and usage.prompt_tokens == len(expected)
    n = len(fresh.cached_tokens())
    assert fresh.cached_tokens() == expected[:n].tolist()  # generated token not yet decoded
    assert kv_positions(fresh) == (0, n - 1)


def argmaxes(llama: Any, forced: list[int] | None, n: int = 12) -> list[int]:
    """The greedy next token at each of ``n`` steps, feeding ``forced`` tokens when given."""
    out: list[int] = []
    for i in range(n):
        logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama._n_vocab,))
        out.append(int(np.argmax(logits)))
        llama.eval([forced[i] if forced else out[-1]])
    return out


def forced_agreement(backend: LlamaCppBackend, prompt: np.ndarray, shift_from: np.ndarray) -> float:
    """Share of 12 greedy next tokens (teacher-forced on the fresh ones) that a shifted cache
    predicts the same as a fresh evaluation of the same prompt."""
    llama = backend._model().llama
    backend.clear_cache()
    llama.eval(prompt.tolist())
    reference = argmaxes(llama, None)
    backend.clear_cache()
    llama.eval(shift_from.tolist())
    reused = backend._prepare(backend._model(), prompt, _NO_KEY)
    llama.eval(prompt[reused:].tolist())
    shifted = argmaxes(llama, reference)
    backend.clear_cache()
    return float(np.mean(np.array(shifted) == np.array(reference)))


@pytest.mark.model
def test_a_shifted_cache_predicts_like_a_fresh_evaluation(fresh: LlamaCppBackend) -> None:
    # Kept tokens keep the keys/values computed while the removed text preceded them, so the
    # match cannot be exact; docs/benchmarks/embedded.md measures it. Here: most tokens agree.
    full = fresh.prompt_tokens(chat(0, 6, "Tell me about clouds."))
    scores = [
        forced_agreement(fresh, fresh.prompt_tokens(chat(first, 6, q)), full)
        for first, q in [(2, "Name a fact about trains."), (3, "What is 2+2?")]
    ]
    print("teacher-forced agreement with a fresh evaluation:", scores)
    assert min(scores) >= 0.6 and sum(scores) / len(scores) >= 0.75, scores


@pytest.mark.model
def test_shift_off_re_reads_after_the_common_prefix(fresh: LlamaCppBackend) -> None:
    plain = LlamaCppBackend(shift=False)
    last_usage(plain, chat(0, 8, "Tell me about clouds."))
    before = plain.cache_stats().shifts
    trimmed = chat(3, 8, "Which topic came last?")
    usage = last_usage(plain, trimmed)
    assert plain.cache_stats().shifts == before
    assert usage.cached_tokens < 40  # the system prompt and a round header only


@pytest.mark.model
def test_a_changed_early_message_falls_back_to_prefix_reuse(fresh: LlamaCppBackend) -> None:
    msgs = chat(0, 6, "Tell me about clouds.")
    last_usage(fresh, msgs)
    before = fresh.cache_stats().shifts
    changed = [msgs[0], Message("user", "Summary: we talked about many things."), *msgs[3:]]
    usage = last_usage(fresh, changed)
    assert fresh.cache_stats().shifts == before
    prefix = len(fresh.prompt_tokens([msgs[0]])) - 4  # the system message, without priming
    assert prefix <= usage.cached_tokens < prefix + 5


@pytest.mark.model
def test_prefill_reads_ahead_so_the_turn_starts_from_the_cache(fresh: LlamaCppBackend) -> None:
    history = chat(0, 4, "Tell me about clouds.")[:-1]
    read = fresh.prefill(history)
    assert read == len(fresh._model().tokenize_prompt(history, reply=False))
    assert fresh.prefill(history) == 0  # already there
    usage = last_usage(fresh, [*history, Message("user", "And rain?")])
    assert usage.cached_tokens == read


@pytest.mark.model
def test_switching_back_reuses_the_conversations_cache(fresh: LlamaCppBackend) -> None:
    a, b = chat(0, 6, "Tell me about clouds."), chat(4, 8, "What is 2+2?")
    keyed = {k: GenerationParams(max_tokens=1, cache_key=k) for k in "ab"}
    before = fresh.cache_stats()
    last_usage(fresh, a, keyed["a"])
    last_usage(fresh, b, keyed["b"])
    more = [*a, Message("assistant", "ok"), Message("user", "More?")]
    usage = last_usage(fresh, more, keyed["a"])
    stats = fresh.cache_stats()
    assert usage.cached_tokens >= len(fresh.prompt_tokens(a)) - 1
    assert stats.hits == before.hits + 1 and stats.misses == before.misses + 2
    assert stats.entries == 1 and 0 < stats.bytes_held <= stats.max_bytes  # b's state is saved


@pytest.mark.model
def test_the_byte_ceiling_evicts_the_oldest_conversation(fresh: LlamaCppBackend) -> None:
    convs = {k: chat(i, i + 5, f"Question {k}?") for i, k in enumerate("abcd")}
    keyed = {k: GenerationParams(max_tokens=1, cache_key=k) for k in convs}
    last_usage(fresh, convs["a"], keyed["a"])
    one = save_state(fresh._model().llama)
    assert one is not None
    small = LlamaCppBackend(cache_bytes=int(2.5 * one.nbytes))  # room for two saved states
    try:
        before = small.cache_stats()
        for k in "bcd":
            last_usage(small, convs[k], keyed[k])
        stats = small.cache_stats()
        assert stats.evictions == before.evictions + 1 and stats.entries == 2
        assert 0 < stats.bytes_held <= stats.max_bytes == int(2.5 * one.nbytes)
        usage = last_usage(small, convs["a"], keyed["a"])  # a was the oldest: evicted
        assert usage.cached_tokens < 40  # only the shared system prompt is reused
        usage = last_usage(small, convs["c"], keyed["c"])  # c was kept
        assert usage.cached_tokens == usage.prompt_tokens - 1
    finally:
        small.clear_cache()
        LlamaCppBackend()._model()  # give the shared model its default ceiling back


def greedy_after(backend: LlamaCppBackend, *, pack: bool, forced: list[int] | None = None):
    """A big trim (shift), one decoded token, then the next question read with or without the
    packing that follows a big shift; returns (12 greedy tokens, tokens reused, packed?)."""
    llama = backend._model().llama
    backend.clear_cache()
    last_usage(backend, chat(0, 8, "Tell me about clouds."))
    last_usage(backend, chat(4, 8, "Which topic came last?"))  # frees half the cache
    convs = backend._model().conversations
    assert convs.fragmented
    convs.fragmented = pack
    prompt = backend.prompt_tokens(chat(4, 8, "Which topic came first?"))
    reused = backend._prepare(backend._model(), prompt, _NO_KEY)
    packed = not convs.fragmented
    llama.eval(prompt[reused:].tolist())
    out = argmaxes(llama, forced)
    backend.clear_cache()
    return out, reused, packed


@pytest.mark.model
def test_packing_after_a_big_shift_keeps_the_cache_and_its_predictions(
    fresh: LlamaCppBackend,
) -> None:
    reference, reused_plain, _ = greedy_after(fresh, pack=False)
    packed_tokens, reused_packed, packed = greedy_after(fresh, pack=True, forced=reference)
    assert packed and reused_packed == reused_plain > 100
    agreement = np.mean(np.array(packed_tokens) == np.array(reference))
    assert agreement >= 11 / 12, (packed_tokens, reference)


@pytest.mark.model
def test_only_a_shift_that_frees_a_quarter_of_the_cache_packs(fresh: LlamaCppBackend) -> None:
    last_usage(fresh, chat(0, 12, "Tell me about clouds."))
    last_usage(fresh, chat(1, 12, "And rain?"))  # one round of twelve: under a quarter
    assert not fresh._model().conversations.fragmented
    last_usage(fresh, chat(6, 12, "And snow?"))  # half of it
    assert fresh._model().conversations.fragmented
    usage = last_usage(fresh, chat(6, 12, "And hail?"))  # packed first, then read as usual
    assert not fresh._model().conversations.fragmented
    assert usage.cached_tokens > usage.prompt_tokens - 20
