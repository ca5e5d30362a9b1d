"""Benchmarks 2 and 3 (issues 3 and 6): the embedded model, end to end through memchat.

(a) A scripted chat (fixed user messages, greedy, 24-token replies) at a 2,000-token budget
    through ``ChatSession`` on SmolLM2-135M: time to first token (trimming turns included),
    prefix reuse and total time, for drop-oldest and chunked trimming with the KV cache
    re-read (shift off), and with shifting (the default: chunked + shift).
(b) Two interleaved conversations on one model, with and without the per-conversation cache,
    against one conversation alone.
(c) Decode tokens/s through memchat vs raw llama-cpp-python on the same prompt, same run.
(d) Shift fidelity: how often a shifted cache predicts the same next token as a fresh
    evaluation of the same prompt.
(e) The floor: reading just one new message (no trimming, warm cache) at several context
    lengths, the least any turn can cost on this machine.
(f) Weight formats; (g) long memory at constant-time turns (recall with and without KV
    splicing, bench/_embedded_memory.py); (h) splice fidelity.

    python bench/bench_embedded.py [--quick] [--report]
    python bench/bench_embedded.py --memory-only [--memory-arms q8_0:recall-local,…]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import ROOT, median, percentile, run_stamp, write_results  # noqa: E402
from bench._embedded_fidelity import (  # noqa: E402
    bench_fidelity,
    bench_splice_fidelity,
    end_drift,
)
from bench._embedded_memory import MEMORY_TURNS, bench_memory, bench_weights  # noqa: E402
from bench._embedded_report import machine_notes, report  # noqa: E402
from bench._embedded_setup import (  # noqa: E402
    BUDGET,
    DEFAULT_ARM,
    FLOOR_CONTEXTS,
    LOCAL_RECALL_ARM,
    RECALL_ARM,
    REPLY,
    SYSTEM,
    user_messages,
)
from memchat import ChatSession, GenerationParams, Message  # noqa: E402
from memchat.backends._llama_cache import common_prefix  # noqa: E402
from memchat.backends.llama_cpp import LlamaCppBackend  # noqa: E402
from memchat.core import CacheAware, TokenBudget  # noqa: E402
from memchat.strategies import make_strategy  # noqa: E402

MEMORY_ARMS = [  # (g): weights x strategy; "+nosplice": KV splicing off; "+nomove": KV cells
    # moved by llama.cpp's K-shift, not in numpy; abl:local-gate-1.0: recall-local with a gate
    ("original", "cache"),
    ("q8_0", "cache"),
    ("original", "recall-local"),
    ("q8_0", "recall-local"),
    ("q8_0+nosplice", "recall-local"),
    ("q8_0+nomove", "recall-local"),
    ("q8_0", "abl:local-gate-1.0"),
]


def turn(session: ChatSession, text: str) -> tuple[float, float]:
    """(time to first token, whole turn) in seconds."""
    start = time.perf_counter()
    first = None
    for _ in session.send(text):
        first = first or time.perf_counter()
    end = time.perf_counter()
    return (first or end) - start, end - start


def run_chat(
    backend: LlamaCppBackend, strategy: Any, texts: list[str], key: str, after_full: int | None
) -> dict[str, Any]:
    """Drive one session; stops ``after_full`` turns after the first trim when given."""
    backend.clear_cache()
    session = ChatSession(
        backend,
        strategy=strategy,
        budget=BUDGET,
        system_prompt=SYSTEM,
        params=REPLY,
        conversation_id=key,
    )
    rows: list[dict[str, Any]] = []
    prev = np.zeros(0, dtype=np.intc)
    shifts0 = backend.cache_stats().shifts
    dropped, first_trim = 0, None
    for i, text in enumerate(texts):
        ttft, total = turn(session, text)
        ctx, usage = session.last_context, session.last_usage
        assert ctx is not None and usage is not None
        prompt = backend.prompt_tokens(ctx.messages)
        trimmed = len(ctx.dropped) != dropped
        dropped = len(ctx.dropped)
        if trimmed and first_trim is None:
            first_trim = i
        rows.append(
            {
                "ttft": ttft,
                "total": total,
                "prompt": len(prompt),
                "cached": usage.cached_tokens,
                "reuse": common_prefix(prev, prompt) / len(prompt),
                "trim": trimmed,
            }
        )
        prev = prompt
        if after_full is not None and first_trim is not None and i >= first_trim + after_full:
            break
    result = summarize(rows, first_trim)
    result["shifts"] = backend.cache_stats().shifts - shifts0
    if backend.shift:
        result["end_drift"] = end_drift(backend, session, key)
    return result


def summarize(rows: list[dict[str, Any]], first_trim: int | None) -> dict[str, Any]:
    ttft = [r["ttft"] for r in rows]
    steady = [r["ttft"] for r in rows[first_trim or 0 :]]
    reads = [r["prompt"] - r["cached"] for r in rows]
    return {
        "turns": len(rows),
        "first_trim_turn": None if first_trim is None else first_trim + 1,
        "trims": sum(r["trim"] for r in rows),
        "ttft_median": median(ttft),
        "ttft_p90": percentile(ttft, 0.9),
        "ttft_max": max(ttft),
        "steady_median": median(steady),
        "steady_p90": percentile(steady, 0.9),
        "prefix_reuse": float(np.mean([r["reuse"] for r in rows[1:]])),
        "from_cache": float(np.mean([r["cached"] / r["prompt"] for r in rows[1:]])),
        "mean_prompt": float(np.mean([r["prompt"] for r in rows])),
        "read_median": median(reads),
        "read_p90": percentile(reads, 0.9),
        "read_max": max(reads),
        "steady_read_median": median(reads[first_trim or 0 :]),
        "total_s": sum(r["total"] for r in rows),
        "ttft": [round(t, 4) for t in ttft],
    }


def bench_trimming(turns: int, drop_after_full: int) -> dict[str, Any]:
    texts = user_messages(turns, seed=1)
    arms = [
        ("drop-oldest (TokenBudget), re-read", TokenBudget(), False, drop_after_full),
        ("chunked (CacheAware), re-read", CacheAware(), False, None),
        (DEFAULT_ARM, CacheAware(), True, None),
        ("drop-oldest (TokenBudget) + shift", TokenBudget(), True, None),
        (RECALL_ARM, "recall", True, drop_after_full),
        (LOCAL_RECALL_ARM, "recall-local", True, drop_after_full),
    ]
    out = {}
    for name, strategy, shift, after_full in arms:
        print(f"  (a) {name} ...", flush=True)
        if isinstance(strategy, str):  # built per run: it holds this conversation's index
            strategy = make_strategy(strategy)
        backend = LlamaCppBackend(shift=shift)
        out[name] = run_chat(backend, strategy, texts, name, after_full)
    return out


def bench_floor(new_tokens: int, reps: int = 3) -> dict[str, Any]:
    """Seconds to read ``new_tokens`` after a warm prefix of each context length, nothing trimmed.

    Every turn must at least read its own new message, so this is the least a turn can cost
    here; the trimming arms are judged against it.
    """
    import llama_cpp

    backend = LlamaCppBackend()
    llama = backend._model().llama
    texts = user_messages(80, seed=5)
    msgs = [Message("system", SYSTEM)]
    for text in texts:
        msgs += [Message("user", text), Message("assistant", "Sure: " + text[::-1][:80])]
    tokens = backend.prompt_tokens(msgs).tolist()
    assert len(tokens) >= FLOOR_CONTEXTS[-1] + new_tokens
    backend.clear_cache()
    llama.eval(tokens[: FLOOR_CONTEXTS[-1]])
    out = {}
    for ctx in reversed(FLOOR_CONTEXTS):  # longest first: each cut keeps the shorter prefixes
        times = []
        for _ in range(reps):
            llama_cpp.llama_memory_seq_rm(llama._ctx.memory, 0, ctx, -1)
            llama.n_tokens = ctx
            start = time.perf_counter()
            llama.eval(tokens[ctx : ctx + new_tokens])
            times.append(time.perf_counter() - start)
        out[str(ctx)] = median(times)
    out = dict(reversed(out.items()))
    backend.clear_cache()
    return {"new_tokens": new_tokens, "seconds_at_context": out}


def bench_interleaved(turns: int) -> dict[str, Any]:
    texts = {"A": user_messages(turns, seed=2), "B": user_messages(turns, seed=3)}
    out = {}
    for name, cache_bytes, keys in [
        ("one conversation", None, "A"),
        ("two interleaved, per-conversation cache", None, "AB"),
        ("two interleaved, no per-conversation cache", 0, "AB"),
    ]:
        print(f"  (b) {name} ...", flush=True)
        kw = {} if cache_bytes is None else {"cache_bytes": cache_bytes}
        backend = LlamaCppBackend(**kw)
        backend.clear_cache()
        sessions = {
            k: ChatSession(
                backend,
                budget=BUDGET,
                system_prompt=SYSTEM,
                params=REPLY,
                conversation_id=f"{name}/{k}",
            )
            for k in keys
        }
        ttfts = [turn(sessions[k], texts[k][i])[0] for i in range(turns) for k in keys]
        out[name] = {
            "turns": len(ttfts),
            "ttft_median": median(ttfts),
            "ttft_p90": percentile(ttfts, 0.9),
            "ttft_mean": float(np.mean(ttfts)),
            "cache": backend.cache_stats().__repr__(),
        }
        LlamaCppBackend()._model()  # restore the default ceiling on the shared model
    return out


def raw_rate(llama: Any, prompt: list[int], max_tokens: int) -> tuple[float, int]:
    """Decode tokens/s of llama-cpp-python's own streaming completion, and the tokens made."""
    stamps = [
        time.perf_counter()
        for _ in llama.create_completion(
            prompt, max_tokens=max_tokens, temperature=0.0, repeat_penalty=1.1, stream=True
        )
    ]
    n = llama.n_tokens - len(prompt) + 1
    return (n - 1) / (stamps[-1] - stamps[0]), n


def bench_decode(max_tokens: int, reps: int) -> dict[str, Any]:
    """memchat vs raw llama-cpp-python on the same model object (same threads), alternating.

    Also raw llama-cpp-python at its own default thread count (half the CPUs), the reason
    memchat defaults to all of them.
    """
    backend = LlamaCppBackend()
    llama = backend._model().llama
    half = max(1, backend.n_threads // 2)
    half_llama = None
    if half != backend.n_threads:
        half_llama = LlamaCppBackend(n_threads=half)._model().llama
    msgs = [
        Message("system", SYSTEM),
        Message(
            "user",
            "Write a long story about a dragon "
            "who learns to bake bread. Make it at least five paragraphs.",
        ),
    ]
    prompt = backend.prompt_tokens(msgs).tolist()
    params = GenerationParams(max_tokens=max_tokens)
    raw_rates, ours_rates, half_rates, counts = [], [], [], []
    for _ in range(reps):
        rate, raw_n = raw_rate(llama, prompt, max_tokens)
        raw_rates.append(rate)
        stamps, n = [], 0
        for chunk in backend.stream(msgs, params):
            stamps.append(time.perf_counter())
            n = chunk.usage.completion_tokens if chunk.usage else n
        ours_rates.append((n - 1) / (stamps[-1] - stamps[0]))
        counts.append((raw_n, n))
        if half_llama is not None:
            half_rates.append(raw_rate(half_llama, prompt, max_tokens)[0])
    raw, ours = median(raw_rates), median(ours_rates)
    return {
        "max_tokens": max_tokens,
        "reps": reps,
        "threads": backend.n_threads,
        "half_threads": half,
        "tokens (raw, memchat)": counts,
        "raw_tok_s": raw,
        "memchat_tok_s": ours,
        "raw_half_threads_tok_s": median(half_rates) if half_rates else None,
        "ratio": ours / raw,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a short smoke run")
    ap.add_argument(
        "--report", action="store_true", help="only rewrite the Markdown from the last results"
    )
    ap.add_argument(
        "--memory-only",
        action="store_true",
        help="run only (f) weight formats and (g) long memory, kept with the last results",
    )
    ap.add_argument(
        "--memory-arms",
        default="",
        metavar="W:S,…",
        help="with --memory-only: only these weights:strategy arms, merged into the last results",
    )
    ap.add_argument(
        "--weights-only", action="store_true", help="run only (f), kept with the last results"
    )
    args = ap.parse_args()
    if args.memory_only or args.weights_only:
        path = ROOT / "bench" / "results" / "embedded.json"
        data = json.loads(path.read_text()) if path.exists() else {}
        started, stamp = time.perf_counter(), run_stamp(os.getloadavg())
        if not args.memory_arms:
            data["weights"] = bench_weights(8 if args.quick else 40)
        if args.memory_only:
            print("  (h) splice fidelity ...", flush=True)
            data["splice_fidelity"] = bench_splice_fidelity(4 if args.quick else 20)
            arms = [tuple(a.split(":", 1)) for a in args.memory_arms.split(",") if a] or MEMORY_ARMS
            fresh = bench_memory(arms, 60 if args.quick else MEMORY_TURNS)  # type: ignore[arg-type]
            data["memory"] = {**data.get("memory", {}), **fresh}
            data["memory_run"] = stamp
        data["memory_wall_s"] = time.perf_counter() - started
        md = report(data, data.get("quick", args.quick))
        print(md)
        write_results("embedded", data, md)
        return
    if args.report:
        data = json.loads((ROOT / "bench" / "results" / "embedded.json").read_text())
        write_results("embedded", data, report(data, data["quick"]))
        return
    turns, drop, inter, reps, cases = (40, 4, 6, 2, 2) if args.quick else (200, 20, 16, 3, 4)
    started = time.perf_counter()
    data: dict[str, Any] = {"turns": turns, "drop_after_full": drop, "inter_turns": inter}
    data["trimming"] = bench_trimming(turns, drop)
    print("  (e) floor ...", flush=True)
    reads = data["trimming"][DEFAULT_ARM]["read_median"]
    data["floor"] = bench_floor(int(round(reads)))
    print("  (b) interleaved ...", flush=True)
    data["interleaved"] = bench_interleaved(inter)
    print("  (c) decode ...", flush=True)
    data["decode"] = bench_decode(128, reps)
    print("  (d) fidelity ...", flush=True)
    data["fidelity"] = bench_fidelity(cases)
    data["main_weights"] = LlamaCppBackend().weights
    print("  (f) weights ...", flush=True)
    data["weights"] = bench_weights(8 if args.quick else 40)
    print("  (h) splice fidelity ...", flush=True)
    data["splice_fidelity"] = bench_splice_fidelity(4 if args.quick else 20)
    data["memory"] = bench_memory(MEMORY_ARMS, 60 if args.quick else MEMORY_TURNS)
    data["machine_notes"] = machine_notes()
    data["quick"] = args.quick
    data["wall_s"] = time.perf_counter() - started
    md = report(data, args.quick)
    print(md)
    write_results("embedded", data, md)


if __name__ == "__main__":
    main()
