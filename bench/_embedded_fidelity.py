"""Shift fidelity for bench/bench_embedded.py: does a shifted cache predict like a fresh read?"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench._embedded_setup import SYSTEM, user_messages
from memchat import ChatSession, Message
from memchat.backends._llama_cache import common_prefix
from memchat.backends.llama_cpp import LlamaCppBackend


def argmaxes(llama: Any, forced: list[int] | None, n: int = 16) -> list[int]:
    """The greedy next token at each of ``n`` steps, feeding ``forced`` tokens when given."""
    out = []
    for i in range(n):
        logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama._n_vocab,))
        out.append(int(np.argmax(logits)))
        llama.eval([forced[i] if forced else out[-1]])
    return out


def read_through_cache(backend: LlamaCppBackend, prompt: np.ndarray, key: str) -> int:
    """Read ``prompt`` the way a turn does (cache, shift, then the rest); returns tokens reused."""
    llama = backend._model().llama
    backend._prepare(backend._model(), prompt, key)
    llama.n_tokens = common_prefix(llama.input_ids[: llama.n_tokens], prompt)
    llama.n_tokens = min(llama.n_tokens, len(prompt) - 1)
    reused = int(llama.n_tokens)
    llama.eval(prompt[reused:].tolist())
    return reused


def end_drift(backend: LlamaCppBackend, session: ChatSession, key: str) -> dict[str, float]:
    """After a long chat (many shifts), does the live cache predict like a fresh read?

    Teacher-forced agreement of the next 16 greedy tokens for one more question, read through
    the chat's cache vs read fresh; "split" reads fresh in the same two pieces (noise floor).
    """
    from memchat.backends._llama_cache import restore_state, save_state

    llama = backend._model().llama
    ctx = session.context_for("One last question: which topic came up most often?")
    prompt = backend.prompt_tokens(ctx.messages)
    state = save_state(llama)
    assert state is not None
    backend.clear_cache()
    llama.eval(prompt.tolist())
    ref = argmaxes(llama, None)
    backend.clear_cache()
    restore_state(llama, state)
    reused = read_through_cache(backend, prompt, key)
    cached = float(np.mean(np.array(argmaxes(llama, ref)) == ref))
    backend.clear_cache()
    llama.eval(prompt[:reused].tolist())
    llama.eval(prompt[reused:].tolist())
    split = float(np.mean(np.array(argmaxes(llama, ref)) == ref))
    backend.clear_cache()
    return {"cached_agreement": cached, "split_agreement": split}


def _against(
    backend: LlamaCppBackend, prompt: np.ndarray, kept: int, ref: list[int]
) -> tuple[float, float]:
    """Agreement with ``ref`` of the prompt as the cache holds it now, then of the same prompt
    read fresh in the same two pieces (``kept`` tokens, then the rest): the noise floor."""
    llama = backend._model().llama
    cached = float(np.mean(np.array(argmaxes(llama, ref)) == ref))
    backend.clear_cache()
    llama.eval(prompt[:kept].tolist())
    llama.eval(prompt[kept:].tolist())
    return cached, float(np.mean(np.array(argmaxes(llama, ref)) == ref))


def bench_fidelity(cases: int) -> dict[str, Any]:
    """Teacher-forced next-token agreement of a shifted cache with a fresh evaluation."""
    from memchat.backends.llama_cpp import _NO_KEY

    backend = LlamaCppBackend()
    llama = backend._model().llama
    texts = user_messages(40, seed=4)

    def convo(first: int, last: int) -> np.ndarray:
        msgs = [Message("system", SYSTEM)]
        for i in range(first, last):
            msgs += [Message("user", texts[i]), Message("assistant", f"Noted, item {i}.")]
        return backend.prompt_tokens([*msgs, Message("user", texts[last])])

    shifted, split, removed = [], [], []
    for c in range(cases):
        full, trim = convo(0, 14 + c), convo(3 + c % 5, 14 + c)
        backend.clear_cache()
        llama.eval(trim.tolist())
        ref = argmaxes(llama, None)
        backend.clear_cache()
        llama.eval(full.tolist())
        before = backend.cache_stats().shifted_tokens
        kept = read_through_cache(backend, trim, _NO_KEY)
        removed.append(backend.cache_stats().shifted_tokens - before)
        cached, floor = _against(backend, trim, kept, ref)
        shifted.append(cached)
        split.append(floor)
    backend.clear_cache()
    return {
        "cases": cases,
        "shifted_agreement": float(np.mean(shifted)),
        "split_agreement": float(np.mean(split)),
        "per_case": shifted,
        "removed_tokens_per_case": removed,
    }


# -- report ---------------------------------------------------------------------------------


def bench_splice_fidelity(cases: int) -> dict[str, Any]:
    """Teacher-forced next-token agreement of a spliced recall block with a fresh read.

    Each case: system prompt, two rounds, a recall block of 12 of the (g) chat's facts and
    fillers over two days, then a question about one of them. "spliced": the block's lines
    read ahead (``precompute``) and spliced in, the rest read; "fresh": the whole prompt read
    at once; "split": read fresh in the same two pieces (the noise floor).
    """
    import random

    from bench._embedded_memory import FACTS
    from memchat.backends.llama_cpp import _NO_KEY
    from memchat.core.memory.recall import RECALL_LEAD, block_pieces, block_text

    backend = LlamaCppBackend()
    llama = backend._model().llama
    fillers = user_messages(40, seed=5)
    spliced, split, share = [], [], []
    for c in range(cases):
        rng = random.Random(c)
        facts = rng.sample(FACTS, 6)
        texts = [f[0] for f in facts] + rng.sample(fillers, 6)
        rng.shuffle(texts)
        day0 = 1_700_000_000.0 + c * 86_400
        old = [
            Message("user" if i % 3 else "assistant", t, created_at=day0 + (i // 6) * 86_400)
            for i, t in enumerate(texts)
        ]
        msgs = [
            Message("system", SYSTEM),
            Message("user", fillers[c % 40]),
            Message("assistant", "Noted."),
            Message("system", block_text(old)),
            Message("user", facts[c % 6][1]),
        ]
        prompt = backend.prompt_tokens(msgs)
        backend.clear_cache()
        llama.eval(prompt.tolist())
        ref = argmaxes(llama, None)
        backend.clear_cache()
        backend.precompute(block_pieces(old), after=RECALL_LEAD)
        before = backend.cache_stats().spliced_tokens
        kept = read_through_cache(backend, prompt, _NO_KEY)
        share.append((backend.cache_stats().spliced_tokens - before) / len(prompt))
        cached, floor = _against(backend, prompt, kept, ref)
        spliced.append(cached)
        split.append(floor)
    backend.clear_cache()
    return {
        "cases": cases,
        "spliced_agreement": float(np.mean(spliced)),
        "spliced_min": float(np.min(spliced)),
        "split_agreement": float(np.mean(split)),
        "spliced_share": float(np.mean(share)),
        "per_case": spliced,
    }
