"""bench_recall's real-conversation arm: REALTALK chats through the user's own path.

Each chat is written as a JSONL transcript and imported with ``memchat import`` (the click
command, in-process, into a throwaway ``MEMCHAT_HOME``), which embeds its rounds for recall.
Contexts are then built exactly as ``memchat context CONV --question Q --budget B`` builds them
(``load_settings`` → ``build_session`` with the counting backend → ``context_for``), with the
default reply reserve. Evidence recall = share of a question's labelled turns that are in the
context whole: the stored message is sent or recalled, and its full text is in the context.
Baselines fill the whole budget B with single turns: newest first, by BM25, by embeddings.

The data is read at run time from ``<repo>/../shared/data/realtalk`` (or ``$MEMCHAT_REALTALK``)
and never copied into the repository; without it the arm is skipped.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench._common import ROOT, median
from bench._recall_report import BUDGETS
from memchat.core.messages import Message
from memchat.core.tokens import TokenCounter, message_tokens
from memchat.strategies import DEFAULT_STRATEGY, LOCAL_DEFAULT_STRATEGY, STRATEGY_NAMES

__all__ = ["BASELINES", "DATA_ENV", "EMBEDDED", "data_dir", "run_real"]

DATA_ENV = "MEMCHAT_REALTALK"
DATE_FORMAT = "%d.%m.%Y, %H:%M:%S"
MODEL = "gpt-4o-mini"
IMPORT_STRATEGY = DEFAULT_STRATEGY  # embeds at import; recall-embed and hybrid share its vectors
BASELINES = ("recency", "bm25-turns", "embed-turns")
# The long-replies arm: the first LONG_CHATS chats with every assistant message padded to at
# least LONG_REPLY tokens with other chats' assistant messages (generated padding, a stand-in
# for chats whose replies are long), asked only the questions whose evidence is user messages
LONG_CHATS = 4
LONG_REPLY = 800
LONG_STRATEGIES = ("recall", "abl:by-score", "abl:before", "recall-local@embedded")


def data_dir() -> Path | None:
    """The REALTALK folder (``$MEMCHAT_REALTALK`` or ``<repo>/../shared/data/realtalk``)."""
    folder = Path(os.environ.get(DATA_ENV) or ROOT.parent / "shared" / "data" / "realtalk")
    return folder if (folder / "questions.jsonl").is_file() else None


@dataclass
class Chat:
    name: str
    turns: list[dict[str, Any]]
    questions: list[dict[str, Any]]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def load_chats(folder: Path, limit: int | None) -> tuple[list[Chat], dict[int, str]]:
    """Every ``chat-NN.jsonl`` with its questions (the first ``limit`` of each), and categories."""
    by_conv: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for q in _jsonl(folder / "questions.jsonl"):
        by_conv[q["conv"]].append(q)
    raw = json.loads((folder / "categories.json").read_text(encoding="utf-8"))
    categories = {int(k): v for k, v in raw.items() if k.isdigit()}
    chats = [
        Chat(p.stem, _jsonl(p), by_conv[p.stem][:limit])
        for p in sorted(folder.glob("chat-*.jsonl"))
    ]
    return chats, categories


def padded(chats: Sequence[Chat], counter: TokenCounter) -> list[Chat]:
    """The long-replies arm's chats: each assistant message grown to ``LONG_REPLY`` tokens with
    assistant messages drawn (seeded by the message itself, so every run pads alike) from all
    the chats; only the questions whose evidence turns are all the user's."""
    import random

    pool = [t["content"] for c in chats for t in c.turns if t["role"] == "assistant"]
    out = []
    for chat in chats[:LONG_CHATS]:
        turns = []
        for turn in chat.turns:
            text = turn["content"]
            if turn["role"] == "assistant":
                rng = random.Random(text)
                while counter.count(text) < LONG_REPLY:
                    text += " " + rng.choice(pool)
            turns.append({**turn, "content": text})
        role = {t["turn_id"]: t["role"] for t in chat.turns}
        asked = [q for q in chat.questions if all(role[e] == "user" for e in q["evidence"])]
        out.append(Chat(chat.name, turns, asked))
    return out


def transcript_rows(turns: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """``{role, name, content, created_at}``: ``name`` the speaker (OpenAI's message field,
    which ``memchat import`` reads as the participants' names), ``created_at`` the session's
    start (UTC) + the turn's index in it, s."""
    rows, index, session = [], 0, None
    for turn in turns:
        index = index + 1 if turn["session"] == session else 0
        session = turn["session"]
        start = datetime.strptime(turn["date"], DATE_FORMAT).replace(tzinfo=UTC)
        at = (start + timedelta(seconds=index)).isoformat()
        row = {"role": turn["role"], "name": turn["speaker"], "content": turn["content"]}
        rows.append({**row, "created_at": at})
    return rows


def _environ(home: Path, strategy: str) -> dict[str, str]:
    return {
        "MEMCHAT_HOME": str(home),
        "MEMCHAT_BACKEND": "openai",
        "MEMCHAT_MODEL": MODEL,
        "MEMCHAT_STRATEGY": strategy,
    }


def import_chat(path: Path, title: str, home: Path, strategy: str) -> float:
    """``memchat import FILE --name TITLE`` in-process; returns its wall seconds."""
    from click.testing import CliRunner

    from memchat.adapters.cli import App, cli

    runner = CliRunner()
    start = time.perf_counter()
    result = runner.invoke(
        cli, ["import", str(path), "--name", title], obj=App(environ=_environ(home, strategy))
    )
    seconds = time.perf_counter() - start
    if result.exit_code != 0:
        raise RuntimeError(f"memchat import {path} failed: {result.output}") from result.exception
    return seconds


EMBEDDED = "@embedded"  # a method name ending so runs on the embedded model's settings


def _settings(home: Path, strategy: str, budget: int | None = None) -> Any:
    """The settings a user has; ``name@embedded``: the strategy on the embedded model (its own
    tokenizer and context window) instead of the provider."""
    from memchat.settings import load_settings

    flags: dict[str, Any] = {"budget": budget, "backend": "openai", "model": MODEL}
    if strategy.endswith(EMBEDDED):
        strategy = strategy.removesuffix(EMBEDDED)
        flags = {"budget": budget, "backend": "local"}
    flags["strategy"] = strategy
    return load_settings({**flags, "home": str(home)}, environ=_environ(home, strategy))


@dataclass
class Tally:
    """Per-question scores keyed by (method, budget) and (method, budget, category)."""

    recall: dict[tuple[str, int], list[float]] = field(default_factory=lambda: defaultdict(list))
    by_cat: dict[tuple[str, int, str], list[float]] = field(
        default_factory=lambda: defaultdict(list)
    )
    fill: dict[tuple[str, int], list[float]] = field(default_factory=lambda: defaultdict(list))
    ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    first_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    reserve: dict[int, int] = field(default_factory=dict)  # the session's default, per budget

    def add(self, method: str, budget: int, category: str, recall: float, tokens: int) -> None:
        assert tokens <= budget, (method, budget, tokens)
        self.recall[method, budget].append(recall)
        self.by_cat[method, budget, category].append(recall)
        self.fill[method, budget].append(tokens / budget)


def evidence_recall(messages: Sequence[Message], ids: set[str], evidence: list[Message]) -> float:
    """Share of the evidence sent or recalled (id in ``ids``) with its full text in the context."""
    text = "\n".join(m.content for m in messages)
    found = sum(1 for m in evidence if m.id in ids and m.content in text)
    return found / len(evidence)


def _context_ids(ctx: Any) -> set[str]:
    return {m.id for m in ctx.messages} | {m.id for r in ctx.recalled for m in r.round}


@dataclass
class Imported:
    """One chat in the store: its conversation id, stored messages, and turn_id → message."""

    chat: Chat
    conv_id: str
    messages: list[Message]
    by_turn: dict[str, Message]

    def evidence(self, question: dict[str, Any]) -> list[Message]:
        return [self.by_turn[t] for t in question["evidence"]]


def load_imported(store: Any, chat: Chat) -> Imported:
    conv_id = store.find_conversation(chat.name).id
    messages = store.load(conv_id)
    if [m.content for m in messages] != [t["content"] for t in chat.turns]:
        raise RuntimeError(f"{chat.name}: the stored messages do not match the turns")
    by_turn = {t["turn_id"]: m for t, m in zip(chat.turns, messages, strict=True)}
    return Imported(chat, conv_id, messages, by_turn)


def score_strategy(
    imp: Imported, store: Any, home: Path, name: str, cats: dict[int, str], tally: Tally
) -> TokenCounter:
    """One session per budget; every question through ``context_for``. Returns its counter."""
    from memchat.wiring import build_session, counting_backend

    counter: Any = None
    for budget in BUDGETS:
        settings = _settings(home, name, budget)
        session = build_session(
            settings, store=store, conversation_id=imp.conv_id, backend=counting_backend(settings)
        )
        counter = session.counter
        tally.reserve[budget] = session.budget.reserve_for_reply
        for n, q in enumerate(imp.chat.questions):
            start = time.perf_counter()
            ctx = session.context_for(q["question"])
            (tally.ms if n else tally.first_ms)[name].append(1000 * (time.perf_counter() - start))
            value = evidence_recall(ctx.messages, _context_ids(ctx), imp.evidence(q))
            tally.add(name, budget, cats[q["category"]], value, ctx.tokens)
    return counter


class Baselines:
    """Single turns filling the whole budget: newest first, by BM25, by embedding cosine.

    The question (a user message) and the reply priming count against the budget, like the
    session's prompt; there is no system prompt (the session has none) and no reply reserve.
    """

    def __init__(self, messages: list[Message], counter: TokenCounter, embedder: Any) -> None:
        from memchat.retrieval import Bm25Index

        self.messages, self.counter, self.embedder = messages, counter, embedder
        self.costs = [counter.count(m.content) + counter.per_message for m in messages]
        self.bm25 = Bm25Index(k1=1.2, b=0.75)
        self.bm25.add([str(i) for i in range(len(messages))], [m.content for m in messages])
        self.vectors = embedder.embed([m.content for m in messages])

    def orders(self, question: str) -> dict[str, list[int]]:
        import numpy as np

        n = len(self.messages)
        ranked = [int(k) for k, _ in self.bm25.search(question, n)]
        # einsum, not ``@``: BLAS threads left spinning slow the next query embedding
        cosine = np.einsum("ij,j->i", self.vectors, self.embedder.embed([question])[0])
        by_cosine = [int(i) for i in (-cosine).argsort(kind="stable")]
        return dict(zip(BASELINES, (list(range(n - 1, -1, -1)), ranked, by_cosine), strict=True))

    def fill(self, order: list[int], room: int, *, contiguous: bool) -> tuple[list[int], int]:
        """Take turns in ``order`` while they fit ``room``; (chosen, tokens used)."""
        chosen, used = [], 0
        for i in order:
            if used + self.costs[i] > room:
                if contiguous:
                    break
                continue
            chosen.append(i)
            used += self.costs[i]
        return sorted(chosen), used

    def score(self, imp: Imported, cats: dict[int, str], tally: Tally) -> None:
        for q in imp.chat.questions:
            asked = Message("user", q["question"])
            fixed = message_tokens(asked, self.counter) + self.counter.per_reply
            for method, order in self.orders(q["question"]).items():
                for budget in BUDGETS:
                    picked, used = self.fill(order, budget - fixed, contiguous=method == "recency")
                    sent = [self.messages[i] for i in picked] + [asked]
                    ids = {m.id for m in sent}
                    value = evidence_recall(sent, ids, imp.evidence(q))
                    tally.add(method, budget, cats[q["category"]], value, used + fixed)


def run_chat(
    chat: Chat, work: Path, names: Sequence[str], cats: dict[int, str], tally: Tally, embedder: Any
) -> dict[str, Any]:
    """Import one chat (with and without embeddings), score every strategy and the baselines."""
    from memchat.storage import open_store

    path = work / f"{chat.name}.jsonl"
    rows = transcript_rows(chat.turns)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    plain_s = import_chat(path, chat.name, work / "plain", "cache")
    home = work / "home"
    seconds = import_chat(path, chat.name, home, IMPORT_STRATEGY)
    store = open_store(_settings(home, IMPORT_STRATEGY).store_url)
    try:
        imp = load_imported(store, chat)
        for name in names:
            score_strategy(imp, store, home, name, cats, tally)
        # the provider's tokenizer, whichever strategy ran last (an @embedded one counts with
        # SmolLM2's): baselines are always measured like the provider rows
        Baselines(imp.messages, _settings_counter(home), embedder).score(imp, cats, tally)
    finally:
        store.close()
    return {
        "messages": len(chat.turns),
        "questions": len(chat.questions),
        "seconds": round(seconds, 2),
        "seconds_without_embeddings": round(plain_s, 2),
    }


def _settings_counter(home: Path) -> TokenCounter:
    from memchat.wiring import counting_backend

    counter: TokenCounter = counting_backend(_settings(home, "cache")).token_counter()
    return counter


def run_real(
    limit: int | None = None,
    names: Sequence[str] | None = None,
    embedder: Any = None,
    long_replies: bool = True,
) -> dict[str, Any] | None:
    """The whole arm; None (after a one-line notice) when the data folder is missing."""
    folder = data_dir()
    if folder is None:
        print(f"real-conversation arm skipped: no REALTALK data (set {DATA_ENV})", flush=True)
        return None
    print(f"real-conversation arm: reading REALTALK from {folder} at run time (not copied)")
    names = list(names or [*STRATEGY_NAMES, LOCAL_DEFAULT_STRATEGY + EMBEDDED])
    chats, cats = load_chats(folder, limit)
    embedder = embedder or _memo_embedder()
    tally, imports = Tally(), {}
    texts, seconds = embedder.count, embedder.seconds
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="memchat-real-") as tmp:
        for chat in chats:
            imports[chat.name] = run_chat(chat, Path(tmp), names, cats, tally, embedder)
            print(f"  {chat.name}: {imports[chat.name]}", flush=True)
        embedding = {
            "texts": embedder.count - texts,
            "seconds": round(embedder.seconds - seconds, 2),
        }
        result = _summary(chats, cats, names, tally, imports, embedding, limit, folder, started)
        if long_replies:
            result["long_replies"] = _run_long(chats, cats, names, Path(tmp), embedder, limit)
    embedder.save()
    return result


def _run_long(
    chats: list[Chat],
    cats: dict[int, str],
    names: Sequence[str],
    work: Path,
    embedder: Any,
    limit: int | None,
) -> dict[str, Any]:
    """The long-replies arm, through the same path as the real chats (its own store)."""
    started, tally, imports = time.perf_counter(), Tally(), {}
    (work / "long").mkdir(exist_ok=True)
    long_chats = padded(chats, _settings_counter(work / "home"))
    chosen = [n for n in LONG_STRATEGIES if n in names] or [DEFAULT_STRATEGY]
    texts, seconds = embedder.count, embedder.seconds
    for chat in long_chats:
        imports[chat.name] = run_chat(chat, work / "long", chosen, cats, tally, embedder)
        print(f"  long replies, {chat.name}: {imports[chat.name]}", flush=True)
    embedding = {"texts": embedder.count - texts, "seconds": round(embedder.seconds - seconds, 2)}
    out = _summary(long_chats, cats, chosen, tally, imports, embedding, limit, work, started)
    out["reply_tokens"] = LONG_REPLY
    return out


def _memo_embedder() -> Any:
    from bench.bench_recall import MemoEmbedder
    from memchat.retrieval import OnnxEmbedder

    return MemoEmbedder(OnnxEmbedder())


def _ms(values: list[float], digits: int) -> float | None:
    return round(median(values), digits) if values else None


def _summary(
    chats: list[Chat],
    cats: dict[int, str],
    names: list[str],
    tally: Tally,
    imports: dict[str, Any],
    embedding: dict[str, Any],
    limit: int | None,
    folder: Path,
    started: float,
) -> dict[str, Any]:
    """The arm's JSON: means per (method, budget), per category, fill, imports, timings."""
    mean = lambda v: round(sum(v) / len(v), 4) if v else None  # noqa: E731
    methods = [*names, *BASELINES]
    asked = [q for c in chats for q in c.questions]
    by_b = lambda table: {m: {str(b): mean(table[m, b]) for b in BUDGETS} for m in methods}  # noqa: E731
    return {
        "data": str(folder),
        "chats": len(chats),
        "questions": len(asked),
        "turns": sum(len(c.turns) for c in chats),
        "limit": limit,
        "categories": {n: sum(cats[q["category"]] == n for q in asked) for n in cats.values()},
        "budgets": list(BUDGETS),
        "reserve": {str(b): r for b, r in sorted(tally.reserve.items())},
        "model": MODEL,
        "import_strategy": IMPORT_STRATEGY,
        "strategies": list(names),
        "baselines": list(BASELINES),
        "evidence_recall": by_b(tally.recall),
        "fill": by_b(tally.fill),
        "by_category": {
            m: {str(b): {n: mean(tally.by_cat[m, b, n]) for n in cats.values()} for b in BUDGETS}
            for m in methods
        },
        "context_ms_median": {n: _ms(tally.ms[n], 2) for n in names},
        "first_context_ms_median": {n: _ms(tally.first_ms[n], 1) for n in names},
        "imports": imports,
        "baseline_embedding": embedding,
        "seconds": round(time.perf_counter() - started, 1),
        "load": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
