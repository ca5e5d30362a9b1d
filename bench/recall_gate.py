"""How often ``recall-local`` recalls on the real chats' own asking turns, by gate.

``python bench/recall_gate.py`` (needs the REALTALK folder, see bench/_recall_real.py): each
chat is replayed up to each of 30 sampled turns (from turn 200 on) that ask something
(``asks``), at the embedded model's 2,000-token budget and tokenizer; the turn is put to
``recall-local`` with each gate, and the share of turns that got a recall block is printed.
The recall each gate keeps on the labelled questions is the real arm of bench_recall
(``abl:local-no-gate``, ``abl:local-gate-1.2``). Prints only; docs/benchmarks/recall.md quotes it.
"""

from __future__ import annotations

import random
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._recall_real import _memo_embedder, data_dir, load_chats, transcript_rows  # noqa: E402
from memchat.core import Budget, History, Message  # noqa: E402
from memchat.core.memory.recall import RecallMemory, asks  # noqa: E402
from memchat.settings import load_settings  # noqa: E402
from memchat.strategies import make_strategy  # noqa: E402
from memchat.wiring import token_counter_for  # noqa: E402

GATES = (None, 0.8, 1.0, 1.2)
SAMPLE, FROM_TURN = 30, 200
BUDGET = Budget(window=2000, reserve_for_reply=32)


def main() -> None:
    folder = data_dir()
    if folder is None:
        raise SystemExit("no REALTALK folder (set MEMCHAT_REALTALK): nothing to measure")
    embedder = _memo_embedder()
    counter = token_counter_for(load_settings({"backend": "local"}, environ={}))
    chats, _ = load_chats(folder, None)
    rng = random.Random(1)
    fired = dict.fromkeys(GATES, 0)
    asked = 0
    for chat in chats:
        msgs = [
            Message(
                r["role"],
                r["content"],
                created_at=datetime.fromisoformat(r["created_at"]).timestamp(),
            )
            for r in transcript_rows(chat.turns)
        ]
        turns = [
            t
            for t in range(FROM_TURN, len(msgs))
            if msgs[t].role == "user" and asks(msgs[t].content)
        ]
        base = make_strategy("recall-local", embedder=embedder)
        assert isinstance(base, RecallMemory)
        gated = {gate: replace(base, gate=gate) for gate in GATES}
        index, history, upto = base.retriever, History(counter=counter), 0
        for t in sorted(rng.sample(turns, min(SAMPLE, len(turns)))):
            history.extend(msgs[upto:t])
            upto = t
            index.sync(history.rounds)  # type: ignore[attr-defined]
            history.append(msgs[t])
            for gate, strategy in gated.items():
                fired[gate] += bool(strategy.select(history, BUDGET).recalled)
            history.pop_last_round()
            asked += 1
        print(f"{chat.name}: {asked} turns so far, recalled {fired}", flush=True)
    shares = ", ".join(f"gate {g}: {fired[g] / asked:.3f}" for g in GATES)
    print(f"{asked} asking turns; share that recalled: {shares}")


if __name__ == "__main__":
    main()
