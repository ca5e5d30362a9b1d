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
        shifted.append(float(np.mean(np.array(argmaxes(llama, ref)) == ref)))
        backend.clear_cache()
        llama.eval(trim[:kept].tolist())  # same split, no shift: the numerical noise floor
        llama.eval(trim[kept:].tolist())
        split.append(float(np.mean(np.array(argmaxes(llama, ref)) == ref)))
    backend.clear_cache()
    return {
        "cases": cases,
        "shifted_agreement": float(np.mean(shifted)),
        "split_agreement": float(np.mean(split)),
        "per_case": shifted,
        "removed_tokens_per_case": removed,
    }


# -- report ---------------------------------------------------------------------------------
