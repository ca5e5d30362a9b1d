"""Ablations of the default ``recall`` strategy for the real-conversation arm.

Each variant changes one choice of ``recall`` and is registered in the strategy registry under
``abl:<name>`` for this process only, so the arm measures it through the user's path (settings,
``build_session``, ``context_for``) exactly like the named strategies, in the same run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench._common import table
from memchat.core.memory import CacheAware
from memchat.core.memory.recall import RecallMemory
from memchat.strategies import LOCAL_RECALL, LOCAL_SHARE, STRATEGIES

__all__ = ["ABLATIONS", "notes", "register"]

# name -> (what changes, RecallMemory keyword arguments, ConversationIndex keyword arguments)
ABLATIONS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "abl:tail-20%": (
        "recent tail 20 % of the budget, as before (default 10 %)",
        {"share": 0.8},
        {},
    ),
    "abl:tail-40%": ("recent tail 40 % of the budget", {"share": 0.6}, {}),
    "abl:fixed-30%": (
        "fixed shares as before: window 70 %, recall 30 %, at most 10 messages",
        {"share": 0.3, "k": 10},
        {},
    ),
    "abl:no-neighbour": ("no raise from neighbouring messages", {}, {"neighbour": 0.0}),
    "abl:no-paired": (
        "no embedding of the message with the one before it",
        {},
        {"weights": (1.0, 1.0, 0.0)},
    ),
    "abl:no-dates": ("no raise for the day a question names", {}, {"date_boost": 0.0}),
    "abl:keep-names": (
        "the dense query keeps every name (default: names the chat never mentions or that are "
        "in >= 3 % of its messages are left out)",
        {},
        {"names": 0.0},
    ),
    "abl:bm25-half": ("BM25 weighted 0.5 in the fusion", {}, {"weights": (0.5, 1.0, 1.0)}),
    "abl:rrf": (
        "reciprocal rank fusion, k = 60 (default: standard scores)",
        {},
        {"fusion": "rrf"},
    ),
    "abl:no-author": (
        "no raise for the messages of the participant a question names",
        {},
        {"author": 0.0},
    ),
    "abl:no-day": ("no raise for a day holding several good hits", {}, {"day": 0.0}),
    "abl:dates-1.0": (
        "the raise for a day the question names 1.0 (default 0.5)",
        {},
        {"date_boost": 1.0},
    ),
    "abl:before": (
        "the three together, as `recall` ranked before: reciprocal rank fusion, no day raise, "
        "dates raised 1.0",
        {},
        {"fusion": "rrf", "day": 0.0, "date_boost": 1.0},
    ),
    "abl:feedback": (
        "pseudo-relevance feedback: the query vector + 1.0 x the mean of the 5 best first-pass "
        "hits' vectors, searched again (off by default)",
        {},
        {"feedback": 1.0},
    ),
    "abl:feedback-0.5": ("the same, weight 0.5", {}, {"feedback": 0.5}),
    "abl:by-score": (
        "the best hits by score alone (default: a message longer than 200 tokens, or a quarter "
        "of the room, is ranked by its score per that many tokens)",
        {"long": None},
        {},
    ),
    "abl:local-512": (
        "`recall-local` with a 512-token block (the default before Q8_0 weights)",
        {"most": 512, "asked_only": True, "share": LOCAL_SHARE},
        {},
    ),
    "abl:local-768": (
        f"`recall-local` with a 768-token block (the default before KV splicing; now "
        f"{LOCAL_RECALL})",
        {"most": 768, "asked_only": True, "share": LOCAL_SHARE},
        {},
    ),
    "abl:local-gate-1.0": (
        "`recall-local` with a relevance gate: recall only when the best old message scores at "
        "least as high as the best message already in the context (default: no gate)",
        {"most": LOCAL_RECALL, "asked_only": True, "gate": 1.0, "share": LOCAL_SHARE},
        {},
    ),
    "abl:local-gate-1.2": (
        "the same gate at 1.2 x the best message in the context",
        {"most": LOCAL_RECALL, "asked_only": True, "gate": 1.2, "share": LOCAL_SHARE},
        {},
    ),
}


def _factory(strategy_kw: dict[str, Any], index_kw: dict[str, Any]) -> Any:
    def make(*, embedder: Any = None, **_: Any) -> RecallMemory:
        from memchat.retrieval import ConversationIndex

        index = ConversationIndex("hybrid", embedder=embedder, **index_kw)
        return RecallMemory(index, CacheAware(), **strategy_kw)

    return make


def register() -> list[str]:
    """Put every ablation in the registry; returns their names."""
    for name, (_, strategy_kw, index_kw) in ABLATIONS.items():
        STRATEGIES[name] = _factory(strategy_kw, index_kw)
    return list(ABLATIONS)


def notes(methods: Sequence[str]) -> str:
    """The report's words on the ``@embedded`` rows and what each ``abl:`` row changes."""
    bare = [n.removesuffix("@embedded") for n in methods]
    rows = [[f"`{n}`", ABLATIONS[n][0]] for n in bare if n in ABLATIONS]
    embedded = f"""
Rows `NAME@embedded` run the strategy with the embedded model's settings (`--backend local`:
SmolLM2's own tokenizer, a 8,192-token context window, so no reply reserve at these budgets);
`recall-local` is the embedded default (recall only for a message that asks something, block of
at most {LOCAL_RECALL} tokens; every question here asks, so the cap is what limits it).
"""
    if not rows:
        return embedded
    return (
        embedded
        + f"""
Ablations: each `abl:` row is `recall` with one choice changed, registered as a strategy for
the run and measured through the same path, in the same run:

{table(["ablation", "what changes"], rows)}
"""
    )
